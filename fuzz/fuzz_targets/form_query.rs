//! Form bodies and query strings of the REST API, decoded as the server decodes them (`FormFields::parse` and
//! `ListQuery` read `application/x-www-form-urlencoded` pairs with serde_urlencoded), and the values the
//! server reads from them that are not covered by `input_values`: dates (`DateCreated`, `StartDate`,
//! `LastReadTimestamp`…) and paging (`PageSize`, `Page`, `PageToken`).
//!
//! Properties: the pairs re-encode (as next/previous page URLs re-encode the request's filters) to text that
//! decodes to the same pairs; an accepted date is the instant written, to the millisecond, and prints (as the
//! realtime protocol prints dates) to text that parses back to it; an accepted page size is within 1..=max.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palaver_api::rest::PageToken;
use palaver_core::event::rfc3339;
use palaver_core::input::{parse_page_size, parse_timestamp};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

const MAX_PAGE_SIZE: u32 = 100;

fn date(raw: &str) {
    let Ok(t) = parse_timestamp("DateCreated", raw) else { return };
    assert_eq!(t.offset(), UtcOffset::UTC, "{raw:?}");
    assert_eq!(t.nanosecond() % 1_000_000, 0, "{raw:?} keeps more than milliseconds");
    let written = match OffsetDateTime::parse(raw, &Rfc3339) {
        Ok(written) => written,
        Err(_) => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(raw, &format).expect("accepted: a date-time or a date").midnight().assume_utc()
        }
    };
    let millis = |t: OffsetDateTime| t.unix_timestamp_nanos().div_euclid(1_000_000);
    // Truncation towards zero and towards the past agree except before 1970, within a millisecond either way.
    assert!((millis(t) - millis(written)).abs() <= 1, "{raw:?} was read as {t}");
    let printed = rfc3339(t);
    let again = parse_timestamp("DateCreated", &printed)
        .unwrap_or_else(|e| panic!("{raw:?} was read as {t}, printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, t, "{raw:?} printed as {printed:?}");
}

fn page(raw: &str) {
    match parse_page_size(raw, MAX_PAGE_SIZE) {
        Ok(size) => assert!((1..=MAX_PAGE_SIZE).contains(&size), "{raw:?} gave {size}"),
        Err(err) => {
            assert_eq!(err.field, "PageSize");
            let digits = raw.trim();
            let positive =
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && digits.contains(|c| c != '0');
            assert!(!positive, "{raw:?} refused");
        }
    }
    if let Some(token) = PageToken::parse(raw) {
        assert_eq!(PageToken::parse(&token.encode()), Some(token));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) else { return };
    let encoded = serde_urlencoded::to_string(&pairs).expect("string pairs always encode");
    let again = serde_urlencoded::from_str::<Vec<(String, String)>>(&encoded)
        .unwrap_or_else(|e| panic!("{pairs:?} re-encodes as {encoded:?}, which does not decode: {e}"));
    assert_eq!(again, pairs, "re-encoded as {encoded:?}");
    for (_, value) in &pairs {
        date(value);
        page(value);
    }
});
