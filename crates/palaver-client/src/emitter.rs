//! [`ReplayEventEmitter`]: the event surface of every SDK object, in the shape of Node's `EventEmitter` plus
//! replay: the emitter remembers the payload of the last emit of each event name (even without listeners), and
//! `on_with_replay` / `once_with_replay` hand it to a new listener right away.
//!
//! Listeners are plain closures called synchronously, in order, on the task that emits; the emitter's lock is
//! never held while they run, so a listener may add, remove or emit freely. A listener that returns an error or
//! panics does not stop the others: the failure goes to the error hook (Node's `captureRejections`).
//!
//! ```
//! use palaver_client::emitter::ReplayEventEmitter;
//!
//! let emitter: ReplayEventEmitter<&'static str, u32> = ReplayEventEmitter::new();
//! emitter.emit("count", 1);
//! emitter.emit("count", 2);
//! let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! let sink = seen.clone();
//! emitter.on_with_replay("count", move |n| {
//!     sink.lock().unwrap().push(*n);
//!     Ok(())
//! });
//! emitter.emit("count", 3);
//! assert_eq!(*seen.lock().unwrap(), vec![2, 3]);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::sync::mpsc;

/// Identifies one registered listener, to remove it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

/// A listener's failure: the error it returned, or the message of its panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ListenerError(String);

impl ListenerError {
    /// A failure with this description.
    pub fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string())
    }
}

type Listener<V> = Arc<dyn Fn(&V) -> Result<(), ListenerError> + Send + Sync>;
type ErrorHook<K, V> = Arc<dyn Fn(&ListenerError, K, &V) + Send + Sync>;

struct Registered<V> {
    id: ListenerId,
    once: bool,
    listener: Listener<V>,
}

struct Inner<K, V> {
    /// Event names in the order they first got a listener.
    order: Vec<K>,
    listeners: HashMap<K, Vec<Registered<V>>>,
    last: HashMap<K, V>,
    max_listeners: usize,
    warned: Vec<K>,
    error_hook: Option<ErrorHook<K, V>>,
    streams: Vec<mpsc::UnboundedSender<(K, V)>>,
}

/// An event emitter that replays the last payload of each event name to listeners that ask for it.
/// Cloning gives another handle to the same emitter.
pub struct ReplayEventEmitter<K, V> {
    inner: Arc<Mutex<Inner<K, V>>>,
    next_id: Arc<AtomicU64>,
}

impl<K, V> Clone for ReplayEventEmitter<K, V> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner), next_id: Arc::clone(&self.next_id) }
    }
}

impl<K: fmt::Debug, V> fmt::Debug for ReplayEventEmitter<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.inner.lock().map(|i| format!("{:?}", i.order)).unwrap_or_default();
        f.debug_struct("ReplayEventEmitter").field("events", &names).finish_non_exhaustive()
    }
}

/// Listeners per event name before a warning is logged (Node's default).
const DEFAULT_MAX_LISTENERS: usize = 10;

impl<K, V> Default for ReplayEventEmitter<K, V>
where
    K: Clone + Eq + Hash + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> ReplayEventEmitter<K, V>
where
    K: Clone + Eq + Hash + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An emitter with no listeners and no history.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                order: Vec::new(),
                listeners: HashMap::new(),
                last: HashMap::new(),
                max_listeners: DEFAULT_MAX_LISTENERS,
                warned: Vec::new(),
                error_hook: None,
                streams: Vec::new(),
            })),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K, V>> {
        // A panicking listener never runs under the lock, so poisoning cannot leave the state half-changed.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add(&self, name: K, listener: Listener<V>, once: bool, prepend: bool) -> ListenerId {
        let id = ListenerId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut inner = self.lock();
        if !inner.order.contains(&name) {
            inner.order.push(name.clone());
        }
        let list = inner.listeners.entry(name.clone()).or_default();
        let registered = Registered { id, once, listener };
        if prepend {
            list.insert(0, registered);
        } else {
            list.push(registered);
        }
        let count = list.len();
        if inner.max_listeners > 0 && count > inner.max_listeners && !inner.warned.contains(&name) {
            inner.warned.push(name);
            tracing::warn!(
                count,
                max = inner.max_listeners,
                "possible listener leak: more listeners of one event than the maximum"
            );
        }
        id
    }

    /// Adds `listener` for `name`, called on every emit.
    pub fn on(
        &self,
        name: K,
        listener: impl Fn(&V) -> Result<(), ListenerError> + Send + Sync + 'static,
    ) -> ListenerId {
        self.add(name, Arc::new(listener), false, false)
    }

    /// Alias of [`ReplayEventEmitter::on`].
    pub fn add_listener(
        &self,
        name: K,
        listener: impl Fn(&V) -> Result<(), ListenerError> + Send + Sync + 'static,
    ) -> ListenerId {
        self.on(name, listener)
    }

    /// Adds `listener` for the next emit of `name` only.
    pub fn once(
        &self,
        name: K,
        listener: impl Fn(&V) -> Result<(), ListenerError> + Send + Sync + 'static,
    ) -> ListenerId {
        self.add(name, Arc::new(listener), true, false)
    }

    /// Like [`ReplayEventEmitter::on`], but called before the listeners already registered.
    pub fn prepend_listener(
        &self,
        name: K,
        listener: impl Fn(&V) -> Result<(), ListenerError> + Send + Sync + 'static,
    ) -> ListenerId {
        self.add(name, Arc::new(listener), false, true)
    }

    /// Like [`ReplayEventEmitter::once`], but called before the listeners already registered.
    pub fn prepend_once_listener(
        &self,
        name: K,
        listener: impl Fn(&V) -> Result<(), ListenerError> + Send + Sync + 'static,
    ) -> ListenerId {
        self.add(name, Arc::new(listener), true, true)
    }

    /// Removes one listener; returns whether it was registered.
    pub fn off(&self, name: K, id: ListenerId) -> bool {
        let mut inner = self.lock();
        let Some(list) = inner.listeners.get_mut(&name) else { return false };
        let before = list.len();
        list.retain(|r| r.id != id);
        let removed = list.len() != before;
        if list.is_empty() {
            inner.listeners.remove(&name);
            inner.order.retain(|n| *n != name);
        }
        removed
    }

    /// Alias of [`ReplayEventEmitter::off`].
    pub fn remove_listener(&self, name: K, id: ListenerId) -> bool {
        self.off(name, id)
    }

    /// Removes every listener of `name`, or of every event when `None`.
    pub fn remove_all_listeners(&self, name: Option<K>) {
        let mut inner = self.lock();
        match name {
            Some(name) => {
                inner.listeners.remove(&name);
                inner.order.retain(|n| *n != name);
            }
            None => {
                inner.listeners.clear();
                inner.order.clear();
            }
        }
    }

    fn report(&self, hook: Option<&ErrorHook<K, V>>, error: &ListenerError, name: K, payload: &V) {
        match hook {
            Some(hook) => hook(error, name, payload),
            None => {
                let _ = name;
                tracing::warn!(%error, "an event listener failed");
            }
        }
    }

    fn call(&self, listener: &Listener<V>, name: K, payload: &V, hook: Option<&ErrorHook<K, V>>) {
        let outcome = catch_unwind(AssertUnwindSafe(|| listener(payload)));
        let error = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error,
            Err(panic) => ListenerError::new(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a listener panicked".to_string()),
            ),
        };
        self.report(hook, &error, name, payload);
    }

    /// Records `payload` as the last value of `name`, then calls the listeners registered at this moment, in
    /// order. Returns whether there were any.
    pub fn emit(&self, name: K, payload: V) -> bool {
        let (listeners, hook) = {
            let mut inner = self.lock();
            inner.last.insert(name.clone(), payload.clone());
            inner.streams.retain(|s| s.send((name.clone(), payload.clone())).is_ok());
            let snapshot: Vec<Listener<V>> = match inner.listeners.get_mut(&name) {
                Some(list) => {
                    let snapshot = list.iter().map(|r| Arc::clone(&r.listener)).collect();
                    // `once` listeners leave before they run, so a nested emit cannot call them again.
                    list.retain(|r| !r.once);
                    snapshot
                }
                None => Vec::new(),
            };
            if inner.listeners.get(&name).is_some_and(Vec::is_empty) {
                inner.listeners.remove(&name);
                inner.order.retain(|n| *n != name);
            }
            (snapshot, inner.error_hook.clone())
        };
        for listener in &listeners {
            self.call(listener, name.clone(), &payload, hook.as_ref());
        }
        !listeners.is_empty()
    }

    /// Event names that have listeners, in the order they first got one.
    pub fn event_names(&self) -> Vec<K> {
        self.lock().order.clone()
    }

    /// How many listeners `name` has.
    pub fn listener_count(&self, name: K) -> usize {
        self.lock().listeners.get(&name).map_or(0, Vec::len)
    }

    /// The listeners of `name`, in calling order.
    pub fn listeners(&self, name: K) -> Vec<ListenerId> {
        self.lock().listeners.get(&name).map(|l| l.iter().map(|r| r.id).collect()).unwrap_or_default()
    }

    /// Sets how many listeners per event are expected at most before a leak warning (0: no limit).
    pub fn set_max_listeners(&self, n: usize) -> &Self {
        self.lock().max_listeners = n;
        self
    }

    /// The listener count above which a warning is logged.
    pub fn get_max_listeners(&self) -> usize {
        self.lock().max_listeners
    }

    /// Calls `listener` with the last payload of `name` right away if there is one, then subscribes it.
    pub fn on_with_replay(
        &self,
        name: K,
        listener: impl Fn(&V) -> Result<(), ListenerError> + Send + Sync + 'static,
    ) -> ListenerId {
        let listener: Listener<V> = Arc::new(listener);
        let (last, hook) = {
            let inner = self.lock();
            (inner.last.get(&name).cloned(), inner.error_hook.clone())
        };
        if let Some(last) = last {
            self.call(&listener, name.clone(), &last, hook.as_ref());
        }
        self.add(name, listener, false, false)
    }

    /// Alias of [`ReplayEventEmitter::on_with_replay`].
    pub fn add_listener_with_replay(
        &self,
        name: K,
        listener: impl Fn(&V) -> Result<(), ListenerError> + Send + Sync + 'static,
    ) -> ListenerId {
        self.on_with_replay(name, listener)
    }

    /// Calls `listener` once with the last payload of `name` if there is one (and does not subscribe: `None`);
    /// otherwise subscribes it for the next emit, like [`ReplayEventEmitter::once`].
    pub fn once_with_replay(
        &self,
        name: K,
        listener: impl Fn(&V) -> Result<(), ListenerError> + Send + Sync + 'static,
    ) -> Option<ListenerId> {
        let listener: Listener<V> = Arc::new(listener);
        let (last, hook) = {
            let inner = self.lock();
            (inner.last.get(&name).cloned(), inner.error_hook.clone())
        };
        match last {
            Some(last) => {
                self.call(&listener, name, &last, hook.as_ref());
                None
            }
            None => Some(self.add(name, listener, true, false)),
        }
    }

    /// The payload of the last emit of `name`.
    pub fn last_emitted(&self, name: K) -> Option<V> {
        self.lock().last.get(&name).cloned()
    }

    /// Where listener failures go (errors they return and panics), instead of the log.
    pub fn set_error_hook(&self, hook: impl Fn(&ListenerError, K, &V) + Send + Sync + 'static) {
        self.lock().error_hook = Some(Arc::new(hook));
    }

    /// Every later emit, as a stream. Events wait in the stream until read, so drop it when done.
    pub fn stream(&self) -> EventStream<K, V> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().streams.push(sender);
        EventStream { receiver }
    }
}

/// A [`futures_core::Stream`] of `(name, payload)` for every emit after [`ReplayEventEmitter::stream`].
pub struct EventStream<K, V> {
    receiver: mpsc::UnboundedReceiver<(K, V)>,
}

impl<K, V> fmt::Debug for EventStream<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl<K, V> EventStream<K, V> {
    /// The next event, or `None` when the emitter is gone.
    pub async fn next(&mut self) -> Option<(K, V)> {
        self.receiver.recv().await
    }
}

impl<K, V> futures_core::Stream for EventStream<K, V> {
    type Item = (K, V);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Log = Arc<Mutex<Vec<String>>>;

    fn recorder(log: &Log, tag: &'static str) -> impl Fn(&u32) -> Result<(), ListenerError> + Send + Sync + 'static {
        let log = Arc::clone(log);
        move |v| {
            log.lock().unwrap().push(format!("{tag}{v}"));
            Ok(())
        }
    }

    fn seen(log: &Log) -> Vec<String> {
        log.lock().unwrap().clone()
    }

    #[test]
    fn replay_gives_the_last_payload_then_live_ones() {
        let e: ReplayEventEmitter<&str, u32> = ReplayEventEmitter::new();
        let log = Log::default();
        assert!(!e.emit("n", 1), "no listeners yet");
        e.emit("n", 2);
        e.on_with_replay("n", recorder(&log, "a"));
        assert_eq!(seen(&log), ["a2"]);
        e.emit("n", 3);
        assert_eq!(seen(&log), ["a2", "a3"]);
        assert_eq!(e.last_emitted("n"), Some(3));
    }

    #[test]
    fn once_with_replay_calls_once_without_subscribing_when_history_exists() {
        let e: ReplayEventEmitter<&str, u32> = ReplayEventEmitter::new();
        let log = Log::default();
        assert!(e.once_with_replay("n", recorder(&log, "early")).is_some());
        e.emit("n", 1);
        e.emit("n", 2);
        assert_eq!(e.once_with_replay("n", recorder(&log, "late")), None);
        e.emit("n", 3);
        assert_eq!(seen(&log), ["early1", "late2"]);
    }

    #[test]
    fn prepend_and_once_order() {
        let e: ReplayEventEmitter<&str, u32> = ReplayEventEmitter::new();
        let log = Log::default();
        e.on("n", recorder(&log, "a"));
        e.prepend_listener("n", recorder(&log, "b"));
        e.prepend_once_listener("n", recorder(&log, "c"));
        e.once("n", recorder(&log, "d"));
        e.emit("n", 1);
        e.emit("n", 2);
        assert_eq!(seen(&log), ["c1", "b1", "a1", "d1", "b2", "a2"]);
        assert_eq!(e.listener_count("n"), 2);
    }

    #[test]
    fn listeners_may_change_the_emitter_while_it_emits() {
        let e: ReplayEventEmitter<&str, u32> = ReplayEventEmitter::new();
        let log = Log::default();
        let id = Arc::new(Mutex::new(None));
        let (e2, log2, id2) = (e.clone(), Arc::clone(&log), Arc::clone(&id));
        let first = e.on("n", move |v| {
            log2.lock().unwrap().push(format!("first{v}"));
            if let Some(me) = *id2.lock().unwrap() {
                e2.off("n", me);
            }
            e2.on("n", recorder(&log2, "added"));
            if *v == 1 {
                e2.emit("n", 10);
            }
            Ok(())
        });
        *id.lock().unwrap() = Some(first);
        e.on("n", recorder(&log, "second"));
        e.emit("n", 1);
        // The nested emit saw the listeners of its own moment; the outer emit kept its snapshot.
        assert_eq!(seen(&log), ["first1", "second10", "added10", "second1"]);
    }

    #[test]
    fn failures_go_to_the_hook_and_do_not_stop_others() {
        let e: ReplayEventEmitter<&str, u32> = ReplayEventEmitter::new();
        let log = Log::default();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&errors);
        e.set_error_hook(move |err, name, v| sink.lock().unwrap().push(format!("{name}:{v}:{err}")));
        e.on("n", |_| Err(ListenerError::new("nope")));
        e.on("n", |_| panic!("boom"));
        e.on("n", recorder(&log, "ok"));
        e.emit("n", 7);
        assert_eq!(seen(&log), ["ok7"]);
        assert_eq!(*errors.lock().unwrap(), ["n:7:nope", "n:7:boom"]);
    }

    #[test]
    fn names_counts_removal_and_max_listeners() {
        let e: ReplayEventEmitter<&str, u32> = ReplayEventEmitter::new();
        assert_eq!(e.get_max_listeners(), 10);
        e.set_max_listeners(1);
        let a = e.on("a", |_| Ok(()));
        e.on("a", |_| Ok(()));
        e.on("b", |_| Ok(()));
        assert_eq!(e.listener_count("a"), 2, "exceeding the maximum only warns");
        assert_eq!(e.event_names(), ["a", "b"]);
        assert_eq!(e.listeners("a")[0], a);
        assert!(e.remove_listener("a", a));
        assert!(!e.off("a", a));
        e.remove_all_listeners(Some("a"));
        assert_eq!(e.event_names(), ["b"]);
        e.remove_all_listeners(None);
        assert!(e.event_names().is_empty());
    }

    #[tokio::test]
    async fn streams_receive_later_emits_in_order() {
        let e: ReplayEventEmitter<&str, u32> = ReplayEventEmitter::new();
        e.emit("x", 0);
        let mut stream = e.stream();
        e.emit("x", 1);
        e.emit("y", 2);
        assert_eq!(stream.next().await, Some(("x", 1)));
        assert_eq!(stream.next().await, Some(("y", 2)));
        drop(stream);
        e.emit("x", 3);
        assert_eq!(e.lock().streams.len(), 0, "dropped streams are cleaned up");
    }
}
