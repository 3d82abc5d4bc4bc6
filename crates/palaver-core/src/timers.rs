//! The scheduler that applies conversation timers: it sleeps until the earliest timer is due (or until a
//! change may have made one earlier), then lets the store apply every due timer in one transaction each.
//! Because due times are stored, timers that came due while the server was stopped fire right after start.

use std::future::Future;
use std::time::Duration;

use crate::service::Palaver;

/// Longest sleep between checks, so a missed wake-up costs at most this much delay.
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// Runs until `shutdown` completes.
pub async fn run_timer_scheduler(palaver: Palaver, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let now = palaver.clock().now();
        match palaver.store().fire_due_timers(now).await {
            Ok(changed) => {
                for c in changed {
                    tracing::info!(conversation = %c.sid, state = c.state.as_str(), "timer changed conversation state");
                }
            }
            Err(err) => tracing::warn!(%err, "applying conversation timers failed; will retry"),
        }
        let sleep_for = match palaver.store().next_timer_due().await {
            Ok(Some(due)) => {
                let wait = due - palaver.clock().now();
                Duration::try_from(wait).unwrap_or(Duration::ZERO).min(MAX_SLEEP)
            }
            Ok(None) => MAX_SLEEP,
            Err(_) => MAX_SLEEP,
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(sleep_for) => {}
            () = palaver.timers_changed().notified() => {}
        }
    }
}
