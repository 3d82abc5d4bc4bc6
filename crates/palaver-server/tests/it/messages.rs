use crate::api::{Api, assert_error};

#[tokio::test]
async fn indices_increase_and_are_never_reused_after_deletes() {
    let api = Api::start().await;
    let conv = api.conversation(&[]).await;
    let sids = api.messages(&conv, 3).await;
    assert_eq!(api.delete(&format!("/v1/Conversations/{conv}/Messages/{}", sids[2])).await.0, 204);
    let (_, next) = api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Body", "after delete")]).await;
    assert_eq!(next["index"], 3);
    let (_, page) = api.get(&format!("/v1/Conversations/{conv}/Messages")).await;
    let indices: Vec<_> = page["messages"].as_array().unwrap().iter().map(|m| m["index"].as_i64().unwrap()).collect();
    assert_eq!(indices, [0, 1, 3]);
}

#[tokio::test]
async fn author_defaults_to_system_and_links_to_a_participant() {
    let api = Api::start().await;
    let conv = api.conversation(&[]).await;
    let (_, alice) = api.post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", "alice")]).await;
    let (_, system) = api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Body", "hi")]).await;
    assert_eq!(system["author"], "system");
    assert!(system["participant_sid"].is_null());
    let (_, from_alice) =
        api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Body", "hi"), ("Author", "alice")]).await;
    assert_eq!(from_alice["participant_sid"], alice["sid"]);
}

#[tokio::test]
async fn descending_order_and_paging_in_both_directions() {
    let api = Api::start().await;
    let conv = api.conversation(&[]).await;
    api.messages(&conv, 25).await;
    for (order, expected) in [("asc", (0..25).collect::<Vec<i64>>()), ("desc", (0..25).rev().collect())] {
        let mut url = format!("/v1/Conversations/{conv}/Messages?Order={order}&PageSize=10");
        let mut indices = Vec::new();
        loop {
            let (status, page) = api.get(&url).await;
            assert_eq!(status, 200, "{page}");
            indices.extend(page["messages"].as_array().unwrap().iter().map(|m| m["index"].as_i64().unwrap()));
            match page["meta"]["next_page_url"].as_str() {
                Some(next) => url = next.to_string(),
                None => break,
            }
        }
        assert_eq!(indices, expected, "order {order}");
    }
}

#[tokio::test]
async fn history_import_keeps_given_dates_and_updates_mark_edits() {
    let api = Api::start().await;
    let conv = api.conversation(&[]).await;
    let (status, imported) = api
        .post(
            &format!("/v1/Conversations/{conv}/Messages"),
            &[("Body", "old"), ("Author", "bob"), ("DateCreated", "2019-03-04T05:06:07Z"), ("Subject", "Re: invoice")],
        )
        .await;
    assert_eq!(status, 201, "{imported}");
    assert_eq!(imported["date_created"], "2019-03-04T05:06:07Z");
    assert!(imported["date_updated"].is_null());
    assert_eq!(imported["subject"], "Re: invoice");
    let sid = imported["sid"].as_str().unwrap();
    let (_, edited) = api
        .post(&format!("/v1/Conversations/{conv}/Messages/{sid}"), &[("Body", "new"), ("Attributes", r#"{"e":1}"#)])
        .await;
    assert_eq!(edited["body"], "new");
    assert_eq!(edited["attributes"], r#"{"e":1}"#);
    assert!(edited["date_updated"].is_string());
    assert_eq!(api.get(&format!("/v1/Conversations/{conv}/Messages/{sid}")).await.1["body"], "new");
}

#[tokio::test]
async fn unread_counts_are_exact_with_gaps() {
    let api = Api::start().await;
    let conv = api.conversation(&[]).await;
    api.post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", "reader")]).await;
    let sids = api.messages(&conv, 5).await;
    let path = format!("/v1/Users/reader/Conversations/{conv}");
    let (status, uc) = api.get(&path).await;
    assert_eq!(status, 200, "{uc}");
    assert!(uc["unread_messages_count"].is_null(), "no horizon yet: {uc}");

    let (_, uc) = api.post(&path, &[("LastReadMessageIndex", "1")]).await;
    assert_eq!(uc["unread_messages_count"], 3);
    api.delete(&format!("/v1/Conversations/{conv}/Messages/{}", sids[3])).await;
    assert_eq!(api.get(&path).await.1["unread_messages_count"], 2);
    // Deleting below the horizon changes nothing.
    api.delete(&format!("/v1/Conversations/{conv}/Messages/{}", sids[0])).await;
    assert_eq!(api.get(&path).await.1["unread_messages_count"], 2);
    let (_, uc) = api.post(&path, &[("LastReadMessageIndex", "4")]).await;
    assert_eq!(uc["unread_messages_count"], 0);
    let (_, uc) = api.post(&path, &[("LastReadMessageIndex", "")]).await;
    assert!(uc["unread_messages_count"].is_null());
    assert_error(&api.post(&path, &[("LastReadMessageIndex", "-2")]).await, 400, 20001);
}

#[tokio::test]
async fn a_create_retried_with_its_idempotency_key_stores_one_message() {
    let api = Api::start().await;
    let conv = api.conversation(&[]).await;
    let path = format!("/v1/Conversations/{conv}/Messages");
    let send = |key: &'static str, header: &'static str, body: &'static str| {
        api.send(api.http.post(api.url(&path)).header(header, key).form(&[("Body", body)]))
    };
    let (status, first) = send("order-42", "Idempotency-Key", "hello").await;
    assert_eq!(status, 201, "{first}");
    // The retry (even with another body, as a confused client might send) answers the stored message.
    let (status, again) = send("order-42", "Idempotency-Key", "hello again").await;
    assert_eq!(status, 201, "{again}");
    assert_eq!((again["sid"].as_str(), again["body"].as_str()), (first["sid"].as_str(), Some("hello")));
    let (_, other) = send("order-43", "I-Twilio-Idempotency-Token", "another").await;
    assert_eq!(other["index"], 1);
    let (_, same_other) = send("order-43", "Idempotency-Key", "another").await;
    assert_eq!(same_other["sid"], other["sid"]);
    let (_, page) = api.get(&path).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    for bad in [String::new(), "has space".into(), "tab\there".into(), "k".repeat(129)] {
        let request = api.http.post(api.url(&path)).header("Idempotency-Key", bad.as_str()).form(&[("Body", "x")]);
        let (status, error) = api.send(request).await;
        assert_eq!((status, error["code"].as_u64()), (400, Some(20001)), "{bad:?}: {error}");
    }
}
