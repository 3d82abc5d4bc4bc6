//! Twilsock v3, the framing that the official `@twilio/conversations` JS SDK speaks on its one WebSocket
//! (`GET /v3/wsconnect`). Codec only: no I/O, no connection state.
//!
//! Every frame is one **binary** WebSocket message:
//!
//! ```text
//! TWILSOCK V3.0 <header byte length>\r\n<header JSON>\r\n<payload bytes>
//! ```
//!
//! The header is a JSON object naming a `method` (`init`, `update`, `message`, `reply`, `notification`,
//! `client_update`, `close`, `telemetry.v1`, …), usually an `id` (a reply carries the id of the frame it
//! answers), and `payload_size`, the payload's length in bytes. [`decode`] checks all of that without ever
//! panicking; [`encode`] writes a frame and sets `payload_size` itself.
//!
//! The header is kept as a [`Header`]: the fields every frame may have (`method`, `id`, `payload_type`) as
//! typed fields, and every other field as raw JSON, so a field this crate does not know survives a round
//! trip. Typed views of the headers the server reads ([`InitHeader`], [`UpdateHeader`], [`MessageHeader`]) are
//! read with [`Frame::header_as`] from the header's original text, which keeps the order of the tunnelled
//! request's query parameters as the client sent them.
//!
//! # Examples
//!
//! ```
//! use palaver_api::twilsock::{self, Header, Status};
//!
//! let header = Header::new("reply").with_id("TM1").with_field("status", Status::ok().to_json());
//! let bytes = twilsock::encode(&header, b"{}");
//! assert!(bytes.starts_with(b"TWILSOCK V3.0 "));
//!
//! let frame = twilsock::decode(&bytes).unwrap();
//! assert_eq!(frame.header.method, "reply");
//! assert_eq!(frame.header.id.as_deref(), Some("TM1"));
//! assert_eq!(frame.payload, b"{}");
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The first line's fixed start: protocol name, then a space.
const PROTOCOL: &[u8] = b"TWILSOCK ";
/// The only version spoken.
const VERSION: &[u8] = b"V3.0";
/// Separates the first line from the header and the header from the payload.
const CRLF: &[u8] = b"\r\n";
/// Digits a header length may have: nine allow headers up to a gigabyte, far above any WebSocket limit, and
/// keep the number inside `usize` on every platform.
const MAX_LENGTH_DIGITS: usize = 9;

/// Method names the server reads or writes.
pub mod method {
    /// Client → server: the first frame, carrying the access token.
    pub const INIT: &str = "init";
    /// Client → server: a renewed access token.
    pub const UPDATE: &str = "update";
    /// Client → server: a tunnelled HTTP request (`http_request` + body as payload).
    pub const MESSAGE: &str = "message";
    /// Both ways: the answer to a frame, or the client's acknowledgement of a server frame.
    pub const REPLY: &str = "reply";
    /// Client → server: timing events; never answered.
    pub const TELEMETRY: &str = "telemetry.v1";
    /// Both ways: the connection ends (from the server with a `status` saying why).
    pub const CLOSE: &str = "close";
    /// Server → client: a pushed event (`message_type` + payload).
    pub const NOTIFICATION: &str = "notification";
    /// Server → client: `client_update_type: "token_about_to_expire"`.
    pub const CLIENT_UPDATE: &str = "client_update";
    /// Client → server: push-notification context (registrations); answered with 200.
    pub const PUT_NOTIFICATION_CTX: &str = "put_notification_ctx";
    /// Client → server: removes a push-notification context; answered with 200.
    pub const DELETE_NOTIFICATION_CTX: &str = "delete_notification_ctx";
}

/// The `payload_type` of JSON payloads.
pub const JSON: &str = "application/json";

/// `status.code` of a server `close`: the client should reconnect (to this or another server) after its
/// backoff.
pub const CLOSE_OFFLOAD: u16 = 308;
/// `status.code` of a server `close`: the client sent something that is not twilsock; fatal for the SDK.
pub const CLOSE_NOT_ACCEPTABLE: u16 = 406;
/// `status.code` of a server `close`: the access token expired; the SDK emits `tokenExpired`.
pub const CLOSE_TOKEN_EXPIRED: u16 = 410;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Frame {
    /// The header, without `payload_size` (which is `payload.len()`).
    pub header: Header,
    /// The payload bytes; their meaning is given by `header.payload_type` (JSON when absent).
    pub payload: Vec<u8>,
    /// The header's JSON text as received, for [`Frame::header_as`].
    header_json: Vec<u8>,
}

impl Frame {
    /// Reads the header as `T`, a typed view such as [`MessageHeader`], from its original text (so that maps
    /// inside it keep the order they were sent in).
    ///
    /// # Errors
    /// [`FrameError::BadHeader`] when the header does not have `T`'s shape.
    pub fn header_as<T: DeserializeOwned>(&self) -> Result<T, FrameError> {
        serde_json::from_slice(&self.header_json).map_err(|e| FrameError::BadHeader(e.to_string()))
    }

    /// The payload as JSON; `Null` when it is empty.
    ///
    /// # Errors
    /// [`FrameError::BadPayload`] when a non-empty payload is not JSON.
    pub fn json_payload(&self) -> Result<Value, FrameError> {
        if self.payload.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.payload).map_err(|e| FrameError::BadPayload(e.to_string()))
    }
}

/// A frame's header: the fields every frame may carry, typed, and all others as JSON.
///
/// `payload_size` is not kept: [`decode`] checks it against the payload and [`encode`] writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Header {
    /// What the frame is (see [`method`]).
    pub method: String,
    /// The frame's id (`TM…`), echoed by the reply that answers it; absent on some client frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The payload's content type; the SDK parses the payload as JSON when this is absent or starts with
    /// `application/json`, and as text when it starts with `text/plain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_type: Option<String>,
    /// Every other field, as sent. Never holds `method`, `id`, `payload_type` or `payload_size`.
    #[serde(flatten)]
    fields: Map<String, Value>,
}

impl Header {
    /// A header with `method` and no other field.
    pub fn new(method: impl Into<String>) -> Self {
        Self { method: method.into(), id: None, payload_type: None, fields: Map::new() }
    }

    /// A `reply` to the frame `id` with `status`.
    pub fn reply(id: impl Into<String>, status: &Status) -> Self {
        Self::new(method::REPLY).with_id(id).with_field("status", status.to_json())
    }

    /// Sets the id.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the payload type.
    #[must_use]
    pub fn with_payload_type(mut self, payload_type: impl Into<String>) -> Self {
        self.payload_type = Some(payload_type.into());
        self
    }

    /// Sets a field. The names of the typed fields set them instead (a non-string value clears them), and
    /// `payload_size` is ignored: [`encode`] writes it.
    #[must_use]
    pub fn with_field(mut self, name: &str, value: Value) -> Self {
        match name {
            "method" => self.method = value.as_str().unwrap_or_default().to_string(),
            "id" => self.id = value.as_str().map(str::to_string),
            "payload_type" => self.payload_type = value.as_str().map(str::to_string),
            "payload_size" => {}
            _ => {
                self.fields.insert(name.to_string(), value);
            }
        }
        self
    }

    /// A field other than the typed ones.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// Every field other than the typed ones.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }
}

/// The `status` of a `reply` or `close`: `{code, status}`, plus `errorCode` and `description` on rejections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// An HTTP-like code: 200 accepted; 401/403 a rejected token (terminal for the SDK); 410 (on `close`) an
    /// expired token; 308 reconnect; 429 back off; others retry.
    pub code: u16,
    /// The reason phrase (`OK`, `Unauthorized`, …).
    pub status: String,
    /// Twilio's error number (20101 invalid token, 20104 expired token, …).
    #[serde(rename = "errorCode", default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    /// A sentence the SDK shows as `Connection error: <description>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Status {
    /// `{code, status}`.
    pub fn new(code: u16, status: impl Into<String>) -> Self {
        Self { code, status: status.into(), error_code: None, description: None }
    }

    /// `{code: 200, status: "OK"}`.
    pub fn ok() -> Self {
        Self::new(200, "OK")
    }

    /// Adds Twilio's error number and a description.
    #[must_use]
    pub fn with_error(mut self, error_code: u32, description: impl Into<String>) -> Self {
        self.error_code = Some(error_code);
        self.description = Some(description.into());
        self
    }

    /// The status as a JSON value (for [`Header::with_field`]).
    pub fn to_json(&self) -> Value {
        // A struct of strings and numbers always converts.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The header of `init`, the first frame of a connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct InitHeader {
    /// The access token (JWT).
    #[serde(default)]
    pub token: Option<String>,
    /// Null on the first connect, then the value of the last `init` reply.
    #[serde(default)]
    pub continuation_token: Option<String>,
    /// What the client supports (`client_update`, `offline_storage`, `telemetry.v1`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Push registrations (`[{product, type, message_types…}]`), as sent.
    #[serde(default)]
    pub registrations: Value,
    /// SDK and platform versions, as sent.
    #[serde(default)]
    pub metadata: Value,
}

/// The header of `update`, which replaces the connection's access token.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct UpdateHeader {
    /// The renewed access token.
    #[serde(default)]
    pub token: Option<String>,
}

/// The header of `message`, a tunnelled HTTP request whose body is the payload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct MessageHeader {
    /// The product the request is for (`ip_messaging`).
    #[serde(default)]
    pub active_grant: Option<String>,
    /// The request line and headers.
    pub http_request: HttpRequest,
}

/// A tunnelled request, as the SDK describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct HttpRequest {
    /// The host the SDK addressed (`127.0.0.1:8088`): only a routing key.
    #[serde(default)]
    pub host: String,
    /// The path, without query string, still percent-encoded.
    pub path: String,
    /// `GET`, `POST`, `DELETE`…
    pub method: String,
    /// The query parameters, in the order sent. Names and values are **still percent-encoded** (the SDK
    /// splits its URL's query string without decoding it); a repeated name arrives as an array of values.
    #[serde(default)]
    pub params: OrderedMap,
    /// The request headers, in the order sent.
    #[serde(default)]
    pub headers: OrderedMap,
}

/// A JSON object read with its keys in the order they appear (serde_json's own map sorts them).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrderedMap(pub Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OrderedMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object or null")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<OrderedMap, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(OrderedMap(entries))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<OrderedMap, E> {
                Ok(OrderedMap::default())
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<OrderedMap, E> {
                Ok(OrderedMap::default())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Why bytes are not a twilsock frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The bytes end inside the first line.
    #[error("the frame ends before its first line does")]
    Truncated,
    /// The first line does not start with `TWILSOCK `.
    #[error("not a twilsock frame")]
    BadMagic,
    /// A twilsock version other than `V3.0`.
    #[error("twilsock version {0} is not supported")]
    UnsupportedVersion(String),
    /// The header length is not a number.
    #[error("the header length {0:?} is not a number")]
    BadHeaderLength(String),
    /// The header length runs past the end of the frame.
    #[error("the header is said to be {declared} bytes long but only {available} follow")]
    HeaderPastEnd {
        /// The length on the first line.
        declared: usize,
        /// The bytes after the first line.
        available: usize,
    },
    /// The header is not a JSON object with a string `method` (and a numeric `payload_size`, if any), or not
    /// of the shape asked of [`Frame::header_as`].
    #[error("the header is not valid: {0}")]
    BadHeader(String),
    /// Something other than `\r\n` follows the header.
    #[error("the header is not followed by CRLF")]
    MissingSeparator,
    /// `payload_size` differs from the number of bytes after the header.
    #[error("payload_size is {declared} but {actual} payload bytes follow")]
    PayloadSizeMismatch {
        /// The header's `payload_size` (0 when absent).
        declared: u64,
        /// The bytes actually present.
        actual: usize,
    },
    /// The payload is not the JSON it was expected to be.
    #[error("the payload is not valid JSON: {0}")]
    BadPayload(String),
}

/// The header as it travels: [`Header`] plus `payload_size`.
#[derive(Deserialize)]
struct WireHeader {
    #[serde(flatten)]
    header: Header,
    #[serde(default)]
    payload_size: Option<u64>,
}

/// Reads one frame.
///
/// A frame whose header ends the message (no `\r\n` after it) is accepted when it declares no payload: the
/// SDK always writes the separator, other clients may not.
///
/// # Errors
/// [`FrameError`] says what is wrong; no input makes this panic.
pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
    if !bytes.starts_with(PROTOCOL) {
        return Err(if PROTOCOL.starts_with(bytes) { FrameError::Truncated } else { FrameError::BadMagic });
    }
    let line = &bytes[PROTOCOL.len()..];
    // `V3.0 `, the digits, CRLF: a first line is never longer, so a missing CRLF is found without a scan.
    let window = &line[..line.len().min(VERSION.len() + 1 + MAX_LENGTH_DIGITS + 1 + CRLF.len())];
    let crlf = find(window, CRLF);
    let first = &window[..crlf.unwrap_or(window.len())];
    let (version, length, version_complete) = match first.iter().position(|&b| b == b' ') {
        Some(space) => (&first[..space], &first[space + 1..], true),
        None => (first, &first[first.len()..], crlf.is_some()),
    };
    if version_complete && version != VERSION || !version_complete && !VERSION.starts_with(version) {
        return Err(FrameError::UnsupportedVersion(String::from_utf8_lossy(version).into_owned()));
    }
    let well_formed = length.len() <= MAX_LENGTH_DIGITS && length.iter().all(u8::is_ascii_digit);
    let Some(line_len) = crlf else {
        return Err(if well_formed {
            FrameError::Truncated
        } else {
            FrameError::BadHeaderLength(String::from_utf8_lossy(length).into_owned())
        });
    };
    if length.is_empty() || !well_formed {
        return Err(FrameError::BadHeaderLength(String::from_utf8_lossy(length).into_owned()));
    }
    // At most nine ASCII digits: always a valid usize.
    let declared: usize = std::str::from_utf8(length).ok().and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
    let rest = &line[line_len + CRLF.len()..];
    if declared > rest.len() {
        return Err(FrameError::HeaderPastEnd { declared, available: rest.len() });
    }
    let (header_json, after) = rest.split_at(declared);
    let wire: WireHeader = serde_json::from_slice(header_json).map_err(|e| FrameError::BadHeader(e.to_string()))?;
    let payload = if after.is_empty() {
        after
    } else if let Some(payload) = after.strip_prefix(CRLF) {
        payload
    } else {
        return Err(FrameError::MissingSeparator);
    };
    let declared_payload = wire.payload_size.unwrap_or(0);
    if u64::try_from(payload.len()).ok() != Some(declared_payload) {
        return Err(FrameError::PayloadSizeMismatch { declared: declared_payload, actual: payload.len() });
    }
    Ok(Frame { header: wire.header, payload: payload.to_vec(), header_json: header_json.to_vec() })
}

/// Writes one frame: the first line, `header` with `payload_size` set to `payload.len()`, and the payload.
pub fn encode(header: &Header, payload: &[u8]) -> Vec<u8> {
    /// The header as it travels, borrowed.
    #[derive(Serialize)]
    struct WireHeaderRef<'a> {
        #[serde(flatten)]
        header: &'a Header,
        payload_size: usize,
    }
    // Strings, numbers and JSON values with string keys always serialise.
    let header_json =
        serde_json::to_vec(&WireHeaderRef { header, payload_size: payload.len() }).unwrap_or_else(|_| b"{}".to_vec());
    let length = header_json.len().to_string();
    let mut frame = Vec::with_capacity(
        PROTOCOL.len() + VERSION.len() + 1 + length.len() + 2 * CRLF.len() + header_json.len() + payload.len(),
    );
    frame.extend_from_slice(PROTOCOL);
    frame.extend_from_slice(VERSION);
    frame.push(b' ');
    frame.extend_from_slice(length.as_bytes());
    frame.extend_from_slice(CRLF);
    frame.extend_from_slice(&header_json);
    frame.extend_from_slice(CRLF);
    frame.extend_from_slice(payload);
    frame
}

/// A new frame id: `TM` and 32 random hex digits, the shape the SDK uses.
///
/// # Panics
/// When the operating system's random source is unavailable, which nothing can recover from.
pub fn new_frame_id() -> String {
    random_id("TM")
}

/// `prefix` followed by 32 random lower-case hex digits (used for ids and opaque tokens).
///
/// # Panics
/// When the operating system's random source is unavailable.
pub fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(prefix.len() + 32);
    id.push_str(prefix);
    for b in bytes {
        id.push(HEX[usize::from(b >> 4)] as char);
        id.push(HEX[usize::from(b & 0x0f)] as char);
    }
    id
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn raw(header: &str, payload: &str) -> Vec<u8> {
        format!("TWILSOCK V3.0 {}\r\n{header}\r\n{payload}", header.len()).into_bytes()
    }

    #[test]
    fn round_trips_headers_and_payloads() {
        let header = Header::new("notification")
            .with_id(new_frame_id())
            .with_payload_type(JSON)
            .with_field("message_type", json!("twilio.sync.event"))
            .with_field("nested", json!({"a": [1, 2, {"b": null}]}));
        for payload in [&b""[..], b"{}", "{\"text\":\"h\u{e9}llo \u{1F600}\"}".as_bytes(), &[0u8, 13, 10, 255]] {
            let bytes = encode(&header, payload);
            let frame = decode(&bytes).unwrap();
            assert_eq!(frame.header, header);
            assert_eq!(frame.payload, payload);
            assert_eq!(encode(&frame.header, &frame.payload), bytes);
        }
    }

    #[test]
    fn encode_writes_byte_lengths() {
        let header = Header::new("reply").with_field("note", json!("\u{e9}"));
        let bytes = encode(&header, "\u{e9}".as_bytes());
        let text = String::from_utf8(bytes).unwrap();
        let (first, rest) = text.split_once("\r\n").unwrap();
        let length: usize = first.strip_prefix("TWILSOCK V3.0 ").unwrap().parse().unwrap();
        let header_json = &rest.as_bytes()[..length];
        let value: Value = serde_json::from_slice(header_json).unwrap();
        assert_eq!(value["payload_size"], 2, "bytes, not characters");
        assert_eq!(value["method"], "reply");
        assert!(value.get("id").is_none(), "absent typed fields are not written");
        assert_eq!(&rest.as_bytes()[length..], "\r\n\u{e9}".as_bytes());
    }

    #[test]
    fn payload_size_is_always_the_real_one() {
        let header = Header::new("reply").with_field("payload_size", json!(99));
        assert!(header.field("payload_size").is_none());
        let frame = decode(&encode(&header, b"abc")).unwrap();
        assert_eq!(frame.payload, b"abc");
    }

    #[test]
    fn decodes_what_the_sdk_sends() {
        let header = r#"{"id":"TM8c","method":"message","active_grant":"ip_messaging","payload_type":"application/json; charset=utf-8","http_request":{"host":"127.0.0.1:9956","path":"/v3/Maps/MP1/Items","method":"GET","params":{"PageSize":"50","Order":"asc","Key":["a%20b","c"]},"headers":{"Content-Type":"application/json"}},"payload_size":2}"#;
        let frame = decode(&raw(header, "{}")).unwrap();
        assert_eq!(frame.header.method, "message");
        assert_eq!(frame.header.id.as_deref(), Some("TM8c"));
        assert_eq!(frame.header.payload_type.as_deref(), Some("application/json; charset=utf-8"));
        assert!(frame.header.field("payload_size").is_none());
        assert_eq!(frame.json_payload().unwrap(), json!({}));
        let message: MessageHeader = frame.header_as().unwrap();
        assert_eq!(message.active_grant.as_deref(), Some("ip_messaging"));
        let request = message.http_request;
        assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/v3/Maps/MP1/Items"));
        let names: Vec<&str> = request.params.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PageSize", "Order", "Key"], "in the order sent");
        assert_eq!(request.params.0[2].1, json!(["a%20b", "c"]));
        assert_eq!(request.headers.0, vec![("Content-Type".to_string(), json!("application/json"))]);
    }

    #[test]
    fn decodes_init_and_update() {
        let init = r#"{"id":"TM1","method":"init","token":"a.b.c","continuation_token":null,"metadata":{"sdk":"JS"},"registrations":[{"product":"ip_messaging"}],"tweaks":null,"capabilities":["client_update","offline_storage"],"payload_size":0}"#;
        let frame = decode(&raw(init, "")).unwrap();
        let header: InitHeader = frame.header_as().unwrap();
        assert_eq!(header.token.as_deref(), Some("a.b.c"));
        assert_eq!(header.continuation_token, None);
        assert_eq!(header.capabilities, ["client_update", "offline_storage"]);
        assert_eq!(header.metadata["sdk"], "JS");
        assert_eq!(frame.header.field("tweaks"), Some(&Value::Null));
        let update = decode(&raw(r#"{"id":"TM2","method":"update","token":"x"}"#, "")).unwrap();
        assert_eq!(update.header_as::<UpdateHeader>().unwrap().token.as_deref(), Some("x"));
        assert!(matches!(update.header_as::<MessageHeader>(), Err(FrameError::BadHeader(_))));
    }

    #[test]
    fn tolerates_a_missing_separator_without_payload() {
        let header = r#"{"method":"close","payload_size":0}"#;
        let bytes = format!("TWILSOCK V3.0 {}\r\n{header}", header.len());
        let frame = decode(bytes.as_bytes()).unwrap();
        assert_eq!(frame.header.method, "close");
        assert!(frame.payload.is_empty());
        assert_eq!(frame.json_payload().unwrap(), Value::Null);
    }

    #[test]
    fn params_may_be_null_or_missing() {
        for request in [
            r#"{"path":"/a","method":"GET"}"#,
            r#"{"path":"/a","method":"GET","params":null,"headers":null}"#,
            r#"{"path":"/a","method":"GET","params":{},"headers":{}}"#,
        ] {
            let header = format!(r#"{{"method":"message","id":"TM1","http_request":{request}}}"#);
            let frame = decode(&raw(&header, "")).unwrap();
            let message: MessageHeader = frame.header_as().unwrap();
            assert!(message.http_request.params.0.is_empty());
            assert!(message.http_request.headers.0.is_empty());
        }
    }

    /// Every malformed input gives its error (and none panics).
    #[test]
    fn rejects_malformed_frames() {
        let ok = r#"{"method":"reply","payload_size":3}"#;
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (b"".to_vec(), FrameError::Truncated),
            (b"TWILS".to_vec(), FrameError::Truncated),
            (b"TWILSOCK V3.0 12".to_vec(), FrameError::Truncated),
            (b"TWILSOCK V3.0".to_vec(), FrameError::Truncated),
            (b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), FrameError::BadMagic),
            (b"{\"method\":\"init\"}".to_vec(), FrameError::BadMagic),
            (b"TWILSOCK V2.0 2\r\n{}\r\n".to_vec(), FrameError::UnsupportedVersion("V2.0".into())),
            (b"TWILSOCK V3.0\r\n{}\r\n".to_vec(), FrameError::BadHeaderLength(String::new())),
            (b"TWILSOCK V3.0 abc\r\n{}\r\n".to_vec(), FrameError::BadHeaderLength("abc".into())),
            (b"TWILSOCK V3.0 -2\r\n{}\r\n".to_vec(), FrameError::BadHeaderLength("-2".into())),
            (b"TWILSOCK V3.0 +2\r\n{}\r\n".to_vec(), FrameError::BadHeaderLength("+2".into())),
            (b"TWILSOCK V3.0 2 \r\n{}\r\n".to_vec(), FrameError::BadHeaderLength("2 ".into())),
            (b"TWILSOCK V3.0 1234567890\r\n{}".to_vec(), FrameError::BadHeaderLength("1234567890".into())),
            (b"TWILSOCK V3.0 99999999999999999999\r\n{}".to_vec(), FrameError::BadHeaderLength("999999999999".into())),
            (b"TWILSOCK V3.0 12x".to_vec(), FrameError::BadHeaderLength("12x".into())),
            (b"TWILSOCK V2".to_vec(), FrameError::UnsupportedVersion("V2".into())),
            (
                b"TWILSOCK V3.0 2\r\n{}\r\n".to_vec(),
                FrameError::BadHeader("missing field `method` at line 1 column 2".into()),
            ),
            (b"TWILSOCK V3.0 50\r\n{}\r\n".to_vec(), FrameError::HeaderPastEnd { declared: 50, available: 4 }),
            (
                b"TWILSOCK V3.0 999999999\r\n".to_vec(),
                FrameError::HeaderPastEnd { declared: 999_999_999, available: 0 },
            ),
            (format!("TWILSOCK V3.0 {}\r\n{ok}\nabc", ok.len()).into_bytes(), FrameError::MissingSeparator),
            (format!("TWILSOCK V3.0 {}\r\n{ok}XXabc", ok.len()).into_bytes(), FrameError::MissingSeparator),
            (raw(ok, "ab"), FrameError::PayloadSizeMismatch { declared: 3, actual: 2 }),
            (raw(ok, "abcd"), FrameError::PayloadSizeMismatch { declared: 3, actual: 4 }),
            (raw(r#"{"method":"reply"}"#, "x"), FrameError::PayloadSizeMismatch { declared: 0, actual: 1 }),
            (
                format!("TWILSOCK V3.0 {}\r\n{ok}", ok.len()).into_bytes(),
                FrameError::PayloadSizeMismatch { declared: 3, actual: 0 },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode(&bytes), Err(expected), "{:?}", String::from_utf8_lossy(&bytes));
        }
        for header in [
            "{",
            "null",
            "[]",
            "{}",
            r#"{"method":7}"#,
            r#"{"method":"reply","payload_size":-1}"#,
            r#"{"method":"reply","payload_size":"3"}"#,
            r#"{"method":"reply","payload_size":1.5}"#,
            r#"{"method":"reply","id":5}"#,
        ] {
            assert!(matches!(decode(&raw(header, "")), Err(FrameError::BadHeader(_))), "{header}");
        }
        let invalid_utf8 = [&b"TWILSOCK V3.0 4\r\n"[..], &[b'"', 0xff, 0xfe, b'"'], b"\r\n"].concat();
        assert!(matches!(decode(&invalid_utf8), Err(FrameError::BadHeader(_))));
        let frame = decode(&raw(r#"{"method":"reply","payload_size":3}"#, "abc")).unwrap();
        assert!(matches!(frame.json_payload(), Err(FrameError::BadPayload(_))));
    }

    /// Every prefix and every single-byte corruption of a valid frame decodes or fails, never panics.
    #[test]
    fn never_panics_on_mangled_frames() {
        let bytes = encode(&Header::reply("TM1", &Status::ok()).with_payload_type(JSON), b"{\"a\":1}");
        for end in 0..=bytes.len() {
            let _ = decode(&bytes[..end]);
        }
        for i in 0..bytes.len() {
            for value in [0u8, b' ', b'\r', b'\n', b'9', b'{', 0xff] {
                let mut mangled = bytes.clone();
                mangled[i] = value;
                let _ = decode(&mangled);
            }
        }
    }

    #[test]
    fn status_shapes() {
        assert_eq!(Status::ok().to_json(), json!({"code": 200, "status": "OK"}));
        assert_eq!(
            Status::new(401, "Unauthorized").with_error(20104, "expired").to_json(),
            json!({"code": 401, "status": "Unauthorized", "errorCode": 20104, "description": "expired"})
        );
        let reply = Header::reply("TM9", &Status::ok());
        assert_eq!(reply.method, "reply");
        assert_eq!(reply.field("status"), Some(&json!({"code": 200, "status": "OK"})));
    }

    #[test]
    fn ids_have_the_sdk_shape() {
        let id = new_frame_id();
        assert_eq!(id.len(), 34);
        assert!(id.starts_with("TM") && id[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, new_frame_id());
        assert!(random_id("CT").starts_with("CT"));
    }
}
