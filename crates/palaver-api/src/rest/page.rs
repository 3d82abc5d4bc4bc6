//! List pages: `{"<key>": [...], "meta": {...}}` with absolute page URLs.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

/// The `meta` object of a list response. Helper libraries find the item array through `key` and fetch the
/// following page from the absolute `next_page_url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageMeta {
    /// Zero-based page number, kept for client state only.
    pub page: u64,
    /// How many items a page holds at most.
    pub page_size: u32,
    /// The URL of the first page.
    pub first_page_url: String,
    /// The URL of the page before this one, or null on the first page.
    pub previous_page_url: Option<String>,
    /// The URL of this page.
    pub url: String,
    /// The URL of the page after this one, or null on the last page.
    pub next_page_url: Option<String>,
    /// The name of the field that holds the items.
    pub key: String,
}

/// One page of a list: the items under `meta.key`, and `meta`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage<T> {
    /// The items of this page, in the list's order.
    pub items: Vec<T>,
    /// Paging information.
    pub meta: PageMeta,
}

impl<T: Serialize> Serialize for ListPage<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(&self.meta.key, &self.items)?;
        map.serialize_entry("meta", &self.meta)?;
        map.end()
    }
}

/// An opaque position in a list: which way to read and the key to continue from.
///
/// On the wire it is `PN<key>` (items after the key) or `PP<key>` (items before it); clients must treat it as
/// opaque, which leaves the server free to change the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    /// True to read the items that come before `key` in the list's order.
    pub backwards: bool,
    /// The ordering key of the item the page continues from (exclusive).
    pub key: i64,
}

impl PageToken {
    /// Parses a token produced by [`PageToken::encode`]; anything else is `None`.
    pub fn parse(raw: &str) -> Option<Self> {
        let (backwards, rest) = if let Some(rest) = raw.strip_prefix("PN") {
            (false, rest)
        } else if let Some(rest) = raw.strip_prefix("PP") {
            (true, rest)
        } else {
            return None;
        };
        rest.parse().ok().map(|key| Self { backwards, key })
    }

    /// The token's wire form.
    pub fn encode(&self) -> String {
        format!("{}{}", if self.backwards { "PP" } else { "PN" }, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_rejects_garbage() {
        let t = PageToken { backwards: true, key: -42 };
        assert_eq!(PageToken::parse(&t.encode()), Some(t));
        assert_eq!(PageToken::parse("PN17"), Some(PageToken { backwards: false, key: 17 }));
        assert_eq!(PageToken::parse("XX1"), None);
        assert_eq!(PageToken::parse("PNabc"), None);
    }

    #[test]
    fn list_page_puts_items_under_meta_key() {
        let page = ListPage {
            items: vec![1, 2],
            meta: PageMeta {
                page: 0,
                page_size: 2,
                first_page_url: "u".into(),
                previous_page_url: None,
                url: "u".into(),
                next_page_url: None,
                key: "numbers".into(),
            },
        };
        let json = serde_json::to_value(&page).unwrap();
        assert_eq!(json["numbers"], serde_json::json!([1, 2]));
        assert_eq!(json["meta"]["key"], "numbers");
    }
}
