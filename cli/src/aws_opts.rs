//! The AWS options every subcommand takes, and the checks made before any call: the endpoint
//! must be a URL, and without one there must be credentials (else every call would go to real
//! AWS as nobody, and fail with a misleading error).

use std::time::Duration;

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use clap::Args;
use sluice_aws::clients::{load_sdk_config_with, Overrides};

use crate::error::{check_endpoint, Setup, ENDPOINT};

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
    /// Loads the SDK configuration with these options applied, once the endpoint and the
    /// credentials are known to be usable.
    pub async fn sdk_config(&self) -> anyhow::Result<SdkConfig> {
        let endpoint = self.endpoint_url.clone().filter(|u| !u.is_empty());
        if let Some(url) = &endpoint {
            check_endpoint(url)?;
            let _ = ENDPOINT.set(url.clone());
        }
        let sdk = load_sdk_config_with(&Overrides {
            endpoint_url: endpoint.clone(),
            region: self.region.clone(),
            profile: self.profile.clone(),
        })
        .await;
        if endpoint.is_none() {
            let found = match sdk.credentials_provider() {
                Some(provider) => matches!(
                    tokio::time::timeout(Duration::from_secs(10), provider.provide_credentials())
                        .await,
                    Ok(Ok(_))
                ),
                None => false,
            };
            if !found {
                return Err(Setup::NoCredentials.into());
            }
        }
        Ok(sdk)
    }
}
