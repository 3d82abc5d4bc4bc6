use crate::api::{Api, assert_error};

#[tokio::test]
async fn users_by_sid_or_identity_and_their_conversations() {
    let api = Api::start().await;
    let (status, user) =
        api.post("/v1/Users", &[("Identity", "dana"), ("FriendlyName", "Dana"), ("Attributes", r#"{"a":1}"#)]).await;
    assert_eq!(status, 201, "{user}");
    let sid = user["sid"].as_str().unwrap();
    assert_error(&api.post("/v1/Users", &[("Identity", "dana")]).await, 409, 50201);
    assert_eq!(api.get(&format!("/v1/Users/{sid}")).await.1["identity"], "dana");
    let (_, updated) = api.post("/v1/Users/dana", &[("FriendlyName", "Dana D.")]).await;
    assert_eq!(updated["friendly_name"], "Dana D.");

    let conv = api.conversation(&[("FriendlyName", "with dana")]).await;
    api.post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", "dana")]).await;
    let (_, list) = api.get(&format!("/v1/Users/{sid}/Conversations")).await;
    assert_eq!(list["conversations"][0]["conversation_sid"], conv);
    assert_eq!(list["conversations"][0]["notification_level"], "default");
    let (_, muted) = api.post(&format!("/v1/Users/dana/Conversations/{conv}"), &[("NotificationLevel", "muted")]).await;
    assert_eq!(muted["notification_level"], "muted");
    assert_error(
        &api.post(&format!("/v1/Users/dana/Conversations/{conv}"), &[("NotificationLevel", "loud")]).await,
        400,
        20001,
    );
    assert_eq!(api.delete(&format!("/v1/Users/dana/Conversations/{conv}")).await.0, 204);
    assert_error(&api.get(&format!("/v1/Conversations/{conv}/Participants/dana")).await, 404, 20404);
    assert_eq!(api.delete("/v1/Users/dana").await.0, 204);
    assert_error(&api.get("/v1/Users/dana").await, 404, 20404);
}

#[tokio::test]
async fn default_roles_and_custom_roles() {
    let api = Api::start().await;
    let (_, roles) = api.get("/v1/Roles").await;
    let names: Vec<_> = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["friendly_name"].as_str().unwrap(), r["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("service admin", "service"),
            ("service user", "service"),
            ("channel admin", "conversation"),
            ("channel user", "conversation")
        ]
    );
    let (status, role) = api
        .post(
            "/v1/Roles",
            &[
                ("FriendlyName", "moderator"),
                ("Type", "conversation"),
                ("Permission", "sendMessage"),
                ("Permission", "removeParticipant"),
            ],
        )
        .await;
    assert_eq!(status, 201, "{role}");
    assert_eq!(role["permissions"], serde_json::json!(["sendMessage", "removeParticipant"]));
    let sid = role["sid"].as_str().unwrap();
    let (_, updated) = api.post(&format!("/v1/Roles/{sid}"), &[("Permission", "deleteAnyMessage")]).await;
    assert_eq!(updated["permissions"], serde_json::json!(["deleteAnyMessage"]));
    assert_error(
        &api.post("/v1/Roles", &[("FriendlyName", "x"), ("Type", "conversation"), ("Permission", "flyToTheMoon")])
            .await,
        400,
        20001,
    );
    assert_error(
        &api.post("/v1/Roles", &[("FriendlyName", "x"), ("Type", "planet"), ("Permission", "sendMessage")]).await,
        400,
        20001,
    );

    // Participants can be given a conversation role, not a service role.
    let conv = api.conversation(&[]).await;
    let (status, p) =
        api.post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", "m"), ("RoleSid", sid)]).await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["role_sid"], sid);
    let service_role = roles["roles"][0]["sid"].as_str().unwrap();
    assert_error(
        &api.post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", "n"), ("RoleSid", service_role)])
            .await,
        400,
        20001,
    );

    assert_eq!(api.delete(&format!("/v1/Roles/{sid}")).await.0, 204);
    assert_error(&api.get(&format!("/v1/Roles/{sid}")).await, 404, 20404);
}

#[tokio::test]
async fn services_configuration_and_account_defaults() {
    let api = Api::start().await;
    let (status, service) = api.post("/v1/Services", &[("FriendlyName", "Tenant B")]).await;
    assert_eq!(status, 201, "{service}");
    let sid = service["sid"].as_str().unwrap();
    let (_, config) = api.get(&format!("/v1/Services/{sid}/Configuration")).await;
    assert!(config["default_conversation_role_sid"].as_str().unwrap().starts_with("RL"));
    let (_, roles) = api.get(&format!("/v1/Services/{sid}/Roles")).await;
    assert_eq!(roles["roles"].as_array().unwrap().len(), 4);
    let (_, updated) = api.post(&format!("/v1/Services/{sid}/Configuration"), &[("ReachabilityEnabled", "true")]).await;
    assert_eq!(updated["reachability_enabled"], true);
    assert_eq!(api.get("/v1/Services").await.1["services"].as_array().unwrap().len(), 2);
    assert_eq!(api.delete(&format!("/v1/Services/{sid}")).await.0, 204);
    assert_error(&api.get(&format!("/v1/Services/{sid}")).await, 404, 20404);

    let (_, account) =
        api.post("/v1/Configuration", &[("DefaultInactiveTimer", "PT5M"), ("DefaultClosedTimer", "P1D")]).await;
    assert_eq!(account["default_inactive_timer"], "PT5M");
    assert_eq!(account["default_closed_timer"], "P1D");
    let (_, conv) = api.post("/v1/Conversations", &[]).await;
    assert!(conv["timers"]["date_inactive"].is_string(), "{conv}");
    assert!(conv["timers"]["date_closed"].is_string(), "{conv}");
    let default_service = account["default_chat_service_sid"].as_str().unwrap();
    assert_error(&api.delete(&format!("/v1/Services/{default_service}")).await, 400, 20001);

    // A new default service takes effect for the very next request without a service in its path.
    let (_, other) = api.post("/v1/Services", &[("FriendlyName", "Tenant C")]).await;
    let other = other["sid"].as_str().unwrap();
    let (status, switched) = api.post("/v1/Configuration", &[("DefaultChatServiceSid", other)]).await;
    assert_eq!((status, switched["default_chat_service_sid"].as_str()), (200, Some(other)), "{switched}");
    let (_, conv) = api.post("/v1/Conversations", &[]).await;
    assert_eq!(conv["chat_service_sid"], other, "{conv}");
    assert_eq!(api.get("/v1/Configuration").await.1["default_chat_service_sid"], other);
}
