//! Tests of [`PostgresStore`] against a real PostgreSQL named by `PALAVER_TEST_DATABASE_URL`, each store in a
//! fresh schema of its own. Without the URL they fail when `CI` is set and are skipped (with a note) locally.

mod concurrency;
mod conformance;

use std::sync::Arc;

use async_trait::async_trait;
use palaver_core::store::Store;
use palaver_store_postgres::PostgresStore;
use palaver_store_tests::{Locations, StoreFactory};

/// The database the tests use, or `None` to skip them (only outside CI).
pub(crate) fn database_url() -> Option<String> {
    match std::env::var("PALAVER_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("PALAVER_TEST_DATABASE_URL is not set: CI must run the PostgreSQL store's tests against a database")
        }
        _ => {
            eprintln!("skipped: set PALAVER_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run");
            None
        }
    }
}

/// A schema name no other test uses: `t_<unix seconds>_<random hex>`, so that later runs can tell old ones.
pub(crate) fn fresh_schema() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("random bytes");
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("t_{secs}_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// How old a test schema must be before a later run drops it (runs in parallel keep theirs).
const STALE_SCHEMA_SECS: u64 = 3600;

/// Drops the test schemas earlier runs left behind (older than [`STALE_SCHEMA_SECS`], or of the older naming
/// without a time), once per test process, so the shared test database does not fill up.
async fn sweep_stale_schemas(url: &str) {
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT
        .get_or_init(|| async {
            let Ok((client, connection)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await else { return };
            let connection = tokio::spawn(connection);
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let rows = client
                .query("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 't\\_%'", &[])
                .await
                .unwrap_or_default();
            for row in rows {
                let name: String = row.get(0);
                let created = name.split('_').nth(1).and_then(|s| s.parse::<u64>().ok());
                let stale = created.is_none_or(|at| now.saturating_sub(at) > STALE_SCHEMA_SECS);
                let safe = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if stale && safe {
                    let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await;
                }
            }
            drop(client);
            let _ = connection.await;
        })
        .await;
}

/// Makes each store in a fresh schema; reopening finds the schema again by the store's handle.
pub(crate) struct PostgresFactory {
    url: String,
    schemas: Locations<String>,
}

impl PostgresFactory {
    pub(crate) fn new(url: String) -> Self {
        Self { url, schemas: Locations::default() }
    }

    /// Another node on the same data as `store`: a second pool, as another process would have.
    pub(crate) async fn second_node(&self, schema: &str) -> PostgresStore {
        PostgresStore::open_in_schema(&self.url, schema).await.expect("open a second node")
    }

    /// A fresh store and its schema.
    pub(crate) async fn fresh_with_schema(&self) -> (PostgresStore, String) {
        sweep_stale_schemas(&self.url).await;
        let schema = fresh_schema();
        let store = PostgresStore::open_in_schema(&self.url, &schema).await.expect("open the PostgreSQL store");
        (store, schema)
    }
}

#[async_trait]
impl StoreFactory for PostgresFactory {
    async fn fresh(&self) -> Arc<dyn Store> {
        let (store, schema) = self.fresh_with_schema().await;
        let store: Arc<dyn Store> = Arc::new(store);
        self.schemas.remember(&store, schema);
        store
    }

    async fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        let schema = self.schemas.take(&store);
        drop(store);
        let reopened: Arc<dyn Store> =
            Arc::new(PostgresStore::open_in_schema(&self.url, &schema).await.expect("reopen the PostgreSQL store"));
        self.schemas.remember(&reopened, schema);
        reopened
    }
}
