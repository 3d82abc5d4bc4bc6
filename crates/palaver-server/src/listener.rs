//! The accept loop: HTTP/1.1 connections (and the WebSockets they upgrade to) served with the connection
//! limits of [`ServerLimits`] — a cap per client IP, a deadline for request heads (which also closes idle
//! keep-alive connections), a bound on the head's size, and a request budget per connection — and stopped
//! gracefully: on shutdown no connection is accepted any more, idle ones close, and requests in flight finish.
//!
//! `axum::serve` offers none of these knobs (it runs hyper without a timer, so a client that never sends its
//! headers holds its connection forever); this is the same loop with them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

use crate::limits::{ConnectionBudget, ConnectionsPerIp, ServerLimits, Slot};

/// Serves `app` on `listener` until `shutdown` completes, then waits for the HTTP requests in flight.
/// WebSocket sessions are not waited for here: the server tells them to close through its own shutdown signal.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Arc<ServerLimits>,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    // Told to every connection task when the server stops; each holds a receiver of `finished` until it ends.
    let (stopping, _) = tokio::sync::watch::channel(false);
    let (finished, _) = tokio::sync::watch::channel(());
    let per_ip = Arc::new(ConnectionsPerIp::default());
    let mut refused_logged = std::time::Instant::now() - Duration::from_secs(60);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = per_ip.claim(peer.ip(), limits.max_connections_per_ip) else {
            metrics.refused(crate::metrics::Refusal::ConnectionsPerIp);
            if refused_logged.elapsed() > Duration::from_secs(10) {
                refused_logged = std::time::Instant::now();
                tracing::warn!(
                    ip = %peer.ip(),
                    max = ?limits.max_connections_per_ip,
                    "refusing connections: this address has the most open connections allowed \
                     (behind a load balancer, raise --max-connections-per-ip or turn it off with 0)"
                );
            }
            continue;
        };
        // Without TCP_NODELAY a reply written right after an event frame waits for the client's delayed ACK
        // (40 ms on Linux): every request/answer exchange of a lone client would pay it.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "could not set TCP_NODELAY");
        }
        let budget = ConnectionBudget::new(limits.connection_rate, &metrics);
        let router = app.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(budget.clone());
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(request)
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // hyper's smallest buffer is 8 KiB.
            .max_buf_size(limits.max_header_bytes.max(8192));
        let io = TokioIo::new(CountedStream { stream, _slot: slot, _open: metrics.connection_opened() });
        let connection = http.serve_connection(io, service).with_upgrades();
        let mut stop = stopping.subscribe();
        let done = finished.subscribe();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = async { stop.wait_for(|stop| *stop).await.map(drop) } => {
                    // Finish the request in flight, if any, then close; an idle connection closes at once.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(%err, %peer, "connection ended with an error");
            }
            drop(done);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    finished.closed().await;
    Ok(())
}

/// A client's socket holding its place in the per-IP count for as long as it is open, also after a WebSocket
/// upgrade took it over from the HTTP connection.
struct CountedStream {
    stream: TcpStream,
    _slot: Slot,
    /// Its place in `palaver_http_connections`.
    _open: crate::metrics::Open,
}

impl AsyncRead for CountedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
