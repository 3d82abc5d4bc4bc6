//! Palaver's clustered storage: [`PostgresStore`] implements [`Store`] on PostgreSQL, for several nodes
//! sharing one database.
//!
//! # Driver
//!
//! `tokio-postgres` with a `deadpool-postgres` pool, both without default features: the pool is one small
//! crate over the driver, statements are prepared once per connection (`prepare_cached`), and nothing here
//! needs compile-time checked queries or macros (`sqlx` would bring its macro crates and a larger build for
//! that). TLS is not built in yet (`NoTls`): run the database on a private network or through a local proxy.
//!
//! # Concurrency: the same guarantees as SQLite, with several writers
//!
//! SQLite has one writer, so every rule checked inside a write is race-free for free. Here several nodes,
//! and several pooled connections per node, write at once; each guarantee of the [`Store`] port is kept as
//! follows.
//!
//! - **Every write is one transaction** (`READ COMMITTED`): the change, its events and its sequence numbers
//!   commit or roll back together. A failure anywhere (including a constraint violation) rolls back the
//!   whole write and nothing else, since each write has its own transaction.
//! - **Per-conversation ordering.** Every write to a conversation first locks its row with
//!   `SELECT … FOR UPDATE` and only then reads it. Writes to one conversation therefore run one after
//!   another whichever node they come from, and each one reads the state its predecessor committed (a
//!   `READ COMMITTED` statement started after the lock was granted sees every commit before it). That is
//!   what makes `next_message_index` hand out distinct, increasing indices, and what keeps the checks of
//!   closed state, participant identity and limits, and idempotency keys race-free. Writes to different
//!   conversations do not wait for each other.
//! - **Rules without a row to lock** (a unique name claimed by two new conversations, one identity claimed
//!   by two new users) are left to named unique constraints; the store maps their violation to the same
//!   [`Conflict`] SQLite reports.
//! - **Per-stream sequence numbers** come from `INSERT … ON CONFLICT DO UPDATE SET last_seq = last_seq + 1
//!   RETURNING last_seq` on the stream's row in `streams`: the row stays locked until the transaction ends,
//!   so concurrent writers to one stream (a user's stream is written from many conversations) are ordered,
//!   and a rolled-back write gives its number back. No gaps, no duplicates.
//! - **The global log id in commit order.** The live feed tails `events.id` ("everything above the last id
//!   I saw"). A plain identity column is not enough: ids are drawn when rows are inserted, not when they
//!   commit, so transaction A may draw N, B draw N+1 and commit first; a reader that sees N+1 moves its
//!   cursor past N, and never delivers N once A commits. So events are *not* inserted when a write appends
//!   them. A write takes its sequence numbers at once (it may need them, e.g. for `joined_at_seq`) and
//!   buffers the event rows; just before `COMMIT` it takes a transaction-scoped advisory lock
//!   (`pg_advisory_xact_lock`, one key per schema), inserts the buffered rows (drawing their ids) and
//!   commits. Only the lock holder draws ids, and PostgreSQL makes a commit visible before it releases the
//!   transaction's locks, so every id below a visible id is already committed or rolled back (a rolled back
//!   id is a gap the feed simply never sees). Readers never wait.
//!
//!   The price is that the tail of every write (the event insert and the commit's WAL flush) is serialised
//!   across the cluster. It is short — the rest of the write, row locks and checks included, runs in
//!   parallel — and the advisory lock is always the last lock a write takes, so it cannot join a deadlock.
//!   The alternative considered was to insert events at once and let readers stop below the oldest
//!   transaction still in flight (`pg_snapshot_xmin(pg_current_snapshot())`, with each event's
//!   `pg_current_xact_id()`): writers never wait, but readers need the transaction id on every row and one
//!   long transaction stalls the whole feed, and the feed's "last id" stops being a plain number other
//!   components (the webhook cursor) can compare. Serialising a few milliseconds per write is the simpler
//!   correct choice at Palaver's write rates; revisit if profiles show the lock.
//! - **Outbox workers on several nodes.** SQLite's single writer made "one scan hands a job to one worker"
//!   trivially true. Here the scans of the two outboxes are claims with a lease: `due_webhooks` is one
//!   statement that selects the due entries `FOR UPDATE SKIP LOCKED` and moves their `next_attempt` to the
//!   lease's end (a `SELECT … FOR UPDATE SKIP LOCKED` CTE feeding `UPDATE … RETURNING`); `due_channel_jobs` selects
//!   the due receipts with what sending needs `FOR UPDATE OF r SKIP LOCKED` and moves theirs in the same
//!   transaction. Two nodes claiming at once never both take one job (the second skips the rows the first
//!   holds, instead of waiting for them; a row the first committed meanwhile is re-checked in its newest
//!   version once locked, and is no longer due), and a later claim does not take it either until the lease
//!   ends. Recording the outcome ends the lease (`webhook_delivered` deletes the entry, `webhook_failed` and
//!   `update_delivery` set the retry time or take the receipt out of the queue); a node that dies mid-job
//!   leaves it to whichever node claims after the lease, which the dispatchers choose well above an
//!   attempt's timeout. A claim locks the receipt rows only, never their conversations: delivery outcomes
//!   (`update_delivery`, also run when a participant with queued receipts leaves) lock the receipt's
//!   conversation row first, then the receipt, like every write to a conversation, so they and the
//!   message's aggregate counts are updated one after another, and a claim, which skips the receipts they
//!   hold, cannot deadlock with them. Attaching media locks each media row, so two messages cannot both
//!   take one upload.
//! - **One webhook planner at a time.** Every node plans the shared log into the outbox; `enqueue_webhooks`
//!   is a compare-and-set on the cursor: it locks the cursor row (`SELECT … FOR UPDATE`, which under READ
//!   COMMITTED returns the version the previous planner committed) and adds the batch and moves the cursor
//!   only if the cursor is still at the batch's start. A planner that lost the race adds nothing and goes
//!   on from the cursor it is answered with, so each event is planned by one node, once.
//! - **Rules on rows that may not exist yet** in the webhook and address tables: the per-conversation limit
//!   of scoped webhooks is checked under the conversation's row lock; a scope's settings are patched under
//!   a `SHARE ROW EXCLUSIVE` lock of `webhook_settings` (readers do not wait); a second configuration of one
//!   address loses on the unique `lower_address` and gets SQLite's conflict.
//! - **Migrations** run at open, in one transaction per open, under another advisory lock, so nodes that
//!   start together apply each migration once.
//!
//! [`Store::changes`] wakes this process's feed after its own commits; commits of other nodes reach it
//! through the cluster bus (not part of this crate).
//!
//! Every method of the port is implemented ([`UNSUPPORTED`] is empty), and the whole conformance suite runs
//! against this store.
//!
//! [`Store`]: palaver_core::store::Store
//! [`Store::changes`]: palaver_core::store::Store::changes

mod channels;
mod deliveries;
mod media;
mod push;
mod queries;
mod rows;
mod schema;
mod store;
mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use palaver_core::error::{Conflict, Error, Result};
use palaver_core::event::Origin;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

pub use store::UNSUPPORTED;

/// The PostgreSQL-backed [`Store`](palaver_core::store::Store).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Notified after each of this store's commits.
    changes: Arc<tokio::sync::Notify>,
    /// Each commit's events, for the cluster relay (sent only while someone listens).
    committed: tokio::sync::broadcast::Sender<Arc<Vec<palaver_core::event::Event>>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

/// Commits whose events the cluster relay may fall behind by before it misses some (the other nodes then
/// read them from the database).
const COMMITTED_BUFFER: usize = 4096;

/// Connections the pool keeps at most, unless the URL's `pool_max_conns` says otherwise.
const POOL_SIZE: usize = 16;
/// The largest `pool_max_conns` taken (PostgreSQL's own default `max_connections` is 100 for every client).
const MAX_POOL_SIZE: usize = 1000;

/// First half of the advisory lock keys (the second is a hash of the schema's name).
const LOCK_NAMESPACE: i32 = 0x7061_6c00; // "pal\0"
/// Held while a write draws event ids and commits.
const LOG_LOCK: &str = "SELECT pg_advisory_xact_lock($1::int4 + 1, hashtext(current_schema()))";
/// Held while migrations run.
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock($1::int4 + 2, hashtext(current_schema()))";

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`) and applies pending migrations.
    ///
    /// # Errors
    /// [`Error::Storage`] when the URL is malformed, the database cannot be reached or a migration fails.
    ///
    /// A URL that picks a schema (`?options=-c%20search_path%3Dname`) gets that schema created when missing, so
    /// several deployments (or tests) can share one database, a schema each. `pool_max_conns=N` in the query
    /// (pgx's name for it) sizes the connection pool (16 by default).
    pub async fn open(url: &str) -> Result<Self> {
        let (config, pool_size) = parse_url(url)?;
        if let Some(schema) = config.get_options().and_then(search_path_schema) {
            create_schema(&config, &schema).await?;
        }
        Self::open_config(config, pool_size).await
    }

    /// Like [`PostgresStore::open`], in schema `schema` of that database (created when missing): every pooled
    /// connection starts with its `search_path` set to it. Tests give each store a schema of its own.
    ///
    /// # Errors
    /// As [`PostgresStore::open`]; also when `schema` is not made of lowercase ASCII letters, digits and `_`.
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<Self> {
        if schema.is_empty()
            || !schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            || schema.as_bytes()[0].is_ascii_digit()
        {
            return Err(Error::Storage(format!("invalid schema name {schema:?}")));
        }
        let (mut config, pool_size) = parse_url(url)?;
        create_schema(&config, schema).await?;
        config.options(format!("-c search_path={schema}"));
        Self::open_config(config, pool_size).await
    }

    /// The connection settings of `url` without Palaver's own parameters (`pool_max_conns`), for tools that
    /// connect to the same database directly.
    ///
    /// # Errors
    /// [`Error::Storage`] when the URL is malformed.
    pub fn connection_config(url: &str) -> Result<tokio_postgres::Config> {
        parse_url(url).map(|(config, _)| config)
    }

    /// Applies pending migrations to the database at `url` and returns; what `palaver migrate` runs.
    ///
    /// # Errors
    /// As [`PostgresStore::open`].
    pub async fn migrate(url: &str) -> Result<()> {
        Self::open(url).await.map(drop)
    }

    async fn open_config(config: tokio_postgres::Config, pool_size: usize) -> Result<Self> {
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .build()
            .map_err(|e| Error::Storage(format!("cannot build the connection pool: {e}")))?;
        let store = Self {
            pool,
            changes: Arc::new(tokio::sync::Notify::new()),
            committed: tokio::sync::broadcast::channel(COMMITTED_BUFFER).0,
        };
        store.apply_migrations().await?;
        Ok(store)
    }

    async fn apply_migrations(&self) -> Result<()> {
        let conn = self.connection().await?;
        conn.batch_execute("BEGIN").await.map_err(pg)?;
        let applied = async {
            conn.execute(MIGRATION_LOCK, &[&LOCK_NAMESPACE]).await?;
            conn.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)").await?;
            let version: i64 =
                conn.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[]).await?.get(0);
            for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
                conn.batch_execute(sql).await?;
                conn.execute("INSERT INTO schema_version(version) VALUES ($1)", &[&(i as i64 + 1)]).await?;
                tracing::info!(version = i + 1, "applied schema migration");
            }
            conn.batch_execute("COMMIT").await
        }
        .await;
        if applied.is_err() {
            let _ = conn.batch_execute("ROLLBACK").await;
        }
        applied.map_err(pg)
    }

    async fn connection(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| Error::Storage(format!("no database connection: {e}")))
    }

    /// Begins a write acting for `origin` in `service` (recorded on the events it appends).
    pub(crate) async fn write(&self, origin: &Origin, service: &str) -> Result<Tx> {
        let conn = self.connection().await?;
        Ok(Tx {
            conn: Some(conn),
            begin: AtomicBool::new(true),
            begin_sql: "BEGIN ISOLATION LEVEL READ COMMITTED",
            origin: origin.clone(),
            service: service.to_string(),
            pending: Vec::new(),
            changes: Some(Arc::clone(&self.changes)),
            committed: Some(self.committed.clone()),
        })
    }

    /// Begins a read: one snapshot for all its statements.
    pub(crate) async fn read(&self) -> Result<Tx> {
        let conn = self.connection().await?;
        Ok(Tx {
            conn: Some(conn),
            begin: AtomicBool::new(true),
            begin_sql: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            origin: Origin::system(),
            service: String::new(),
            pending: Vec::new(),
            changes: None,
            committed: None,
        })
    }
}

/// The schema named by connection options `-c search_path=name` (one plain lowercase name only: a list or a
/// quoted name is left to the operator to create).
/// The connection settings of `url` and its pool size: `pool_max_conns=N` is taken out of the query first, as
/// tokio-postgres refuses parameters it does not know.
fn parse_url(url: &str) -> Result<(tokio_postgres::Config, usize)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pool_size = POOL_SIZE;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("pool_max_conns", value)) => {
                pool_size = value.parse().ok().filter(|size| (1..=MAX_POOL_SIZE).contains(size)).ok_or_else(|| {
                    Error::Storage(format!("pool_max_conns must be 1 to {MAX_POOL_SIZE}, not {value:?}"))
                })?;
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url.parse().map_err(pg)?, pool_size))
}

fn search_path_schema(options: &str) -> Option<String> {
    let value = options.split_once("search_path=")?.1.split_whitespace().next()?;
    let plain = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !value.as_bytes()[0].is_ascii_digit();
    (plain && value != "public").then(|| value.to_string())
}

/// Creates `schema` (a plain name, checked by the caller) unless it exists.
async fn create_schema(config: &tokio_postgres::Config, schema: &str) -> Result<()> {
    let mut plain = config.clone();
    // The schema does not exist yet: connect without selecting it.
    plain.options("");
    let (client, connection) = plain.connect(NoTls).await.map_err(pg)?;
    let driver = tokio::spawn(connection);
    let mut created = client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await.map_err(pg);
    if created.is_err() {
        // Two nodes starting together race on the catalog: the loser's failure is fine if the schema is there.
        let exists = client.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema]).await;
        if matches!(exists, Ok(Some(_))) {
            created = Ok(());
        }
    }
    drop(client);
    let _ = driver.await;
    created
}

/// Awaits `first` and `second` together, having sent `first`'s request before `second`'s: each is polled once,
/// in that order, before either is awaited (tokio-postgres sends a request when its future is first polled).
async fn in_order<A: std::future::Future, B: std::future::Future>(first: A, second: B) -> (A::Output, B::Output) {
    let mut first = std::pin::pin!(futures_util::future::maybe_done(first));
    let mut second = std::pin::pin!(futures_util::future::maybe_done(second));
    std::future::poll_fn(|cx| {
        let _ = first.as_mut().poll(cx);
        let _ = second.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
    futures_util::future::join(first.as_mut(), second.as_mut()).await;
    match (first.as_mut().take_output(), second.as_mut().take_output()) {
        (Some(a), Some(b)) => (a, b),
        _ => unreachable!("both are done once joined"),
    }
}

/// A driver error as a storage failure.
pub(crate) fn pg(err: tokio_postgres::Error) -> Error {
    match err.as_db_error() {
        Some(db) => Error::Storage(format!("{}: {}", db.code().code(), db.message())),
        None => Error::Storage(err.to_string()),
    }
}

/// A statement parameter of a query built at run time.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// An event appended by a write, inserted when the write commits (see the crate documentation).
struct Pending {
    stream: String,
    seq: i64,
    kind: palaver_core::event::EventKind,
    subject: String,
    data: String,
    at: i64,
    service: String,
}

/// One open transaction on a pooled connection. [`Tx::finish`] ends it; dropped unfinished (a cancelled
/// request), its connection is closed instead of going back to the pool, which rolls the transaction back.
///
/// Round trips are the cost here, so requests that need no answer before the next are pipelined (tokio-postgres
/// sends requests issued together in one go and reads their answers in order): `BEGIN` goes out with the
/// transaction's first statement, a write's event inserts and `COMMIT` go out together, and a read's `COMMIT`
/// is sent without waiting for its answer.
pub(crate) struct Tx {
    conn: Option<Object>,
    /// `BEGIN` is still to be sent (with the next statement).
    begin: AtomicBool,
    /// The `BEGIN` that starts this transaction.
    begin_sql: &'static str,
    /// Who the write acts for, recorded on its events.
    pub(crate) origin: Origin,
    /// The service recorded on its events.
    pub(crate) service: String,
    pending: Vec<Pending>,
    /// `Some` for writes: notified after the commit.
    changes: Option<Arc<tokio::sync::Notify>>,
    /// `Some` for writes: told the committed events.
    committed: Option<tokio::sync::broadcast::Sender<Arc<Vec<palaver_core::event::Event>>>>,
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(Object::take(conn));
        }
    }
}

impl Tx {
    fn conn(&self) -> &Object {
        self.conn.as_ref().expect("a transaction has its connection until it finishes")
    }

    async fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        self.conn().prepare_cached(sql).await.map_err(pg)
    }

    /// Runs `request` in the transaction: together with its `BEGIN` when that is not sent yet (one round trip
    /// for both: the requests are sent in order, the `BEGIN` first).
    async fn run<T>(
        &self,
        request: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        self.run_raw(request).await?.map_err(pg)
    }

    /// [`Tx::run`], handing back the request's own error (the outer one is the `BEGIN`'s).
    async fn run_raw<T>(
        &self,
        request: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    ) -> Result<std::result::Result<T, tokio_postgres::Error>> {
        if self.begin.swap(false, Ordering::AcqRel) {
            let (begun, answer) = in_order(self.conn().batch_execute(self.begin_sql), request).await;
            begun.map_err(pg)?;
            Ok(answer)
        } else {
            Ok(request.await)
        }
    }

    pub(crate) async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let statement = self.statement(sql).await?;
        self.run(self.conn().query(&statement, params)).await
    }

    pub(crate) async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        let statement = self.statement(sql).await?;
        self.run(self.conn().query_opt(&statement, params)).await
    }

    pub(crate) async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        let statement = self.statement(sql).await?;
        self.run(self.conn().query_one(&statement, params)).await
    }

    pub(crate) async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let statement = self.statement(sql).await?;
        self.run(self.conn().execute(&statement, params)).await
    }

    /// [`Tx::execute`], reporting a violation of the unique constraint `constraint` as `conflict`.
    pub(crate) async fn execute_unique(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        constraint: &str,
        conflict: impl FnOnce() -> Conflict,
    ) -> Result<u64> {
        let statement = self.statement(sql).await?;
        self.run_raw(self.conn().execute(&statement, params)).await?.map_err(|err| {
            let violated = err.as_db_error().is_some_and(|db| {
                *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION && db.constraint() == Some(constraint)
            });
            if violated { Error::Conflict(conflict()) } else { pg(err) }
        })
    }

    /// Takes `stream`'s next sequence number and buffers the event for the commit.
    pub(crate) async fn append_event(
        &mut self,
        stream: &str,
        kind: palaver_core::event::EventKind,
        subject: &str,
        data: String,
        at: time::OffsetDateTime,
    ) -> Result<i64> {
        let seq: i64 = self
            .query_one(
                "INSERT INTO streams(stream, last_seq) VALUES ($1, 1) \
                 ON CONFLICT (stream) DO UPDATE SET last_seq = streams.last_seq + 1 RETURNING last_seq",
                &[&stream],
            )
            .await?
            .get(0);
        self.pending.push(Pending {
            stream: stream.to_string(),
            seq,
            kind,
            subject: subject.to_string(),
            data,
            at: rows::ms(at),
            service: self.service.clone(),
        });
        Ok(seq)
    }

    /// Commits when `result` is `Ok` (inserting the buffered events in log order first), rolls back
    /// otherwise; returns `result`, or the commit's failure.
    pub(crate) async fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        let begun = !self.begin.load(Ordering::Acquire);
        let value = match result {
            Ok(value) => value,
            Err(err) => {
                let clean = !begun || self.conn().batch_execute("ROLLBACK").await.is_ok();
                if clean {
                    // Back to the pool in a clean state.
                    drop(self.conn.take());
                }
                return Err(err);
            }
        };
        if !begun {
            // Nothing was sent: nothing to end.
            drop(self.conn.take());
            return Ok(value);
        }
        if self.changes.is_none() {
            // A read: its `COMMIT` is sent now and answered to whoever uses the connection next (tokio-postgres
            // answers requests in order), so the read does not wait a round trip for it. A read-only commit
            // cannot fail in a way that matters: a broken connection is dropped by the pool.
            let _ = futures_util::FutureExt::now_or_never(self.conn().batch_execute("COMMIT"));
            drop(self.conn.take());
            return Ok(value);
        }
        let committed = self.commit().await;
        match committed {
            Ok(ids) => {
                drop(self.conn.take());
                if let Some(changes) = &self.changes {
                    changes.notify_one();
                }
                self.tell_committed(ids);
                Ok(value)
            }
            // The connection is discarded by `Drop`, which ends whatever is left of the transaction.
            Err(err) => Err(err),
        }
    }

    /// Commits, inserting the buffered events first; returns their log ids, in order. The log lock, the inserts
    /// and the `COMMIT` go out together: one round trip. Should the lock or an insert fail, the transaction is
    /// aborted and PostgreSQL answers the `COMMIT` by rolling back, so their own answers decide the outcome.
    async fn commit(&mut self) -> Result<Vec<i64>> {
        let commit_failed = |e: tokio_postgres::Error| Error::Storage(format!("commit failed: {e}"));
        if self.pending.is_empty() {
            self.conn().batch_execute("COMMIT").await.map_err(commit_failed)?;
            return Ok(Vec::new());
        }
        let lock = self.statement(LOG_LOCK).await?;
        let insert = self
            .statement(
                "INSERT INTO events(stream, seq, kind, subject, data, at, service_sid, source, client_identity, \
                 webhooks) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            )
            .await?;
        let conn = self.conn();
        let source = self.origin.source.as_str();
        let kinds: Vec<&str> = self.pending.iter().map(|e| e.kind.as_str()).collect();
        let params: Vec<[&(dyn ToSql + Sync); 10]> = self
            .pending
            .iter()
            .zip(&kinds)
            .map(|(e, kind)| -> [&(dyn ToSql + Sync); 10] {
                [
                    &e.stream,
                    &e.seq,
                    kind,
                    &e.subject,
                    &e.data,
                    &e.at,
                    &e.service,
                    &source,
                    &self.origin.client_identity,
                    &self.origin.webhooks,
                ]
            })
            .collect();
        let inserts = params.iter().map(|params| conn.query_one(&insert, params));
        let ((locked, rows), committed) = in_order(
            in_order(conn.execute(&lock, &[&LOCK_NAMESPACE]), futures_util::future::join_all(inserts)),
            conn.batch_execute("COMMIT"),
        )
        .await;
        locked.map_err(pg)?;
        let ids = rows
            .into_iter()
            .map(|row| row.and_then(|row| row.try_get::<_, i64>(0)).map_err(pg))
            .collect::<Result<Vec<i64>>>()?;
        committed.map_err(commit_failed)?;
        Ok(ids)
    }

    /// Hands the committed events to the cluster relay, when one listens.
    fn tell_committed(&mut self, ids: Vec<i64>) {
        let Some(committed) = &self.committed else { return };
        if ids.is_empty() || committed.receiver_count() == 0 {
            return;
        }
        let events = std::mem::take(&mut self.pending)
            .into_iter()
            .zip(ids)
            .map(|(e, id)| palaver_core::event::Event {
                id,
                data: serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null),
                stream: e.stream,
                seq: e.seq,
                kind: e.kind,
                subject: e.subject,
                at: palaver_core::clock::from_unix_millis(e.at),
                service_sid: e.service,
                origin: self.origin.clone(),
            })
            .collect();
        let _ = committed.send(Arc::new(events));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_size_is_taken_out_of_the_url() {
        let (config, size) = parse_url("postgres://u@db:5433/app?pool_max_conns=40&application_name=palaver").unwrap();
        assert_eq!(size, 40);
        assert_eq!(config.get_dbname(), Some("app"));
        assert_eq!(config.get_application_name(), Some("palaver"));
        assert_eq!(parse_url("postgres://u@db/app?pool_max_conns=2").unwrap().1, 2);
        assert_eq!(parse_url("postgres://u@db/app").unwrap().1, POOL_SIZE);
        for bad in ["0", "-1", "1001", "many", ""] {
            let err = parse_url(&format!("postgres://u:secret@db/app?pool_max_conns={bad}")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("pool_max_conns") && !text.contains("secret"), "{text}");
        }
        assert!(parse_url("postgres://u@db/app?no_such_parameter=1").is_err(), "others still go to tokio-postgres");
    }
}
