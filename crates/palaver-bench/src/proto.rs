//! A minimal realtime client built for load: many requests in flight per connection, replies matched by id,
//! events handed to a callback on the reader task (no queue to grow).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::{BenchError, Result};

/// How long a request may wait for its reply before the run fails: long enough for any queue a loaded server
/// builds, short enough that a server that stopped answering ends the run with an error instead of a hang.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waiters for replies, by request id; each gets the reply frame's text and parses what it needs.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Utf8Bytes>>>>;

/// The part of a reply frame needed to route it (the rest is skipped without building anything).
#[derive(serde::Deserialize)]
struct ReplyHead {
    reply_to: u64,
}

/// A reply frame with its result read as `T`.
#[derive(serde::Deserialize)]
struct ReplyFrame<T> {
    result: Option<T>,
    error: Option<Value>,
}

/// Called with the text of every non-reply frame, on the connection's reader task (each scenario parses only
/// what it needs: with a thousand listeners, parsing whole frames was most of the load generator's work).
pub(crate) type OnFrame = Arc<dyn Fn(&str) + Send + Sync>;

/// One realtime connection.
#[derive(Clone)]
pub(crate) struct Conn {
    /// First, so that it is dropped before `outgoing`, whose end makes the writer send the closing frame.
    _ending: Arc<Ending>,
    outgoing: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
}

/// Marks the connection's end as expected the moment its last handle is dropped (before the server may be
/// stopped), so the reader does not report the reset that follows as a failure.
struct Ending(Arc<AtomicBool>);

impl Drop for Ending {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Conn {
    /// Opens a connection and sends `connect`.
    pub(crate) async fn open(url: &str, token: &str, on_frame: Option<OnFrame>) -> Result<Self> {
        // Nagle's algorithm off, as real clients should have it: with it, a request written while an earlier one
        // is unacknowledged waits for the server's delayed ACK (40 ms on Linux).
        let (socket, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .map_err(|e| BenchError::Server(e.to_string()))?;
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut queued) = mpsc::unbounded_channel::<Message>();
        // Set once every handle of this connection is gone: the end of the connection is then expected.
        let finished = Arc::new(AtomicBool::new(false));
        let ending = Arc::new(Ending(Arc::clone(&finished)));
        tokio::spawn(async move {
            while let Some(message) = queued.recv().await {
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            let _ = sink.send(Message::Close(None)).await;
        });
        let pending: Pending = Arc::default();
        let replies = Arc::clone(&pending);
        tokio::spawn(async move {
            while let Some(next) = stream.next().await {
                let message = match next {
                    Ok(message) => message,
                    Err(err) => {
                        if !finished.load(Ordering::Acquire) {
                            eprintln!("connection failed: {err}");
                        }
                        break;
                    }
                };
                if let Message::Close(frame) = &message
                    && !finished.load(Ordering::Acquire)
                {
                    eprintln!("connection closed by the server: {frame:?}");
                }
                let Message::Text(text) = message else { continue };
                // Events go to the callback unparsed: a load generator must read fast.
                if !text.starts_with(r#"{"type":"reply""#) {
                    if let Some(on_frame) = &on_frame {
                        on_frame(&text);
                    }
                    continue;
                }
                let Ok(head) = serde_json::from_str::<ReplyHead>(&text) else { continue };
                let waiter = replies.lock().ok().and_then(|mut p| p.remove(&head.reply_to));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(text);
                }
            }
            // Fail whatever is still waiting.
            if let Ok(mut p) = replies.lock() {
                p.clear();
            }
        });
        let conn = Self { _ending: ending, outgoing, pending, next_id: Arc::new(AtomicU64::new(1)) };
        conn.call("connect", json!({"token": token})).await?;
        Ok(conn)
    }

    /// Sends a request and waits for its result.
    pub(crate) async fn call(&self, method: &str, params: Value) -> Result<Value> {
        Ok(self.call_as::<Value>(method, params).await?.unwrap_or(Value::Null))
    }

    /// Sends a request and waits for its result, read as `T` (a type with only the fields the caller uses
    /// is parsed without allocating the rest; `IgnoredAny` only checks for an error).
    pub(crate) async fn call_as<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<Option<T>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        self.pending.lock().map_err(|_| BenchError::Request("poisoned".into()))?.insert(id, answer);
        let frame = json!({"id": id, "method": method, "params": params}).to_string();
        self.outgoing.send(Message::Text(frame.into())).map_err(|_| BenchError::Request("connection closed".into()))?;
        let text = tokio::time::timeout(REPLY_TIMEOUT, answered)
            .await
            .map_err(|_| {
                BenchError::Request(format!(
                    "no reply to {method} within {} s: the server stalled",
                    REPLY_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|_| BenchError::Request("connection closed before the reply".into()))?;
        let reply: ReplyFrame<T> =
            serde_json::from_str(&text).map_err(|e| BenchError::Request(format!("unreadable reply: {e}")))?;
        match reply.error {
            Some(error) if !error.is_null() => Err(BenchError::Request(error.to_string())),
            _ => Ok(reply.result),
        }
    }
}
