//! `palaver status`: a live summary of a running server, read from its `/metrics` and `/readyz`. Rates and
//! percentiles are taken over the interval between two scrapes, so the first figures appear after one interval.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use palaver_server::metrics::text::{self, Exposition};

/// Where the server is and how to log in to it.
#[derive(Debug)]
pub(crate) struct Target {
    /// `http://host:port`.
    pub(crate) url: String,
    /// Account SID or API key SID.
    pub(crate) user: String,
    /// Auth token or API key secret.
    pub(crate) password: String,
}

/// One reading of the server.
struct Reading {
    at: Instant,
    metrics: Exposition,
    /// `/readyz`'s answer, or why it could not be read.
    ready: Result<serde_json::Value, String>,
}

/// Prints the summary every `interval` until interrupted; with `once`, prints it once (after one interval) and
/// returns. Redraws in place on a terminal, appends otherwise.
pub(crate) async fn run(target: Target, interval: Duration, once: bool) -> Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let redraw = !once && std::io::stdout().is_terminal();
    let mut previous = read(&http, &target).await?;
    let interrupted = crate::shutdown_signal();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut interrupted => return Ok(()),
        }
        let current = match read(&http, &target).await {
            Ok(current) => current,
            Err(err) if !once => {
                println!("{}: {err:#}", target.url);
                continue;
            }
            Err(err) => return Err(err),
        };
        let summary = summarize(&target.url, &previous, &current);
        let mut stdout = std::io::stdout().lock();
        if redraw {
            // Home and clear: the summary replaces the last one.
            write!(stdout, "\x1b[H\x1b[2J")?;
        }
        write!(stdout, "{summary}")?;
        stdout.flush()?;
        if once {
            return Ok(());
        }
        if !redraw {
            writeln!(stdout)?;
        }
        previous = current;
    }
}

async fn read(http: &reqwest::Client, target: &Target) -> Result<Reading> {
    let base = target.url.trim_end_matches('/');
    let response = http
        .get(format!("{base}/metrics"))
        .basic_auth(&target.user, Some(&target.password))
        .send()
        .await
        .with_context(|| format!("reaching {base}"))?;
    match response.status().as_u16() {
        200 => {}
        401 => bail!("{base} refused the credentials (give the account SID and auth token, or an API key)"),
        status => bail!("{base}/metrics answered {status}"),
    }
    let body = response.text().await?;
    let metrics = text::parse(&body).with_context(|| format!("reading {base}/metrics"))?;
    let ready = match http.get(format!("{base}/readyz")).send().await {
        Ok(answer) => answer.json::<serde_json::Value>().await.map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    Ok(Reading { at: Instant::now(), metrics, ready })
}

/// The summary of what happened between `before` and `now`.
fn summarize(url: &str, before: &Reading, now: &Reading) -> String {
    let seconds = now.at.duration_since(before.at).as_secs_f64().max(0.001);
    let (a, b) = (&before.metrics, &now.metrics);
    let rate = |name: &str, filter: &[(&str, &str)]| (b.sum(name, filter) - a.sum(name, filter)).max(0.0) / seconds;
    let gauge = |name: &str, filter: &[(&str, &str)]| b.sum(name, filter);
    let latency = |name: &str, filter: &[(&str, &str)]| {
        let window = bucket_delta(&a.buckets(name, filter), &b.buckets(name, filter));
        match (quantile(&window, 0.5), quantile(&window, 0.99)) {
            (Some(p50), Some(p99)) => format!("p50 {} p99 {}", millis(p50), millis(p99)),
            _ => "-".to_string(),
        }
    };
    let mut out = String::new();
    let health = match &now.ready {
        Ok(ready) => format!(
            "{} (database {}, nats {}{})",
            ready["status"].as_str().unwrap_or("?"),
            ready["database"].as_str().unwrap_or("?"),
            ready["nats"].as_str().unwrap_or("?"),
            if ready["draining"] == true { ", draining" } else { "" }
        ),
        Err(err) => format!("unknown ({err})"),
    };
    let _ = writeln!(out, "Palaver at {url}: {health}, over the last {seconds:.1} s");
    let _ = writeln!(
        out,
        "  connections   {:.0} open; sessions: {:.0} realtime, {:.0} twilsock",
        gauge("palaver_http_connections", &[]),
        gauge("palaver_realtime_sessions", &[("api", "realtime")]),
        gauge("palaver_realtime_sessions", &[("api", "twilsock")])
    );
    let _ = writeln!(
        out,
        "  requests      {:.1}/s (2xx {:.1}, 4xx {:.1}, 5xx {:.1}); {}",
        rate("palaver_http_requests_total", &[]),
        rate("palaver_http_requests_total", &[("status", "2xx")]),
        rate("palaver_http_requests_total", &[("status", "4xx")]),
        rate("palaver_http_requests_total", &[("status", "5xx")]),
        latency("palaver_http_request_duration_seconds", &[])
    );
    let _ = writeln!(
        out,
        "  events        {:.1}/s committed, {:.1}/s delivered; delivery {}",
        rate("palaver_events_committed_total", &[]),
        rate("palaver_events_delivered_total", &[]),
        latency("palaver_event_delivery_latency_seconds", &[])
    );
    let _ = writeln!(
        out,
        "  webhooks      {:.0} pending, {:.0} dead, {:.0} events to plan; {:.1}/s sent, {:.1}/s failed",
        gauge("palaver_webhook_outbox", &[("state", "pending")]),
        gauge("palaver_webhook_outbox", &[("state", "dead")]),
        gauge("palaver_webhook_backlog_events", &[]),
        rate("palaver_webhook_attempts_total", &[("outcome", "delivered")]),
        rate("palaver_webhook_attempts_total", &[("outcome", "failed")])
    );
    let _ = writeln!(
        out,
        "  channels      {:.0} sms, {:.0} whatsapp, {:.0} email pending; {:.1}/s sent, {:.1}/s failed",
        gauge("palaver_channel_outbox", &[("channel", "sms")]),
        gauge("palaver_channel_outbox", &[("channel", "whatsapp")]),
        gauge("palaver_channel_outbox", &[("channel", "email")]),
        rate("palaver_channel_attempts_total", &[("outcome", "sent")]),
        rate("palaver_channel_attempts_total", &[("outcome", "retry")])
            + rate("palaver_channel_attempts_total", &[("outcome", "failed")])
    );
    let _ = writeln!(
        out,
        "  database      {:.1} reads/s {}, {:.1} writes/s {}; {:.1} errors/s",
        rate("palaver_db_operation_duration_seconds_count", &[("kind", "read")]),
        latency("palaver_db_operation_duration_seconds", &[("kind", "read")]),
        rate("palaver_db_operation_duration_seconds_count", &[("kind", "write")]),
        latency("palaver_db_operation_duration_seconds", &[("kind", "write")]),
        rate("palaver_db_operation_errors_total", &[])
    );
    if b.has("palaver_sqlite_group_commit_writes_count") {
        let commits = rate("palaver_sqlite_group_commit_writes_count", &[]);
        let writes = rate("palaver_sqlite_group_commit_writes_sum", &[]);
        let per_commit = if commits > 0.0 { format!("{:.1} writes each", writes / commits) } else { "-".into() };
        let _ = writeln!(out, "  sqlite        {commits:.1} commits/s, {per_commit}");
    }
    let _ = writeln!(out, "  rate limited  {:.1}/s", rate("palaver_rate_limited_total", &[]));
    out
}

/// The counts that fell in each bucket between two readings of a cumulative histogram.
fn bucket_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(bound, count)| {
            let earlier = before.iter().find(|(b, _)| b == bound).map_or(0.0, |(_, c)| *c);
            (*bound, (count - earlier).max(0.0))
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, interpolated within its bucket as Prometheus' `histogram_quantile`
/// does; `None` without observations.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                // Beyond the last finite bound: that bound is all that is known.
                return Some(lower.0);
            }
            let within = if count > lower.1 { (rank - lower.1) / (count - lower.1) } else { 1.0 };
            return Some(lower.0 + (bound - lower.0) * within);
        }
        lower = (bound, count);
    }
    None
}

fn millis(seconds: f64) -> String {
    if seconds < 0.01 { format!("{:.2} ms", seconds * 1000.0) } else { format!("{:.0} ms", seconds * 1000.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let buckets = [(0.001, 0.0), (0.002, 50.0), (0.004, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(&buckets, 0.5), Some(0.002));
        assert_eq!(quantile(&buckets, 0.25), Some(0.0015));
        assert_eq!(quantile(&buckets, 0.99), Some(0.002 + 0.002 * 0.98));
        assert_eq!(quantile(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
        assert_eq!(quantile(&[(1.0, 0.0), (f64::INFINITY, 4.0)], 0.5), Some(1.0), "past the last bound");
        let delta = bucket_delta(&[(1.0, 2.0), (f64::INFINITY, 3.0)], &[(1.0, 5.0), (f64::INFINITY, 9.0)]);
        assert_eq!(delta, [(1.0, 3.0), (f64::INFINITY, 6.0)]);
    }
}
