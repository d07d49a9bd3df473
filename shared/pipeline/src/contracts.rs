//! Loading contracts from a directory or from `s3://bucket/prefix/`, cached with a TTL, so a
//! contract can change without a redeploy.
//!
//! A file that does not check is skipped and logged at ERROR, with every problem; the other
//! contracts keep working, and changes of the skipped contract's tables become `no_contract`
//! dead letters until it is fixed, after which they can be redriven.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_aws::AwsError;
use sluice_core::contract::is_contract_file;
pub use sluice_core::contract_set::ContractSet;
use tokio::sync::RwLock;

/// Where contracts live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractSource {
    /// A local directory (in the function package, or on a developer's machine).
    Dir(PathBuf),
    /// An S3 prefix.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, ending in `/` or empty.
        prefix: String,
    },
}

impl ContractSource {
    /// Reads `s3://bucket/prefix/` or a directory path.
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                Self::S3 {
                    bucket: bucket.to_owned(),
                    prefix: prefix.to_owned(),
                }
            }
            None => Self::Dir(PathBuf::from(text)),
        }
    }
}

impl std::fmt::Display for ContractSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(p) => write!(f, "{}", p.display()),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Contracts could not be listed or read at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading a local file or directory failed.
    #[error("could not read contracts from {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Listing or reading S3 failed.
    #[error("could not read contracts from S3: {0}")]
    S3(#[from] AwsError),
}

impl LoadError {
    /// Whether trying again may help.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Io { .. } => false,
            Self::S3(e) => e.is_retriable(),
        }
    }
}

/// Reads every contract file from `source`.
pub async fn load(
    source: &ContractSource,
    s3: &aws_sdk_s3::Client,
) -> Result<ContractSet, LoadError> {
    let mut files = Vec::new();
    match source {
        ContractSource::Dir(dir) => {
            let io = |source| LoadError::Io {
                path: dir.display().to_string(),
                source,
            };
            let mut entries = tokio::fs::read_dir(dir).await.map_err(io)?;
            while let Some(entry) = entries.next_entry().await.map_err(io)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !is_contract_file(&name) {
                    continue;
                }
                let path = entry.path();
                let text =
                    tokio::fs::read_to_string(&path)
                        .await
                        .map_err(|source| LoadError::Io {
                            path: path.display().to_string(),
                            source,
                        })?;
                files.push((path.display().to_string(), text));
            }
        }
        ContractSource::S3 { bucket, prefix } => {
            for key in sluice_aws::listing::list_keys(s3, bucket, prefix).await? {
                if !is_contract_file(&key) {
                    continue;
                }
                let target = format!("s3://{bucket}/{key}");
                let (bytes, _) = sluice_aws::listing::get_bytes(s3, bucket, &key).await?;
                files.push((target, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    let set = ContractSet::from_files(files);
    for rejected in &set.rejected {
        tracing::error!(problems = %rejected, "A contract file does not check; it is skipped until fixed.");
    }
    Ok(set)
}

/// Contracts cached for a TTL. A failed reload keeps serving the previous set.
pub struct ContractCache {
    source: ContractSource,
    ttl: Duration,
    s3: aws_sdk_s3::Client,
    cached: RwLock<Option<(Instant, Arc<ContractSet>)>>,
}

impl ContractCache {
    /// A cache over `source`.
    pub fn new(source: ContractSource, ttl: Duration, s3: aws_sdk_s3::Client) -> Self {
        Self {
            source,
            ttl,
            s3,
            cached: RwLock::new(None),
        }
    }

    /// The current contracts, reloaded when older than the TTL.
    pub async fn get(&self) -> Result<Arc<ContractSet>, LoadError> {
        if let Some((at, set)) = self.cached.read().await.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(set.clone());
            }
        }
        let mut guard = self.cached.write().await;
        if let Some((at, set)) = guard.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(set.clone());
            }
        }
        match load(&self.source, &self.s3).await {
            Ok(set) => {
                let set = Arc::new(set);
                *guard = Some((Instant::now(), set.clone()));
                Ok(set)
            }
            Err(e) => match guard.as_ref() {
                Some((_, stale)) => {
                    tracing::warn!(error = %e, source = %self.source, "Could not reload contracts; using the previous set.");
                    Ok(stale.clone())
                }
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            ContractSource::parse("s3://bucket/contracts/"),
            ContractSource::S3 {
                bucket: "bucket".into(),
                prefix: "contracts/".into()
            }
        );
        assert_eq!(
            ContractSource::parse("s3://bucket"),
            ContractSource::S3 {
                bucket: "bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            ContractSource::parse("infra/contracts"),
            ContractSource::Dir("infra/contracts".into())
        );
    }
}
