//! Which table goes where, in which order, and how each SQLite value becomes a value of its PostgreSQL column.

use std::collections::HashMap;

use rusqlite::types::ValueRef;
use tokio_postgres::types::{ToSql, Type};

use crate::ImportError;
use crate::source::SourceTable;

/// Tables only the PostgreSQL schema has, left alone on purpose (see the crate documentation).
const TARGET_ONLY: &[&str] = &["schema_version"];

/// The copy order: parents before the rows that name them. The schemas declare no foreign keys (rows refer to
/// each other by id or SID, checked by the stores), so any order would load; this one would keep loading if a
/// migration declared some. Tables not listed (added by later migrations) follow in name order.
const ORDER: &[&str] = &[
    "account_config",
    "services",
    "roles",
    "users",
    "api_keys",
    "webhook_settings",
    "address_configurations",
    "conversations",
    "participants",
    "messages",
    "deleted_messages",
    "message_keys",
    "media",
    "delivery_receipts",
    "conversation_webhooks",
    "streams",
    "events",
    "webhook_cursor",
    "webhook_outbox",
];

/// A table of the PostgreSQL schema, as `information_schema` describes it.
#[derive(Debug)]
pub(crate) struct TargetTable {
    pub(crate) name: String,
    /// `(column, udt_name)` in the table's column order.
    pub(crate) columns: Vec<(String, String)>,
    /// `(column, sequence)` of each identity (or serial) column.
    pub(crate) identity: Vec<(String, String)>,
}

/// How one table is copied.
#[derive(Debug, Clone)]
pub(crate) struct TablePlan {
    pub(crate) name: String,
    pub(crate) columns: Vec<Column>,
    /// Rows in the source snapshot.
    pub(crate) rows: u64,
    /// `(column, sequence)` to move past the copied rows.
    pub(crate) identity: Vec<(String, String)>,
    /// SQLite's `AUTOINCREMENT` high-water mark for the table (0 if none): the sequence starts above it too.
    pub(crate) autoincrement: i64,
}

/// One column of a [`TablePlan`].
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    /// The PostgreSQL type, for the binary `COPY`.
    pub(crate) ty: Type,
}

/// The PostgreSQL column types the import can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Bytes,
}

impl Kind {
    /// The kind and type of a column by its `information_schema.columns.udt_name`.
    fn of(udt: &str) -> Option<(Kind, Type)> {
        Some(match udt {
            "bool" => (Kind::Bool, Type::BOOL),
            "int2" => (Kind::Int2, Type::INT2),
            "int4" => (Kind::Int4, Type::INT4),
            "int8" => (Kind::Int8, Type::INT8),
            "float4" => (Kind::Float4, Type::FLOAT4),
            "float8" => (Kind::Float8, Type::FLOAT8),
            "text" => (Kind::Text, Type::TEXT),
            "varchar" => (Kind::Text, Type::VARCHAR),
            "bpchar" => (Kind::Text, Type::BPCHAR),
            "bytea" => (Kind::Bytes, Type::BYTEA),
            _ => return None,
        })
    }
}

/// A value ready for its PostgreSQL column; `None` is NULL (typed, as the binary `COPY` checks each value's
/// type against its column's).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Bool(Option<bool>),
    Int2(Option<i16>),
    Int4(Option<i32>),
    Int8(Option<i64>),
    Float4(Option<f32>),
    Float8(Option<f64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl Cell {
    pub(crate) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Cell::Bool(v) => v,
            Cell::Int2(v) => v,
            Cell::Int4(v) => v,
            Cell::Int8(v) => v,
            Cell::Float4(v) => v,
            Cell::Float8(v) => v,
            Cell::Text(v) => v,
            Cell::Bytes(v) => v,
        }
    }
}

/// Converts a SQLite value for a column of `kind`: INTEGER 0/1 to boolean, INTEGER to the integer types
/// (checking the range), INTEGER or REAL to floating point, TEXT (valid UTF-8) to text, BLOB or TEXT to bytea,
/// NULL to NULL (PostgreSQL enforces NOT NULL). Anything else is an error naming the value: the SQLite store
/// never writes one, so it means a damaged or hand-edited file, and guessing would hide that.
pub(crate) fn convert(kind: Kind, value: ValueRef<'_>) -> Result<Cell, String> {
    let mismatch = |expected: &str| Err(format!("expected {expected}, found {}", describe(value)));
    Ok(match (kind, value) {
        (Kind::Bool, ValueRef::Null) => Cell::Bool(None),
        (Kind::Bool, ValueRef::Integer(0)) => Cell::Bool(Some(false)),
        (Kind::Bool, ValueRef::Integer(1)) => Cell::Bool(Some(true)),
        (Kind::Bool, _) => return mismatch("0 or 1 for a boolean"),
        (Kind::Int2, ValueRef::Null) => Cell::Int2(None),
        (Kind::Int2, ValueRef::Integer(i)) => match i16::try_from(i) {
            Ok(i) => Cell::Int2(Some(i)),
            Err(_) => return mismatch("a smallint"),
        },
        (Kind::Int4, ValueRef::Null) => Cell::Int4(None),
        (Kind::Int4, ValueRef::Integer(i)) => match i32::try_from(i) {
            Ok(i) => Cell::Int4(Some(i)),
            Err(_) => return mismatch("an integer"),
        },
        (Kind::Int8, ValueRef::Null) => Cell::Int8(None),
        (Kind::Int8, ValueRef::Integer(i)) => Cell::Int8(Some(i)),
        (Kind::Int2 | Kind::Int4 | Kind::Int8, _) => return mismatch("an integer"),
        (Kind::Float4, ValueRef::Null) => Cell::Float4(None),
        (Kind::Float4, ValueRef::Integer(i)) => Cell::Float4(Some(i as f32)),
        (Kind::Float4, ValueRef::Real(f)) => Cell::Float4(Some(f as f32)),
        (Kind::Float8, ValueRef::Null) => Cell::Float8(None),
        (Kind::Float8, ValueRef::Integer(i)) => Cell::Float8(Some(i as f64)),
        (Kind::Float8, ValueRef::Real(f)) => Cell::Float8(Some(f)),
        (Kind::Float4 | Kind::Float8, _) => return mismatch("a number"),
        (Kind::Text, ValueRef::Null) => Cell::Text(None),
        (Kind::Text, ValueRef::Text(bytes)) => match std::str::from_utf8(bytes) {
            Ok(text) => Cell::Text(Some(text.to_string())),
            Err(_) => return mismatch("UTF-8 text"),
        },
        (Kind::Text, _) => return mismatch("text"),
        (Kind::Bytes, ValueRef::Null) => Cell::Bytes(None),
        (Kind::Bytes, ValueRef::Blob(bytes) | ValueRef::Text(bytes)) => Cell::Bytes(Some(bytes.to_vec())),
        (Kind::Bytes, _) => return mismatch("a blob"),
    })
}

/// A SQLite value for an error message.
fn describe(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => format!("the integer {i}"),
        ValueRef::Real(f) => format!("the real {f}"),
        ValueRef::Text(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let short: String = text.chars().take(40).collect();
            let more = if short.len() < text.len() { "…" } else { "" };
            format!("the text {short:?}{more}")
        }
        ValueRef::Blob(bytes) => format!("a blob of {} bytes", bytes.len()),
    }
}

/// Matches the embedded database's tables with the target's, by name, and orders them for the copy.
///
/// # Errors
/// [`ImportError::Schema`] listing every table or column one side lacks and every column type the import
/// cannot fill.
pub(crate) fn plan(source: &[SourceTable], target: &[TargetTable]) -> Result<Vec<TablePlan>, ImportError> {
    let sources: HashMap<&str, &SourceTable> = source.iter().map(|t| (t.name.as_str(), t)).collect();
    let targets: HashMap<&str, &TargetTable> = target.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut problems = Vec::new();
    for table in source {
        if !targets.contains_key(table.name.as_str()) {
            problems.push(format!(
                "table {} is only in the embedded database (it was written by a newer Palaver than this one)",
                table.name
            ));
        }
    }
    let mut plans = Vec::new();
    for table in target.iter().filter(|t| !TARGET_ONLY.contains(&t.name.as_str())) {
        let Some(from) = sources.get(table.name.as_str()) else {
            problems.push(format!(
                "table {} is missing from the embedded database (upgrade it first: `palaver migrate --data-dir …`)",
                table.name
            ));
            continue;
        };
        for column in &from.columns {
            if !table.columns.iter().any(|(name, _)| name == column) {
                problems.push(format!("column {}.{column} is only in the embedded database", table.name));
            }
        }
        let mut columns = Vec::new();
        for (name, udt) in &table.columns {
            if !from.columns.contains(name) {
                problems.push(format!(
                    "column {}.{name} is missing from the embedded database (upgrade it first: `palaver migrate \
                     --data-dir …`)",
                    table.name
                ));
            }
            match Kind::of(udt) {
                Some((kind, ty)) => columns.push(Column { name: name.clone(), kind, ty }),
                None => problems.push(format!("column {}.{name} has a type the import cannot fill: {udt}", table.name)),
            }
        }
        plans.push(TablePlan {
            name: table.name.clone(),
            columns,
            rows: from.rows,
            identity: table.identity.clone(),
            autoincrement: from.autoincrement,
        });
    }
    if !problems.is_empty() {
        return Err(ImportError::Schema(problems.join("; ")));
    }
    let rank = |name: &str| ORDER.iter().position(|t| *t == name).unwrap_or(ORDER.len());
    plans.sort_by(|a, b| (rank(&a.name), &a.name).cmp(&(rank(&b.name), &b.name)));
    Ok(plans)
}

/// `name` as a quoted SQL identifier (valid in both SQLite and PostgreSQL).
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_to_their_column_types_or_fail_with_the_value() {
        let check = |kind, value, expected: Result<Cell, &str>| {
            assert_eq!(convert(kind, value), expected.map_err(str::to_string), "{kind:?} {value:?}");
        };
        check(Kind::Bool, ValueRef::Integer(1), Ok(Cell::Bool(Some(true))));
        check(Kind::Bool, ValueRef::Integer(0), Ok(Cell::Bool(Some(false))));
        check(Kind::Bool, ValueRef::Null, Ok(Cell::Bool(None)));
        check(Kind::Bool, ValueRef::Integer(2), Err("expected 0 or 1 for a boolean, found the integer 2"));
        check(Kind::Int8, ValueRef::Integer(1_700_000_000_000), Ok(Cell::Int8(Some(1_700_000_000_000))));
        check(Kind::Int4, ValueRef::Integer(1 << 40), Err("expected an integer, found the integer 1099511627776"));
        check(Kind::Int8, ValueRef::Text(b"12"), Err("expected an integer, found the text \"12\""));
        check(Kind::Float8, ValueRef::Integer(3), Ok(Cell::Float8(Some(3.0))));
        check(Kind::Text, ValueRef::Text("héllo".as_bytes()), Ok(Cell::Text(Some("héllo".into()))));
        check(Kind::Text, ValueRef::Text(b"\xff"), Err("expected UTF-8 text, found the text \"\u{fffd}\""));
        check(Kind::Text, ValueRef::Blob(b"ab"), Err("expected text, found a blob of 2 bytes"));
        check(Kind::Bytes, ValueRef::Blob(b"ab"), Ok(Cell::Bytes(Some(b"ab".to_vec()))));
    }

    fn source(name: &str, columns: &[&str]) -> SourceTable {
        SourceTable {
            name: name.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: 3,
            autoincrement: 0,
        }
    }

    fn target(name: &str, columns: &[(&str, &str)]) -> TargetTable {
        TargetTable {
            name: name.into(),
            columns: columns.iter().map(|(c, t)| (c.to_string(), t.to_string())).collect(),
            identity: Vec::new(),
        }
    }

    #[test]
    fn tables_are_matched_by_name_in_parent_first_order_leaving_out_the_migration_table() {
        let plans = plan(
            &[source("messages", &["idx"]), source("zebra", &["id"]), source("conversations", &["id", "sid"])],
            &[
                target("zebra", &[("id", "int8")]),
                target("schema_version", &[("version", "int8")]),
                target("messages", &[("idx", "int8")]),
                target("conversations", &[("id", "int8"), ("sid", "text")]),
            ],
        )
        .unwrap();
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["conversations", "messages", "zebra"]);
        assert_eq!(plans[0].columns[1].kind, Kind::Text);
    }

    #[test]
    fn every_difference_between_the_schemas_is_reported() {
        let err = plan(
            &[source("old", &["id"]), source("users", &["id", "legacy"])],
            &[target("users", &[("id", "int8"), ("fresh", "jsonb")]), target("media", &[("id", "int8")])],
        )
        .unwrap_err()
        .to_string();
        for part in [
            "table old is only in the embedded database",
            "column users.legacy is only in the embedded database",
            "column users.fresh is missing from the embedded database",
            "column users.fresh has a type the import cannot fill: jsonb",
            "table media is missing from the embedded database",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
    }
}
