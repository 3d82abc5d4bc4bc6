//! What the behaviours build their inputs from, the way `Palaver` builds them: new SIDs, times at millisecond
//! precision (what every store keeps), validated values. Times are counted from [`T0`] so that timers, outbox
//! due times and event times can be asserted exactly.

use std::sync::Arc;

use palaver_api::sid::{ConversationSid, MessageSid, ParticipantSid, ServiceSid, UserSid};
use palaver_core::error::Error;
use palaver_core::event::{Event, EventKind, Origin};
use palaver_core::input::{Attributes, Identity};
use palaver_core::model::{
    BindingKind, Conversation, ConversationState, EmailBinding, Message, MessagingBinding, Participant, Timers,
};
use palaver_core::store::{
    ConversationRef, NewConversation, NewMessage, NewParticipant, NewService, Page, PageQuery, ParticipantRef, Store,
};
use time::OffsetDateTime;

use crate::StoreFactory;

/// The time every behaviour starts at.
pub(crate) const T0: OffsetDateTime = time::macros::datetime!(2030-01-01 00:00 UTC);

/// What the behaviours claim outbox jobs for (the dispatchers' lease, as they pass it).
pub(crate) const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// `secs` seconds after [`T0`].
pub(crate) fn at(secs: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(secs)
}

/// A bootstrapped store and its default service.
pub(crate) struct World {
    /// The store under test.
    pub(crate) store: Arc<dyn Store>,
    /// Its default service.
    pub(crate) service: ServiceSid,
}

/// A fresh store, bootstrapped.
pub(crate) async fn world(factory: &dyn StoreFactory) -> World {
    let store = factory.fresh().await;
    let config = store.bootstrap(new_service("Default Conversations Service")).await.expect("bootstrap");
    World { store, service: config.default_service_sid }
}

/// Restarts the world's store (as a server restart would) and returns the same world over the reopened store.
pub(crate) async fn restart(factory: &dyn StoreFactory, world: World) -> World {
    let World { store, service } = world;
    assert_eq!(Arc::strong_count(&store), 1, "a restart needs the last handle of the store");
    let store = factory.reopen(store).await;
    World { store, service }
}

/// A new service named `name`.
pub(crate) fn new_service(name: &str) -> NewService {
    NewService { sid: ServiceSid::generate(), friendly_name: name.to_string(), now: T0 }
}

/// A new active conversation of `service` without timers, created at [`T0`].
pub(crate) fn new_conversation(service: &ServiceSid) -> Conversation {
    Conversation {
        sid: ConversationSid::generate(),
        service_sid: service.clone(),
        friendly_name: None,
        unique_name: None,
        attributes: Attributes::empty(),
        messaging_service_sid: None,
        state: ConversationState::Active,
        state_updated: T0,
        timers: Timers::default(),
        created_by: None,
        email_binding: EmailBinding::default(),
        date_created: T0,
        date_updated: T0,
        last_message_index: None,
        last_message_date: None,
        messages_count: 0,
        next_message_index: 0,
        participants_count: 0,
    }
}

/// A new chat participant.
pub(crate) fn chat(identity: &str) -> NewParticipant {
    NewParticipant {
        sid: ParticipantSid::generate(),
        identity: Some(Identity::parse("Identity", identity).expect("identity")),
        binding: None,
        attributes: Attributes::empty(),
        role_sid: None,
        new_user_sid: UserSid::generate(),
        date_created: T0,
        date_updated: T0,
    }
}

/// A new non-chat participant on `kind` at `address`, writing to `proxy`.
pub(crate) fn non_chat(kind: BindingKind, address: &str, proxy: Option<&str>) -> NewParticipant {
    NewParticipant {
        sid: ParticipantSid::generate(),
        identity: None,
        binding: Some(MessagingBinding {
            kind,
            address: address.to_string(),
            proxy_address: proxy.map(str::to_string),
            projected_address: None,
            name: None,
            level: None,
        }),
        attributes: Attributes::empty(),
        role_sid: None,
        new_user_sid: UserSid::generate(),
        date_created: T0,
        date_updated: T0,
    }
}

/// A new message by `system` with `body`, sent at [`T0`].
pub(crate) fn new_message(body: &str) -> NewMessage {
    NewMessage {
        sid: MessageSid::generate(),
        author: "system".to_string(),
        body: Some(body.to_string()),
        subject: None,
        attributes: Attributes::empty(),
        content_sid: None,
        date_created: T0,
        idempotency_key: None,
        media: Vec::new(),
        max_media_bytes: 32 * 1024 * 1024,
        date_updated: None,
        now: T0,
    }
}

/// The first page of `size` items, oldest first.
pub(crate) fn first_page(size: u32) -> PageQuery {
    PageQuery { size, cursor: None, descending: false }
}

/// A conversation addressed by SID.
pub(crate) fn by_sid(conversation: &Conversation) -> ConversationRef {
    ConversationRef::Sid(conversation.sid.clone())
}

/// A participant addressed by SID.
pub(crate) fn participant_ref(participant: &Participant) -> ParticipantRef {
    ParticipantRef::Sid(participant.sid.clone())
}

/// The origin the behaviours act with unless they test origins: a REST call that asked for webhooks.
pub(crate) fn api() -> Origin {
    Origin::api(true)
}

/// The stored names of the events' kinds.
pub(crate) fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// Asserts that `events` are a whole stream: sequence numbers 1, 2, 3… and log ids increasing.
pub(crate) fn assert_whole_stream(events: &[Event]) {
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(seqs, expected, "sequence numbers start at 1 and have no gaps");
    assert!(events.windows(2).all(|w| w[0].id < w[1].id), "log ids increase along a stream: {events:?}");
}

/// Asserts that `result` failed as `expected` says, showing what it was otherwise.
pub(crate) fn assert_fails<T: std::fmt::Debug>(result: Result<T, Error>, expected: impl Fn(&Error) -> bool) {
    match result {
        Err(err) if expected(&err) => {}
        other => panic!("expected a different outcome, got {other:?}"),
    }
}

/// Every item of a list, following `next` cursors from the first page of `size`.
pub(crate) async fn walk<T>(
    size: u32,
    descending: bool,
    read: impl AsyncFn(PageQuery) -> Result<Page<T>, Error>,
) -> Vec<T> {
    let mut query = PageQuery { size, cursor: None, descending };
    let mut items = Vec::new();
    loop {
        let page = read(query).await.expect("page");
        assert!(page.items.len() <= size as usize, "a page holds at most its size");
        items.extend(page.items);
        match page.next {
            Some(cursor) => query.cursor = Some(cursor),
            None => return items,
        }
    }
}

impl World {
    /// Creates `conversation` with `participants`.
    pub(crate) async fn create(
        &self,
        conversation: Conversation,
        participants: Vec<NewParticipant>,
    ) -> Result<(Conversation, Vec<Participant>), Error> {
        self.store.create_conversation(NewConversation { conversation }, participants, &api()).await
    }

    /// A new conversation without participants.
    pub(crate) async fn conversation(&self) -> Conversation {
        self.create(new_conversation(&self.service), Vec::new()).await.expect("create conversation").0
    }

    /// A new conversation with a unique name.
    pub(crate) async fn named(&self, unique_name: &str) -> Result<Conversation, Error> {
        let conversation =
            Conversation { unique_name: Some(unique_name.to_string()), ..new_conversation(&self.service) };
        self.create(conversation, Vec::new()).await.map(|(c, _)| c)
    }

    /// The conversation as stored now.
    pub(crate) async fn reload(&self, conversation: &Conversation) -> Conversation {
        self.store.get_conversation(&self.service, &by_sid(conversation)).await.expect("get conversation")
    }

    /// Adds a chat participant with `identity`.
    pub(crate) async fn join(&self, conversation: &Conversation, identity: &str) -> Participant {
        self.store
            .add_participant(&self.service, &by_sid(conversation), chat(identity), &api())
            .await
            .expect("add participant")
    }

    /// Posts a message with `body`.
    pub(crate) async fn post(&self, conversation: &Conversation, body: &str) -> Message {
        self.send(conversation, new_message(body)).await.expect("add message")
    }

    /// Adds `message` to the conversation.
    pub(crate) async fn send(&self, conversation: &Conversation, message: NewMessage) -> Result<Message, Error> {
        self.store.add_message(&self.service, &by_sid(conversation), message, &api()).await
    }

    /// Every event of `stream`.
    pub(crate) async fn events(&self, stream: &str) -> Vec<Event> {
        let mut events: Vec<Event> = Vec::new();
        loop {
            let after = events.last().map_or(0, |e| e.seq);
            let batch = self.store.read_events(stream, after, 500).await.expect("read events");
            if batch.is_empty() {
                return events;
            }
            events.extend(batch);
        }
    }

    /// The events of `stream` of one kind.
    pub(crate) async fn events_of(&self, stream: &str, kind: EventKind) -> Vec<Event> {
        self.events(stream).await.into_iter().filter(|e| e.kind == kind).collect()
    }

    /// The newest id in the whole log.
    pub(crate) async fn log_position(&self) -> i64 {
        self.store.last_log_id().await.expect("last log id")
    }
}
