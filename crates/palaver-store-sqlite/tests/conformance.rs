//! The storage conformance suite (`palaver-store-tests`) against [`SqliteStore`]: one database file in its
//! own temporary directory per store.

use std::sync::Arc;

use async_trait::async_trait;
use palaver_core::store::Store;
use palaver_store_sqlite::SqliteStore;
use palaver_store_tests::{Locations, StoreFactory};

/// Makes each store in a temporary directory kept until the test ends.
#[derive(Default)]
struct SqliteFactory {
    dirs: Locations<tempfile::TempDir>,
}

impl SqliteFactory {
    fn open(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&dir.path().join("palaver.db")).expect("open the SQLite store"))
    }
}

#[async_trait]
impl StoreFactory for SqliteFactory {
    async fn fresh(&self) -> Arc<dyn Store> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Self::open(&dir);
        self.dirs.remember(&store, dir);
        store
    }

    async fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        let dir = self.dirs.take(&store);
        // Dropping the last handle stops the writer thread once its queue is done; every write was answered,
        // so nothing is left in it.
        drop(store);
        let reopened = Self::open(&dir);
        self.dirs.remember(&reopened, dir);
        reopened
    }
}

palaver_store_tests::store_conformance_tests!(SqliteFactory::default());
