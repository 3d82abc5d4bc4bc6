//! [`Paginator`]: one page of results and the way to its neighbours.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use palaver_api::realtime::Direction;

use crate::error::{ClientError, PageDirection, Result};

type PageFuture<T> = Pin<Box<dyn Future<Output = Result<Paginator<T>>> + Send>>;
/// How a paginator fetches one of its neighbours.
pub(crate) type Fetch<T> = Arc<dyn Fn() -> PageFuture<T> + Send + Sync>;

/// Wraps an async closure as a [`Fetch`].
pub(crate) fn fetcher<T, F, Fut>(f: F) -> Fetch<T>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Paginator<T>>> + Send + 'static,
{
    Arc::new(move || Box::pin(f()) as PageFuture<T>)
}

/// One page of `T`s. Asking for a neighbour page returns a new paginator and leaves this one as it is.
///
/// For messages, items are always in ascending index order whatever the direction of the query;
/// [`prev_page`](Self::prev_page) reads older messages and [`next_page`](Self::next_page) newer ones.
pub struct Paginator<T> {
    items: Vec<T>,
    next: Option<Fetch<T>>,
    prev: Option<Fetch<T>>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Paginator<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paginator")
            .field("items", &self.items)
            .field("has_next_page", &self.has_next_page())
            .field("has_prev_page", &self.has_prev_page())
            .finish()
    }
}

impl<T> Clone for Paginator<T>
where
    T: Clone,
{
    fn clone(&self) -> Self {
        Self { items: self.items.clone(), next: self.next.clone(), prev: self.prev.clone() }
    }
}

impl<T> Paginator<T> {
    /// A page with optional ways to its neighbours (see [`fetcher`]).
    pub(crate) fn new(items: Vec<T>, next: Option<Fetch<T>>, prev: Option<Fetch<T>>) -> Self {
        Self { items, next, prev }
    }

    /// The items of this page.
    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// The items, consuming the paginator.
    pub fn into_items(self) -> Vec<T> {
        self.items
    }

    /// Whether [`next_page`](Self::next_page) has something to fetch.
    pub fn has_next_page(&self) -> bool {
        self.next.is_some()
    }

    /// Whether [`prev_page`](Self::prev_page) has something to fetch.
    pub fn has_prev_page(&self) -> bool {
        self.prev.is_some()
    }

    /// Fetches the next page (newer messages).
    ///
    /// # Errors
    /// [`ClientError::NoPage`] when there is none; request errors otherwise.
    pub async fn next_page(&self) -> Result<Paginator<T>> {
        match &self.next {
            Some(fetch) => fetch().await,
            None => Err(ClientError::NoPage(PageDirection::Next)),
        }
    }

    /// Fetches the previous page (older messages).
    ///
    /// # Errors
    /// [`ClientError::NoPage`] when there is none; request errors otherwise.
    pub async fn prev_page(&self) -> Result<Paginator<T>> {
        match &self.prev {
            Some(fetch) => fetch().await,
            None => Err(ClientError::NoPage(PageDirection::Previous)),
        }
    }
}

/// A `get_messages` query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageQuery {
    pub(crate) page_size: u32,
    pub(crate) anchor: Option<i64>,
    pub(crate) direction: Direction,
}

/// The queries for the pages around a page of messages spanning `first..=last` (ascending): the previous page
/// reads backwards from just below the first item, the next page forwards from just above the last, whatever
/// direction produced this page.
pub(crate) fn message_neighbours(
    page_size: u32,
    span: Option<(i64, i64)>,
    has_older: bool,
    has_newer: bool,
) -> (Option<MessageQuery>, Option<MessageQuery>) {
    let Some((first, last)) = span else { return (None, None) };
    let prev = (has_older && first > 0).then_some(MessageQuery {
        page_size,
        anchor: Some(first - 1),
        direction: Direction::Backwards,
    });
    let next = has_newer.then_some(MessageQuery {
        page_size,
        anchor: Some(last.saturating_add(1)),
        direction: Direction::Forward,
    });
    (prev, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_means_older_and_next_means_newer() {
        let (prev, next) = message_neighbours(10, Some((20, 29)), true, true);
        assert_eq!(prev, Some(MessageQuery { page_size: 10, anchor: Some(19), direction: Direction::Backwards }));
        assert_eq!(next, Some(MessageQuery { page_size: 10, anchor: Some(30), direction: Direction::Forward }));
    }

    #[test]
    fn ends_have_no_neighbour() {
        assert_eq!(message_neighbours(10, Some((0, 9)), false, false), (None, None));
        assert_eq!(message_neighbours(10, None, true, true), (None, None));
        // Index 0 has nothing older even if the server claims otherwise.
        assert_eq!(message_neighbours(10, Some((0, 9)), true, false).0, None);
    }

    #[tokio::test]
    async fn asking_for_a_missing_page_is_a_typed_error() {
        let page: Paginator<u32> =
            Paginator::new(vec![1, 2], Some(fetcher(|| async { Ok(Paginator::new(vec![3], None, None)) })), None);
        assert!(page.has_next_page());
        assert!(!page.has_prev_page());
        let next = page.next_page().await.unwrap();
        assert_eq!(next.items(), &[3]);
        assert_eq!(page.items(), &[1, 2], "the original page does not change");
        assert_eq!(page.prev_page().await.unwrap_err(), ClientError::NoPage(PageDirection::Previous));
        assert_eq!(next.next_page().await.unwrap_err(), ClientError::NoPage(PageDirection::Next));
    }
}
