//! The PostgreSQL side: one connection, one transaction for everything (check, copy, sequences, checks).

use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use crate::plan::{Cell, TablePlan, TargetTable, quote};
use crate::source::{Chunk, Source, SourceTable};
use crate::{ImportError, Progress, Summary, TableProgress};

/// Chunks in flight between the reading thread and the copy.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Connects to `url` (already migrated) and copies `source` into it, all or nothing.
pub(crate) async fn run(
    source: Source,
    tables: &[SourceTable],
    url: &str,
    progress: &mut dyn Progress,
) -> Result<Summary, ImportError> {
    let config = palaver_store_postgres::PostgresStore::connection_config(url)
        .map_err(|e| ImportError::Target(e.to_string()))?;
    let (client, connection) = config.connect(NoTls).await.map_err(|e| pg("connecting", &e))?;
    let driver = tokio::spawn(connection);
    let result = copy_all(&client, source, tables, progress).await;
    if result.is_err() {
        // Closing the connection would roll back as well; this says so to the server at once.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    progress.finish();
    drop(client);
    let _ = driver.await;
    result
}

async fn copy_all(
    client: &Client,
    source: Source,
    tables: &[SourceTable],
    progress: &mut dyn Progress,
) -> Result<Summary, ImportError> {
    client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED").await.map_err(|e| pg("beginning", &e))?;
    let target = describe(client).await?;
    let plans = crate::plan::plan(tables, &target)?;
    // Readers may go on; writers (a node starting, or one that should not be running) wait for the import.
    let names: Vec<String> = target.iter().map(|t| quote(&t.name)).collect();
    client
        .batch_execute(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", names.join(", ")))
        .await
        .map_err(|e| pg("locking the tables", &e))?;
    for table in ensure_empty(client, &plans).await? {
        client.batch_execute(&format!("DELETE FROM {}", quote(&table))).await.map_err(|e| pg(&table, &e))?;
    }

    let summary: Vec<TableProgress> =
        plans.iter().map(|p| TableProgress { name: p.name.clone(), rows: p.rows }).collect();
    progress.start(&summary);
    let (chunks, mut received) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let reader = {
        let plans = plans.clone();
        std::thread::Builder::new()
            .name("palaver-import-read".into())
            .spawn(move || source.stream(&plans, &chunks))
            .map_err(|e| ImportError::Target(format!("cannot start the reading thread: {e}")))?
    };
    for (i, plan) in plans.iter().enumerate() {
        copy_table(client, i, plan, &mut received, progress).await?;
    }
    drop(received);
    let _ = reader.join();

    progress.step("moving the id sequences past the copied rows");
    restart_sequences(client, &plans).await?;
    progress.step("checking indices and sequence numbers");
    check_counters(client, &plans).await?;
    progress.step("committing");
    client.batch_execute("COMMIT").await.map_err(|e| pg("committing", &e))?;
    Ok(Summary { rows: summary.iter().map(|t| t.rows).sum(), tables: summary })
}

/// Every table of the current schema with its columns and identity sequences.
async fn describe(client: &Client) -> Result<Vec<TargetTable>, ImportError> {
    let rows = client
        .query(
            "SELECT c.table_name::text, c.column_name::text, c.udt_name::text, \
                    CASE WHEN c.is_identity = 'YES' OR c.column_default LIKE 'nextval(%' THEN \
                      pg_get_serial_sequence(quote_ident(c.table_schema) || '.' || quote_ident(c.table_name), \
                                             c.column_name) END \
             FROM information_schema.columns c \
             JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
             ORDER BY c.table_name, c.ordinal_position",
            &[],
        )
        .await
        .map_err(|e| pg("reading the schema", &e))?;
    let mut tables: Vec<TargetTable> = Vec::new();
    for row in rows {
        let (table, column, udt): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let sequence: Option<String> = row.get(3);
        if tables.last().is_none_or(|t| t.name != table) {
            tables.push(TargetTable { name: table, columns: Vec::new(), identity: Vec::new() });
        }
        let last = tables.last_mut().expect("pushed above");
        if let Some(sequence) = sequence {
            last.identity.push((column.clone(), sequence));
        }
        last.columns.push((column, udt));
    }
    if tables.is_empty() {
        return Err(ImportError::Target("the migrated schema has no tables (is the search_path right?)".into()));
    }
    Ok(tables)
}

/// Refuses a target with data; returns the tables holding only what a migration and a node's first start
/// write, to be cleared before the copy: the account configuration, the default service with its roles
/// (bootstrap), the webhook and push cursors at zero (migration).
async fn ensure_empty(client: &Client, plans: &[TablePlan]) -> Result<Vec<String>, ImportError> {
    let mut held = Vec::new();
    let mut clear = Vec::new();
    for plan in plans {
        let rows = count(client, &format!("SELECT COUNT(*) FROM {}", quote(&plan.name))).await?;
        if rows == 0 {
            continue;
        }
        let expected = match plan.name.as_str() {
            "webhook_cursor" => count(client, "SELECT COUNT(*) FROM webhook_cursor WHERE log_id <> 0").await? == 0,
            "push_cursor" => count(client, "SELECT COUNT(*) FROM push_cursor WHERE log_id <> 0").await? == 0,
            "account_config" => true,
            "services" | "roles" => {
                let column = if plan.name == "services" { "sid" } else { "service_sid" };
                let others = format!(
                    "SELECT COUNT(*) FROM {} WHERE {column} IS DISTINCT FROM \
                     (SELECT default_service_sid FROM account_config WHERE id = 1)",
                    plan.name
                );
                count(client, &others).await? == 0
            }
            _ => false,
        };
        if expected {
            clear.push(plan.name.clone());
        } else {
            held.push((plan.name.clone(), rows));
        }
    }
    if held.is_empty() { Ok(clear) } else { Err(ImportError::TargetNotEmpty(held)) }
}

/// Copies one table's rows as the reading thread sends them.
async fn copy_table(
    client: &Client,
    index: usize,
    plan: &TablePlan,
    chunks: &mut mpsc::Receiver<Result<Chunk, ImportError>>,
    progress: &mut dyn Progress,
) -> Result<(), ImportError> {
    let columns: Vec<String> = plan.columns.iter().map(|c| quote(&c.name)).collect();
    let sql = format!("COPY {} ({}) FROM STDIN (FORMAT binary)", quote(&plan.name), columns.join(", "));
    let sink = client.copy_in(&sql).await.map_err(|e| pg(&plan.name, &e))?;
    let types: Vec<Type> = plan.columns.iter().map(|c| c.ty.clone()).collect();
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    let mut copied = 0u64;
    progress.advance(index, 0);
    loop {
        match chunks.recv().await {
            Some(Ok(Chunk::Rows(rows))) => {
                for row in &rows {
                    let values: Vec<&(dyn ToSql + Sync)> = row.iter().map(Cell::as_sql).collect();
                    writer.as_mut().write(&values).await.map_err(|e| pg(&plan.name, &e))?;
                }
                copied += rows.len() as u64;
                progress.advance(index, copied);
            }
            Some(Ok(Chunk::End)) => break,
            Some(Err(err)) => return Err(err),
            None => return Err(ImportError::Target("the thread reading the embedded database stopped".into())),
        }
    }
    let written = writer.finish().await.map_err(|e| pg(&plan.name, &e))?;
    if written != plan.rows {
        return Err(ImportError::Check(format!("{}: {} rows counted, {written} copied", plan.name, plan.rows)));
    }
    Ok(())
}

/// Moves each identity sequence past the highest copied id and SQLite's `AUTOINCREMENT` mark, so that no id
/// (row ids, the global log id) is handed out twice.
async fn restart_sequences(client: &Client, plans: &[TablePlan]) -> Result<(), ImportError> {
    for plan in plans {
        for (column, sequence) in &plan.identity {
            let sql = format!("SELECT COALESCE(MAX({}), 0)::int8 FROM {}", quote(column), quote(&plan.name));
            let highest = count(client, &sql).await?.max(plan.autoincrement);
            // `setval(s, n, true)` hands out n + 1 next; an empty table starts at 1.
            let (value, called) = if highest > 0 { (highest, true) } else { (1, false) };
            client
                .execute("SELECT setval($1::text::regclass, $2, $3)", &[sequence, &value, &called])
                .await
                .map_err(|e| pg(sequence, &e))?;
        }
    }
    Ok(())
}

/// The counters of the copied data against the rows they number: a row at or above its counter would be
/// handed out again by the next write.
async fn check_counters(client: &Client, plans: &[TablePlan]) -> Result<(), ImportError> {
    let has = |names: &[&str]| names.iter().all(|n| plans.iter().any(|p| p.name == *n));
    let mut checks = Vec::new();
    if has(&["conversations", "messages"]) {
        checks.push((
            "messages with an index at or above their conversation's next_message_index",
            "SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.idx >= c.next_message_index",
        ));
    }
    if has(&["streams", "events"]) {
        checks.push((
            "events with a sequence number above their stream's last_seq",
            "SELECT COUNT(*) FROM events e LEFT JOIN streams s ON s.stream = e.stream \
             WHERE s.stream IS NULL OR e.seq > s.last_seq",
        ));
    }
    for (what, sql) in checks {
        let wrong = count(client, sql).await?;
        if wrong > 0 {
            return Err(ImportError::Check(format!("{wrong} {what}")));
        }
    }
    Ok(())
}

async fn count(client: &Client, sql: &str) -> Result<i64, ImportError> {
    Ok(client.query_one(sql, &[]).await.map_err(|e| pg(sql, &e))?.get(0))
}

/// A driver error, with what was being done.
fn pg(doing: &str, err: &tokio_postgres::Error) -> ImportError {
    match err.as_db_error() {
        Some(db) => {
            let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
            ImportError::Target(format!("{doing}: {}: {}{detail}", db.code().code(), db.message()))
        }
        None => ImportError::Target(format!("{doing}: {err}")),
    }
}
