//! Results: a human table and one JSON line.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Worst.
    pub max_ms: f64,
}

impl Latency {
    /// From a histogram of microseconds.
    pub(crate) fn from_micros(h: &Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// What a scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Parameters that shaped the run.
    pub parameters: serde_json::Value,
    /// Named throughputs (per second).
    pub throughput: Vec<(String, f64)>,
    /// Named latencies.
    pub latency: Vec<(String, Latency)>,
    /// Other figures (memory per connection, unread read time…).
    pub figures: Vec<(String, f64)>,
    /// The servers measured: who started them, their database, NATS, how many nodes.
    pub target: serde_json::Value,
    /// Server RSS at the end, in MiB: the sum over the nodes when there are several.
    pub server_rss_mib: Option<f64>,
    /// Server CPU seconds used during the run, summed over the nodes.
    pub server_cpu_seconds: Option<f64>,
    /// RSS and CPU of each node (when there are several and we started them).
    pub server_nodes: Vec<NodeUsage>,
    /// CPU seconds the load generator (this process) used during the run.
    pub bench_cpu_seconds: Option<f64>,
    /// CPU seconds the whole machine was busy during the run (servers, database, NATS, load generator, rest).
    pub machine_busy_cpu_seconds: Option<f64>,
    /// Wall-clock length of the run in seconds, set-up included (what the CPU figures are measured over).
    pub run_seconds: f64,
}

/// One node's resources during a run.
#[derive(Debug, Clone, Serialize)]
pub struct NodeUsage {
    /// RSS at the end, in MiB.
    pub rss_mib: f64,
    /// CPU seconds used during the run.
    pub cpu_seconds: f64,
}

impl Report {
    /// The table a person reads.
    pub fn table(&self) -> String {
        let mut out = format!("scenario: {}  {}\n  servers: {}\n", self.scenario, self.parameters, self.target);
        for (name, value) in &self.throughput {
            out.push_str(&format!("  {name:<34} {value:>12.1} /s\n"));
        }
        for (name, l) in &self.latency {
            out.push_str(&format!(
                "  {name:<34} p50 {:>8.3} ms  p99 {:>8.3} ms  p999 {:>8.3} ms  max {:>8.3} ms  (n={})\n",
                l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
            ));
        }
        for (name, value) in &self.figures {
            out.push_str(&format!("  {name:<34} {value:>12.3}\n"));
        }
        let summed = if self.server_nodes.len() > 1 {
            format!(" (sum of {} nodes)", self.server_nodes.len())
        } else {
            String::new()
        };
        if let Some(rss) = self.server_rss_mib {
            out.push_str(&format!("  {:<34} {rss:>12.1} MiB\n", format!("server RSS{summed}")));
        }
        if let Some(cpu) = self.server_cpu_seconds {
            out.push_str(&format!("  {:<34} {cpu:>12.2} s\n", format!("server CPU{summed}")));
        }
        if self.server_nodes.len() > 1 {
            for (i, node) in self.server_nodes.iter().enumerate() {
                out.push_str(&format!(
                    "  {:<34} {:>12.1} MiB {:>8.2} s CPU\n",
                    format!("node {i}"),
                    node.rss_mib,
                    node.cpu_seconds
                ));
            }
        }
        if let Some(cpu) = self.bench_cpu_seconds {
            out.push_str(&format!("  {:<34} {cpu:>12.2} s\n", "load generator CPU"));
        }
        if let Some(cpu) = self.machine_busy_cpu_seconds {
            out.push_str(&format!(
                "  {:<34} {cpu:>12.2} s  ({:.2} cores over {:.1} s)\n",
                "machine CPU busy (all processes)",
                cpu / self.run_seconds.max(1e-9),
                self.run_seconds
            ));
        }
        out
    }

    /// The machine-readable line.
    pub fn json_line(&self) -> String {
        let mut value = serde_json::json!({
            "scenario": self.scenario,
            "parameters": self.parameters,
            "server_rss_mib": self.server_rss_mib,
            "server_cpu_seconds": self.server_cpu_seconds,
            "target": self.target,
            "server_nodes": self.server_nodes,
            "bench_cpu_seconds": self.bench_cpu_seconds,
            "machine_busy_cpu_seconds": self.machine_busy_cpu_seconds,
            "run_seconds": self.run_seconds,
        });
        for (name, v) in &self.throughput {
            value[name.replace(' ', "_")] = serde_json::json!(v);
        }
        for (name, l) in &self.latency {
            value[name.replace(' ', "_")] = serde_json::to_value(l).unwrap_or_default();
        }
        for (name, v) in &self.figures {
            value[name.replace(' ', "_")] = serde_json::json!(v);
        }
        value.to_string()
    }
}
