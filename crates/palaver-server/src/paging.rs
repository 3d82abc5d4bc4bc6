//! List requests (`PageSize`, `Page`, `PageToken`) and the `meta` of list responses, whose page URLs are
//! absolute and keep the request's other query parameters (filters, `Order`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use palaver_api::rest::{ListPage, PageMeta, PageToken};
use palaver_core::store::{Cursor, Page, PageQuery};

use crate::AppState;
use crate::error::ApiError;
use crate::scope::origin_of;

/// The query string of a list request, decoded.
#[derive(Debug, Clone)]
pub(crate) struct ListQuery {
    origin: String,
    path: String,
    params: Vec<(String, String)>,
}

impl FromRequestParts<AppState> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        crate::form::check_field_count(query.as_bytes(), state.limits.max_form_fields)?;
        let params = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map_err(|e| ApiError::invalid("query string", e))?;
        Ok(Self { origin: origin_of(parts), path: parts.uri.path().to_string(), params })
    }
}

/// A validated page request plus what is needed to link to neighbouring pages.
#[derive(Debug, Clone)]
pub(crate) struct ListRequest {
    /// The page to read.
    pub(crate) page: PageQuery,
    query: ListQuery,
    page_number: u64,
}

impl ListQuery {
    /// The origin (`http://host`) the client addressed.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The last value of a query parameter.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Validates `PageSize` (default 50; above `max` it is served as `max`, as Twilio does, so that a client
    /// asking for more than a page holds still lists everything page by page), `Page` and `PageToken`.
    ///
    /// # Errors
    /// When any of them is malformed, or the size is not a positive integer.
    pub(crate) fn page(&self, max: u32, descending: bool) -> Result<ListRequest, ApiError> {
        let size = match self.get("PageSize") {
            None => 50.min(max),
            Some(raw) => palaver_core::input::parse_page_size(raw, max)?,
        };
        let page_number = match self.get("Page") {
            None => 0,
            Some(raw) if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) => {
                // Only echoed back, so a number past u64 is as good as its largest value.
                raw.parse::<u64>().unwrap_or(u64::MAX)
            }
            Some(raw) => return Err(ApiError::invalid("Page", format!("'{raw}' is not a page number"))),
        };
        let cursor = match self.get("PageToken") {
            None | Some("") => None,
            Some(raw) => {
                let token = PageToken::parse(raw).ok_or_else(|| {
                    ApiError::invalid("PageToken", format!("'{raw}' is not a page token of this list"))
                })?;
                Some(Cursor { backwards: token.backwards, key: token.key })
            }
        };
        Ok(ListRequest { page: PageQuery { size, cursor, descending }, query: self.clone(), page_number })
    }
}

impl ListRequest {
    fn url(&self, page_number: u64, cursor: Option<Cursor>) -> String {
        let mut params: Vec<(String, String)> = self
            .query
            .params
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "PageSize" | "Page" | "PageToken"))
            .cloned()
            .collect();
        params.push(("PageSize".into(), self.page.size.to_string()));
        params.push(("Page".into(), page_number.to_string()));
        if let Some(c) = cursor {
            params.push(("PageToken".into(), PageToken { backwards: c.backwards, key: c.key }.encode()));
        }
        let query = serde_urlencoded::to_string(&params).unwrap_or_default();
        format!("{}{}?{}", self.query.origin, self.query.path, query)
    }

    /// Wraps converted items into a list response under `key`.
    pub(crate) fn respond<T, U>(&self, key: &str, page: Page<T>, convert: impl Fn(T) -> U) -> ListPage<U> {
        let meta = PageMeta {
            page: self.page_number,
            page_size: self.page.size,
            first_page_url: self.url(0, None),
            previous_page_url: page.previous.map(|c| self.url(self.page_number.saturating_sub(1), Some(c))),
            url: self.url(self.page_number, self.page.cursor),
            next_page_url: page.next.map(|c| self.url(self.page_number.saturating_add(1), Some(c))),
            key: key.to_string(),
        };
        ListPage { items: page.items.into_iter().map(convert).collect(), meta }
    }
}
