//! Push notifications end to end: the real server, its credentials, settings and bindings set through the
//! REST and realtime APIs, and local doubles of the push services that record each request: APNs over
//! HTTP/2 with TLS (a test CA the server is told to trust), FCM and Google's token endpoint, and a browser's
//! push service. The tests check the exact requests: signed tokens verified with the test keys, JSON bodies,
//! and Web Push payloads decrypted with the subscription's private key (RFC 8291, written here from the
//! RFC, not from the server's code).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use palaver_server::push::PushSettings;
use palaver_testkit::TestServer;
use ring::signature::{self, KeyPair};
use ring::{aead, agreement, hkdf};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::api::Api;
use crate::realtime::Raw;

const CA: &[u8] = include_bytes!("push_fixtures/ca.pem");
const SERVER_CERT: &[u8] = include_bytes!("push_fixtures/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("push_fixtures/server.key");
const FCM_KEY: &str = include_str!("push_fixtures/fcm-service-account.key");

/// One request a double got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How a double answers the next request.
enum Answer {
    Reply(u16, &'static str),
    /// Never answers (the push service hangs).
    Stall,
}

#[derive(Clone)]
struct DoubleState {
    hits: mpsc::UnboundedSender<Hit>,
    answers: Arc<Mutex<VecDeque<Answer>>>,
}

async fn record(
    State(state): State<DoubleState>,
    OriginalUri(uri): OriginalUri,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _ = state.hits.send(Hit { path: uri.path().to_string(), version, headers, body });
    if uri.path() == "/token" {
        return (StatusCode::OK, r#"{"access_token":"ya29.test-token","expires_in":3600,"token_type":"Bearer"}"#)
            .into_response();
    }
    let answer = state.answers.lock().unwrap().pop_front();
    match answer {
        Some(Answer::Stall) => std::future::pending().await,
        Some(Answer::Reply(status, body)) => (StatusCode::from_u16(status).unwrap(), body).into_response(),
        None => (StatusCode::OK, r#"{"name":"ok"}"#).into_response(),
    }
}

/// A push service standing in for the real one.
struct Double {
    base: String,
    hits: mpsc::UnboundedReceiver<Hit>,
    answers: Arc<Mutex<VecDeque<Answer>>>,
}

impl Double {
    fn parts() -> (Router, mpsc::UnboundedReceiver<Hit>, Arc<Mutex<VecDeque<Answer>>>) {
        let (sender, hits) = mpsc::unbounded_channel();
        let answers = Arc::new(Mutex::new(VecDeque::new()));
        let state = DoubleState { hits: sender, answers: answers.clone() };
        (Router::new().fallback(record).with_state(state), hits, answers)
    }

    /// Plain HTTP/1.1 (FCM and a browser's push service in tests).
    async fn http() -> Self {
        let (router, hits, answers) = Self::parts();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { base, hits, answers }
    }

    /// HTTP/2 only, over TLS with the test CA's certificate (APNs).
    async fn h2_tls() -> Self {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let (router, hits, answers) = Self::parts();
        let certs: Vec<CertificateDer> = CertificateDer::pem_slice_iter(SERVER_CERT).map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).unwrap();
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(router);
                    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { base, hits, answers }
    }

    fn answer(&self, answer: Answer) {
        self.answers.lock().unwrap().push_back(answer);
    }

    async fn next(&mut self) -> Hit {
        tokio::time::timeout(Duration::from_secs(15), self.hits.recv())
            .await
            .expect("the push service got a request in time")
            .expect("the double runs")
    }

    async fn nothing_more(&mut self, wait: Duration) {
        if let Ok(Some(hit)) = tokio::time::timeout(wait, self.hits.recv()).await {
            panic!("unexpected request to {}: {}", hit.path, String::from_utf8_lossy(&hit.body));
        }
    }
}

/// The parts of a signed token, its signature checked with `verify`.
fn token_parts(token: &str, verify: impl Fn(&[u8], &[u8])) -> (Value, Value) {
    let (input, signature) = token.rsplit_once('.').expect("a signed token");
    verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(signature).unwrap());
    let (header, claims) = input.split_once('.').unwrap();
    let decode = |part: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap();
    (decode(header), decode(claims))
}

fn pem(label: &str, der: &[u8]) -> String {
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", STANDARD.encode(der))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

struct Keys {
    apns: signature::EcdsaKeyPair,
    apns_pem: String,
    fcm_public: Vec<u8>,
}

fn keys() -> Keys {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let apns =
        signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let der = STANDARD.decode(FCM_KEY.lines().filter(|l| !l.starts_with("-----")).collect::<String>()).unwrap();
    let fcm_public = signature::RsaKeyPair::from_pkcs8(&der).unwrap().public().as_ref().to_vec();
    Keys { apns, apns_pem: pem("PRIVATE KEY", pkcs8.as_ref()), fcm_public }
}

/// A server pointed at the doubles, with credentials for all three services and every notification on.
struct World {
    api: Api,
    apns: Double,
    fcm: Double,
    web: Double,
    keys: Keys,
    vapid_public: String,
}

async fn world(timeout: Duration) -> World {
    // The browser push service is a local double: web pushes may go to any host.
    world_with(timeout, Vec::new()).await
}

/// [`world`], web pushes allowed only to `webpush_hosts`.
async fn world_with(timeout: Duration, webpush_hosts: Vec<String>) -> World {
    let (apns, fcm, web) = (Double::h2_tls().await, Double::http().await, Double::http().await);
    let settings = PushSettings {
        apns_url: Some(apns.base.clone()),
        fcm_url: fcm.base.clone(),
        fcm_token_url: Some(format!("{}/token", fcm.base)),
        extra_root_certificates: vec![CA.to_vec()],
        allow_http_endpoints: true,
        webpush_hosts,
        request_timeout: timeout,
    };
    let api = Api { http: reqwest::Client::new(), server: TestServer::spawn_with_push(settings).await };
    let keys = keys();
    let apn_settings =
        json!({"key_id": "KEY1234567", "team_id": "TEAM123456", "topic": "com.example.chat"}).to_string();
    let (status, body) = api
        .post(
            "/v1/Credentials",
            &[("Type", "apn"), ("FriendlyName", "ios"), ("PrivateKey", &keys.apns_pem), ("Certificate", &apn_settings)],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let account = json!({
        "type": "service_account",
        "project_id": "palaver-test",
        "client_email": "push@palaver-test.iam.gserviceaccount.com",
        "private_key": FCM_KEY,
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string();
    let (status, body) = api.post("/v1/Credentials", &[("Type", "fcm"), ("Secret", &account)]).await;
    assert_eq!(status, 201, "{body}");
    let subject = json!({"subject": "mailto:ops@example.com"}).to_string();
    let (status, body) = api.post("/v1/Credentials", &[("Type", "webpush"), ("Certificate", &subject)]).await;
    assert_eq!(status, 201, "{body}");
    let vapid_public = body["public_key"].as_str().expect("a web push credential shows its public key").to_string();
    let service = api.get("/v1/Configuration").await.1["default_chat_service_sid"].as_str().unwrap().to_string();
    let (status, body) = api
        .post(
            &format!("/v1/Services/{service}/Configuration/Notifications"),
            &[
                ("NewMessage.Enabled", "true"),
                ("NewMessage.Template", "${PARTICIPANT} says ${MESSAGE} in ${CONVERSATION}"),
                ("NewMessage.Sound", "ding"),
                ("NewMessage.BadgeCountEnabled", "true"),
                ("AddedToConversation.Enabled", "true"),
                ("RemovedFromConversation.Enabled", "true"),
                ("RemovedFromConversation.Template", "Bye from ${CONVERSATION}"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    World { api, apns, fcm, web, keys, vapid_public }
}

impl World {
    async fn service(&self) -> String {
        self.api.get("/v1/Configuration").await.1["default_chat_service_sid"].as_str().unwrap().to_string()
    }

    /// Connects `identity` and registers `token` of `kind`; returns the binding's SID.
    async fn register(&self, identity: &str, kind: &str, token: &str) -> String {
        let (mut raw, _) = Raw::connect(&self.api, identity).await;
        let registered = raw.call("set_push_registration", json!({"kind": kind, "token": token})).await.unwrap();
        registered["binding_sid"].as_str().unwrap().to_string()
    }

    fn check_apns_token(&self, hit: &Hit) {
        let bearer = hit.header("authorization").strip_prefix("bearer ").expect("a provider token");
        let public = self.keys.apns.public_key().as_ref().to_vec();
        let (header, claims) = token_parts(bearer, |input, sig| {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &public).verify(input, sig).unwrap()
        });
        assert_eq!(header, json!({"alg": "ES256", "kid": "KEY1234567"}));
        assert_eq!(claims["iss"], "TEAM123456");
        assert!((claims["iat"].as_i64().unwrap() - now()).abs() < 60);
    }
}

/// A subscription as a browser makes it: a P-256 key pair (the private half used once, to decrypt) and an
/// auth secret.
struct Browser {
    private: agreement::EphemeralPrivateKey,
    public: Vec<u8>,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let private = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
        let public = private.compute_public_key().unwrap().as_ref().to_vec();
        let mut auth = [0u8; 16];
        ring::rand::SecureRandom::fill(&rng, &mut auth).unwrap();
        Self { private, public, auth }
    }

    fn subscription(&self, endpoint: &str) -> String {
        json!({
            "endpoint": endpoint,
            "expirationTime": null,
            "keys": {"p256dh": URL_SAFE_NO_PAD.encode(&self.public), "auth": URL_SAFE_NO_PAD.encode(self.auth)},
        })
        .to_string()
    }

    /// Decrypts an `aes128gcm` body (RFC 8188 header, RFC 8291 keys).
    fn decrypt(self, body: &[u8]) -> Vec<u8> {
        struct Len(usize);
        impl hkdf::KeyType for Len {
            fn len(&self) -> usize {
                self.0
            }
        }
        fn expand(prk: &hkdf::Prk, info: &[&[u8]], len: usize) -> Vec<u8> {
            let mut out = vec![0; len];
            prk.expand(info, Len(len)).unwrap().fill(&mut out).unwrap();
            out
        }
        let salt = &body[..16];
        let record_size = u32::from_be_bytes(body[16..20].try_into().unwrap());
        let id_len = usize::from(body[20]);
        let sender_public = &body[21..21 + id_len];
        let mut ciphertext = body[21 + id_len..].to_vec();
        assert!(ciphertext.len() <= record_size as usize, "one record");
        let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, sender_public);
        let shared = agreement::agree_ephemeral(self.private, &peer, |s| s.to_vec()).unwrap();
        let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, &self.auth).extract(&shared);
        let ikm = expand(&prk_key, &[b"WebPush: info\0", &self.public, sender_public], 32);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&ikm);
        let cek = expand(&prk, &[b"Content-Encoding: aes128gcm\0"], 16);
        let nonce = expand(&prk, &[b"Content-Encoding: nonce\0"], 12);
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek).unwrap());
        let nonce = aead::Nonce::try_assume_unique_for_key(&nonce).unwrap();
        let plain = key.open_in_place(nonce, aead::Aad::empty(), &mut ciphertext).unwrap().to_vec();
        assert_eq!(plain.last(), Some(&2), "the last record's delimiter");
        plain[..plain.len() - 1].to_vec()
    }
}

/// A new message reaches each other participant's registered devices through APNs, FCM and Web Push with
/// exactly the requests those services expect; its author and a participant who muted the conversation get
/// nothing.
#[tokio::test]
async fn a_new_message_reaches_every_push_service() {
    let mut w = world(Duration::from_secs(5)).await;
    let service = w.service().await;
    let settings = format!("/v1/Services/{service}/Configuration/Notifications");
    assert_eq!(w.api.post(&settings, &[("AddedToConversation.Enabled", "false")]).await.0, 200);
    let conv = w.api.conversation(&[("FriendlyName", "Team")]).await;
    for identity in ["alice", "bob", "carol", "dave"] {
        let (status, body) =
            w.api.post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", identity)]).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, _) =
        w.api.post(&format!("/v1/Users/dave/Conversations/{conv}"), &[("NotificationLevel", "muted")]).await;
    assert_eq!(status, 200);
    let (status, _) = w.api.post("/v1/Users/alice", &[("FriendlyName", "Alice A.")]).await;
    assert_eq!(status, 200);
    let apn_token = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    w.register("bob", "apn", apn_token).await;
    w.register("bob", "fcm", "fcm-token-bob").await;
    w.register("alice", "fcm", "fcm-token-alice").await;
    w.register("dave", "fcm", "fcm-token-dave").await;
    let browser = Browser::new();
    w.register("carol", "webpush", &browser.subscription(&format!("{}/push/carol-subscription", w.web.base))).await;

    let (status, message) =
        w.api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Author", "alice"), ("Body", "hi")]).await;
    assert_eq!(status, 201, "{message}");
    let message_sid = message["sid"].as_str().unwrap();
    let data = json!({
        "twi_message_type": "twilio.conversations.new_message",
        "twi_body": "Alice A. says hi in Team",
        "twi_sound": "ding",
        "conversation_sid": conv,
        "conversation_title": "Team",
        "message_sid": message_sid,
        "message_index": "0",
        "author": "alice",
    });

    // APNs: HTTP/2, the device path, the topic, a provider token signed with the .p8 key, the alert.
    let hit = w.apns.next().await;
    assert_eq!(hit.version, Version::HTTP_2);
    assert_eq!(hit.path, format!("/3/device/{apn_token}"));
    assert_eq!((hit.header("apns-topic"), hit.header("apns-push-type")), ("com.example.chat", "alert"));
    assert_eq!(hit.header("apns-priority"), "10");
    w.check_apns_token(&hit);
    let mut expected = data.clone();
    let fields = expected.as_object_mut().unwrap();
    fields.remove("twi_body");
    fields.remove("twi_sound");
    fields.insert("aps".into(), json!({"alert": {"body": "Alice A. says hi in Team"}, "sound": "ding", "badge": 1}));
    assert_eq!(hit.json(), expected);

    // FCM: an access token for the service account (an RS256 assertion), then the data message to bob only.
    let token_request = w.fcm.next().await;
    assert_eq!(token_request.path, "/token");
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&token_request.body).unwrap();
    assert_eq!(form[0], ("grant_type".into(), "urn:ietf:params:oauth:grant-type:jwt-bearer".into()));
    let (header, claims) = token_parts(&form[1].1, |input, sig| {
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &w.keys.fcm_public)
            .verify(input, sig)
            .unwrap()
    });
    assert_eq!(header, json!({"alg": "RS256", "typ": "JWT"}));
    assert_eq!(claims["iss"], "push@palaver-test.iam.gserviceaccount.com");
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/firebase.messaging");
    assert_eq!(claims["aud"], "https://oauth2.googleapis.com/token");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    let send = w.fcm.next().await;
    assert_eq!(send.path, "/v1/projects/palaver-test/messages:send");
    assert_eq!(send.header("authorization"), "Bearer ya29.test-token");
    assert_eq!(
        send.json(),
        json!({"message": {"token": "fcm-token-bob", "data": data, "android": {"priority": "HIGH"}}})
    );

    // Web Push: VAPID for the push service's origin, the payload encrypted for carol's browser.
    let hit = w.web.next().await;
    assert_eq!(hit.path, "/push/carol-subscription");
    assert_eq!((hit.header("content-encoding"), hit.header("ttl")), ("aes128gcm", "86400"));
    let vapid = hit.header("authorization").strip_prefix("vapid ").expect("VAPID").to_string();
    let (t, k) = vapid.split_once(", ").unwrap();
    let (token, key) = (t.strip_prefix("t=").unwrap(), k.strip_prefix("k=").unwrap());
    assert_eq!(key, w.vapid_public, "signed with the credential's key");
    let public = URL_SAFE_NO_PAD.decode(key).unwrap();
    let (header, claims) = token_parts(token, |input, sig| {
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &public).verify(input, sig).unwrap()
    });
    assert_eq!(header["alg"], "ES256");
    assert_eq!(
        (claims["aud"].as_str().unwrap(), claims["sub"].as_str().unwrap()),
        (w.web.base.as_str(), "mailto:ops@example.com")
    );
    assert!(claims["exp"].as_i64().unwrap() > now() && claims["exp"].as_i64().unwrap() <= now() + 24 * 3600);
    let payload: Value = serde_json::from_slice(&browser.decrypt(&hit.body)).unwrap();
    assert_eq!(payload, json!({"data": data}));

    // Alice wrote it and dave muted the conversation: no more requests anywhere.
    for double in [&mut w.apns, &mut w.fcm, &mut w.web] {
        double.nothing_more(Duration::from_millis(700)).await;
    }
}

/// A device the push service no longer knows (APNs 410, FCM UNREGISTERED) loses its binding; being added to
/// and removed from a conversation are notified with their templates, and bindings are listed, fetched and
/// deleted over REST.
#[tokio::test]
async fn gone_devices_lose_their_bindings_and_membership_changes_are_notified() {
    let mut w = world(Duration::from_secs(5)).await;
    let service = w.service().await;
    let apn = w.register("bob", "apn", "00ff00ff").await;
    let fcm = w.register("bob", "fcm", "fcm-token-bob").await;
    let conv = w.api.conversation(&[("UniqueName", "ops-room")]).await;
    w.apns.answer(Answer::Reply(410, r#"{"reason":"Unregistered","timestamp":1700000000000}"#));
    let (status, _) = w.api.post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", "bob")]).await;
    assert_eq!(status, 201);

    let hit = w.apns.next().await;
    assert_eq!(hit.json()["aps"]["alert"]["body"], "You were added to ops-room");
    assert_eq!(hit.json()["twi_message_type"], "twilio.conversations.added_to_conversation");
    let _token = w.fcm.next().await;
    let added = w.fcm.next().await;
    assert_eq!(added.json()["message"]["data"]["twi_body"], "You were added to ops-room");

    let bindings = format!("/v1/Services/{service}/Bindings");
    let gone = async |sid: &str| {
        for _ in 0..100 {
            if w.api.get(&format!("{bindings}/{sid}")).await.0 == 404 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("binding {sid} is still there");
    };
    gone(&apn).await;
    let (status, body) = w.api.get(&format!("{bindings}?BindingType=fcm&Identity=bob")).await;
    assert_eq!(status, 200);
    assert_eq!(body["bindings"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["bindings"][0]["sid"], fcm.as_str());
    assert_eq!(body["bindings"][0]["endpoint"], "fcm-token-bob");
    assert_eq!(
        body["bindings"][0]["message_types"],
        json!(["new_message", "added_to_conversation", "removed_from_conversation"])
    );

    w.fcm.answer(Answer::Reply(
        404,
        r#"{"error":{"code":404,"status":"NOT_FOUND","details":[{"errorCode":"UNREGISTERED"}]}}"#,
    ));
    let (status, _) = w.api.delete(&format!("/v1/Conversations/{conv}/Participants/bob")).await;
    assert_eq!(status, 204);
    let removed = w.fcm.next().await;
    assert_eq!(removed.json()["message"]["data"]["twi_body"], "Bye from ops-room");
    assert_eq!(removed.json()["message"]["data"]["twi_message_type"], "twilio.conversations.removed_from_conversation");
    gone(&fcm).await;
    w.apns.nothing_more(Duration::from_millis(300)).await;
    w.fcm.nothing_more(Duration::from_millis(300)).await;
}

/// A push in flight when the server stops (the push service hangs) is sent again by the restarted server once
/// its lease ends, and once it is accepted, never again.
#[tokio::test]
async fn a_push_in_flight_during_a_restart_arrives_once() {
    let mut w = world(Duration::from_secs(1)).await;
    w.register("bob", "apn", "abcdef").await;
    let conv = w.api.conversation(&[("FriendlyName", "Team")]).await;
    w.api.post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", "bob")]).await;
    // Bob's own addition was notified; from here on only the message is.
    let _added = w.apns.next().await;
    w.apns.answer(Answer::Stall);
    let (status, _) = w
        .api
        .post(&format!("/v1/Conversations/{conv}/Messages"), &[("Author", "alice"), ("Body", "still there?")])
        .await;
    assert_eq!(status, 201);
    let first = w.apns.next().await;
    assert_eq!(first.json()["aps"]["alert"]["body"], "alice says still there? in Team");
    w.api.server.restart().await;
    let second = w.apns.next().await;
    assert_eq!(second.json(), first.json(), "the same notification, sent again after the restart");
    w.apns.nothing_more(Duration::from_secs(4)).await;
}

/// Credentials check their keys when they are given, never show them, and go away when deleted.
#[tokio::test]
async fn credentials_check_their_keys_and_keep_them_secret() {
    let w = world(Duration::from_secs(5)).await;
    let (status, body) = w.api.post("/v1/Credentials", &[("Type", "apn"), ("PrivateKey", "not a key")]).await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(20001)), "{body}");
    assert!(body["message"].as_str().unwrap().contains("Certificate"), "{body}");
    let settings = json!({"key_id": "K", "team_id": "T", "topic": "app"}).to_string();
    let (status, body) = w
        .api
        .post("/v1/Credentials", &[("Type", "apn"), ("PrivateKey", "not a key"), ("Certificate", &settings)])
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("PrivateKey"), "{body}");
    let (status, body) = w.api.post("/v1/Credentials", &[("Type", "fcm"), ("Secret", "{}")]).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = w.api.post("/v1/Credentials", &[("Type", "carrier-pigeon")]).await;
    assert_eq!(status, 400, "{body}");

    let (status, list) = w.api.get("/v1/Credentials?PageSize=2").await;
    assert_eq!(status, 200);
    assert_eq!(list["credentials"].as_array().unwrap().len(), 2);
    let text = list.to_string();
    assert!(!text.contains("PRIVATE KEY") && !text.contains("private_key"), "secrets stay write-only: {text}");
    let sid = list["credentials"][0]["sid"].as_str().unwrap().to_string();
    let (status, updated) =
        w.api.post(&format!("/v1/Credentials/{sid}"), &[("FriendlyName", "renamed"), ("Sandbox", "true")]).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!((updated["friendly_name"].as_str(), updated["sandbox"].as_str()), (Some("renamed"), Some("True")));
    assert_eq!(w.api.delete(&format!("/v1/Credentials/{sid}")).await.0, 204);
    assert_eq!(w.api.get(&format!("/v1/Credentials/{sid}")).await.0, 404);
}

/// A subscription is whatever endpoint its registrant names: one outside the allowed push services is never
/// posted to, and is dropped.
#[tokio::test]
async fn a_web_push_to_a_host_that_is_no_push_service_is_never_sent() {
    let mut w = world_with(Duration::from_secs(5), vec![".push.example.net".into()]).await;
    let conv = w.api.conversation(&[("FriendlyName", "Team")]).await;
    for identity in ["alice", "carol"] {
        let (status, body) =
            w.api.post(&format!("/v1/Conversations/{conv}/Participants"), &[("Identity", identity)]).await;
        assert_eq!(status, 201, "{body}");
    }
    let browser = Browser::new();
    // The double listens on 127.0.0.1: a private address, not a push service.
    let binding =
        w.register("carol", "webpush", &browser.subscription(&format!("{}/push/carol-subscription", w.web.base))).await;
    let (status, _) =
        w.api.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Author", "alice"), ("Body", "hi")]).await;
    assert_eq!(status, 201);
    let service = w.service().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while w.api.get(&format!("/v1/Services/{service}/Bindings/{binding}")).await.0 != 404 {
        assert!(tokio::time::Instant::now() < deadline, "the subscription is dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(w.web.hits.try_recv().is_err(), "nothing was posted to the endpoint");
}
