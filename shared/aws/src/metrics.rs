//! Metrics as CloudWatch Embedded Metric Format (EMF) log lines.
//!
//! Each function emits one EMF line per batch, in namespace `Sluice`, with the low-cardinality
//! dimension `Function` (and `Table` where a metric is per table). Lambda ships stdout to
//! CloudWatch Logs, which extracts the metrics; no API call is made on the hot path.

use std::io::Write;

use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every sluice metric.
pub const NAMESPACE: &str = "Sluice";

/// One kind of metric set a function emits: its dimensions and the metrics it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    /// The `Function` dimension's value.
    pub function: &'static str,
    /// The dimensions, `Function` first.
    pub dimensions: &'static [&'static str],
    /// The metrics a set of this kind may hold.
    pub metrics: &'static [&'static str],
}

/// Every metric sluice emits, by function and dimensions. Alarms, the dashboard and the README
/// name only these, and tests check that the functions emit nothing else.
pub const CATALOG: &[Emitted] = &[
    Emitted {
        function: "ingest",
        dimensions: &["Function"],
        metrics: &[
            "RecordsIn",
            "RecordsLanded",
            "RecordsQuarantined",
            "RetriableFailures",
            "ObjectsWritten",
            "BytesWritten",
            "BatchDuration",
        ],
    },
    Emitted {
        function: "transform",
        dimensions: &["Function"],
        metrics: &[
            "MessagesIn",
            "LinesIn",
            "ObjectsRead",
            "ControlRecords",
            "RecordsQuarantined",
            "RetriableFailures",
            "BatchDuration",
        ],
    },
    Emitted {
        function: "transform",
        dimensions: &["Function", "Table"],
        metrics: &[
            "RowsWritten",
            "RowsAlreadyWritten",
            "RowsStale",
            "RowsQuarantined",
            "EndToEndLatency",
        ],
    },
    Emitted {
        function: "redrive",
        dimensions: &["Function"],
        metrics: &["LettersRead", "Redriven", "Left", "RedriveErrors"],
    },
    Emitted {
        function: "redrive",
        dimensions: &["Function", "Class"],
        metrics: &["Redriven", "Left"],
    },
    Emitted {
        function: "scaler",
        dimensions: &["Function"],
        metrics: &["ScalingChanges", "ScalerErrors", "CapacityExhausted"],
    },
    Emitted {
        function: "scaler",
        dimensions: &["Function", "Source"],
        metrics: &[
            "Concurrency",
            "ParallelizationFactor",
            "Recommended",
            "Backlog",
            "ScalingChanges",
            "CapacityExhausted",
        ],
    },
];

/// The catalogue entry a set belongs to; an error naming what is not catalogued.
pub fn catalogued(set: &MetricSet) -> Result<&'static Emitted, String> {
    let function = set
        .dimensions()
        .iter()
        .find(|(k, _)| *k == "Function")
        .map_or("", |(_, v)| v.as_str());
    let dims: Vec<&str> = set.dimensions().iter().map(|(k, _)| *k).collect();
    let entry = CATALOG
        .iter()
        .find(|e| e.function == function && e.dimensions == dims.as_slice())
        .ok_or_else(|| {
            format!("no metric set of {function:?} with dimensions {dims:?} is catalogued")
        })?;
    match set.values().find(|(n, _, _)| !entry.metrics.contains(n)) {
        Some((n, _, _)) => Err(format!(
            "{function} emits {n} with dimensions {dims:?}, which is not catalogued"
        )),
        None => Ok(entry),
    }
}

/// Checks what `function` emitted in a run: every set is catalogued, and every metric the
/// catalogue lists for `function` was emitted at least once (so the catalogue cannot drift from
/// the code either way).
pub fn check_coverage<'a>(
    function: &str,
    sets: impl IntoIterator<Item = &'a MetricSet>,
) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for set in sets {
        let entry = catalogued(set)?;
        for (name, _, _) in set.values() {
            seen.insert((entry.dimensions, name));
        }
    }
    let missing: Vec<String> = CATALOG
        .iter()
        .filter(|e| e.function == function)
        .flat_map(|e| e.metrics.iter().map(move |m| (e.dimensions, *m)))
        .filter(|k| !seen.contains(k))
        .map(|(d, m)| format!("{m} {d:?}"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("{function} did not emit {}", missing.join(", ")))
    }
}

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
    fn sets_are_checked_against_the_catalogue() {
        let mut m = MetricSet::new("ingest");
        m.put("RecordsIn", Unit::Count, 1.0);
        assert!(catalogued(&m).is_ok());
        m.put("Invented", Unit::Count, 1.0);
        assert!(catalogued(&m).unwrap_err().contains("Invented"));
        let mut t = MetricSet::new("ingest").dimension("Table", "orders");
        t.put("RecordsIn", Unit::Count, 1.0);
        assert!(catalogued(&t).unwrap_err().contains("no metric set"));
    }

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
