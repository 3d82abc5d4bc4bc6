//! The limits that keep one client from taking the server from the others: action and request rates (429 /
//! 20429 with `Retry-After`), caps on connections, sessions, bodies, forms, headers and frames, and timeouts for
//! slow clients.

use std::time::Duration;

use futures_util::SinkExt;
use palaver_core::limits::RateLimit;
use palaver_server::limits::ServerLimits;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::api::Api;
use crate::realtime::Raw;

fn limits() -> ServerLimits {
    ServerLimits::without_rates()
}

fn retry_after(response: &reqwest::Response) -> u64 {
    let header = response.headers().get("retry-after").expect("a Retry-After header");
    header.to_str().unwrap().parse().expect("whole seconds")
}

/// A burst of 30 (Twilio's rate is 30 a second, with a second's worth at once) that refills slowly, so that what
/// a test does between two requests does not earn it another.
fn thirty_then_one_a_second() -> Option<RateLimit> {
    Some(RateLimit { per_second: 1.0, burst: 30.0 })
}

#[tokio::test]
async fn the_default_rates_are_twilios() {
    let defaults = ServerLimits::default();
    assert_eq!(defaults.conversation_rate, Some(RateLimit { per_second: 30.0, burst: 30.0 }));
    assert_eq!(defaults.service_rate, Some(RateLimit { per_second: 30.0, burst: 30.0 }));
}

#[tokio::test]
async fn a_conversation_takes_its_burst_of_changes_then_429_until_the_retry_time() {
    let api = Api::start_with_limits(ServerLimits { conversation_rate: thirty_then_one_a_second(), ..limits() }).await;
    let (busy, quiet) = (api.conversation(&[]).await, api.conversation(&[]).await);
    let post = |conv: &str, body: String| {
        api.http
            .post(api.url(&format!("/v1/Conversations/{conv}/Messages")))
            .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
            .form(&[("Body", body)])
            .send()
    };
    for n in 0..30 {
        assert_eq!(post(&busy, format!("m{n}")).await.unwrap().status(), 201, "message {n} within the burst");
    }
    let refused = post(&busy, "one too many".into()).await.unwrap();
    assert_eq!(refused.status(), 429);
    let wait = retry_after(&refused);
    assert_eq!(wait, 1, "one token comes back within a second");
    let body: Value = refused.json().await.unwrap();
    assert_eq!((body["code"].as_u64(), body["status"].as_u64()), (Some(20429), Some(429)), "{body}");
    assert_eq!(body["more_info"], "https://www.twilio.com/docs/errors/20429");
    // Participant changes count against the same conversation; other conversations are not held back.
    let (status, _) = api.post(&format!("/v1/Conversations/{busy}/Participants"), &[("Identity", "late")]).await;
    assert_eq!(status, 429);
    assert_eq!(post(&quiet, "elsewhere".into()).await.unwrap().status(), 201);
    // Nothing refused was stored.
    let (_, page) = api.get(&format!("/v1/Conversations/{busy}/Messages?PageSize=100")).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 30);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(post(&busy, "after the wait".into()).await.unwrap().status(), 201);
}

#[tokio::test]
async fn a_service_takes_its_burst_of_creations() {
    let api = Api::start_with_limits(ServerLimits { service_rate: thirty_then_one_a_second(), ..limits() }).await;
    for n in 0..30 {
        let (status, body) = api.post("/v1/Conversations", &[("FriendlyName", &format!("c{n}"))]).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = api.post("/v1/Conversations", &[("FriendlyName", "one too many")]).await;
    assert_eq!((status, body["code"].as_u64()), (429, Some(20429)), "{body}");
    let (status, _) = api.post("/v1/Users", &[("Identity", "someone")]).await;
    assert_eq!(status, 429, "users count against the same service");
    // Changes inside a conversation are another rule.
    let (_, list) = api.get("/v1/Conversations?PageSize=1").await;
    let sid = list["conversations"][0]["sid"].as_str().unwrap().to_string();
    let (status, _) = api.post(&format!("/v1/Conversations/{sid}/Messages"), &[("Body", "fine")]).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn a_realtime_client_over_the_rate_gets_a_typed_refusal_with_its_delay() {
    // Five at once, then one a second.
    let rate = RateLimit { per_second: 1.0, burst: 5.0 };
    let api = Api::start_with_limits(ServerLimits { conversation_rate: Some(rate), ..limits() }).await;
    let sid = api.conversation(&[]).await;
    api.post(&format!("/v1/Conversations/{sid}/Participants"), &[("Identity", "alice")]).await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    // Adding alice spent one of the five: wait for it to come back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for n in 0..5 {
        alice.call("send_message", json!({"conversation": sid, "body": format!("m{n}")})).await.unwrap();
    }
    let refused = alice.call("send_message", json!({"conversation": sid, "body": "fast"})).await.unwrap_err();
    assert_eq!((refused["code"].as_u64(), refused["status"].as_u64()), (Some(20429), Some(429)), "{refused}");
    let wait = refused["retry_after_ms"].as_u64().expect("the delay, in milliseconds");
    assert!((1..=1000).contains(&wait), "{wait} ms for one token at 1/s");
    tokio::time::sleep(Duration::from_millis(wait)).await;
    alice.call("send_message", json!({"conversation": sid, "body": "after"})).await.expect("allowed after the delay");
}

#[tokio::test]
async fn one_connection_gets_its_request_rate_and_a_new_one_its_own() {
    // A burst of 10, refilled slowly.
    let rate = RateLimit { per_second: 0.2, burst: 10.0 };
    let api = Api::start_with_limits(ServerLimits { connection_rate: Some(rate), ..limits() }).await;
    let keep_alive = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let get = |client: &reqwest::Client| {
        client
            .get(api.url("/v1/Conversations"))
            .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
            .send()
    };
    for n in 0..10 {
        assert_eq!(get(&keep_alive).await.unwrap().status(), 200, "request {n}");
    }
    let refused = get(&keep_alive).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(retry_after(&refused) >= 1);
    let fresh = reqwest::Client::new();
    assert_eq!(get(&fresh).await.unwrap().status(), 200, "another connection has its own budget");

    // A realtime socket spends the budget of the connection it came from: connect + 9 calls, then refused.
    let sid = api.conversation(&[]).await;
    let (mut raw, _) = Raw::connect(&api, "alice").await;
    let mut refusals = 0;
    for _ in 0..12 {
        if let Err(error) = raw.call("get_conversation", json!({"conversation": sid})).await {
            assert_eq!(error["code"], 20429, "{error}");
            assert!(error["retry_after_ms"].as_u64().is_some());
            refusals += 1;
        }
    }
    assert!(refusals >= 2, "the socket is held to its budget ({refusals} refused)");
}

#[tokio::test]
async fn connections_from_one_address_are_capped() {
    let api = Api::start_with_limits(ServerLimits { max_connections_per_ip: Some(3), ..limits() }).await;
    let address = api.server.url().trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(&address).await.unwrap());
    }
    // A WebSocket counts too, for as long as it is open.
    let ws = Raw::open(&api).await;
    let mut refused = TcpStream::connect(&address).await.unwrap();
    assert!(closed_without_answer(&mut refused).await, "a fourth connection is closed at once");
    drop(ws);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = api.get("/v1/Conversations").await;
    assert_eq!(status, 200, "a place is free again once the WebSocket closed");
}

/// Whether the server closes `stream` without answering a request sent on it.
async fn closed_without_answer(stream: &mut TcpStream) -> bool {
    let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut buffer = [0u8; 64];
    matches!(tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn one_identity_holds_a_bounded_number_of_sessions() {
    let api = Api::start_with_limits(ServerLimits { max_sessions_per_identity: Some(2), ..limits() }).await;
    let (first, _) = Raw::connect(&api, "alice").await;
    let (_second, _) = Raw::connect(&api, "alice").await;
    let mut third = Raw::open(&api).await;
    let refused =
        third.call("connect", json!({"token": api.server.access_token("alice")})).await.expect_err("a third session");
    assert_eq!(refused["code"], 20429, "{refused}");
    let (_bob, _) = Raw::connect(&api, "bob").await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = Raw::open(&api).await;
    again.call("connect", json!({"token": api.server.access_token("alice")})).await.expect("a place was freed");
}

#[tokio::test]
async fn bodies_forms_headers_and_attributes_are_bounded() {
    let api = Api::start_with_limits(ServerLimits {
        max_body_bytes: 64 * 1024,
        max_form_fields: 20,
        max_header_bytes: 16 * 1024,
        ..limits()
    })
    .await;
    let conv = api.conversation(&[]).await;
    let path = format!("/v1/Conversations/{conv}/Messages");
    let big = "x".repeat(100 * 1024);
    let (status, body) = api.post(&path, &[("Body", big.as_str())]).await;
    assert_eq!((status, body["code"].as_u64()), (413, Some(20413)), "{body}");
    let many: Vec<(String, String)> = (0..30).map(|n| (format!("F{n}"), "v".to_string())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, body) = api.post(&path, &many).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(20001)), "{body}");
    assert!(body["message"].as_str().unwrap().contains("30 fields"), "{body}");
    let (status, _) = api.get(&format!("{path}?{}", vec!["a=1"; 30].join("&"))).await;
    assert_eq!(status, 400, "query strings too");
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let (status, body) = api.post(&path, &[("Body", "x"), ("Attributes", deep.as_str())]).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(20001)), "{body}");
    // Media uploads have their own, larger limit.
    let upload = api
        .http
        .post(api.url("/v1/Media?Filename=big.bin"))
        .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 201);
    // A head larger than the limit is refused by the HTTP layer (431) and the connection closed.
    let huge_header = "h".repeat(20 * 1024);
    let response = api
        .http
        .get(api.url("/v1/Conversations"))
        .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
        .header("x-padding", huge_header)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let api = Api::start_with_limits(ServerLimits {
        header_read_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(800),
        ..limits()
    })
    .await;
    let address = api.server.url().trim_start_matches("http://").to_string();
    // Headers a byte at a time, never finished: closed after the header deadline.
    let mut slowloris = TcpStream::connect(&address).await.unwrap();
    slowloris.write_all(b"GET /v1/Conversations HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slowloris.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the server hung up within the header deadline");
    // A connection opened and left idle is closed too.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "an idle connection is closed");
    // A body that never finishes arriving: 408 once the request deadline passes.
    let mut slow_body = TcpStream::connect(&address).await.unwrap();
    let credentials = base64_credentials(&api);
    let head = format!(
        "POST /v1/Conversations HTTP/1.1\r\nhost: x\r\nauthorization: Basic {credentials}\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: 100\r\n\r\nFriendlyName=sl"
    );
    slow_body.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow_body.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("20408"), "{answer}");
}

fn base64_credentials(api: &Api) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        api.server.account_sid(),
        api.server.auth_token()
    ))
}

#[tokio::test]
async fn a_realtime_frame_over_the_limit_ends_the_connection() {
    let api = Api::start_with_limits(ServerLimits { max_frame_bytes: 32 * 1024, ..limits() }).await;
    let (socket, _) = tokio_tungstenite::connect_async(api.server.ws_url()).await.unwrap();
    let (mut sink, mut stream) = futures_util::StreamExt::split(socket);
    let huge = json!({"id": 1, "method": "connect", "params": {"token": "x".repeat(64 * 1024)}});
    let _ = sink.send(tokio_tungstenite::tungstenite::Message::Text(huge.to_string().into())).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match futures_util::StreamExt::next(&mut stream).await {
                None | Some(Err(_)) | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server closes a connection that sends a frame over the limit");
}
