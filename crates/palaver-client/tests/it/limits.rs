//! A server's rates reach the application as a typed error with the delay to wait.

use std::time::Duration;

use palaver_client::ClientError;
use palaver_core::limits::RateLimit;
use palaver_server::limits::ServerLimits;
use palaver_testkit::TestServer;

use crate::support::{connect, conversation_with};

#[tokio::test]
async fn sending_faster_than_the_conversation_rate_is_a_rate_limited_error_with_its_delay() {
    // Four changes at once, then one a second.
    let rate = RateLimit { per_second: 1.0, burst: 4.0 };
    let server =
        TestServer::spawn_with_limits(ServerLimits { conversation_rate: Some(rate), ..ServerLimits::without_rates() })
            .await;
    let alice = connect(&server, "alice").await;
    // Joining is the first change.
    let conversation = conversation_with(&alice, "busy", &[]).await;
    let mut results = Vec::new();
    for n in 0..4 {
        results.push(conversation.send_message(&format!("m{n}"), None, None).await);
    }
    let refused = results.into_iter().find_map(Result::err).expect("the burst runs out");
    let ClientError::RateLimited { code, retry_after, .. } = &refused else { panic!("{refused:?}") };
    assert_eq!(*code, 20429);
    assert!(*retry_after > Duration::ZERO && *retry_after <= Duration::from_secs(1), "{retry_after:?}");
    assert_eq!(refused.code(), Some(20429));
    assert_eq!(refused.retry_after(), Some(*retry_after));
    tokio::time::sleep(*retry_after).await;
    conversation.send_message("after the wait", None, None).await.expect("allowed again");
}
