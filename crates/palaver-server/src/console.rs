//! The web console at `/console`: the files built from `console/` (embedded by `palaver-console`), served
//! with their content types, caching headers and a strict content security policy.
//!
//! The console shares its origin with the API, so the policy is what keeps anything else from running in
//! it: scripts and styles only from the embedded files, no inline code, no framing, no form posts elsewhere.
//! Media are never rendered from the API's URLs (they are served as attachments anyway): the console fetches
//! them with its credentials and previews them from `blob:` URLs, which is all `img-src`/`media-src` allow
//! besides its own files.

use axum::Router;
use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use palaver_console::Asset;

use crate::AppState;
use crate::error::ApiError;

/// The policy every console response carries.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob:; media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The console's routes: the page at `/console` (and `/console/`), its files below `/console/assets/`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/console", get(index)).route("/console/", get(index)).route("/console/{*path}", get(file))
}

/// GET /console — the page; never cached without asking (it names the current files).
async fn index(headers: HeaderMap) -> Response {
    serve(palaver_console::index(), &headers)
}

/// GET /console/{path} — a built file; its name carries its hash, so it is cached for a year.
async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match palaver_console::asset(&path) {
        Some(asset) => serve(asset, &headers),
        None => ApiError::not_found(format!("/console/{path}")).into_response(),
    }
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let cache = if asset.is_immutable() { "public, max-age=31536000, immutable" } else { "no-cache" };
    let unchanged = request
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == asset.etag || tag.trim() == "*"));
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
        (CACHE_CONTROL, HeaderValue::from_static(cache)),
        (ETAG, HeaderValue::from_static(asset.etag)),
        (HeaderName::from_static("content-security-policy"), HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff")),
        (HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY")),
        (HeaderName::from_static("referrer-policy"), HeaderValue::from_static("no-referrer")),
        (HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin")),
    ];
    if unchanged {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (StatusCode::OK, headers, asset.bytes).into_response()
    }
}
