//! Media over HTTP: uploads (Basic credentials or an access token), attachment to messages, limits, content
//! downloads and signed temporary URLs.

use serde_json::{Value, json};

use crate::api::{Api, assert_error};

async fn upload(api: &Api, path: &str, content_type: &str, bytes: Vec<u8>, query: &[(&str, &str)]) -> (u16, Value) {
    let response = api
        .http
        .post(format!("{}{path}", api.server.url()))
        .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
        .query(query)
        .header("Content-Type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn download(api: &Api, url: &str, token: Option<&str>, basic: bool) -> (u16, Vec<u8>, String) {
    let mut request = api.http.get(url);
    if let Some(token) = token {
        request = request.header("X-Twilio-Token", token);
    }
    if basic {
        request = request.basic_auth(api.server.account_sid(), Some(api.server.auth_token()));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, response.bytes().await.unwrap().to_vec(), content_type)
}

#[tokio::test]
async fn uploads_attach_to_messages_and_download_with_credentials_or_signed_urls() {
    let api = Api::start().await;
    let png: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let (status, media) = upload(&api, "/v1/Media", "image/png", png.clone(), &[("Filename", "cat.png")]).await;
    assert_eq!(status, 201, "{media}");
    let sid = media["sid"].as_str().unwrap().to_string();
    assert!(sid.starts_with("ME") && sid.len() == 34);
    assert_eq!((media["size"].as_u64(), media["content_type"].as_str()), (Some(70_000), Some("image/png")));
    assert_eq!(media["filename"], "cat.png");

    // Through the service path too, with the same answer.
    let (_, services) = api.get("/v1/Services").await;
    let service = services["services"][0]["sid"].as_str().unwrap();
    assert_eq!(media["service_sid"], service);
    let (status, fetched) = api.get(&format!("/v1/Services/{service}/Media/{sid}")).await;
    assert_eq!((status, &fetched["sid"]), (200, &media["sid"]));

    let (status, bytes, content_type) = download(&api, media["links"]["content"].as_str().unwrap(), None, true).await;
    assert_eq!((status, content_type.as_str()), (200, "image/png"));
    assert_eq!(bytes, png);
    assert_eq!(download(&api, media["links"]["content"].as_str().unwrap(), None, false).await.0, 401);

    // The temporary URL needs no credentials, and only works as signed.
    let temporary = media["links"]["content_direct_temporary"].as_str().unwrap();
    let (status, bytes, _) = download(&api, temporary, None, false).await;
    assert_eq!((status, bytes.len()), (200, png.len()));
    let tampered = temporary.replace("Expires=", "Expires=9");
    assert_eq!(download(&api, &tampered, None, false).await.0, 403);

    // Attach it to a message.
    let conv = api.conversation(&[]).await;
    let (status, message) =
        api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("MediaSid", &sid), ("Body", "look")]).await;
    assert_eq!(status, 201, "{message}");
    assert_eq!(
        message["media"],
        json!([{"sid": sid, "content_type": "image/png", "filename": "cat.png", "size": 70_000, "category": "media"}])
    );
    let (_, again) = api.get(&format!("/v1/Conversations/{conv}/Messages/{}", message["sid"].as_str().unwrap())).await;
    assert_eq!(again["media"], message["media"]);
    let (_, attached) = api.get(&format!("/v1/Media/{sid}")).await;
    assert_eq!(attached["message_sid"], message["sid"]);

    // Media is attached once; unknown media is not found; a plain message has no media.
    let reused = api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("MediaSid", &sid)]).await;
    assert_error(&reused, 400, 20001);
    let unknown = api
        .post(&format!("/v1/Conversations/{conv}/Messages"), &[("MediaSid", "ME00000000000000000000000000000000")])
        .await;
    assert_error(&unknown, 404, 20404);
    assert_error(&api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("MediaSid", "nope")]).await, 400, 20001);
    let (_, plain) = api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Body", "text")]).await;
    assert_eq!(plain["media"], Value::Null);
}

#[tokio::test]
async fn limits_are_enforced_with_twilio_errors() {
    let api = Api::start().await;
    // One byte over 16 MB.
    let (status, body) = upload(&api, "/v1/Media", "video/mp4", vec![7u8; 16 * 1024 * 1024 + 1], &[]).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50512)), "{body}");
    let (status, body) = upload(&api, "/v1/Media", "", b"x".to_vec(), &[]).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(20001)), "{body}");
    let (status, body) = upload(&api, "/v1/Media", "text/plain", Vec::new(), &[]).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(20001)), "{body}");
    let (status, body) = upload(&api, "/v1/Media", "application/pdf", b"%PDF".to_vec(), &[("Category", "body")]).await;
    assert_eq!(status, 400, "email bodies are text/plain or text/html: {body}");
    let (status, _) = upload(&api, "/v1/Media", "text/html", b"<p>hi</p>".to_vec(), &[("Category", "body")]).await;
    assert_eq!(status, 201);
    let (status, body) = upload(&api, "/v1/Media", "text/plain", b"x".to_vec(), &[("Category", "sticker")]).await;
    assert_eq!(status, 400, "{body}");

    // At most ten media per message.
    let mut form = Vec::new();
    for i in 0..11 {
        let (_, media) = upload(&api, "/v1/Media", "text/plain", format!("file {i}").into_bytes(), &[]).await;
        form.push(("MediaSid", media["sid"].as_str().unwrap().to_string()));
    }
    let conv = api.conversation(&[]).await;
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_error(&api.post(&format!("/v1/Conversations/{conv}/Messages"), &form).await, 400, 20001);
    let (status, ten) = api.post(&format!("/v1/Conversations/{conv}/Messages"), &form[..10]).await;
    assert_eq!(status, 201, "{ten}");
    assert_eq!(ten["media"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn chat_users_read_only_their_conversations_media() {
    let api = Api::start().await;
    let alice = api.server.access_token("alice");
    let mallory = api.server.access_token("mallory");
    let conv = api.conversation(&[]).await;
    api.post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", "alice")]).await;

    let response = api
        .http
        .post(format!("{}/v1/Media?Filename=notes.txt", api.server.url()))
        .header("X-Twilio-Token", &alice)
        .header("Content-Type", "text/plain")
        .body("secret notes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let media: Value = response.json().await.unwrap();
    assert_eq!(media["author"], "alice");
    let content = format!("{}/v1/Media/{}/Content", api.server.url(), media["sid"].as_str().unwrap());
    // Before it is sent, only its uploader reads it.
    assert_eq!(download(&api, &content, Some(&alice), false).await.0, 200);
    assert_eq!(download(&api, &content, Some(&mallory), false).await.0, 403);

    api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("MediaSid", media["sid"].as_str().unwrap())]).await;
    assert_eq!(download(&api, &content, Some(&alice), false).await.1, b"secret notes");
    assert_eq!(download(&api, &content, Some(&mallory), false).await.0, 403);
    assert_eq!(download(&api, &content, Some("not-a-token"), false).await.0, 401);
}
