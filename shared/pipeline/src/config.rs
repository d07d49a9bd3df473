//! Function configuration, read once from the environment at cold start.

use sluice_core::json::Limits;

/// A configuration variable is missing or unreadable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    /// A variable is set to something unreadable.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// Configuration errors need a fix and a redeploy; retrying does not help.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

pub(crate) fn required(
    env: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, ConfigError> {
    env(name)
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing(name))
}

pub(crate) fn parsed<T: std::str::FromStr>(
    env: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match env(name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: e.to_string(),
            value: v,
        }),
    }
}

/// The ingest function's settings. Every variable is listed in the README.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// `SLUICE_RAW_BUCKET`: the bucket of raw staging (required).
    pub raw_bucket: String,
    /// `SLUICE_DLQ_URL`: the dead-letter queue's URL (required).
    pub dlq_url: String,
    /// `SLUICE_QUARANTINE_BUCKET`: where oversized originals are claim-checked (default: the raw bucket).
    pub quarantine_bucket: String,
    /// `SLUICE_MAX_RECORD_BYTES` and `SLUICE_MAX_JSON_DEPTH`: bounds on one record.
    pub limits: Limits,
    /// `SLUICE_PUT_CONCURRENCY`: how many S3 writes run at once (default 8).
    pub put_concurrency: usize,
}

impl IngestConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `env`, so tests need not touch the process environment.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let raw_bucket = required(&env, "SLUICE_RAW_BUCKET")?;
        let dlq_url = required(&env, "SLUICE_DLQ_URL")?;
        let quarantine_bucket = env("SLUICE_QUARANTINE_BUCKET")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| raw_bucket.clone());
        let limits = Limits {
            max_record_bytes: parsed(
                &env,
                "SLUICE_MAX_RECORD_BYTES",
                Limits::DEFAULT_MAX_RECORD_BYTES,
            )?,
            max_depth: parsed(&env, "SLUICE_MAX_JSON_DEPTH", Limits::DEFAULT_MAX_DEPTH)?,
        };
        let put_concurrency = parsed(&env, "SLUICE_PUT_CONCURRENCY", 8usize)?.max(1);
        Ok(Self {
            raw_bucket,
            dlq_url,
            quarantine_bucket,
            limits,
            put_concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variable_names_itself() {
        let err = IngestConfig::from_lookup(|_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable SLUICE_RAW_BUCKET is required but not set"
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let c = IngestConfig::from_lookup(|n| match n {
            "SLUICE_RAW_BUCKET" => Some("raw".into()),
            "SLUICE_DLQ_URL" => Some("http://q".into()),
            "SLUICE_MAX_JSON_DEPTH" => Some("20".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.quarantine_bucket, "raw");
        assert_eq!(c.limits.max_depth, 20);
        assert_eq!(c.limits.max_record_bytes, Limits::DEFAULT_MAX_RECORD_BYTES);
        assert_eq!(c.put_concurrency, 8);
        let bad = IngestConfig::from_lookup(|n| match n {
            "SLUICE_RAW_BUCKET" | "SLUICE_DLQ_URL" => Some("x".into()),
            "SLUICE_PUT_CONCURRENCY" => Some("lots".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(bad.to_string().contains("SLUICE_PUT_CONCURRENCY"), "{bad}");
    }
}

/// The transform function's settings. Every variable is listed in the README.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformConfig {
    /// `SLUICE_CONTRACTS`: a directory or `s3://bucket/prefix/` holding the contracts (required).
    pub contracts: String,
    /// `SLUICE_CONTRACTS_TTL_SECS`: how long loaded contracts are used before reloading (default 60).
    pub contracts_ttl_secs: u64,
    /// `SLUICE_DLQ_URL`: the dead-letter queue's URL (required).
    pub dlq_url: String,
    /// `SLUICE_RAW_BUCKET`: the bucket of raw staging (required).
    pub raw_bucket: String,
    /// `SLUICE_QUARANTINE_BUCKET`: where oversized originals are claim-checked (default: the raw bucket).
    pub quarantine_bucket: String,
    /// `SLUICE_TYPED_TABLE_PREFIX`: prefix of the typed tables' names (default: none).
    pub typed_table_prefix: String,
    /// `SLUICE_TOMBSTONE_TTL_DAYS`: how long tombstones are kept before DynamoDB's TTL removes them (default 35).
    pub tombstone_ttl_days: u64,
    /// `SLUICE_WRITE_CONCURRENCY`: typed writes in flight per invocation (default 16).
    pub write_concurrency: usize,
    /// `SLUICE_MAX_LINE_BYTES`: the longest raw line read; longer ones are `too_large` (default 2 MiB).
    pub max_line_bytes: usize,
    /// `SLUICE_MAX_JSON_DEPTH`: the deepest JSON accepted in a line (default 100).
    pub max_depth: usize,
    /// How many bytes of typed rows one invocation holds while it coalesces an object's lines
    /// per key: a quarter of the function's memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, which
    /// Lambda sets), or [`Self::DEFAULT_COALESCE_MAX_BYTES`] outside Lambda. Past it, the winners
    /// so far are written and coalescing starts again, so an object of any size is read in
    /// bounded memory; a key seen again later is written again, which the `_seq` guard makes
    /// safe.
    pub coalesce_max_bytes: usize,
}

impl TransformConfig {
    /// The default for `SLUICE_MAX_LINE_BYTES`: a 1 MiB record and room for its envelope.
    pub const DEFAULT_MAX_LINE_BYTES: usize = 2 * 1024 * 1024;

    /// The bytes of typed rows held while coalescing, outside Lambda.
    pub const DEFAULT_COALESCE_MAX_BYTES: usize = 64 * 1024 * 1024;

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `env`.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let raw_bucket = required(&env, "SLUICE_RAW_BUCKET")?;
        Ok(Self {
            contracts: required(&env, "SLUICE_CONTRACTS")?,
            contracts_ttl_secs: parsed(&env, "SLUICE_CONTRACTS_TTL_SECS", 60)?,
            dlq_url: required(&env, "SLUICE_DLQ_URL")?,
            quarantine_bucket: env("SLUICE_QUARANTINE_BUCKET")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| raw_bucket.clone()),
            raw_bucket,
            typed_table_prefix: env("SLUICE_TYPED_TABLE_PREFIX").unwrap_or_default(),
            tombstone_ttl_days: parsed(&env, "SLUICE_TOMBSTONE_TTL_DAYS", 35)?,
            write_concurrency: parsed(&env, "SLUICE_WRITE_CONCURRENCY", 16usize)?.max(1),
            max_line_bytes: parsed(&env, "SLUICE_MAX_LINE_BYTES", Self::DEFAULT_MAX_LINE_BYTES)?,
            max_depth: parsed(&env, "SLUICE_MAX_JSON_DEPTH", Limits::DEFAULT_MAX_DEPTH)?,
            coalesce_max_bytes: env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
                .and_then(|mb| mb.trim().parse::<usize>().ok())
                .map_or(Self::DEFAULT_COALESCE_MAX_BYTES, |mb| {
                    mb.saturating_mul(1024 * 1024) / 4
                }),
        })
    }
}

#[cfg(test)]
mod transform_tests {
    use super::*;

    #[test]
    fn the_coalescing_budget_is_a_quarter_of_the_functions_memory() {
        let with = |memory: Option<&str>| {
            TransformConfig::from_lookup(|n| match n {
                "SLUICE_RAW_BUCKET" | "SLUICE_DLQ_URL" | "SLUICE_CONTRACTS" => Some("x".into()),
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" => memory.map(str::to_owned),
                _ => None,
            })
            .unwrap()
            .coalesce_max_bytes
        };
        assert_eq!(with(Some("128")), 32 * 1024 * 1024);
        assert_eq!(with(Some("10240")), 2560 * 1024 * 1024);
        assert_eq!(with(None), TransformConfig::DEFAULT_COALESCE_MAX_BYTES);
        assert_eq!(
            with(Some("lots")),
            TransformConfig::DEFAULT_COALESCE_MAX_BYTES
        );
    }
}
