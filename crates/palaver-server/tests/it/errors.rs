use crate::api::{Api, assert_error};

#[tokio::test]
async fn wrong_or_missing_credentials_get_20003() {
    let api = Api::start().await;
    let response = reqwest::Client::new()
        .get(format!("{}/v1/Conversations", api.server.url()))
        .basic_auth(api.server.account_sid(), Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], 20003);
    let response = reqwest::get(format!("{}/v1/Conversations", api.server.url())).await.unwrap();
    assert_eq!(response.status(), 401);
    // Health needs no credentials.
    assert_eq!(reqwest::get(format!("{}/healthz", api.server.url())).await.unwrap().status(), 200);
}

#[tokio::test]
async fn bad_input_gets_twilio_errors_not_500s() {
    let api = Api::start().await;
    let conv = api.conversation(&[("UniqueName", "taken")]).await;
    assert_error(&api.post("/v1/Conversations", &[("UniqueName", "taken")]).await, 409, 50353);
    assert_error(
        &api.post("/v1/Conversations", &[("UniqueName", "CH0123456789abcdef0123456789abcdef")]).await,
        400,
        50390,
    );
    assert_error(&api.post("/v1/Conversations", &[("Attributes", "{not json")]).await, 400, 20001);
    assert_error(&api.post("/v1/Conversations", &[("FriendlyName", &"x".repeat(257))]).await, 400, 20001);
    let big = format!("\"{}\"", "a".repeat(16 * 1024));
    assert_error(&api.post("/v1/Conversations", &[("Attributes", &big)]).await, 400, 20001);
    assert_error(&api.post("/v1/Conversations", &[("State", "bogus")]).await, 400, 20001);
    assert_error(&api.post("/v1/Conversations", &[("Timers.Inactive", "banana")]).await, 400, 20001);
    assert_error(&api.post("/v1/Conversations", &[("DateCreated", "yesterday")]).await, 400, 20001);
    assert_error(&api.get("/v1/Conversations?PageSize=0").await, 400, 20001);
    for size in ["-1", "x", "1.5", ""] {
        assert_error(&api.get(&format!("/v1/Conversations?PageSize={size}")).await, 400, 20001);
    }
    assert_error(&api.get("/v1/Conversations?PageToken=garbage").await, 400, 20001);
    let messages = format!("/v1/Conversations/{conv}/Messages");
    let small = format!("\"{}\"", "a".repeat(4 * 1024));
    assert_error(&api.post(&messages, &[("Body", "x"), ("Attributes", &small)]).await, 400, 20001);
    assert_error(&api.post(&messages, &[("Body", &"b".repeat(33_000))]).await, 400, 20001);
    assert_error(&api.post(&messages, &[]).await, 400, 20001);
    assert_error(&api.get(&format!("{messages}?Order=sideways")).await, 400, 20001);
    assert_error(&api.get(&format!("{messages}/IM0123456789abcdef0123456789abcdef")).await, 404, 20404);
    assert_error(&api.get(&format!("{messages}/not-a-sid")).await, 404, 20404);
    assert_error(&api.get("/v1/Conversations/CH0123456789abcdef0123456789abcdef").await, 404, 20404);
    assert_error(&api.get("/v1/Users/nobody").await, 404, 20404);
    assert_error(&api.get("/v1/Services/IS0123456789abcdef0123456789abcdef/Conversations").await, 404, 20404);
    assert_error(&api.get("/v1/NoSuchThing").await, 404, 20404);
    assert_error(&api.delete("/v1/Conversations").await, 405, 20004);
}

#[tokio::test]
async fn body_over_1600_characters_is_refused_when_sms_participants_exist() {
    let api = Api::start().await;
    let conv = api.conversation(&[]).await;
    let messages = format!("/v1/Conversations/{conv}/Messages");
    let long = "c".repeat(2000);
    assert_eq!(api.post(&messages, &[("Body", &long)]).await.0, 201);
    api.post(
        &format!("/v1/Conversations/{conv}/Participants"),
        &[("MessagingBinding.Address", "+15550001111"), ("MessagingBinding.ProxyAddress", "+15550002222")],
    )
    .await;
    assert_error(&api.post(&messages, &[("Body", &long)]).await, 400, 20001);
}

#[tokio::test]
async fn missing_resources_are_20404_naming_the_requested_path() {
    let api = Api::start().await;
    let conv = api.conversation(&[]).await;
    let missing_conv = "CH0123456789abcdef0123456789abcdef";
    for path in [
        format!("/Conversations/{missing_conv}"),
        "/Conversations/no-such-name".to_string(),
        format!("/Conversations/{missing_conv}/Participants"),
        format!("/Conversations/{conv}/Participants/MB0123456789abcdef0123456789abcdef"),
        format!("/Conversations/{conv}/Participants/nobody"),
        format!("/Conversations/{conv}/Messages/IM0123456789abcdef0123456789abcdef"),
        format!("/Conversations/{conv}/Messages/not-a-sid"),
        format!("/Conversations/{conv}/Webhooks/WH0123456789abcdef0123456789abcdef"),
        "/Users/nobody".to_string(),
        "/Roles/RL0123456789abcdef0123456789abcdef".to_string(),
        "/Roles/garbage".to_string(),
        "/Services/IS0123456789abcdef0123456789abcdef".to_string(),
        "/Services/garbage/Conversations".to_string(),
        "/Credentials/CR0123456789abcdef0123456789abcdef".to_string(),
        "/NoSuchThing".to_string(),
    ] {
        let mut responses = vec![api.get(&format!("/v1{path}")).await];
        // Updates and deletes of an instance; a create in a list checks its input first.
        // (A role's update must name its permissions, checked first.)
        if !path.ends_with("/Participants") && !path.ends_with("/Conversations") && !path.starts_with("/Roles") {
            responses.push(api.post(&format!("/v1{path}"), &[("FriendlyName", "x")]).await);
            responses.push(api.delete(&format!("/v1{path}")).await);
        }
        for response in responses {
            if response.0 == 405 {
                continue;
            }
            assert_error(&response, 404, 20404);
            assert_eq!(response.1["message"], format!("The requested resource {path} was not found"), "{path}");
        }
    }
}

#[tokio::test]
async fn page_sizes_above_the_maximum_are_served_as_the_maximum() {
    let api = Api::start().await;
    for _ in 0..3 {
        api.conversation(&[]).await;
    }
    for size in ["1000", "101", "99999999999999999999999"] {
        let (status, page) = api.get(&format!("/v1/Conversations?PageSize={size}")).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["meta"]["page_size"], 100, "{page}");
        assert_eq!(page["conversations"].as_array().map(Vec::len), Some(3));
    }
}

#[tokio::test]
async fn page_numbers_of_any_size_are_echoed_without_a_crash() {
    // `Page=4294967295` with a next page overflowed while its link was built, and dropped the connection.
    let api = Api::start().await;
    for _ in 0..2 {
        api.conversation(&[]).await;
    }
    for (page, echoed, next) in
        [("4294967295", 4_294_967_295_u64, "4294967296"), ("99999999999999999999999", u64::MAX, "18446744073709551615")]
    {
        let (status, body) = api.get(&format!("/v1/Conversations?PageSize=1&Page={page}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["meta"]["page"].as_u64(), Some(echoed), "{body}");
        let next_url = body["meta"]["next_page_url"].as_str().unwrap();
        assert!(next_url.contains(&format!("Page={next}&")), "{next_url}");
        let (status, second) = api.get(next_url).await;
        assert_eq!((status, second["conversations"].as_array().map(Vec::len)), (200, Some(1)), "{second}");
    }
    for page in ["-1", "x", "1.5", "", "+1"] {
        assert_error(&api.get(&format!("/v1/Conversations?Page={page}")).await, 400, 20001);
    }
}
