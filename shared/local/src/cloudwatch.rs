//! Metrics through CloudWatch's `PutMetricData`, for endpoints where EMF log lines are not
//! collected (the local emulator). Deployed functions write EMF only, so they do not link the
//! CloudWatch SDK.

use sluice_aws::metrics::MetricSet;
use sluice_aws::AwsError;

/// The dimension that tells local pipelines apart: metrics of every local pipeline on an
/// endpoint share one namespace, so `sluice status` and the local alarms read those of theirs.
pub const PIPELINE_DIMENSION: &str = "Pipeline";

/// Publishes collected metric sets with `PutMetricData`, for endpoints where EMF log lines are
/// not turned into metrics, each with the `Pipeline` dimension `pipeline` added.
pub async fn put_metric_data(
    cw: &aws_sdk_cloudwatch::Client,
    sets: &[(i64, MetricSet)],
    pipeline: &str,
) -> Result<(), AwsError> {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    let mut data = Vec::new();
    for (at, set) in sets {
        let dims: Vec<Dimension> = set
            .dimensions()
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(std::iter::once((PIPELINE_DIMENSION, pipeline)))
            .map(|(k, v)| Dimension::builder().name(k).value(v).build())
            .collect();
        let ts = aws_smithy_types::DateTime::from_millis(*at);
        for (name, unit, values) in set.values() {
            let datum = MetricDatum::builder()
                .metric_name(name)
                .set_dimensions(Some(dims.clone()))
                .unit(StandardUnit::from(unit.as_str()))
                .timestamp(ts)
                .set_values(Some(values.to_vec()))
                .build();
            data.push(datum);
        }
    }
    for chunk in data.chunks(500) {
        cw.put_metric_data()
            .namespace(sluice_aws::metrics::NAMESPACE)
            .set_metric_data(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutMetricData", sluice_aws::metrics::NAMESPACE, e))?;
    }
    Ok(())
}
