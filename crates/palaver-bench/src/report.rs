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
    /// Server RSS at the end, in MiB.
    pub server_rss_mib: Option<f64>,
    /// Server CPU seconds used during the run.
    pub server_cpu_seconds: Option<f64>,
}

impl Report {
    /// The table a person reads.
    pub fn table(&self) -> String {
        let mut out = format!("scenario: {}  {}\n", self.scenario, self.parameters);
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
        if let Some(rss) = self.server_rss_mib {
            out.push_str(&format!("  {:<34} {rss:>12.1} MiB\n", "server RSS"));
        }
        if let Some(cpu) = self.server_cpu_seconds {
            out.push_str(&format!("  {:<34} {cpu:>12.2} s\n", "server CPU"));
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
