//! The example's walkthrough, run against a test server.

#[path = "../../examples/walkthrough/steps.rs"]
mod steps;

#[tokio::test]
async fn the_walkthrough_runs_every_seed_method() {
    let server = palaver_testkit::TestServer::spawn().await;
    let alice = server.access_token("walkthrough-alice");
    let bob = server.access_token("walkthrough-bob");
    steps::run(&server.ws_url(), &alice, Some(&bob)).await.expect("every step succeeds");
}
