//! Helpers shared by the fuzz targets: JSON values built from fuzzer bytes, and JSON comparison that allows
//! for serde_json's float parsing.

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use serde_json::{Map, Value};

/// A JSON value of at most `depth` levels of nesting, built from the fuzzer's bytes.
///
/// # Errors
/// When the bytes run out in the middle of a value.
pub fn json_value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let kinds = if depth == 0 { 5 } else { 7 };
    Ok(match u.choose_index(kinds)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        // Non-finite floats have no JSON form: `Value::from` makes them null, as serde_json would print them.
        3 => Value::from(u.arbitrary::<f64>()?),
        4 => Value::String(u.arbitrary()?),
        5 => {
            let len = u.int_in_range(0..=4)?;
            Value::Array((0..len).map(|_| json_value(u, depth - 1)).collect::<Result<_>>()?)
        }
        _ => {
            let len = u.int_in_range(0..=4)?;
            let mut map = Map::new();
            for _ in 0..len {
                map.insert(u.arbitrary()?, json_value(u, depth - 1)?);
            }
            Value::Object(map)
        }
    })
}

/// Whether two JSON values are equal, floats allowed to differ in their last bits: serde_json reads decimal
/// floats to within a unit in the last place unless its `float_roundtrip` feature is on, so a float that
/// travels through JSON text may come back a hair off. Everything else must match exactly.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= float_slack(x.abs().max(y.abs())),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// How far a float of magnitude `magnitude` may move through JSON text: a few units in the last place, and for
/// subnormal numbers, which have fewer bits, a few dozen of the smallest ones.
fn float_slack(magnitude: f64) -> f64 {
    let unit = f64::EPSILON;
    (4.0 * unit * magnitude).max(64.0 * unit * f64::MIN_POSITIVE)
}

/// Whether two serialisable values have the same JSON form, as [`same_json`] compares it.
pub fn same_as_json<T: serde::Serialize>(a: &T, b: &T) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => same_json(&a, &b),
        _ => false,
    }
}
