//! The realtime gateway: `GET /v1/realtime` upgrades to a WebSocket speaking the protocol of
//! `docs/protocol.md` (`palaver_api::realtime`).
//!
//! Each connection is one task that `select!`s over a closed set of inputs: frames from the client, the live
//! event feed, typing notices, token timers, the heartbeat and server shutdown. Writes go through a bounded
//! queue to a writer task; a client that lets it fill up is disconnected (it resumes on reconnect), so a slow
//! reader can never make the server hold unbounded memory.

mod calls;
mod connection;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;

use crate::AppState;
use crate::limits::ConnectionBudget;

/// Read and write buffer of each socket; larger frames are still handled, in several reads or writes.
const SOCKET_BUFFER_BYTES: usize = 2 * 1024;

/// GET /v1/realtime — upgrades to the realtime protocol.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    budget: Option<Extension<ConnectionBudget>>,
    ws: WebSocketUpgrade,
) -> Response {
    // The socket spends the request budget of the connection it was upgraded from.
    let budget =
        budget.map_or_else(|| ConnectionBudget::new(state.limits.connection_rate, &state.metrics), |Extension(b)| b);
    let max_frame = state.limits.max_frame_bytes;
    // Made here, while the upgrade request's id is known: the session runs in a task of its own.
    let session = crate::observe::session_span("realtime");
    // Small socket buffers: most connections are idle most of the time, and the default 128 KiB read buffer
    // would make each one cost that much whether it is used or not.
    ws.read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .on_upgrade(move |socket| tracing::Instrument::instrument(connection::run(socket, state, budget), session))
}
