use crate::api::{Api, assert_error};

#[tokio::test]
async fn create_fetch_update_delete_by_sid_and_unique_name() {
    let api = Api::start().await;
    let (status, created) = api
        .post(
            "/v1/Conversations",
            &[("FriendlyName", "Support"), ("UniqueName", "support-1"), ("Attributes", r#"{"topic":"billing"}"#)],
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let sid = created["sid"].as_str().unwrap();
    assert!(sid.starts_with("CH") && sid.len() == 34);
    assert_eq!(created["attributes"], r#"{"topic":"billing"}"#);
    assert_eq!(created["state"], "active");
    assert_eq!(created["url"], format!("{}/v1/Conversations/{sid}", api.server.url()));
    assert_eq!(created["links"]["messages"], format!("{}/v1/Conversations/{sid}/Messages", api.server.url()));

    let (_, by_name) = api.get("/v1/Conversations/support-1").await;
    assert_eq!(by_name["sid"], sid);

    let (status, updated) = api
        .post(&format!("/v1/Conversations/{sid}"), &[("FriendlyName", "Renamed"), ("UniqueName", "support-2")])
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["friendly_name"], "Renamed");
    assert_error(&api.get("/v1/Conversations/support-1").await, 404, 20404);
    assert_eq!(api.get("/v1/Conversations/support-2").await.1["sid"], sid);

    assert_eq!(api.delete("/v1/Conversations/support-2").await.0, 204);
    assert_error(&api.get(&format!("/v1/Conversations/{sid}")).await, 404, 20404);
}

#[tokio::test]
async fn unscoped_and_service_scoped_paths_see_the_same_default_service() {
    let api = Api::start().await;
    let (_, config) = api.get("/v1/Configuration").await;
    let service = config["default_chat_service_sid"].as_str().unwrap().to_string();
    let sid = api.conversation(&[("FriendlyName", "x")]).await;
    let (status, scoped) = api.get(&format!("/v1/Services/{service}/Conversations/{sid}")).await;
    assert_eq!(status, 200);
    assert_eq!(scoped["url"], format!("{}/v1/Services/{service}/Conversations/{sid}", api.server.url()));

    // A conversation of another service is invisible from the default one.
    let (_, other) = api.post("/v1/Services", &[("FriendlyName", "other")]).await;
    let other = other["sid"].as_str().unwrap();
    let (status, in_other) = api.post(&format!("/v1/Services/{other}/Conversations"), &[("FriendlyName", "o")]).await;
    assert_eq!(status, 201);
    assert_error(&api.get(&format!("/v1/Conversations/{}", in_other["sid"].as_str().unwrap())).await, 404, 20404);
}

#[tokio::test]
async fn list_pages_follow_absolute_next_and_previous_urls_without_duplicates() {
    let api = Api::start().await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(api.conversation(&[("FriendlyName", &format!("c{i}"))]).await);
    }
    let mut seen = Vec::new();
    let mut url = "/v1/Conversations?PageSize=3".to_string();
    let mut pages = 0;
    loop {
        let (status, page) = api.get(&url).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["meta"]["key"], "conversations");
        seen.extend(page["conversations"].as_array().unwrap().iter().map(|c| c["sid"].as_str().unwrap().to_string()));
        pages += 1;
        match page["meta"]["next_page_url"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&api.server.url()), "{next}");
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);

    // From the last page, previous_page_url leads back to the page before it.
    let (_, last) = api.get(&url).await;
    let previous = last["meta"]["previous_page_url"].as_str().unwrap().to_string();
    let (_, before) = api.get(&previous).await;
    let sids: Vec<_> =
        before["conversations"].as_array().unwrap().iter().map(|c| c["sid"].as_str().unwrap().to_string()).collect();
    assert_eq!(sids, created[3..6]);
}

#[tokio::test]
async fn list_filters_by_state_and_creation_date() {
    let api = Api::start().await;
    let active = api.conversation(&[]).await;
    let inactive = api.conversation(&[("State", "inactive")]).await;
    let old = api.conversation(&[("DateCreated", "2020-05-01T10:00:00Z")]).await;
    let (_, page) = api.get("/v1/Conversations?State=inactive").await;
    let sids: Vec<_> = page["conversations"].as_array().unwrap().iter().map(|c| c["sid"].as_str().unwrap()).collect();
    assert_eq!(sids, [inactive.as_str()]);
    let (_, page) = api.get("/v1/Conversations?EndDate=2021-01-01").await;
    let sids: Vec<_> = page["conversations"].as_array().unwrap().iter().map(|c| c["sid"].as_str().unwrap()).collect();
    assert_eq!(sids, [old.as_str()]);
    let (_, page) = api.get("/v1/Conversations?StartDate=2021-01-01").await;
    assert_eq!(page["conversations"].as_array().unwrap().len(), 2);
    assert!(page["conversations"].as_array().unwrap().iter().any(|c| c["sid"] == active.as_str()));
}

#[tokio::test]
async fn conversation_with_participants_creates_everything_at_once() {
    let api = Api::start().await;
    let (status, created) = api
        .post(
            "/v1/ConversationWithParticipants",
            &[
                ("FriendlyName", "group"),
                ("Participant", r#"{"identity":"alice"}"#),
                ("Participant", r#"{"messaging_binding":{"address":"+15551230001","proxy_address":"+15559990000"}}"#),
            ],
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let sid = created["sid"].as_str().unwrap();
    let (_, participants) = api.get(&format!("/v1/Conversations/{sid}/Participants")).await;
    let list = participants["participants"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["identity"], "alice");
    assert_eq!(list[1]["messaging_binding"]["type"], "sms");

    // A bad participant fails the whole request: nothing is created.
    let before = api.get("/v1/Conversations").await.1["conversations"].as_array().unwrap().len();
    let (status, _) = api
        .post(
            "/v1/ConversationWithParticipants",
            &[("Participant", r#"{"identity":"a"}"#), ("Participant", r#"{"identity":"a"}"#)],
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(api.get("/v1/Conversations").await.1["conversations"].as_array().unwrap().len(), before);
}
