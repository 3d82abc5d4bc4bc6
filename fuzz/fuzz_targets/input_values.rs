//! The validated inputs every API reaches the domain through: attributes (JSON text within a byte limit),
//! identities, friendly and unique names, addresses, notification levels and ISO-8601 timer durations. Each
//! either refuses the text with an `InvalidInput` naming the field, or keeps exactly what its rules say; an
//! accepted duration prints in a canonical form that parses back to the same number of seconds.
//!
//! Input: one byte choosing the check, then the text (so seeds can be written by hand).

#![no_main]

use libfuzzer_sys::fuzz_target;
use palaver_api::sid::{ConversationSid, has_sid_shape};
use palaver_core::input::{
    Address, Attributes, FriendlyName, Identity, MAX_ATTRIBUTE_DEPTH, MAX_CONVERSATION_ATTRIBUTES_BYTES,
    MAX_FRIENDLY_NAME_CHARS, MAX_IDENTIFIER_CHARS, MAX_SMALL_ATTRIBUTES_BYTES, NotificationLevel, TimerDuration,
    UniqueName,
};

fn attributes(raw: &str, limit: usize) {
    let json = serde_json::from_str::<serde::de::IgnoredAny>(raw).is_ok();
    let within_depth = nesting(raw) <= MAX_ATTRIBUTE_DEPTH;
    match Attributes::parse("Attributes", raw, limit) {
        Ok(attributes) => {
            assert!(raw.len() <= limit);
            assert_eq!(attributes.as_str(), raw, "attributes are kept as sent");
            assert!(json && within_depth, "accepted attributes are JSON within the depth limit");
        }
        Err(err) => {
            assert_eq!(err.field, "Attributes");
            assert!(raw.len() > limit || !json || !within_depth, "{raw:?} refused");
        }
    }
}

/// How deep a JSON text nests (an array or object is one level), counting brackets outside strings.
fn nesting(raw: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for c in raw.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (true, false, _) => {}
            (false, _, '"') => in_string = true,
            (false, _, '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, _, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Durations as the REST API reads `Timers.Inactive` and `Timers.Closed`, with and without the minimums; or,
/// for a plain number, that many seconds printed and parsed again.
fn duration(raw: &str, minimum: i64) {
    // A number of seconds instead: every storable duration prints in a form that parses back to it.
    if let Some(secs) = raw.parse::<i64>().ok().filter(|s| (1..=TimerDuration::MAX_SECS).contains(s)) {
        let canonical = TimerDuration::from_secs(secs).to_iso8601();
        let again = TimerDuration::parse("Timers.Inactive", &canonical, 1)
            .unwrap_or_else(|e| panic!("{secs}s prints as {canonical:?}, which does not parse: {e}"));
        assert_eq!(again.as_secs(), secs, "{canonical}");
    }
    let Ok(duration) = TimerDuration::parse("Timers.Inactive", raw, minimum) else { return };
    let secs = duration.as_secs();
    assert!(secs > 0 && secs >= minimum && secs <= TimerDuration::MAX_SECS, "{raw:?} is {secs}s");
    let canonical = duration.to_iso8601();
    let again = TimerDuration::parse("Timers.Inactive", &canonical, 1)
        .unwrap_or_else(|e| panic!("{raw:?} prints as {canonical:?}, which does not parse: {e}"));
    assert_eq!(again, duration, "{raw:?} prints as {canonical:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, text)) = data.split_first() else { return };
    let Ok(raw) = std::str::from_utf8(text) else { return };
    let chars = raw.chars().count();
    match choice % 10 {
        0 => attributes(raw, MAX_SMALL_ATTRIBUTES_BYTES),
        1 => attributes(raw, MAX_CONVERSATION_ATTRIBUTES_BYTES),
        2 => match Identity::parse("Identity", raw) {
            Ok(identity) => {
                assert!((1..=MAX_IDENTIFIER_CHARS).contains(&chars));
                assert_eq!(identity.as_str(), raw);
            }
            Err(err) => {
                assert_eq!(err.field, "Identity");
                assert!(raw.is_empty() || chars > MAX_IDENTIFIER_CHARS, "{raw:?} refused");
            }
        },
        3 => match FriendlyName::parse("FriendlyName", raw) {
            Ok(name) => assert_eq!(name.as_str(), raw),
            Err(_) => assert!(chars > MAX_FRIENDLY_NAME_CHARS, "{raw:?} refused"),
        },
        4 => match UniqueName::parse(raw) {
            Ok(name) => {
                assert!((1..=MAX_IDENTIFIER_CHARS).contains(&chars));
                assert!(!has_sid_shape(raw, ConversationSid::PREFIX), "{raw:?} could be taken for a SID");
                assert_eq!(name.as_str(), raw);
            }
            Err(_) => {
                let sid_like = has_sid_shape(raw, ConversationSid::PREFIX);
                assert!(raw.is_empty() || chars > MAX_IDENTIFIER_CHARS || sid_like, "{raw:?} refused");
            }
        },
        5 => match Address::parse("Address", raw) {
            Ok(address) => {
                assert_eq!(address.as_str(), raw.trim());
                assert!(!address.as_str().is_empty());
            }
            Err(_) => {
                let trimmed = raw.trim();
                assert!(trimmed.is_empty() || trimmed.chars().count() > MAX_IDENTIFIER_CHARS, "{raw:?} refused");
            }
        },
        6 => {
            if let Ok(level) = NotificationLevel::parse(raw) {
                assert_eq!(level.as_str(), raw);
            }
        }
        7 => duration(raw, 1),
        8 => duration(raw, 60),
        _ => duration(raw, 600),
    }
});
