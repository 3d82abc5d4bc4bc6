//! The scenarios. Each builds its data through the public APIs, runs a bounded workload, and reports.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use crate::proto::{Conn, OnFrame};
use crate::report::{Latency, NodeUsage, Report};
use crate::target::{Target, cpu_seconds, machine_busy_seconds};
use crate::{BenchError, Result, Workload};

/// The workloads `palaver bench` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Concurrent senders over several conversations: durable acknowledged messages per second.
    Ingest,
    /// One conversation, many listeners, a sender at a fixed rate: end-to-end delivery latency.
    Fanout,
    /// Many idle authenticated connections: memory per connection, connect rate.
    Connections,
    /// Paging through a long conversation in both directions.
    History,
    /// Message create and list through REST with keep-alive.
    Rest,
    /// Read-horizon updates and unread counts on a very long conversation.
    Unread,
}

impl Scenario {
    /// Parses a scenario name.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "ingest" => Self::Ingest,
            "fanout" => Self::Fanout,
            "connections" => Self::Connections,
            "history" => Self::History,
            "rest" => Self::Rest,
            "unread" => Self::Unread,
            _ => return None,
        })
    }

    /// Every scenario's name.
    pub const NAMES: &'static [&'static str] = &["ingest", "fanout", "connections", "history", "rest", "unread"];
}

pub(crate) async fn run(scenario: Scenario, target: &Target, w: &Workload) -> Result<Report> {
    let nodes_before = target.node_usage();
    let bench_before = cpu_seconds("/proc/self/stat");
    let machine_before = machine_busy_seconds();
    let started = Instant::now();
    let mut report = match scenario {
        Scenario::Ingest => ingest(target, w).await?,
        Scenario::Fanout => fanout(target, w).await?,
        Scenario::Connections => connections(target, w).await?,
        Scenario::History => history(target, w).await?,
        Scenario::Rest => rest(target, w).await?,
        Scenario::Unread => unread(target, w).await?,
    };
    report.run_seconds = started.elapsed().as_secs_f64();
    report.target = target.describe();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let nodes: Option<Vec<NodeUsage>> = target
        .node_usage()
        .into_iter()
        .zip(nodes_before)
        .map(|(after, before)| Some(NodeUsage { rss_mib: mib(after?.0), cpu_seconds: after?.1 - before?.1 }))
        .collect();
    if let Some(nodes) = nodes {
        report.server_rss_mib = Some(nodes.iter().map(|n| n.rss_mib).sum());
        report.server_cpu_seconds = Some(nodes.iter().map(|n| n.cpu_seconds).sum());
        if nodes.len() > 1 {
            report.server_nodes = nodes;
        }
    }
    report.bench_cpu_seconds = cpu_seconds("/proc/self/stat").zip(bench_before).map(|(after, before)| after - before);
    report.machine_busy_cpu_seconds = machine_busy_seconds().zip(machine_before).map(|(after, before)| after - before);
    Ok(report)
}

fn histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to 60 s, three significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// A bar for a phase that lasts `seconds` whatever happens in it, moved by the clock; finished (and cleared) when
/// the returned guard is dropped.
fn timed(seconds: u64, what: &str) -> TimedBar {
    let bar = ProgressBar::new(seconds);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} s")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    let ticking = bar.clone();
    let ticker = tokio::spawn(async move {
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.tick().await;
        loop {
            second.tick().await;
            ticking.inc(1);
        }
    });
    TimedBar { bar, ticker }
}

struct TimedBar {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Drop for TimedBar {
    fn drop(&mut self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

fn micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn report(scenario: &str, parameters: Value) -> Report {
    Report {
        scenario: scenario.into(),
        parameters,
        throughput: Vec::new(),
        latency: Vec::new(),
        figures: Vec::new(),
        target: Value::Null,
        server_rss_mib: None,
        server_cpu_seconds: None,
        server_nodes: Vec::new(),
        bench_cpu_seconds: None,
        machine_busy_cpu_seconds: None,
        run_seconds: 0.0,
    }
}

/// Where the connections of a scenario go: `count` of them round-robin over the nodes, and how many landed on
/// each node (for the report).
fn round_robin(target: &Target, count: usize) -> Value {
    let nodes = target.node_count().max(1);
    let mut per_node = vec![0usize; nodes];
    for i in 0..count {
        per_node[i % nodes] += 1;
    }
    json!(per_node)
}

/// REST helper: POST a form to node 0, return the JSON.
async fn post(http: &reqwest::Client, target: &Target, path: &str, form: &[(&str, &str)]) -> Result<Value> {
    let (user, password) = target.basic_auth();
    let response = http
        .post(format!("{}{path}", target.url(0)))
        .basic_auth(user, Some(password))
        .form(form)
        .send()
        .await
        .map_err(|e| BenchError::Request(e.to_string()))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| BenchError::Request(e.to_string()))?;
    if !status.is_success() {
        return Err(BenchError::Request(format!("{path}: {status} {body}")));
    }
    Ok(body)
}

/// Creates a conversation with these chat participants and returns its SID.
async fn conversation(http: &reqwest::Client, target: &Target, members: &[String]) -> Result<String> {
    let created = post(http, target, "/v1/Conversations", &[("FriendlyName", "bench")]).await?;
    let sid = created["sid"].as_str().unwrap_or_default().to_string();
    for member in members {
        post(http, target, &format!("/v1/Conversations/{sid}/Participants"), &[("Identity", member)]).await?;
    }
    Ok(sid)
}

/// Sends `count` messages to `conv` over `connections` connections with `window` requests in flight each,
/// recording each acknowledgement's latency.
async fn send_many(conns: &[Conn], conv: &str, count: u64, window: usize, bar: &ProgressBar) -> Result<Histogram<u64>> {
    let remaining = Arc::new(AtomicU64::new(count));
    let mut tasks = tokio::task::JoinSet::new();
    for conn in conns {
        for _ in 0..window {
            let (conn, conv, remaining, bar) = (conn.clone(), conv.to_string(), Arc::clone(&remaining), bar.clone());
            tasks.spawn(async move {
                let mut h = histogram();
                while remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok() {
                    let started = Instant::now();
                    conn.call_as::<IgnoredAny>(
                        "send_message",
                        json!({"conversation": conv, "body": "benchmark message body"}),
                    )
                    .await?;
                    h.saturating_record(started.elapsed().as_micros() as u64);
                    bar.inc(1);
                }
                Ok::<_, BenchError>(h)
            });
        }
    }
    let mut total = histogram();
    while let Some(joined) = tasks.join_next().await {
        let h = joined.map_err(|e| BenchError::Request(e.to_string()))??;
        total.add(&h).map_err(|e| BenchError::Request(e.to_string()))?;
    }
    Ok(total)
}

async fn ingest(target: &Target, w: &Workload) -> Result<Report> {
    let http = reqwest::Client::new();
    let senders: Vec<String> = (0..w.senders).map(|i| format!("sender-{i}")).collect();
    let mut convs = Vec::new();
    for k in 0..w.conversations {
        let members: Vec<String> = senders.iter().skip(k).step_by(w.conversations).cloned().collect();
        convs.push(conversation(&http, target, &members).await?);
    }
    let mut conns = Vec::new();
    // Sender i on node i (modulo the node count).
    for (i, identity) in senders.iter().enumerate() {
        conns.push((
            Conn::open(&target.ws_url(i), &target.token(identity), None).await?,
            convs[i % w.conversations].clone(),
        ));
    }
    let bar = progress(w.messages, "ingest");
    let started = Instant::now();
    let per_sender = w.messages / w.senders as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for (conn, conv) in conns {
        let bar = bar.clone();
        let window = w.window;
        tasks.spawn(async move { send_many(&[conn], &conv, per_sender, window, &bar).await });
    }
    let mut acks = histogram();
    while let Some(joined) = tasks.join_next().await {
        let h = joined.map_err(|e| BenchError::Request(e.to_string()))??;
        acks.add(&h).map_err(|e| BenchError::Request(e.to_string()))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut out = report(
        "ingest",
        json!({
            "senders": w.senders,
            "conversations": w.conversations,
            "window": w.window,
            "messages": per_sender * w.senders as u64,
            "senders_per_node": round_robin(target, w.senders),
        }),
    );
    out.throughput.push(("messages".into(), acks.len() as f64 / elapsed));
    out.latency.push(("ack latency".into(), Latency::from_micros(&acks)));
    Ok(out)
}

/// The parts of an event frame the fanout listeners read, borrowed from the frame's text.
#[derive(serde::Deserialize)]
struct EventFrame<'a> {
    kind: Option<&'a str>,
    seq: Option<i64>,
    #[serde(borrow)]
    data: Option<EventBody<'a>>,
}

/// The body of a message event (the benchmark's bodies are digits, so they borrow without unescaping).
#[derive(serde::Deserialize)]
struct EventBody<'a> {
    body: Option<&'a str>,
}

/// What the fanout listeners of one node received.
struct NodeDeliveries {
    latencies: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    /// Message events whose sequence number was not above the listener's previous one: repeated or out of
    /// order (a session must forward each event once, in order).
    out_of_order: AtomicU64,
}

async fn fanout(target: &Target, w: &Workload) -> Result<Report> {
    let http = reqwest::Client::new();
    // Only participants receive a conversation's messages. The sender speaks as the first listener from a
    // connection of its own, so that the conversation holds no more participants than listeners (at most 1000).
    let members: Vec<String> = (0..w.listeners.max(1)).map(|i| format!("listener-{i}")).collect();
    let conv = conversation(&http, target, &members).await?;
    // The sender is on node 0; with several nodes the listeners are on the others, so that every delivery
    // crosses from the node that committed the message to another one.
    let nodes = target.node_count();
    let listener_node = |i: usize| if nodes > 1 { 1 + i % (nodes - 1) } else { 0 };
    let received: Vec<Arc<NodeDeliveries>> = (0..nodes)
        .map(|_| {
            Arc::new(NodeDeliveries {
                latencies: Mutex::new(histogram()),
                delivered: AtomicU64::new(0),
                out_of_order: AtomicU64::new(0),
            })
        })
        .collect();
    let bar = progress(w.listeners as u64, "listeners");
    let mut listeners = Vec::with_capacity(w.listeners);
    for i in 0..w.listeners {
        let node = listener_node(i);
        let mine = Arc::clone(&received[node]);
        let last_seq = AtomicI64::new(0);
        let on_frame: OnFrame = Arc::new(move |text: &str| {
            let Ok(frame) = serde_json::from_str::<EventFrame<'_>>(text) else { return };
            if frame.kind == Some("message.added")
                && let Some(sent) = frame.data.and_then(|d| d.body).and_then(|b| b.parse::<u64>().ok())
            {
                let latency = micros_now().saturating_sub(sent);
                if let Ok(mut h) = mine.latencies.lock() {
                    h.saturating_record(latency.max(1));
                }
                mine.delivered.fetch_add(1, Ordering::Relaxed);
                let seq = frame.seq.unwrap_or(0);
                if last_seq.fetch_max(seq, Ordering::Relaxed) >= seq {
                    mine.out_of_order.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let token = target.token(&format!("listener-{i}"));
        let conn = Conn::open(&target.ws_url(node), &token, Some(on_frame)).await?;
        listeners.push(conn);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let sender = Conn::open(&target.ws_url(0), &target.token("listener-0"), None).await?;
    let total = w.rate * w.seconds;
    let bar = progress(total, "fanout");
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / w.rate as f64));
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..total {
        tick.tick().await;
        // The rate is fixed: a send does not wait for the one before it to be acknowledged.
        let (sender, conv, bar) = (sender.clone(), conv.clone(), bar.clone());
        sends.spawn(async move {
            let at = Instant::now();
            sender
                .call_as::<IgnoredAny>("send_message", json!({"conversation": conv, "body": micros_now().to_string()}))
                .await?;
            bar.inc(1);
            Ok::<_, BenchError>(at.elapsed())
        });
    }
    // How long the sender waited for each acknowledgement: the commit's share of the delivery latency.
    let mut acks = histogram();
    while let Some(sent) = sends.join_next().await {
        let waited = sent.map_err(|e| BenchError::Request(e.to_string()))??;
        acks.saturating_record(waited.as_micros() as u64);
    }
    let expected = total * w.listeners as u64;
    let delivered = || received.iter().map(|r| r.delivered.load(Ordering::Relaxed)).sum::<u64>();
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut listeners_per_node = vec![0usize; nodes];
    for i in 0..w.listeners {
        listeners_per_node[listener_node(i)] += 1;
    }
    let listener_nodes: Vec<usize> = (0..nodes).filter(|&n| listeners_per_node[n] > 0).collect();
    let mut out = report(
        "fanout",
        json!({
            "listeners": w.listeners,
            "rate": w.rate,
            "seconds": w.seconds,
            "sender_node": 0,
            "listener_nodes": listener_nodes,
            "listeners_per_node": listeners_per_node,
        }),
    );
    let delivered = delivered();
    out.throughput.push(("deliveries".into(), delivered as f64 / elapsed));
    let mut all = histogram();
    for r in &received {
        let h = r.latencies.lock().map_err(|_| BenchError::Request("poisoned".into()))?;
        all.add(&*h).map_err(|e| BenchError::Request(e.to_string()))?;
    }
    out.latency.push(("delivery latency".into(), Latency::from_micros(&all)));
    out.latency.push(("send ack latency".into(), Latency::from_micros(&acks)));
    if nodes > 1 {
        for &n in &listener_nodes {
            let h = received[n].latencies.lock().map_err(|_| BenchError::Request("poisoned".into()))?;
            out.latency.push((format!("delivery latency node {n}"), Latency::from_micros(&h)));
        }
    }
    out.figures.push(("delivered fraction".into(), delivered as f64 / expected.max(1) as f64));
    if nodes > 1 {
        for &n in &listener_nodes {
            let wanted = total * listeners_per_node[n] as u64;
            let got = received[n].delivered.load(Ordering::Relaxed);
            out.figures.push((format!("delivered fraction node {n}"), got as f64 / wanted.max(1) as f64));
        }
    }
    let out_of_order: u64 = received.iter().map(|r| r.out_of_order.load(Ordering::Relaxed)).sum();
    out.figures.push(("repeated or out of order".into(), out_of_order as f64));
    drop(listeners);
    drop(sender);
    Ok(out)
}

async fn connections(target: &Target, w: &Workload) -> Result<Report> {
    let before = target.usage().map(|(rss, _)| rss);
    let bar = progress(w.listeners as u64, "connect");
    let started = Instant::now();
    let mut conns = Vec::with_capacity(w.listeners);
    let mut connect_latency = histogram();
    for i in 0..w.listeners {
        let t = Instant::now();
        conns.push(Conn::open(&target.ws_url(i), &target.token(&format!("idle-{}", i % 1000)), None).await?);
        connect_latency.saturating_record(t.elapsed().as_micros() as u64);
        bar.inc(1);
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = target.usage().map(|(rss, _)| rss);
    let mut out = report(
        "connections",
        json!({"connections": w.listeners, "connections_per_node": round_robin(target, w.listeners)}),
    );
    out.throughput.push(("connects".into(), w.listeners as f64 / elapsed));
    out.latency.push(("connect latency".into(), Latency::from_micros(&connect_latency)));
    if let (Some(before), Some(after)) = (before, after) {
        out.figures
            .push(("KiB per connection".into(), after.saturating_sub(before) as f64 / 1024.0 / w.listeners as f64));
        out.figures.push(("server RSS with connections MiB".into(), after as f64 / (1024.0 * 1024.0)));
    }
    drop(conns);
    Ok(out)
}

/// Fills a conversation with `count` messages as fast as the server takes them.
async fn fill(target: &Target, conv: &str, identity: &str, count: u64) -> Result<f64> {
    let mut conns = Vec::new();
    for i in 0..4 {
        conns.push(Conn::open(&target.ws_url(i), &target.token(identity), None).await?);
    }
    let bar = progress(count, "fill");
    let started = Instant::now();
    send_many(&conns, conv, count, 64, &bar).await?;
    bar.finish_and_clear();
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// What a history reader reads of a page: the items' indices and whether there is more.
#[derive(serde::Deserialize)]
struct HistoryPage {
    items: Vec<PageItem>,
    #[serde(default)]
    has_older: bool,
    #[serde(default)]
    has_newer: bool,
}

/// A message of a page, of which the reader needs only the index.
#[derive(serde::Deserialize)]
struct PageItem {
    index: i64,
}

async fn history(target: &Target, w: &Workload) -> Result<Report> {
    let http = reqwest::Client::new();
    let conv = conversation(&http, target, &["historian".to_string()]).await?;
    let fill_rate = fill(target, &conv, "historian", w.messages).await?;
    // Several readers, each paging through the whole conversation on its own connection: what the server
    // sustains. The single-reader latency is what one client sees.
    let readers = w.senders.clamp(1, 16);
    let mut conns = Vec::new();
    for i in 0..readers {
        conns.push(Conn::open(&target.ws_url(i), &target.token("historian"), None).await?);
    }
    let mut out = report(
        "history",
        json!({
            "messages": w.messages,
            "page_size": 30,
            "readers": readers,
            "readers_per_node": round_robin(target, readers),
        }),
    );
    out.figures.push(("fill messages per second".into(), fill_rate));
    for direction in ["backwards", "forward"] {
        let bar = progress((w.messages / 30 + 1) * readers as u64, direction);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for conn in &conns {
            let (conn, conv, bar) = (conn.clone(), conv.clone(), bar.clone());
            tasks.spawn(async move {
                let mut anchor: Option<i64> = if direction == "forward" { Some(0) } else { None };
                let mut latency = histogram();
                loop {
                    let t = Instant::now();
                    let page: HistoryPage = conn
                        .call_as(
                            "get_messages",
                            json!({"conversation": conv, "page_size": 30, "anchor": anchor, "direction": direction}),
                        )
                        .await?
                        .ok_or_else(|| BenchError::Request("a page without a result".into()))?;
                    latency.saturating_record(t.elapsed().as_micros() as u64);
                    bar.inc(1);
                    let (Some(first), Some(last)) = (page.items.first(), page.items.last()) else { break };
                    if direction == "backwards" {
                        if !page.has_older {
                            break;
                        }
                        anchor = Some(first.index - 1);
                    } else {
                        if !page.has_newer {
                            break;
                        }
                        anchor = Some(last.index + 1);
                    }
                }
                Ok::<_, BenchError>(latency)
            });
        }
        let mut latency = histogram();
        while let Some(joined) = tasks.join_next().await {
            let reader = joined.map_err(|e| BenchError::Request(e.to_string()))??;
            latency.add(&reader).map_err(|e| BenchError::Request(e.to_string()))?;
        }
        bar.finish_and_clear();
        let pages = latency.len();
        out.throughput.push((format!("pages {direction}"), pages as f64 / started.elapsed().as_secs_f64()));
        out.latency.push((format!("page latency {direction}"), Latency::from_micros(&latency)));
    }
    Ok(out)
}

/// Runs `count` REST requests from `clients` concurrent keep-alive clients (client i on node i, modulo the node
/// count); `request` builds each one from the client's node's base URL and the response must have status
/// `expect`. Returns the latency histogram and requests per second.
async fn rest_phase(
    http: &reqwest::Client,
    target: &Target,
    what: &str,
    count: u64,
    clients: usize,
    expect: u16,
    request: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder + Send + Sync + Clone + 'static,
) -> Result<(Histogram<u64>, f64)> {
    let bar = progress(count, what);
    let remaining = Arc::new(AtomicU64::new(count));
    let (user, password) = (target.basic_auth().0.to_string(), target.basic_auth().1.to_string());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..clients {
        let (http, remaining, bar, request) = (http.clone(), Arc::clone(&remaining), bar.clone(), request.clone());
        let base = target.url(i).to_string();
        let (user, password) = (user.clone(), password.clone());
        tasks.spawn(async move {
            let mut h = histogram();
            while remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok() {
                let t = Instant::now();
                let response = request(&http, &base)
                    .basic_auth(&user, Some(&password))
                    .send()
                    .await
                    .map_err(|e| BenchError::Request(e.to_string()))?;
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                if status != expect {
                    return Err(BenchError::Request(format!("answered {status}, expected {expect}")));
                }
                h.saturating_record(t.elapsed().as_micros() as u64);
                bar.inc(1);
            }
            Ok::<_, BenchError>(h)
        });
    }
    let mut total = histogram();
    while let Some(joined) = tasks.join_next().await {
        total
            .add(&joined.map_err(|e| BenchError::Request(e.to_string()))??)
            .map_err(|e| BenchError::Request(e.to_string()))?;
    }
    let rate = total.len() as f64 / started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok((total, rate))
}

async fn rest(target: &Target, w: &Workload) -> Result<Report> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(w.senders)
        .build()
        .map_err(|e| BenchError::Request(e.to_string()))?;
    let conv = conversation(&http, target, &[]).await?;
    let count = w.messages;
    let create_path = format!("/v1/Conversations/{conv}/Messages");
    let (creates, create_rate) = rest_phase(&http, target, "rest create", count, w.senders, 201, move |http, base| {
        http.post(format!("{base}{create_path}")).form(&[("Body", "rest benchmark"), ("Author", "bench")])
    })
    .await?;
    let lists = (count / 10).max(100);
    let list_path = format!("/v1/Conversations/{conv}/Messages?PageSize=50&Order=desc");
    let (listed, list_rate) = rest_phase(&http, target, "rest list", lists, w.senders, 200, move |http, base| {
        http.get(format!("{base}{list_path}"))
    })
    .await?;
    let mut out = report(
        "rest",
        json!({
            "clients": w.senders,
            "creates": count,
            "lists": lists,
            "clients_per_node": round_robin(target, w.senders),
        }),
    );
    out.throughput.push(("creates".into(), create_rate));
    out.throughput.push(("lists".into(), list_rate));
    out.latency.push(("create latency".into(), Latency::from_micros(&creates)));
    out.latency.push(("list latency".into(), Latency::from_micros(&listed)));
    Ok(out)
}

async fn unread(target: &Target, w: &Workload) -> Result<Report> {
    let http = reqwest::Client::new();
    let conv = conversation(&http, target, &["reader".to_string()]).await?;
    let fill_rate = fill(target, &conv, "reader", w.messages).await?;
    let mut conns = Vec::new();
    for i in 0..w.senders.clamp(1, 8) {
        conns.push(Conn::open(&target.ws_url(i), &target.token("reader"), None).await?);
    }
    let last = w.messages as i64 - 1;
    let clock = timed(w.seconds, "unread");
    let deadline = Instant::now() + Duration::from_secs(w.seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, conn) in conns.iter().enumerate() {
        for lane in 0..w.window.min(16) {
            let (conn, conv) = (conn.clone(), conv.clone());
            tasks.spawn(async move {
                let (mut updates, mut reads) = (histogram(), histogram());
                let mut i = (c * 131 + lane * 17) as i64;
                while Instant::now() < deadline {
                    i = (i * 7919 + 104_729) % (last + 1);
                    let t = Instant::now();
                    conn.call_as::<IgnoredAny>("set_read_horizon", json!({"conversation": conv, "index": i})).await?;
                    updates.saturating_record(t.elapsed().as_micros() as u64);
                    let t = Instant::now();
                    conn.call_as::<IgnoredAny>("get_unread_count", json!({"conversation": conv})).await?;
                    reads.saturating_record(t.elapsed().as_micros() as u64);
                }
                Ok::<_, BenchError>((updates, reads))
            });
        }
    }
    let (mut updates, mut reads) = (histogram(), histogram());
    while let Some(joined) = tasks.join_next().await {
        let (u, r) = joined.map_err(|e| BenchError::Request(e.to_string()))??;
        updates.add(&u).map_err(|e| BenchError::Request(e.to_string()))?;
        reads.add(&r).map_err(|e| BenchError::Request(e.to_string()))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(clock);
    let mut out = report(
        "unread",
        json!({
            "messages": w.messages,
            "seconds": w.seconds,
            "connections_per_node": round_robin(target, w.senders.clamp(1, 8)),
        }),
    );
    out.figures.push(("fill messages per second".into(), fill_rate));
    out.throughput.push(("horizon updates".into(), updates.len() as f64 / elapsed));
    out.throughput.push(("unread reads".into(), reads.len() as f64 / elapsed));
    out.latency.push(("horizon update latency".into(), Latency::from_micros(&updates)));
    out.latency.push(("unread read latency".into(), Latency::from_micros(&reads)));
    Ok(out)
}
