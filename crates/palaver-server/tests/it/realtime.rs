//! The realtime protocol over a real WebSocket.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::api::Api;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw protocol client: sends requests, collects every other frame it sees.
pub(crate) struct Raw {
    socket: Socket,
    next_id: u64,
    /// Frames received that were not the reply being waited for.
    pub(crate) backlog: Vec<Value>,
}

impl Raw {
    pub(crate) async fn open(api: &Api) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(api.server.ws_url()).await.expect("websocket connects");
        Self { socket, next_id: 0, backlog: Vec::new() }
    }

    pub(crate) async fn connect(api: &Api, identity: &str) -> (Self, Value) {
        let mut raw = Self::open(api).await;
        let connected =
            raw.call("connect", json!({"token": api.server.access_token(identity)})).await.expect("connect succeeds");
        (raw, connected)
    }

    async fn next_frame(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), self.socket.next()).await.ok()??.ok()?;
            match message {
                Message::Text(text) => return Some(serde_json::from_str(&text).expect("JSON frame")),
                Message::Close(frame) => {
                    return Some(json!({"type": "ws_close", "code": frame.map(|f| u16::from(f.code))}));
                }
                _ => continue,
            }
        }
    }

    /// Sends a request and waits for its reply; other frames go to the backlog.
    pub(crate) async fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params});
        self.socket.send(Message::Text(request.to_string().into())).await.expect("send");
        loop {
            let frame = self.next_frame().await.expect("a reply before the connection ends");
            if frame["type"] == "reply" && frame["reply_to"] == id {
                return match frame.get("error") {
                    Some(error) if !error.is_null() => Err(error.clone()),
                    _ => Ok(frame["result"].clone()),
                };
            }
            self.backlog.push(frame);
        }
    }

    /// Waits until a frame matching `pred` arrives (looking at the backlog first).
    pub(crate) async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(pos) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(pos);
        }
        loop {
            let frame = self.next_frame().await.unwrap_or_else(|| panic!("no frame for {what}"));
            if pred(&frame) {
                return frame;
            }
            self.backlog.push(frame);
        }
    }

    /// Events received so far (backlog plus anything arriving within `settle`).
    pub(crate) async fn drain(&mut self, settle: Duration) -> Vec<Value> {
        while let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(settle, self.socket.next()).await {
            self.backlog.push(serde_json::from_str(&text).unwrap());
        }
        std::mem::take(&mut self.backlog)
    }
}

fn is_event(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |f| f["type"] == "event" && f["kind"] == kind
}

pub(crate) async fn conversation_with(alice: &mut Raw, others: &[&str]) -> String {
    let created = alice.call("create_conversation", json!({"friendly_name": "room"})).await.unwrap();
    let sid = created["conversation"]["sid"].as_str().unwrap().to_string();
    assert_eq!(created["status"], "not_participating");
    alice.call("join", json!({"conversation": sid})).await.unwrap();
    for identity in others {
        alice.call("add_participant", json!({"conversation": sid, "identity": identity})).await.unwrap();
    }
    sid
}

#[tokio::test]
async fn connect_accepts_valid_tokens_and_denies_others() {
    let api = Api::start().await;
    let (_alice, connected) = Raw::connect(&api, "alice").await;
    assert_eq!(connected["identity"], "alice");
    assert!(connected["user"]["sid"].as_str().unwrap().starts_with("US"));
    assert_eq!(connected["typing_timeout_ms"], 5000);

    for (token, code) in [
        ("not-a-jwt".to_string(), 20101),
        (api.server.access_token_with_ttl("alice", -60), 20104),
        (format!("{}x", api.server.access_token("alice")), 20101),
    ] {
        let mut raw = Raw::open(&api).await;
        let error = raw.call("connect", json!({"token": token})).await.unwrap_err();
        assert_eq!((error["code"].as_u64(), error["status"].as_u64()), (Some(code), Some(401)), "{error}");
        let close = raw.wait_for("close", |f| f["type"] == "ws_close").await;
        assert_eq!(close["code"], 4401);
    }
    // The first request must be connect.
    let mut raw = Raw::open(&api).await;
    assert_eq!(raw.call("ping", json!(null)).await.unwrap_err()["code"], 20003);
}

#[tokio::test]
async fn participants_see_each_others_changes_live_with_sequence_numbers() {
    let api = Api::start().await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let (mut bob, _) = Raw::connect(&api, "bob").await;
    let sid = conversation_with(&mut alice, &["bob"]).await;

    let joined = bob.wait_for("joined", is_event("user.conversation_joined")).await;
    assert_eq!(joined["data"]["conversation"]["sid"], sid.as_str());
    // Bob's session follows the conversation from his own participant.added on.
    let added = bob.wait_for("bob added", |f| f["kind"] == "participant.added" && f["data"]["identity"] == "bob").await;
    assert_eq!(added["stream"], sid.as_str());

    let sent = alice.call("send_message", json!({"conversation": sid, "body": "hello bob"})).await.unwrap();
    assert_eq!(sent["index"], 0);
    assert_eq!(sent["author"], "alice");
    let message = bob.wait_for("message", is_event("message.added")).await;
    assert_eq!(message["data"]["body"], "hello bob");
    assert_eq!(message["seq"].as_i64().unwrap(), added["seq"].as_i64().unwrap() + 1);

    let count = bob.call("set_read_horizon", json!({"conversation": sid, "index": 0})).await.unwrap();
    assert_eq!(count["unread_messages_count"], 0);
    let unread = bob.wait_for("unread 0", |f| f["type"] == "unread" && f["unread_messages_count"] == 0).await;
    assert_eq!(unread["last_read_message_index"], 0);
    alice.call("send_message", json!({"conversation": sid, "body": "two"})).await.unwrap();
    let unread = bob.wait_for("unread 1", |f| f["type"] == "unread" && f["unread_messages_count"] == 1).await;
    assert_eq!(unread["last_read_message_index"], 0);
    // advance_only keeps a higher horizon.
    bob.call("set_read_horizon", json!({"conversation": sid, "index": 1})).await.unwrap();
    let count =
        bob.call("set_read_horizon", json!({"conversation": sid, "index": 0, "advance_only": true})).await.unwrap();
    assert_eq!(count["unread_messages_count"], 0);

    // A change through REST reaches both sessions.
    let (status, _) = api.post(&format!("/v1/Conversations/{sid}"), &[("FriendlyName", "renamed")]).await;
    assert_eq!(status, 200);
    for client in [&mut alice, &mut bob] {
        let updated = client
            .wait_for("rename", |f| f["kind"] == "conversation.updated" && f["data"]["friendly_name"] == "renamed")
            .await;
        assert_eq!(updated["stream"], sid.as_str());
    }
}

#[tokio::test]
async fn typing_reaches_others_but_never_the_typist() {
    let api = Api::start().await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let (mut bob, _) = Raw::connect(&api, "bob").await;
    let sid = conversation_with(&mut alice, &["bob"]).await;
    bob.wait_for("joined", is_event("user.conversation_joined")).await;
    let ack = alice.call("typing", json!({"conversation": sid})).await.unwrap();
    assert_eq!(ack["typing_timeout_ms"], 5000);
    let typing = bob.wait_for("typing", |f| f["type"] == "typing").await;
    assert_eq!(typing["identity"], "alice");
    assert_eq!(typing["timeout_ms"], 6000);
    let alice_frames = alice.drain(Duration::from_millis(300)).await;
    assert!(!alice_frames.iter().any(|f| f["type"] == "typing"), "{alice_frames:?}");
}

#[tokio::test]
async fn resume_replays_exactly_the_missed_events() {
    let api = Api::start().await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let (mut bob, _) = Raw::connect(&api, "bob").await;
    let sid = conversation_with(&mut alice, &["bob"]).await;
    alice.call("send_message", json!({"conversation": sid, "body": "before"})).await.unwrap();
    let seen = bob.wait_for("before", |f| f["kind"] == "message.added" && f["data"]["body"] == "before").await;
    let last_seq = seen["seq"].as_i64().unwrap();
    drop(bob);

    for body in ["m1", "m2", "m3"] {
        alice.call("send_message", json!({"conversation": sid, "body": body})).await.unwrap();
    }
    let mut bob = Raw::open(&api).await;
    bob.call("connect", json!({"token": api.server.access_token("bob"), "resume": {sid.clone(): last_seq}}))
        .await
        .unwrap();
    alice.call("send_message", json!({"conversation": sid, "body": "live"})).await.unwrap();
    bob.wait_for("live", |f| f["kind"] == "message.added" && f["data"]["body"] == "live").await;
    let mut frames = std::mem::take(&mut bob.backlog);
    frames.retain(|f| f["type"] == "event" && f["stream"] == sid.as_str());
    let seqs: Vec<i64> = frames.iter().map(|f| f["seq"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = (last_seq + 1..last_seq + 4).collect();
    assert_eq!(seqs, expected, "replayed events in order, without duplicates");
    let bodies: Vec<&str> = frames.iter().map(|f| f["data"]["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["m1", "m2", "m3"]);
}

#[tokio::test]
async fn idempotent_sends_store_one_message() {
    let api = Api::start().await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let sid = conversation_with(&mut alice, &[]).await;
    let first = alice
        .call("send_message", json!({"conversation": sid, "body": "once", "idempotency_key": "k-1"}))
        .await
        .unwrap();
    let again = alice
        .call("send_message", json!({"conversation": sid, "body": "once", "idempotency_key": "k-1"}))
        .await
        .unwrap();
    assert_eq!(first["sid"], again["sid"]);
    let counts = alice.call("get_counts", json!({"conversation": sid})).await.unwrap();
    assert_eq!(counts["messages_count"], 1);
}

#[tokio::test]
async fn roles_limit_what_users_can_do() {
    let api = Api::start().await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let (mut bob, _) = Raw::connect(&api, "bob").await;
    let (mut carol, _) = Raw::connect(&api, "carol").await;
    let sid = conversation_with(&mut alice, &["bob"]).await;
    alice.call("send_message", json!({"conversation": sid, "body": "from alice"})).await.unwrap();

    // Not a participant: no messages, no participants.
    let error = carol.call("get_messages", json!({"conversation": sid})).await.unwrap_err();
    assert_eq!(error["code"], 50430);
    // Bob is a plain participant: he can't add people or rename, nor delete alice's message.
    let error = bob.call("add_participant", json!({"conversation": sid, "identity": "carol"})).await.unwrap_err();
    assert_eq!(error["code"], 20403, "{error}");
    assert_eq!(
        bob.call("update_conversation", json!({"conversation": sid, "friendly_name": "mine"})).await.unwrap_err()["code"],
        20403
    );
    let page = bob.call("get_messages", json!({"conversation": sid})).await.unwrap();
    let message = page["items"][0]["sid"].as_str().unwrap().to_string();
    assert_eq!(
        bob.call("remove_message", json!({"conversation": sid, "message": message})).await.unwrap_err()["code"],
        20403
    );
    // Alice created it and joined as its admin.
    alice.call("remove_message", json!({"conversation": sid, "message": message})).await.unwrap();
    alice.call("update_conversation", json!({"conversation": sid, "friendly_name": "ours"})).await.unwrap();
    // Promoting Bob through REST takes effect on his open session at once.
    let (_, roles) = api.get("/v1/Roles").await;
    let admin = roles["roles"].as_array().unwrap().iter().find(|r| r["friendly_name"] == "channel admin").unwrap();
    let (status, _) = api
        .post(&format!("/v1/Conversations/{sid}/Participants/bob"), &[("RoleSid", admin["sid"].as_str().unwrap())])
        .await;
    assert_eq!(status, 200);
    bob.call("update_conversation", json!({"conversation": sid, "friendly_name": "bob was here"})).await.unwrap();
    // Bob may leave himself.
    bob.call("leave", json!({"conversation": sid})).await.unwrap();
    bob.wait_for("left", is_event("user.conversation_left")).await;
}

#[tokio::test]
async fn message_pages_are_ascending_with_an_inclusive_anchor() {
    let api = Api::start().await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let sid = conversation_with(&mut alice, &[]).await;
    for i in 0..10 {
        alice.call("send_message", json!({"conversation": sid, "body": format!("m{i}")})).await.unwrap();
    }
    let indices = |page: &Value| {
        page["items"].as_array().unwrap().iter().map(|m| m["index"].as_i64().unwrap()).collect::<Vec<_>>()
    };
    let newest = alice.call("get_messages", json!({"conversation": sid, "page_size": 3})).await.unwrap();
    assert_eq!(indices(&newest), [7, 8, 9]);
    assert_eq!((newest["has_older"].as_bool(), newest["has_newer"].as_bool()), (Some(true), Some(false)));
    let older = alice.call("get_messages", json!({"conversation": sid, "page_size": 3, "anchor": 6})).await.unwrap();
    assert_eq!(indices(&older), [4, 5, 6]);
    assert_eq!((older["has_older"].as_bool(), older["has_newer"].as_bool()), (Some(true), Some(true)));
    let first_page =
        alice.call("get_messages", json!({"conversation": sid, "page_size": 3, "direction": "forward"})).await.unwrap();
    assert_eq!(indices(&first_page), [0, 1, 2]);
    assert_eq!((first_page["has_older"].as_bool(), first_page["has_newer"].as_bool()), (Some(false), Some(true)));
    let last_page = alice
        .call("get_messages", json!({"conversation": sid, "page_size": 5, "anchor": 8, "direction": "forward"}))
        .await
        .unwrap();
    assert_eq!(indices(&last_page), [8, 9]);
    assert_eq!((last_page["has_older"].as_bool(), last_page["has_newer"].as_bool()), (Some(true), Some(false)));
    let forward = alice
        .call("get_messages", json!({"conversation": sid, "page_size": 4, "anchor": 2, "direction": "forward"}))
        .await
        .unwrap();
    assert_eq!(indices(&forward), [2, 3, 4, 5]);
    assert_eq!((forward["has_older"].as_bool(), forward["has_newer"].as_bool()), (Some(true), Some(true)));
    let oldest = alice.call("get_messages", json!({"conversation": sid, "page_size": 5, "anchor": 1})).await.unwrap();
    assert_eq!(indices(&oldest), [0, 1]);
    assert_eq!((oldest["has_older"].as_bool(), oldest["has_newer"].as_bool()), (Some(false), Some(true)));
}

#[tokio::test]
async fn expiring_tokens_are_announced_renewed_and_enforced() {
    let api = Api::start().await;
    let mut raw = Raw::open(&api).await;
    raw.call("connect", json!({"token": api.server.access_token_with_ttl("dora", 4)})).await.unwrap();
    let warning = raw.wait_for("warning", |f| f["type"] == "token_about_to_expire").await;
    assert!(warning["expires_at"].is_string());
    let renewed =
        raw.call("update_token", json!({"token": api.server.access_token_with_ttl("dora", 3)})).await.unwrap();
    assert!(renewed["token_expires_at"].is_string());
    // The renewed token also runs out, and the server closes with 4410.
    let mut closed = None;
    for _ in 0..3 {
        if let Some(frame) = raw.next_frame().await
            && frame["type"] == "ws_close"
        {
            closed = Some(frame);
            break;
        }
    }
    assert_eq!(closed.expect("closed at expiry")["code"], 4410);
}

#[tokio::test]
async fn a_slow_reader_is_cut_off_and_resumes_without_loss() {
    let limits = palaver_server::RealtimeLimits { send_queue: 8, slow_consumer_grace: Duration::from_millis(200) };
    let api = Api::start_with(limits).await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let sid = conversation_with(&mut alice, &["sleepy"]).await;
    let (mut sleepy, _) = Raw::connect(&api, "sleepy").await;
    let start =
        sleepy.call("get_conversation", json!({"conversation": sid})).await.unwrap()["last_seq"].as_i64().unwrap();

    // Sleepy stops reading while enough arrives to fill the socket buffers and its queue.
    let body = "z".repeat(20_000);
    let total = 600;
    for _ in 0..total {
        let (status, _) = api.post(&format!("/v1/Conversations/{sid}/Messages"), &[("Body", &body)]).await;
        assert_eq!(status, 201);
    }
    // Reading again, it finds what was queued, then the server's goodbye.
    let mut seqs = Vec::new();
    let close = loop {
        let frame = sleepy.next_frame().await.expect("frames, then a close");
        if frame["type"] == "ws_close" {
            break frame;
        }
        if frame["type"] == "event" && frame["stream"] == sid.as_str() {
            seqs.push(frame["seq"].as_i64().unwrap());
        }
    };
    assert_eq!(close["code"], 4408, "cut off as too slow");
    assert!(seqs.len() < total, "it was cut off before receiving everything ({} of {total})", seqs.len());

    // It reconnects and resumes from the last event it saw: every message exactly once, in order.
    let last = seqs.last().copied().unwrap_or(start);
    let mut again = Raw::open(&api).await;
    again
        .call("connect", json!({"token": api.server.access_token("sleepy"), "resume": {sid.clone(): last}}))
        .await
        .unwrap();
    let end = again.call("get_conversation", json!({"conversation": sid})).await.unwrap()["last_seq"].as_i64().unwrap();
    for frame in std::mem::take(&mut again.backlog) {
        if frame["type"] == "event" && frame["stream"] == sid.as_str() {
            seqs.push(frame["seq"].as_i64().unwrap());
        }
    }
    while seqs.last().copied().unwrap_or(start) < end {
        let frame = again.next_frame().await.expect("the replay");
        if frame["type"] == "event" && frame["stream"] == sid.as_str() {
            seqs.push(frame["seq"].as_i64().unwrap());
        }
    }
    let expected: Vec<i64> = (start + 1..=end).collect();
    assert_eq!(seqs, expected);
}

#[tokio::test]
async fn pipelined_requests_all_get_their_own_replies() {
    let api = Api::start().await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let sid = conversation_with(&mut alice, &[]).await;
    // Forty sends and reads without waiting, then a call that changes the connection's state.
    for id in 1000..1040u64 {
        let request = if id % 2 == 0 {
            json!({"id": id, "method": "send_message", "params": {"conversation": sid, "body": format!("m{id}")}})
        } else {
            json!({"id": id, "method": "get_unread_count", "params": {"conversation": sid}})
        };
        alice.socket.send(Message::Text(request.to_string().into())).await.unwrap();
    }
    alice
        .socket
        .send(Message::Text(json!({"id": 2000, "method": "leave", "params": {"conversation": sid}}).to_string().into()))
        .await
        .unwrap();
    let mut replied = Vec::new();
    while replied.len() < 41 {
        let frame = alice.wait_for("a reply", |f| f["type"] == "reply").await;
        assert!(frame.get("error").is_none_or(Value::is_null), "{frame}");
        replied.push(frame["reply_to"].as_u64().unwrap());
    }
    assert_eq!(*replied.last().unwrap(), 2000, "the state-changing call answers after all earlier requests");
    replied.sort_unstable();
    let expected: Vec<u64> = (1000..1040).chain([2000]).collect();
    assert_eq!(replied, expected);
    let (_, messages) = api.get(&format!("/v1/Conversations/{sid}/Messages?PageSize=100")).await;
    assert_eq!(messages["messages"].as_array().unwrap().len(), 20);
}

/// The pushed unread count follows messages, removals and horizon moves exactly, including messages sent
/// through REST and a burst that arrives between two pushes.
#[tokio::test]
async fn pushed_unread_counts_stay_exact_through_bursts_removals_and_horizon_moves() {
    let api = Api::start().await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let (mut bob, _) = Raw::connect(&api, "bob").await;
    let sid = conversation_with(&mut alice, &["bob"]).await;
    bob.wait_for("joined", is_event("user.conversation_joined")).await;
    let first = alice.call("send_message", json!({"conversation": sid, "body": "m0"})).await.unwrap();
    assert_eq!(first["index"], 0);
    bob.call("set_read_horizon", json!({"conversation": sid, "index": 0})).await.unwrap();
    bob.wait_for("unread 0", |f| f["type"] == "unread" && f["unread_messages_count"] == 0).await;

    let mut sids = Vec::new();
    for i in 1..=12 {
        let sent = alice.call("send_message", json!({"conversation": sid, "body": format!("m{i}")})).await.unwrap();
        sids.push(sent["sid"].as_str().unwrap().to_string());
    }
    let (status, _) =
        api.post(&format!("/v1/Conversations/{sid}/Messages"), &[("Body", "by rest"), ("Author", "alice")]).await;
    assert_eq!(status, 201);
    let unread = bob.wait_for("unread 13", |f| f["type"] == "unread" && f["unread_messages_count"] == 13).await;
    assert_eq!(unread["last_read_message_index"], 0);

    // Removing a message above the horizon lowers the count; the pushed count agrees with a fresh read.
    bob.drain(Duration::from_millis(300)).await;
    alice.call("remove_message", json!({"conversation": sid, "message": sids[4]})).await.unwrap();
    bob.wait_for("unread 12", |f| f["type"] == "unread" && f["unread_messages_count"] == 12).await;
    let read = bob.call("get_unread_count", json!({"conversation": sid})).await.unwrap();
    assert_eq!(read["unread_messages_count"], 12);

    // Moving the horizon to index 6 leaves indices 7..=13 unread: seven messages.
    bob.call("set_read_horizon", json!({"conversation": sid, "index": 6})).await.unwrap();
    let unread = bob.wait_for("unread 7", |f| f["type"] == "unread" && f["last_read_message_index"] == 6).await;
    assert_eq!(unread["unread_messages_count"], 7);
    alice.call("send_message", json!({"conversation": sid, "body": "one more"})).await.unwrap();
    let unread = bob.wait_for("unread 8", |f| f["type"] == "unread" && f["unread_messages_count"] == 8).await;
    assert_eq!(unread["last_read_message_index"], 6);
}
