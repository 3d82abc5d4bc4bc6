use crate::api::{Api, assert_error};

#[tokio::test]
async fn chat_and_non_chat_participants_by_sid_or_identity() {
    let api = Api::start().await;
    let conv = api.conversation(&[]).await;
    let base = format!("/v1/Conversations/{conv}/Participants");
    let (status, alice) = api.post(&base, &[("Identity", "alice"), ("Attributes", r#"{"vip":true}"#)]).await;
    assert_eq!(status, 201, "{alice}");
    assert!(alice["sid"].as_str().unwrap().starts_with("MB"));
    assert!(alice["messaging_binding"].is_null());
    let (status, sms) = api
        .post(&base, &[("MessagingBinding.Address", "+15551234567"), ("MessagingBinding.ProxyAddress", "+15557654321")])
        .await;
    assert_eq!(status, 201, "{sms}");
    assert!(sms["identity"].is_null());
    assert_eq!(sms["messaging_binding"]["type"], "sms");
    assert_eq!(sms["messaging_binding"]["proxy_address"], "+15557654321");
    let (_, wa) = api
        .post(
            &base,
            &[
                ("MessagingBinding.Address", "whatsapp:+15550000001"),
                ("MessagingBinding.ProxyAddress", "whatsapp:+15550000002"),
            ],
        )
        .await;
    assert_eq!(wa["messaging_binding"]["type"], "whatsapp");
    let (_, email) = api.post(&base, &[("MessagingBinding.Address", "carol@example.com")]).await;
    assert_eq!(email["messaging_binding"]["type"], "email");

    assert_eq!(api.get(&format!("{base}/alice")).await.1["sid"], alice["sid"]);
    let (_, updated) =
        api.post(&format!("{base}/alice"), &[("Attributes", r#"{"vip":false}"#), ("LastReadMessageIndex", "0")]).await;
    assert_eq!(updated["attributes"], r#"{"vip":false}"#);
    assert_eq!(updated["last_read_message_index"], 0);
    assert!(updated["last_read_timestamp"].is_string());

    // The chat participant's user exists implicitly.
    let (status, user) = api.get("/v1/Users/alice").await;
    assert_eq!(status, 200, "{user}");
    assert!(user["sid"].as_str().unwrap().starts_with("US"));

    let (_, by_address) = api.get("/v1/ParticipantConversations?Address=%2B15551234567").await;
    assert_eq!(by_address["conversations"][0]["conversation_sid"], conv);
    let (_, by_identity) = api.get("/v1/ParticipantConversations?Identity=alice").await;
    assert_eq!(by_identity["conversations"][0]["participant_sid"], alice["sid"]);
    assert_eq!(by_identity["conversations"][0]["participant_user_sid"], user["sid"]);

    assert_eq!(api.delete(&format!("{base}/alice")).await.0, 204);
    assert_error(&api.get(&format!("{base}/alice")).await, 404, 20404);
    assert_eq!(api.delete(&format!("{base}/{}", sms["sid"].as_str().unwrap())).await.0, 204);
}

#[tokio::test]
async fn duplicates_and_limits_are_refused() {
    let api = Api::start().await;
    let conv = api.conversation(&[]).await;
    let base = format!("/v1/Conversations/{conv}/Participants");
    api.post(&base, &[("Identity", "dup")]).await;
    assert_error(&api.post(&base, &[("Identity", "dup")]).await, 409, 50433);
    for i in 0..50 {
        let address = format!("+1555000{i:04}");
        let (status, body) = api
            .post(&base, &[("MessagingBinding.Address", &address), ("MessagingBinding.ProxyAddress", "+15559999999")])
            .await;
        assert_eq!(status, 201, "{body}");
    }
    assert_error(
        &api.post(
            &base,
            &[("MessagingBinding.Address", "+15551111111"), ("MessagingBinding.ProxyAddress", "+15559999999")],
        )
        .await,
        400,
        50418,
    );
    assert_error(&api.post(&base, &[]).await, 400, 20001);
    assert_error(&api.post(&base, &[("MessagingBinding.Address", "+15551111112")]).await, 400, 20001);
}

#[tokio::test]
async fn a_renamed_participant_belongs_to_its_new_user() {
    let api = Api::start().await;
    let conv = api.conversation(&[]).await;
    let (status, alice) = api.post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", "alice")]).await;
    assert_eq!(status, 201, "{alice}");
    let path = format!("/v1/Conversations/{conv}/Participants/{}", alice["sid"].as_str().unwrap());
    let (status, renamed) = api.post(&path, &[("Identity", "zed")]).await;
    assert_eq!((status, renamed["identity"].as_str()), (200, Some("zed")), "{renamed}");
    let (status, zeds) = api.get("/v1/Users/zed/Conversations").await;
    assert_eq!(status, 200, "{zeds}");
    assert_eq!(zeds["conversations"][0]["conversation_sid"], conv.as_str(), "{zeds}");
    let (_, alices) = api.get("/v1/Users/alice/Conversations").await;
    assert_eq!(alices["conversations"].as_array().map(Vec::len), Some(0), "{alices}");
}
