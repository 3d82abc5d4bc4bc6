//! Page tokens (`PN<key>` / `PP<key>`), which clients hand back verbatim in `PageToken` and `page_token`: any
//! text either parses or is refused, a parsed token re-encodes to a token that parses to it, and every token
//! the server encodes parses back to itself.

#![no_main]

use libfuzzer_sys::arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use palaver_api::rest::PageToken;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    // Every encoded token parses back to itself.
    if let (Ok(backwards), Ok(key)) = (bool::arbitrary(&mut u), i64::arbitrary(&mut u)) {
        let token = PageToken { backwards, key };
        assert_eq!(PageToken::parse(&token.encode()), Some(token), "{}", token.encode());
    }
    // Any text: refused, or a token whose encoding means the same.
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(token) = PageToken::parse(text) {
        let encoded = token.encode();
        assert_eq!(PageToken::parse(&encoded), Some(token), "{text:?} re-encodes as {encoded:?}");
        assert_eq!(&encoded[..2], &text[..2], "{text:?} changed direction");
        assert_eq!(text[2..].parse::<i64>().ok(), Some(token.key), "{text:?}");
    }
});
