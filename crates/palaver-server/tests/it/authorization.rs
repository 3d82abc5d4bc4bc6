//! The authorization matrix, in one place: every REST operation and every realtime method, against every kind
//! of caller, gets exactly its answer, and never data or a change when refused.
//!
//! - REST: the operations are listed in [`REST_OPERATIONS`]; a tidy check reads `src/http/mod.rs` (and the other
//!   route lists) so that a route added there without a row here fails, and every path is probed with the
//!   methods it does not list (405) so that the rows are exactly what the server serves.
//! - Tokens: every way an access token can be wrong, on both WebSocket APIs.
//! - Realtime methods × the four kinds of chat user: outside the conversation, participant, conversation admin,
//!   service admin.

use std::collections::{BTreeMap, BTreeSet};

use palaver_api::token::{AccessTokenClaims, ChatGrant, Grants};
use palaver_core::input::FriendlyName;
use palaver_testkit::TestServer;
use serde_json::{Value, json};

use crate::api::Api;
use crate::realtime::Raw;

/// Every REST operation that takes account credentials (Basic: account SID + auth token, or API key + secret).
/// `{name}` segments are filled from the fixture.
const REST_OPERATIONS: &[(&str, &str)] = &[
    ("GET", "/v1/Configuration"),
    ("POST", "/v1/Configuration"),
    ("GET", "/v1/Configuration/Webhooks"),
    ("POST", "/v1/Configuration/Webhooks"),
    ("GET", "/v1/Services/{service}/Configuration/Webhooks"),
    ("POST", "/v1/Services/{service}/Configuration/Webhooks"),
    ("GET", "/v1/Configuration/Addresses"),
    ("POST", "/v1/Configuration/Addresses"),
    ("GET", "/v1/Configuration/Addresses/{address}"),
    ("POST", "/v1/Configuration/Addresses/{address}"),
    ("DELETE", "/v1/Configuration/Addresses/{address}"),
    ("GET", "/v1/Services"),
    ("POST", "/v1/Services"),
    ("GET", "/v1/Services/{service}"),
    ("DELETE", "/v1/Services/{service}"),
    ("GET", "/v1/Services/{service}/Configuration"),
    ("POST", "/v1/Services/{service}/Configuration"),
    // Served at /v1/… (the default service) and at /v1/Services/{service}/… alike: see `service_routes`.
    ("GET", "{scope}/Conversations"),
    ("POST", "{scope}/Conversations"),
    ("GET", "{scope}/Conversations/{conversation}"),
    ("POST", "{scope}/Conversations/{conversation}"),
    ("DELETE", "{scope}/Conversations/{conversation}"),
    ("GET", "{scope}/Conversations/{conversation}/Participants"),
    ("POST", "{scope}/Conversations/{conversation}/Participants"),
    ("GET", "{scope}/Conversations/{conversation}/Participants/{participant}"),
    ("POST", "{scope}/Conversations/{conversation}/Participants/{participant}"),
    ("DELETE", "{scope}/Conversations/{conversation}/Participants/{participant}"),
    ("GET", "{scope}/Conversations/{conversation}/Messages"),
    ("POST", "{scope}/Conversations/{conversation}/Messages"),
    ("GET", "{scope}/Conversations/{conversation}/Messages/{message}"),
    ("POST", "{scope}/Conversations/{conversation}/Messages/{message}"),
    ("DELETE", "{scope}/Conversations/{conversation}/Messages/{message}"),
    ("GET", "{scope}/Conversations/{conversation}/Messages/{message}/Receipts"),
    ("GET", "{scope}/Conversations/{conversation}/Messages/{message}/Receipts/{receipt}"),
    ("GET", "{scope}/Conversations/{conversation}/Webhooks"),
    ("POST", "{scope}/Conversations/{conversation}/Webhooks"),
    ("GET", "{scope}/Conversations/{conversation}/Webhooks/{webhook}"),
    ("POST", "{scope}/Conversations/{conversation}/Webhooks/{webhook}"),
    ("DELETE", "{scope}/Conversations/{conversation}/Webhooks/{webhook}"),
    ("POST", "{scope}/ConversationWithParticipants"),
    ("GET", "{scope}/ParticipantConversations"),
    ("GET", "{scope}/Users"),
    ("POST", "{scope}/Users"),
    ("GET", "{scope}/Users/{user}"),
    ("POST", "{scope}/Users/{user}"),
    ("DELETE", "{scope}/Users/{user}"),
    ("GET", "{scope}/Users/{user}/Conversations"),
    ("GET", "{scope}/Users/{user}/Conversations/{conversation}"),
    ("POST", "{scope}/Users/{user}/Conversations/{conversation}"),
    ("DELETE", "{scope}/Users/{user}/Conversations/{conversation}"),
    ("GET", "{scope}/Roles"),
    ("POST", "{scope}/Roles"),
    ("GET", "{scope}/Roles/{role}"),
    ("POST", "{scope}/Roles/{role}"),
    ("DELETE", "{scope}/Roles/{role}"),
    // Push notifications.
    ("GET", "/v1/Credentials"),
    ("POST", "/v1/Credentials"),
    ("GET", "/v1/Credentials/{credential}"),
    ("POST", "/v1/Credentials/{credential}"),
    ("DELETE", "/v1/Credentials/{credential}"),
    ("GET", "/v1/Services/{service}/Bindings"),
    ("GET", "/v1/Services/{service}/Bindings/{binding}"),
    ("DELETE", "/v1/Services/{service}/Bindings/{binding}"),
    ("GET", "/v1/Services/{service}/Configuration/Notifications"),
    ("POST", "/v1/Services/{service}/Configuration/Notifications"),
    // Media take Basic credentials or an access token (X-Twilio-Token).
    ("POST", "{scope}/Media"),
    ("GET", "{scope}/Media/{media}"),
    ("GET", "{scope}/Media/{media}/Content"),
    ("POST", "/mcs/v1/Services/{service}/Media"),
    ("GET", "/mcs/v1/Services/{service}/Media/{media}"),
    ("GET", "/mcs/v1/Services/{service}/Media/{media}/Content"),
    ("POST", "/mcs/v1/Services/{service}/MediaSet"),
    // Palaver's own resources for operators.
    ("POST", "/palaver/v1/AccessTokens"),
    ("GET", "/palaver/v1/WebhookDeliveries"),
    ("GET", "/palaver/v1/WebhookOutbox"),
    ("GET", "/palaver/v1/ChannelDeliveries"),
    ("GET", "/palaver/v1/WebhookOutbox"),
    // Metrics for the operator's scraper (docs/operations.md).
    ("GET", "/metrics"),
];

/// Routes that are not account-credential operations, and who may call them instead.
const OTHER_ROUTES: &[(&str, &str)] = &[
    ("/healthz", "anyone: liveness"),
    ("/readyz", "anyone: readiness"),
    ("/v1/realtime", "access token in connect (see the token matrix)"),
    ("/v3/wsconnect", "access token in init (see the token matrix)"),
    ("/v1/Channels/Messaging/Inbound", "the messaging gateway: X-Twilio-Signature, or Basic"),
    ("/v1/Channels/Messaging/Status", "the messaging gateway: X-Twilio-Signature, or Basic"),
    ("/v1/Channels/Email/Inbound", "the mail relay: Basic"),
    ("/v1/MediaContent/{media}", "a signed, expiring link"),
    ("/console", "anyone: the console's page (it signs in through the API)"),
    ("/console/", "anyone: the console's page"),
    ("/console/{*path}", "anyone: the console's static files"),
    ("/console/{path}", "the same route, as the tidy check reads `{*path}`"),
];

/// The SIDs the operations are tried on.
struct Fixture {
    service: String,
    default_service: String,
    conversation: String,
    participant: String,
    message: String,
    receipt: String,
    webhook: String,
    user: String,
    role: String,
    address: String,
    media: String,
    credential: String,
    binding: String,
}

impl Fixture {
    async fn build(api: &Api) -> Self {
        let ok = |(status, body): (u16, Value)| {
            assert!((200..300).contains(&status), "{status} {body}");
            body
        };
        let sid = |body: Value| body["sid"].as_str().unwrap().to_string();
        let service = sid(ok(api.post("/v1/Services", &[("FriendlyName", "second")]).await));
        let default_service =
            ok(api.get("/v1/Configuration").await)["default_chat_service_sid"].as_str().unwrap().to_string();
        let conversation = api.conversation(&[("FriendlyName", "matrix")]).await;
        let participant = sid(ok(api
            .post(&format!("/v1/Conversations/{conversation}/Participants"), &[("Identity", "alice")])
            .await));
        ok(api
            .post(
                &format!("/v1/Conversations/{conversation}/Participants"),
                &[("MessagingBinding.Address", "+15550001111"), ("MessagingBinding.ProxyAddress", "+15550002222")],
            )
            .await);
        let message = sid(ok(api
            .post(&format!("/v1/Conversations/{conversation}/Messages"), &[("Author", "alice"), ("Body", "hi")])
            .await));
        let receipts = ok(api.get(&format!("/v1/Conversations/{conversation}/Messages/{message}/Receipts")).await);
        let receipt = receipts["delivery_receipts"][0]["sid"].as_str().expect("a receipt for the SMS participant");
        let webhook = sid(ok(api
            .post(
                &format!("/v1/Conversations/{conversation}/Webhooks"),
                &[("Target", "webhook"), ("Configuration.Url", "http://127.0.0.1:9/hook")],
            )
            .await));
        let user = sid(ok(api.post("/v1/Users", &[("Identity", "bob")]).await));
        let role = sid(ok(api
            .post("/v1/Roles", &[("FriendlyName", "auditor"), ("Type", "conversation"), ("Permission", "sendMessage")])
            .await));
        let address =
            sid(ok(api.post("/v1/Configuration/Addresses", &[("Type", "sms"), ("Address", "+15550003333")]).await));
        let upload = api
            .http
            .post(api.url("/v1/Media?Filename=a.txt"))
            .basic_auth(api.server.account_sid(), Some(api.server.auth_token()))
            .header("content-type", "text/plain")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), 201);
        let media = upload.json::<Value>().await.unwrap()["sid"].as_str().unwrap().to_string();
        let subject = json!({"subject": "mailto:ops@example.com"}).to_string();
        let credential =
            sid(ok(api.post("/v1/Credentials", &[("Type", "webpush"), ("Certificate", subject.as_str())]).await));
        let (mut alice, _) = Raw::connect(api, "alice").await;
        let registered =
            alice.call("set_push_registration", json!({"kind": "fcm", "token": "device-token"})).await.unwrap();
        let binding = registered["binding_sid"].as_str().expect("a binding").to_string();
        Self {
            service,
            default_service,
            conversation,
            participant,
            message,
            receipt: receipt.to_string(),
            webhook,
            user,
            role,
            address,
            media,
            credential,
            binding,
        }
    }

    /// `template` with its placeholders filled; `{scope}` as `scope`.
    fn path(&self, template: &str, scope: &str) -> String {
        template
            .replace("{scope}", scope)
            .replace("{service}", &self.default_service)
            .replace("{conversation}", &self.conversation)
            .replace("{participant}", &self.participant)
            .replace("{message}", &self.message)
            .replace("{receipt}", &self.receipt)
            .replace("{webhook}", &self.webhook)
            .replace("{user}", &self.user)
            .replace("{role}", &self.role)
            .replace("{address}", &self.address)
            .replace("{media}", &self.media)
            .replace("{credential}", &self.credential)
            .replace("{binding}", &self.binding)
    }

    /// Every operation as (method, concrete path); scoped ones in both of their forms.
    fn operations(&self) -> Vec<(&'static str, String)> {
        let service_scope = format!("/v1/Services/{}", self.default_service);
        REST_OPERATIONS
            .iter()
            .flat_map(|(method, template)| {
                let scopes: Vec<&str> =
                    if template.starts_with("{scope}") { vec!["/v1", &service_scope] } else { vec![""] };
                scopes.into_iter().map(|scope| (*method, self.path(template, scope))).collect::<Vec<_>>()
            })
            .collect()
    }
}

/// A REST caller: what it puts in its request.
#[derive(Debug, Clone)]
enum Caller {
    Anonymous,
    Basic(String, String),
    Header(&'static str, String),
}

impl Caller {
    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Caller::Anonymous => request,
            Caller::Basic(user, password) => request.basic_auth(user, Some(password)),
            Caller::Header(name, value) => request.header(*name, value),
        }
    }
}

async fn send(api: &Api, caller: &Caller, method: &str, path: &str) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let request = caller.apply(api.http.request(method, api.url(path)));
    // A body every create accepts the shape of (and a harmless value for every update).
    let request = request.header("content-type", "application/x-www-form-urlencoded").body("FriendlyName=x");
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A refusal carries Twilio's error fields and nothing of the resource.
fn assert_refusal_only(body: &Value, what: &str) {
    let keys: BTreeSet<&str> = body.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    let allowed: BTreeSet<&str> = ["code", "message", "more_info", "status", "request_id"].into_iter().collect();
    assert!(!keys.is_empty() && keys.is_subset(&allowed), "{what}: a refusal with more than the error: {body}");
}

#[tokio::test]
async fn every_rest_operation_refuses_every_wrong_credential_and_serves_the_right_ones() {
    let api = Api::start().await;
    let fixture = Fixture::build(&api).await;
    let account = api.server.account_sid().to_string();
    let (key_sid, key_secret) = (api.server.api_key().0.to_string(), api.server.api_key().1.to_string());
    let palaver = api.server.palaver();
    let deleted = palaver.create_api_key(FriendlyName::parse("name", "short-lived").unwrap()).await.unwrap();
    palaver.delete_api_key(&deleted.sid).await.unwrap();
    // A key of another server (another account) is unknown here.
    let elsewhere = TestServer::spawn().await;
    let basic = |user: &str, password: &str| Caller::Basic(user.into(), password.into());
    let refused: Vec<(&str, Caller)> = vec![
        ("no credentials", Caller::Anonymous),
        ("the account with a wrong token", basic(&account, "not-the-token")),
        ("the account with an empty token", basic(&account, "")),
        ("an API key with the auth token", basic(&key_sid, api.server.auth_token())),
        ("an API key with a wrong secret", basic(&key_sid, "not-the-secret")),
        ("another account's API key", basic(elsewhere.api_key().0, elsewhere.api_key().1)),
        ("another account's credentials", basic(elsewhere.account_sid(), elsewhere.auth_token())),
        ("a deleted API key", basic(deleted.sid.as_str(), &deleted.secret)),
        ("a malformed Basic header", Caller::Header("authorization", "Basic !!not-base64!!".into())),
        (
            "an access token as a bearer",
            Caller::Header("authorization", format!("Bearer {}", api.server.access_token("alice"))),
        ),
    ];
    let allowed =
        [("the account", basic(&account, api.server.auth_token())), ("an API key", basic(&key_sid, &key_secret))];
    let operations = fixture.operations();
    let mut wrong = Vec::new();
    for (name, caller) in &refused {
        for (method, path) in &operations {
            let (status, body) = send(&api, caller, method, path).await;
            if status != 401 || body["code"] != 20003 {
                wrong.push(format!("{name}: {method} {path} answered {status} {body}"));
                continue;
            }
            assert_refusal_only(&body, &format!("{name}: {method} {path}"));
        }
    }
    assert!(wrong.is_empty(), "refusals that were not 401/20003:\n{}", wrong.join("\n"));
    // Nothing was changed by any of them.
    let (status, conversation) = api.get(&format!("/v1/Conversations/{}", fixture.conversation)).await;
    assert_eq!((status, conversation["friendly_name"].as_str()), (200, Some("matrix")));
    let (_, messages) = api.get(&format!("/v1/Conversations/{}/Messages", fixture.conversation)).await;
    assert_eq!(messages["messages"].as_array().unwrap().len(), 1);
    let (status, _) = api.get(&format!("/v1/Services/{}", fixture.service)).await;
    assert_eq!(status, 200);

    // The right credentials reach every operation (deletions last, so the others find their resource).
    let mut ordered = operations.clone();
    ordered.sort_by_key(|(method, _)| *method == "DELETE");
    for (name, caller) in &allowed {
        for (method, path) in &ordered {
            let (status, body) = send(&api, caller, method, path).await;
            assert!(
                !matches!(status, 401 | 403 | 405) && status < 500,
                "{name}: {method} {path} answered {status} {body}"
            );
        }
    }
}

#[tokio::test]
async fn the_rest_operations_listed_are_exactly_those_served() {
    let api = Api::start().await;
    let fixture = Fixture::build(&api).await;
    let caller = Caller::Basic(api.server.account_sid().into(), api.server.auth_token().into());
    // Methods a path is not listed with are not served there.
    let mut listed: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (method, path) in fixture.operations() {
        listed.entry(path).or_default().insert(method);
    }
    for (path, methods) in &listed {
        for method in ["GET", "POST", "DELETE"].into_iter().filter(|m| !methods.contains(m)) {
            let (status, body) = send(&api, &caller, method, path).await;
            assert_eq!(status, 405, "{method} {path} is served but not in REST_OPERATIONS: {body}");
        }
    }
    // Every route the server declares is in one of the two lists.
    let sources = ["src/http/mod.rs", "src/http/palaver.rs", "src/http/push.rs", "src/console.rs"];
    let mut declared = BTreeSet::new();
    for source in sources {
        let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(source)).unwrap();
        // Paths given to `.route(` or opening a `("/…", handlers)` tuple; not the `format!("/…")` of messages.
        let parts: Vec<&str> = text.split('"').collect();
        for pair in parts.windows(2).step_by(2) {
            let (before, literal) = (pair[0].trim_end(), pair[1]);
            let declares = before.ends_with(".route(") || (before.ends_with('(') && !before.ends_with("!("));
            if declares && literal.starts_with('/') && literal.len() > 1 {
                declared.insert(literal.to_string());
            }
        }
    }
    let known: BTreeSet<String> = REST_OPERATIONS
        .iter()
        .map(|(_, template)| template.replace("{scope}", ""))
        .chain(REST_OPERATIONS.iter().map(|(_, t)| t.replace("{scope}", "/v1")))
        .chain(OTHER_ROUTES.iter().map(|(path, _)| (*path).to_string()))
        .collect();
    // Service routes are declared below the scope (`/Conversations`), and once as the `format!` that adds it.
    let unknown: Vec<&String> = declared
        .iter()
        .filter(|path| !known.contains(*path) && !known.contains(&format!("/v1{path}")))
        .filter(|path| !known.contains(&path.replace("/v1/Services/{service}", "/v1")))
        .filter(|path| !["/v1{path}", "/v1/Services/{{service}}{path}"].contains(&path.as_str()))
        .collect();
    assert!(unknown.is_empty(), "routes without a row in the authorization matrix: {unknown:?}");
}

/// A token of the server's API key with `claims` changed by `edit`.
fn token_with(server: &TestServer, edit: impl FnOnce(&mut AccessTokenClaims)) -> String {
    let (key_sid, secret) = server.api_key();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = AccessTokenClaims {
        jti: Some(format!("{key_sid}-{now}")),
        iss: key_sid.to_string(),
        sub: server.account_sid().to_string(),
        exp: now + 3600,
        nbf: Some(now),
        grants: Grants { identity: Some("alice".into()), chat: Some(ChatGrant::default()), ..Grants::default() },
    };
    edit(&mut claims);
    palaver_api::token::encode(&claims, secret)
}

/// Every way a token can be wrong, with the code both WebSocket APIs answer it with.
fn bad_tokens(server: &TestServer, deleted_key: (&str, &str)) -> Vec<(&'static str, String, u64)> {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let good = server.access_token("alice");
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["grants"]["identity"] = json!("mallory");
    let tampered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    let alg_none = format!("{}.{}.", b64(&json!({"typ": "JWT", "alg": "none"})), parts[1]);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let deleted = {
        let (key_sid, secret) = deleted_key;
        let claims = AccessTokenClaims {
            jti: None,
            iss: key_sid.to_string(),
            sub: server.account_sid().to_string(),
            exp: now + 3600,
            nbf: None,
            grants: Grants { identity: Some("alice".into()), ..Grants::default() },
        };
        palaver_api::token::encode(&claims, secret)
    };
    vec![
        ("expired", server.access_token_with_ttl("alice", -60), 20104),
        ("not valid yet", token_with(server, |c| c.nbf = Some(now + 3600)), 20101),
        ("tampered claims", tampered, 20101),
        ("alg none", alg_none, 20101),
        (
            "signed with another secret",
            {
                let claims = token_with(server, |_| {});
                let parts: Vec<&str> = claims.split('.').collect();
                let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
                palaver_api::token::encode(&serde_json::from_slice(&decoded).unwrap(), "another-secret")
            },
            20101,
        ),
        ("an unknown issuer", token_with(server, |c| c.iss = "SK0123456789abcdef0123456789abcdef".into()), 20101),
        ("a deleted key", deleted, 20101),
        ("another account", token_with(server, |c| c.sub = "AC0123456789abcdef0123456789abcdef".into()), 20101),
        ("no identity", token_with(server, |c| c.grants.identity = None), 20101),
        (
            "a malformed service",
            token_with(server, |c| {
                c.grants.chat = Some(ChatGrant { service_sid: Some("not-a-service".into()), ..ChatGrant::default() })
            }),
            20101,
        ),
        ("not a JWT", "not-a-jwt".into(), 20101),
    ]
}

#[tokio::test]
async fn every_bad_token_is_refused_by_both_websocket_apis_with_its_code() {
    let api = Api::start().await;
    let deleted = api.server.palaver().create_api_key(FriendlyName::parse("name", "gone").unwrap()).await.unwrap();
    api.server.palaver().delete_api_key(&deleted.sid).await.unwrap();
    for (what, token, code) in bad_tokens(&api.server, (deleted.sid.as_str(), &deleted.secret)) {
        let mut raw = Raw::open(&api).await;
        let refused = raw.call("connect", json!({"token": token})).await.expect_err(what);
        assert_eq!(
            (refused["code"].as_u64(), refused["status"].as_u64()),
            (Some(code), Some(401)),
            "{what}: {refused}"
        );
        let mut twilsock = crate::twilsock::Client::open(&api.server).await;
        let reply = twilsock.init(&token, None).await;
        let status = crate::twilsock::status(&reply);
        assert_eq!(
            (status["code"].as_u64(), status["errorCode"].as_u64()),
            (Some(401), Some(code)),
            "{what}: {status}"
        );
    }
    // The same key's good token is let in.
    Raw::connect(&api, "alice").await;
}

/// What a realtime call should answer: a result, or an error code (with its status).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Ok,
    /// 50430, status 403: only participants may.
    NotParticipant,
    /// 20403, status 403: the caller's roles do not allow it.
    Forbidden,
    /// 50433, status 409: the caller is a participant already.
    Participating,
}

use Answer::{Forbidden as F, NotParticipant as N, Ok as Y, Participating as P};

/// The kinds of realtime caller, in the order of each row's answers: four chat users, and an observer (a
/// read-only token minted with account credentials, see `observer.rs`).
const CALLERS: [&str; 5] = ["outsider", "member", "cadmin", "sadmin", "watcher"];

/// One conversation made for one call: `owner` and `member` are participants with the conversation user role,
/// `cadmin` with the conversation admin role; `outsider` and `sadmin` (the service admin role) are users of the
/// service outside it. `owner` and `member` have sent a message each.
struct Room {
    conversation: String,
    owner_participant: String,
    owner_message: String,
}

async fn room(api: &Api, roles: &BTreeMap<String, String>) -> Room {
    let conversation = api.conversation(&[("FriendlyName", "room")]).await;
    let participants = format!("/v1/Conversations/{conversation}/Participants");
    let (_, owner) = api.post(&participants, &[("Identity", "owner")]).await;
    api.post(&participants, &[("Identity", "member")]).await;
    let (status, body) =
        api.post(&participants, &[("Identity", "cadmin"), ("RoleSid", roles["channel admin"].as_str())]).await;
    assert_eq!(status, 201, "{body}");
    let messages = format!("/v1/Conversations/{conversation}/Messages");
    let (_, owner_message) = api.post(&messages, &[("Author", "owner"), ("Body", "by the owner")]).await;
    api.post(&messages, &[("Author", "member"), ("Body", "by the member")]).await;
    Room {
        conversation,
        owner_participant: owner["sid"].as_str().unwrap().to_string(),
        owner_message: owner_message["sid"].as_str().unwrap().to_string(),
    }
}

/// A realtime method, its parameters in a [`Room`], and its answer for each of [`CALLERS`].
type Row = (&'static str, fn(&Room) -> Value, [Answer; 5]);

/// Every realtime method that acts as the user, its parameters in a [`Room`], and its answer for each of
/// [`CALLERS`]. (`connect` and `update_token` are the token matrix's.)
fn realtime_rows() -> Vec<Row> {
    vec![
        ("ping", |_| Value::Null, [Y, Y, Y, Y, Y]),
        ("get_my_conversations", |_| json!({}), [Y, Y, Y, Y, Y]),
        ("create_conversation", |_| json!({"friendly_name": "mine"}), [Y, Y, Y, Y, F]),
        ("get_user", |_| json!({"identity": "owner"}), [Y, Y, Y, Y, Y]),
        ("update_user", |_| json!({"friendly_name": "me"}), [Y, Y, Y, Y, F]),
        ("set_push_registration", |_| json!({"kind": "fcm", "token": "a-device"}), [Y, Y, Y, Y, F]),
        ("unset_push_registration", |_| json!({"kind": "fcm"}), [Y, Y, Y, Y, F]),
        // Anyone who may join a conversation may look it up and follow it; its contents stay behind the rows below.
        ("get_conversation", |r| json!({"conversation": r.conversation}), [Y, Y, Y, Y, Y]),
        ("subscribe", |r| json!({"conversation": r.conversation}), [Y, Y, Y, Y, Y]),
        ("unsubscribe", |r| json!({"conversation": r.conversation}), [Y, Y, Y, Y, Y]),
        ("join", |r| json!({"conversation": r.conversation}), [Y, P, P, Y, F]),
        (
            "update_conversation",
            |r| json!({"conversation": r.conversation, "friendly_name": "renamed"}),
            [N, F, Y, N, F],
        ),
        ("delete_conversation", |r| json!({"conversation": r.conversation}), [F, F, Y, Y, F]),
        ("leave", |r| json!({"conversation": r.conversation}), [N, Y, Y, N, F]),
        ("add_participant", |r| json!({"conversation": r.conversation, "identity": "newcomer"}), [N, F, Y, N, F]),
        (
            "add_non_chat_participant",
            |r| json!({"conversation": r.conversation, "proxy_address": "+15550009999", "address": "+15550008888"}),
            [N, F, Y, N, F],
        ),
        (
            "remove_participant",
            |r| json!({"conversation": r.conversation, "participant": r.owner_participant}),
            [N, F, Y, N, F],
        ),
        ("get_participants", |r| json!({"conversation": r.conversation}), [N, Y, Y, N, Y]),
        (
            "update_participant",
            |r| json!({"conversation": r.conversation, "participant": r.owner_participant, "attributes": "{\"a\":1}"}),
            [N, F, Y, N, F],
        ),
        ("send_message", |r| json!({"conversation": r.conversation, "body": "hello"}), [N, Y, Y, N, F]),
        ("get_messages", |r| json!({"conversation": r.conversation}), [N, Y, Y, N, Y]),
        (
            "update_message",
            |r| json!({"conversation": r.conversation, "message": r.owner_message, "body": "edited"}),
            [N, F, Y, N, F],
        ),
        ("remove_message", |r| json!({"conversation": r.conversation, "message": r.owner_message}), [N, F, Y, N, F]),
        ("set_read_horizon", |r| json!({"conversation": r.conversation, "index": 0}), [N, Y, Y, N, F]),
        ("get_unread_count", |r| json!({"conversation": r.conversation}), [N, Y, Y, N, N]),
        ("set_notification_level", |r| json!({"conversation": r.conversation, "level": "muted"}), [N, Y, Y, N, F]),
        ("typing", |r| json!({"conversation": r.conversation}), [N, Y, Y, N, F]),
        ("get_counts", |r| json!({"conversation": r.conversation}), [N, Y, Y, N, Y]),
        (
            "get_delivery_receipts",
            |r| json!({"conversation": r.conversation, "message": r.owner_message}),
            [N, Y, Y, N, Y],
        ),
        ("get_message_recipients", |r| json!({"conversation": r.conversation}), [N, Y, Y, N, Y]),
    ]
}

#[tokio::test]
async fn every_realtime_method_answers_each_kind_of_user_as_its_roles_say() {
    let api = Api::start().await;
    let (_, listed) = api.get("/v1/Roles").await;
    let roles: BTreeMap<String, String> = listed["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["friendly_name"].as_str().unwrap().to_string(), r["sid"].as_str().unwrap().to_string()))
        .collect();
    let (status, body) =
        api.post("/v1/Users", &[("Identity", "sadmin"), ("RoleSid", roles["service admin"].as_str())]).await;
    assert_eq!(status, 201, "{body}");
    let (status, minted) = api.post("/palaver/v1/AccessTokens", &[("Identity", "watcher"), ("Observer", "true")]).await;
    assert_eq!(status, 201, "{minted}");
    let observer_token = minted["token"].as_str().unwrap().to_string();
    let mut wrong = Vec::new();
    for (method, params, answers) in realtime_rows() {
        for (caller, expected) in CALLERS.iter().zip(answers) {
            // A room of its own for every call, so that none sees what another changed.
            let room = room(&api, &roles).await;
            let (mut raw, _) = if *caller == "watcher" {
                let mut raw = Raw::open(&api).await;
                let connected = raw.call("connect", json!({"token": observer_token.clone()})).await.expect("observe");
                (raw, connected)
            } else {
                Raw::connect(&api, caller).await
            };
            let answer = raw.call(method, params(&room)).await;
            let seen = match &answer {
                Ok(_) => Y,
                Err(error) if error["code"] == 50430 && error["status"] == 403 => N,
                Err(error) if error["code"] == 20403 && error["status"] == 403 => F,
                Err(error) if error["code"] == 50433 && error["status"] == 409 => P,
                Err(error) => {
                    wrong.push(format!("{method} as {caller}: unexpected {error}"));
                    continue;
                }
            };
            if seen != expected {
                wrong.push(format!("{method} as {caller}: {seen:?}, expected {expected:?} ({answer:?})"));
            }
            // A refused read gives nothing back, and a refused write changes nothing.
            if seen != Y {
                let (_, messages) = api.get(&format!("/v1/Conversations/{}/Messages", room.conversation)).await;
                let bodies: Vec<&str> =
                    messages["messages"].as_array().unwrap().iter().filter_map(|m| m["body"].as_str()).collect();
                assert_eq!(bodies, ["by the owner", "by the member"], "{method} as {caller} changed messages");
                let (_, participants) = api.get(&format!("/v1/Conversations/{}/Participants", room.conversation)).await;
                assert_eq!(participants["participants"].as_array().unwrap().len(), 3, "{method} as {caller}");
                let (status, conversation) = api.get(&format!("/v1/Conversations/{}", room.conversation)).await;
                assert_eq!(
                    (status, conversation["friendly_name"].as_str()),
                    (200, Some("room")),
                    "{method} as {caller}"
                );
            }
        }
    }
    assert!(wrong.is_empty(), "answers that differ from the matrix:\n{}", wrong.join("\n"));
}
