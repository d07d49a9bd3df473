//! The AWS options every subcommand takes.

use aws_config::SdkConfig;
use clap::Args;
use sluice_aws::clients::{load_sdk_config_with, Overrides};

/// Where and as whom to call AWS.
#[derive(Debug, Clone, Args)]
pub struct AwsOpts {
    /// Endpoint of every AWS service (LocalStack, the emulator); defaults to AWS_ENDPOINT_URL.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// AWS region; defaults to AWS_REGION, or us-east-1 when an endpoint is set.
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Shared-config profile to use.
    #[arg(long, global = true)]
    pub profile: Option<String>,
}

impl AwsOpts {
    /// Loads the SDK configuration with these options applied.
    pub async fn sdk_config(&self) -> SdkConfig {
        load_sdk_config_with(&Overrides {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            profile: self.profile.clone(),
        })
        .await
    }
}
