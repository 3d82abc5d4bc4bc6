//! Webhooks end to end: a real HTTP receiver on a free port records what the server sends, checks every
//! `X-Twilio-Signature`, and answers as each test scripts it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;
use tokio::sync::mpsc;

use crate::api::{Api, assert_error};
use crate::realtime::{Raw, conversation_with};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    method: Method,
    path: String,
    params: Vec<(String, String)>,
}

impl Hit {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn event_type(&self) -> &str {
        self.param("EventType").unwrap_or_default()
    }
}

#[derive(Clone)]
struct ReceiverState {
    base: String,
    auth_token: String,
    hits: mpsc::UnboundedSender<Hit>,
    /// Scripted answers (status, body), used in order; 200 with an empty body once they run out.
    answers: Arc<Mutex<VecDeque<(u16, String)>>>,
}

/// An HTTP server standing in for a customer's webhook endpoint.
pub(crate) struct Receiver {
    base: String,
    hits: mpsc::UnboundedReceiver<Hit>,
    answers: Arc<Mutex<VecDeque<(u16, String)>>>,
}

async fn record(
    State(state): State<ReceiverState>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let url = format!("{}{}", state.base, uri);
    let params: Vec<(String, String)> = if method == Method::GET {
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).expect("query parameters")
    } else {
        serde_urlencoded::from_str(&body).expect("form body")
    };
    // The query string is part of the signed URL; POST parameters are appended.
    let signed_params = if method == Method::GET { Vec::new() } else { params.clone() };
    let expected = palaver_server::webhooks::signature(&state.auth_token, &url, &signed_params);
    let signature = headers.get("X-Twilio-Signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if signature != expected {
        return (StatusCode::UNAUTHORIZED, format!("bad signature {signature} for {url}"));
    }
    let _ = state.hits.send(Hit { method, path: uri.path().to_string(), params });
    let (status, body) = state.answers.lock().unwrap().pop_front().unwrap_or((200, String::new()));
    (StatusCode::from_u16(status).unwrap(), body)
}

impl Receiver {
    pub(crate) async fn start(auth_token: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (sender, hits) = mpsc::unbounded_channel();
        let answers = Arc::new(Mutex::new(VecDeque::new()));
        let state = ReceiverState {
            base: base.clone(),
            auth_token: auth_token.to_string(),
            hits: sender,
            answers: answers.clone(),
        };
        let app = axum::Router::new().fallback(record).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, hits, answers }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer(&self, status: u16, body: &str) {
        self.answers.lock().unwrap().push_back((status, body.to_string()));
    }

    pub(crate) async fn next(&mut self) -> Hit {
        tokio::time::timeout(Duration::from_secs(15), self.hits.recv())
            .await
            .expect("a webhook in time")
            .expect("receiver alive")
    }

    /// Asserts that nothing more arrives for a while.
    async fn assert_silent(&mut self, wait: Duration) {
        if let Ok(Some(hit)) = tokio::time::timeout(wait, self.hits.recv()).await {
            panic!("unexpected webhook {} {}: {:?}", hit.method, hit.path, hit.params);
        }
    }
}

async fn post_with_webhooks(api: &Api, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", api.server.url()))
        .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
        .header("X-Twilio-Webhook-Enabled", "true")
        .form(form)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

#[tokio::test]
async fn account_and_service_settings_round_trip_and_reject_bad_input() {
    let api = Api::start().await;
    let (status, empty) = api.get("/v1/Configuration/Webhooks").await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["method"], "POST");
    assert_eq!(empty["filters"], json!([]));
    assert!(empty["url"].as_str().unwrap().ends_with("/v1/Configuration/Webhooks"));

    let (status, set) = api
        .post(
            "/v1/Configuration/Webhooks",
            &[
                ("Method", "GET"),
                ("Filters", "onMessageAdded"),
                ("Filters", "onUserAdded"),
                ("PostWebhookUrl", "https://example.com/post"),
                ("PreWebhookUrl", "https://example.com/pre"),
                ("Target", "webhook"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["method"], "GET");
    assert_eq!(set["filters"], json!(["onMessageAdded", "onUserAdded"]));
    assert_eq!(set["post_webhook_url"], "https://example.com/post");
    assert_eq!(api.get("/v1/Configuration/Webhooks").await.1, set);

    // Clearing a URL with an empty value; other fields stay.
    let (_, cleared) = api.post("/v1/Configuration/Webhooks", &[("PreWebhookUrl", "")]).await;
    assert_eq!(cleared["pre_webhook_url"], json!(null));
    assert_eq!(cleared["method"], "GET");

    assert_error(&api.post("/v1/Configuration/Webhooks", &[("Method", "PUT")]).await, 400, 20001);
    assert_error(&api.post("/v1/Configuration/Webhooks", &[("Filters", "onNothing")]).await, 400, 20001);
    assert_error(&api.post("/v1/Configuration/Webhooks", &[("PostWebhookUrl", "ftp://x")]).await, 400, 20001);

    let (_, services) = api.get("/v1/Services").await;
    let service = services["services"][0]["sid"].as_str().unwrap().to_string();
    let path = format!("/v1/Services/{service}/Configuration/Webhooks");
    let (status, own) = api.post(&path, &[("Filters", "onConversationAdded"), ("PostWebhookUrl", "http://a/b")]).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["chat_service_sid"], service.as_str());
    assert_eq!(own["filters"], json!(["onConversationAdded"]));
    // User events are account-level only; Target too.
    assert_error(&api.post(&path, &[("Filters", "onUserAdded")]).await, 400, 20001);
    assert_error(&api.post(&path, &[("Target", "flex")]).await, 400, 20001);
    assert_error(&api.get("/v1/Services/IS00000000000000000000000000000000/Configuration/Webhooks").await, 404, 20404);
}

#[tokio::test]
async fn rest_changes_fire_post_event_webhooks_only_when_asked() {
    let api = Api::start().await;
    let mut receiver = Receiver::start(api.server.auth_token()).await;
    let (status, body) = api
        .post(
            "/v1/Configuration/Webhooks",
            &[
                ("Filters", "onConversationAdded"),
                ("Filters", "onMessageAdded"),
                ("Filters", "onParticipantAdded"),
                ("PostWebhookUrl", &receiver.url("/post")),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Without the header, REST changes stay quiet.
    let quiet = api.conversation(&[("FriendlyName", "quiet")]).await;
    api.messages(&quiet, 1).await;

    let loud = post_with_webhooks(&api, "/v1/Conversations", &[("FriendlyName", "loud")]).await;
    let loud_sid = loud["sid"].as_str().unwrap();
    let hit = receiver.next().await;
    assert_eq!(hit.method, Method::POST);
    assert_eq!(hit.path, "/post");
    assert_eq!(hit.event_type(), "onConversationAdded");
    assert_eq!(hit.param("ConversationSid"), Some(loud_sid));
    assert_eq!(hit.param("FriendlyName"), Some("loud"));
    assert_eq!(hit.param("Source"), Some("API"));
    assert_eq!(hit.param("AccountSid"), Some(api.server.account_sid()));
    assert_eq!(hit.param("RetryCount"), Some("0"));
    assert!(hit.param("ChatServiceSid").is_some_and(|s| s.starts_with("IS")));

    let message = post_with_webhooks(
        &api,
        &format!("/v1/Conversations/{loud_sid}/Messages"),
        &[("Body", "hello hooks"), ("Author", "carol"), ("Attributes", r#"{"x":1}"#)],
    )
    .await;
    let hit = receiver.next().await;
    assert_eq!(hit.event_type(), "onMessageAdded");
    assert_eq!(hit.param("MessageSid"), message["sid"].as_str());
    assert_eq!(hit.param("Body"), Some("hello hooks"));
    assert_eq!(hit.param("Author"), Some("carol"));
    assert_eq!(hit.param("Index"), Some("0"));
    assert_eq!(hit.param("Attributes"), Some(r#"{"x":1}"#));
    assert!(hit.param("DateCreated").is_some());

    // Filtered out: onConversationUpdated is not in the filters.
    post_with_webhooks(&api, &format!("/v1/Conversations/{loud_sid}"), &[("FriendlyName", "renamed")]).await;
    post_with_webhooks(&api, &format!("/v1/Conversations/{loud_sid}/Participants"), &[("Identity", "dave")]).await;
    let hit = receiver.next().await;
    assert_eq!(hit.event_type(), "onParticipantAdded");
    assert_eq!(hit.param("Identity"), Some("dave"));
    assert!(hit.param("ParticipantSid").is_some_and(|s| s.starts_with("MB")));
    receiver.assert_silent(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn sdk_actions_always_fire_and_name_the_client() {
    let api = Api::start().await;
    let mut receiver = Receiver::start(api.server.auth_token()).await;
    api.post(
        "/v1/Configuration/Webhooks",
        &[("Method", "GET"), ("Filters", "onMessageAdded"), ("PostWebhookUrl", &receiver.url("/get?site=1"))],
    )
    .await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let sid = conversation_with(&mut alice, &[]).await;
    alice.call("send_message", json!({"conversation": sid, "body": "from the sdk"})).await.unwrap();
    let hit = receiver.next().await;
    assert_eq!(hit.method, Method::GET);
    assert_eq!(hit.path, "/get");
    assert_eq!(hit.param("site"), Some("1"), "the URL's own query is kept");
    assert_eq!(hit.event_type(), "onMessageAdded");
    assert_eq!(hit.param("Source"), Some("SDK"));
    assert_eq!(hit.param("ClientIdentity"), Some("alice"));
    assert_eq!(hit.param("Body"), Some("from the sdk"));
}

#[tokio::test]
async fn conversation_scoped_webhooks_and_triggers() {
    let api = Api::start().await;
    let mut receiver = Receiver::start(api.server.auth_token()).await;
    let sid = api.conversation(&[]).await;
    let hooks = format!("/v1/Conversations/{sid}/Webhooks");

    let (status, webhook) = api
        .post(
            &hooks,
            &[
                ("Target", "webhook"),
                ("Configuration.Url", &receiver.url("/scoped")),
                ("Configuration.Method", "POST"),
                ("Configuration.Filters", "onMessageAdded"),
            ],
        )
        .await;
    assert_eq!(status, 201, "{webhook}");
    let webhook_sid = webhook["sid"].as_str().unwrap().to_string();
    assert!(webhook_sid.starts_with("WH"));
    assert_eq!(webhook["target"], "webhook");
    assert_eq!(webhook["configuration"]["filters"], json!(["onMessageAdded"]));
    assert_eq!(webhook["conversation_sid"], sid.as_str());

    let (status, trigger) = api
        .post(
            &hooks,
            &[
                ("Target", "trigger"),
                ("Configuration.Url", &receiver.url("/trigger")),
                ("Configuration.Triggers", "urgent"),
                ("Configuration.Triggers", "help"),
            ],
        )
        .await;
    assert_eq!(status, 201, "{trigger}");
    assert_eq!(trigger["configuration"]["triggers"], json!(["urgent", "help"]));

    let (_, listed) = api.get(&hooks).await;
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 2);
    assert_eq!(listed["meta"]["key"], "webhooks");
    let (status, fetched) = api.get(&format!("{hooks}/{webhook_sid}")).await;
    assert_eq!((status, &fetched), (200, &webhook));

    post_with_webhooks(&api, &format!("/v1/Conversations/{sid}/Messages"), &[("Body", "just saying hi")]).await;
    let hit = receiver.next().await;
    assert_eq!((hit.path.as_str(), hit.event_type()), ("/scoped", "onMessageAdded"));
    receiver.assert_silent(Duration::from_millis(300)).await;

    post_with_webhooks(&api, &format!("/v1/Conversations/{sid}/Messages"), &[("Body", "URGENT: call me")]).await;
    let mut paths = [receiver.next().await.path, receiver.next().await.path];
    paths.sort();
    assert_eq!(paths, ["/scoped", "/trigger"]);

    // Update the trigger's keywords, then delete the plain webhook.
    let (status, updated) =
        api.post(&format!("{hooks}/{}", trigger["sid"].as_str().unwrap()), &[("Configuration.Triggers", "fire")]).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["configuration"]["triggers"], json!(["fire"]));
    assert_eq!(api.delete(&format!("{hooks}/{webhook_sid}")).await.0, 204);
    assert_error(&api.get(&format!("{hooks}/{webhook_sid}")).await, 404, 20404);
    post_with_webhooks(&api, &format!("/v1/Conversations/{sid}/Messages"), &[("Body", "urgent still?")]).await;
    post_with_webhooks(&api, &format!("/v1/Conversations/{sid}/Messages"), &[("Body", "fire!")]).await;
    let hit = receiver.next().await;
    assert_eq!((hit.path.as_str(), hit.param("Body")), ("/trigger", Some("fire!")));
    receiver.assert_silent(Duration::from_millis(300)).await;

    // Bad input.
    assert_error(&api.post(&hooks, &[]).await, 400, 20001);
    assert_error(&api.post(&hooks, &[("Target", "carrier-pigeon")]).await, 400, 20001);
    assert_error(&api.post(&hooks, &[("Target", "webhook")]).await, 400, 20001);
    assert_error(&api.post(&hooks, &[("Target", "webhook"), ("Configuration.Url", "not a url")]).await, 400, 20001);
    assert_error(&api.get("/v1/Conversations/CH00000000000000000000000000000000/Webhooks").await, 404, 20404);
    for n in 0..4 {
        let url = receiver.url(&format!("/extra{n}"));
        let response = api
            .post(
                &hooks,
                &[("Target", "webhook"), ("Configuration.Url", &url), ("Configuration.Filters", "onMessageAdded")],
            )
            .await;
        assert_eq!(response.0, 201, "{}", response.1);
    }
    let sixth = api.post(&hooks, &[("Target", "webhook"), ("Configuration.Url", &receiver.url("/six"))]).await;
    assert_eq!(sixth.0, 400, "at most five webhooks per conversation: {}", sixth.1);
}

#[tokio::test]
async fn pre_event_hooks_reject_or_rewrite_sdk_actions() {
    let api = Api::start().await;
    let mut receiver = Receiver::start(api.server.auth_token()).await;
    api.post(
        "/v1/Configuration/Webhooks",
        &[("Filters", "onMessageAdd"), ("Filters", "onConversationUpdate"), ("PreWebhookUrl", &receiver.url("/pre"))],
    )
    .await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let sid = conversation_with(&mut alice, &[]).await;

    // A non-2xx answer rejects the action; nothing is stored.
    receiver.answer(403, "");
    let error = alice.call("send_message", json!({"conversation": sid, "body": "bad words"})).await.unwrap_err();
    assert_eq!(error["status"], 403, "{error}");
    let hit = receiver.next().await;
    assert_eq!(hit.event_type(), "onMessageAdd");
    assert_eq!(hit.param("Body"), Some("bad words"));
    assert_eq!(hit.param("ClientIdentity"), Some("alice"));
    assert_eq!(hit.param("Source"), Some("SDK"));
    assert_eq!(hit.param("ConversationSid"), Some(sid.as_str()));
    let (_, messages) = api.get(&format!("/v1/Conversations/{sid}/Messages")).await;
    assert_eq!(messages["messages"], json!([]));

    // A JSON answer changes the fields it names.
    receiver.answer(200, r#"{"body": "[redacted]", "attributes": {"moderated": true}}"#);
    let sent = alice.call("send_message", json!({"conversation": sid, "body": "secret"})).await.unwrap();
    assert_eq!(receiver.next().await.param("Body"), Some("secret"));
    let (_, messages) = api.get(&format!("/v1/Conversations/{sid}/Messages")).await;
    let stored = &messages["messages"][0];
    assert_eq!(stored["index"], sent["index"], "{sent}");
    assert_eq!(stored["body"], "[redacted]");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(stored["attributes"].as_str().unwrap()).unwrap()["moderated"],
        true
    );

    receiver.answer(200, r#"{"FriendlyName": "Chosen by the hook"}"#);
    alice.call("update_conversation", json!({"conversation": sid, "friendly_name": "mine"})).await.unwrap();
    assert_eq!(receiver.next().await.event_type(), "onConversationUpdate");
    let (_, conversation) = api.get(&format!("/v1/Conversations/{sid}")).await;
    assert_eq!(conversation["friendly_name"], "Chosen by the hook");

    // REST actions never ask pre-event hooks.
    receiver.answer(403, "");
    api.messages(&sid, 1).await;
    receiver.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn an_unreachable_pre_hook_rejects_the_action() {
    let api = Api::start().await;
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/pre", closed.local_addr().unwrap());
    drop(closed);
    api.post("/v1/Configuration/Webhooks", &[("Filters", "onMessageAdd"), ("PreWebhookUrl", &url)]).await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;
    let sid = conversation_with(&mut alice, &[]).await;
    let error = alice.call("send_message", json!({"conversation": sid, "body": "hello?"})).await.unwrap_err();
    assert_eq!(error["status"], 403, "{error}");
}

#[tokio::test]
async fn failed_deliveries_are_retried_across_a_restart_and_sent_once() {
    let mut api = Api::start().await;
    let mut receiver = Receiver::start(api.server.auth_token()).await;
    api.post(
        "/v1/Configuration/Webhooks",
        &[("Filters", "onMessageAdded"), ("PostWebhookUrl", &receiver.url("/post"))],
    )
    .await;
    let sid = api.conversation(&[]).await;

    // The first attempt fails; the server then stops before its retry is due.
    receiver.answer(500, "");
    post_with_webhooks(&api, &format!("/v1/Conversations/{sid}/Messages"), &[("Body", "survives")]).await;
    let first = receiver.next().await;
    assert_eq!((first.param("Body"), first.param("RetryCount")), (Some("survives"), Some("0")));
    api.server.stop().await;

    // The restarted server finds the failed entry in its outbox and carries on with new events too.
    api.server.restart().await;
    post_with_webhooks(&api, &format!("/v1/Conversations/{sid}/Messages"), &[("Body", "after restart")]).await;

    let mut got = [receiver.next().await, receiver.next().await];
    got.sort_by_key(|h| h.param("Body").map(str::to_string));
    assert_eq!(got[0].param("Body"), Some("after restart"));
    assert_eq!(got[0].param("RetryCount"), Some("0"));
    assert_eq!(got[1].param("Body"), Some("survives"));
    assert_eq!(got[1].param("RetryCount"), Some("1"));
    assert_eq!(got[1].param("MessageSid"), first.param("MessageSid"));

    // Delivered means done: another restart sends nothing again.
    api.server.restart().await;
    receiver.assert_silent(Duration::from_millis(1500)).await;
}
