//! The SQLite side: the embedded database, opened read-only and read in one transaction, so that the counts
//! and every table's rows come from one snapshot even if something else were reading it at the same time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::mpsc;

use crate::ImportError;
use crate::plan::{Cell, TablePlan, convert, quote};

/// Rows per message from the reading thread to the copy.
const CHUNK_ROWS: usize = 1000;

/// One table of the embedded database.
#[derive(Debug)]
pub(crate) struct SourceTable {
    pub(crate) name: String,
    /// In the table's column order.
    pub(crate) columns: Vec<String>,
    pub(crate) rows: u64,
    /// The table's `sqlite_sequence` entry: the highest id its `AUTOINCREMENT` key ever handed out (0 if none).
    pub(crate) autoincrement: i64,
}

/// What the reading thread sends for each table in turn.
#[derive(Debug)]
pub(crate) enum Chunk {
    Rows(Vec<Vec<Cell>>),
    /// The table's last row was sent.
    End,
}

/// The open embedded database, inside its read transaction.
#[derive(Debug)]
pub(crate) struct Source {
    conn: Connection,
    path: PathBuf,
}

impl Source {
    /// Opens `path` read-only, starts the read transaction and describes every table.
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<SourceTable>), ImportError> {
        if !path.is_file() {
            return Err(ImportError::SourceMissing(path.to_path_buf()));
        }
        // SQLite's WAL lets a reader in beside a running writer, so a running server never shows as a lock.
        if let Some((pid, program)) = palaver_store_sqlite::holder::holder(path) {
            return Err(ImportError::SourceInUse { path: path.to_path_buf(), pid, program });
        }
        let fail = |e| failure(path, e);
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(fail)?;
        // A writer holding the file longer than this is not a passing checkpoint: it is a server at work.
        conn.busy_timeout(Duration::from_secs(2)).map_err(fail)?;
        // The snapshot starts at the first read below and lasts as long as the connection (never committed).
        conn.execute_batch("BEGIN").map_err(fail)?;
        let names: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(fail)?;
        let sequences: HashMap<String, i64> = if names.iter().any(|n| n == "sqlite_sequence") {
            conn.prepare("SELECT name, seq FROM sqlite_sequence")
                .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(fail)?
        } else {
            HashMap::new()
        };
        let mut tables = Vec::new();
        // SQLite's own tables (`sqlite_sequence`, `sqlite_stat1`, …) are bookkeeping, not data: see the crate
        // documentation.
        for name in names.into_iter().filter(|n| !n.starts_with("sqlite_")) {
            let columns: Vec<String> = conn
                .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
                .and_then(|mut s| s.query_map([&name], |r| r.get(0))?.collect())
                .map_err(fail)?;
            let rows: i64 =
                conn.query_row(&format!("SELECT COUNT(*) FROM {}", quote(&name)), [], |r| r.get(0)).map_err(fail)?;
            let autoincrement = sequences.get(&name).copied().unwrap_or(0);
            tables.push(SourceTable { name, columns, rows: rows as u64, autoincrement });
        }
        Ok((Self { conn, path: path.to_path_buf() }, tables))
    }

    /// Reads the tables of `plans` in order and sends their rows, converted for PostgreSQL, to `out`; meant for
    /// a thread of its own, so reading and converting overlap with the copy. Stops at the first failure, which
    /// it sends, or when the receiver is gone.
    pub(crate) fn stream(self, plans: &[TablePlan], out: &mpsc::Sender<Result<Chunk, ImportError>>) {
        for plan in plans {
            match self.read_table(plan, out) {
                Ok(true) => {}
                Ok(false) => return,
                Err(err) => {
                    let _ = out.blocking_send(Err(err));
                    return;
                }
            }
        }
    }

    /// Sends one table; `false` when the receiver is gone.
    fn read_table(
        &self,
        plan: &TablePlan,
        out: &mpsc::Sender<Result<Chunk, ImportError>>,
    ) -> Result<bool, ImportError> {
        let fail = |e| failure(&self.path, e);
        let columns: Vec<String> = plan.columns.iter().map(|c| quote(&c.name)).collect();
        let sql = format!("SELECT {} FROM {}", columns.join(", "), quote(&plan.name));
        let mut statement = self.conn.prepare(&sql).map_err(fail)?;
        let mut rows = statement.query([]).map_err(fail)?;
        let mut chunk = Vec::with_capacity(CHUNK_ROWS);
        let mut position = 0u64;
        while let Some(row) = rows.next().map_err(fail)? {
            position += 1;
            let mut cells = Vec::with_capacity(plan.columns.len());
            for (i, column) in plan.columns.iter().enumerate() {
                let value = row.get_ref(i).map_err(fail)?;
                cells.push(convert(column.kind, value).map_err(|problem| ImportError::Value {
                    table: plan.name.clone(),
                    column: column.name.clone(),
                    row: position,
                    problem,
                })?);
            }
            chunk.push(cells);
            if chunk.len() == CHUNK_ROWS
                && out
                    .blocking_send(Ok(Chunk::Rows(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS)))))
                    .is_err()
            {
                return Ok(false);
            }
        }
        if !chunk.is_empty() && out.blocking_send(Ok(Chunk::Rows(chunk))).is_err() {
            return Ok(false);
        }
        Ok(out.blocking_send(Ok(Chunk::End)).is_ok())
    }
}

/// A SQLite failure on `path`, telling a locked file apart.
fn failure(path: &Path, err: rusqlite::Error) -> ImportError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ImportError::SourceLocked(path.to_path_buf()),
        _ => ImportError::Source(err),
    }
}
