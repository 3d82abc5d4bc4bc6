//! What an operator sees: `/metrics` scraped and checked with a strict reader of the Prometheus text format
//! (and in OpenMetrics on request), its figures moving with real traffic; request ids on every answer and in
//! error bodies.

use std::time::Duration;

use palaver_core::limits::RateLimit;
use palaver_server::channels::{ChannelSettings, MessagingGatewayConfig};
use palaver_server::limits::ServerLimits;
use palaver_server::metrics::text::{self, Exposition, MetricType};
use palaver_testkit::TestServer;
use serde_json::json;

use crate::api::Api;
use crate::realtime::Raw;

/// Scrapes `/metrics` with the account's credentials and checks the whole text.
async fn scrape(api: &Api) -> Exposition {
    let response = api
        .http
        .get(api.url("/metrics"))
        .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let body = response.text().await.unwrap();
    text::parse(&body).unwrap_or_else(|err| panic!("{err} in\n{body}"))
}

/// Scrapes until `ready` holds (the dispatchers and the feed work beside the requests), for at most 10 s.
async fn scrape_until(api: &Api, what: &str, ready: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let scraped = scrape(api).await;
        if ready(&scraped) {
            return scraped;
        }
        assert!(tokio::time::Instant::now() < deadline, "no scrape showed {what}: {scraped:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An address nothing listens on: attempts to reach it fail at once.
async fn closed_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

const MESSAGES_ROUTE: &str = "/v1/Conversations/{conversation}/Messages";

#[tokio::test]
async fn metrics_scrape_cleanly_and_follow_real_traffic() {
    let api = Api::start().await;
    let unauthenticated = api.http.get(api.url("/metrics")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401, "metrics need the REST credentials");

    let before = scrape(&api).await;
    for (name, kind) in [
        ("palaver_http_connections", MetricType::Gauge),
        ("palaver_db_operation_duration_seconds", MetricType::Histogram),
        ("palaver_sqlite_group_commit_writes", MetricType::Histogram),
        ("palaver_event_delivery_latency_seconds", MetricType::Histogram),
        ("palaver_webhook_outbox", MetricType::Gauge),
        ("palaver_channel_outbox", MetricType::Gauge),
        ("palaver_rate_limited_total", MetricType::Counter),
    ] {
        assert_eq!(before.types.get(name), Some(&kind), "{name}");
    }
    assert_eq!(before.sum("palaver_realtime_sessions", &[]), 0.0);
    assert!(before.sum("palaver_http_connections", &[]) >= 1.0, "the scrape's own connection is open");
    assert_eq!(before.sum("palaver_webhook_outbox", &[("state", "pending")]), 0.0);
    assert_eq!(before.sum("palaver_channel_outbox", &[("channel", "sms")]), 0.0);
    assert!(before.sum("palaver_db_operation_duration_seconds_count", &[("operation", "bootstrap")]) >= 1.0);

    // A listener in a conversation, and messages sent over REST.
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let conversation = api.conversation(&[]).await;
    let (status, _) =
        api.post(&format!("/v1/Conversations/{conversation}/Participants"), &[("Identity", "alice")]).await;
    assert_eq!(status, 201);
    let during = scrape(&api).await;
    assert_eq!(during.sum("palaver_realtime_sessions", &[("api", "realtime")]), 1.0);
    const SENT: usize = 5;
    api.messages(&conversation, SENT).await;
    for n in 0..SENT {
        let body = format!("m{n}");
        alice.wait_for("a message event", |f| f["kind"] == "message.added" && f["data"]["body"] == body).await;
    }
    let (status, _) = api.get("/v1/Conversations/CH00000000000000000000000000000000").await;
    assert_eq!(status, 404);
    let (status, _) = api.get("/no/such/route").await;
    assert_eq!(status, 404);

    let after = scrape_until(&api, "the delivered events", |m| {
        m.sum("palaver_events_delivered_total", &[("api", "realtime")]) >= SENT as f64
    })
    .await;
    let moved = |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    let sent = SENT as f64;
    assert_eq!(
        moved("palaver_http_requests_total", &[("method", "POST"), ("route", MESSAGES_ROUTE), ("status", "2xx")]),
        sent
    );
    assert_eq!(moved("palaver_http_request_duration_seconds_count", &[("route", MESSAGES_ROUTE)]), sent);
    assert_eq!(
        moved("palaver_http_requests_total", &[("route", "/v1/Conversations/{conversation}"), ("status", "4xx")]),
        1.0
    );
    assert_eq!(moved("palaver_http_requests_total", &[("route", "unmatched"), ("status", "4xx")]), 1.0);
    assert!(
        !after.samples.iter().any(|s| s.label("route").is_some_and(|r| r.contains("CH0000"))),
        "routes are templates, never paths"
    );
    assert!(moved("palaver_events_committed_total", &[("kind", "message.added")]) >= sent);
    let latency_count = moved("palaver_event_delivery_latency_seconds_count", &[("api", "realtime")]);
    assert!(latency_count >= sent, "{latency_count}");
    let latency = after.buckets("palaver_event_delivery_latency_seconds", &[("api", "realtime")]);
    assert!(latency.iter().any(|(bound, count)| *bound <= 1.0 && *count >= sent), "delivered within a second");
    assert_eq!(
        moved("palaver_db_operation_duration_seconds_count", &[("operation", "add_message"), ("kind", "write")]),
        sent
    );
    assert!(moved("palaver_db_operation_errors_total", &[("operation", "get_conversation")]) >= 1.0);
    let commits = moved("palaver_sqlite_group_commit_writes_count", &[]);
    let writes = moved("palaver_sqlite_group_commit_writes_sum", &[]);
    assert!(commits >= 1.0 && writes >= commits && writes >= sent, "{commits} commits of {writes} writes");

    drop(alice);
    scrape_until(&api, "the session closed", |m| m.sum("palaver_realtime_sessions", &[("api", "realtime")]) == 0.0)
        .await;
}

#[tokio::test]
async fn openmetrics_is_served_when_asked_for() {
    let api = Api::start().await;
    let response = api
        .http
        .get(api.url("/metrics"))
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .basic_auth(api.server.api_key().0, Some(api.server.api_key().1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "an API key scrapes too");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let body = response.text().await.unwrap();
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE palaver_rate_limited counter\n"), "{body}");
    assert!(body.contains("\npalaver_rate_limited_total{limit=\"conversation\"} 0\n"), "{body}");
}

#[tokio::test]
async fn webhook_and_channel_failures_and_outbox_depths_are_counted() {
    let channels = ChannelSettings {
        messaging_gateway: Some(MessagingGatewayConfig {
            url: closed_url().await,
            account_sid: "AC00000000000000000000000000000000".into(),
            auth_token: "gateway-token".into(),
        }),
        ..ChannelSettings::default()
    };
    let api = Api { http: reqwest::Client::new(), server: TestServer::spawn_with_channels(channels).await };
    let hook = format!("{}/hook", closed_url().await);
    let (status, _) =
        api.post("/v1/Configuration/Webhooks", &[("Filters", "onMessageAdded"), ("PostWebhookUrl", &hook)]).await;
    assert_eq!(status, 200);
    let conversation = api.conversation(&[]).await;
    let (status, body) = api
        .post(
            &format!("/v1/Conversations/{conversation}/Participants"),
            &[("MessagingBinding.Address", "+15550100001"), ("MessagingBinding.ProxyAddress", "+15559990000")],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api
        .send(
            api.http
                .post(api.url(&format!("/v1/Conversations/{conversation}/Messages")))
                .header("X-Twilio-Webhook-Enabled", "true")
                .form(&[("Body", "hello")]),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Both attempts fail at once and are rescheduled (a second away), so each outbox holds its entry.
    let scraped = scrape_until(&api, "the failed attempts", |m| {
        m.sum("palaver_webhook_attempts_total", &[("outcome", "failed")]) >= 1.0
            && m.sum("palaver_channel_attempts_total", &[("channel", "sms"), ("outcome", "retry")]) >= 1.0
    })
    .await;
    assert_eq!(scraped.sum("palaver_webhook_attempts_total", &[("outcome", "delivered")]), 0.0);
    assert_eq!(scraped.sum("palaver_webhook_outbox", &[("state", "pending")]), 1.0);
    assert_eq!(scraped.sum("palaver_webhook_outbox", &[("state", "dead")]), 0.0);
    assert_eq!(scraped.sum("palaver_webhook_backlog_events", &[]), 0.0, "every event was planned");
    assert_eq!(scraped.sum("palaver_channel_outbox", &[("channel", "sms")]), 1.0);
    assert_eq!(scraped.sum("palaver_channel_outbox", &[("channel", "email")]), 0.0);
}

#[tokio::test]
async fn refusals_by_each_limit_are_counted() {
    let api = Api::start_with_limits(ServerLimits {
        conversation_rate: Some(RateLimit { per_second: 0.1, burst: 2.0 }),
        connection_rate: Some(RateLimit { per_second: 0.1, burst: 20.0 }),
        max_sessions_per_identity: Some(1),
        ..ServerLimits::without_rates()
    })
    .await;
    let conversation = api.conversation(&[]).await;
    let path = format!("/v1/Conversations/{conversation}/Messages");
    let mut refused = 0;
    for n in 0..4 {
        let (status, _) = api.post(&path, &[("Body", &format!("m{n}"))]).await;
        refused += u32::from(status == 429);
    }
    assert_eq!(refused, 2, "two messages within the conversation's burst");
    let (_alice, _) = Raw::connect(&api, "alice").await;
    let mut second = Raw::open(&api).await;
    let error = second.call("connect", json!({"token": api.server.access_token("alice")})).await.unwrap_err();
    assert_eq!(error["code"], 20429);
    // One connection spends its budget of 20 requests (the scrape below comes on a new connection).
    let client = reqwest::Client::new();
    let mut spent = 0;
    while spent < 30 {
        let response = client
            .get(api.url("/v1/Conversations"))
            .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
            .send()
            .await
            .unwrap();
        spent += 1;
        if response.status() == 429 {
            break;
        }
    }
    assert!(spent < 30, "the connection's budget ran out");
    let scraped = scrape(&api).await;
    assert_eq!(scraped.sum("palaver_rate_limited_total", &[("limit", "conversation")]), 2.0);
    assert_eq!(scraped.sum("palaver_rate_limited_total", &[("limit", "sessions_per_identity")]), 1.0);
    assert!(scraped.sum("palaver_rate_limited_total", &[("limit", "connection_rate")]) >= 1.0);
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_errors_name_it() {
    let api = Api::start().await;
    let answer = api
        .http
        .get(api.url("/v1/Conversations"))
        .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
        .send()
        .await
        .unwrap();
    let id = answer.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(id.starts_with("RQ") && id.len() == 34, "{id}");

    let given = api
        .http
        .get(api.url("/v1/Conversations/CH00000000000000000000000000000000"))
        .header("x-request-id", "trace-42.a:b")
        .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(given.status(), 404);
    assert_eq!(given.headers()["x-request-id"], "trace-42.a:b", "a sensible id of the caller's is kept");
    let body: serde_json::Value = given.json().await.unwrap();
    assert_eq!(body["request_id"], "trace-42.a:b", "{body}");
    assert_eq!(body["code"], 20404);

    // Refused before any handler (no credentials), with an id that is not taken as given.
    let refused = api.http.get(api.url("/v1/Conversations")).header("x-request-id", "a b").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let id = refused.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(id.starts_with("RQ"), "{id}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["request_id"], id.as_str());
}
