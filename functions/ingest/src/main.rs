//! The ingest Lambda function: wiring only. The logic is in `sluice_pipeline::ingest`.
//!
//! Configuration is read and clients are built once, at cold start; a missing variable stops
//! the function before it takes any event, naming the variable.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::value::RawValue;
use sluice_aws::clients::load_sdk_config;
use sluice_aws::metrics::Sink;
use sluice_pipeline::ingest::{handle, Ingest};
use sluice_pipeline::{lambda, IngestConfig};

/// mimalloc: much of the handlers' time is spent allocating, where it is faster than the system
/// allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = IngestConfig::from_env()?;
    let sdk = load_sdk_config().await;
    let deps = Ingest::from_sdk(config, &sdk, Sink::Stdout);
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            let response = handle(event.payload.get(), deps).await?;
            response
                .to_json()
                .map_err(|e| lambda::unwritable_response(&e))
        },
    ))
    .await
}
