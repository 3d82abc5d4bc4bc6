//! Validated input values. Each is built only by `parse`, so an operation that takes one never re-checks it.
//! Limits follow Twilio's documented ones.

use std::fmt;

use palaver_api::sid::{ConversationSid, has_sid_shape};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{InvalidInput, InvalidKind};

/// Longest friendly name, in characters.
pub const MAX_FRIENDLY_NAME_CHARS: usize = 256;
/// Longest identity, address or unique name, in characters.
pub const MAX_IDENTIFIER_CHARS: usize = 256;
/// Largest conversation attributes, in bytes.
pub const MAX_CONVERSATION_ATTRIBUTES_BYTES: usize = 16 * 1024;
/// Largest message, participant or user attributes, in bytes.
pub const MAX_SMALL_ATTRIBUTES_BYTES: usize = 4 * 1024;
/// Longest chat message body, in bytes.
pub const MAX_CHAT_BODY_BYTES: usize = 32 * 1024;
/// Longest body that can be sent to SMS or WhatsApp participants, in characters.
pub const MAX_SMS_BODY_CHARS: usize = 1600;
/// Longest email subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 256;
/// Participants per conversation.
pub const MAX_PARTICIPANTS: usize = 1000;
/// Non-chat participants per conversation.
pub const MAX_NON_CHAT_PARTICIPANTS: usize = 50;
/// Participants in one ConversationWithParticipants request.
pub const MAX_PARTICIPANTS_PER_REQUEST: usize = 10;

/// How deeply attribute JSON may nest arrays and objects. Applications keep flat data there; deeper documents
/// only cost stack and time wherever attributes are parsed (webhooks, events, SDKs).
pub const MAX_ATTRIBUTE_DEPTH: usize = 32;

/// JSON text stored as given (the API echoes attributes back as the same string), checked to be valid JSON
/// and within size and nesting limits.
#[derive(Clone, PartialEq, Eq)]
pub struct Attributes(String);

impl Attributes {
    /// Validates `raw` as JSON of at most `max_bytes`; `field` names the parameter in the error.
    ///
    /// # Errors
    /// When `raw` is too large or not JSON.
    pub fn parse(field: &'static str, raw: &str, max_bytes: usize) -> Result<Self, InvalidInput> {
        if raw.len() > max_bytes {
            return Err(InvalidInput::new(
                field,
                format!("{} bytes is more than the limit of {max_bytes} bytes", raw.len()),
            ));
        }
        let depth = json_depth(raw);
        if depth > MAX_ATTRIBUTE_DEPTH {
            return Err(InvalidInput::new(
                field,
                format!("nests {depth} levels deep, more than the limit of {MAX_ATTRIBUTE_DEPTH}"),
            ));
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(raw).is_err() {
            return Err(InvalidInput::new(field, "must be valid JSON"));
        }
        Ok(Self(raw.to_string()))
    }

    /// Attributes already known to be valid, e.g. read back from storage.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The empty object, the default for every resource.
    pub fn empty() -> Self {
        Self("{}".to_string())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JSON text, without copying it.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The deepest nesting of arrays and objects in JSON text (brackets inside strings do not count). Read before
/// parsing, so a document too deep for the parser is refused for what it is.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in text.bytes() {
        match (in_string, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'[' | b'{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            (false, _, _) => {}
        }
    }
    deepest
}

impl Default for Attributes {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_chars(field: &'static str, raw: &str, max: usize) -> Result<(), InvalidInput> {
    let count = raw.chars().count();
    if count > max {
        return Err(InvalidInput::new(field, format!("{count} characters is more than the limit of {max}")));
    }
    Ok(())
}

/// A display name of at most 256 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendlyName(String);

impl FriendlyName {
    /// Validates the length.
    ///
    /// # Errors
    /// When `raw` has more than 256 characters.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, InvalidInput> {
        check_chars(field, raw, MAX_FRIENDLY_NAME_CHARS)?;
        Ok(Self(raw.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A conversation's unique name: non-empty, at most 256 characters, and never shaped like a conversation SID
/// (paths accept either, so the two must not collide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueName(String);

impl UniqueName {
    /// Validates a unique name.
    ///
    /// # Errors
    /// When it is empty, too long or looks like `CH` + 32 hex digits.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        if raw.is_empty() {
            return Err(InvalidInput::new("UniqueName", "must not be empty"));
        }
        check_chars("UniqueName", raw, MAX_IDENTIFIER_CHARS)?;
        if has_sid_shape(raw, ConversationSid::PREFIX) {
            return Err(InvalidInput {
                field: "UniqueName",
                reason: "must not look like a conversation SID".into(),
                kind: InvalidKind::UniqueNameLooksLikeSid,
            });
        }
        Ok(Self(raw.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A chat user's identity: non-empty, at most 256 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity(String);

impl Identity {
    /// Validates an identity.
    ///
    /// # Errors
    /// When it is empty or longer than 256 characters.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, InvalidInput> {
        if raw.is_empty() {
            return Err(InvalidInput::new(field, "must not be empty"));
        }
        check_chars(field, raw, MAX_IDENTIFIER_CHARS)?;
        Ok(Self(raw.to_string()))
    }

    /// Wraps a value read back from storage.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The identity.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A non-chat address (phone number, `whatsapp:` number, email address) of at most 256 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address(String);

impl Address {
    /// Validates an address.
    ///
    /// # Errors
    /// When it is empty or longer than 256 characters.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, InvalidInput> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(InvalidInput::new(field, "must not be empty"));
        }
        check_chars(field, trimmed, MAX_IDENTIFIER_CHARS)?;
        Ok(Self(trimmed.to_string()))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A length of time given as an ISO-8601 duration (`PT10M`, `P1DT2H`, `PT30S`), kept in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerDuration(i64);

impl TimerDuration {
    /// The longest timer accepted: 100 years (36 500 days). Longer ones could not be turned into dates.
    pub const MAX_SECS: i64 = 36_500 * 86_400;

    /// Parses an ISO-8601 duration of weeks, days, hours, minutes and seconds (years and months have no fixed
    /// length and are refused). `minimum_secs` is the shortest allowed value.
    ///
    /// # Errors
    /// When the text is not such a duration, is zero, or is shorter than the minimum.
    pub fn parse(field: &'static str, raw: &str, minimum_secs: i64) -> Result<Self, InvalidInput> {
        let secs = parse_iso8601_seconds(raw)
            .ok_or_else(|| InvalidInput::new(field, format!("'{raw}' is not an ISO-8601 duration such as PT10M")))?;
        if secs <= 0 {
            return Err(InvalidInput::new(field, "must be longer than zero"));
        }
        if secs < minimum_secs {
            return Err(InvalidInput::new(field, format!("must be at least {minimum_secs} seconds")));
        }
        if secs > Self::MAX_SECS {
            return Err(InvalidInput::new(field, format!("must be at most {} days", Self::MAX_SECS / 86_400)));
        }
        Ok(Self(secs))
    }

    /// A duration of `secs` seconds, e.g. read back from storage.
    pub fn from_secs(secs: i64) -> Self {
        Self(secs)
    }

    /// Whole seconds.
    pub fn as_secs(self) -> i64 {
        self.0
    }

    /// The canonical ISO-8601 form, e.g. `PT1H30M`.
    pub fn to_iso8601(self) -> String {
        let mut out = String::from("P");
        let mut rest = self.0;
        let days = rest / 86_400;
        rest %= 86_400;
        if days > 0 {
            out.push_str(&format!("{days}D"));
        }
        if rest > 0 || days == 0 {
            out.push('T');
            let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
            if h > 0 {
                out.push_str(&format!("{h}H"));
            }
            if m > 0 {
                out.push_str(&format!("{m}M"));
            }
            if s > 0 || (h == 0 && m == 0) {
                out.push_str(&format!("{s}S"));
            }
        }
        out
    }
}

fn parse_iso8601_seconds(raw: &str) -> Option<i64> {
    let body = raw.trim().strip_prefix('P')?;
    if body.is_empty() {
        return None;
    }
    let (date_part, time_part) = match body.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (body, None),
    };
    let mut total: i64 = 0;
    let mut add = |part: &str, units: &[(char, i64)]| -> Option<()> {
        let mut number = String::new();
        let mut unit_pos = 0;
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let pos = units.iter().position(|(u, _)| *u == c)?;
            // Units must appear in order, each at most once, each after a number.
            if pos < unit_pos || number.is_empty() {
                return None;
            }
            unit_pos = pos + 1;
            let n: i64 = number.parse().ok()?;
            total = total.checked_add(n.checked_mul(units[pos].1)?)?;
            number.clear();
        }
        number.is_empty().then_some(())
    };
    add(date_part, &[('W', 604_800), ('D', 86_400)])?;
    if let Some(t) = time_part {
        add(t, &[('H', 3600), ('M', 60), ('S', 1)])?;
    }
    Some(total)
}

/// Parses an ISO-8601 date-time (`2026-01-02T03:04:05Z`, any offset), or a date meaning its midnight UTC, kept
/// to the millisecond like every stored date.
///
/// # Errors
/// When `raw` is neither, or is not in the years 0000 to 9999 once in UTC.
pub fn parse_timestamp(field: &'static str, raw: &str) -> Result<OffsetDateTime, InvalidInput> {
    let written = match OffsetDateTime::parse(raw, &Rfc3339) {
        Ok(t) => t,
        Err(_) => {
            let date_format = time::macros::format_description!("[year]-[month]-[day]");
            let date = time::Date::parse(raw, &date_format).map_err(|_| {
                InvalidInput::new(field, format!("'{raw}' is not an ISO-8601 date such as 2026-01-31T12:00:00Z"))
            })?;
            date.midnight().assume_utc()
        }
    };
    // Dates are printed with four-digit years in UTC: a signed year (`-2026-01-01`), or an offset that carries
    // the instant past either end, would be stored but could never be read back (and the end past 9999 is not
    // even representable in UTC).
    let utc = OffsetDateTime::from_unix_timestamp_nanos(written.unix_timestamp_nanos())
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or_else(|| InvalidInput::new(field, format!("'{raw}' is not between the years 0000 and 9999 in UTC")))?;
    Ok(crate::clock::truncate_to_millis(utc))
}

/// Parses the `PageSize` of a list request: a positive integer of any length; above `max` it is served as `max`,
/// as Twilio does, so that a client asking for more than a page holds still lists everything page by page.
///
/// # Errors
/// When `raw` is not a positive integer.
pub fn parse_page_size(raw: &str, max: u32) -> Result<u32, InvalidInput> {
    let digits = raw.trim();
    let positive =
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && digits.bytes().any(|b| b != b'0');
    if !positive {
        return Err(InvalidInput::new("PageSize", format!("'{raw}' is not a positive integer")));
    }
    // One too long for u32 is still just "more than the maximum".
    Ok(digits.parse::<u32>().map_or(max, |n| n.min(max)))
}

/// How loudly a user is notified about a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotificationLevel {
    /// Follow the service's push configuration.
    #[default]
    Default,
    /// No push notifications.
    Muted,
}

impl NotificationLevel {
    /// Parses `default` or `muted`.
    ///
    /// # Errors
    /// For any other value.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        match raw {
            "default" => Ok(Self::Default),
            "muted" => Ok(Self::Muted),
            _ => Err(InvalidInput::new("NotificationLevel", format!("'{raw}' is not one of default, muted"))),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Muted => "muted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_nest_at_most_the_limit() {
        let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert!(Attributes::parse("Attributes", &nested(MAX_ATTRIBUTE_DEPTH), 1 << 20).is_ok());
        let too_deep = Attributes::parse("Attributes", &nested(MAX_ATTRIBUTE_DEPTH + 1), 1 << 20).unwrap_err();
        assert!(too_deep.to_string().contains("33 levels deep"), "{too_deep}");
        // Far deeper than the JSON parser goes: refused for its depth, not as "invalid JSON".
        let abyss = Attributes::parse("Attributes", &"{\"a\":".repeat(5000), 1 << 20).unwrap_err();
        assert!(abyss.to_string().contains("levels deep"), "{abyss}");
        // Brackets in strings, escaped quotes included, do not count.
        let text = format!(r#"{{"k": "{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert!(Attributes::parse("Attributes", &text, 1 << 20).is_ok(), "{text}");
    }

    #[test]
    fn durations_parse_in_seconds() {
        for (text, secs) in
            [("PT10M", 600), ("PT1H30M", 5400), ("P1D", 86_400), ("P1DT1S", 86_401), ("PT2S", 2), ("P1W", 604_800)]
        {
            assert_eq!(TimerDuration::parse("T", text, 0).unwrap().as_secs(), secs, "{text}");
        }
        for bad in ["", "P", "PT", "10M", "PT10", "PTM", "P1M", "PT1S1H", "banana", "PT0S"] {
            assert!(TimerDuration::parse("T", bad, 0).is_err(), "{bad} accepted");
        }
        assert!(TimerDuration::parse("T", "PT30S", 60).is_err());
    }

    #[test]
    fn durations_print_canonically() {
        for (secs, text) in [(600, "PT10M"), (5400, "PT1H30M"), (86_400, "P1D"), (90_061, "P1DT1H1M1S"), (2, "PT2S")] {
            assert_eq!(TimerDuration::from_secs(secs).to_iso8601(), text);
        }
    }

    #[test]
    fn attributes_must_be_json_within_limit() {
        assert!(Attributes::parse("A", r#"{"a":1}"#, 100).is_ok());
        assert!(Attributes::parse("A", "null", 100).is_ok());
        assert!(Attributes::parse("A", "{nope", 100).is_err());
        assert!(Attributes::parse("A", &format!("\"{}\"", "x".repeat(200)), 100).is_err());
    }

    #[test]
    fn timestamps_are_instants_of_four_digit_years() {
        let millis = |raw: &str| parse_timestamp("DateCreated", raw).map(|t| t.unix_timestamp_nanos() / 1_000_000);
        assert_eq!(millis("2026-01-02T03:04:05.678+02:00"), Ok(1_767_315_845_678));
        assert_eq!(millis("2026-01-02T03:04:05.6789Z"), Ok(1_767_323_045_678), "kept to the millisecond");
        assert_eq!(millis("2026-01-02"), Ok(1_767_312_000_000));
        assert_eq!(millis("0000-01-01T00:00:00Z"), Ok(-62_167_219_200_000));
        assert_eq!(millis("9999-12-31T23:59:59Z"), Ok(253_402_300_799_000));
        // Found by fuzzing: a signed year was accepted as a date BC that prints as text nothing reads back, and
        // an offset carrying the instant past 9999 in UTC was silently stored as 1970-01-01.
        for outside in ["-2026-01-01", "+12026-01-01", "0000-01-01T00:00:00+00:01", "9999-12-31T23:59:59-01:00"] {
            let err = parse_timestamp("DateCreated", outside).unwrap_err();
            assert_eq!(err.field, "DateCreated", "{outside}");
        }
        for bad in ["", "2026-13-01", "2026-01-02T03:04:05", "yesterday"] {
            assert!(parse_timestamp("DateCreated", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_sizes_are_positive_and_capped() {
        assert_eq!(parse_page_size("20", 100), Ok(20));
        assert_eq!(parse_page_size(" 0007 ", 100), Ok(7));
        assert_eq!(parse_page_size("1000", 100), Ok(100));
        assert_eq!(parse_page_size("99999999999999999999999", 50), Ok(50));
        for bad in ["", "0", "000", "-1", "+5", "1.5", "ten"] {
            assert_eq!(parse_page_size(bad, 100).unwrap_err().field, "PageSize", "{bad}");
        }
    }

    #[test]
    fn unique_name_must_not_look_like_a_sid() {
        let err = UniqueName::parse("CH0123456789abcdef0123456789abcdef").unwrap_err();
        assert_eq!(err.kind, InvalidKind::UniqueNameLooksLikeSid);
        assert!(UniqueName::parse("support-42").is_ok());
        assert!(UniqueName::parse("").is_err());
    }
}
