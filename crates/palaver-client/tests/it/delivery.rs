//! Messages to SMS participants as the SDK sees them: the aggregated receipt changes live (`deliveryReceipt`),
//! detailed receipts and recipients come from the server. A local gateway double accepts the texts.

use axum::extract::State;
use palaver_client::{ConversationEvent, ConversationEventName, MessageUpdateReason};
use palaver_server::channels::{ChannelSettings, MessagingGatewayConfig};
use palaver_testkit::TestServer;
use serde_json::json;
use tokio::sync::mpsc;

use crate::support::{Recorder, connect, conversation_with};

/// Answers like Twilio's Messaging API and reports each accepted message's sid.
async fn gateway() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (accepted, sids) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Messages.json",
            axum::routing::post(|State(accepted): State<mpsc::UnboundedSender<String>>| async move {
                let sid = format!("SM{}", "ab".repeat(16));
                let _ = accepted.send(sid.clone());
                (axum::http::StatusCode::CREATED, axum::Json(json!({"sid": sid, "status": "queued"})))
            }),
        )
        .with_state(accepted);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, sids)
}

#[tokio::test]
async fn delivery_receipts_reach_the_sdk() {
    let (url, mut accepted) = gateway().await;
    let settings = ChannelSettings {
        messaging_gateway: Some(MessagingGatewayConfig {
            url,
            account_sid: "AC00000000000000000000000000000042".into(),
            auth_token: "gateway-token".into(),
        }),
        ..ChannelSettings::default()
    };
    let server = TestServer::spawn_with_channels(settings).await;
    let alice = connect(&server, "alice").await;
    let conversation = conversation_with(&alice, "texting", &[]).await;
    conversation.add_non_chat_participant("+15559990000", "+15551230000", None, None).await.unwrap();

    let mut updates = Recorder::new(&conversation.events(), ConversationEventName::MessageUpdated);
    let index = conversation.send_message("on my way", None, None).await.unwrap();
    let channel_sid = tokio::time::timeout(std::time::Duration::from_secs(10), accepted.recv()).await.unwrap().unwrap();

    let message = loop {
        if let ConversationEvent::MessageUpdated { message, update_reasons } = updates.next().await
            && message.index() == index
        {
            assert_eq!(update_reasons, [MessageUpdateReason::DeliveryReceipt]);
            break message;
        }
    };
    let aggregate = message.aggregated_delivery_receipt().expect("an aggregate");
    assert_eq!((aggregate.total, aggregate.sent.as_deref()), (1, Some("all")));
    assert_eq!(aggregate.delivered.as_deref(), Some("none"));

    let receipts = message.get_detailed_delivery_receipts().await.unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].status, "sent");
    assert_eq!(receipts[0].channel_message_sid.as_deref(), Some(channel_sid.as_str()));
    assert!(receipts[0].sid.starts_with("DY"));

    let recipients = conversation.get_message_recipients(None).await.unwrap();
    let recipient = recipients.items().iter().find(|r| r.message_sid == message.sid()).expect("a recipient");
    assert_eq!((recipient.address.as_str(), recipient.kind.as_str()), ("+15551230000", "sms"));
    assert_eq!(recipient.status.as_deref(), Some("sent"));
}
