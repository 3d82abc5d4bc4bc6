//! The conformance suite (`palaver-store-tests`), every behaviour of it, against this store. Each test makes
//! its factory first: without `PALAVER_TEST_DATABASE_URL` that panics under CI and otherwise returns early
//! (see [`database_url`]), so a local run without a database skips them.

use crate::{PostgresFactory, database_url};

palaver_store_tests::store_conformance_tests!({
    let Some(url) = database_url() else { return };
    PostgresFactory::new(url)
});
