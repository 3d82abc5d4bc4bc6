//! A strict reader of the Prometheus text format (version 0.0.4), for `palaver status` and for the tests that
//! check that `/metrics` scrapes cleanly. It refuses what a Prometheus server would refuse or silently
//! misread: malformed names, labels or values, a second `TYPE` or `HELP` for a name, a sample after its family
//! was left, a repeated series, and histograms whose buckets are not cumulative or do not end with `+Inf`
//! equal to `_count`.

use std::collections::{BTreeMap, HashMap, HashSet};

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Every sample, in the order of the text.
    pub samples: Vec<Sample>,
    /// The declared type of each family, by the name its `TYPE` line gives.
    pub types: HashMap<String, MetricType>,
}

/// One line of figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (`palaver_http_requests_total`, `…_bucket`).
    pub name: String,
    /// Its labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn matches(&self, filter: &[(&str, &str)]) -> bool {
        filter.iter().all(|(k, v)| self.label(k) == Some(v))
    }
}

/// A family's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// Why a text is not a valid scrape: the line (from 1) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// The offending line, counted from 1 (0 for a rule about the whole text).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl Exposition {
    /// The sum of the samples named `name` whose labels include `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.samples.iter().filter(|s| s.name == name && s.matches(filter)).map(|s| s.value).sum()
    }

    /// Whether a sample named `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// The histogram `name`'s cumulative buckets (upper bound, count), summed over its series whose labels
    /// include `filter`, by increasing bound.
    pub fn buckets(&self, name: &str, filter: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut by_bound: BTreeMap<OrderedBound, f64> = BTreeMap::new();
        for sample in self.samples.iter().filter(|s| s.name == bucket && s.matches(filter)) {
            if let Some(bound) = sample.label("le").and_then(parse_value) {
                *by_bound.entry(OrderedBound(bound)).or_default() += sample.value;
            }
        }
        by_bound.into_iter().map(|(bound, count)| (bound.0, count)).collect()
    }
}

/// A bucket bound with a total order (bounds are never NaN).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
struct OrderedBound(f64);
impl Eq for OrderedBound {}
#[allow(clippy::derive_ord_xor_partial_ord)]
impl Ord for OrderedBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Parses and checks `text`.
///
/// # Errors
/// The first line that breaks the format, or a histogram that breaks its rules.
pub fn parse(text: &str) -> Result<Exposition, ParseError> {
    let mut exposition = Exposition::default();
    let mut helped = HashSet::new();
    // Families whose samples ended (another family's started): a sample of one of them now is out of place.
    let mut closed: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series = HashSet::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let fail = |reason: String| ParseError { line: number, reason };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match words.next() {
                Some("HELP") => {
                    let name = words.next().ok_or_else(|| fail("HELP without a name".into()))?;
                    check_metric_name(name).map_err(fail)?;
                    if !helped.insert(name.to_string()) {
                        return Err(fail(format!("a second HELP for {name}")));
                    }
                }
                Some("TYPE") => {
                    let name = words.next().ok_or_else(|| fail("TYPE without a name".into()))?;
                    check_metric_name(name).map_err(fail)?;
                    let kind = match words.next().map(str::trim) {
                        Some("counter") => MetricType::Counter,
                        Some("gauge") => MetricType::Gauge,
                        Some("histogram") => MetricType::Histogram,
                        Some("summary") => MetricType::Summary,
                        Some("untyped") => MetricType::Untyped,
                        other => return Err(fail(format!("unknown type {other:?} for {name}"))),
                    };
                    if exposition.types.insert(name.to_string(), kind).is_some() {
                        return Err(fail(format!("a second TYPE for {name}")));
                    }
                    if exposition.samples.iter().any(|s| family_of(&s.name, &exposition.types) == name) {
                        return Err(fail(format!("TYPE for {name} after its samples")));
                    }
                }
                _ => {}
            }
            continue;
        }
        let sample = parse_sample(line).map_err(fail)?;
        let family = family_of(&sample.name, &exposition.types).to_string();
        if current.as_deref() != Some(family.as_str()) {
            if closed.contains(&family) {
                return Err(fail(format!("a sample of {family} after other families' samples")));
            }
            if let Some(previous) = current.replace(family.clone()) {
                closed.insert(previous);
            }
        }
        match exposition.types.get(&family) {
            Some(MetricType::Counter) if sample.value.is_nan() || sample.value < 0.0 => {
                return Err(fail(format!("counter {} is {}", sample.name, sample.value)));
            }
            Some(MetricType::Histogram) if sample.name == family => {
                return Err(fail(format!("histogram {family} has a bare sample")));
            }
            _ => {}
        }
        let mut key: Vec<_> = sample.labels.clone();
        key.sort();
        if !series.insert((sample.name.clone(), key)) {
            return Err(fail(format!("{} repeats a series", sample.name)));
        }
        exposition.samples.push(sample);
    }
    check_histograms(&exposition)?;
    Ok(exposition)
}

/// The family a sample belongs to: a histogram's or summary's `_bucket`/`_sum`/`_count` belong to the
/// declared base name.
fn family_of<'a>(name: &'a str, types: &HashMap<String, MetricType>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && matches!(types.get(base), Some(MetricType::Histogram | MetricType::Summary))
        {
            return base;
        }
    }
    name
}

/// A series' labels.
type Labels = Vec<(String, String)>;

fn check_histograms(exposition: &Exposition) -> Result<(), ParseError> {
    let whole = |reason: String| ParseError { line: 0, reason };
    for (name, _) in exposition.types.iter().filter(|(_, t)| **t == MetricType::Histogram) {
        // Series by their labels without `le`.
        let mut buckets: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts = BTreeMap::new();
        let mut sums = HashSet::new();
        for sample in &exposition.samples {
            let rest: Vec<_> = sample.labels.iter().filter(|(k, _)| k != "le").cloned().collect();
            if sample.name == format!("{name}_bucket") {
                let bound = sample
                    .label("le")
                    .and_then(parse_value)
                    .ok_or_else(|| whole(format!("{name}_bucket without a valid le")))?;
                buckets.entry(rest).or_default().push((bound, sample.value));
            } else if sample.name == format!("{name}_count") {
                counts.insert(rest, sample.value);
            } else if sample.name == format!("{name}_sum") {
                sums.insert(rest);
            }
        }
        for (labels, series) in &buckets {
            if !series.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
                return Err(whole(format!("{name}{labels:?}: buckets are not increasing and cumulative")));
            }
            match series.last() {
                Some((bound, count)) if *bound == f64::INFINITY => {
                    if counts.get(labels) != Some(count) {
                        return Err(whole(format!("{name}{labels:?}: the +Inf bucket is not _count")));
                    }
                }
                _ => return Err(whole(format!("{name}{labels:?}: no +Inf bucket"))),
            }
            if !sums.contains(labels) {
                return Err(whole(format!("{name}{labels:?}: no _sum")));
            }
        }
        if counts.len() != buckets.len() {
            return Err(whole(format!("{name}: a _count without buckets")));
        }
    }
    Ok(())
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("{name:?} is not a metric name"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with("__") {
        Ok(())
    } else {
        Err(format!("{name:?} is not a label name"))
    }
}

fn parse_value(raw: &str) -> Option<f64> {
    match raw {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => raw.parse().ok().filter(|_| raw.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))),
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("a label without '='")?;
            let label = &rest[..eq];
            check_label_name(label)?;
            if labels.iter().any(|(k, _)| k == label) {
                return Err(format!("label {label} twice"));
            }
            rest = rest[eq + 1..].strip_prefix('"').ok_or("a label value without quotes")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("a bad escape {other:?} in a label value")),
                    },
                    Some((_, '\n')) | None => return Err("an unterminated label value".into()),
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push((label.to_string(), value));
            rest = &rest[end + 1..];
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err("labels not separated by ','".into());
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut fields = rest.split(' ');
    let raw = fields.next().unwrap_or_default();
    let value = parse_value(raw).ok_or_else(|| format!("{raw:?} is not a value"))?;
    if let Some(timestamp) = fields.next()
        && timestamp.parse::<i64>().is_err()
    {
        return Err(format!("{timestamp:?} is not a timestamp"));
    }
    if fields.next().is_some() {
        return Err("more than a value and a timestamp".into());
    }
    Ok(Sample { name: name.to_string(), labels, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_well_formed_scrape() {
        let text = "# HELP a_total Things.\n# TYPE a_total counter\na_total{kind=\"x\\\"y\"} 3\na_total 1\n\
                    # TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.sum("a_total", &[]), 4.0);
        assert_eq!(parsed.sum("a_total", &[("kind", "x\"y")]), 3.0);
        assert_eq!(parsed.buckets("h", &[]), [(0.5, 1.0), (f64::INFINITY, 2.0)]);
        assert_eq!(parsed.types["h"], MetricType::Histogram);
    }

    #[test]
    fn refuses_what_prometheus_would() {
        for (text, why) in [
            ("a b\n", "a value that is not a number"),
            ("1a 2\n", "a bad name"),
            ("a{b=c} 1\n", "an unquoted label value"),
            ("a{b=\"c\",b=\"d\"} 1\n", "a repeated label"),
            ("a 1\na 2\n", "a repeated series"),
            ("# TYPE a counter\n# TYPE a counter\na 1\n", "a second TYPE"),
            ("# TYPE a counter\na -1\n", "a negative counter"),
            ("a 1\nb 1\na{x=\"1\"} 1\n", "a family left and come back to"),
            (
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
                "not cumulative",
            ),
            ("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", "no +Inf"),
            ("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n", "+Inf is not the count"),
            ("a{b=\"c\"\n", "an unterminated label set"),
        ] {
            assert!(parse(text).is_err(), "accepted {why}: {text:?}");
        }
    }
}
