//! Regression tests for holes found by attacking a running server: a request that stopped every write, a
//! non-participant reading a conversation, uploaded HTML served inline, and the lower-case Basic scheme.

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
