//! Why `palaver backup` steps through SQLite's online backup API rather than running `VACUUM INTO`: both copy one
//! consistent snapshot beside a writer, so this measures what matters to a running server, how long each copy
//! takes and how slow the writer's commits get meanwhile. Not part of the suite (it takes a minute and only
//! prints); run it by hand:
//!
//! ```text
//! cargo test -p palaver-backup --test methods -- --ignored --nocapture
//! ```

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Rows of the measured database (about the size of 200 000 short messages with their index).
const ROWS: i64 = 200_000;

fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn
}

fn populate(path: &Path) {
    let mut conn = open(path);
    conn.execute_batch(
        "CREATE TABLE messages(id INTEGER PRIMARY KEY, conversation INTEGER, idx INTEGER, sid TEXT, body TEXT, \
         attributes TEXT, date_created INTEGER); CREATE UNIQUE INDEX by_index ON messages(conversation, idx); \
         CREATE UNIQUE INDEX by_sid ON messages(sid);",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx.prepare("INSERT INTO messages(conversation, idx, sid, body, attributes, date_created) VALUES (?1, ?2, ?3, ?4, '{}', ?5)").unwrap();
        for i in 0..ROWS {
            let body = format!("message {i} with a body of ordinary length, about what people type in a chat");
            insert.execute(rusqlite::params![i % 1000, i / 1000, format!("IM{i:032x}"), body, i]).unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Commits one small insert after another until `stop`; returns (commits, slowest commit).
fn write_until(path: &Path, stop: &AtomicBool) -> (u64, Duration) {
    let conn = open(path);
    let mut insert =
        conn.prepare("INSERT INTO messages(conversation, idx, sid, body, attributes, date_created) VALUES (?1, ?2, ?3, 'new', '{}', 0)").unwrap();
    let base: i64 = conn.query_row("SELECT MAX(id) FROM messages", [], |r| r.get(0)).unwrap();
    let (mut commits, mut slowest) = (0u64, Duration::ZERO);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let n = base + 1 + commits as i64;
        insert.execute(rusqlite::params![5000 + n % 10, n, format!("IM{n:032x}")]).unwrap();
        slowest = slowest.max(started.elapsed());
        commits += 1;
    }
    (commits, slowest)
}

/// Runs `copy` while a writer commits; prints how long it took and what the writer saw.
fn measure(name: &str, database: &Path, copy: impl FnOnce()) {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, stop) = (database.to_path_buf(), stop.clone());
        std::thread::spawn(move || write_until(&path, &stop))
    };
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    copy();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (commits, slowest) = writer.join().unwrap();
    eprintln!("{name:>14}: {took:>10.2?}; writer: {commits} commits in all, slowest {slowest:.2?}");
}

#[test]
#[ignore = "a measurement, run by hand"]
fn backup_methods() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("db.sqlite3");
    populate(&database);
    eprintln!("database: {} bytes", std::fs::metadata(&database).unwrap().len());
    measure("no copy", &database, || std::thread::sleep(Duration::from_secs(1)));
    let stepped = dir.path().join("stepped.sqlite3");
    measure("stepped backup", &database, || {
        let summary = palaver_backup::backup(&database, &stepped, &mut palaver_backup::NoProgress).unwrap();
        eprintln!("  (of which the copy: {:.2?}; then the integrity check and flush)", summary.copy_time);
    });
    let vacuumed = dir.path().join("vacuumed.sqlite3");
    measure("VACUUM INTO", &database, || {
        let conn = Connection::open(&database).unwrap();
        conn.execute("VACUUM INTO ?1", [vacuumed.to_str().unwrap()]).unwrap();
    });
    for copy in [&stepped, &vacuumed] {
        let conn = Connection::open(copy).unwrap();
        let verdict: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0)).unwrap();
        assert_eq!(verdict, "ok");
        assert!(rows >= ROWS);
        eprintln!("{}: {} bytes", copy.display(), std::fs::metadata(copy).unwrap().len());
    }
}
