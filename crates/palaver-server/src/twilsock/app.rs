//! What the twilsock tunnel reaches: the SDK's client API, the Sync projection and typing, for one connection.
//!
//! Routes (paths as tunnelled; every link the SDK follows comes from the Configuration, so only
//! `Client/v2/Configuration` and the Sync paths are fixed by the SDK):
//!
//! | path | methods |
//! |---|---|
//! | `/Client/v2/Configuration`, `/Client/v2/ContentTemplates` (always empty) | GET |
//! | `/Client/v2/Services/{IS}/Me/Conversations[/{CH or unique name}]` | GET, POST |
//! | `/Client/v2/Services/{IS}/Conversations[/{CH}]` | POST (create), GET, POST, DELETE |
//! | `/Client/v2/Services/{IS}/Conversations/{CH}/Participants[/{MB or identity}]` | POST, GET, DELETE |
//! | `/Client/v2/Services/{IS}/Conversations/{CH}/Messages[/{IM}[/Receipts]]` | POST, GET, DELETE |
//! | `/Client/v2/Services/{IS}/Conversations/{CH}/MessageRecipients` | GET |
//! | `/Client/v2/Services/{IS}/Users/{identity}` | GET, POST |
//! | `/Client/v2/Services/{IS}/Typing` | POST |
//! | `/v3/{Documents,Lists,Maps}/{id}[/Items]` | GET |
//! | `/v4/Subscriptions` | POST |
//! | `/v1/registrations[/{BS}]` (push registrations) | POST, DELETE |

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use palaver_core::input::Identity;
use palaver_core::session::UserSession;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::client_api::{self, Body, ClientLinks};
use super::pump::{Command, Pump};
use super::sync::Links;
use super::sync_api::{self, Query};
use super::{Notifier, TunnelRequest, TunnelResponse};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::token::VerifiedToken;

/// One connection's view of Palaver once `init` was accepted: the user it is bound to, and the pump that
/// pushes its Sync events and typing indicators.
#[derive(Debug)]
pub(crate) struct TunnelSession {
    state: AppState,
    session: UserSession,
    account: String,
    commands: mpsc::Sender<Command>,
    /// The push credential the token's chat grant names, for push registrations.
    push_credential: Option<palaver_api::sid::CredentialSid>,
    /// This session's place in the per-identity count, freed when it ends.
    _session_slot: crate::limits::SessionSlot,
    /// Its place in `palaver_realtime_sessions`.
    _open: crate::metrics::Open,
}

impl std::fmt::Debug for Pump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pump").finish_non_exhaustive()
    }
}

impl TunnelSession {
    /// Opens the session for the user `token` names; pushes notifications through `notifier` until it closes.
    ///
    /// # Errors
    /// When the token's service or identity is not usable (answered to `init` as a rejection).
    pub(crate) async fn open(state: AppState, token: &VerifiedToken, notifier: Notifier) -> Result<Self, ApiError> {
        let service = match &token.service_sid {
            Some(sid) => sid.clone(),
            None => state.palaver.default_service().await?,
        };
        let identity = Identity::parse("identity", &token.identity)?;
        let session_slot = state
            .sessions
            .claim(service.as_str(), identity.as_str(), state.limits.max_sessions_per_identity)
            .inspect_err(|_| state.metrics.refused(crate::metrics::Refusal::SessionsPerIdentity))?;
        let (session, user) = UserSession::open(state.palaver.clone(), service, identity).await?;
        let (commands, received) = mpsc::channel(64);
        // The pump's links are fixed at the first request's host; until then the server's own address serves.
        let links = Links { base: public_base(&state) };
        Pump::spawn(session.clone(), links, notifier, user.sid.to_string(), received, state.metrics.clone());
        let account = state.credentials.account_sid.to_string();
        let push_credential = token.push_credential_sid.clone();
        let open = state.metrics.session_opened(crate::metrics::Api::Twilsock);
        Ok(Self { state, session, account, commands, push_credential, _session_slot: session_slot, _open: open })
    }

    /// Answers one tunnelled request. Requests may arrive concurrently.
    pub(crate) async fn handle(&self, request: TunnelRequest) -> TunnelResponse {
        let mutation = request.header("X-Twilio-Mutation-Id").filter(|_| request.method != "GET").map(str::to_string);
        let key = mutation.as_ref().map(|m| (self.session.identity().as_str().to_string(), m.clone()));
        if let Some(key) = &key
            && let Some(resource_url) = MutationLog::global().seen(key)
        {
            // Already done (the SDK retried after losing the answer): the SDK fetches the resource instead.
            return TunnelResponse::json(202, json!({"resource_url": resource_url}));
        }
        let outcome = self.route(&request).await;
        match outcome {
            Ok((status, body)) => {
                if let Some(key) = key {
                    let url = body.get("url").and_then(Value::as_str).unwrap_or_default().to_string();
                    MutationLog::global().remember(key, url);
                }
                TunnelResponse::json(status, body)
            }
            Err(err) => error_response(&err),
        }
    }

    fn client_links(&self, request: &TunnelRequest) -> ClientLinks {
        let base = tunnel_base(request);
        ClientLinks {
            service: format!("{base}/Client/v2/Services/{}", self.session.service()),
            media_base: media_base(&self.state, request),
        }
    }

    async fn route(&self, request: &TunnelRequest) -> ApiResult<(u16, Value)> {
        let segments: Vec<String> = request
            .path
            .trim_matches('/')
            .split('/')
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = request.method.as_str();
        let links = self.client_links(request);
        let session = &self.session;
        let body = || parse_body(request);
        let ok = |value: Value| Ok((200, value));
        match (method, segments.as_slice()) {
            ("GET", ["Client", "v2", "Configuration"]) => {
                ok(client_api::configuration(&links, session, self.state.palaver.typing_timeout().as_secs()))
            }
            // Palaver has no Content API: there are no templates to list.
            ("GET", ["Client", "v2", "ContentTemplates"]) => {
                ok(json!({"templates": [], "meta": {"next_token": null, "previous_token": null}}))
            }
            (_, ["Client", "v2", "Services", service, rest @ ..]) => {
                if *service != session.service().as_str() {
                    return Err(ApiError::not_found(&request.path));
                }
                self.route_service(method, rest, &links, request, body).await
            }
            ("GET", ["v3", collection @ ("Documents" | "Lists" | "Maps"), id]) => {
                let include = request.param("Include") == Some("items");
                ok(sync_api::object(session, &sync_links(request), collection, id, include).await?)
            }
            ("GET", ["v3", collection @ ("Lists" | "Maps"), id, "Items"]) => {
                let query = Query {
                    descending: request.param("Order") == Some("desc"),
                    from: request.param("From").map(str::to_string),
                    exact: request.param("Key").or(request.param("Index")).map(str::to_string),
                    size: request.param("PageSize").and_then(|s| s.parse().ok()),
                    token: request.param("PageToken").map(str::to_string),
                };
                ok(sync_api::items(session, &sync_links(request), collection, id, &query).await?)
            }
            ("POST", ["v4", "Subscriptions"]) => self.subscriptions(&body()?).await,
            // Push registrations (the SDK's registrar, "ERS", reached through the tunnel whatever its host).
            ("POST", ["v1", "registrations"]) => self.register_push(&body()?).await,
            ("DELETE", ["v1", "registrations", binding]) => self.unregister_push_binding(binding).await,
            ("DELETE", ["v1", "registrations"]) => self.unregister_push_address(&body()?).await,
            _ => Err(ApiError::not_found(&request.path)),
        }
    }

    /// `POST {ersUrl}`: `{channel_type, message_types, data: {registration_id}}` registers the device for
    /// the connection's user; answers `{id}`, the binding's SID, which a removal names.
    async fn register_push(&self, body: &Body) -> ApiResult<(u16, Value)> {
        let kind = body.0.get("channel_type").and_then(Value::as_str).unwrap_or_default();
        let kind = palaver_core::push::BindingType::parse("channel_type", kind)?;
        let token = body.0.get("data").and_then(|d| d.get("registration_id")).and_then(Value::as_str);
        let token = token.ok_or_else(|| ApiError::invalid("data.registration_id", "is required"))?;
        // The SDK also subscribes to typing and read-horizon notices, which are not push notifications.
        let types: Vec<palaver_core::push::PushType> = body
            .0
            .get("message_types")
            .and_then(Value::as_array)
            .map(|types| {
                types.iter().filter_map(Value::as_str).filter_map(palaver_core::push::PushType::parse).collect()
            })
            .unwrap_or_default();
        let binding = self.session.register_push(kind, token, &types, self.push_credential.clone()).await?;
        Ok((200, json!({"id": binding.sid.to_string()})))
    }

    /// `DELETE {ersUrl}/{id}`: removes one of the user's bindings.
    async fn unregister_push_binding(&self, raw: &str) -> ApiResult<(u16, Value)> {
        let missing = || ApiError::not_found(format!("/v1/registrations/{raw}"));
        let sid = palaver_api::sid::PushBindingSid::parse(raw).map_err(|_| missing())?;
        match self.session.unregister_push_binding(&sid).await {
            Ok(()) => Ok((200, json!({}))),
            Err(palaver_core::Error::NotFound { .. }) => Err(missing()),
            Err(other) => Err(other.into()),
        }
    }

    /// `DELETE {ersUrl}` with `{binding_type, address}`: removes the user's binding of that device.
    async fn unregister_push_address(&self, body: &Body) -> ApiResult<(u16, Value)> {
        let kind = body.0.get("binding_type").and_then(Value::as_str).unwrap_or_default();
        let kind = palaver_core::push::BindingType::parse("binding_type", kind)?;
        let address = body.0.get("address").and_then(Value::as_str);
        self.session.unregister_push(kind, address).await?;
        Ok((200, json!({})))
    }

    async fn route_service(
        &self,
        method: &str,
        rest: &[&str],
        links: &ClientLinks,
        request: &TunnelRequest,
        body: impl Fn() -> ApiResult<Body>,
    ) -> ApiResult<(u16, Value)> {
        let (session, account) = (&self.session, self.account.as_str());
        let ok = |value: Value| Ok((200, value));
        let no_content = || Ok((204, Value::Null));
        match (method, rest) {
            ("GET", ["Me", "Conversations"]) => ok(client_api::my_conversations(
                links,
                account,
                session,
                request.param("PageToken"),
                request.param("PageSize"),
            )
            .await?),
            ("GET", ["Me", "Conversations", conv]) => {
                ok(client_api::my_conversation(links, account, session, conv).await?)
            }
            ("POST", ["Me", "Conversations", conv]) => {
                ok(client_api::update_my_conversation(links, account, session, conv, &body()?).await?)
            }
            ("POST", ["Conversations"]) => {
                Ok((201, client_api::create_conversation(links, account, session, &body()?).await?))
            }
            ("GET", ["Conversations", conv]) => ok(client_api::conversation(links, account, session, conv).await?),
            ("POST", ["Conversations", conv]) => {
                ok(client_api::update_conversation(links, account, session, conv, &body()?).await?)
            }
            ("DELETE", ["Conversations", conv]) => {
                client_api::delete_conversation(session, conv).await?;
                no_content()
            }
            ("POST", ["Conversations", conv, "Participants"]) => {
                Ok((201, client_api::add_participant(links, account, session, conv, &body()?).await?))
            }
            ("GET", ["Conversations", conv, "Participants", p]) => {
                ok(client_api::participant(links, account, session, conv, p).await?)
            }
            ("POST", ["Conversations", conv, "Participants", p]) => {
                ok(client_api::update_participant(links, account, session, conv, p, &body()?).await?)
            }
            ("DELETE", ["Conversations", conv, "Participants", p]) => {
                client_api::remove_participant(session, conv, p).await?;
                no_content()
            }
            ("POST", ["Conversations", conv, "Messages"]) => {
                let mutation = request.header("X-Twilio-Mutation-Id");
                Ok((201, client_api::send_message(links, account, session, conv, &body()?, mutation).await?))
            }
            ("GET", ["Conversations", conv, "Messages", m]) => {
                ok(client_api::message(links, account, session, conv, m).await?)
            }
            ("POST", ["Conversations", conv, "Messages", m]) => {
                ok(client_api::update_message(links, account, session, conv, m, &body()?).await?)
            }
            ("DELETE", ["Conversations", conv, "Messages", m]) => {
                client_api::remove_message(session, conv, m).await?;
                no_content()
            }
            ("GET", ["Conversations", conv, "Messages", m, "Receipts"]) => {
                ok(client_api::receipts(session, conv, m).await?)
            }
            ("GET", ["Conversations", conv, "MessageRecipients"]) => ok(client_api::message_recipients(
                session,
                conv,
                request.param("MessageSid"),
                request.param("PageToken"),
                request.param("PageSize"),
            )
            .await?),
            ("GET", ["Users", identity]) => ok(client_api::user(links, account, session, identity).await?),
            ("POST", ["Users", identity]) => {
                ok(client_api::update_user(links, account, session, identity, &body()?).await?)
            }
            ("POST", ["Typing"]) => {
                ok(client_api::typing(session, &body()?, self.state.palaver.typing_timeout().as_secs()).await?)
            }
            _ => Err(ApiError::not_found(&request.path)),
        }
    }

    /// POST /v4/Subscriptions — `{action: establish|cancel, correlation_id, requests: [{object_sid,
    /// object_type, last_event_id}]}`. Answered at once; the pump then sends each object's replay and its
    /// `subscription_established` (or `subscription_failed` / `subscription_canceled`).
    async fn subscriptions(&self, body: &Body) -> ApiResult<(u16, Value)> {
        let correlation_id = body.0.get("correlation_id").cloned().unwrap_or(Value::Null);
        let requests = body.0.get("requests").and_then(Value::as_array).cloned().unwrap_or_default();
        let object = |r: &Value| {
            (
                r.get("object_sid").and_then(Value::as_str).unwrap_or_default().to_string(),
                r.get("object_type").and_then(Value::as_str).unwrap_or_default().to_string(),
            )
        };
        let command = match body.0.get("action").and_then(Value::as_str) {
            Some("establish") => Command::Establish {
                correlation_id,
                objects: requests
                    .iter()
                    .map(|r| {
                        let (sid, kind) = object(r);
                        (sid, kind, r.get("last_event_id").and_then(Value::as_i64).unwrap_or(0))
                    })
                    .collect(),
            },
            Some("cancel") => Command::Cancel { correlation_id, objects: requests.iter().map(object).collect() },
            other => return Err(ApiError::invalid("action", format!("{other:?} is not establish or cancel"))),
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| ApiError::new(palaver_api::ErrorCode::InternalError, "the connection is closing"))?;
        Ok((202, json!({"estimated_delivery_in_ms": 5000, "max_batch_size": 100, "ttl_in_s": -1})))
    }
}

/// A failed request, answered the way the SDK surfaces it: Twilio's error JSON with the HTTP status.
pub(super) fn error_response(err: &ApiError) -> TunnelResponse {
    let error = err.realtime();
    let mut response = TunnelResponse::json(
        error.status,
        json!({"status": error.status, "code": error.code, "message": error.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", error.code)}),
    );
    if let Some(wait) = err.retry_after() {
        response.headers.push(("Retry-After".into(), crate::error::retry_after_seconds(wait).to_string()));
    }
    response
}

fn parse_body(request: &TunnelRequest) -> ApiResult<Body> {
    if request.body.is_empty() {
        return Ok(Body::default());
    }
    let form = request.content_type.as_deref().is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&request.body)
            .map_err(|e| ApiError::invalid("body", format!("is not a form: {e}")))?;
        return Ok(Body(pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect::<Map<_, _>>()));
    }
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(map)) => Ok(Body(map)),
        Ok(_) => Err(ApiError::invalid("body", "is not a JSON object")),
        Err(e) => Err(ApiError::invalid("body", format!("is not JSON: {e}"))),
    }
}

/// `http://{host}` of a tunnelled request: links only need to route back through the tunnel.
fn tunnel_base(request: &TunnelRequest) -> String {
    let host = request.host.trim();
    if host.is_empty() || host.contains(['/', ' ', '\\']) {
        "http://palaver.invalid".to_string()
    } else {
        format!("http://{host}")
    }
}

fn sync_links(request: &TunnelRequest) -> Links {
    Links { base: tunnel_base(request) }
}

/// Where the SDK fetches media over real HTTP: the configured public URL, else the address the SDK used.
fn media_base(state: &AppState, request: &TunnelRequest) -> String {
    state
        .channels
        .public_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| tunnel_base(request))
}

fn public_base(state: &AppState) -> String {
    state
        .channels
        .public_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| "http://palaver.invalid".into())
}

/// Mutations already applied, by (identity, `X-Twilio-Mutation-Id`), so that a retry is answered 202 with the
/// resource instead of being applied twice. Kept ten minutes (the SDK retries within seconds).
#[derive(Debug, Default)]
struct MutationLog {
    seen: Mutex<HashMap<(String, String), (String, Instant)>>,
}

const MUTATION_TTL: Duration = Duration::from_secs(600);

impl MutationLog {
    fn global() -> &'static Self {
        static LOG: OnceLock<MutationLog> = OnceLock::new();
        LOG.get_or_init(Self::default)
    }

    fn seen(&self, key: &(String, String)) -> Option<String> {
        let seen = self.seen.lock().ok()?;
        seen.get(key).filter(|(_, at)| at.elapsed() < MUTATION_TTL).map(|(url, _)| url.clone())
    }

    fn remember(&self, key: (String, String), resource_url: String) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() > 100_000 {
                seen.retain(|_, (_, at)| at.elapsed() < MUTATION_TTL);
            }
            seen.insert(key, (resource_url, Instant::now()));
        }
    }
}
