//! Connecting, denial, token handling, reconnect and resume.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palaver_client::{
    Client, ClientError, ClientEvent, ClientEventName, ClientOptions, ConnectionState, ConversationEvent,
    ConversationEventName,
};
use palaver_testkit::TestServer;

use crate::support::{Recorder, connect, conversation_with, eventually, joined, options};

#[tokio::test]
async fn connects_reports_state_and_shuts_down() {
    let server = TestServer::spawn().await;
    let client = connect(&server, "alice").await;
    assert_eq!(client.connection_state(), ConnectionState::Connected);
    assert_eq!(client.identity(), "alice");
    assert_eq!(client.user().identity(), "alice");
    let mut states = Recorder::new(&client.events(), ClientEventName::ConnectionStateChanged);
    client.shutdown().await;
    assert_eq!(client.connection_state(), ConnectionState::Disconnected);
    let seen: Vec<_> = states
        .received()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::ConnectionStateChanged(state) => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(seen, [ConnectionState::Disconnecting, ConnectionState::Disconnected]);
    let err = client.get_user("alice").await.unwrap_err();
    assert!(matches!(err, ClientError::Shutdown | ClientError::TransportUnavailable), "{err:?}");
}

#[tokio::test]
async fn a_bad_token_is_denied_and_an_unreachable_server_is_a_connect_error() {
    let server = TestServer::spawn().await;
    let expired = server.access_token_with_ttl("alice", -60);
    let err = Client::connect(&server.ws_url(), &expired).await.unwrap_err();
    assert_eq!(err, ClientError::TokenExpired);
    let err = Client::connect(&server.ws_url(), "not-a-jwt").await.unwrap_err();
    assert!(matches!(err, ClientError::Denied(_)), "{err:?}");
    let err = Client::connect(&server.ws_url(), "").await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err:?}");
    let err = Client::connect("ws://127.0.0.1:1/v1/realtime", "x").await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn update_token_keeps_the_connection() {
    let server = TestServer::spawn().await;
    let client = connect(&server, "alice").await;
    let mut states = Recorder::new(&client.events(), ClientEventName::ConnectionStateChanged);
    client.update_token(&server.access_token("alice")).await.expect("update the token");
    states.assert_silent(Duration::from_millis(200)).await;
    let err = client.update_token(&server.access_token("mallory")).await.unwrap_err();
    assert!(matches!(err, ClientError::Server { code: 20101, .. }), "{err:?}");
    assert_eq!(client.connection_state(), ConnectionState::Connected);
}

#[tokio::test]
async fn an_expiring_token_warns_expires_and_is_renewed() {
    let server = TestServer::spawn().await;
    let client = Client::connect_with(options(server.ws_url(), server.access_token_with_ttl("alice", 3)))
        .await
        .expect("connect");
    let mut warned = Recorder::new(&client.events(), ClientEventName::TokenAboutToExpire);
    let mut expired = Recorder::new(&client.events(), ClientEventName::TokenExpired);
    warned.next().await;
    expired.next().await;
    eventually("the client to stop", || async {
        (client.connection_state() == ConnectionState::Disconnected).then_some(())
    })
    .await;
    let err = client.get_user("alice").await.unwrap_err();
    assert_eq!(err, ClientError::TokenExpired);
    client.update_token(&server.access_token("alice")).await.expect("a new token");
    eventually("the client to reconnect", || async {
        (client.connection_state() == ConnectionState::Connected).then_some(())
    })
    .await;
    client.get_user("alice").await.expect("requests work again");
}

#[tokio::test]
async fn reconnects_after_a_restart_and_resumes_missed_events() {
    let mut server = TestServer::spawn().await;
    // Alice's address can be switched off, so she stays away while Bob talks.
    let alice_url = Arc::new(Mutex::new(server.ws_url()));
    let url = alice_url.clone();
    let alice = Client::connect_with(
        ClientOptions::with_url_provider(move || url.lock().unwrap().clone(), server.access_token("alice"))
            .with_backoff(Duration::from_millis(20), Duration::from_millis(200)),
    )
    .await
    .expect("alice connects");
    let bob = connect(&server, "bob").await;
    let conversation = conversation_with(&alice, "resume", &["bob"]).await;
    let bobs = joined(&bob, conversation.sid()).await;
    // Listen before sending: the event may arrive before `send_message` returns.
    let mut added = Recorder::new(&conversation.events(), ConversationEventName::MessageAdded);
    bobs.send_message("before", None, None).await.expect("send");
    added.next().await;
    let mut states = Recorder::new(&alice.events(), ClientEventName::ConnectionStateChanged);

    *alice_url.lock().unwrap() = "ws://127.0.0.1:1/v1/realtime".into();
    server.restart_on_same_port().await;
    states.next_matching(|e| matches!(e, ClientEvent::ConnectionStateChanged(ConnectionState::Connecting))).await;

    // Bob reconnects by himself and sends while Alice is away.
    eventually("bob to reconnect", || async { (bob.connection_state() == ConnectionState::Connected).then_some(()) })
        .await;
    for text in ["one", "two", "three"] {
        bobs.send_message(text, None, None).await.expect("bob sends while alice is away");
    }
    // A send made while disconnected waits for the connection and is stored once.
    let pending = {
        let conversation = conversation.clone();
        tokio::spawn(async move { conversation.send_message("queued", None, None).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    *alice_url.lock().unwrap() = server.ws_url();
    states.next_matching(|e| matches!(e, ClientEvent::ConnectionStateChanged(ConnectionState::Connected))).await;

    let mut bodies = Vec::new();
    while bodies.len() < 4 {
        if let ConversationEvent::MessageAdded(message) = added.next().await {
            bodies.push(message.body().unwrap_or_default().to_string());
        }
    }
    assert_eq!(bodies, ["one", "two", "three", "queued"]);
    let index = pending.await.unwrap().expect("the queued send succeeds");
    assert_eq!(index, 4);
    assert_eq!(conversation.get_messages_count().await.unwrap(), 5, "every message stored exactly once");
    added.assert_silent(Duration::from_millis(200)).await;
}
