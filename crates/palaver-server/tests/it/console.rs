//! The web console's page and files, and Palaver's own resources under `/palaver/v1` that it uses:
//! access tokens for an identity, the webhook delivery history and outbox, channel delivery receipts.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{Api, assert_error};
use crate::realtime::Raw;
use crate::webhooks::Receiver;

async fn get_raw(api: &Api, path: &str, etag: Option<&str>) -> reqwest::Response {
    let mut request = api.http.get(format!("{}{path}", api.server.url()));
    if let Some(etag) = etag {
        request = request.header("If-None-Match", etag);
    }
    request.send().await.expect("request reaches the server")
}

#[tokio::test]
async fn the_console_page_and_its_files_are_served_with_a_strict_policy_and_caching() {
    let api = Api::start().await;
    let page = get_raw(&api, "/console", None).await;
    assert_eq!(page.status(), 200);
    let header = |name: &str| page.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(header("content-type").starts_with("text/html"));
    assert_eq!(header("cache-control"), "no-cache");
    assert_eq!(header("x-content-type-options"), "nosniff");
    let policy = header("content-security-policy");
    for directive in ["default-src 'none'", "script-src 'self';", "frame-ancestors 'none'", "img-src 'self' blob:;"] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    let etag = header("etag");
    let html = page.text().await.unwrap();
    let script = html.split('"').find(|part| part.starts_with("/console/assets/") && part.ends_with(".js")).unwrap();

    let file = get_raw(&api, script, None).await;
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert!(file.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(!file.bytes().await.unwrap().is_empty());

    assert_eq!(get_raw(&api, "/console/", Some(&etag)).await.status(), 304, "an unchanged page is not sent again");
    let missing = get_raw(&api, "/console/assets/missing.js", None).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["code"], 20404);
}

#[tokio::test]
async fn access_tokens_are_minted_for_an_identity_and_accepted_by_the_realtime_api() {
    let api = Api::start().await;
    let (status, minted) = api.post("/palaver/v1/AccessTokens", &[("Identity", "alice"), ("Ttl", "600")]).await;
    assert_eq!(status, 201, "{minted}");
    assert_eq!(minted["identity"], "alice");
    assert_eq!(minted["ttl"], 600);
    assert!(minted["api_key_sid"].as_str().unwrap().starts_with("SK"));

    let mut raw = Raw::open(&api).await;
    let connected = raw.call("connect", json!({"token": minted["token"]})).await.expect("the token is accepted");
    assert_eq!(connected["identity"], "alice");

    // Signed with the key the caller logged in with, when it logged in with one.
    let (key_sid, key_secret) = api.server.api_key();
    let response = api
        .http
        .post(format!("{}/palaver/v1/AccessTokens", api.server.url()))
        .basic_auth(key_sid, Some(key_secret))
        .form(&[("Identity", "bob")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.json::<Value>().await.unwrap()["api_key_sid"], key_sid);
}

#[tokio::test]
async fn access_tokens_need_credentials_and_valid_parameters() {
    let api = Api::start().await;
    let anonymous = api
        .http
        .post(format!("{}/palaver/v1/AccessTokens", api.server.url()))
        .form(&[("Identity", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_error(&api.post("/palaver/v1/AccessTokens", &[]).await, 400, 20001);
    assert_error(&api.post("/palaver/v1/AccessTokens", &[("Identity", "")]).await, 400, 20001);
    for ttl in ["0", "86401", "soon"] {
        assert_error(&api.post("/palaver/v1/AccessTokens", &[("Identity", "a"), ("Ttl", ttl)]).await, 400, 20001);
    }
    assert_error(
        &api.post("/palaver/v1/AccessTokens", &[("Identity", "a"), ("ChatServiceSid", "IS1")]).await,
        400,
        20001,
    );
    let unknown = "IS00000000000000000000000000000000";
    assert_error(
        &api.post("/palaver/v1/AccessTokens", &[("Identity", "a"), ("ChatServiceSid", unknown)]).await,
        404,
        20404,
    );
}

/// Reads the list until `pred` holds for one of its items.
async fn eventually(api: &Api, path: &str, key: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 200, "{body}");
        if let Some(found) = body[key].as_array().unwrap().iter().find(|item| pred(item)) {
            return found.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no item of {path} as expected: {:?}", api.get(path).await.1);
}

#[tokio::test]
async fn webhook_attempts_are_listed_with_their_outcome_and_next_retry() {
    let mut api = Api::start().await;
    let mut receiver = Receiver::start(api.server.auth_token()).await;
    // A port that refuses connections: bound, then closed.
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", listener.local_addr().unwrap())
    };
    let conversation = api.conversation(&[("FriendlyName", "hooked")]).await;
    for url in [receiver.url("/ok"), refused.clone()] {
        let form =
            [("Target", "webhook"), ("Configuration.Url", url.as_str()), ("Configuration.Filters", "onMessageAdded")];
        let (status, body) = api.post(&format!("/v1/Conversations/{conversation}/Webhooks"), &form).await;
        assert_eq!(status, 201, "{body}");
    }
    // REST changes announce themselves to webhooks when asked to.
    let created = api
        .http
        .post(format!("{}/v1/Conversations/{conversation}/Messages", api.server.url()))
        .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
        .header("X-Twilio-Webhook-Enabled", "true")
        .form(&[("Body", "hi")])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    receiver.next().await;

    let path = "/palaver/v1/WebhookDeliveries";
    let delivered = eventually(&api, path, "webhook_deliveries", |a| a["outcome"] == "delivered").await;
    assert_eq!(delivered["url"], receiver.url("/ok"));
    assert_eq!(delivered["event_type"], "onMessageAdded");
    assert_eq!(delivered["conversation_sid"], conversation.as_str());
    assert_eq!(delivered["attempt"], 1);
    assert!(delivered["next_retry"].is_null() && delivered["error"].is_null());
    let failed = eventually(&api, path, "webhook_deliveries", |a| a["url"] == refused.as_str()).await;
    assert_eq!(failed["outcome"], "retrying");
    assert!(failed["error"].as_str().unwrap().starts_with("no answer"), "{failed}");
    assert!(failed["next_retry"].as_str().unwrap().ends_with('Z'));

    let (_, only) = api.get(&format!("{path}?Outcome=retrying&ConversationSid={conversation}")).await;
    let only = only["webhook_deliveries"].as_array().unwrap().clone();
    assert!(!only.is_empty() && only.iter().all(|a| a["outcome"] == "retrying"), "{only:?}");
    let (_, none) = api.get(&format!("{path}?ConversationSid=CH00000000000000000000000000000000")).await;
    assert_eq!(none["webhook_deliveries"], json!([]));
    assert_error(&api.get(&format!("{path}?Outcome=lost")).await, 400, 20001);
    assert_error(&api.get(&format!("{path}?PageSize=0")).await, 400, 20001);

    // The failing request waits in the outbox with its attempts, last error and next attempt.
    let outbox = "/palaver/v1/WebhookOutbox";
    let waiting = eventually(&api, &format!("{outbox}?State=pending"), "webhook_outbox", |e| {
        e["url"] == refused.as_str() && e["attempts"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!((waiting["state"].as_str(), waiting["event_type"].as_str()), (Some("pending"), Some("onMessageAdded")));
    assert_eq!(waiting["conversation_sid"], conversation.as_str());
    assert!(waiting["last_error"].as_str().unwrap().starts_with("no answer"), "{waiting}");
    assert!(waiting["next_attempt"].as_str().unwrap().ends_with('Z') && waiting["date_created"].is_string());
    let (_, all) = api.get(outbox).await;
    assert!(all["webhook_outbox"].as_array().unwrap().iter().all(|e| e["url"] == refused.as_str()), "{all}");
    let (_, dead) = api.get(&format!("{outbox}?State=dead")).await;
    assert_eq!(dead["webhook_outbox"], json!([]));
    assert_error(&api.get(&format!("{outbox}?State=lost")).await, 400, 20001);

    // Paged like the rest of the API, newest first.
    let (_, first) = api.get(&format!("{path}?PageSize=1")).await;
    assert_eq!(
        (first["meta"]["page_size"].as_u64(), first["meta"]["key"].as_str()),
        (Some(1), Some("webhook_deliveries"))
    );
    let next = first["meta"]["next_page_url"].as_str().expect("a second page").to_string();
    let (_, second) = api.get(&next).await;
    let (newer, older) = (&first["webhook_deliveries"][0], &second["webhook_deliveries"][0]);
    assert!(newer["date_created"].as_str() >= older["date_created"].as_str(), "{newer} then {older}");
    assert_ne!((&newer["outbox_id"], &newer["attempt"]), (&older["outbox_id"], &older["attempt"]));

    // Recorded in the database: a restarted server lists what it sent before.
    api.server.restart().await;
    let (_, after) = api.get(&format!("{path}?Outcome=delivered")).await;
    assert!(
        after["webhook_deliveries"].as_array().unwrap().iter().any(|a| a["url"] == receiver.url("/ok").as_str()),
        "{after}"
    );
}

#[tokio::test]
async fn channel_delivery_filters_are_checked() {
    let api = Api::start().await;
    let (status, body) = api.get("/palaver/v1/ChannelDeliveries?Failed=true").await;
    assert_eq!(status, 200);
    assert_eq!(body["channel_deliveries"], json!([]));
    assert_eq!(body["meta"]["key"], "channel_deliveries");
    assert_error(&api.get("/palaver/v1/ChannelDeliveries?Status=lost").await, 400, 20001);
    assert_error(&api.get("/palaver/v1/ChannelDeliveries?Failed=maybe").await, 400, 20001);
    assert_error(&api.get("/palaver/v1/ChannelDeliveries?ConversationSid=nope").await, 400, 20001);
}
