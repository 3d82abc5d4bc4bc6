use std::time::Duration;

use crate::api::{Api, assert_error};

async fn wait_for_state(api: &Api, conv: &str, state: &str) {
    for _ in 0..100 {
        if api.get(&format!("/v1/Conversations/{conv}")).await.1["state"] == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("conversation {conv} never became {state}");
}

#[tokio::test]
async fn timers_move_conversations_to_inactive_then_closed_and_closed_is_final() {
    let api = Api::start().await;
    let (_, conv) = api.post("/v1/Conversations", &[("Timers.Inactive", "PT1S"), ("Timers.Closed", "PT3S")]).await;
    let sid = conv["sid"].as_str().unwrap().to_string();
    assert!(conv["timers"]["date_inactive"].is_string());
    wait_for_state(&api, &sid, "inactive").await;
    // A message wakes it up again.
    let (status, _) = api.post(&format!("/v1/Conversations/{sid}/Messages"), &[("Body", "wake")]).await;
    assert_eq!(status, 201);
    assert_eq!(api.get(&format!("/v1/Conversations/{sid}")).await.1["state"], "active");
    wait_for_state(&api, &sid, "closed").await;
    assert_error(&api.post(&format!("/v1/Conversations/{sid}/Messages"), &[("Body", "late")]).await, 400, 50377);
    assert_error(
        &api.post(&format!("/v1/Conversations/{sid}/Participants"), &[("Identity", "late")]).await,
        400,
        50377,
    );
    assert_error(&api.post(&format!("/v1/Conversations/{sid}"), &[("State", "active")]).await, 400, 50377);
}

#[tokio::test]
async fn data_survives_a_restart_and_indices_continue() {
    let mut api = Api::start().await;
    let conv = api.conversation(&[("UniqueName", "durable"), ("Attributes", r#"{"k":"v"}"#)]).await;
    api.post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", "erin")]).await;
    api.messages(&conv, 3).await;
    api.post(&format!("/v1/Users/erin/Conversations/{conv}"), &[("LastReadMessageIndex", "0")]).await;
    let before = api.get(&format!("/v1/Conversations/{conv}")).await.1;

    api.server.restart().await;

    let after = api.get("/v1/Conversations/durable").await.1;
    assert_eq!(after["sid"], before["sid"]);
    assert_eq!(after["attributes"], before["attributes"]);
    assert_eq!(after["date_created"], before["date_created"]);
    assert_eq!(api.get(&format!("/v1/Users/erin/Conversations/{conv}")).await.1["unread_messages_count"], 2);
    let (_, next) = api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Body", "after restart")]).await;
    assert_eq!(next["index"], 3);
}

#[tokio::test]
async fn timers_due_while_stopped_fire_after_start() {
    let mut api = Api::start().await;
    let (_, conv) = api.post("/v1/Conversations", &[("Timers.Inactive", "PT1S")]).await;
    let sid = conv["sid"].as_str().unwrap().to_string();
    api.server.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    api.server.restart().await;
    wait_for_state(&api, &sid, "inactive").await;
}
