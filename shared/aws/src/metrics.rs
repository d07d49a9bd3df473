//! Metrics as CloudWatch Embedded Metric Format (EMF) log lines.
//!
//! Each function emits one EMF line per batch, in namespace `Sluice`, with the low-cardinality
//! dimension `Function` (and `Table` where a metric is per table). Lambda ships stdout to
//! CloudWatch Logs, which extracts the metrics; no API call is made on the hot path.

use std::io::Write;

use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every sluice metric.
pub const NAMESPACE: &str = "Sluice";

/// The unit of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count of records or failures.
    Count,
    /// A duration in milliseconds.
    Milliseconds,
    /// A size in bytes.
    Bytes,
}

impl Unit {
    /// The CloudWatch unit name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
            Self::Bytes => "Bytes",
        }
    }
}

/// Where metrics go.
#[derive(Debug, Clone, Default)]
pub enum Sink {
    /// EMF lines on standard output, which Lambda ships to CloudWatch Logs.
    #[default]
    Stdout,
    /// EMF lines on standard error, for the CLI, whose stdout is the handler's response.
    Stderr,
    /// Nowhere.
    Discard,
    /// Kept in memory, for a local runner to publish with `PutMetricData` (EMF is not collected
    /// where no CloudWatch Logs agent runs) and to summarise.
    Collect(Collector),
}

/// Metric sets kept in memory, with the time they were emitted.
#[derive(Debug, Clone, Default)]
pub struct Collector(std::sync::Arc<std::sync::Mutex<Vec<(i64, MetricSet)>>>);

impl Collector {
    /// Takes every set collected so far.
    pub fn drain(&self) -> Vec<(i64, MetricSet)> {
        match self.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    fn push(&self, at: i64, set: MetricSet) {
        match self.0.lock() {
            Ok(mut v) => v.push((at, set)),
            Err(poisoned) => poisoned.into_inner().push((at, set)),
        }
    }
}

/// One batch's metrics, emitted as one EMF line.
#[derive(Debug, Clone)]
pub struct MetricSet {
    dimensions: Vec<(&'static str, String)>,
    values: Vec<(&'static str, Unit, Vec<f64>)>,
}

impl MetricSet {
    /// A set with the `Function` dimension.
    pub fn new(function: &str) -> Self {
        Self {
            dimensions: vec![("Function", function.to_owned())],
            values: Vec::new(),
        }
    }

    /// Adds a dimension (keep it low-cardinality: a table name, a stage).
    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    /// Records a value.
    pub fn put(&mut self, name: &'static str, unit: Unit, value: f64) -> &mut Self {
        self.values.push((name, unit, vec![value]));
        self
    }

    /// Records several values of one metric (at most 100, as EMF allows), for distributions
    /// such as latency, where CloudWatch computes the percentiles.
    pub fn put_values(
        &mut self,
        name: &'static str,
        unit: Unit,
        mut values: Vec<f64>,
    ) -> &mut Self {
        values.truncate(100);
        self.values.push((name, unit, values));
        self
    }

    /// The EMF document for this set, at `timestamp_ms`.
    pub fn to_emf(&self, timestamp_ms: i64) -> Value {
        let dims: Vec<&str> = self.dimensions.iter().map(|(k, _)| *k).collect();
        let metrics: Vec<Value> = self
            .values
            .iter()
            .map(|(n, u, _)| json!({"Name": n, "Unit": u.as_str()}))
            .collect();
        let mut doc = Map::new();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [dims], "Metrics": metrics}]
            }),
        );
        for (k, v) in &self.dimensions {
            doc.insert((*k).into(), Value::String(v.clone()));
        }
        for (n, _, v) in &self.values {
            let value = match v.as_slice() {
                [one] => json!(one),
                many => json!(many),
            };
            doc.insert((*n).into(), value);
        }
        Value::Object(doc)
    }

    /// The dimensions, `Function` first.
    pub fn dimensions(&self) -> &[(&'static str, String)] {
        &self.dimensions
    }

    /// The values: name, unit, and one or more values.
    pub fn values(&self) -> impl Iterator<Item = (&'static str, Unit, &[f64])> {
        self.values.iter().map(|(n, u, v)| (*n, *u, v.as_slice()))
    }

    /// Sends the set to `sink`. A failed write is logged, never fatal.
    pub fn emit(&self, sink: &Sink, timestamp_ms: i64) {
        let result = match sink {
            Sink::Stdout => writeln!(std::io::stdout().lock(), "{}", self.to_emf(timestamp_ms)),
            Sink::Stderr => writeln!(std::io::stderr().lock(), "{}", self.to_emf(timestamp_ms)),
            Sink::Discard => Ok(()),
            Sink::Collect(c) => {
                c.push(timestamp_ms, self.clone());
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "Could not write a metrics line.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_every_metric() {
        let mut m = MetricSet::new("ingest");
        m.put("RecordsIn", Unit::Count, 3.0)
            .put("BatchDuration", Unit::Milliseconds, 12.5);
        let doc = m.to_emf(1000);
        let cw = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "Sluice");
        assert_eq!(cw["Dimensions"][0][0], "Function");
        assert_eq!(cw["Metrics"][1]["Unit"], "Milliseconds");
        assert_eq!(doc["Function"], "ingest");
        assert_eq!(doc["RecordsIn"], 3.0);
        assert_eq!(doc["_aws"]["Timestamp"], 1000);
        m.put_values(
            "Latency",
            Unit::Milliseconds,
            (0..150).map(f64::from).collect(),
        );
        let doc = m.to_emf(1000);
        assert_eq!(doc["Latency"].as_array().map(Vec::len), Some(100));
    }
}
