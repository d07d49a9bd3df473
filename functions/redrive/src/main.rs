//! The redrive Lambda function: wiring only. The logic is in
//! `sluice_pipeline::recovery::function`, shared with `sluice dlq redrive`.
//!
//! Configuration is read and clients are built once, at cold start; a missing variable stops
//! the function before it takes any event, naming the variable.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::value::RawValue;
use sluice_aws::clients::load_sdk_config;
use sluice_aws::metrics::Sink;
use sluice_pipeline::lambda;
use sluice_pipeline::recovery::function::RedriveFunction;
use sluice_pipeline::recovery::RecoveryConfig;

/// mimalloc: much of the handlers' time is spent allocating, where it is faster than the system
/// allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = RecoveryConfig::from_env()?;
    let sdk = load_sdk_config().await;
    let function = RedriveFunction::from_sdk(config, &sdk, Sink::Stdout);
    let function = &function;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            let summary = function
                .handle(event.payload.get())
                .await
                .map_err(|e| Diagnostic {
                    error_type: if e.is_retriable() {
                        "Retriable.Redrive".into()
                    } else {
                        "NotRetriable.Redrive".into()
                    },
                    error_message: e.to_string(),
                })?;
            serde_json::to_value(summary).map_err(|e| lambda::unwritable_response(&e))
        },
    ))
    .await
}
