//! Small conversions from wire values to SDK values. None of them fail: bad server data degrades to a
//! default instead of an error or a panic, as the semantics of Twilio's SDK require for attributes.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parses an RFC 3339 timestamp; `None` when absent or malformed.
pub(crate) fn parse_date(raw: Option<&str>) -> Option<OffsetDateTime> {
    raw.and_then(|raw| OffsetDateTime::parse(raw, &Rfc3339).ok())
}

/// Parses JSON attributes sent as text; malformed or empty text becomes `{}`.
pub(crate) fn parse_attributes(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::Object(Default::default()))
}

/// Serialises attributes for the wire.
pub(crate) fn attributes_text(value: &Value) -> String {
    value.to_string()
}

/// A fresh random key (32 hex digits) for idempotent sends.
pub(crate) fn random_key() -> String {
    palaver_api::sid::MessageSid::generate().as_str()[2..].to_string()
}

/// A random number for jitter, without pulling in a random-number crate.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_attributes_become_an_empty_object() {
        assert_eq!(parse_attributes("{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(parse_attributes("not json"), serde_json::json!({}));
        assert_eq!(parse_attributes(""), serde_json::json!({}));
        assert_eq!(parse_attributes("null"), Value::Null);
    }

    #[test]
    fn dates_parse_or_vanish() {
        assert!(parse_date(Some("2026-01-02T03:04:05Z")).is_some());
        assert!(parse_date(Some("yesterday")).is_none());
        assert!(parse_date(None).is_none());
    }
}
