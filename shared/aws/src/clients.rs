//! Building AWS clients once, from the standard environment.
//!
//! The endpoint comes from the SDK's own `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`),
//! so the same code talks to AWS, LocalStack or the local emulator. When an endpoint is set,
//! S3 is addressed path-style, which emulators need.

use aws_config::BehaviorVersion;
pub use aws_config::SdkConfig;

/// Loads the shared SDK configuration from the environment (region, credentials, endpoint).
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Whether an endpoint override is set in the environment for S3.
pub fn endpoint_overridden() -> bool {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

/// An S3 client; path-style when an endpoint is overridden.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(endpoint_overridden() || sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// An SQS client.
pub fn sqs_client(sdk: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(sdk)
}

/// Overrides for the SDK configuration, as the CLI's `--endpoint-url`, `--region` and `--profile`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The endpoint of every service (as `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// The region.
    pub region: Option<String>,
    /// The shared-config profile.
    pub profile: Option<String>,
}

/// Loads the SDK configuration from the environment, with `overrides` taking precedence.
///
/// With an endpoint but no region anywhere, the region defaults to `us-east-1`, as emulators
/// accept any region.
pub async fn load_sdk_config_with(overrides: &Overrides) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = &overrides.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(profile) = &overrides.profile {
        loader = loader.profile_name(profile);
    }
    let region_in_env = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    match &overrides.region {
        Some(r) => loader = loader.region(aws_config::Region::new(r.clone())),
        None if !region_in_env && (overrides.endpoint_url.is_some() || endpoint_overridden()) => {
            loader = loader.region(aws_config::Region::from_static("us-east-1"));
        }
        None => {}
    }
    loader.load().await
}
