//! Calls every method of the seed `Conversation` interface (and the client's) against a running server,
//! printing what each returns.
//!
//! ```text
//! PALAVER_URL=ws://127.0.0.1:8088/v1/realtime \
//! PALAVER_TOKEN=$(palaver token --identity alice) \
//! PALAVER_TOKEN_2=$(palaver token --identity bob) \
//! cargo run -p palaver-client --example walkthrough
//! ```

mod steps;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("PALAVER_URL").unwrap_or_else(|_| "ws://127.0.0.1:8088/v1/realtime".into());
    let token = std::env::var("PALAVER_TOKEN").map_err(|_| "set PALAVER_TOKEN to an access token")?;
    let token2 = std::env::var("PALAVER_TOKEN_2").ok();
    steps::run(&url, &token, token2.as_deref()).await
}
