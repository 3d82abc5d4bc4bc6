//! SMS delivery end to end: a local double of the messaging gateway (Twilio's Messaging API shape) records
//! what the server posts and sends signed status callbacks and inbound messages back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use palaver_server::channels::{ChannelSettings, MessagingGatewayConfig};
use palaver_testkit::TestServer;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::api::Api;
use crate::realtime::Raw;

const GATEWAY_ACCOUNT: &str = "AC00000000000000000000000000000042";
const GATEWAY_TOKEN: &str = "gateway-secret-token";
const CUSTOMER: &str = "+15551230001";
const OUR_NUMBER: &str = "+15559990000";

/// A message the gateway was asked to send.
#[derive(Debug)]
struct Sent {
    account: String,
    authorization: Option<String>,
    form: Vec<(String, String)>,
    sid: Option<String>,
}

impl Sent {
    fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
struct GatewayState {
    sent: mpsc::UnboundedSender<Sent>,
    /// Scripted statuses; 201 once they run out.
    answers: Arc<Mutex<VecDeque<u16>>>,
}

struct Gateway {
    url: String,
    sent: mpsc::UnboundedReceiver<Sent>,
    answers: Arc<Mutex<VecDeque<u16>>>,
    http: reqwest::Client,
}

async fn accept(
    State(state): State<GatewayState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
    let status = state.answers.lock().unwrap().pop_front().unwrap_or(201);
    let sid = (status == 201).then(|| format!("SM{}", &palaver_api::sid::MessageSid::generate().as_str()[2..]));
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let _ = state.sent.send(Sent { account, authorization, form, sid: sid.clone() });
    let body = match &sid {
        Some(sid) => json!({"sid": sid, "status": "queued"}),
        None => json!({"code": 20500, "message": "try later", "status": status}),
    };
    (StatusCode::from_u16(status).unwrap(), axum::Json(body))
}

impl Gateway {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, sent) = mpsc::unbounded_channel();
        let answers = Arc::new(Mutex::new(VecDeque::new()));
        let state = GatewayState { sent: tx, answers: answers.clone() };
        let app = axum::Router::new()
            .route("/2010-04-01/Accounts/{account}/Messages.json", axum::routing::post(accept))
            .route(
                "/media/photo.jpg",
                axum::routing::get(|| async { ([("content-type", "image/jpeg")], b"JPEGDATA".to_vec()) }),
            )
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, sent, answers, http: reqwest::Client::new() }
    }

    fn settings(&self) -> ChannelSettings {
        ChannelSettings {
            messaging_gateway: Some(MessagingGatewayConfig {
                url: self.url.clone(),
                account_sid: GATEWAY_ACCOUNT.into(),
                auth_token: GATEWAY_TOKEN.into(),
            }),
            ..ChannelSettings::default()
        }
    }

    async fn next(&mut self) -> Sent {
        tokio::time::timeout(Duration::from_secs(15), self.sent.recv())
            .await
            .expect("a gateway request in time")
            .unwrap()
    }

    async fn assert_silent(&mut self, wait: Duration) {
        if let Ok(Some(sent)) = tokio::time::timeout(wait, self.sent.recv()).await {
            panic!("unexpected gateway request {sent:?}");
        }
    }

    /// Posts a form to the server as the gateway does: signed with the gateway's auth token.
    async fn callback(&self, url: &str, form: &[(&str, &str)]) -> (u16, String) {
        let params: Vec<(String, String)> = form.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        let response = self
            .http
            .post(url)
            .header("X-Twilio-Signature", palaver_server::webhooks::signature(GATEWAY_TOKEN, url, &params))
            .form(form)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

async fn api_with(gateway: &Gateway) -> Api {
    Api { http: reqwest::Client::new(), server: TestServer::spawn_with_channels(gateway.settings()).await }
}

async fn sms_conversation(api: &Api) -> (String, String) {
    let sid = api.conversation(&[("FriendlyName", "support")]).await;
    let (status, sms) = api
        .post(
            &format!("/v1/Conversations/{sid}/Participants"),
            &[("MessagingBinding.Address", CUSTOMER), ("MessagingBinding.ProxyAddress", OUR_NUMBER)],
        )
        .await;
    assert_eq!(status, 201, "{sms}");
    let (status, alice) = api.post(&format!("/v1/Conversations/{sid}/Participants"), &[("Identity", "alice")]).await;
    assert_eq!(status, 201, "{alice}");
    (sid, sms["sid"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn sms_participants_get_messages_and_receipts_flow_back() {
    let mut gateway = Gateway::start().await;
    let api = api_with(&gateway).await;
    let mut hooks = crate::webhooks::Receiver::start(api.server.auth_token()).await;
    let (status, _) = api
        .post("/v1/Configuration/Webhooks", &[("Filters", "onDeliveryUpdated"), ("PostWebhookUrl", &hooks.url("/d"))])
        .await;
    assert_eq!(status, 200);
    let (sid, sms_participant) = sms_conversation(&api).await;
    let (mut alice, _) = Raw::connect(&api, "alice").await;

    let sent = alice.call("send_message", json!({"conversation": sid, "body": "hello by sms"})).await.unwrap();
    let request = gateway.next().await;
    assert_eq!(request.account, GATEWAY_ACCOUNT);
    let expected_auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{GATEWAY_ACCOUNT}:{GATEWAY_TOKEN}")
        )
    );
    assert_eq!(request.authorization.as_deref(), Some(expected_auth.as_str()));
    assert_eq!(request.field("To"), Some(CUSTOMER));
    assert_eq!(request.field("From"), Some(OUR_NUMBER));
    assert_eq!(request.field("Body"), Some("hello by sms"));
    let callback = format!("{}/v1/Channels/Messaging/Status", api.server.url());
    assert_eq!(request.field("StatusCallback"), Some(callback.as_str()));
    let channel_sid = request.sid.clone().unwrap();

    // The receipt records the gateway's acceptance.
    let index = sent["index"].as_i64().unwrap();
    let message = eventually_message(&api, &sid, index, |m| m["delivery"]["sent"] == "all").await;
    assert_eq!(message["delivery"]["total"], 1);
    assert_eq!(message["delivery"]["delivered"], "none");
    let message_sid = message["sid"].as_str().unwrap();
    let receipts_path = format!("/v1/Conversations/{sid}/Messages/{message_sid}/Receipts");
    let (status, receipts) = api.get(&receipts_path).await;
    assert_eq!(status, 200, "{receipts}");
    let receipt = &receipts["delivery_receipts"][0];
    assert!(receipt["sid"].as_str().unwrap().starts_with("DY"));
    assert_eq!(receipt["status"], "sent");
    assert_eq!(receipt["participant_sid"], sms_participant.as_str());
    assert_eq!(receipt["channel_message_sid"], channel_sid.as_str());
    let (status, fetched) = api.get(&format!("{receipts_path}/{}", receipt["sid"].as_str().unwrap())).await;
    assert_eq!((status, fetched["sid"].clone()), (200, receipt["sid"].clone()));

    // The gateway reports delivery: listeners see the message's aggregate change.
    let (status, text) =
        gateway.callback(&callback, &[("MessageSid", &channel_sid), ("MessageStatus", "delivered")]).await;
    assert_eq!(status, 204, "{text}");
    let update = alice
        .wait_for("delivery.updated", |f| {
            f["kind"] == "delivery.updated" && f["data"]["delivery"]["delivered"] == "all"
        })
        .await;
    assert_eq!(update["data"]["receipt"]["status"], "delivered");
    assert_eq!(update["data"]["sid"], message_sid);
    // Webhooks hear of both steps: accepted by the gateway, then delivered.
    for expected in ["sent", "delivered"] {
        let hit = hooks.next().await;
        assert_eq!(hit.event_type(), "onDeliveryUpdated");
        assert_eq!(hit.param("Status"), Some(expected));
        assert_eq!(hit.param("MessageSid"), Some(message_sid));
        assert_eq!(hit.param("ChannelMessageSid"), Some(channel_sid.as_str()));
        assert!(hit.param("DeliverySid").is_some_and(|d| d.starts_with("DY")));
    }
    // A late `sent` does not move it back.
    gateway.callback(&callback, &[("MessageSid", &channel_sid), ("MessageStatus", "sent")]).await;
    assert_eq!(api.get(&receipts_path).await.1["delivery_receipts"][0]["status"], "delivered");
    // Unsigned callbacks are refused.
    let forged = reqwest::Client::new()
        .post(&callback)
        .form(&[("MessageSid", channel_sid.as_str()), ("MessageStatus", "failed")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);

    // The customer replies: the message lands in the same conversation, from their participant.
    let inbound = format!("{}/v1/Channels/Messaging/Inbound", api.server.url());
    let (status, twiml) = gateway
        .callback(&inbound, &[("From", CUSTOMER), ("To", OUR_NUMBER), ("Body", "thanks!"), ("MessageSid", "SMabc")])
        .await;
    assert_eq!(status, 200, "{twiml}");
    assert!(twiml.contains("<Response>"), "{twiml}");
    let added = alice.wait_for("reply", |f| f["kind"] == "message.added" && f["data"]["body"] == "thanks!").await;
    assert_eq!(added["data"]["author"], CUSTOMER);
    assert_eq!(added["data"]["participant_sid"], sms_participant.as_str());
    assert_eq!(added["data"]["delivery"], Value::Null, "no echo to the sender");
    gateway.assert_silent(Duration::from_millis(300)).await;

    // The SDK sees the real recipients and the detailed receipts.
    let recipients =
        alice.call("get_message_recipients", json!({"conversation": sid, "message": message_sid})).await.unwrap();
    assert_eq!(recipients["items"][0]["address"], CUSTOMER);
    assert_eq!(recipients["items"][0]["status"], "delivered");
    let detailed =
        alice.call("get_delivery_receipts", json!({"conversation": sid, "message": message_sid})).await.unwrap();
    assert_eq!(detailed["items"][0]["channel_message_sid"], channel_sid.as_str());
}

async fn eventually_message(api: &Api, sid: &str, index: i64, ready: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..150 {
        let (_, page) = api.get(&format!("/v1/Conversations/{sid}/Messages")).await;
        if let Some(m) = page["messages"].as_array().unwrap().iter().find(|m| m["index"] == index)
            && ready(m)
        {
            return m.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("message {index} never reached the expected state");
}

#[tokio::test]
async fn address_configurations_start_conversations_for_new_senders() {
    let gateway = Gateway::start().await;
    let api = api_with(&gateway).await;
    let inbound = format!("{}/v1/Channels/Messaging/Inbound", api.server.url());

    // No conversation and no configuration: dropped, but acknowledged so the gateway does not retry.
    let (status, _) =
        gateway.callback(&inbound, &[("From", "+15550000001"), ("To", "+15558880000"), ("Body", "hi")]).await;
    assert_eq!(status, 200);
    assert_eq!(api.get("/v1/Conversations").await.1["conversations"], json!([]));

    let (status, config) = api
        .post(
            "/v1/Configuration/Addresses",
            &[
                ("Type", "sms"),
                ("Address", "+15558880000"),
                ("FriendlyName", "Front desk"),
                ("AutoCreation.Enabled", "true"),
                ("AutoCreation.Type", "default"),
            ],
        )
        .await;
    assert_eq!(status, 201, "{config}");
    assert!(config["sid"].as_str().unwrap().starts_with("IG"));
    assert_eq!(config["auto_creation"]["enabled"], true);
    assert_eq!(api.get("/v1/Configuration/Addresses").await.1["address_configurations"][0]["sid"], config["sid"]);
    let duplicate = api.post("/v1/Configuration/Addresses", &[("Type", "sms"), ("Address", "+15558880000")]).await;
    assert_eq!(duplicate.0, 400, "{}", duplicate.1);
    let bad = api.post("/v1/Configuration/Addresses", &[("Type", "pigeon"), ("Address", "x")]).await;
    assert_eq!(bad.0, 400, "{}", bad.1);

    for body in ["first", "second"] {
        let (status, _) =
            gateway.callback(&inbound, &[("From", "+15550000001"), ("To", "+15558880000"), ("Body", body)]).await;
        assert_eq!(status, 200);
    }
    let (_, conversations) = api.get("/v1/Conversations").await;
    let conversations = conversations["conversations"].as_array().unwrap().clone();
    assert_eq!(conversations.len(), 1, "the second message joins the first one's conversation");
    assert_eq!(conversations[0]["friendly_name"], "Front desk");
    let sid = conversations[0]["sid"].as_str().unwrap();
    let (_, participants) = api.get(&format!("/v1/Conversations/{sid}/Participants")).await;
    let binding = &participants["participants"][0]["messaging_binding"];
    assert_eq!(
        (binding["address"].as_str(), binding["proxy_address"].as_str()),
        (Some("+15550000001"), Some("+15558880000"))
    );
    let (_, messages) = api.get(&format!("/v1/Conversations/{sid}/Messages")).await;
    let bodies: Vec<&str> =
        messages["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["first", "second"]);

    // Update and delete by SID.
    let path = format!("/v1/Configuration/Addresses/{}", config["sid"].as_str().unwrap());
    let (status, updated) = api.post(&path, &[("AutoCreation.Enabled", "false")]).await;
    assert_eq!((status, &updated["auto_creation"]["enabled"]), (200, &json!(false)));
    assert_eq!(api.delete(&path).await.0, 204);
    assert_eq!(api.get(&path).await.0, 404);
}

#[tokio::test]
async fn queued_messages_survive_a_restart_and_are_sent_once() {
    let mut gateway = Gateway::start().await;
    let mut api = api_with(&gateway).await;
    let (sid, _) = sms_conversation(&api).await;

    gateway.answers.lock().unwrap().push_back(503);
    let (status, created) = api.post(&format!("/v1/Conversations/{sid}/Messages"), &[("Body", "persistent")]).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["delivery"]["total"], 1);
    let first = gateway.next().await;
    assert_eq!(first.field("Body"), Some("persistent"));
    assert!(first.sid.is_none(), "the first attempt was refused");
    api.server.stop().await;

    api.server.restart().await;
    let second = gateway.next().await;
    assert_eq!(second.field("Body"), Some("persistent"));
    assert!(second.sid.is_some());
    let index = created["index"].as_i64().unwrap();
    eventually_message(&api, &sid, index, |m| m["delivery"]["sent"] == "all").await;
    api.server.restart().await;
    gateway.assert_silent(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn without_a_gateway_messages_wait_queued() {
    let api = Api::start().await;
    let (sid, _) = sms_conversation(&api).await;
    let (_, created) = api.post(&format!("/v1/Conversations/{sid}/Messages"), &[("Body", "later")]).await;
    let message_sid = created["sid"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, receipts) = api.get(&format!("/v1/Conversations/{sid}/Messages/{message_sid}/Receipts")).await;
    assert_eq!(receipts["delivery_receipts"][0]["status"], "queued");
    assert_eq!(api.get(&format!("/v1/Conversations/{sid}/Messages/{message_sid}")).await.1["delivery"]["sent"], "none");
}

#[tokio::test]
async fn mms_media_goes_out_as_signed_urls_and_comes_back_stored() {
    let mut gateway = Gateway::start().await;
    let api = api_with(&gateway).await;
    let (sid, _) = sms_conversation(&api).await;

    let upload = api
        .http
        .post(format!("{}/v1/Media?Filename=map.png", api.server.url()))
        .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
        .header("Content-Type", "image/png")
        .body(b"PNGDATA".to_vec())
        .send()
        .await
        .unwrap();
    let media: Value = upload.json().await.unwrap();
    api.post(&format!("/v1/Conversations/{sid}/Messages"), &[("MediaSid", media["sid"].as_str().unwrap())]).await;
    let sent = gateway.next().await;
    let media_url = sent.field("MediaUrl").expect("the media goes as a URL").to_string();
    assert!(media_url.starts_with(&format!("{}/v1/MediaContent/", api.server.url())), "{media_url}");
    // The gateway fetches it without credentials.
    let fetched = reqwest::get(&media_url).await.unwrap();
    assert_eq!(fetched.status().as_u16(), 200);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), b"PNGDATA");

    // A picture from the phone is fetched from the gateway and stored with the message.
    let inbound = format!("{}/v1/Channels/Messaging/Inbound", api.server.url());
    let photo = format!("{}/media/photo.jpg", gateway.url);
    let (status, _) = gateway
        .callback(
            &inbound,
            &[
                ("From", CUSTOMER),
                ("To", OUR_NUMBER),
                ("Body", ""),
                ("NumMedia", "1"),
                ("MediaUrl0", &photo),
                ("MediaContentType0", "image/jpeg"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let (_, messages) = api.get(&format!("/v1/Conversations/{sid}/Messages?Order=desc&PageSize=1")).await;
    let stored = &messages["messages"][0];
    assert_eq!(stored["author"], CUSTOMER);
    assert_eq!(stored["media"][0]["content_type"], "image/jpeg");
    assert_eq!(stored["media"][0]["size"], 8);
    let content = format!("{}/v1/Media/{}/Content", api.server.url(), stored["media"][0]["sid"].as_str().unwrap());
    let bytes = api
        .http
        .get(content)
        .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), b"JPEGDATA");
}

#[tokio::test]
async fn refused_messages_fail_with_the_gateways_code() {
    let mut gateway = Gateway::start().await;
    let api = api_with(&gateway).await;
    let (sid, _) = sms_conversation(&api).await;
    gateway.answers.lock().unwrap().push_back(400);
    let (_, created) = api.post(&format!("/v1/Conversations/{sid}/Messages"), &[("Body", "to a bad number")]).await;
    gateway.next().await;
    let index = created["index"].as_i64().unwrap();
    let message = eventually_message(&api, &sid, index, |m| m["delivery"]["failed"] == "all").await;
    let (_, receipts) =
        api.get(&format!("/v1/Conversations/{sid}/Messages/{}/Receipts", message["sid"].as_str().unwrap())).await;
    assert_eq!(receipts["delivery_receipts"][0]["status"], "failed");
    assert_eq!(receipts["delivery_receipts"][0]["error_code"], 20500, "the gateway's own error code is kept");
    // A permanent refusal is not retried.
    gateway.assert_silent(Duration::from_millis(1500)).await;

    // Operators find it among the failures of every conversation, with the recipient's address and the error;
    // the whole list runs newest first, page by page.
    let (other, _) = sms_conversation(&api).await;
    let (status, _) = api.post(&format!("/v1/Conversations/{other}/Messages"), &[("Body", "still waiting")]).await;
    assert_eq!(status, 201);
    let (_, failures) = api.get("/palaver/v1/ChannelDeliveries?Failed=true").await;
    let failures = failures["channel_deliveries"].as_array().unwrap().clone();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let failed = &failures[0];
    assert_eq!((failed["channel"].as_str(), failed["address"].as_str()), (Some("sms"), Some(CUSTOMER)));
    assert_eq!(
        (failed["receipt"]["status"].as_str(), failed["receipt"]["error_code"].as_i64()),
        (Some("failed"), Some(20500))
    );
    assert_eq!(
        (failed["receipt"]["conversation_sid"].as_str(), failed["message_index"].as_i64()),
        (Some(sid.as_str()), Some(index))
    );
    assert_eq!((failed["attempts"].as_u64(), failed["message_delivery"]["failed"].as_str()), (Some(1), Some("all")));
    assert!(failed["last_error"].is_string() && failed["date_created"].is_string(), "{failed}");
    let (_, everything) = api.get("/palaver/v1/ChannelDeliveries?PageSize=1").await;
    let newest = &everything["channel_deliveries"][0];
    assert_eq!(
        (newest["receipt"]["conversation_sid"].as_str(), newest["address"].as_str()),
        (Some(other.as_str()), Some(CUSTOMER))
    );
    let next = everything["meta"]["next_page_url"].as_str().expect("a second page").to_string();
    let (_, second) = api.get(&next).await;
    assert_eq!(second["channel_deliveries"][0]["receipt"]["sid"], failed["receipt"]["sid"]);
    let (_, in_other) = api.get(&format!("/palaver/v1/ChannelDeliveries?Failed=true&ConversationSid={other}")).await;
    assert_eq!(in_other["channel_deliveries"], json!([]));
}
