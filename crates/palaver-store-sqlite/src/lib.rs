//! Palaver's embedded storage: [`SqliteStore`] implements [`Store`] on one SQLite file in WAL mode.
//!
//! Writes go to one writer thread that owns the write connection (SQLite allows one writer at a time, so
//! serialising them costs nothing and makes every rule checked inside a transaction race-free). It practises
//! **group commit**: it takes every write waiting in its queue, runs each inside its own savepoint of one
//! transaction (a failing write rolls back only itself), commits once — one fsync for the whole group, with
//! `synchronous=FULL` — and only then answers the callers. Under load this turns hundreds of fsyncs into one;
//! alone, a write still commits immediately. Reads use a small pool of connections on tokio's blocking pool
//! and never wait behind writes (WAL).
//!
//! The outboxes keep the port's cluster semantics although one process owns the file: a claim of due jobs
//! (`due_webhooks`, `due_channel_jobs`) is a write that moves each job's next attempt to the lease's end,
//! and `enqueue_webhooks` compares and sets the cursor, both inside one write, which nothing interleaves
//! with. Most claims find nothing due, so a read checks that first and only a claim with work queues a
//! write.

mod channels;
mod deliveries;
pub mod holder;
mod media;
mod push;
mod rows;
mod schema;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use palaver_api::sid::{
    AddressConfigurationSid, ApiKeySid, ConversationSid, DeliveryReceiptSid, MessageSid, RoleSid, ServiceSid,
    WebhookSid,
};
use palaver_core::channel::*;
use palaver_core::error::{Conflict, Error, Limit, ResourceKind, Result};
use palaver_core::event::{self, Event, EventKind, Origin, Source};
use palaver_core::input::{MAX_NON_CHAT_PARTICIPANTS, MAX_PARTICIPANTS};
use palaver_core::model::*;
use palaver_core::service::arm_timers;
use palaver_core::store::*;
use palaver_core::webhook::*;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use time::OffsetDateTime;

use rows::*;

/// The SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    writes: std::sync::mpsc::Sender<WriteJob>,
    /// Identifies this store's read connections among those a thread holds.
    id: u64,
    /// Alive while any handle of this store is: threads drop their read connections of dead stores.
    alive: Arc<()>,
    path: Arc<std::path::PathBuf>,
    changes: Arc<tokio::sync::Notify>,
    /// The account configuration, read on every REST request (the default service) and changed only through
    /// this store, so it is kept after the first read and replaced by each write of it.
    account: Arc<std::sync::RwLock<Option<AccountConfig>>>,
    /// Told about each committed group, for metrics ([`SqliteStore::on_group_commit`]).
    group_commit_hook: Arc<std::sync::OnceLock<GroupCommitHook>>,
}

/// One committed group of writes, as [`SqliteStore::on_group_commit`] reports it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct GroupCommit {
    /// Writes committed together: one transaction, one fsync.
    pub writes: usize,
    /// From the group's `BEGIN` to its `COMMIT` returning (the fsync included).
    pub elapsed: Duration,
}

/// Called by the writer thread after each committed group; it must return quickly.
type GroupCommitHook = Box<dyn Fn(GroupCommit) + Send + Sync>;

static NEXT_STORE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

thread_local! {
    /// Who the writer thread's current write acts for, and in which service: recorded on every event it appends.
    /// Set by [`SqliteStore::write_as`] before each write runs (the writer thread runs one write at a time).
    static WRITE_CONTEXT: std::cell::RefCell<(Origin, String)> = std::cell::RefCell::new((Origin::system(), String::new()));
    /// Each thread's read connections, one per open store. Reads are short indexed lookups, so they run on the
    /// calling thread: no handoff to a blocking pool and no lock to contend on (WAL lets them run beside the
    /// writer).
    static READERS: std::cell::RefCell<Vec<(u64, std::sync::Weak<()>, Connection)>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// Reports a write's outcome once its group has committed (`None`) or failed to (`Some`).
type Completion = Box<dyn FnOnce(Option<&Error>) + Send>;
/// A write: runs inside the group's transaction and returns how to report its outcome.
type WriteJob = Box<dyn FnOnce(&Connection) -> Ran + Send>;

/// What a write left behind in its group's transaction.
struct Ran {
    complete: Completion,
    /// The write failed after changing rows it could not undo: the whole group must roll back.
    spoiled: bool,
}

/// How a write protects the rest of its group from its failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// In its own savepoint: a failure at any point rolls back only this write.
    Savepoint,
    /// Without a savepoint, for hot writes that check everything before their first change, so that only a
    /// storage failure can stop them part-way; that rolls back the whole group (every write in it then fails
    /// and none is acknowledged). Saves the savepoint's statements and its copies of every page it touches.
    ChecksFirst,
}

/// WAL length (in pages) at which the writer checkpoints after a commit.
const WAL_CHECKPOINT_FRAMES: i64 = 1000;

/// Writes committed together at most.
const MAX_GROUP: usize = 1024;

/// `query_row` and `execute` through the connection's statement cache: the hot queries are parsed once per
/// connection instead of on every call.
trait Cached {
    fn query_row_cached<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T>;
    fn execute_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl Cached for Connection {
    fn query_row_cached<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    fn execute_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}

fn storage(err: rusqlite::Error) -> Error {
    Error::Storage(err.to_string())
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Writes in a savepoint keep its sub-journal in memory instead of in a temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Hot statements are prepared once and kept; without the planner stability guarantee SQLite re-prepares a
    // cached statement whenever a bound value might change its plan, which showed in profiles as parsing.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(())
}

/// The writer thread: group commit until every `SqliteStore` handle is gone.
fn run_writer(
    conn: Connection,
    jobs: std::sync::mpsc::Receiver<WriteJob>,
    changes: Arc<tokio::sync::Notify>,
    hook: Arc<std::sync::OnceLock<GroupCommitHook>>,
) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (writes, started) = (group.len(), std::time::Instant::now());
        if let Err(err) = conn.execute_cached("BEGIN IMMEDIATE", []) {
            // Dropping the group's jobs fails each waiting write with a storage error.
            tracing::error!(%err, writes = group.len(), "could not start a write transaction");
            continue;
        }
        let mut spoiled = false;
        let completions: Vec<Completion> = group
            .into_iter()
            .filter_map(|job| match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&conn))) {
                Ok(ran) => {
                    spoiled |= ran.spoiled;
                    Some(ran.complete)
                }
                Err(panic) => {
                    // Outside the write's own guard (its savepoint bookkeeping): nothing says what it left
                    // behind, so the group rolls back. The job's answer was dropped, which fails its caller.
                    tracing::error!(panic = %panic_message(panic.as_ref()), "a write job panicked");
                    spoiled = true;
                    None
                }
            })
            .collect();
        let failure = if spoiled {
            let _ = conn.execute_cached("ROLLBACK", []);
            Some(Error::Storage("a write in the same transaction failed part-way; it was rolled back".into()))
        } else {
            conn.execute_cached("COMMIT", []).err().map(|e| {
                let _ = conn.execute_cached("ROLLBACK", []);
                storage(e)
            })
        };
        for complete in completions {
            complete(failure.as_ref());
        }
        if failure.is_none() {
            changes.notify_one();
            if let Some(hook) = hook.get() {
                hook(GroupCommit { writes, elapsed: started.elapsed() });
            }
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    ///
    /// # Errors
    /// When the file cannot be opened or a migration fails.
    pub fn open(path: &Path) -> Result<Self> {
        let mut writer = Connection::open(path).map_err(storage)?;
        configure(&writer).map_err(storage)?;
        migrate(&mut writer).map_err(storage)?;
        // A thread (below) copies the WAL back into the database beside the writer, but under a steady stream of
        // commits its checkpoints never catch up with the end of the log, and SQLite restarts the log only
        // once everything in it has been copied: alone, it lets the WAL grow without bound (gigabytes per
        // million messages, every new frame a new file block). So the writer also checkpoints when the log
        // passes WAL_CHECKPOINT_FRAMES; most pages are copied by then, and the next write restarts the log.
        writer.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_FRAMES).map_err(storage)?;
        let alive = Arc::new(());
        spawn_checkpointer(path, Arc::downgrade(&alive))?;
        let changes = Arc::new(tokio::sync::Notify::new());
        let (writes, jobs) = std::sync::mpsc::channel::<WriteJob>();
        let notify = Arc::clone(&changes);
        let group_commit_hook = Arc::new(std::sync::OnceLock::new());
        let hook = Arc::clone(&group_commit_hook);
        std::thread::Builder::new()
            .name("palaver-sqlite-writer".into())
            .spawn(move || run_writer(writer, jobs, notify, hook))
            .map_err(|e| Error::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            writes,
            id: NEXT_STORE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            alive,
            path: Arc::new(path.to_path_buf()),
            changes,
            account: Arc::default(),
            group_commit_hook,
        })
    }

    /// Calls `hook` after each group of writes commits, on the writer thread (so it must be quick: a counter,
    /// a histogram). Only the first hook set is kept.
    pub fn on_group_commit(&self, hook: impl Fn(GroupCommit) + Send + Sync + 'static) {
        let _ = self.group_commit_hook.set(Box::new(hook));
    }

    /// Caches the committed account configuration. Called after each write of it: reading and storing under
    /// the lock keeps concurrent writers from leaving an older configuration in the cache.
    fn remember_account(&self) -> Result<AccountConfig> {
        let mut cached = self.account.write().map_err(|_| Error::Storage("account cache poisoned".into()))?;
        let config = self.read_now(bootstrapped_account_config)?;
        *cached = Some(config.clone());
        Ok(config)
    }

    /// Runs `f` inside the next group transaction, in its own savepoint; answers after the group commits.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.write_guarded(Guard::Savepoint, f).await
    }

    /// Runs `f` inside the next group transaction, protected as `guard` says; answers after the group commits.
    async fn write_guarded<T, F>(&self, guard: Guard, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: WriteJob = Box::new(move |conn: &Connection| {
            // A write that panics fails alone, like one that returns an error: the writer thread and every
            // other write of its group go on.
            let f = |conn: &Connection| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn))).unwrap_or_else(|panic| {
                    let what = panic_message(panic.as_ref());
                    tracing::error!(panic = %what, "a write panicked; it was undone");
                    Err(Error::Storage(format!("the write failed unexpectedly: {what}")))
                })
            };
            let (result, spoiled) = match guard {
                Guard::Savepoint => (run_in_savepoint(conn, f), false),
                Guard::ChecksFirst => {
                    let changes_before = conn.total_changes();
                    let result = f(conn);
                    let spoiled = result.is_err() && conn.total_changes() != changes_before;
                    (result, spoiled)
                }
            };
            let complete: Completion = Box::new(move |failure: Option<&Error>| {
                let outcome = match (result, failure) {
                    (Err(own), _) => Err(own),
                    (Ok(_), Some(err)) => Err(Error::Storage(format!("commit failed: {err}"))),
                    (Ok(value), None) => Ok(value),
                };
                let _ = answer.send(outcome);
            });
            Ran { complete, spoiled }
        });
        self.writes.send(job).map_err(|_| Error::Storage("the writer thread has stopped".into()))?;
        answered.await.map_err(|_| Error::Storage("the write was dropped before it committed".into()))?
    }

    /// Like [`SqliteStore::write`], recording `origin` and `service` on the events the write appends.
    async fn write_as<T, F>(&self, origin: Origin, service: String, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.write_as_guarded(Guard::Savepoint, origin, service, f).await
    }

    /// [`SqliteStore::write_as`] with a choice of [`Guard`].
    async fn write_as_guarded<T, F>(&self, guard: Guard, origin: Origin, service: String, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.write_guarded(guard, move |conn| {
            set_write_context(origin, service);
            f(conn)
        })
        .await
    }

    /// Whether a live entry of the outbox `table` is due by `now`. Most delivery rounds find nothing due: a
    /// read says so without queueing a write behind the others.
    async fn outbox_has_due(&self, table: &'static str, now: OffsetDateTime) -> Result<bool> {
        self.read(move |tx| {
            let sql = format!("SELECT EXISTS(SELECT 1 FROM {table} WHERE dead = 0 AND next_attempt <= ?1)");
            tx.query_row_cached(&sql, params![ms(now)], |r| r.get::<_, bool>(0)).map_err(storage)
        })
        .await
    }

    /// Runs `f` in a read transaction (a consistent snapshot) on this thread's read connection.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.read_now(f)
    }

    /// [`SqliteStore::read`], for callers that are not async.
    fn read_now<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        READERS.with(|cell| {
            let mut readers = cell.borrow_mut();
            readers.retain(|(_, alive, _)| alive.strong_count() > 0);
            let position = match readers.iter().position(|(id, _, _)| *id == self.id) {
                Some(position) => position,
                None => {
                    let conn = Connection::open(self.path.as_ref()).map_err(storage)?;
                    configure(&conn).map_err(storage)?;
                    readers.push((self.id, Arc::downgrade(&self.alive), conn));
                    readers.len() - 1
                }
            };
            let snapshot = ReadTransaction::begin(&readers[position].2)?;
            let result = f(snapshot.conn);
            drop(snapshot);
            result
        })
    }
}

/// The text a panic was raised with, when it has one.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Runs `f` in a savepoint of the open transaction: a failure undoes only what `f` did.
fn run_in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let result = conn.execute_cached("SAVEPOINT write", []).map_err(storage).and_then(|_| f(conn));
    let undone = match &result {
        Ok(_) => conn.execute_cached("RELEASE write", []),
        Err(_) => conn.execute_cached("ROLLBACK TO write", []).and_then(|_| conn.execute_cached("RELEASE write", [])),
    };
    match (result, undone) {
        (Ok(value), Ok(_)) => Ok(value),
        (Ok(_), Err(e)) => Err(storage(e)),
        (Err(e), _) => Err(e),
    }
}

/// A read transaction begun and ended through cached statements (rusqlite's `Transaction` parses its
/// `BEGIN` and `COMMIT` on every use); ends itself if the read panics.
struct ReadTransaction<'c> {
    conn: &'c Connection,
}

impl<'c> ReadTransaction<'c> {
    fn begin(conn: &'c Connection) -> Result<Self> {
        // A transaction left open (an earlier end that failed) would make every later read on this thread fail.
        if !conn.is_autocommit() {
            let _ = conn.execute_cached("ROLLBACK", []);
        }
        conn.execute_cached("BEGIN", []).map_err(storage)?;
        Ok(Self { conn })
    }
}

impl Drop for ReadTransaction<'_> {
    fn drop(&mut self) {
        // A read changes nothing, so ending it either way is the same; a failure leaves SQLite to roll back.
        if self.conn.execute_cached("COMMIT", []).is_err() {
            let _ = self.conn.execute_cached("ROLLBACK", []);
        }
    }
}

/// How often the checkpointer copies the WAL back into the database.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Starts the thread that checkpoints the WAL (passively: it never blocks writers or readers) until the store
/// is dropped.
fn spawn_checkpointer(path: &Path, alive: std::sync::Weak<()>) -> Result<()> {
    let conn = Connection::open(path).map_err(storage)?;
    configure(&conn).map_err(storage)?;
    std::thread::Builder::new()
        .name("palaver-sqlite-checkpoint".into())
        .spawn(move || {
            while alive.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(%err, "WAL checkpoint failed");
                }
            }
        })
        .map_err(|e| Error::Storage(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}

fn set_write_context(origin: Origin, service: String) {
    WRITE_CONTEXT.with(|context| *context.borrow_mut() = (origin, service));
}

/// Appends an event to `stream` with the stream's next sequence number, recording the current write's origin.
fn append_event(
    tx: &Connection,
    stream: &str,
    kind: EventKind,
    subject: &str,
    data: &serde_json::Value,
    at: OffsetDateTime,
) -> Result<i64> {
    append_event_json(tx, stream, kind, subject, &data.to_string(), at)
}

/// [`append_event`] with the event's data already serialised.
fn append_event_json(
    tx: &Connection,
    stream: &str,
    kind: EventKind,
    subject: &str,
    data: &str,
    at: OffsetDateTime,
) -> Result<i64> {
    let seq: i64 = tx
        .prepare_cached(
            "INSERT INTO streams(stream, last_seq) VALUES (?1, 1) \
             ON CONFLICT(stream) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
        )
        .and_then(|mut s| s.query_row(params![stream], |r| r.get(0)))
        .map_err(storage)?;
    WRITE_CONTEXT
        .with(|context| {
            let (origin, service) = &*context.borrow();
            tx.prepare_cached(
                "INSERT INTO events(stream, seq, kind, subject, data, at, service_sid, source, client_identity, webhooks) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    stream,
                    seq,
                    kind.as_str(),
                    subject,
                    data,
                    ms(at),
                    service,
                    origin.source.as_str(),
                    origin.client_identity,
                    origin.webhooks
                ])
            })
        })
        .map_err(storage)?;
    Ok(seq)
}

/// Reads one page of a keyset-paginated query. `base` is a full `SELECT … WHERE …` whose rows `map` turns
/// into items; `key` is the SQL expression of the ordering key and `key_of` reads it back from an item.
fn keyset_page<T>(
    tx: &Connection,
    base: &str,
    key: &str,
    mut args: Vec<SqlValue>,
    page: PageQuery,
    map: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    key_of: impl Fn(&T) -> i64,
) -> Result<Page<T>> {
    let ascending = !page.descending;
    let backwards = page.cursor.is_some_and(|c| c.backwards);
    // Reading backwards flips the scan; the page is put back in list order afterwards.
    let scan_ascending = ascending != backwards;
    let mut sql = base.to_string();
    if let Some(cursor) = page.cursor {
        sql.push_str(&format!(" AND {key} {} ?", if scan_ascending { ">" } else { "<" }));
        args.push(SqlValue::Integer(cursor.key));
    }
    sql.push_str(&format!(
        " ORDER BY {key} {} LIMIT {}",
        if scan_ascending { "ASC" } else { "DESC" },
        u64::from(page.size) + 1
    ));
    let mut stmt = tx.prepare_cached(&sql).map_err(storage)?;
    let mut items = stmt
        .query_map(params_from_iter(args), |r| map(r))
        .map_err(storage)?
        .collect::<rusqlite::Result<Vec<T>>>()
        .map_err(storage)?;
    let more = items.len() > page.size as usize;
    items.truncate(page.size as usize);
    if backwards {
        items.reverse();
    }
    let first = items.first().map(&key_of);
    let last = items.last().map(&key_of);
    let (next, previous) = if backwards {
        (
            last.or(page.cursor.map(|c| c.key)).map(|key| Cursor { backwards: false, key }),
            if more { first.map(|key| Cursor { backwards: true, key }) } else { None },
        )
    } else {
        (
            if more { last.map(|key| Cursor { backwards: false, key }) } else { None },
            page.cursor.map(|c| Cursor { backwards: true, key: first.unwrap_or(c.key) }),
        )
    };
    Ok(Page { items, next, previous })
}

/// One page of a conversation's messages, with the conversation's row id.
fn message_page(
    tx: &Connection,
    service: &ServiceSid,
    conv: &ConversationRef,
    page: PageQuery,
) -> Result<(i64, Page<Message>)> {
    let (conv_id, current) = find_conversation(tx, service, conv)?;
    let listed = keyset_page(
        tx,
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"),
        "idx",
        vec![SqlValue::Integer(conv_id)],
        page,
        |r| message(r, &current),
        |m| m.index,
    )?;
    Ok((conv_id, listed))
}

fn find_service(tx: &Connection, sid: &ServiceSid) -> Result<Service> {
    tx.query_row_cached(&format!("SELECT {SERVICE_COLUMNS} FROM services WHERE sid = ?1"), params![sid.as_str()], |r| {
        service(r).map(|(_, s)| s)
    })
    .optional()
    .map_err(storage)?
    .ok_or_else(|| Error::not_found(ResourceKind::Service, sid))
}

fn find_conversation(tx: &Connection, service: &ServiceSid, conv: &ConversationRef) -> Result<(i64, Conversation)> {
    let (column, value) = match conv {
        ConversationRef::Sid(sid) => ("sid", sid.as_str()),
        ConversationRef::UniqueName(name) => ("unique_name", name.as_str()),
    };
    tx.query_row_cached(
        &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.service_sid = ?1 AND c.{column} = ?2"),
        params![service.as_str(), value],
        |r| conversation(r, 0),
    )
    .optional()
    .map_err(storage)?
    .ok_or_else(|| Error::not_found(ResourceKind::Conversation, conv))
}

fn conversation_by_id(tx: &Connection, id: i64) -> Result<Conversation> {
    tx.query_row_cached(
        &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?1"),
        params![id],
        |r| conversation(r, 0).map(|(_, c)| c),
    )
    .map_err(storage)
}

fn ensure_open(conv: &Conversation) -> Result<()> {
    if conv.state == ConversationState::Closed {
        return Err(Error::ConversationClosed(conv.sid.to_string()));
    }
    Ok(())
}

fn find_participant(tx: &Connection, conv_id: i64, p: &ParticipantRef) -> Result<Participant> {
    let (column, value) = match p {
        ParticipantRef::Sid(sid) => ("sid", sid.as_str()),
        ParticipantRef::Identity(identity) => ("identity", identity.as_str()),
    };
    tx.query_row_cached(
        &format!("SELECT {PARTICIPANT_COLUMNS} FROM participants p WHERE p.conversation_id = ?1 AND p.{column} = ?2"),
        params![conv_id, value],
        |r| participant(r, 0).map(|(_, p)| p),
    )
    .optional()
    .map_err(storage)?
    .ok_or_else(|| Error::not_found(ResourceKind::Participant, p))
}

fn find_user(tx: &Connection, service: &ServiceSid, user_ref: &UserRef) -> Result<User> {
    let (column, value) = match user_ref {
        UserRef::Sid(sid) => ("sid", sid.as_str()),
        UserRef::Identity(identity) => ("identity", identity.as_str()),
    };
    tx.query_row_cached(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE service_sid = ?1 AND {column} = ?2"),
        params![service.as_str(), value],
        |r| user(r).map(|(_, u)| u),
    )
    .optional()
    .map_err(storage)?
    .ok_or_else(|| Error::not_found(ResourceKind::User, user_ref))
}

fn find_role(tx: &Connection, service: &ServiceSid, sid: &RoleSid) -> Result<Role> {
    tx.query_row_cached(
        &format!("SELECT {ROLE_COLUMNS} FROM roles WHERE service_sid = ?1 AND sid = ?2"),
        params![service.as_str(), sid.as_str()],
        |r| role(r).map(|(_, r)| r),
    )
    .optional()
    .map_err(storage)?
    .ok_or_else(|| Error::not_found(ResourceKind::Role, sid))
}

fn find_message(tx: &Connection, conv_id: i64, conv: &Conversation, sid: &MessageSid) -> Result<Message> {
    tx.query_row_cached(
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND sid = ?2"),
        params![conv_id, sid.as_str()],
        |r| message(r, conv),
    )
    .optional()
    .map_err(storage)?
    .ok_or_else(|| Error::not_found(ResourceKind::Message, sid))
}

/// Messages that exist above the read horizon: indices come from a counter that only grows, so the count is
/// the span above the horizon minus the deleted indices in it.
fn unread_count(tx: &Connection, conv_id: i64, conv: &Conversation, horizon: Option<i64>) -> Result<Option<i64>> {
    let Some(horizon) = horizon else { return Ok(None) };
    let next_index = conv.messages_count
        + tx.query_row_cached("SELECT deleted_messages FROM conversations WHERE id = ?1", params![conv_id], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(storage)?;
    let span = (next_index - 1 - horizon).max(0);
    if span == 0 {
        return Ok(Some(0));
    }
    let deleted: i64 = tx
        .query_row_cached(
            "SELECT COUNT(*) FROM deleted_messages WHERE conversation_id = ?1 AND idx > ?2",
            params![conv_id, horizon],
            |r| r.get(0),
        )
        .map_err(storage)?;
    Ok(Some(span - deleted))
}

fn insert_default_roles(tx: &Connection, service: &ServiceSid, now: OffsetDateTime) -> Result<Vec<RoleSid>> {
    let mut sids = Vec::new();
    for (name, kind, permissions) in DEFAULT_ROLES {
        let sid = RoleSid::generate();
        let permissions = serde_json::to_string(permissions).map_err(|e| Error::Storage(e.to_string()))?;
        tx.execute_cached(
            "INSERT INTO roles(sid, service_sid, friendly_name, kind, permissions, date_created, date_updated) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![sid.as_str(), service.as_str(), name, kind.as_str(), permissions, ms(now)],
        )
        .map_err(storage)?;
        sids.push(sid);
    }
    Ok(sids)
}

fn insert_service(tx: &Connection, new: &NewService) -> Result<Service> {
    let roles = insert_default_roles(tx, &new.sid, new.now)?;
    // DEFAULT_ROLES order: service admin, service user, channel admin, channel user.
    tx.execute_cached(
        "INSERT INTO services(sid, friendly_name, creator_role_sid, participant_role_sid, user_role_sid, date_created, date_updated) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![new.sid.as_str(), new.friendly_name, roles[2].as_str(), roles[3].as_str(), roles[1].as_str(), ms(new.now)],
    )
    .map_err(storage)?;
    find_service(tx, &new.sid)
}

/// The account configuration, which [`Store::bootstrap`] always creates.
fn bootstrapped_account_config(tx: &Connection) -> Result<AccountConfig> {
    read_account_config(tx)?.ok_or_else(|| Error::Storage("the store was not bootstrapped".into()))
}

fn read_account_config(tx: &Connection) -> Result<Option<AccountConfig>> {
    tx.query_row_cached(
        "SELECT default_service_sid, default_messaging_service_sid, default_inactive_timer, default_closed_timer \
         FROM account_config WHERE id = 1",
        [],
        |r| {
            Ok(AccountConfig {
                default_service_sid: parse_col(r, 0)?,
                default_messaging_service_sid: parse_opt_col(r, 1)?,
                default_inactive_timer: r.get::<_, Option<i64>>(2)?.map(palaver_core::input::TimerDuration::from_secs),
                default_closed_timer: r.get::<_, Option<i64>>(3)?.map(palaver_core::input::TimerDuration::from_secs),
            })
        },
    )
    .optional()
    .map_err(storage)
}

fn ensure_unique_name_free(tx: &Connection, service: &ServiceSid, name: &str, except_id: i64) -> Result<()> {
    let taken: bool = tx
        .query_row_cached(
            "SELECT EXISTS(SELECT 1 FROM conversations WHERE service_sid = ?1 AND unique_name = ?2 AND id != ?3)",
            params![service.as_str(), name, except_id],
            |r| r.get(0),
        )
        .map_err(storage)?;
    if taken {
        return Err(Error::Conflict(Conflict::UniqueNameTaken(name.to_string())));
    }
    Ok(())
}

fn insert_participant(
    tx: &Connection,
    conv_id: i64,
    conv: &Conversation,
    service: &Service,
    new: NewParticipant,
) -> Result<Participant> {
    let (total, non_chat): (i64, i64) = tx
        .query_row_cached(
            "SELECT COUNT(*), COUNT(binding_type) FROM participants WHERE conversation_id = ?1",
            params![conv_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(storage)?;
    if total as usize >= MAX_PARTICIPANTS {
        return Err(Error::LimitExceeded(Limit::Participants(MAX_PARTICIPANTS)));
    }
    if let Some(identity) = &new.identity {
        let exists: bool = tx
            .query_row_cached(
                "SELECT EXISTS(SELECT 1 FROM participants WHERE conversation_id = ?1 AND identity = ?2)",
                params![conv_id, identity.as_str()],
                |r| r.get(0),
            )
            .map_err(storage)?;
        if exists {
            return Err(Error::Conflict(Conflict::ParticipantIdentityTaken(identity.to_string())));
        }
        // A chat participant is always backed by a user of the service.
        let created = tx
            .execute_cached(
                "INSERT INTO users(sid, service_sid, identity, attributes, role_sid, date_created, date_updated) \
                 VALUES (?1, ?2, ?3, '{}', ?4, ?5, ?5) ON CONFLICT(service_sid, identity) DO NOTHING",
                params![
                    new.new_user_sid.as_str(),
                    service.sid.as_str(),
                    identity.as_str(),
                    service.user_role_sid.as_str(),
                    ms(new.date_created)
                ],
            )
            .map_err(storage)?;
        if created == 1 {
            let user = find_user(tx, &service.sid, &UserRef::Sid(new.new_user_sid.clone()))?;
            append_event(
                tx,
                user.sid.as_str(),
                EventKind::UserAdded,
                user.sid.as_str(),
                &event::user_snapshot(&user),
                new.date_created,
            )?;
        }
    }
    if let Some(binding) = &new.binding {
        if non_chat as usize >= MAX_NON_CHAT_PARTICIPANTS {
            return Err(Error::LimitExceeded(Limit::NonChatParticipants(MAX_NON_CHAT_PARTICIPANTS)));
        }
        let exists: bool = tx
            .query_row_cached(
                "SELECT EXISTS(SELECT 1 FROM participants WHERE conversation_id = ?1 AND binding_address = ?2)",
                params![conv_id, binding.address],
                |r| r.get(0),
            )
            .map_err(storage)?;
        if exists {
            return Err(Error::Conflict(Conflict::ParticipantAddressTaken(binding.address.clone())));
        }
    }
    let role = new.role_sid.clone().unwrap_or_else(|| service.participant_role_sid.clone());
    let b = new.binding.as_ref();
    tx.execute_cached(
        "INSERT INTO participants(sid, conversation_id, conversation_sid, service_sid, identity, binding_type, binding_address, \
         binding_proxy, binding_projected, binding_name, binding_level, attributes, role_sid, date_created, date_updated) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            new.sid.as_str(),
            conv_id,
            conv.sid.as_str(),
            service.sid.as_str(),
            new.identity.as_ref().map(|i| i.as_str()),
            b.map(|b| b.kind.as_str()),
            b.map(|b| b.address.as_str()),
            b.and_then(|b| b.proxy_address.as_deref()),
            b.and_then(|b| b.projected_address.as_deref()),
            b.and_then(|b| b.name.as_deref()),
            b.and_then(|b| b.level.as_deref()),
            new.attributes.as_str(),
            role.as_str(),
            ms(new.date_created),
            ms(new.date_updated),
        ],
    )
    .map_err(storage)?;
    let created = find_participant(tx, conv_id, &ParticipantRef::Sid(new.sid))?;
    let seq = append_event(
        tx,
        conv.sid.as_str(),
        EventKind::ParticipantAdded,
        created.sid.as_str(),
        &event::participant_snapshot(&created),
        new.date_created,
    )?;
    if let Some(identity) = &created.identity {
        let user = find_user(tx, &service.sid, &UserRef::Identity(identity.as_str().to_string()))?;
        let conv_now = conversation_by_id(tx, conv_id)?;
        append_event(
            tx,
            user.sid.as_str(),
            EventKind::UserConversationJoined,
            conv.sid.as_str(),
            &event::user_conversation_snapshot(&conv_now, &created, Some(seq)),
            new.date_created,
        )?;
    }
    Ok(created)
}

/// A chat participant now speaks for another identity: the old user leaves the conversation and the new one
/// (created first when the service has no user of that identity) joins it, on their streams, as for a removal
/// and an addition. `updated_seq` is the conversation's `participant.updated` event, where the new user's
/// sessions start following the conversation.
#[allow(clippy::too_many_arguments)]
fn renamed_participant(
    tx: &Connection,
    service: &ServiceSid,
    conv_id: i64,
    before: &Participant,
    after: &Participant,
    new_user_sid: Option<&palaver_api::sid::UserSid>,
    updated_seq: i64,
    now: OffsetDateTime,
) -> Result<()> {
    let conv = conversation_by_id(tx, conv_id)?;
    user_left(tx, service, &conv, before, now)?;
    let Some(identity) = &after.identity else { return Ok(()) };
    if let Some(user_sid) = new_user_sid {
        let role = find_service(tx, service)?.user_role_sid;
        let created = tx
            .execute_cached(
                "INSERT INTO users(sid, service_sid, identity, attributes, role_sid, date_created, date_updated) \
                 VALUES (?1, ?2, ?3, '{}', ?4, ?5, ?5) ON CONFLICT(service_sid, identity) DO NOTHING",
                params![user_sid.as_str(), service.as_str(), identity.as_str(), role.as_str(), ms(now)],
            )
            .map_err(storage)?;
        if created == 1 {
            let user = find_user(tx, service, &UserRef::Sid(user_sid.clone()))?;
            append_event(
                tx,
                user.sid.as_str(),
                EventKind::UserAdded,
                user.sid.as_str(),
                &event::user_snapshot(&user),
                now,
            )?;
        }
    }
    if let Ok(user) = find_user(tx, service, &UserRef::Identity(identity.as_str().to_string())) {
        append_event(
            tx,
            user.sid.as_str(),
            EventKind::UserConversationJoined,
            conv.sid.as_str(),
            &event::user_conversation_snapshot(&conv, after, Some(updated_seq)),
            now,
        )?;
    }
    Ok(())
}

/// Tells a chat participant's user stream that the user is no longer in the conversation.
fn user_left(
    tx: &Connection,
    service: &ServiceSid,
    conv: &Conversation,
    p: &Participant,
    now: OffsetDateTime,
) -> Result<()> {
    let Some(identity) = &p.identity else { return Ok(()) };
    if let Ok(user) = find_user(tx, service, &UserRef::Identity(identity.as_str().to_string())) {
        append_event(
            tx,
            user.sid.as_str(),
            EventKind::UserConversationLeft,
            conv.sid.as_str(),
            &event::user_conversation_snapshot(conv, p, None),
            now,
        )?;
    }
    Ok(())
}

/// Deletes a conversation and everything in it, telling its chat participants' users they left and its
/// listeners that it is gone.
fn remove_conversation(
    tx: &Connection,
    service: &ServiceSid,
    id: i64,
    current: &Conversation,
    now: OffsetDateTime,
) -> Result<()> {
    let participants: Vec<Participant> = tx
        .prepare_cached(&format!("SELECT {PARTICIPANT_COLUMNS} FROM participants p WHERE p.conversation_id = ?1"))
        .and_then(|mut s| s.query_map(params![id], |r| participant(r, 0).map(|(_, p)| p))?.collect())
        .map_err(storage)?;
    for p in &participants {
        user_left(tx, service, current, p, now)?;
    }
    delete_conversation_rows(tx, id)?;
    append_event(
        tx,
        current.sid.as_str(),
        EventKind::ConversationRemoved,
        current.sid.as_str(),
        &event::conversation_snapshot(current),
        now,
    )?;
    Ok(())
}

fn delete_conversation_rows(tx: &Connection, conv_id: i64) -> Result<()> {
    for sql in [
        "DELETE FROM messages WHERE conversation_id = ?1",
        "DELETE FROM deleted_messages WHERE conversation_id = ?1",
        "DELETE FROM message_keys WHERE conversation_id = ?1",
        "DELETE FROM participants WHERE conversation_id = ?1",
        "DELETE FROM conversation_webhooks WHERE conversation_id = ?1",
        "DELETE FROM delivery_receipts WHERE conversation_id = ?1",
        "DELETE FROM conversations WHERE id = ?1",
    ] {
        tx.execute_cached(sql, params![conv_id]).map_err(storage)?;
    }
    Ok(())
}

fn user_conversation_from_row(
    tx: &Connection,
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, Participant, i64, Conversation, String)> {
    let (pid, p) = participant(row, 0)?;
    let (cid, c) = conversation(row, PARTICIPANT_COLUMN_COUNT)?;
    let user_sid: String = row.get(PARTICIPANT_COLUMN_COUNT + CONVERSATION_COLUMN_COUNT)?;
    let _ = tx;
    Ok((pid, p, cid, c, user_sid))
}

fn to_user_conversation(
    tx: &Connection,
    parts: (i64, Participant, i64, Conversation, String),
) -> Result<UserConversation> {
    let (_, participant, conv_id, conversation, user_sid) = parts;
    let unread = unread_count(tx, conv_id, &conversation, participant.last_read_message_index)?;
    Ok(UserConversation {
        user_sid: user_sid.parse().map_err(|e: palaver_api::sid::SidError| Error::Storage(e.to_string()))?,
        participant,
        conversation,
        unread_messages_count: unread,
    })
}

const WEBHOOK_COLUMNS: &str = "id, sid, conversation_sid, service_sid, target, url, method, filters, triggers, flow_sid, \
     replay_after, date_created, date_updated";

fn conversation_webhook_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, ConversationWebhook)> {
    let bad = |i: usize, e: String| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into());
    let filters: String = r.get(7)?;
    let triggers: String = r.get(8)?;
    let method: String = r.get(6)?;
    let target: String = r.get(4)?;
    Ok((
        r.get(0)?,
        ConversationWebhook {
            sid: r.get::<_, String>(1)?.parse().map_err(|e: palaver_api::sid::SidError| bad(1, e.to_string()))?,
            conversation_sid: r
                .get::<_, String>(2)?
                .parse()
                .map_err(|e: palaver_api::sid::SidError| bad(2, e.to_string()))?,
            service_sid: r
                .get::<_, String>(3)?
                .parse()
                .map_err(|e: palaver_api::sid::SidError| bad(3, e.to_string()))?,
            target: ScopedTarget::parse(&target).ok_or_else(|| bad(4, format!("unknown target {target}")))?,
            url: r.get(5)?,
            method: HookMethod::parse("method", &method).map_err(|e| bad(6, e.to_string()))?,
            filters: parse_filter_names(&filters),
            triggers: serde_json::from_str(&triggers).map_err(|e| bad(8, e.to_string()))?,
            flow_sid: r.get(9)?,
            replay_after: r.get(10)?,
            date_created: palaver_core::clock::from_unix_millis(r.get(11)?),
            date_updated: palaver_core::clock::from_unix_millis(r.get(12)?),
        },
    ))
}

fn find_conversation_webhook(tx: &Connection, conv_id: i64, sid: &WebhookSid) -> Result<ConversationWebhook> {
    tx.query_row_cached(
        &format!("SELECT {WEBHOOK_COLUMNS} FROM conversation_webhooks WHERE conversation_id = ?1 AND sid = ?2"),
        params![conv_id, sid.as_str()],
        conversation_webhook_row,
    )
    .optional()
    .map_err(storage)?
    .map(|(_, hook)| hook)
    .ok_or_else(|| Error::not_found(ResourceKind::Webhook, sid))
}

fn filter_names(filters: &[WebhookEventType]) -> String {
    serde_json::to_string(&filters.iter().map(|f| f.as_str()).collect::<Vec<_>>()).unwrap_or_default()
}

fn parse_filter_names(raw: &str) -> Vec<WebhookEventType> {
    serde_json::from_str::<Vec<String>>(raw)
        .unwrap_or_default()
        .iter()
        .filter_map(|name| WebhookEventType::parse(name))
        .collect()
}

fn read_webhook_settings(tx: &Connection, scope: &str) -> Result<WebhookSettings> {
    let row = tx
        .query_row_cached(
            "SELECT method, filters, pre_webhook_url, post_webhook_url, target FROM webhook_settings WHERE scope = ?1",
            params![scope],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        )
        .optional()
        .map_err(storage)?;
    Ok(match row {
        None => WebhookSettings { target: "webhook".into(), ..WebhookSettings::default() },
        Some((method, filters, pre_webhook_url, post_webhook_url, target)) => WebhookSettings {
            method: HookMethod::parse("method", &method).unwrap_or_default(),
            filters: parse_filter_names(&filters),
            pre_webhook_url,
            post_webhook_url,
            target,
        },
    })
}

const EVENT_COLUMNS: &str = "id, stream, seq, kind, subject, data, at, service_sid, source, client_identity, webhooks";

fn query_events(tx: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Event>> {
    let mut stmt = tx.prepare_cached(sql).map_err(storage)?;
    let rows = stmt
        .query_map(args, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, bool>(10)?,
            ))
        })
        .map_err(storage)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(storage)?;
    rows.into_iter()
        .map(|(id, stream, seq, kind, subject, data, at, service_sid, source, client_identity, webhooks)| {
            Ok(Event {
                id,
                stream,
                seq,
                kind: EventKind::parse(&kind).ok_or_else(|| Error::Storage(format!("unknown event kind {kind}")))?,
                subject,
                data: serde_json::from_str(&data).map_err(|e| Error::Storage(e.to_string()))?,
                at: palaver_core::clock::from_unix_millis(at),
                service_sid,
                origin: Origin { source: Source::parse(&source), client_identity, webhooks },
            })
        })
        .collect()
}

fn sql_text(v: Option<&str>) -> SqlValue {
    v.map_or(SqlValue::Null, |s| SqlValue::Text(s.to_string()))
}

#[async_trait]
impl Store for SqliteStore {
    fn changes(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.changes)
    }

    async fn check_writable(&self) -> Result<()> {
        // Goes through the writer thread, its transaction and its commit like any write.
        self.write(|_| Ok(())).await
    }

    async fn bootstrap(&self, default_service: NewService) -> Result<AccountConfig> {
        self.write(move |tx| {
            if read_account_config(tx)?.is_some() {
                return Ok(());
            }
            let service = insert_service(tx, &default_service)?;
            tx.execute_cached(
                "INSERT INTO account_config(id, default_service_sid) VALUES (1, ?1)",
                params![service.sid.as_str()],
            )
            .map_err(storage)?;
            Ok(())
        })
        .await?;
        self.remember_account()
    }

    async fn account_config(&self) -> Result<AccountConfig> {
        if let Some(config) = self.account.read().ok().and_then(|cached| cached.clone()) {
            return Ok(config);
        }
        self.read(bootstrapped_account_config).await
    }

    async fn update_account_config(&self, patch: AccountConfigPatch) -> Result<AccountConfig> {
        self.write(move |tx| {
            if let Some(sid) = &patch.default_service_sid {
                find_service(tx, sid)?;
                tx.execute_cached(
                    "UPDATE account_config SET default_service_sid = ?1 WHERE id = 1",
                    params![sid.as_str()],
                )
                .map_err(storage)?;
            }
            if let Some(v) = &patch.default_messaging_service_sid {
                tx.execute_cached(
                    "UPDATE account_config SET default_messaging_service_sid = ?1 WHERE id = 1",
                    params![v.as_ref().map(|s| s.as_str())],
                )
                .map_err(storage)?;
            }
            if let Some(v) = patch.default_inactive_timer {
                tx.execute_cached(
                    "UPDATE account_config SET default_inactive_timer = ?1 WHERE id = 1",
                    params![v.map(|d| d.as_secs())],
                )
                .map_err(storage)?;
            }
            if let Some(v) = patch.default_closed_timer {
                tx.execute_cached(
                    "UPDATE account_config SET default_closed_timer = ?1 WHERE id = 1",
                    params![v.map(|d| d.as_secs())],
                )
                .map_err(storage)?;
            }
            Ok(())
        })
        .await?;
        self.remember_account()
    }

    async fn create_service(&self, new: NewService) -> Result<Service> {
        self.write(move |tx| insert_service(tx, &new)).await
    }

    async fn get_service(&self, sid: &ServiceSid) -> Result<Service> {
        let sid = sid.clone();
        self.read(move |tx| find_service(tx, &sid)).await
    }

    async fn list_services(&self, page: PageQuery) -> Result<Page<Service>> {
        self.read(move |tx| {
            keyset_page(
                tx,
                &format!("SELECT {SERVICE_COLUMNS} FROM services WHERE 1 = 1"),
                "id",
                vec![],
                page,
                service,
                |(id, _)| *id,
            )
            .map(|p| Page {
                items: p.items.into_iter().map(|(_, s)| s).collect(),
                next: p.next,
                previous: p.previous,
            })
        })
        .await
    }

    async fn delete_service(&self, sid: &ServiceSid, now: OffsetDateTime, origin: &Origin) -> Result<()> {
        let sid = sid.clone();
        self.write_as(origin.clone(), sid.to_string(), move |tx| {
            find_service(tx, &sid)?;
            let config = read_account_config(tx)?;
            if config.is_some_and(|c| c.default_service_sid == sid) {
                return Err(Error::Conflict(Conflict::InUse("the default service cannot be deleted".into())));
            }
            let conversations: Vec<(i64, Conversation)> = tx
                .prepare(&format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.service_sid = ?1"))
                .and_then(|mut s| s.query_map(params![sid.as_str()], |r| conversation(r, 0))?.collect())
                .map_err(storage)?;
            // Users are told before they go, so that their open sessions drop the conversations.
            for (id, current) in &conversations {
                remove_conversation(tx, &sid, *id, current, now)?;
            }
            for sql in [
                "DELETE FROM users WHERE service_sid = ?1",
                "DELETE FROM roles WHERE service_sid = ?1",
                "DELETE FROM push_bindings WHERE service_sid = ?1",
                "DELETE FROM push_settings WHERE service_sid = ?1",
                "DELETE FROM services WHERE sid = ?1",
            ] {
                tx.execute_cached(sql, params![sid.as_str()]).map_err(storage)?;
            }
            Ok(())
        })
        .await
    }

    async fn update_service_config(&self, sid: &ServiceSid, patch: ServiceConfigPatch) -> Result<Service> {
        let sid = sid.clone();
        self.write(move |tx| {
            find_service(tx, &sid)?;
            for (column, value) in [
                ("creator_role_sid", &patch.creator_role_sid),
                ("participant_role_sid", &patch.participant_role_sid),
                ("user_role_sid", &patch.user_role_sid),
            ] {
                if let Some(role) = value {
                    tx.execute_cached(
                        &format!("UPDATE services SET {column} = ?1 WHERE sid = ?2"),
                        params![role.as_str(), sid.as_str()],
                    )
                    .map_err(storage)?;
                }
            }
            if let Some(enabled) = patch.reachability_enabled {
                tx.execute_cached(
                    "UPDATE services SET reachability_enabled = ?1 WHERE sid = ?2",
                    params![enabled, sid.as_str()],
                )
                .map_err(storage)?;
            }
            if let Some(now) = patch.now {
                tx.execute_cached(
                    "UPDATE services SET date_updated = ?1 WHERE sid = ?2",
                    params![ms(now), sid.as_str()],
                )
                .map_err(storage)?;
            }
            find_service(tx, &sid)
        })
        .await
    }

    async fn create_conversation(
        &self,
        new: NewConversation,
        participants: Vec<NewParticipant>,
        origin: &Origin,
    ) -> Result<(Conversation, Vec<Participant>)> {
        self.write_as(origin.clone(), new.conversation.service_sid.to_string(), move |tx| {
            let c = new.conversation;
            let service = find_service(tx, &c.service_sid)?;
            if let Some(name) = &c.unique_name {
                ensure_unique_name_free(tx, &c.service_sid, name, -1)?;
            }
            tx.execute_cached(
                "INSERT INTO conversations(sid, service_sid, friendly_name, unique_name, attributes, messaging_service_sid, state, \
                 state_updated, created_by, email_address, email_name, date_created, date_updated, timer_inactive, timer_closed, \
                 date_inactive, date_closed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                params![
                    c.sid.as_str(),
                    c.service_sid.as_str(),
                    c.friendly_name,
                    c.unique_name,
                    c.attributes.as_str(),
                    c.messaging_service_sid.as_ref().map(|s| s.as_str()),
                    c.state.as_str(),
                    ms(c.state_updated),
                    c.created_by,
                    c.email_binding.address,
                    c.email_binding.name,
                    ms(c.date_created),
                    ms(c.date_updated),
                    c.timers.inactive_after.map(|d| d.as_secs()),
                    c.timers.closed_after.map(|d| d.as_secs()),
                    opt_ms(c.timers.date_inactive),
                    opt_ms(c.timers.date_closed),
                ],
            )
            .map_err(storage)?;
            let conv_id = tx.last_insert_rowid();
            let created = conversation_by_id(tx, conv_id)?;
            append_event(tx, created.sid.as_str(), EventKind::ConversationAdded, created.sid.as_str(), &event::conversation_snapshot(&created), c.state_updated)?;
            let mut added = Vec::with_capacity(participants.len());
            for p in participants {
                added.push(insert_participant(tx, conv_id, &created, &service, p)?);
            }
            let created = conversation_by_id(tx, conv_id)?;
            Ok((created, added))
        })
        .await
    }

    async fn get_conversation(&self, service: &ServiceSid, conv: &ConversationRef) -> Result<Conversation> {
        let (service, conv) = (service.clone(), conv.clone());
        self.read(move |tx| find_conversation(tx, &service, &conv).map(|(_, c)| c)).await
    }

    async fn list_conversations(
        &self,
        service: &ServiceSid,
        filter: ConversationFilter,
        page: PageQuery,
    ) -> Result<Page<Conversation>> {
        let service = service.clone();
        self.read(move |tx| {
            let mut sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.service_sid = ?");
            let mut args = vec![SqlValue::Text(service.to_string())];
            if let Some(from) = filter.created_from {
                sql.push_str(" AND c.date_created >= ?");
                args.push(SqlValue::Integer(ms(from)));
            }
            if let Some(before) = filter.created_before {
                sql.push_str(" AND c.date_created < ?");
                args.push(SqlValue::Integer(ms(before)));
            }
            if let Some(state) = filter.state {
                sql.push_str(" AND c.state = ?");
                args.push(SqlValue::Text(state.as_str().to_string()));
            }
            keyset_page(tx, &sql, "c.id", args, page, |r| conversation(r, 0), |(id, _)| *id).map(|p| Page {
                items: p.items.into_iter().map(|(_, c)| c).collect(),
                next: p.next,
                previous: p.previous,
            })
        })
        .await
    }

    async fn update_conversation(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        patch: ConversationPatch,
        origin: &Origin,
    ) -> Result<Conversation> {
        let (service, conv) = (service.clone(), conv.clone());
        self.write_as(origin.clone(), service.to_string(), move |tx| {
            let (id, current) = find_conversation(tx, &service, &conv)?;
            ensure_open(&current)?;
            let now = patch.now.unwrap_or_else(OffsetDateTime::now_utc);
            let mut next = current.clone();
            if let Some(v) = patch.friendly_name {
                next.friendly_name = v;
            }
            if let Some(v) = patch.unique_name {
                if let Some(name) = &v {
                    ensure_unique_name_free(tx, &service, name, id)?;
                }
                next.unique_name = v;
            }
            if let Some(v) = patch.attributes {
                next.attributes = v;
            }
            if let Some(v) = patch.messaging_service_sid {
                next.messaging_service_sid = v;
            }
            if let Some(v) = patch.email_address {
                next.email_binding.address = v;
            }
            if let Some(v) = patch.email_name {
                next.email_binding.name = v;
            }
            if let Some(v) = patch.date_created {
                next.date_created = v;
            }
            let state_changed = patch.state.is_some_and(|s| s != current.state);
            if let Some(state) = patch.state {
                next.state = state;
            }
            if state_changed {
                next.state_updated = now;
            }
            let timers_changed = patch.inactive_after.is_some() || patch.closed_after.is_some();
            if state_changed || timers_changed {
                next.timers = arm_timers(
                    next.state,
                    patch.inactive_after.or(current.timers.inactive_after),
                    patch.closed_after.or(current.timers.closed_after),
                    now,
                );
            }
            next.date_updated = now;
            tx.execute_cached(
                "UPDATE conversations SET friendly_name = ?1, unique_name = ?2, attributes = ?3, messaging_service_sid = ?4, \
                 state = ?5, state_updated = ?6, email_address = ?7, email_name = ?8, date_created = ?9, date_updated = ?10, \
                 timer_inactive = ?11, timer_closed = ?12, date_inactive = ?13, date_closed = ?14 WHERE id = ?15",
                params![
                    next.friendly_name,
                    next.unique_name,
                    next.attributes.as_str(),
                    next.messaging_service_sid.as_ref().map(|s| s.as_str()),
                    next.state.as_str(),
                    ms(next.state_updated),
                    next.email_binding.address,
                    next.email_binding.name,
                    ms(next.date_created),
                    ms(next.date_updated),
                    next.timers.inactive_after.map(|d| d.as_secs()),
                    next.timers.closed_after.map(|d| d.as_secs()),
                    opt_ms(next.timers.date_inactive),
                    opt_ms(next.timers.date_closed),
                    id,
                ],
            )
            .map_err(storage)?;
            let updated = conversation_by_id(tx, id)?;
            let snapshot = event::conversation_snapshot(&updated);
            append_event(tx, updated.sid.as_str(), EventKind::ConversationUpdated, updated.sid.as_str(), &snapshot, now)?;
            if state_changed {
                append_event(tx, updated.sid.as_str(), EventKind::ConversationStateUpdated, updated.sid.as_str(), &snapshot, now)?;
            }
            Ok(updated)
        })
        .await
    }

    async fn restore_conversation_lifecycle(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        lifecycle: ConversationLifecycle,
        origin: &Origin,
    ) -> Result<Conversation> {
        let (service, conv) = (service.clone(), conv.clone());
        self.write_as(origin.clone(), service.to_string(), move |tx| {
            let (id, current) = find_conversation(tx, &service, &conv)?;
            let timers = lifecycle.timers;
            tx.execute_cached(
                "UPDATE conversations SET state = ?1, state_updated = ?2, date_updated = ?3, timer_inactive = ?4, \
                 timer_closed = ?5, date_inactive = ?6, date_closed = ?7 WHERE id = ?8",
                params![
                    lifecycle.state.as_str(),
                    ms(lifecycle.state_updated),
                    ms(lifecycle.date_updated),
                    timers.inactive_after.map(|d| d.as_secs()),
                    timers.closed_after.map(|d| d.as_secs()),
                    opt_ms(timers.date_inactive),
                    opt_ms(timers.date_closed),
                    id,
                ],
            )
            .map_err(storage)?;
            let restored = conversation_by_id(tx, id)?;
            let snapshot = event::conversation_snapshot(&restored);
            let (sid, at) = (restored.sid.as_str(), lifecycle.date_updated);
            append_event(tx, sid, EventKind::ConversationUpdated, sid, &snapshot, at)?;
            if restored.state != current.state {
                append_event(tx, sid, EventKind::ConversationStateUpdated, sid, &snapshot, lifecycle.state_updated)?;
            }
            Ok(restored)
        })
        .await
    }

    async fn delete_conversation(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        now: OffsetDateTime,
        origin: &Origin,
    ) -> Result<()> {
        let (service, conv) = (service.clone(), conv.clone());
        self.write_as(origin.clone(), service.to_string(), move |tx| {
            let (id, current) = find_conversation(tx, &service, &conv)?;
            remove_conversation(tx, &service, id, &current, now)
        })
        .await
    }

    async fn add_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        new: NewParticipant,
        origin: &Origin,
    ) -> Result<Participant> {
        let (service, conv) = (service.clone(), conv.clone());
        self.write_as(origin.clone(), service.to_string(), move |tx| {
            let svc = find_service(tx, &service)?;
            let (id, current) = find_conversation(tx, &service, &conv)?;
            ensure_open(&current)?;
            insert_participant(tx, id, &current, &svc, new)
        })
        .await
    }

    async fn get_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        p: &ParticipantRef,
    ) -> Result<Participant> {
        let (service, conv, p) = (service.clone(), conv.clone(), p.clone());
        self.read(move |tx| {
            let (id, _) = find_conversation(tx, &service, &conv)?;
            find_participant(tx, id, &p)
        })
        .await
    }

    async fn list_participants(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<Page<Participant>> {
        let (service, conv) = (service.clone(), conv.clone());
        self.read(move |tx| {
            let (id, _) = find_conversation(tx, &service, &conv)?;
            keyset_page(
                tx,
                &format!("SELECT {PARTICIPANT_COLUMNS} FROM participants p WHERE p.conversation_id = ?"),
                "p.id",
                vec![SqlValue::Integer(id)],
                page,
                |r| participant(r, 0),
                |(id, _)| *id,
            )
            .map(|p| Page {
                items: p.items.into_iter().map(|(_, p)| p).collect(),
                next: p.next,
                previous: p.previous,
            })
        })
        .await
    }

    async fn update_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        p: &ParticipantRef,
        patch: ParticipantPatch,
        origin: &Origin,
    ) -> Result<Participant> {
        let (service, conv, p) = (service.clone(), conv.clone(), p.clone());
        // Every check (state, participant, role, identity) comes before the one UPDATE: no savepoint needed.
        self.write_as_guarded(Guard::ChecksFirst, origin.clone(), service.to_string(), move |tx| {
            let (conv_id, current_conv) = find_conversation(tx, &service, &conv)?;
            // Reading a closed conversation is still reading: horizons and notification levels may change.
            let only_reading = patch.attributes.is_none()
                && patch.role_sid.is_none()
                && patch.identity.is_none()
                && patch.proxy_address.is_none()
                && patch.projected_address.is_none()
                && patch.date_created.is_none();
            if !only_reading {
                ensure_open(&current_conv)?;
            }
            let current = find_participant(tx, conv_id, &p)?;
            let now = patch.now.unwrap_or_else(OffsetDateTime::now_utc);
            let mut sets: Vec<&str> = vec!["date_updated = ?"];
            let mut args: Vec<SqlValue> = vec![SqlValue::Integer(ms(now))];
            if let Some(v) = &patch.attributes {
                sets.push("attributes = ?");
                args.push(SqlValue::Text(v.as_str().to_string()));
            }
            if let Some(v) = &patch.role_sid {
                find_role(tx, &service, v)?;
                sets.push("role_sid = ?");
                args.push(SqlValue::Text(v.to_string()));
            }
            if let Some(v) = &patch.identity {
                if current.identity.is_none() {
                    return Err(palaver_core::error::InvalidInput::new(
                        "Identity",
                        "a non-chat participant has no identity",
                    )
                    .into());
                }
                if current.identity.as_ref() != Some(v) {
                    let taken: bool = tx
                        .query_row_cached(
                            "SELECT EXISTS(SELECT 1 FROM participants WHERE conversation_id = ?1 AND identity = ?2)",
                            params![conv_id, v.as_str()],
                            |r| r.get(0),
                        )
                        .map_err(storage)?;
                    if taken {
                        return Err(Error::Conflict(Conflict::ParticipantIdentityTaken(v.to_string())));
                    }
                }
                sets.push("identity = ?");
                args.push(SqlValue::Text(v.as_str().to_string()));
            }
            if let Some(v) = &patch.proxy_address {
                sets.push("binding_proxy = ?");
                args.push(sql_text(v.as_deref()));
            }
            if let Some(v) = &patch.projected_address {
                sets.push("binding_projected = ?");
                args.push(sql_text(v.as_deref()));
            }
            if let Some(v) = patch.last_read_message_index {
                sets.push("last_read_index = ?");
                args.push(v.map_or(SqlValue::Null, SqlValue::Integer));
            }
            if let Some(v) = patch.last_read_timestamp {
                sets.push("last_read_timestamp = ?");
                args.push(opt_ms(v).map_or(SqlValue::Null, SqlValue::Integer));
            }
            if let Some(v) = patch.notification_level {
                sets.push("notification_level = ?");
                args.push(SqlValue::Text(v.as_str().to_string()));
            }
            if let Some(v) = patch.date_created {
                sets.push("date_created = ?");
                args.push(SqlValue::Integer(ms(v)));
            }
            args.push(SqlValue::Text(current.sid.to_string()));
            tx.execute_cached(
                &format!("UPDATE participants SET {} WHERE sid = ?", sets.join(", ")),
                params_from_iter(args),
            )
            .map_err(storage)?;
            let updated = find_participant(tx, conv_id, &ParticipantRef::Sid(current.sid.clone()))?;
            let updated_seq = append_event(
                tx,
                current_conv.sid.as_str(),
                EventKind::ParticipantUpdated,
                updated.sid.as_str(),
                &event::participant_snapshot(&updated),
                now,
            )?;
            if updated.identity.is_some() && updated.identity != current.identity {
                renamed_participant(
                    tx,
                    &service,
                    conv_id,
                    &current,
                    &updated,
                    patch.new_user_sid.as_ref(),
                    updated_seq,
                    now,
                )?;
            }
            // The user's own view of the conversation (its horizon, its level) is also a change of the
            // user's list of conversations, which clients follow on the user's stream.
            let users_view_changed = patch.last_read_message_index.is_some() || patch.notification_level.is_some();
            // (A missing user is no reason to fail after the UPDATE, which would roll back the whole group.)
            if users_view_changed
                && let Some(identity) = &updated.identity
                && let Ok(user) = find_user(tx, &service, &UserRef::Identity(identity.as_str().to_string()))
            {
                append_event(
                    tx,
                    user.sid.as_str(),
                    EventKind::UserConversationUpdated,
                    current_conv.sid.as_str(),
                    &event::user_conversation_snapshot(&conversation_by_id(tx, conv_id)?, &updated, None),
                    now,
                )?;
            }
            Ok(updated)
        })
        .await
    }

    async fn remove_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        p: &ParticipantRef,
        now: OffsetDateTime,
        origin: &Origin,
    ) -> Result<()> {
        let (service, conv, p) = (service.clone(), conv.clone(), p.clone());
        self.write_as(origin.clone(), service.to_string(), move |tx| {
            let (conv_id, current_conv) = find_conversation(tx, &service, &conv)?;
            let current = find_participant(tx, conv_id, &p)?;
            tx.execute_cached("DELETE FROM participants WHERE sid = ?1", params![current.sid.as_str()])
                .map_err(storage)?;
            channels::cancel_queued(tx, current.sid.as_str(), now)?;
            append_event(
                tx,
                current_conv.sid.as_str(),
                EventKind::ParticipantRemoved,
                current.sid.as_str(),
                &event::participant_snapshot(&current),
                now,
            )?;
            user_left(tx, &service, &current_conv, &current, now)?;
            Ok(())
        })
        .await
    }

    async fn add_message(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        new: NewMessage,
        origin: &Origin,
    ) -> Result<Message> {
        let (service, conv) = (service.clone(), conv.clone());
        // Attaching media checks sizes after the message row exists, so only a message without media can skip
        // its savepoint; everything else below is checked before the first change.
        let guard = if new.media.is_empty() { Guard::ChecksFirst } else { Guard::Savepoint };
        self.write_as_guarded(guard, origin.clone(), service.to_string(), move |tx| {
            let (conv_id, current) = find_conversation(tx, &service, &conv)?;
            if let Some(key) = &new.idempotency_key {
                let earlier: Option<String> = tx
                    .query_row_cached("SELECT message_sid FROM message_keys WHERE conversation_id = ?1 AND key = ?2", params![conv_id, key], |r| r.get(0))
                    .optional()
                    .map_err(storage)?;
                if let Some(sid) = earlier {
                    let sid: MessageSid = sid.parse().map_err(|e: palaver_api::sid::SidError| Error::Storage(e.to_string()))?;
                    return find_message(tx, conv_id, &current, &sid);
                }
            }
            ensure_open(&current)?;
            let index: i64 = tx
                .query_row_cached(
                    "UPDATE conversations SET next_message_index = next_message_index + 1 WHERE id = ?1 \
                     RETURNING next_message_index - 1",
                    params![conv_id],
                    |r| r.get(0),
                )
                .map_err(storage)?;
            let participant_sid: Option<String> = tx
                .query_row_cached(
                    "SELECT sid FROM participants WHERE conversation_id = ?1 AND (identity = ?2 OR (identity IS NULL AND binding_address = ?2)) LIMIT 1",
                    params![conv_id, new.author],
                    |r| r.get(0),
                )
                .optional()
                .map_err(storage)?;
            tx.execute_cached(
                "INSERT INTO messages(conversation_id, idx, sid, author, body, subject, attributes, participant_sid, content_sid, \
                 date_created, date_updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    conv_id,
                    index,
                    new.sid.as_str(),
                    new.author,
                    new.body,
                    new.subject,
                    new.attributes.as_str(),
                    participant_sid,
                    new.content_sid,
                    ms(new.date_created),
                    opt_ms(new.date_updated),
                ],
            )
            .map_err(storage)?;
            if let Some(key) = &new.idempotency_key {
                tx.execute_cached("INSERT INTO message_keys(conversation_id, key, message_sid) VALUES (?1, ?2, ?3)", params![conv_id, key, new.sid.as_str()])
                    .map_err(storage)?;
            }
            let mut media_descriptors = Vec::new();
            if !new.media.is_empty() {
                media_descriptors = media::attach(tx, &current, &new.sid, &new.media, new.max_media_bytes)?;
                tx.execute_cached(
                    "UPDATE messages SET media = ?1 WHERE conversation_id = ?2 AND idx = ?3",
                    params![serde_json::Value::Array(media_descriptors.clone()).to_string(), conv_id, index],
                )
                .map_err(storage)?;
            }
            let mut delivery = None;
            if current.participants_count > 0
                && let Some(counts) = channels::create_receipts(tx, conv_id, &current, &new.sid, participant_sid.as_deref(), new.now)?
            {
                tx.execute_cached(
                    "UPDATE messages SET delivery = ?1 WHERE conversation_id = ?2 AND idx = ?3",
                    params![counts.to_json(), conv_id, index],
                )
                .map_err(storage)?;
                delivery = Some(counts);
            }
            // New activity wakes an inactive conversation and restarts its timers.
            let reactivated = current.state == ConversationState::Inactive;
            let state = if reactivated { ConversationState::Active } else { current.state };
            let timers = arm_timers(state, current.timers.inactive_after, current.timers.closed_after, new.now);
            // Without timers an active conversation's row stays as it is: no write.
            let unchanged = !reactivated
                && timers.date_inactive == current.timers.date_inactive
                && timers.date_closed == current.timers.date_closed;
            if !unchanged {
                tx.execute_cached(
                    "UPDATE conversations SET state = ?1, state_updated = CASE WHEN ?2 THEN ?3 ELSE state_updated END, \
                     date_inactive = ?4, date_closed = ?5 WHERE id = ?6",
                    params![state.as_str(), reactivated, ms(new.now), opt_ms(timers.date_inactive), opt_ms(timers.date_closed), conv_id],
                )
                .map_err(storage)?;
            }
            // The row as written, without reading it back (times at the stored millisecond precision).
            let at_ms = |t: OffsetDateTime| palaver_core::clock::from_unix_millis(ms(t));
            let created = Message {
                sid: new.sid.clone(),
                conversation_sid: current.sid.clone(),
                service_sid: current.service_sid.clone(),
                index,
                author: new.author.clone(),
                body: new.body.clone(),
                subject: new.subject.clone(),
                attributes: new.attributes.clone(),
                participant_sid: participant_sid.as_deref().map(str::parse).transpose().map_err(|e: palaver_api::sid::SidError| Error::Storage(e.to_string()))?,
                content_sid: new.content_sid.clone(),
                media: media_descriptors,
                delivery,
                date_created: at_ms(new.date_created),
                date_updated: new.date_updated.map(at_ms),
            };
            append_event_json(tx, current.sid.as_str(), EventKind::MessageAdded, created.sid.as_str(), &event::message_snapshot_json(&created), new.now)?;
            if reactivated {
                let updated = conversation_by_id(tx, conv_id)?;
                append_event(tx, current.sid.as_str(), EventKind::ConversationStateUpdated, current.sid.as_str(), &event::conversation_snapshot(&updated), new.now)?;
            }
            Ok(created)
        })
        .await
    }

    async fn get_message(&self, service: &ServiceSid, conv: &ConversationRef, sid: &MessageSid) -> Result<Message> {
        let (service, conv, sid) = (service.clone(), conv.clone(), sid.clone());
        self.read(move |tx| {
            let (conv_id, current) = find_conversation(tx, &service, &conv)?;
            find_message(tx, conv_id, &current, &sid)
        })
        .await
    }

    async fn list_messages(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<Page<Message>> {
        let (service, conv) = (service.clone(), conv.clone());
        self.read(move |tx| message_page(tx, &service, &conv, page).map(|(_, listed)| listed)).await
    }

    async fn list_messages_and_lead(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<(Page<Message>, bool)> {
        let (service, conv) = (service.clone(), conv.clone());
        self.read(move |tx| {
            let (conv_id, listed) = message_page(tx, &service, &conv, page)?;
            let Some(first) = listed.items.first().map(|m| m.index) else { return Ok((listed, false)) };
            let sql = if page.descending {
                "SELECT EXISTS(SELECT 1 FROM messages WHERE conversation_id = ?1 AND idx > ?2)"
            } else {
                "SELECT EXISTS(SELECT 1 FROM messages WHERE conversation_id = ?1 AND idx < ?2)"
            };
            let lead: bool = tx.query_row_cached(sql, params![conv_id, first], |r| r.get(0)).map_err(storage)?;
            Ok((listed, lead))
        })
        .await
    }

    async fn update_message(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &MessageSid,
        patch: MessagePatch,
        origin: &Origin,
    ) -> Result<Message> {
        let (service, conv, sid) = (service.clone(), conv.clone(), sid.clone());
        self.write_as(origin.clone(), service.to_string(), move |tx| {
            let (conv_id, current_conv) = find_conversation(tx, &service, &conv)?;
            ensure_open(&current_conv)?;
            let mut m = find_message(tx, conv_id, &current_conv, &sid)?;
            if let Some(v) = patch.author {
                m.author = v;
            }
            if let Some(v) = patch.body {
                m.body = Some(v);
            }
            if let Some(v) = patch.subject {
                m.subject = Some(v);
            }
            if let Some(v) = patch.attributes {
                m.attributes = v;
            }
            if let Some(v) = patch.date_created {
                m.date_created = v;
            }
            if patch.date_updated.is_some() {
                m.date_updated = patch.date_updated;
            }
            tx.execute_cached(
                "UPDATE messages SET author = ?1, body = ?2, subject = ?3, attributes = ?4, date_created = ?5, date_updated = ?6 \
                 WHERE conversation_id = ?7 AND sid = ?8",
                params![m.author, m.body, m.subject, m.attributes.as_str(), ms(m.date_created), opt_ms(m.date_updated), conv_id, sid.as_str()],
            )
            .map_err(storage)?;
            let now = patch.now.unwrap_or_else(OffsetDateTime::now_utc);
            append_event(tx, current_conv.sid.as_str(), EventKind::MessageUpdated, m.sid.as_str(), &event::message_snapshot(&m), now)?;
            Ok(m)
        })
        .await
    }

    async fn delete_message(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &MessageSid,
        now: OffsetDateTime,
        origin: &Origin,
    ) -> Result<()> {
        let (service, conv, sid) = (service.clone(), conv.clone(), sid.clone());
        self.write_as(origin.clone(), service.to_string(), move |tx| {
            let (conv_id, current_conv) = find_conversation(tx, &service, &conv)?;
            ensure_open(&current_conv)?;
            let m = find_message(tx, conv_id, &current_conv, &sid)?;
            tx.execute_cached(
                "DELETE FROM messages WHERE conversation_id = ?1 AND idx = ?2",
                params![conv_id, m.index],
            )
            .map_err(storage)?;
            tx.execute_cached(
                "INSERT INTO deleted_messages(conversation_id, idx) VALUES (?1, ?2)",
                params![conv_id, m.index],
            )
            .map_err(storage)?;
            channels::delete_receipts(tx, conv_id, Some(&m.sid))?;
            tx.execute_cached(
                "UPDATE conversations SET deleted_messages = deleted_messages + 1 WHERE id = ?1",
                params![conv_id],
            )
            .map_err(storage)?;
            append_event(
                tx,
                current_conv.sid.as_str(),
                EventKind::MessageRemoved,
                m.sid.as_str(),
                &event::message_snapshot(&m),
                now,
            )?;
            Ok(())
        })
        .await
    }

    async fn create_user(&self, service: &ServiceSid, new: NewUser, origin: &Origin) -> Result<User> {
        let service = service.clone();
        self.write_as(origin.clone(), service.to_string(), move |tx| {
            let svc = find_service(tx, &service)?;
            if find_user(tx, &service, &UserRef::Identity(new.identity.as_str().to_string())).is_ok() {
                return Err(Error::Conflict(Conflict::UserIdentityTaken(new.identity.to_string())));
            }
            let role = new.role_sid.clone().unwrap_or(svc.user_role_sid);
            tx.execute_cached(
                "INSERT INTO users(sid, service_sid, identity, friendly_name, attributes, role_sid, date_created, date_updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![new.sid.as_str(), service.as_str(), new.identity.as_str(), new.friendly_name, new.attributes.as_str(), role.as_str(), ms(new.now)],
            )
            .map_err(storage)?;
            let user = find_user(tx, &service, &UserRef::Sid(new.sid))?;
            append_event(tx, user.sid.as_str(), EventKind::UserAdded, user.sid.as_str(), &event::user_snapshot(&user), new.now)?;
            Ok(user)
        })
        .await
    }

    async fn get_user(&self, service: &ServiceSid, user_ref: &UserRef) -> Result<User> {
        let (service, user_ref) = (service.clone(), user_ref.clone());
        self.read(move |tx| find_user(tx, &service, &user_ref)).await
    }

    async fn list_users(&self, service: &ServiceSid, page: PageQuery) -> Result<Page<User>> {
        let service = service.clone();
        self.read(move |tx| {
            keyset_page(
                tx,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE service_sid = ?"),
                "id",
                vec![SqlValue::Text(service.to_string())],
                page,
                user,
                |(id, _)| *id,
            )
            .map(|p| Page {
                items: p.items.into_iter().map(|(_, u)| u).collect(),
                next: p.next,
                previous: p.previous,
            })
        })
        .await
    }

    async fn update_user(
        &self,
        service: &ServiceSid,
        user_ref: &UserRef,
        patch: UserPatch,
        origin: &Origin,
    ) -> Result<User> {
        let (service, user_ref) = (service.clone(), user_ref.clone());
        self.write_as(origin.clone(), service.to_string(), move |tx| {
            let mut u = find_user(tx, &service, &user_ref)?;
            if let Some(v) = patch.friendly_name {
                u.friendly_name = v;
            }
            if let Some(v) = patch.attributes {
                u.attributes = v;
            }
            if let Some(v) = patch.role_sid {
                u.role_sid = Some(v);
            }
            let now = patch.now.unwrap_or_else(OffsetDateTime::now_utc);
            u.date_updated = now;
            tx.execute_cached(
                "UPDATE users SET friendly_name = ?1, attributes = ?2, role_sid = ?3, date_updated = ?4 WHERE sid = ?5",
                params![
                    u.friendly_name,
                    u.attributes.as_str(),
                    u.role_sid.as_ref().map(|r| r.as_str()),
                    ms(now),
                    u.sid.as_str()
                ],
            )
            .map_err(storage)?;
            append_event(tx, u.sid.as_str(), EventKind::UserUpdated, u.sid.as_str(), &event::user_snapshot(&u), now)?;
            Ok(u)
        })
        .await
    }

    async fn delete_user(
        &self,
        service: &ServiceSid,
        user_ref: &UserRef,
        now: OffsetDateTime,
        origin: &Origin,
    ) -> Result<()> {
        let (service, user_ref) = (service.clone(), user_ref.clone());
        self.write_as(origin.clone(), service.to_string(), move |tx| {
            let u = find_user(tx, &service, &user_ref)?;
            tx.execute_cached("DELETE FROM users WHERE sid = ?1", params![u.sid.as_str()]).map_err(storage)?;
            append_event(tx, u.sid.as_str(), EventKind::UserRemoved, u.sid.as_str(), &event::user_snapshot(&u), now)?;
            Ok(())
        })
        .await
    }

    async fn list_user_conversations(
        &self,
        service: &ServiceSid,
        user_ref: &UserRef,
        page: PageQuery,
    ) -> Result<Page<UserConversation>> {
        let (service, user_ref) = (service.clone(), user_ref.clone());
        self.read(move |tx| {
            let u = find_user(tx, &service, &user_ref)?;
            let sql = format!(
                "SELECT {PARTICIPANT_COLUMNS}, {CONVERSATION_COLUMNS}, ? FROM participants p JOIN conversations c ON c.id = p.conversation_id \
                 WHERE p.service_sid = ? AND p.identity = ?"
            );
            let args = vec![SqlValue::Text(u.sid.to_string()), SqlValue::Text(service.to_string()), SqlValue::Text(u.identity.as_str().to_string())];
            let raw = keyset_page(tx, &sql, "p.id", args, page, |r| user_conversation_from_row(tx, r), |parts| parts.0)?;
            let items = raw.items.into_iter().map(|parts| to_user_conversation(tx, parts)).collect::<Result<Vec<_>>>()?;
            Ok(Page { items, next: raw.next, previous: raw.previous })
        })
        .await
    }

    async fn get_user_conversation(
        &self,
        service: &ServiceSid,
        user_ref: &UserRef,
        conv: &ConversationRef,
    ) -> Result<UserConversation> {
        let (service, user_ref, conv) = (service.clone(), user_ref.clone(), conv.clone());
        self.read(move |tx| {
            let u = find_user(tx, &service, &user_ref)?;
            let (conv_id, _) = find_conversation(tx, &service, &conv)?;
            let parts = tx
                .query_row_cached(
                    &format!(
                        "SELECT {PARTICIPANT_COLUMNS}, {CONVERSATION_COLUMNS}, ?1 FROM participants p JOIN conversations c ON c.id = p.conversation_id \
                         WHERE p.conversation_id = ?2 AND p.identity = ?3"
                    ),
                    params![u.sid.as_str(), conv_id, u.identity.as_str()],
                    |r| user_conversation_from_row(tx, r),
                )
                .optional()
                .map_err(storage)?
                .ok_or_else(|| Error::not_found(ResourceKind::UserConversation, format!("{}/{}", u.sid, conv)))?;
            to_user_conversation(tx, parts)
        })
        .await
    }

    async fn list_participant_conversations(
        &self,
        service: &ServiceSid,
        lookup: &ParticipantLookup,
        page: PageQuery,
    ) -> Result<Page<ParticipantConversation>> {
        let (service, lookup) = (service.clone(), lookup.clone());
        self.read(move |tx| {
            let (column, value) = match &lookup {
                ParticipantLookup::Identity(i) => ("p.identity", i.clone()),
                ParticipantLookup::Address(a) => ("p.binding_address", a.clone()),
            };
            let sql = format!(
                "SELECT {PARTICIPANT_COLUMNS}, {CONVERSATION_COLUMNS}, (SELECT u.sid FROM users u WHERE u.service_sid = p.service_sid AND u.identity = p.identity) \
                 FROM participants p JOIN conversations c ON c.id = p.conversation_id WHERE p.service_sid = ? AND {column} = ?"
            );
            let args = vec![SqlValue::Text(service.to_string()), SqlValue::Text(value)];
            let raw = keyset_page(
                tx,
                &sql,
                "p.id",
                args,
                page,
                |r| {
                    let (pid, p) = participant(r, 0)?;
                    let (_, c) = conversation(r, PARTICIPANT_COLUMN_COUNT)?;
                    let user_sid = parse_opt_col(r, PARTICIPANT_COLUMN_COUNT + CONVERSATION_COLUMN_COUNT)?;
                    Ok((pid, ParticipantConversation { participant: p, user_sid, conversation: c }))
                },
                |(id, _)| *id,
            )?;
            Ok(Page { items: raw.items.into_iter().map(|(_, pc)| pc).collect(), next: raw.next, previous: raw.previous })
        })
        .await
    }

    async fn create_role(&self, service: &ServiceSid, new: NewRole) -> Result<Role> {
        let service = service.clone();
        self.write(move |tx| {
            find_service(tx, &service)?;
            let permissions = serde_json::to_string(&new.permissions).map_err(|e| Error::Storage(e.to_string()))?;
            tx.execute_cached(
                "INSERT INTO roles(sid, service_sid, friendly_name, kind, permissions, date_created, date_updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![new.sid.as_str(), service.as_str(), new.friendly_name, new.kind.as_str(), permissions, ms(new.now)],
            )
            .map_err(storage)?;
            find_role(tx, &service, &new.sid)
        })
        .await
    }

    async fn get_role(&self, service: &ServiceSid, sid: &RoleSid) -> Result<Role> {
        let (service, sid) = (service.clone(), sid.clone());
        self.read(move |tx| find_role(tx, &service, &sid)).await
    }

    async fn list_roles(&self, service: &ServiceSid, page: PageQuery) -> Result<Page<Role>> {
        let service = service.clone();
        self.read(move |tx| {
            find_service(tx, &service)?;
            keyset_page(
                tx,
                &format!("SELECT {ROLE_COLUMNS} FROM roles WHERE service_sid = ?"),
                "id",
                vec![SqlValue::Text(service.to_string())],
                page,
                role,
                |(id, _)| *id,
            )
            .map(|p| Page {
                items: p.items.into_iter().map(|(_, r)| r).collect(),
                next: p.next,
                previous: p.previous,
            })
        })
        .await
    }

    async fn update_role(
        &self,
        service: &ServiceSid,
        sid: &RoleSid,
        permissions: Vec<String>,
        now: OffsetDateTime,
    ) -> Result<Role> {
        let (service, sid) = (service.clone(), sid.clone());
        self.write(move |tx| {
            find_role(tx, &service, &sid)?;
            let permissions = serde_json::to_string(&permissions).map_err(|e| Error::Storage(e.to_string()))?;
            tx.execute_cached(
                "UPDATE roles SET permissions = ?1, date_updated = ?2 WHERE sid = ?3",
                params![permissions, ms(now), sid.as_str()],
            )
            .map_err(storage)?;
            find_role(tx, &service, &sid)
        })
        .await
    }

    async fn delete_role(&self, service: &ServiceSid, sid: &RoleSid) -> Result<()> {
        let (service, sid) = (service.clone(), sid.clone());
        self.write(move |tx| {
            find_role(tx, &service, &sid)?;
            let in_use: bool = tx
                .query_row_cached(
                    "SELECT EXISTS(SELECT 1 FROM services WHERE sid = ?1 AND ?2 IN (creator_role_sid, participant_role_sid, user_role_sid))",
                    params![service.as_str(), sid.as_str()],
                    |r| r.get(0),
                )
                .map_err(storage)?;
            if in_use {
                return Err(Error::Conflict(Conflict::InUse(format!("role {sid} is a default role of its service"))));
            }
            tx.execute_cached("DELETE FROM roles WHERE sid = ?1", params![sid.as_str()]).map_err(storage)?;
            Ok(())
        })
        .await
    }

    async fn create_api_key(&self, key: ApiKey) -> Result<ApiKey> {
        self.write(move |tx| {
            tx.execute_cached(
                "INSERT INTO api_keys(sid, friendly_name, secret, date_created) VALUES (?1, ?2, ?3, ?4)",
                params![key.sid.as_str(), key.friendly_name, key.secret, ms(key.date_created)],
            )
            .map_err(storage)?;
            Ok(key)
        })
        .await
    }

    async fn get_api_key(&self, sid: &ApiKeySid) -> Result<ApiKey> {
        let sid = sid.clone();
        self.read(move |tx| {
            tx.query_row_cached(
                "SELECT sid, friendly_name, secret, date_created FROM api_keys WHERE sid = ?1",
                params![sid.as_str()],
                api_key,
            )
            .optional()
            .map_err(storage)?
            .ok_or_else(|| Error::not_found(ResourceKind::ApiKey, &sid))
        })
        .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        self.read(|tx| {
            tx.prepare_cached("SELECT sid, friendly_name, secret, date_created FROM api_keys ORDER BY id")
                .and_then(|mut s| s.query_map([], api_key)?.collect())
                .map_err(storage)
        })
        .await
    }

    async fn delete_api_key(&self, sid: &ApiKeySid) -> Result<()> {
        let sid = sid.clone();
        self.write(move |tx| {
            let n = tx.execute_cached("DELETE FROM api_keys WHERE sid = ?1", params![sid.as_str()]).map_err(storage)?;
            if n == 0 {
                return Err(Error::not_found(ResourceKind::ApiKey, &sid));
            }
            Ok(())
        })
        .await
    }

    async fn next_timer_due(&self) -> Result<Option<OffsetDateTime>> {
        self.read(|tx| {
            let due: Option<i64> = tx
                .query_row_cached(
                    "SELECT MIN(t) FROM (SELECT MIN(date_inactive) AS t FROM conversations WHERE date_inactive IS NOT NULL \
                     UNION ALL SELECT MIN(date_closed) FROM conversations WHERE date_closed IS NOT NULL)",
                    [],
                    |r| r.get(0),
                )
                .map_err(storage)?;
            Ok(due.map(palaver_core::clock::from_unix_millis))
        })
        .await
    }

    async fn fire_due_timers(&self, now: OffsetDateTime) -> Result<Vec<Conversation>> {
        self.write(move |tx| {
            let due: Vec<i64> = tx
                .prepare_cached(
                    "SELECT id FROM conversations WHERE date_closed <= ?1 UNION SELECT id FROM conversations WHERE date_inactive <= ?1",
                )
                .and_then(|mut s| s.query_map(params![ms(now)], |r| r.get(0))?.collect())
                .map_err(storage)?;
            let mut changed = Vec::new();
            for id in due {
                let current = conversation_by_id(tx, id)?;
                set_write_context(Origin::system(), current.service_sid.to_string());
                let closing = current.timers.date_closed.is_some_and(|d| d <= now);
                let (state, timers) = if closing {
                    (ConversationState::Closed, Timers { date_inactive: None, date_closed: None, ..current.timers })
                } else {
                    (ConversationState::Inactive, Timers { date_inactive: None, ..current.timers })
                };
                tx.execute_cached(
                    "UPDATE conversations SET state = ?1, state_updated = ?2, date_updated = ?2, date_inactive = ?3, date_closed = ?4 WHERE id = ?5",
                    params![state.as_str(), ms(now), opt_ms(timers.date_inactive), opt_ms(timers.date_closed), id],
                )
                .map_err(storage)?;
                let updated = conversation_by_id(tx, id)?;
                if updated.state != current.state {
                    append_event(tx, updated.sid.as_str(), EventKind::ConversationStateUpdated, updated.sid.as_str(), &event::conversation_snapshot(&updated), now)?;
                    changed.push(updated);
                }
            }
            Ok(changed)
        })
        .await
    }

    async fn read_events(&self, stream: &str, after: i64, limit: u32) -> Result<Vec<Event>> {
        let stream = stream.to_string();
        self.read(move |tx| {
            query_events(
                tx,
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"),
                params![stream, after, limit],
            )
        })
        .await
    }

    async fn read_log(&self, after_id: i64, limit: u32) -> Result<Vec<Event>> {
        self.read(move |tx| {
            query_events(
                tx,
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"),
                params![after_id, limit],
            )
        })
        .await
    }

    async fn last_log_id(&self) -> Result<i64> {
        self.read(|tx| {
            tx.query_row_cached("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0)).map_err(storage)
        })
        .await
    }

    async fn stream_position(&self, stream: &str) -> Result<i64> {
        let stream = stream.to_string();
        self.read(move |tx| {
            tx.query_row_cached(
                "SELECT COALESCE((SELECT last_seq FROM streams WHERE stream = ?1), 0)",
                params![stream],
                |r| r.get(0),
            )
            .map_err(storage)
        })
        .await
    }

    async fn webhook_settings(&self, scope: &WebhookScope) -> Result<WebhookSettings> {
        let key = scope.key();
        self.read(move |tx| read_webhook_settings(tx, &key)).await
    }

    async fn update_webhook_settings(
        &self,
        scope: &WebhookScope,
        patch: WebhookSettingsPatch,
    ) -> Result<WebhookSettings> {
        let key = scope.key();
        self.write(move |tx| {
            let updated = patch.apply(read_webhook_settings(tx, &key)?);
            tx.execute_cached(
                "INSERT INTO webhook_settings(scope, method, filters, pre_webhook_url, post_webhook_url, target) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(scope) DO UPDATE SET method = excluded.method, \
                 filters = excluded.filters, pre_webhook_url = excluded.pre_webhook_url, \
                 post_webhook_url = excluded.post_webhook_url, target = excluded.target",
                params![
                    key,
                    updated.method.as_str(),
                    filter_names(&updated.filters),
                    updated.pre_webhook_url,
                    updated.post_webhook_url,
                    updated.target
                ],
            )
            .map_err(storage)?;
            Ok(updated)
        })
        .await
    }

    async fn create_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        hook: ConversationWebhook,
    ) -> Result<ConversationWebhook> {
        let (service, conv) = (service.clone(), conv.clone());
        self.write(move |tx| {
            let (conv_id, current) = find_conversation(tx, &service, &conv)?;
            let count: i64 = tx
                .query_row_cached(
                    "SELECT COUNT(*) FROM conversation_webhooks WHERE conversation_id = ?1",
                    params![conv_id],
                    |r| r.get(0),
                )
                .map_err(storage)?;
            if count as usize >= MAX_SCOPED_WEBHOOKS {
                return Err(Error::LimitExceeded(Limit::ScopedWebhooks(MAX_SCOPED_WEBHOOKS)));
            }
            tx.execute_cached(
                "INSERT INTO conversation_webhooks(sid, conversation_id, conversation_sid, service_sid, target, url, \
                 method, filters, triggers, flow_sid, replay_after, date_created, date_updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    hook.sid.as_str(),
                    conv_id,
                    current.sid.as_str(),
                    service.as_str(),
                    hook.target.as_str(),
                    hook.url,
                    hook.method.as_str(),
                    filter_names(&hook.filters),
                    serde_json::to_string(&hook.triggers).unwrap_or_default(),
                    hook.flow_sid,
                    hook.replay_after,
                    ms(hook.date_created),
                    ms(hook.date_updated),
                ],
            )
            .map_err(storage)?;
            find_conversation_webhook(tx, conv_id, &hook.sid)
        })
        .await
    }

    async fn get_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &WebhookSid,
    ) -> Result<ConversationWebhook> {
        let (service, conv, sid) = (service.clone(), conv.clone(), sid.clone());
        self.read(move |tx| {
            let (conv_id, _) = find_conversation(tx, &service, &conv)?;
            find_conversation_webhook(tx, conv_id, &sid)
        })
        .await
    }

    async fn list_conversation_webhooks(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<Page<ConversationWebhook>> {
        let (service, conv) = (service.clone(), conv.clone());
        self.read(move |tx| {
            let (conv_id, _) = find_conversation(tx, &service, &conv)?;
            let page = keyset_page(
                tx,
                &format!("SELECT {WEBHOOK_COLUMNS} FROM conversation_webhooks WHERE conversation_id = ?"),
                "id",
                vec![SqlValue::Integer(conv_id)],
                page,
                conversation_webhook_row,
                |(id, _)| *id,
            )?;
            Ok(Page {
                items: page.items.into_iter().map(|(_, h)| h).collect(),
                next: page.next,
                previous: page.previous,
            })
        })
        .await
    }

    async fn update_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &WebhookSid,
        patch: ConversationWebhookPatch,
    ) -> Result<ConversationWebhook> {
        let (service, conv, sid) = (service.clone(), conv.clone(), sid.clone());
        self.write(move |tx| {
            let (conv_id, _) = find_conversation(tx, &service, &conv)?;
            let mut hook = find_conversation_webhook(tx, conv_id, &sid)?;
            if let Some(url) = patch.url {
                hook.url = Some(url);
            }
            if let Some(method) = patch.method {
                hook.method = method;
            }
            if let Some(filters) = patch.filters {
                hook.filters = filters;
            }
            if let Some(triggers) = patch.triggers {
                hook.triggers = triggers;
            }
            if let Some(flow) = patch.flow_sid {
                hook.flow_sid = Some(flow);
            }
            if let Some(now) = patch.now {
                hook.date_updated = now;
            }
            tx.execute_cached(
                "UPDATE conversation_webhooks SET url = ?1, method = ?2, filters = ?3, triggers = ?4, flow_sid = ?5, \
                 date_updated = ?6 WHERE conversation_id = ?7 AND sid = ?8",
                params![
                    hook.url,
                    hook.method.as_str(),
                    filter_names(&hook.filters),
                    serde_json::to_string(&hook.triggers).unwrap_or_default(),
                    hook.flow_sid,
                    ms(hook.date_updated),
                    conv_id,
                    sid.as_str()
                ],
            )
            .map_err(storage)?;
            Ok(hook)
        })
        .await
    }

    async fn delete_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &WebhookSid,
    ) -> Result<()> {
        let (service, conv, sid) = (service.clone(), conv.clone(), sid.clone());
        self.write(move |tx| {
            let (conv_id, _) = find_conversation(tx, &service, &conv)?;
            let deleted = tx
                .execute_cached(
                    "DELETE FROM conversation_webhooks WHERE conversation_id = ?1 AND sid = ?2",
                    params![conv_id, sid.as_str()],
                )
                .map_err(storage)?;
            if deleted == 0 {
                return Err(Error::not_found(ResourceKind::Webhook, &sid));
            }
            Ok(())
        })
        .await
    }

    async fn webhook_config(&self) -> Result<WebhookConfig> {
        self.read(|tx| {
            let scopes: Vec<String> = tx
                .prepare_cached("SELECT scope FROM webhook_settings")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(storage)?;
            let mut settings = Vec::new();
            for key in scopes {
                let scope = if key == "account" {
                    WebhookScope::Account
                } else {
                    WebhookScope::Service(
                        key.parse().map_err(|e: palaver_api::sid::SidError| Error::Storage(e.to_string()))?,
                    )
                };
                settings.push((scope, read_webhook_settings(tx, &key)?));
            }
            let scoped = tx
                .prepare_cached(&format!("SELECT {WEBHOOK_COLUMNS} FROM conversation_webhooks ORDER BY id"))
                .and_then(|mut s| s.query_map([], conversation_webhook_row)?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(storage)?
                .into_iter()
                .map(|(_, hook)| hook)
                .collect();
            Ok(WebhookConfig { settings, scoped })
        })
        .await
    }

    async fn webhook_cursor(&self) -> Result<i64> {
        self.read(|tx| {
            tx.query_row_cached("SELECT log_id FROM webhook_cursor WHERE id = 1", [], |r| r.get(0)).map_err(storage)
        })
        .await
    }

    async fn enqueue_webhooks(
        &self,
        deliveries: Vec<NewDelivery>,
        from: i64,
        to: i64,
        now: OffsetDateTime,
    ) -> Result<i64> {
        // The writer thread runs one write at a time, so reading the cursor and moving it here is a
        // compare-and-set: no other planner's write can come between.
        self.write(move |tx| {
            let stored: i64 = tx
                .query_row_cached("SELECT log_id FROM webhook_cursor WHERE id = 1", [], |r| r.get(0))
                .map_err(storage)?;
            if stored > from {
                return Ok(stored);
            }
            for delivery in &deliveries {
                tx.execute_cached(
                    "INSERT INTO webhook_outbox(event_id, url, method, params, next_attempt, date_created) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![
                        delivery.event_id,
                        delivery.url,
                        delivery.method.as_str(),
                        serde_json::to_string(&delivery.params).unwrap_or_default(),
                        ms(now)
                    ],
                )
                .map_err(storage)?;
            }
            let moved = stored.max(to);
            tx.execute_cached("UPDATE webhook_cursor SET log_id = ?1 WHERE id = 1", params![moved]).map_err(storage)?;
            Ok(moved)
        })
        .await
    }

    async fn due_webhooks(&self, now: OffsetDateTime, lease: Duration, limit: u32) -> Result<Vec<Delivery>> {
        let any_due = self.outbox_has_due("webhook_outbox", now).await?;
        if !any_due {
            return Ok(Vec::new());
        }
        // The claim is a write: the writer thread runs one at a time, so the scan and the move of the lease are
        // one step that no other claim can interleave with.
        let lease_end = lease_end(now, lease);
        self.write(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, event_id, url, method, params, attempts FROM webhook_outbox \
                     WHERE dead = 0 AND next_attempt <= ?1 ORDER BY next_attempt, id LIMIT ?2",
                )
                .map_err(storage)?;
            let rows = stmt
                .query_map(params![ms(now), limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, u32>(5)?,
                    ))
                })
                .map_err(storage)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(storage)?;
            for (id, ..) in &rows {
                tx.execute_cached("UPDATE webhook_outbox SET next_attempt = ?1 WHERE id = ?2", params![lease_end, id])
                    .map_err(storage)?;
            }
            rows.into_iter()
                .map(|(id, event_id, url, method, params, attempts)| {
                    Ok(Delivery {
                        id,
                        attempts,
                        request: NewDelivery {
                            event_id,
                            url,
                            method: HookMethod::parse("method", &method).map_err(|e| Error::Storage(e.to_string()))?,
                            params: serde_json::from_str(&params).map_err(|e| Error::Storage(e.to_string()))?,
                        },
                    })
                })
                .collect()
        })
        .await
    }

    async fn next_webhook_due(&self) -> Result<Option<OffsetDateTime>> {
        self.read(|tx| {
            let next: Option<i64> = tx
                .query_row_cached("SELECT MIN(next_attempt) FROM webhook_outbox WHERE dead = 0", [], |r| r.get(0))
                .map_err(storage)?;
            Ok(next.map(palaver_core::clock::from_unix_millis))
        })
        .await
    }

    async fn record_webhook_attempt(&self, attempt: WebhookAttempt, retention: AttemptRetention) -> Result<()> {
        self.write(move |tx| deliveries::record_attempt(tx, &attempt, retention)).await
    }

    async fn list_webhook_attempts(&self, filter: AttemptFilter, page: PageQuery) -> Result<Page<WebhookAttempt>> {
        self.read(move |tx| deliveries::list_attempts(tx, &filter, page)).await
    }

    async fn list_webhook_outbox(&self, filter: OutboxFilter, page: PageQuery) -> Result<Page<OutboxEntry>> {
        self.read(move |tx| deliveries::list_outbox(tx, filter, page)).await
    }

    async fn due_channel_jobs(
        &self,
        channels: &[BindingKind],
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ChannelJob>> {
        let channels = channels.to_vec();
        // As for webhooks: a read first, since most rounds find nothing due, then the claim as one write.
        let probe = channels.clone();
        if !self.read(move |tx| channels::any_due(tx, &probe, now)).await? {
            return Ok(Vec::new());
        }
        let lease_end = lease_end(now, lease);
        self.write(move |tx| channels::claim_due_jobs(tx, &channels, now, lease_end, limit)).await
    }

    async fn next_channel_job_due(&self, channels: &[BindingKind]) -> Result<Option<OffsetDateTime>> {
        let channels = channels.to_vec();
        self.read(move |tx| channels::next_due(tx, &channels)).await
    }

    async fn outbox_depths(&self) -> Result<OutboxDepths> {
        self.read(|tx| {
            // Each count runs over an index: `webhook_outbox_due` leads with `dead`, `receipts_due` holds only
            // queued receipts.
            let count = |dead: i64| {
                tx.query_row_cached("SELECT count(*) FROM webhook_outbox WHERE dead = ?1", params![dead], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(storage)
            };
            let (pending, dead) = (count(0)?, count(1)?);
            let mut by_channel = tx
                .prepare_cached(
                    "SELECT channel, count(*) FROM delivery_receipts WHERE next_attempt IS NOT NULL GROUP BY channel",
                )
                .map_err(storage)?;
            let counts = by_channel
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(storage)?
                .map(|row| row.map(|(channel, n)| (channel, n.max(0).cast_unsigned())))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(storage)?;
            Ok(OutboxDepths {
                webhooks_pending: pending.max(0).cast_unsigned(),
                webhooks_dead: dead.max(0).cast_unsigned(),
                channels_pending: OutboxDepths::channel_counts(counts),
            })
        })
        .await
    }

    async fn update_delivery(&self, receipt: &ReceiptRef, update: DeliveryUpdate) -> Result<Option<DeliveryReceipt>> {
        let receipt = receipt.clone();
        self.write_as(Origin::system(), String::new(), move |tx| {
            let service: Option<String> = match &receipt {
                ReceiptRef::Sid(sid) => tx.query_row_cached(
                    "SELECT service_sid FROM delivery_receipts WHERE sid = ?1",
                    params![sid.as_str()],
                    |r| r.get(0),
                ),
                ReceiptRef::ChannelMessage(id) => tx.query_row_cached(
                    "SELECT service_sid FROM delivery_receipts WHERE channel_message_sid = ?1 LIMIT 1",
                    params![id],
                    |r| r.get(0),
                ),
            }
            .optional()
            .map_err(storage)?;
            set_write_context(Origin::system(), service.unwrap_or_default());
            channels::update_delivery(tx, &receipt, update)
        })
        .await
    }

    async fn list_channel_deliveries(&self, filter: ReceiptFilter, page: PageQuery) -> Result<Page<ChannelDelivery>> {
        self.read(move |tx| channels::list_deliveries(tx, &filter, page)).await
    }

    async fn list_receipts(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        message: &MessageSid,
        page: PageQuery,
    ) -> Result<Page<DeliveryReceipt>> {
        let (service, conv, message) = (service.clone(), conv.clone(), message.clone());
        self.read(move |tx| {
            let (conv_id, current) = find_conversation(tx, &service, &conv)?;
            find_message(tx, conv_id, &current, &message)?;
            channels::list_receipts(tx, conv_id, &message, page)
        })
        .await
    }

    async fn get_receipt(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        message: &MessageSid,
        sid: &DeliveryReceiptSid,
    ) -> Result<DeliveryReceipt> {
        let (service, conv, message, sid) = (service.clone(), conv.clone(), message.clone(), sid.clone());
        self.read(move |tx| {
            let (conv_id, current) = find_conversation(tx, &service, &conv)?;
            find_message(tx, conv_id, &current, &message)?;
            channels::get_receipt(tx, conv_id, &message, &sid)
        })
        .await
    }

    async fn find_conversation_by_binding(
        &self,
        channel: BindingKind,
        address: &str,
        our_address: &str,
    ) -> Result<Option<(ServiceSid, ConversationSid)>> {
        let (address, our_address) = (address.to_string(), our_address.to_string());
        let found =
            self.read(move |tx| channels::find_conversation_by_binding(tx, channel, &address, &our_address)).await?;
        found
            .map(|(service, conv)| {
                Ok((
                    service.parse().map_err(|e: palaver_api::sid::SidError| Error::Storage(e.to_string()))?,
                    conv.parse().map_err(|e: palaver_api::sid::SidError| Error::Storage(e.to_string()))?,
                ))
            })
            .transpose()
    }

    async fn create_media(&self, new: palaver_core::media::Media) -> Result<palaver_core::media::Media> {
        self.write(move |tx| media::create(tx, &new)).await
    }

    async fn find_media(&self, sid: &palaver_api::sid::MediaSid) -> Result<palaver_core::media::Media> {
        let sid = sid.clone();
        self.read(move |tx| media::find(tx, &sid)).await
    }

    async fn get_media(
        &self,
        service: &ServiceSid,
        sid: &palaver_api::sid::MediaSid,
    ) -> Result<palaver_core::media::Media> {
        let (service, sid) = (service.clone(), sid.clone());
        self.read(move |tx| media::get(tx, &service, &sid)).await
    }

    async fn create_address_configuration(&self, config: AddressConfiguration) -> Result<AddressConfiguration> {
        self.write(move |tx| channels::create_address(tx, &config)).await
    }

    async fn get_address_configuration(&self, sid: &AddressConfigurationSid) -> Result<AddressConfiguration> {
        let sid = sid.clone();
        self.read(move |tx| channels::get_address(tx, &sid)).await
    }

    async fn find_address_configuration(&self, address: &str) -> Result<Option<AddressConfiguration>> {
        let address = address.to_string();
        self.read(move |tx| channels::find_address(tx, &address)).await
    }

    async fn list_address_configurations(
        &self,
        kind: Option<String>,
        page: PageQuery,
    ) -> Result<Page<AddressConfiguration>> {
        self.read(move |tx| channels::list_addresses(tx, kind, page)).await
    }

    async fn update_address_configuration(
        &self,
        sid: &AddressConfigurationSid,
        patch: AddressConfigurationPatch,
    ) -> Result<AddressConfiguration> {
        let sid = sid.clone();
        self.write(move |tx| channels::update_address(tx, &sid, patch)).await
    }

    async fn delete_address_configuration(&self, sid: &AddressConfigurationSid) -> Result<()> {
        let sid = sid.clone();
        self.write(move |tx| channels::delete_address(tx, &sid)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("palaver.db")).unwrap();
        (dir, store)
    }

    async fn scratch_rows(store: &SqliteStore) -> i64 {
        store
            .read(|conn| conn.query_row("SELECT count(*) FROM scratch", [], |r| r.get(0)).map_err(storage))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_panicking_write_fails_alone_and_the_writer_goes_on() {
        let (_dir, store) = scratch_store();
        store.write(|conn| conn.execute_batch("CREATE TABLE scratch(x)").map_err(storage)).await.unwrap();
        for guard in [Guard::Savepoint, Guard::ChecksFirst] {
            // Queued while the writer is busy, so that the three share the next group transaction.
            let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let busy = {
                let (store, started) = (store.clone(), Arc::clone(&started));
                tokio::spawn(async move {
                    store
                        .write(move |_| {
                            started.store(true, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(300));
                            Ok(())
                        })
                        .await
                })
            };
            while !started.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            let before = store.write_guarded(guard, |conn| {
                conn.execute("INSERT INTO scratch VALUES (1)", []).map(drop).map_err(storage)
            });
            let panicking = store.write_guarded(guard, |conn| -> Result<()> {
                conn.execute("INSERT INTO scratch VALUES (2)", []).map_err(storage)?;
                panic!("a bug in one write");
            });
            let after = store.write_guarded(guard, |conn| {
                conn.execute("INSERT INTO scratch VALUES (3)", []).map(drop).map_err(storage)
            });
            let (before, panicking, after) = tokio::join!(before, panicking, after);
            busy.await.unwrap().unwrap();
            assert!(
                matches!(panicking, Err(Error::Storage(ref m)) if m.contains("a bug in one write")),
                "{panicking:?}"
            );
            match guard {
                // Its savepoint undoes only what it did.
                Guard::Savepoint => assert!(before.is_ok() && after.is_ok()),
                // It changed rows it cannot undo alone: its whole group rolls back, and nothing is acknowledged.
                Guard::ChecksFirst => assert!(before.is_err() && after.is_err()),
            }
        }
        // One row from the savepoint round, none from the other; the writer still commits.
        assert_eq!(scratch_rows(&store).await, 2);
        store.check_writable().await.unwrap();
        store
            .write(|conn| conn.execute("INSERT INTO scratch VALUES (4)", []).map(drop).map_err(storage))
            .await
            .unwrap();
        assert_eq!(scratch_rows(&store).await, 3);
    }
}
