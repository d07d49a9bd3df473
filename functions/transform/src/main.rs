//! The transform Lambda function: wiring only. The logic is in `sluice_pipeline::transform`.
//!
//! Configuration is read and clients are built once, at cold start; a missing variable stops
//! the function before it takes any event, naming the variable. Contracts are loaded lazily and
//! cached for `SLUICE_CONTRACTS_TTL_SECS`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::value::RawValue;
use sluice_aws::clients::load_sdk_config;
use sluice_aws::metrics::Sink;
use sluice_pipeline::transform::{handle, Transform};
use sluice_pipeline::{lambda, TransformConfig};

/// mimalloc: much of the handlers' time is spent allocating, where it is faster than the system
/// allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = TransformConfig::from_env()?;
    let sdk = load_sdk_config().await;
    let deps = Transform::from_sdk(config, &sdk, Sink::Stdout);
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            let (response, _) = handle(event.payload.get(), deps).await?;
            serde_json::to_value(response).map_err(|e| lambda::unwritable_response(&e))
        },
    ))
    .await
}
