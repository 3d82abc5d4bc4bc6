//! Live events between clients: messages, participants, typing, and changes made through the REST API.

use std::time::{Duration, Instant};

use palaver_client::{
    ClientEvent, ClientEventName, ConversationEvent, ConversationEventName, MessageEvent, MessageEventName,
    MessageUpdateReason, ParticipantEvent, ParticipantEventName, ParticipantUpdateReason,
};
use palaver_testkit::TestServer;
use serde_json::json;

use crate::support::{Recorder, connect, conversation_with, eventually, joined};

#[tokio::test]
async fn messages_reach_the_other_participant_live() {
    let server = TestServer::spawn().await;
    let alice = connect(&server, "alice").await;
    let bob = connect(&server, "bob").await;
    let mut bob_joins = Recorder::new(&bob.events(), ClientEventName::ConversationJoined);
    let conversation = conversation_with(&alice, "live", &["bob"]).await;
    let ClientEvent::ConversationJoined(joined_event) = bob_joins.next().await else { unreachable!() };
    assert_eq!(joined_event.sid(), conversation.sid());
    let bobs = joined(&bob, conversation.sid()).await;
    assert_eq!(bobs.friendly_name().as_deref(), Some("live"));

    let mut added = Recorder::new(&bobs.events(), ConversationEventName::MessageAdded);
    let mut client_added = Recorder::new(&bob.events(), ClientEventName::MessageAdded);
    let index = conversation.send_message("hello bob", Some(json!({"lang": "en"})), None).await.unwrap();
    let ConversationEvent::MessageAdded(message) = added.next().await else { unreachable!() };
    assert_eq!(message.index(), index);
    assert_eq!(message.body(), Some("hello bob"));
    assert_eq!(message.author(), Some("alice"));
    assert_eq!(message.attributes(), &json!({"lang": "en"}));
    assert!(message.participant_sid().is_some());
    assert!(message.date_created().is_some());
    assert_eq!(message.conversation().sid(), conversation.sid());
    assert!(matches!(client_added.next().await, ClientEvent::MessageAdded(m) if m.sid() == message.sid()));
    let author = message.get_participant().await.expect("the author's participant");
    assert_eq!(author.identity().as_deref(), Some("alice"));
    eventually("last_message to follow", || async {
        (bobs.last_message().and_then(|m| m.index) == Some(index)).then_some(())
    })
    .await;

    // Edits and deletions.
    let mut updated = Recorder::new(&bobs.events(), ConversationEventName::MessageUpdated);
    let mut own_updated = Recorder::new(&message.events(), MessageEventName::Updated);
    let alices_page = conversation.get_messages(None, None, None).await.unwrap();
    let alices_message = alices_page.items().last().unwrap().clone();
    let edited = alices_message.update_body("hello, bob").await.unwrap();
    assert_eq!(edited.body(), Some("hello, bob"));
    let ConversationEvent::MessageUpdated { message: after, update_reasons } = updated.next().await else {
        unreachable!()
    };
    assert_eq!(after.body(), Some("hello, bob"));
    assert!(update_reasons.contains(&MessageUpdateReason::Body), "{update_reasons:?}");
    assert!(!update_reasons.contains(&MessageUpdateReason::Attributes), "{update_reasons:?}");
    let MessageEvent::Updated { update_reasons: own_reasons, .. } = own_updated.next().await else { unreachable!() };
    assert_eq!(own_reasons, update_reasons);
    alices_message.update_attributes(json!({"lang": "en-GB"})).await.unwrap();
    let ConversationEvent::MessageUpdated { update_reasons, .. } = updated.next().await else { unreachable!() };
    assert!(update_reasons.contains(&MessageUpdateReason::Attributes), "{update_reasons:?}");

    let mut removed = Recorder::new(&bobs.events(), ConversationEventName::MessageRemoved);
    alices_message.remove().await.unwrap();
    let ConversationEvent::MessageRemoved(gone) = removed.next().await else { unreachable!() };
    assert_eq!(gone.sid(), message.sid());
    assert_eq!(conversation.get_messages_count().await.unwrap(), 0);
}

#[tokio::test]
async fn participants_join_change_and_leave_live() {
    let server = TestServer::spawn().await;
    let alice = connect(&server, "alice").await;
    let bob = connect(&server, "bob").await;
    let conversation = conversation_with(&alice, "roster", &[]).await;
    let mut joins = Recorder::new(&conversation.events(), ConversationEventName::ParticipantJoined);
    let response = conversation.add("bob", Some(json!({"role": "agent"}))).await.unwrap();
    assert_eq!(response.identity.as_deref(), Some("bob"));
    let ConversationEvent::ParticipantJoined(bob_participant) = joins.next().await else { unreachable!() };
    assert_eq!(bob_participant.identity().as_deref(), Some("bob"));
    assert_eq!(bob_participant.sid(), response.sid);
    assert_eq!(bob_participant.attributes(), json!({"role": "agent"}));

    let participants = conversation.get_participants().await.unwrap();
    let mut identities: Vec<_> = participants.iter().filter_map(|p| p.identity()).collect();
    identities.sort();
    assert_eq!(identities, ["alice", "bob"]);
    assert_eq!(conversation.get_participants_count().await.unwrap(), 2);
    let by_identity = conversation.get_participant_by_identity("bob").await.unwrap().unwrap();
    assert_eq!(by_identity.sid(), response.sid);
    let by_sid = conversation.get_participant_by_sid(&response.sid).await.unwrap().unwrap();
    assert_eq!(by_sid.identity().as_deref(), Some("bob"));
    let missing = conversation.get_participant_by_identity("nobody").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");
    assert_eq!(by_sid.get_user().await.unwrap().identity(), "bob");

    // Bob edits his own attributes; Alice sees it on the conversation and on the participant.
    let mut conv_updates = Recorder::new(&conversation.events(), ConversationEventName::ParticipantUpdated);
    let mut own_updates = Recorder::new(&by_sid.events(), ParticipantEventName::Updated);
    let bobs = joined(&bob, conversation.sid()).await;
    let bob_self = bobs.get_participant_by_identity("bob").await.unwrap().unwrap();
    bob_self.update_attributes(json!({"role": "lead"})).await.unwrap();
    let ConversationEvent::ParticipantUpdated { participant, update_reasons } = conv_updates.next().await else {
        unreachable!()
    };
    assert_eq!(participant.attributes(), json!({"role": "lead"}));
    assert!(update_reasons.contains(&ParticipantUpdateReason::Attributes), "{update_reasons:?}");
    assert!(matches!(own_updates.next().await, ParticipantEvent::Updated { .. }));
    assert_eq!(by_sid.attributes(), json!({"role": "lead"}), "handles read the live roster");

    // Bob leaves; Alice sees him go, Bob's own conversation says so.
    let mut left = Recorder::new(&conversation.events(), ConversationEventName::ParticipantLeft);
    let mut bob_left = Recorder::new(&bob.events(), ClientEventName::ConversationLeft);
    bobs.leave().await.unwrap();
    assert_eq!(bobs.status(), palaver_client::ConversationStatus::NotParticipating);
    let ConversationEvent::ParticipantLeft(gone) = left.next().await else { unreachable!() };
    assert_eq!(gone.identity().as_deref(), Some("bob"));
    bob_left.next().await;
    // Leaving again is a no-op.
    bobs.leave().await.unwrap();

    // Removal by identity and by handle.
    conversation.add("carol", None).await.unwrap();
    conversation.add("dave", None).await.unwrap();
    conversation.remove_participant("carol").await.unwrap();
    let dave = eventually("dave in the roster", || async {
        conversation.get_participant_by_identity("dave").await.ok().flatten()
    })
    .await;
    conversation.remove_participant(&dave).await.unwrap();
    let names: Vec<_> = conversation.get_participants().await.unwrap().iter().filter_map(|p| p.identity()).collect();
    assert_eq!(names, ["alice"]);
}

#[tokio::test]
async fn typing_starts_repeats_and_ends() {
    let server = TestServer::spawn().await;
    let alice = connect(&server, "alice").await;
    let bob = connect(&server, "bob").await;
    let conversation = conversation_with(&alice, "typing", &["bob"]).await;
    let bobs = joined(&bob, conversation.sid()).await;
    let mut started = Recorder::new(&conversation.events(), ConversationEventName::TypingStarted);
    let mut ended = Recorder::new(&conversation.events(), ConversationEventName::TypingEnded);
    let mut bob_sees = Recorder::new(&bobs.events(), ConversationEventName::TypingStarted);

    // A message from the typist ends the indicator at once.
    bobs.typing().await.unwrap();
    let ConversationEvent::TypingStarted(typist) = started.next().await else { unreachable!() };
    assert_eq!(typist.identity().as_deref(), Some("bob"));
    assert!(typist.is_typing());
    let mut own_ended = Recorder::new(&typist.events(), ParticipantEventName::TypingEnded);
    // Throttled: a second call right away sends nothing.
    bobs.typing().await.unwrap();
    started.assert_silent(Duration::from_millis(300)).await;
    bobs.send_message("done typing", None, None).await.unwrap();
    let ConversationEvent::TypingEnded(stopped) = ended.next().await else { unreachable!() };
    assert_eq!(stopped.identity().as_deref(), Some("bob"));
    assert!(!stopped.is_typing());
    own_ended.next().await;
    // Never for yourself.
    bob_sees.assert_silent(Duration::from_millis(100)).await;

    // Without a message the indicator times out (the server's timeout plus a second).
    let bob2 = connect(&server, "bob").await;
    let bobs2 = joined(&bob2, conversation.sid()).await;
    bobs2.typing().await.unwrap();
    let ConversationEvent::TypingStarted(typist) = started.next().await else { unreachable!() };
    let began = Instant::now();
    let ConversationEvent::TypingEnded(_) = ended.next_within(Duration::from_secs(10)).await else { unreachable!() };
    assert!(began.elapsed() >= Duration::from_secs(3), "ended after {:?}", began.elapsed());
    assert!(!typist.is_typing());
}

#[tokio::test]
async fn rest_changes_reach_clients_live() {
    let server = TestServer::spawn().await;
    let alice = connect(&server, "alice").await;
    let conversation = conversation_with(&alice, "rest", &[]).await;
    let mut added = Recorder::new(&conversation.events(), ConversationEventName::MessageAdded);
    let mut updated = Recorder::new(&conversation.events(), ConversationEventName::Updated);
    let http = reqwest::Client::new();
    let base = format!("{}/v1/Conversations/{}", server.url(), conversation.sid());
    let response = http
        .post(format!("{base}/Messages"))
        .basic_auth(server.account_sid(), Some(server.auth_token()))
        .form(&[("Body", "from the API"), ("Author", "system")])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{:?}", response.text().await);
    let ConversationEvent::MessageAdded(message) = added.next().await else { unreachable!() };
    assert_eq!(message.body(), Some("from the API"));
    assert_eq!(message.author(), Some("system"));

    updated.drain();
    let response = http
        .post(&base)
        .basic_auth(server.account_sid(), Some(server.auth_token()))
        .form(&[("FriendlyName", "renamed by the API")])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let ConversationEvent::Updated { update_reasons, conversation: after } = updated
        .next_matching(|e| matches!(e, ConversationEvent::Updated { update_reasons, .. } if update_reasons.contains(&palaver_client::ConversationUpdateReason::FriendlyName)))
        .await
    else {
        unreachable!()
    };
    assert!(update_reasons.contains(&palaver_client::ConversationUpdateReason::FriendlyName));
    assert_eq!(after.friendly_name().as_deref(), Some("renamed by the API"));
    assert_eq!(conversation.links().self_url, base);
}

#[tokio::test]
async fn deleting_a_service_removes_its_conversations_from_its_clients() {
    let server = TestServer::spawn().await;
    let http = reqwest::Client::new();
    let auth = (server.account_sid().to_string(), Some(server.auth_token().to_string()));
    let created: serde_json::Value = http
        .post(format!("{}/v1/Services", server.url()))
        .basic_auth(&auth.0, auth.1.as_ref())
        .form(&[("FriendlyName", "Tenant B")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let service = palaver_api::sid::ServiceSid::parse(created["sid"].as_str().expect("a service SID")).unwrap();
    let token = server.access_token_in_service("alice", &service);
    let alice = palaver_client::Client::connect_with(crate::support::options(server.ws_url(), token)).await.unwrap();
    let conversation = conversation_with(&alice, "in tenant B", &[]).await;
    let mut removed = Recorder::new(&conversation.events(), ConversationEventName::Removed);
    let mut client_removed = Recorder::new(&alice.events(), ClientEventName::ConversationRemoved);
    let mut left = Recorder::new(&alice.events(), ClientEventName::ConversationLeft);

    let response = http
        .delete(format!("{}/v1/Services/{service}", server.url()))
        .basic_auth(&auth.0, auth.1.as_ref())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    removed.next().await;
    let ClientEvent::ConversationRemoved(gone) = client_removed.next().await else { unreachable!() };
    assert_eq!(gone.sid(), conversation.sid());
    left.next().await;
}
