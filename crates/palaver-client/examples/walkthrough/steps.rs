//! The walkthrough itself, shared by the example and an integration test.

use std::error::Error;
use std::time::Duration;

use palaver_client::{
    Client, ConversationEvent, ConversationEventName, CreateConversationOptions, Direction, MediaContent,
    MessageContent, NotificationLevel, SendEmailOptions,
};
use serde_json::json;

/// Runs every step; the first failure ends it.
pub(crate) async fn run(url: &str, token: &str, token2: Option<&str>) -> Result<(), Box<dyn Error>> {
    let client = Client::connect(url, token).await?;
    println!("connected as {:?}, state {:?}", client.identity(), client.connection_state());
    println!("user() = {:?}", client.user());
    client.events().on(palaver_client::ClientEventName::ConnectionStateChanged, |event| {
        println!("event: {event:?}");
        Ok(())
    });

    let unique = format!("walkthrough-{}", std::process::id());
    let conversation = client
        .create_conversation(
            CreateConversationOptions::new()
                .friendly_name("Walkthrough")
                .unique_name(unique.clone())
                .attributes(json!({"purpose": "demo"})),
        )
        .await?;
    println!("create_conversation -> {conversation:?}");
    conversation.events().on(ConversationEventName::MessageAdded, |event| {
        if let ConversationEvent::MessageAdded(message) = event {
            println!("event: messageAdded #{} {:?}", message.index(), message.body());
        }
        Ok(())
    });
    println!("join -> {:?}", conversation.join().await?.status());

    let second = match token2 {
        Some(token2) => Some(Client::connect(url, token2).await?),
        None => None,
    };
    let other = second.as_ref().map_or_else(|| "walkthrough-guest".to_string(), Client::identity);
    println!("add({other:?}) -> {:?}", conversation.add(&other, Some(json!({"invited": true}))).await?);
    println!(
        "add_non_chat_participant -> {:?}",
        conversation.add_non_chat_participant("+15005550006", "+15558675310", None, None).await?
    );

    println!("get_participants -> {:?}", conversation.get_participants().await?);
    println!("get_participants_count -> {}", conversation.get_participants_count().await?);
    let participant = conversation.get_participant_by_identity(&other).await?;
    println!("get_participant_by_identity -> {participant:?}");
    if let Some(participant) = &participant {
        println!("get_participant_by_sid -> {:?}", conversation.get_participant_by_sid(participant.sid()).await?);
    }

    println!(
        "update_friendly_name -> {:?}",
        conversation.update_friendly_name("Walkthrough (renamed)").await?.friendly_name()
    );
    println!(
        "update_unique_name -> {:?}",
        conversation.update_unique_name(Some(&format!("{unique}-2"))).await?.unique_name()
    );
    println!(
        "update_attributes -> {:?}",
        conversation.update_attributes(json!({"purpose": "demo", "step": 2})).await?.attributes()
    );
    println!("get_attributes -> {}", conversation.get_attributes().await?);

    let first = conversation.send_message("hello", Some(json!({"n": 1})), None).await?;
    println!("send_message(text) -> {first}");
    let second_index =
        conversation.send_message(MessageContent::None, None, Some(SendEmailOptions::subject("Subject"))).await?;
    println!("send_message(none, subject) -> {second_index}");
    let built = conversation.prepare_message().set_body("built").set_attributes(json!({"n": 3})).build()?;
    println!("prepare_message().build().send() -> {}", built.send().await?);
    let with_media = conversation
        .send_message(MediaContent::new("text/plain", b"hello file".to_vec()).with_filename("hello.txt"), None, None)
        .await?;
    println!("send_message(media) -> {with_media}");
    let email = conversation
        .prepare_message()
        .set_body("see attached")
        .add_media(MediaContent::new("image/png", vec![137, 80, 78, 71]).with_filename("tiny.png"))
        .set_email_body("text/html", MediaContent::new("text/html", b"<p>see attached</p>".to_vec()))
        .set_email_history("text/plain", MediaContent::new("text/plain", b"> earlier".to_vec()))
        .build()?;
    println!("prepare_message().add_media().set_email_body().set_email_history() -> {}", email.send().await?);
    let newest = conversation.get_messages(Some(1), None, None).await?;
    if let Some(message) = newest.items().first() {
        println!("attached_media -> {:?}", message.attached_media());
        println!("temporary content URLs -> {:?}", message.get_temporary_content_urls_for_attached_media().await?);
        println!("get_detailed_delivery_receipts -> {:?}", message.get_detailed_delivery_receipts().await?);
    }
    println!("get_messages_count -> {}", conversation.get_messages_count().await?);
    let page = conversation.get_messages(Some(2), None, None).await?;
    println!(
        "get_messages(2) -> {:?} (has_prev {}, has_next {})",
        page.items(),
        page.has_prev_page(),
        page.has_next_page()
    );
    if page.has_prev_page() {
        println!("prev_page -> {:?}", page.prev_page().await?.items());
    }
    let forward = conversation.get_messages(Some(2), Some(0), Some(Direction::Forward)).await?;
    println!("get_messages(2, 0, forward) -> {:?}", forward.items());
    println!("get_message_recipients -> {:?}", conversation.get_message_recipients(None).await?.items());

    println!("typing -> {:?}", conversation.typing().await?);
    println!("advance_last_read_message_index(0) -> {:?}", conversation.advance_last_read_message_index(0).await?);
    println!("update_last_read_message_index(1) -> {:?}", conversation.update_last_read_message_index(Some(1)).await?);
    println!("get_unread_messages_count -> {:?}", conversation.get_unread_messages_count().await?);
    println!("set_all_messages_read -> {:?}", conversation.set_all_messages_read().await?);
    println!("set_all_messages_unread -> {:?}", conversation.set_all_messages_unread().await?);
    println!(
        "set_user_notification_level(muted) -> {:?}",
        conversation.set_user_notification_level(NotificationLevel::Muted).await?
    );

    if let Some(second) = &second {
        let theirs = second.get_conversation_by_sid(conversation.sid()).await?;
        println!("second client sees {:?} as {:?}", theirs.friendly_name(), theirs.status());
        println!("second client typing -> {:?}", theirs.typing().await?);
        println!(
            "second client send_message -> {}",
            theirs.send_message("hi from the second client", None, None).await?
        );
        println!("second client leave -> {:?}", theirs.leave().await?.status());
    } else {
        println!("remove_participant({other:?}) -> {:?}", conversation.remove_participant(other.as_str()).await?);
    }

    println!(
        "accessors: sid {}, friendly_name {:?}, unique_name {:?}",
        conversation.sid(),
        conversation.friendly_name(),
        conversation.unique_name()
    );
    println!(
        "  attributes {}, created_by {:?}, status {:?}",
        conversation.attributes(),
        conversation.created_by(),
        conversation.status()
    );
    println!("  date_created {:?}, date_updated {:?}", conversation.date_created(), conversation.date_updated());
    println!(
        "  last_message {:?}, last_read_message_index {:?}",
        conversation.last_message(),
        conversation.last_read_message_index()
    );
    println!("  notification_level {:?}, state {:?}", conversation.notification_level(), conversation.state());
    println!("  limits {:?}", conversation.limits());
    println!("  bindings {:?}, links {:?}", conversation.bindings(), conversation.links());

    println!("get_subscribed_conversations -> {:?}", client.get_subscribed_conversations().await?.items());
    println!("get_conversation_by_sid -> {:?}", client.get_conversation_by_sid(conversation.sid()).await?);
    println!(
        "get_conversation_by_unique_name -> {:?}",
        client.get_conversation_by_unique_name(&format!("{unique}-2")).await?
    );
    println!("get_user -> {:?}", client.get_user(&client.identity()).await?);
    println!("update_token -> {:?}", client.update_token(token).await?);

    println!("delete -> {:?}", conversation.delete().await?);
    // Leaving needs a conversation that still exists (and after leaving, a plain user may not delete it).
    let short = client.create_conversation(CreateConversationOptions::new().friendly_name("Short")).await?;
    short.join().await?;
    println!("leave -> {:?}", short.leave().await?.status());
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.shutdown().await;
    if let Some(second) = second {
        second.shutdown().await;
    }
    println!("shutdown -> {:?}", client.connection_state());
    Ok(())
}
