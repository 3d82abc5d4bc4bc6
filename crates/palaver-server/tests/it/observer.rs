//! Observers: a realtime session opened with a token carrying Palaver's observer grant (minted by
//! `POST /palaver/v1/AccessTokens` with `Observer=true`) follows any conversation of its service read-only —
//! stored and live events, typing, counts — and every change it asks for is refused. Without the grant the
//! usual rules hold (see `hardening.rs`), and a grant added to a token without the key's secret makes it a
//! bad token like any other.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::api::{Api, assert_error};
use crate::realtime::Raw;

/// A token minted through the REST API; `observer` asks for the observer grant.
async fn minted(api: &Api, identity: &str, observer: bool) -> String {
    let (status, body) = api
        .post(
            "/palaver/v1/AccessTokens",
            &[("Identity", identity), ("Observer", if observer { "true" } else { "false" })],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["observer"], observer);
    body["token"].as_str().unwrap().to_string()
}

async fn observe(api: &Api, identity: &str) -> (Raw, Value) {
    let mut raw = Raw::open(api).await;
    let connected = raw.call("connect", json!({"token": minted(api, identity, true).await})).await.expect("connect");
    (raw, connected)
}

/// A conversation with alice and bob and one message from alice.
async fn room(api: &Api) -> String {
    let conv = api.conversation(&[("FriendlyName", "watched"), ("UniqueName", "watched-room")]).await;
    for identity in ["alice", "bob"] {
        let (status, body) =
            api.post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", identity)]).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = api
        .post(&format!("/v1/Conversations/{conv}/Messages"), &[("Author", "alice"), ("Body", "stored before")])
        .await;
    assert_eq!(status, 201, "{body}");
    conv
}

fn is_event(kind: &'static str, text: &'static str) -> impl Fn(&Value) -> bool {
    move |f| f["type"] == "event" && f["kind"] == kind && f.to_string().contains(text)
}

#[tokio::test]
async fn an_observer_follows_any_conversation_with_its_history_live_events_and_typing() {
    let api = Api::start().await;
    let conv = room(&api).await;
    let (mut observer, connected) = observe(&api, "console-observer").await;
    assert_eq!(connected["observer"], true);
    assert_eq!(connected["identity"], "console-observer");
    assert!(connected["user"].is_null(), "an observer is no user: {connected}");
    assert_error(&api.get("/v1/Users/console-observer").await, 404, 20404);
    let mine = observer.call("get_my_conversations", json!({})).await.unwrap();
    assert_eq!(mine["items"], json!([]), "an observer takes part in nothing");

    // By SID or unique name; the stored history is replayed, then live events follow.
    let found = observer.call("get_conversation", json!({"conversation": "watched-room"})).await.unwrap();
    assert_eq!(
        (found["status"].as_str(), found["conversation"]["sid"].as_str()),
        (Some("observing"), Some(conv.as_str()))
    );
    let subscribed = observer.call("subscribe", json!({"conversation": conv, "after_seq": 0})).await.unwrap();
    assert_eq!(subscribed["status"], "observing");
    assert!(subscribed["participant"].is_null() && subscribed["unread_messages_count"].is_null());
    observer.wait_for("the stored message", is_event("message.added", "stored before")).await;
    let messages = observer.call("get_messages", json!({"conversation": conv})).await.unwrap();
    assert_eq!(messages["items"].as_array().map(Vec::len), Some(1), "{messages}");
    let participants = observer.call("get_participants", json!({"conversation": conv})).await.unwrap();
    assert_eq!(participants["items"].as_array().map(Vec::len), Some(2), "{participants}");
    let counts = observer.call("get_counts", json!({"conversation": conv})).await.unwrap();
    assert_eq!((counts["messages_count"].as_i64(), counts["participants_count"].as_i64()), (Some(1), Some(2)));

    // Others take part: their messages, typing and read horizons arrive live.
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let sent = alice.call("send_message", json!({"conversation": conv, "body": "said live"})).await.unwrap();
    observer.wait_for("the live message", is_event("message.added", "said live")).await;
    alice.call("typing", json!({"conversation": conv})).await.unwrap();
    let typing =
        observer.wait_for("alice typing", |f| f["type"] == "typing" && f["conversation_sid"] == conv.as_str()).await;
    assert_eq!(typing["identity"], "alice");
    let (status, _) =
        api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Author", "bob"), ("Body", "from REST")]).await;
    assert_eq!(status, 201);
    observer.wait_for("the REST message", is_event("message.added", "from REST")).await;
    alice.call("set_read_horizon", json!({"conversation": conv, "index": sent["index"]})).await.unwrap();
    let horizon = observer
        .wait_for("alice's horizon", |f| {
            f["kind"] == "participant.updated"
                && f["data"]["identity"] == "alice"
                && f["data"]["last_read_message_index"] == sent["index"]
        })
        .await;
    assert_eq!(horizon["stream"], conv.as_str());

    // Only conversations of the token's service.
    let (status, other_service) = api.post("/v1/Services", &[("FriendlyName", "elsewhere")]).await;
    assert_eq!(status, 201, "{other_service}");
    let elsewhere = format!("/v1/Services/{}/Conversations", other_service["sid"].as_str().unwrap());
    let (status, hidden) = api.post(&elsewhere, &[("FriendlyName", "hidden")]).await;
    assert_eq!(status, 201, "{hidden}");
    let refused = observer.call("subscribe", json!({"conversation": hidden["sid"]})).await.expect_err("elsewhere");
    assert_eq!(refused["status"], 404, "{refused}");
    let refused = observer.call("get_messages", json!({"conversation": hidden["sid"]})).await.expect_err("elsewhere");
    assert_eq!(refused["status"], 404, "{refused}");

    // Unsubscribed, nothing more arrives.
    observer.call("unsubscribe", json!({"conversation": conv})).await.unwrap();
    observer.drain(Duration::from_millis(200)).await;
    alice.call("send_message", json!({"conversation": conv, "body": "after leaving"})).await.unwrap();
    let seen = observer.drain(Duration::from_millis(500)).await;
    assert!(!seen.iter().any(|f| f.to_string().contains("after leaving")), "{seen:?}");
}

#[tokio::test]
async fn an_observer_changes_nothing_whatever_its_identity() {
    let api = Api::start().await;
    let conv = room(&api).await;
    let (_, messages) = api.get(&format!("/v1/Conversations/{conv}/Messages")).await;
    let message = messages["messages"][0]["sid"].as_str().unwrap().to_string();
    let before = api.get(&format!("/v1/Conversations/{conv}")).await.1;
    // "alice" takes part in the conversation: an observer's token in her name still writes nothing.
    for identity in ["console-observer", "alice"] {
        let (mut observer, _) = observe(&api, identity).await;
        observer.call("subscribe", json!({"conversation": conv})).await.unwrap();
        for (method, params) in [
            ("send_message", json!({"conversation": conv, "body": "sneaked in"})),
            ("typing", json!({"conversation": conv})),
            ("update_message", json!({"conversation": conv, "message": message, "body": "rewritten"})),
            ("remove_message", json!({"conversation": conv, "message": message})),
            ("set_read_horizon", json!({"conversation": conv, "index": 0})),
            ("set_notification_level", json!({"conversation": conv, "level": "muted"})),
            ("update_conversation", json!({"conversation": conv, "friendly_name": "taken over"})),
            ("delete_conversation", json!({"conversation": conv})),
            ("join", json!({"conversation": conv})),
            ("leave", json!({"conversation": conv})),
            ("add_participant", json!({"conversation": conv, "identity": "mallory"})),
            ("remove_participant", json!({"conversation": conv, "participant": "bob"})),
            ("update_participant", json!({"conversation": conv, "participant": "bob", "attributes": "{}"})),
            ("create_conversation", json!({"friendly_name": "new"})),
            ("update_user", json!({"friendly_name": "Observer"})),
        ] {
            let refused = observer.call(method, params).await.expect_err(method);
            let (status, code) = (refused["status"].as_u64(), refused["code"].as_u64());
            assert_eq!((status, code), (Some(403), Some(20403)), "{method}: {refused}");
            assert!(refused["message"].as_str().unwrap().contains("observer"), "{method}: {refused}");
        }
        // An observer has no read horizon, so no unread count of its own.
        let refused = observer.call("get_unread_count", json!({"conversation": conv})).await.expect_err("no count");
        assert_eq!(refused["status"], 403, "{refused}");
    }
    // Nothing changed.
    let (_, after) = api.get(&format!("/v1/Conversations/{conv}")).await;
    assert_eq!(
        (after["friendly_name"].clone(), after["date_updated"].clone()),
        (before["friendly_name"].clone(), before["date_updated"].clone())
    );
    let (_, messages) = api.get(&format!("/v1/Conversations/{conv}/Messages")).await;
    assert_eq!(messages["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(messages["messages"][0]["body"], "stored before");
    let (_, participants) = api.get(&format!("/v1/Conversations/{conv}/Participants")).await;
    let identities: Vec<&str> =
        participants["participants"].as_array().unwrap().iter().filter_map(|p| p["identity"].as_str()).collect();
    assert_eq!(identities.len(), 2, "{identities:?}");
    assert!(participants["participants"].as_array().unwrap().iter().all(|p| p["last_read_message_index"].is_null()));
    let (_, conversations) = api.get("/v1/Conversations").await;
    assert_eq!(conversations["conversations"].as_array().map(Vec::len), Some(1));
    assert_error(&api.get("/v1/Users/console-observer").await, 404, 20404);
}

#[tokio::test]
async fn observer_tokens_open_nothing_but_observer_sessions() {
    let api = Api::start().await;
    let observer_token = minted(&api, "alice", true).await;
    // The media service takes user tokens, not an observer's.
    let (_, config) = api.get("/v1/Configuration").await;
    let service = config["default_chat_service_sid"].as_str().unwrap();
    let upload = api
        .http
        .post(api.url(&format!("/mcs/v1/Services/{service}/Media")))
        .header("X-Twilio-Token", &observer_token)
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 401);
    // A connection keeps its kind: a user's session takes no observer's token, and the other way round.
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let refused = alice.call("update_token", json!({"token": observer_token})).await.expect_err("kind changes");
    assert_eq!(refused["code"], 20101);
    let (mut observer, _) = observe(&api, "alice").await;
    let user_token = minted(&api, "alice", false).await;
    let refused = observer.call("update_token", json!({"token": user_token})).await.expect_err("kind changes");
    assert_eq!(refused["code"], 20101);
    let renewed = observer.call("update_token", json!({"token": minted(&api, "alice", true).await})).await;
    assert!(renewed.is_ok(), "{renewed:?}");
    assert_error(&api.post("/palaver/v1/AccessTokens", &[("Identity", "a"), ("Observer", "maybe")]).await, 400, 20001);
}

/// Decodes a token's claims, lets `change` edit them, and puts the token back together with its old
/// signature.
fn with_claims(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    change(&mut claims);
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{claims}.{}", parts[0], parts[2])
}

/// What `connect` with `token` answers, and how the server then closes the socket.
async fn refusal(api: &Api, token: &str) -> (Value, Value) {
    let mut raw = Raw::open(api).await;
    let error = raw.call("connect", json!({"token": token})).await.expect_err("the token is refused");
    let close = raw.wait_for("the close", |f| f["type"] == "ws_close").await;
    (json!({"code": error["code"], "status": error["status"]}), close["code"].clone())
}

#[tokio::test]
async fn a_forged_observer_grant_is_refused_like_any_bad_token() {
    let api = Api::start().await;
    let conv = room(&api).await;
    let user_token = minted(&api, "mallory", false).await;
    // Any change to a signed token breaks its signature: a changed identity, as the reference.
    let tampered = with_claims(&user_token, |claims| claims["grants"]["identity"] = json!("alice"));
    let expected = refusal(&api, &tampered).await;
    assert_eq!(expected, (json!({"code": 20101, "status": 401}), json!(4401)));
    // The observer grant added to mallory's own token.
    let forged = with_claims(&user_token, |claims| claims["grants"]["palaver"] = json!({"observer": true}));
    assert_eq!(refusal(&api, &forged).await, expected);
    // An observer's token signed with a secret that is not the key's, or with a key the server does not know.
    let account = palaver_api::sid::AccountSid::parse(api.server.account_sid()).unwrap();
    let key = palaver_api::sid::ApiKeySid::parse(api.server.api_key().0).unwrap();
    let unknown_key = palaver_api::sid::ApiKeySid::generate();
    for (key_sid, secret) in [(&key, "not-the-secret"), (&unknown_key, api.server.api_key().1)] {
        let request = palaver_server::token::MintRequest {
            key_sid,
            key_secret: secret,
            account_sid: &account,
            identity: "mallory",
            service_sid: None,
            ttl_secs: 600,
        };
        assert_eq!(refusal(&api, &palaver_server::token::mint_observer(&request)).await, expected);
    }
    // Mallory's own token still shows her nothing of the conversation.
    let (mut mallory, connected) = Raw::connect(&api, "mallory").await;
    assert_eq!(connected["observer"], false);
    let peeked = mallory.call("subscribe", json!({"conversation": conv, "after_seq": 0})).await.unwrap();
    assert_eq!(peeked["status"], "not_participating");
    let refused = mallory.call("get_messages", json!({"conversation": conv})).await.expect_err("not hers");
    assert_eq!(refused["status"], 403);
    let seen = mallory.drain(Duration::from_millis(300)).await;
    assert!(!seen.iter().any(|f| f.to_string().contains("stored before")), "{seen:?}");
}

#[tokio::test]
async fn a_reconnecting_observer_resumes_the_conversations_it_followed() {
    let api = Api::start().await;
    let conv = room(&api).await;
    let (mut observer, _) = observe(&api, "console-observer").await;
    observer.call("subscribe", json!({"conversation": conv, "after_seq": 0})).await.unwrap();
    let seen = observer.wait_for("the stored message", is_event("message.added", "stored before")).await;
    let last_seq = seen["seq"].as_i64().unwrap();
    drop(observer);
    let (status, _) =
        api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Author", "bob"), ("Body", "while away")]).await;
    assert_eq!(status, 201);

    // Back with its `resume` map: what it missed is replayed, and live events follow without a subscribe.
    let mut observer = Raw::open(&api).await;
    let token = minted(&api, "console-observer", true).await;
    observer.call("connect", json!({"token": token, "resume": {conv.clone(): last_seq}})).await.unwrap();
    let missed = observer.wait_for("the missed message", is_event("message.added", "while away")).await;
    assert_eq!(missed["seq"].as_i64(), Some(last_seq + 1));
    let (status, _) =
        api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Author", "bob"), ("Body", "back again")]).await;
    assert_eq!(status, 201);
    observer.wait_for("the live message", is_event("message.added", "back again")).await;
    let frames = observer.drain(Duration::from_millis(300)).await;
    assert!(!frames.iter().any(|f| f.to_string().contains("stored before")), "nothing twice: {frames:?}");
}
