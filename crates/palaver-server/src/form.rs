//! Form-encoded request bodies (`application/x-www-form-urlencoded`) with Twilio's conventions: PascalCase
//! names, dotted nesting (`Timers.Inactive`) and repeated keys for lists (`Permission=a&Permission=b`).
//!
//! No request input may hold a NUL character: PostgreSQL text cannot store one, so it is refused at the edge,
//! the same way for every store (a form or query field with one is a 400; a path with one names nothing, 404).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use crate::AppState;
use crate::error::{ApiError, resource_path};

/// The decoded fields of a form body, in order.
#[derive(Debug, Default)]
pub(crate) struct FormFields(Vec<(String, String)>);

impl FromRequest<AppState> for FormFields {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_rejection)?;
        check_field_count(&bytes, state.limits.max_form_fields)?;
        Self::parse(&bytes)
    }
}

/// A body that could not be read: too large (413), or cut off.
pub(crate) fn body_rejection(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(palaver_api::ErrorCode::PayloadTooLarge, "The request body is larger than the server accepts")
    } else {
        ApiError::invalid("request body", rejection.body_text())
    }
}

/// Refuses a form body or query string with more than `max` fields, before decoding any of them.
///
/// # Errors
/// 400 naming the limit.
pub(crate) fn check_field_count(encoded: &[u8], max: usize) -> Result<(), ApiError> {
    let fields = encoded.split(|b| *b == b'&').filter(|field| !field.is_empty()).count();
    if fields > max {
        return Err(ApiError::invalid("request", format!("{fields} fields is more than the limit of {max}")));
    }
    Ok(())
}

impl FormFields {
    /// Decodes a form body.
    ///
    /// # Errors
    /// When the body is not form-encoded text, or a field holds a NUL character.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        let fields = serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes)
            .map_err(|e| ApiError::invalid("request body", format!("not form-encoded: {e}")))?;
        refuse_nul_in_fields(&fields)?;
        Ok(Self(fields))
    }

    /// The last value of `name`, if given.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every field, in order (for signature checks).
    pub(crate) fn pairs(&self) -> Vec<(String, String)> {
        self.0.clone()
    }

    /// Every value of `name`, in order.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }

    /// The value of `name` as a date-time (`2026-01-02T03:04:05Z`, or a plain date).
    ///
    /// # Errors
    /// When present but not a date.
    pub(crate) fn date(&self, name: &'static str) -> Result<Option<OffsetDateTime>, ApiError> {
        self.get(name).map(|raw| parse_date(name, raw)).transpose()
    }

    /// The value of `name` as a boolean (`true`/`false`).
    ///
    /// # Errors
    /// When present but not a boolean.
    pub(crate) fn bool(&self, name: &'static str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|raw| match raw.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::invalid(name, format!("'{raw}' is not true or false"))),
            })
            .transpose()
    }
}

/// Middleware: answers a request whose path or query string holds a NUL character (`%00`) before any handler
/// sees it.
pub(crate) async fn refuse_nul_characters(request: Request, next: Next) -> Response {
    let uri = request.uri();
    // `%00` is the only way a NUL reaches a path: a raw one is not a valid URI.
    if uri.path().contains("%00") {
        return ApiError::not_found(resource_path(uri.path())).into_response();
    }
    if let Some(query) = uri.query().filter(|q| q.contains("%00")) {
        // A query string that does not decode is left for the handler to report.
        if let Ok(fields) = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            && let Err(err) = refuse_nul_in_fields(&fields)
        {
            return err.into_response();
        }
    }
    next.run(request).await
}

fn refuse_nul_in_fields(fields: &[(String, String)]) -> Result<(), ApiError> {
    match fields.iter().find(|(name, value)| name.contains('\0') || value.contains('\0')) {
        Some((name, _)) => Err(ApiError::invalid(name, "must not contain a NUL character")),
        None => Ok(()),
    }
}

/// Parses an ISO-8601 date-time, or a date meaning its midnight UTC (see
/// [`palaver_core::input::parse_timestamp`]).
///
/// # Errors
/// When `raw` is neither.
pub(crate) fn parse_date(name: &'static str, raw: &str) -> Result<OffsetDateTime, ApiError> {
    Ok(palaver_core::input::parse_timestamp(name, raw)?)
}
