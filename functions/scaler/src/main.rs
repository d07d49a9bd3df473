//! The scaler Lambda function: wiring only. The logic is in `sluice_pipeline::scaler`, shared
//! with `sluice invoke scaler`.
//!
//! Configuration is read and clients are built once, at cold start; a missing variable stops
//! the function before it takes any event, naming the variable. A run in which a mapping could
//! not be observed or set answers with an error (after the others are set and the state is
//! saved), so Lambda's `Errors` metric counts it.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::value::RawValue;
use sluice_aws::clients::load_sdk_config;
use sluice_aws::metrics::Sink;
use sluice_pipeline::lambda;
use sluice_pipeline::scaler::{Scaler, ScalerConfig};

/// mimalloc: much of the handlers' time is spent allocating, where it is faster than the system
/// allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = ScalerConfig::from_env()?;
    let sdk = load_sdk_config().await;
    let scaler = Scaler::from_sdk(config, &sdk, Sink::Stdout);
    let scaler = &scaler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            let report = scaler
                .handle(event.payload.get())
                .await
                .map_err(|e| Diagnostic {
                    error_type: if e.is_retriable() {
                        "Retriable.Scaler".into()
                    } else {
                        "NotRetriable.Scaler".into()
                    },
                    error_message: e.to_string(),
                })?;
            if let Some(first) = report.mappings.iter().find_map(|m| m.error.as_deref()) {
                return Err(Diagnostic {
                    error_type: "Retriable.Scaler".into(),
                    error_message: format!(
                        "{} of {} mapping(s) not scaled; the first: {first}",
                        report.failed,
                        report.mappings.len()
                    ),
                });
            }
            serde_json::to_value(report).map_err(|e| lambda::unwritable_response(&e))
        },
    ))
    .await
}
