//! The twilsock transport (`GET /v3/wsconnect`) over a real WebSocket, spoken with `palaver_api::twilsock`:
//! framing and the connection's lifecycle as the official JS SDK relies on them. What the tunnel's app
//! answers is tested elsewhere; here only the shape of its answers is.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use palaver_api::twilsock::{self, Frame, Header};
use palaver_testkit::TestServer;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a client saw next.
#[derive(Debug)]
enum Seen {
    Frame(Frame),
    Ping,
    Pong(Vec<u8>),
    /// A WebSocket close frame, with its code.
    Closed(Option<u16>),
    /// The connection ended without a close frame.
    Ended,
    /// Nothing within the time allowed.
    Silence,
}

/// A raw twilsock client: sends frames, keeps those it did not wait for.
pub(crate) struct Client {
    socket: Socket,
    next_id: u32,
    backlog: Vec<Frame>,
}

/// A header from a JSON object (`method` and every other field).
fn header(fields: Value) -> Header {
    let Value::Object(fields) = fields else { panic!("a header is an object") };
    let mut header = Header::new(fields["method"].as_str().expect("a method"));
    for (name, value) in fields {
        header = header.with_field(&name, value);
    }
    header
}

/// `init` as the SDK sends it.
fn init_frame(id: &str, token: &str, continuation_token: Option<&str>) -> Header {
    header(json!({
        "id": id,
        "method": "init",
        "token": token,
        "continuation_token": continuation_token,
        "metadata": {"ver": "0.12.2", "env": "Node.js", "os": "Linux", "type": "conversations", "sdk": "JS", "sdkv": "2.6.0"},
        "registrations": [{
            "product": "ip_messaging",
            "type": "ers",
            "notification_protocol_version": 0,
            "message_types": ["twilio.ipmsg.typing_indicator", "twilio.sync.event"]
        }],
        "tweaks": null,
        "capabilities": ["client_update", "offline_storage", "telemetry.v1"]
    }))
}

pub(crate) fn status(frame: &Frame) -> Value {
    frame.header.field("status").cloned().unwrap_or(Value::Null)
}

impl Client {
    pub(crate) async fn open(server: &TestServer) -> Self {
        let url = format!("{}/v3/wsconnect", server.url().replacen("http://", "ws://", 1));
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        Self { socket, next_id: 0, backlog: Vec::new() }
    }

    /// Opens a connection and initialises it for `identity`.
    async fn connected(server: &TestServer, identity: &str) -> (Self, Frame) {
        let mut client = Self::open(server).await;
        let reply = client.init(&server.access_token(identity), None).await;
        assert_eq!(status(&reply), json!({"code": 200, "status": "OK"}), "{:?}", reply.header);
        (client, reply)
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("TM{:032x}", self.next_id)
    }

    async fn send(&mut self, header: &Header, payload: &[u8]) {
        self.socket.send(Message::Binary(twilsock::encode(header, payload).into())).await.expect("send");
    }

    /// Sends `init` and waits for its reply.
    pub(crate) async fn init(&mut self, token: &str, continuation_token: Option<&str>) -> Frame {
        let id = self.id();
        self.send(&init_frame(&id, token, continuation_token), b"").await;
        self.reply_to(&id).await
    }

    /// Sends a frame with a fresh id and waits for its reply.
    async fn call(&mut self, fields: Value, payload: &[u8]) -> Frame {
        let id = self.id();
        let mut frame = header(fields);
        frame.id = Some(id.clone());
        self.send(&frame, payload).await;
        self.reply_to(&id).await
    }

    async fn next(&mut self, within: Duration) -> Seen {
        loop {
            let message = match tokio::time::timeout(within, self.socket.next()).await {
                Err(_) => return Seen::Silence,
                Ok(None | Some(Err(_))) => return Seen::Ended,
                Ok(Some(Ok(message))) => message,
            };
            return match message {
                Message::Binary(bytes) => Seen::Frame(twilsock::decode(&bytes).expect("the server sends twilsock")),
                Message::Text(text) => panic!("the server sent a text message: {text}"),
                Message::Ping(_) => Seen::Ping,
                Message::Pong(data) => Seen::Pong(data.to_vec()),
                Message::Close(frame) => Seen::Closed(frame.map(|f| u16::from(f.code))),
                Message::Frame(_) => continue,
            };
        }
    }

    /// The next frame matching `pred` (the backlog first); others go to the backlog.
    async fn wait_for(&mut self, what: &str, within: Duration, pred: impl Fn(&Frame) -> bool) -> Frame {
        if let Some(position) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(position);
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Seen::Frame(frame) if pred(&frame) => return frame,
                Seen::Frame(frame) => self.backlog.push(frame),
                Seen::Ping | Seen::Pong(_) => {}
                other => panic!("no {what}: {other:?} (backlog {:?})", self.backlog),
            }
        }
    }

    async fn reply_to(&mut self, id: &str) -> Frame {
        let id = id.to_string();
        self.wait_for(&format!("reply to {id}"), Duration::from_secs(5), |f| {
            f.header.method == "reply" && f.header.id.as_deref() == Some(id.as_str())
        })
        .await
    }

    /// Reads until the server closes the socket; the close code, or None when it ended without one.
    async fn closed_within(&mut self, within: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Seen::Frame(frame) => self.backlog.push(frame),
                Seen::Ping | Seen::Pong(_) => {}
                Seen::Closed(code) => return code,
                Seen::Ended => return None,
                Seen::Silence => panic!("the server did not close the socket within {within:?}"),
            }
        }
    }

    /// Acknowledges a server frame as the SDK does.
    async fn ack(&mut self, frame: &Frame) {
        let id = frame.header.id.clone().expect("server frames have ids");
        let ack = header(
            json!({"method": "reply", "id": id, "payload_type": "application/json", "status": {"code": 200, "status": "OK"}}),
        );
        self.send(&ack, b"").await;
    }
}

#[tokio::test]
async fn init_is_answered_like_twilsock() {
    let server = TestServer::spawn().await;
    let (_alice, reply) = Client::connected(&server, "alice").await;
    let h = &reply.header;
    assert_eq!(h.method, "reply");
    assert_eq!(h.id.as_deref(), Some("TM00000000000000000000000000000001"));
    let continuation = h.field("continuation_token").and_then(Value::as_str).unwrap().to_string();
    assert!(palaver_api::sid::has_sid_shape(&continuation, "CT"), "{continuation}");
    assert_eq!(h.field("continuation_token_status"), Some(&json!({"reissued": false})));
    assert_eq!(h.field("capabilities"), Some(&json!(["client_update", "offline_storage", "telemetry.v1"])));
    let storage_id = h.field("offline_storage").unwrap()["ip_messaging"]["storage_id"].as_str().unwrap().to_string();
    assert!(palaver_api::sid::has_sid_shape(&storage_id, "ST"), "{storage_id}");
    assert!(reply.payload.is_empty());

    // A reconnect presents the continuation token and keeps it; the storage id is the user's.
    let mut again = Client::open(&server).await;
    let reply = again.init(&server.access_token("alice"), Some(&continuation)).await;
    assert_eq!(status(&reply)["code"], 200);
    assert_eq!(reply.header.field("continuation_token"), Some(&json!(continuation)));
    assert_eq!(reply.header.field("offline_storage").unwrap()["ip_messaging"]["storage_id"], storage_id);

    let (_bob, reply) = Client::connected(&server, "bob").await;
    assert_ne!(reply.header.field("offline_storage").unwrap()["ip_messaging"]["storage_id"], storage_id);
    assert_ne!(reply.header.field("continuation_token"), Some(&json!(continuation)));
}

#[tokio::test]
async fn init_refuses_bad_tokens_with_the_sdk_codes() {
    let server = TestServer::spawn().await;
    let cases = [
        ("not-a-jwt".to_string(), 20101),
        (server.access_token_with_ttl("alice", -60), 20104),
        (format!("{}x", server.access_token("alice")), 20101),
        (format!("{}.e30.sig", "e30"), 20101),
    ];
    for (i, (token, error_code)) in cases.into_iter().enumerate() {
        let mut client = Client::open(&server).await;
        let reply = client.init(&token, None).await;
        let status = status(&reply);
        assert_eq!(status["code"], 401, "{status}");
        assert_eq!(status["status"], "Unauthorized");
        assert_eq!(status["errorCode"], error_code, "{token}: {status}");
        assert!(!status["description"].as_str().unwrap().is_empty());
        if i % 2 == 0 {
            // The SDK says `close` and the server closes right away...
            client.send(&header(json!({"method": "close", "id": "TMclose"})), b"").await;
            let started = Instant::now();
            client.closed_within(Duration::from_secs(3)).await;
            assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
        } else {
            // ...and a client that says nothing is closed after a short grace.
            assert_eq!(client.closed_within(Duration::from_secs(3)).await, Some(4401));
        }
    }
    let (_alice, _) = Client::connected(&server, "alice").await;
}

#[tokio::test]
async fn update_accepts_a_renewed_token_for_the_same_identity_only() {
    let server = TestServer::spawn().await;
    let (mut alice, _) = Client::connected(&server, "alice").await;
    let renewed = alice.call(json!({"method": "update", "token": server.access_token("alice")}), b"").await;
    assert_eq!(status(&renewed), json!({"code": 200, "status": "OK"}));

    let other = alice.call(json!({"method": "update", "token": server.access_token("bob")}), b"").await;
    assert_eq!(status(&other)["code"], 401);
    assert_eq!(status(&other)["errorCode"], 20101);

    let expired =
        alice.call(json!({"method": "update", "token": server.access_token_with_ttl("alice", -60)}), b"").await;
    assert_eq!(status(&expired)["errorCode"], 20104);

    let garbage = alice.call(json!({"method": "update", "token": "garbage"}), b"").await;
    assert_eq!(status(&garbage)["errorCode"], 20101);
    let missing = alice.call(json!({"method": "update"}), b"").await;
    assert_eq!(status(&missing)["errorCode"], 20101);

    // Refusals leave the connection on its current token.
    let ctx = alice.call(json!({"method": "put_notification_ctx"}), b"").await;
    assert_eq!(status(&ctx)["code"], 200);
}

fn tunnelled_get(path: &str) -> Value {
    json!({
        "method": "message",
        "active_grant": "ip_messaging",
        "payload_type": "application/json; charset=utf-8",
        "http_request": {
            "host": "127.0.0.1:9956",
            "path": path,
            "method": "GET",
            "params": {"PageSize": "50", "Order": "asc", "Key": ["a%20b", "c"]},
            "headers": {"Content-Type": "application/json; charset=utf-8"}
        }
    })
}

fn assert_tunnel_reply(reply: &Frame) {
    assert_eq!(status(reply), json!({"code": 200, "status": "OK"}), "HTTP answers never fail the twilsock status");
    assert_eq!(reply.header.payload_type.as_deref(), Some("application/json"));
    let http = reply.header.field("http_status").expect("http_status is mandatory");
    let code = http["code"].as_u64().expect("a numeric HTTP status");
    assert!((100..600).contains(&code), "{http}");
    assert!(http["status"].as_str().is_some_and(|s| !s.is_empty()), "{http}");
    assert!(reply.header.field("http_headers").is_some_and(Value::is_object));
    reply.json_payload().expect("a JSON payload, or none");
}

#[tokio::test]
async fn tunnelled_requests_are_answered_in_http_status() {
    let server = TestServer::spawn().await;
    let (mut alice, _) = Client::connected(&server, "alice").await;
    let reply = alice.call(tunnelled_get("/Client/v2/Configuration"), b"").await;
    assert_tunnel_reply(&reply);
    let reply = alice.call(tunnelled_get("/No/Such/Thing"), b"").await;
    assert_tunnel_reply(&reply);

    // Many at once: every one is answered, by id, whatever the order.
    let mut ids = HashSet::new();
    for _ in 0..150 {
        let id = alice.id();
        let mut frame = header(tunnelled_get("/No/Such/Thing"));
        frame.id = Some(id.clone());
        alice.send(&frame, b"").await;
        ids.insert(id);
    }
    while !ids.is_empty() {
        let reply = alice.wait_for("a tunnel reply", Duration::from_secs(10), |f| f.header.method == "reply").await;
        assert_tunnel_reply(&reply);
        assert!(ids.remove(reply.header.id.as_deref().unwrap()), "one reply per request");
    }

    // A message that does not describe a request is refused at the twilsock level.
    let malformed = alice.call(json!({"method": "message", "http_request": {"method": "GET"}}), b"").await;
    assert_eq!(status(&malformed)["code"], 400);
    assert!(malformed.header.field("http_status").is_none());
}

#[tokio::test]
async fn telemetry_and_acks_are_not_answered() {
    let server = TestServer::spawn().await;
    let (mut alice, _) = Client::connected(&server, "alice").await;
    let events = json!([{"start": -9, "end": -1, "title": "Establish WebSocket connection", "details": ""}]);
    alice.send(&header(json!({"method": "telemetry.v1", "id": "TMtelemetry", "events": events})), b"").await;
    alice
        .send(&header(json!({"method": "reply", "id": "TMack", "payload_type": "application/json", "status": {"code": 200, "status": "OK"}})), b"")
        .await;
    let put = alice.call(json!({"method": "put_notification_ctx", "notification_ctx_id": "x"}), b"{}").await;
    assert_eq!(status(&put), json!({"code": 200, "status": "OK"}));
    assert!(alice.backlog.is_empty(), "nothing answered the telemetry or the ack: {:?}", alice.backlog);
    let delete = alice.call(json!({"method": "delete_notification_ctx"}), b"").await;
    assert_eq!(status(&delete)["code"], 200);

    let unknown = alice.call(json!({"method": "frobnicate"}), b"").await;
    assert_eq!(status(&unknown)["code"], 400);
    let init_again = alice.init(&server.access_token("alice"), None).await;
    assert_eq!(status(&init_again)["code"], 400);
    let still = alice.call(json!({"method": "put_notification_ctx"}), b"").await;
    assert_eq!(status(&still)["code"], 200);
}

#[tokio::test]
async fn frames_before_init_are_refused_until_init() {
    let server = TestServer::spawn().await;
    let mut client = Client::open(&server).await;
    let early = client.call(tunnelled_get("/Client/v2/Configuration"), b"").await;
    assert_eq!(status(&early)["code"], 400);
    client.send(&header(json!({"method": "telemetry.v1", "id": "TMt", "events": []})), b"").await;
    let reply = client.init(&server.access_token("alice"), None).await;
    assert_eq!(status(&reply)["code"], 200);
    assert!(client.backlog.is_empty(), "{:?}", client.backlog);
}

#[tokio::test]
async fn the_clients_close_ends_the_connection() {
    let server = TestServer::spawn().await;
    let (mut alice, _) = Client::connected(&server, "alice").await;
    alice.send(&header(json!({"method": "close", "id": "TMbye"})), b"").await;
    assert_eq!(alice.closed_within(Duration::from_secs(2)).await, Some(1000));
}

#[tokio::test]
async fn pings_are_answered_and_sent() {
    let server = TestServer::spawn().await;
    let (mut alice, _) = Client::connected(&server, "alice").await;
    alice.socket.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    match alice.next(Duration::from_secs(2)).await {
        Seen::Pong(data) => assert_eq!(data, b"hi"),
        other => panic!("expected a pong, got {other:?}"),
    }
    // The server pings on its own (every 15 s): twilsock has no heartbeat.
    match alice.next(Duration::from_secs(18)).await {
        Seen::Ping => {}
        other => panic!("expected a ping, got {other:?}"),
    }
    let ctx = alice.call(json!({"method": "put_notification_ctx"}), b"").await;
    assert_eq!(status(&ctx)["code"], 200);
}

#[tokio::test]
async fn a_short_token_is_warned_then_closed_with_410() {
    let server = TestServer::spawn().await;
    let mut alice = Client::open(&server).await;
    let started = Instant::now();
    let reply = alice.init(&server.access_token_with_ttl("alice", 4), None).await;
    assert_eq!(status(&reply)["code"], 200);

    let warning = alice.wait_for("client_update", Duration::from_secs(4), |f| f.header.method == "client_update").await;
    assert_eq!(warning.header.field("client_update_type"), Some(&json!("token_about_to_expire")));
    assert!(warning.header.id.as_deref().is_some_and(|id| id.starts_with("TM")));
    let warned_at = started.elapsed();
    assert!(warned_at > Duration::from_millis(900), "warned too early: {warned_at:?}");
    alice.ack(&warning).await;

    let close = alice.wait_for("close", Duration::from_secs(4), |f| f.header.method == "close").await;
    assert_eq!(status(&close), json!({"code": 410, "status": "Token expired"}));
    assert!(started.elapsed() > warned_at + Duration::from_millis(500));
    alice.ack(&close).await;
    assert_eq!(alice.closed_within(Duration::from_secs(3)).await, Some(4410));
}

#[tokio::test]
async fn update_rearms_the_token_timers() {
    let server = TestServer::spawn().await;
    let mut alice = Client::open(&server).await;
    let started = Instant::now();
    let reply = alice.init(&server.access_token_with_ttl("alice", 4), None).await;
    assert_eq!(status(&reply)["code"], 200);
    let warning = alice.wait_for("client_update", Duration::from_secs(4), |f| f.header.method == "client_update").await;
    alice.ack(&warning).await;
    let renewed = alice.call(json!({"method": "update", "token": server.access_token_with_ttl("alice", 6)}), b"").await;
    assert_eq!(status(&renewed)["code"], 200);

    // The first token's expiry (≤ 4 s) passes without a close; the new one is warned, then expires.
    let again = alice.wait_for("a second client_update", Duration::from_secs(6), |f| f.header.method != "reply").await;
    assert_eq!(again.header.method, "client_update", "{:?}", again.header);
    assert!(started.elapsed() > Duration::from_secs(3), "{:?}", started.elapsed());
    let close = alice.wait_for("close", Duration::from_secs(6), |f| f.header.method == "close").await;
    assert_eq!(status(&close)["code"], 410);
    assert!(started.elapsed() > Duration::from_secs(6), "{:?}", started.elapsed());
}

#[tokio::test]
async fn text_and_garbage_close_the_connection_not_the_server() {
    let server = TestServer::spawn().await;

    let (mut text, _) = Client::connected(&server, "alice").await;
    text.socket.send(Message::Text("{\"method\":\"init\"}".into())).await.unwrap();
    let close = text.wait_for("close", Duration::from_secs(2), |f| f.header.method == "close").await;
    assert_eq!(status(&close)["code"], 406);
    assert_eq!(text.closed_within(Duration::from_secs(2)).await, Some(1003));

    for garbage in [&b"garbage"[..], b"TWILSOCK V3.0 999\r\n{}", b"TWILSOCK V3.0 2\r\n{}\r\n", b""] {
        let (mut client, _) = Client::connected(&server, "alice").await;
        client.socket.send(Message::Binary(garbage.to_vec().into())).await.unwrap();
        let close = client.wait_for("close", Duration::from_secs(2), |f| f.header.method == "close").await;
        assert_eq!(status(&close)["code"], 406);
        assert!(status(&close)["description"].as_str().unwrap().contains("malformed"));
        assert_eq!(client.closed_within(Duration::from_secs(2)).await, Some(1002));
    }

    // Before init too.
    let mut early = Client::open(&server).await;
    early.socket.send(Message::Binary(b"\xff\xfe".to_vec().into())).await.unwrap();
    assert_eq!(early.closed_within(Duration::from_secs(2)).await, Some(1002));

    let (mut alice, _) = Client::connected(&server, "alice").await;
    let reply = alice.call(tunnelled_get("/Client/v2/Configuration"), b"").await;
    assert_tunnel_reply(&reply);
}

#[tokio::test]
async fn shutdown_tells_clients_to_reconnect_and_does_not_wait_for_them() {
    let mut server = TestServer::spawn().await;
    let (mut alice, _) = Client::connected(&server, "alice").await;
    let (mut idle, _) = Client::connected(&server, "bob").await;
    let started = Instant::now();
    let (_, code) = tokio::join!(server.stop(), async {
        let close = alice.wait_for("close", Duration::from_secs(3), |f| f.header.method == "close").await;
        assert_eq!(status(&close)["code"], 308);
        alice.closed_within(Duration::from_secs(3)).await
    });
    assert_eq!(code, Some(1001));
    assert!(started.elapsed() < Duration::from_secs(2), "shutdown took {:?}", started.elapsed());
    // A client that reads nothing during shutdown still finds the close waiting.
    let close = idle.wait_for("close", Duration::from_secs(1), |f| f.header.method == "close").await;
    assert_eq!(status(&close)["code"], 308);
}

fn tunnelled_post(path: &str, mutation_id: &str) -> Value {
    json!({
        "method": "message",
        "active_grant": "ip_messaging",
        "payload_type": "application/json; charset=utf-8",
        "http_request": {
            "host": "127.0.0.1:9956",
            "path": path,
            "method": "POST",
            "params": {},
            "headers": {"Content-Type": "application/json; charset=utf-8", "X-Twilio-Mutation-Id": mutation_id}
        }
    })
}

#[tokio::test]
async fn a_repeated_mutation_id_is_answered_202_with_the_resource_and_applied_once() {
    let server = TestServer::spawn().await;
    let (mut alice, _) = Client::connected(&server, "alice").await;
    let config = alice.call(tunnelled_get("/Client/v2/Configuration"), b"").await.json_payload().unwrap();
    let conversations = config["links"]["conversations"].as_str().unwrap();
    let path = conversations.split_once("127.0.0.1:9956").map(|(_, p)| p.to_string()).unwrap();
    let body = br#"{"friendly_name":"once","attributes":"{}"}"#;
    let first = alice.call(tunnelled_post(&path, "retry-me"), body).await;
    assert_eq!(first.header.field("http_status").unwrap()["code"], 201);
    let created = first.json_payload().unwrap();
    let again = alice.call(tunnelled_post(&path, "retry-me"), body).await;
    assert_eq!(again.header.field("http_status").unwrap()["code"], 202);
    assert_eq!(again.json_payload().unwrap()["resource_url"], created["url"]);
    let other = alice.call(tunnelled_post(&path, "another"), body).await;
    assert_eq!(other.header.field("http_status").unwrap()["code"], 201);
    let listed = reqwest::Client::new()
        .get(format!("{}/v1/Conversations", server.url()))
        .basic_auth(server.account_sid(), Some(server.auth_token()))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(listed["conversations"].as_array().map(Vec::len), Some(2), "the repeat created nothing");
}
