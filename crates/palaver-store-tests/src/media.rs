//! Media: uploads are recorded first, then attached once to the message that carries them, in the message's
//! transaction; a message whose media cannot be attached is not stored at all.

use palaver_api::sid::MediaSid;
use palaver_api::sid::ServiceSid;
use palaver_core::error::{Error, ResourceKind};
use palaver_core::media::{Media, MediaCategory};
use palaver_core::model::{BindingKind, Conversation};
use palaver_core::store::NewMessage;

use crate::StoreFactory;
use crate::fixtures::*;

fn upload(service: &ServiceSid, filename: &str, size: u64) -> Media {
    Media {
        sid: MediaSid::generate(),
        service_sid: service.clone(),
        content_type: "image/png".into(),
        filename: Some(filename.to_string()),
        size,
        sha256: format!("{:064x}", size),
        author: Some("alice".into()),
        category: MediaCategory::Media,
        message_sid: None,
        conversation_sid: None,
        date_created: T0,
    }
}

fn with_media(media: &[&Media]) -> NewMessage {
    NewMessage { media: media.iter().map(|m| m.sid.clone()).collect(), body: None, ..new_message("") }
}

/// What must not change when a message with media is refused: the log, the conversation's counters and the
/// media's attachment.
async fn assert_untouched(world: &World, conversation: &Conversation, position: i64, media: &[&Media]) {
    assert_eq!(world.log_position().await, position, "a refused message appends nothing");
    let stored = world.reload(conversation).await;
    assert_eq!(
        (stored.messages_count, stored.next_message_index),
        (conversation.messages_count, conversation.next_message_index),
        "and takes no index"
    );
    for item in media {
        assert_eq!(&world.store.get_media(&item.service_sid, &item.sid).await.unwrap(), *item, "and attaches nothing");
    }
}

/// An upload is stored as given, found in its service or by SID alone, and not in another service.
pub async fn media_records_round_trip(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let media = Media {
        category: MediaCategory::Body,
        content_type: "text/plain".into(),
        author: None,
        ..upload(&world.service, "body.txt", 42)
    };
    assert_eq!(world.store.create_media(media.clone()).await.unwrap(), media);
    assert_eq!(world.store.get_media(&world.service, &media.sid).await.unwrap(), media);
    assert_eq!(world.store.find_media(&media.sid).await.unwrap(), media);
    let other = world.store.create_service(new_service("other")).await.unwrap();
    assert_fails(world.store.get_media(&other.sid, &media.sid).await, |e| {
        matches!(e, Error::NotFound { kind: ResourceKind::Media, .. })
    });
    assert_fails(world.store.find_media(&MediaSid::generate()).await, |e| {
        matches!(e, Error::NotFound { kind: ResourceKind::Media, .. })
    });
}

/// Attached media are listed on the message in the order given, know their message, and cannot be attached
/// to a second message.
pub async fn media_are_attached_once_and_listed_on_their_message(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let first = world.store.create_media(upload(&world.service, "a.png", 1000)).await.unwrap();
    let second = world.store.create_media(upload(&world.service, "b.png", 2000)).await.unwrap();
    let message = world.send(&conversation, with_media(&[&second, &first])).await.unwrap();
    assert_eq!(message.media, [second.descriptor(), first.descriptor()]);
    let stored = world.store.get_message(&world.service, &by_sid(&conversation), &message.sid).await.unwrap();
    assert_eq!(stored, message);
    let event = world.events(conversation.sid.as_str()).await.pop().unwrap();
    assert_eq!(event.data["media"], serde_json::json!([second.descriptor(), first.descriptor()]));
    for item in [&first, &second] {
        let attached = world.store.get_media(&world.service, &item.sid).await.unwrap();
        assert_eq!(
            (attached.message_sid.as_ref(), attached.conversation_sid.as_ref()),
            (Some(&message.sid), Some(&conversation.sid))
        );
    }

    // The same upload on another message is refused, and that message leaves no trace.
    let conversation = world.reload(&conversation).await;
    let fresh = world.store.create_media(upload(&world.service, "c.png", 10)).await.unwrap();
    let position = world.log_position().await;
    assert_fails(world.send(&conversation, with_media(&[&fresh, &first])).await, |e| matches!(e, Error::Invalid(_)));
    assert_untouched(&world, &conversation, position, &[&fresh]).await;
    assert_eq!(world.store.get_media(&world.service, &first.sid).await.unwrap().message_sid, Some(message.sid));
    // The refusal spoiled nothing: the next message gets the next index.
    assert_eq!(world.send(&conversation, with_media(&[&fresh])).await.unwrap().index, 1);
}

/// Media larger together than the message's limit are refused, and that message leaves no trace.
pub async fn media_beyond_the_size_limit_are_refused(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let small = world.store.create_media(upload(&world.service, "small.png", 600)).await.unwrap();
    let large = world.store.create_media(upload(&world.service, "large.png", 600)).await.unwrap();
    let position = world.log_position().await;
    let too_much = NewMessage { max_media_bytes: 1000, ..with_media(&[&small, &large]) };
    assert_fails(world.send(&conversation, too_much).await, |e| matches!(e, Error::Invalid(_)));
    assert_untouched(&world, &conversation, position, &[&small, &large]).await;
    let fits = NewMessage { max_media_bytes: 1200, ..with_media(&[&small, &large]) };
    assert_eq!(world.send(&conversation, fits).await.unwrap().media.len(), 2);
}

/// Media of another service, or never uploaded, cannot be attached.
pub async fn media_of_another_service_cannot_be_attached(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let other = world.store.create_service(new_service("other")).await.unwrap();
    let foreign = world.store.create_media(upload(&other.sid, "x.png", 10)).await.unwrap();
    let position = world.log_position().await;
    assert_fails(world.send(&conversation, with_media(&[&foreign])).await, |e| {
        matches!(e, Error::NotFound { kind: ResourceKind::Media, .. })
    });
    let missing = upload(&world.service, "missing.png", 10);
    assert_fails(world.send(&conversation, with_media(&[&missing])).await, |e| {
        matches!(e, Error::NotFound { kind: ResourceKind::Media, .. })
    });
    assert_untouched(&world, &conversation, position, &[&foreign]).await;
}

/// A queued delivery carries its message's media, so the channel can send them.
pub async fn channel_jobs_carry_their_messages_media(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let (conversation, _) = world
        .create(
            new_conversation(&world.service),
            vec![non_chat(BindingKind::Whatsapp, "whatsapp:+15550100001", Some("whatsapp:+15559990000"))],
        )
        .await
        .unwrap();
    let picture = world.store.create_media(upload(&world.service, "pic.png", 100)).await.unwrap();
    world.send(&conversation, with_media(&[&picture])).await.unwrap();
    let jobs = world.store.due_channel_jobs(&[BindingKind::Whatsapp], T0, LEASE, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].media, [picture.descriptor()]);
}
