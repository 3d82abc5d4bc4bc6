//! Keyset paging: following `next` or `previous` cursors never skips or repeats an item, even when items are
//! added between two page reads, and the cursors say exactly where the list ends.

use palaver_api::sid::{ParticipantSid, UserSid};
use palaver_core::error::Error;
use palaver_core::input::{Attributes, Identity};
use palaver_core::store::{ConversationFilter, NewUser, Page, PageQuery, UserRef};

use crate::StoreFactory;
use crate::fixtures::*;

const SIZE: u32 = 3;

/// Reads the pages of a list in `descending` order, adding an item with `insert` after each of the first two
/// pages; returns the keys seen and the cursor of the last page.
async fn read_while_inserting<T>(
    read: &impl AsyncFn(PageQuery) -> Result<Page<T>, Error>,
    insert: &impl AsyncFn() -> String,
    key: &impl Fn(&T) -> String,
    descending: bool,
    inserted: &mut Vec<String>,
) -> (Vec<String>, PageQuery) {
    let mut query = PageQuery { size: SIZE, cursor: None, descending };
    let mut seen = Vec::new();
    for round in 0.. {
        let page = read(query).await.unwrap();
        assert_eq!(page.previous.is_some(), round > 0, "only the first page has nothing before it");
        assert!(!page.items.is_empty() && page.items.len() <= SIZE as usize);
        seen.extend(page.items.iter().map(key));
        if round < 2 {
            inserted.push(insert().await);
        }
        match page.next {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    (seen, query)
}

/// Follows `previous` cursors from the page `last` reads back to the first page; returns every key in list order.
async fn read_backwards<T>(
    read: &impl AsyncFn(PageQuery) -> Result<Page<T>, Error>,
    key: &impl Fn(&T) -> String,
    last: PageQuery,
) -> Vec<String> {
    let page = read(last).await.unwrap();
    assert!(page.next.is_none(), "the last page has nothing after it");
    let mut keys: Vec<String> = page.items.iter().map(key).collect();
    let mut previous = page.previous;
    while let Some(cursor) = previous {
        let page = read(PageQuery { cursor: Some(cursor), ..last }).await.unwrap();
        assert!(page.next.is_some(), "a page reached backwards has a page after it");
        assert!(!page.items.is_empty() && page.items.len() <= SIZE as usize);
        let mut before: Vec<String> = page.items.iter().map(key).collect();
        before.extend(keys);
        keys = before;
        previous = page.previous;
    }
    keys
}

/// The whole keyset contract on one list: `insert` adds an item at the list's end and returns its key.
async fn assert_keyset_paging<T>(
    read: impl AsyncFn(PageQuery) -> Result<Page<T>, Error>,
    insert: impl AsyncFn() -> String,
    key: impl Fn(&T) -> String,
) {
    let empty = read(first_page(SIZE)).await.unwrap();
    assert!(
        empty.items.is_empty() && empty.next.is_none() && empty.previous.is_none(),
        "an empty list has one empty page"
    );

    let mut all = Vec::new();
    for _ in 0..6 {
        all.push(insert().await);
    }
    let whole = read(first_page(50)).await.unwrap();
    assert_eq!(whole.items.iter().map(&key).collect::<Vec<_>>(), all, "oldest first");
    assert!(whole.next.is_none() && whole.previous.is_none(), "one page that holds everything has no neighbours");
    let exact = read(first_page(6)).await.unwrap();
    assert!(exact.next.is_none(), "a page that ends exactly at the end has no next page");

    // Newest first: items added meanwhile are newer than every page read after them, so the walk neither
    // shows them nor repeats anything.
    let newest_first: Vec<String> = all.iter().rev().cloned().collect();
    let (seen, last) = read_while_inserting(&read, &insert, &key, true, &mut all).await;
    assert_eq!(seen, newest_first, "descending pages skip and repeat nothing");
    // Walking back from the end does reach them, in front.
    let back = read_backwards(&read, &key, last).await;
    assert_eq!(back, all.iter().rev().cloned().collect::<Vec<_>>(), "descending pages read backwards");

    // Oldest first: items added meanwhile come at the end, so the walk reaches them.
    let (seen, last) = read_while_inserting(&read, &insert, &key, false, &mut all).await;
    assert_eq!(seen, all, "ascending pages skip and repeat nothing");
    assert_eq!(read_backwards(&read, &key, last).await, all, "ascending pages read backwards");

    // Forward then back then forward again lands on the same pages.
    let first = read(first_page(SIZE)).await.unwrap();
    let second = read(PageQuery { cursor: first.next, ..first_page(SIZE) }).await.unwrap();
    let back = read(PageQuery { cursor: second.previous, ..first_page(SIZE) }).await.unwrap();
    assert_eq!(back.items.iter().map(&key).collect::<Vec<_>>(), first.items.iter().map(&key).collect::<Vec<_>>());
    assert!(back.previous.is_none(), "back at the start");
    let again = read(PageQuery { cursor: back.next, ..first_page(SIZE) }).await.unwrap();
    assert_eq!(again.items.iter().map(&key).collect::<Vec<_>>(), second.items.iter().map(&key).collect::<Vec<_>>());
}

/// Conversation pages neither skip nor repeat, in both orders and both directions.
pub async fn conversation_pages_neither_skip_nor_repeat(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    assert_keyset_paging(
        async |q| world.store.list_conversations(&world.service, ConversationFilter::default(), q).await,
        async || world.conversation().await.sid.to_string(),
        |c| c.sid.to_string(),
    )
    .await;
}

/// Participant pages neither skip nor repeat, in both orders and both directions.
pub async fn participant_pages_neither_skip_nor_repeat(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    assert_keyset_paging(
        async |q| world.store.list_participants(&world.service, &by_sid(&conversation), q).await,
        async || world.join(&conversation, &format!("p-{}", ParticipantSid::generate())).await.sid.to_string(),
        |p| p.sid.to_string(),
    )
    .await;
}

/// Message pages neither skip nor repeat, in both orders and both directions.
pub async fn message_pages_neither_skip_nor_repeat(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    assert_keyset_paging(
        async |q| world.store.list_messages(&world.service, &by_sid(&conversation), q).await,
        async || world.post(&conversation, "paged").await.index.to_string(),
        |m| m.index.to_string(),
    )
    .await;
}

/// A user's conversation pages neither skip nor repeat, in both orders and both directions.
pub async fn user_conversation_pages_neither_skip_nor_repeat(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let user = NewUser {
        sid: UserSid::generate(),
        identity: Identity::parse("Identity", "pager").unwrap(),
        friendly_name: None,
        attributes: Attributes::empty(),
        role_sid: None,
        now: T0,
    };
    world.store.create_user(&world.service, user, &api()).await.unwrap();
    let pager = UserRef::Identity("pager".into());
    assert_keyset_paging(
        async |q| world.store.list_user_conversations(&world.service, &pager, q).await,
        async || {
            let conversation = world.conversation().await;
            world.join(&conversation, "pager").await;
            conversation.sid.to_string()
        },
        |uc| uc.conversation.sid.to_string(),
    )
    .await;
}

/// User pages neither skip nor repeat, in both orders and both directions.
pub async fn user_pages_neither_skip_nor_repeat(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    assert_keyset_paging(
        async |q| world.store.list_users(&world.service, q).await,
        async || {
            let identity = format!("u-{}", UserSid::generate());
            let user = NewUser {
                sid: UserSid::generate(),
                identity: Identity::parse("Identity", &identity).unwrap(),
                friendly_name: None,
                attributes: Attributes::empty(),
                role_sid: None,
                now: T0,
            };
            world.store.create_user(&world.service, user, &api()).await.unwrap().sid.to_string()
        },
        |u| u.sid.to_string(),
    )
    .await;
}
