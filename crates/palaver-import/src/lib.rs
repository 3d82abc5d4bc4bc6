//! `palaver import`: moves an embedded deployment to PostgreSQL by copying its SQLite database
//! (`<data dir>/palaver.sqlite3`) into a PostgreSQL database, once, all or nothing.
//!
//! - `source` reads the SQLite file read-only, in one read transaction: every table comes from one snapshot.
//!   It refuses a file another process has open (on Linux, where `/proc` tells): a running server would go
//!   on writing after the snapshot, and those writes would be lost.
//! - `plan` matches its tables and columns with the PostgreSQL schema and says how each value converts.
//! - `target` checks that the PostgreSQL database holds no data, copies the rows (binary `COPY`, all in one
//!   transaction) and moves every id sequence past the copied rows.
//! - `progress` reports rows copied per table and overall; [`StderrProgress`] draws it on stderr.
//!
//! # What is copied
//!
//! Every row of every table, every column, verbatim: SIDs, row ids, message indices, sequence numbers, log
//! ids, dates (Unix milliseconds in both), JSON text. The PostgreSQL schema is the SQLite one's migrations
//! folded into one (`palaver-store-postgres/src/schema.rs`), so tables are matched by name and columns by
//! name, driven by what each database reports about itself (`sqlite_master` / `pragma_table_info` and
//! `information_schema`), not by a copy of either schema here: a table or column the other side lacks is an
//! error, never a silent loss. Two kinds of table are left out on purpose:
//!
//! - `schema_version` exists only in PostgreSQL: it records that store's migrations, which the import has
//!   just applied, so it is already right.
//! - `sqlite_sequence` (and any other `sqlite_*` table, such as `sqlite_stat1`) is SQLite's own bookkeeping.
//!   `sqlite_sequence` holds the highest id an `AUTOINCREMENT` table (`events`, `webhook_outbox`) ever
//!   handed out, deleted rows included; it is read to start the matching PostgreSQL sequence above it.
//!
//! Media files are not in the database: they stay in the data directory (or the configured media store).
//!
//! # Counters
//!
//! New writes on PostgreSQL must continue exactly where the SQLite store stopped, reusing nothing:
//!
//! - message indices (`conversations.next_message_index`), per-stream sequence numbers (`streams.last_seq`)
//!   and the webhook planner's position (`webhook_cursor.log_id`) are plain columns, copied as they are;
//! - every identity column (row ids, and `events.id`, the global log id the live feed and the webhook cursor
//!   follow) is set to continue above both its highest copied value and SQLite's `sqlite_sequence` entry.
//!
//! After the copy and before the commit the import checks that no message index or sequence number lies at
//! or above its counter, which would make a new write reuse it.
//!
//! # The target must hold no data
//!
//! The import refuses a PostgreSQL database that holds anything but what a migration and a node's first
//! start create (the account configuration, the default service with its four roles, the webhook cursor at
//! zero); those rows are replaced by the copied ones. All target tables are locked for the whole import, so a
//! node starting meanwhile waits for it; no node may be running on the target (its cached default service
//! would be stale).

mod plan;
mod progress;
mod source;
mod target;

use std::path::{Path, PathBuf};

pub use progress::{NoProgress, Progress, StderrProgress, TableProgress};

/// Why an import failed. Nothing was written to the target in any case (the copy is one transaction).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The data directory has no embedded database.
    #[error("there is no embedded database at {0}")]
    SourceMissing(PathBuf),
    /// Another process has the file open: a server (or another tool) may be writing it.
    #[error(
        "the embedded database {path} is open in process {pid} ({program}): stop the `palaver serve` that uses \
         this data directory first (writes made after the copy began would be lost)"
    )]
    SourceInUse {
        /// The database file.
        path: PathBuf,
        /// The process that has it open.
        pid: u32,
        /// That process's program name.
        program: String,
    },
    /// SQLite reported the file locked: a server (or another tool) is writing it.
    #[error("the embedded database {0} is locked: stop the `palaver serve` that uses this data directory, then retry")]
    SourceLocked(PathBuf),
    /// The embedded database could not be read.
    #[error("reading the embedded database: {0}")]
    Source(rusqlite::Error),
    /// The PostgreSQL migrations failed.
    #[error("migrating the PostgreSQL database: {0}")]
    Migration(String),
    /// A PostgreSQL statement failed.
    #[error("the PostgreSQL database: {0}")]
    Target(String),
    /// The two schemas do not match (one side is of another Palaver version).
    #[error("the embedded and PostgreSQL schemas differ: {0}")]
    Schema(String),
    /// The target already holds data: `(table, rows)` of each table that does.
    #[error(
        "the PostgreSQL database already holds data ({}); import only into a database without any: a new one, or \
         one that only `palaver migrate` or a node's first start prepared",
        .0.iter().map(|(t, n)| format!("{t}: {n} row{}", if *n == 1 { "" } else { "s" })).collect::<Vec<_>>().join(", ")
    )]
    TargetNotEmpty(Vec<(String, i64)>),
    /// A stored value does not fit its PostgreSQL column.
    #[error("{table}.{column}, row {row}: {problem}")]
    Value {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The row's position in the table (from 1).
        row: u64,
        /// What is wrong with the value.
        problem: String,
    },
    /// The copied data would let a new write reuse an index or sequence number.
    #[error("the copied data is inconsistent: {0}")]
    Check(String),
}

/// What an import copied.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Summary {
    /// Each table with its row count, in copy order.
    pub tables: Vec<TableProgress>,
    /// All rows.
    pub rows: u64,
}

/// Copies the SQLite database at `source` (a data directory's `palaver.sqlite3`) into the PostgreSQL database
/// at `target` (`postgres://…`), after applying the PostgreSQL store's migrations there; reports its progress
/// to `progress`.
///
/// # Errors
/// See [`ImportError`]; the target is left as the migration made it.
pub async fn import(source: &Path, target: &str, progress: &mut dyn Progress) -> Result<Summary, ImportError> {
    let path = source.to_path_buf();
    let (source, tables) = tokio::task::spawn_blocking(move || source::Source::open(&path))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    palaver_store_postgres::PostgresStore::migrate(target).await.map_err(|e| ImportError::Migration(e.to_string()))?;
    target::run(source, &tables, target, progress).await
}
