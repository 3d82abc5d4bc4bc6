//! Regression tests for holes found by attacking a running server: a request that stopped every write, a
//! non-participant reading a conversation, uploaded HTML served inline, and the lower-case Basic scheme; and
//! those found by Schemathesis with Twilio's OpenAPI spec (`tests/conformance/test_twilio_openapi.py`): NUL
//! characters (a 500 on PostgreSQL), a malformed `X-Twilio-Webhook-Enabled`, and settings that name a missing
//! role, service or Studio flow.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{Api, assert_error};
use crate::realtime::Raw;

/// Every later write still works and `/healthz` still says so.
async fn assert_writes_still_work(api: &Api) {
    let (status, body) = api.post("/v1/Conversations", &[("FriendlyName", "after")]).await;
    assert_eq!(status, 201, "writes keep working: {body}");
    assert_eq!(reqwest::get(format!("{}/healthz", api.server.url())).await.unwrap().status(), 200);
}

#[tokio::test]
async fn out_of_range_durations_and_dates_are_400s_and_leave_the_writer_running() {
    let api = Api::start().await;
    let conv = api.conversation(&[]).await;
    let path = format!("/v1/Conversations/{conv}");
    for (field, value) in [
        ("Timers.Closed", "P3000000D"),
        ("Timers.Inactive", "P2920000D"),
        ("Timers.Closed", "PT99999999999999999S"),
        ("Timers.Inactive", "P36501D"),
    ] {
        assert_error(&api.post(&path, &[(field, value)]).await, 400, 20001);
        assert_error(&api.post("/v1/Conversations", &[(field, value)]).await, 400, 20001);
    }
    for field in ["DefaultClosedTimer", "DefaultInactiveTimer"] {
        assert_error(&api.post("/v1/Configuration", &[(field, "P3000000D")]).await, 400, 20001);
    }
    // The longest accepted timer is armed, and shows as a date.
    let (status, body) = api.post(&path, &[("State", "active"), ("Timers.Closed", "P36500D")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["timers"]["date_closed"].as_str().is_some_and(|d| d.starts_with("21")), "{body}");
    // A bare end date at the calendar's end, and dates past it.
    assert_error(&api.get("/v1/Conversations?EndDate=9999-12-31").await, 400, 20001);
    assert_error(&api.post("/v1/Conversations", &[("DateCreated", "10000-01-01T00:00:00Z")]).await, 400, 20001);
    assert_writes_still_work(&api).await;
}

#[tokio::test]
async fn a_token_with_an_extreme_expiry_is_refused_or_accepted_without_a_crash() {
    let api = Api::start().await;
    let key_sid = palaver_api::sid::ApiKeySid::parse(api.server.api_key().0).unwrap();
    let account_sid = palaver_api::sid::AccountSid::parse(api.server.account_sid()).unwrap();
    for exp in [i64::MAX, i64::MIN, 0] {
        let token = palaver_server::token::mint(&palaver_server::token::MintRequest {
            key_sid: &key_sid,
            key_secret: api.server.api_key().1,
            account_sid: &account_sid,
            identity: "alice",
            service_sid: None,
            ttl_secs: exp.saturating_sub(time::OffsetDateTime::now_utc().unix_timestamp()),
        });
        let mut raw = Raw::open(&api).await;
        // Either answer is fine for the extremes; what matters is an answer, and a server that goes on.
        let _ = raw.call("connect", json!({"token": token})).await;
    }
    assert_writes_still_work(&api).await;
}

#[tokio::test]
async fn healthz_fails_while_the_store_cannot_write_and_recovers_after() {
    let api = Api::start().await;
    assert_eq!(reqwest::get(format!("{}/healthz", api.server.url())).await.unwrap().status(), 200);
    // Another process holding the database's write lock keeps the writer from starting any transaction.
    let blocker = rusqlite::Connection::open(api.server.database_path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let response = client.get(format!("{}/healthz", api.server.url())).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("unhealthy"));
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    assert_writes_still_work(&api).await;
}

#[tokio::test]
async fn a_user_outside_a_conversation_cannot_read_it_over_realtime() {
    let api = Api::start().await;
    let conv = api.conversation(&[("UniqueName", "private-room")]).await;
    let participants = format!("/v1/Conversations/{conv}/Participants");
    assert_eq!(api.post(&participants, &[("Identity", "alice")]).await.0, 201);
    let (status, _) =
        api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Author", "alice"), ("Body", "secret one")]).await;
    assert_eq!(status, 201);

    let (mut mallory, _) = Raw::connect(&api, "mallory").await;
    // Subscribing by SID or unique name shows the conversation (it may be joined) but no stream.
    for name in [conv.as_str(), "private-room"] {
        let peeked = mallory.call("subscribe", json!({"conversation": name, "after_seq": 0})).await.unwrap();
        assert_eq!(peeked["status"], "not_participating", "{peeked}");
        assert_eq!(peeked["unread_messages_count"], Value::Null);
    }
    for (method, params) in [
        ("get_counts", json!({"conversation": conv})),
        ("get_messages", json!({"conversation": conv})),
        ("get_participants", json!({"conversation": conv})),
        ("get_unread_count", json!({"conversation": conv})),
        ("typing", json!({"conversation": conv})),
    ] {
        let refused = mallory.call(method, params).await.expect_err(method);
        assert_eq!(refused["status"], 403, "{method}: {refused}");
    }
    // Nothing of the conversation arrives: not the stored message, not a new one, not typing.
    let (status, _) =
        api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Author", "alice"), ("Body", "secret two")]).await;
    assert_eq!(status, 201);
    let seen = mallory.drain(Duration::from_millis(500)).await;
    assert!(!seen.iter().any(|frame| frame.to_string().contains("secret")), "leaked: {seen:?}");

    // Once added, the user reads the whole conversation, live from then on.
    assert_eq!(api.post(&participants, &[("Identity", "mallory")]).await.0, 201);
    let history = mallory.call("get_messages", json!({"conversation": conv})).await.unwrap();
    assert_eq!(history["items"].as_array().map(Vec::len), Some(2), "{history}");
    let (status, _) =
        api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Author", "alice"), ("Body", "now shared")]).await;
    assert_eq!(status, 201);
    mallory.wait_for("the live message", |f| f.to_string().contains("now shared")).await;
}

#[tokio::test]
async fn uploaded_html_is_served_as_an_attachment_that_cannot_run() {
    let api = Api::start().await;
    let html = b"<html><script>alert(document.cookie)</script></html>".to_vec();
    let response = api
        .http
        .post(format!("{}/v1/Media", api.server.url()))
        .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
        .query(&[("Filename", "page\".html")])
        .header("Content-Type", "text/html")
        .body(html.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let media: Value = response.json().await.unwrap();
    let links = &media["links"];
    for (url, basic) in
        [(links["content"].as_str().unwrap(), true), (links["content_direct_temporary"].as_str().unwrap(), false)]
    {
        let mut request = api.http.get(url);
        if basic {
            request = request.basic_auth(api.server.account_sid(), Some(api.server.auth_token()));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(header("content-disposition").as_deref(), Some("attachment; filename=\"page_.html\""));
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
        let policy = header("content-security-policy").unwrap_or_default();
        assert!(policy.contains("default-src 'none'") && policy.contains("sandbox"), "{policy}");
        assert_eq!(response.bytes().await.unwrap().to_vec(), html);
    }
}

#[tokio::test]
async fn the_basic_scheme_name_is_case_insensitive() {
    use base64::Engine;
    let api = Api::start().await;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        api.server.account_sid(),
        api.server.auth_token()
    ));
    for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
        let response = api
            .http
            .get(format!("{}/v1/Conversations", api.server.url()))
            .header("Authorization", format!("{scheme} {credentials}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
    let wrong = api
        .http
        .get(format!("{}/v1/Conversations", api.server.url()))
        .header("Authorization", format!("Bearer {credentials}"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

#[tokio::test]
async fn nul_characters_are_refused_wherever_they_come_in() {
    let api = Api::start().await;
    let conv = api.conversation(&[]).await;
    for (path, form) in [
        ("/v1/Conversations".to_string(), [("FriendlyName", "a\0b")]),
        ("/v1/Users".to_string(), [("Identity", "nul\0")]),
        (format!("/v1/Conversations/{conv}/Messages"), [("Body", "hello\0")]),
        (format!("/v1/Conversations/{conv}/Participants"), [("Identity", "\0")]),
    ] {
        let response = api.post(&path, &form).await;
        assert_error(&response, 400, 20001);
        let message = response.1["message"].as_str().unwrap();
        assert!(message.contains(form[0].0) && message.contains("NUL"), "{message}");
    }
    let response = api.get("/v1/ParticipantConversations?Identity=a%00b").await;
    assert_error(&response, 400, 20001);
    assert!(response.1["message"].as_str().unwrap().contains("Identity"), "{}", response.1);
    // No name or SID can hold one, so a path with one names nothing: conversations and users are looked up by
    // unique name and identity too.
    for path in ["/Conversations/a%00b", "/Users/a%00b/Conversations/x", "/Conversations/a%00b/Participants/p%00"] {
        let response = api.get(&format!("/v1{path}")).await;
        assert_error(&response, 404, 20404);
        assert_eq!(response.1["message"], format!("The requested resource {path} was not found"));
    }
    // A NUL written as an escape inside JSON attributes is ordinary text.
    let (status, body) = api.post("/v1/Conversations", &[("Attributes", r#"{"a":"\u0000"}"#)]).await;
    assert_eq!(status, 201, "{body}");
    assert_writes_still_work(&api).await;
}

#[tokio::test]
async fn x_twilio_webhook_enabled_is_true_or_false() {
    let api = Api::start().await;
    let create = |value: &'static str| {
        api.http.post(format!("{}/v1/Conversations", api.server.url())).header("X-Twilio-Webhook-Enabled", value)
    };
    for value in ["true", "FALSE", " True "] {
        let (status, body) = api.send(create(value)).await;
        assert_eq!(status, 201, "{value}: {body}");
    }
    for value in ["yes", "1", ""] {
        let response = api.send(create(value)).await;
        assert_error(&response, 400, 20001);
        assert!(response.1["message"].as_str().unwrap().contains("X-Twilio-Webhook-Enabled"), "{}", response.1);
    }
}

#[tokio::test]
async fn settings_naming_a_missing_role_service_or_flow_are_400s_not_404s() {
    let api = Api::start().await;
    let (_, config) = api.get("/v1/Configuration").await;
    let service = config["default_chat_service_sid"].as_str().unwrap().to_string();
    let (status, other) = api.post("/v1/Services", &[("FriendlyName", "other")]).await;
    assert_eq!(status, 201, "{other}");
    let (_, roles) = api.get(&format!("/v1/Services/{}/Roles", other["sid"].as_str().unwrap())).await;
    let foreign_role = roles["roles"][0]["sid"].as_str().unwrap().to_string();
    let missing_role = format!("RL{}", "0".repeat(32));
    for role in [&foreign_role, &missing_role] {
        for field in ["DefaultConversationCreatorRoleSid", "DefaultConversationRoleSid", "DefaultChatServiceRoleSid"] {
            let response = api.post(&format!("/v1/Services/{service}/Configuration"), &[(field, role)]).await;
            assert_error(&response, 400, 20001);
            assert!(response.1["message"].as_str().unwrap().contains(field), "{}", response.1);
        }
    }
    let conv = api.conversation(&[]).await;
    let response = api
        .post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", "a"), ("RoleSid", &missing_role)])
        .await;
    assert_error(&response, 400, 20001);
    let (status, body) = api.get(&format!("/v1/Conversations/{conv}/Participants")).await;
    assert_eq!((status, body["participants"].as_array().map(Vec::len)), (200, Some(0)), "{body}");

    let webhooks = format!("/v1/Conversations/{conv}/Webhooks");
    let bad_flow = format!("FW{}*", "a".repeat(31));
    let hook = [("Target", "webhook"), ("Configuration.Url", "http://127.0.0.1:9/hook")];
    let response = api.post(&webhooks, &[hook[0], hook[1], ("Configuration.FlowSid", &bad_flow)]).await;
    assert_error(&response, 400, 20001);
    let (status, created) = api.post(&webhooks, &hook).await;
    assert_eq!(status, 201, "{created}");
    let update = format!("{webhooks}/{}", created["sid"].as_str().unwrap());
    let response = api.post(&update, &[("Configuration.FlowSid", &bad_flow)]).await;
    assert_error(&response, 400, 20001);
    assert!(response.1["message"].as_str().unwrap().contains("Configuration.FlowSid"), "{}", response.1);

    let address = |extra: (&'static str, String)| {
        let form = vec![("Type", "sms".to_string()), ("Address", "+15550001111".to_string()), extra];
        api.http.post(format!("{}/v1/Configuration/Addresses", api.server.url())).form(&form)
    };
    let missing_service = ("AutoCreation.ConversationServiceSid", format!("IS{}", "0".repeat(32)));
    for extra in [missing_service, ("AutoCreation.StudioFlowSid", format!("FW{}*", "a".repeat(31)))] {
        let field = extra.0;
        let response = api.send(address(extra)).await;
        assert_error(&response, 400, 20001);
        assert!(response.1["message"].as_str().unwrap().contains(field), "{}", response.1);
    }
    let (status, created) = api.send(address(("AutoCreation.StudioFlowSid", format!("FW{}", "a".repeat(32))))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["auto_creation"]["studio_flow_sid"], format!("FW{}", "a".repeat(32)));
}
