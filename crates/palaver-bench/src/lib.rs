//! `palaver bench`: a load generator that speaks the realtime protocol and the REST API like real clients,
//! runs a bounded workload, and reports latency percentiles (HDR histograms), throughput and the server's
//! memory and CPU.
//!
//! Unless given `--url` (one or more nodes of a running deployment), it starts its own servers as separate
//! processes, so their RSS and CPU can be read from `/proc`: one `palaver serve` on a temporary SQLite data
//! directory by default, or on PostgreSQL (`--database`, a fresh schema per run), or several nodes sharing the
//! database and NATS (`--nodes N --nats …`). Scenarios spread their connections over the nodes: ingest's
//! senders round-robin, fanout's sender on node 0 and its listeners on the others, so every delivery crosses
//! the NATS relay.

mod proto;
mod report;
mod scenarios;
mod target;

pub use report::{Latency, NodeUsage, Report};
pub use scenarios::Scenario;
pub use target::{Target, TargetOptions};

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Starting or reaching the server failed.
    #[error("server: {0}")]
    Server(String),
    /// A request failed.
    #[error("request failed: {0}")]
    Request(String),
    /// Local I/O failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Shorthand.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Sizes of a run; each scenario reads the ones it uses.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Messages to send (ingest, rest) or to fill the conversation with (history, unread).
    pub messages: u64,
    /// Concurrent senders or clients.
    pub senders: usize,
    /// Conversations the senders spread over.
    pub conversations: usize,
    /// Requests each sender keeps in flight.
    pub window: usize,
    /// Listeners (fanout) or idle connections (connections).
    pub listeners: usize,
    /// Send rate for fanout, messages per second.
    pub rate: u64,
    /// Duration of timed phases, in seconds.
    pub seconds: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Self { messages: 100_000, senders: 32, conversations: 16, window: 16, listeners: 1000, rate: 100, seconds: 10 }
    }
}

/// Runs one scenario against a target and returns its report.
///
/// # Errors
/// When the server cannot be started or reached, or requests fail.
pub async fn run(scenario: Scenario, target: &Target, workload: &Workload) -> Result<Report> {
    scenarios::run(scenario, target, workload).await
}

/// Raises this process's open-file limit as far as allowed (many connections need many descriptors); servers
/// started afterwards inherit it. Returns the new limit.
pub fn raise_open_file_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}
