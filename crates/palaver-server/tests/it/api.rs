//! A minimal REST client for the tests: form-encoded requests with Basic auth, JSON answers.

use palaver_testkit::TestServer;
use serde_json::Value;

pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) server: TestServer,
}

impl Api {
    pub(crate) async fn start() -> Self {
        Self { http: reqwest::Client::new(), server: TestServer::spawn().await }
    }

    pub(crate) async fn start_with(limits: palaver_server::RealtimeLimits) -> Self {
        Self { http: reqwest::Client::new(), server: TestServer::spawn_with_realtime_limits(limits).await }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.server.url()) }
    }

    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request
            .basic_auth(self.server.account_sid(), Some(self.server.auth_token()))
            .send()
            .await
            .expect("request reaches the server");
        let status = response.status().as_u16();
        let text = response.text().await.expect("response body");
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") };
        (status, body)
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.send(self.http.post(self.url(path)).form(form)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.url(path))).await
    }

    /// Creates a conversation and returns its SID.
    pub(crate) async fn conversation(&self, form: &[(&str, &str)]) -> String {
        let (status, body) = self.post("/v1/Conversations", form).await;
        assert_eq!(status, 201, "{body}");
        body["sid"].as_str().unwrap().to_string()
    }

    /// Posts `count` messages with bodies `m0`, `m1`, … and returns their SIDs.
    pub(crate) async fn messages(&self, conv: &str, count: usize) -> Vec<String> {
        let mut sids = Vec::new();
        for i in 0..count {
            let body = format!("m{i}");
            let (status, created) = self.post(&format!("/v1/Conversations/{conv}/Messages"), &[("Body", &body)]).await;
            assert_eq!(status, 201, "{created}");
            sids.push(created["sid"].as_str().unwrap().to_string());
        }
        sids
    }
}

/// Asserts a Twilio-format error with this status and code.
pub(crate) fn assert_error(response: &(u16, Value), status: u16, code: u64) {
    let (got_status, body) = response;
    assert_eq!(*got_status, status, "{body}");
    assert_eq!(body["code"].as_u64(), Some(code), "{body}");
    assert_eq!(body["status"].as_u64(), Some(u64::from(status)), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["more_info"].as_str().is_some_and(|m| m.contains(&code.to_string())), "{body}");
}
