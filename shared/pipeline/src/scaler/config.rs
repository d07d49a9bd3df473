//! The scaler function's settings, read once from the environment at cold start.

use sluice_core::scaling::ScalingConfig;

use crate::config::{parsed, required, ConfigError};

/// The functions whose metrics calibrate a mapping, with the metric that counts the messages
/// (or stream records) one invocation took.
pub const CALIBRATED_BY: &[(&str, &str)] = &[("ingest", "RecordsIn"), ("transform", "MessagesIn")];

/// One event source mapping the scaler sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingSpec {
    /// The sluice function it feeds, whose EMF metrics (`Function` dimension) calibrate it:
    /// `ingest` or `transform`.
    pub function: String,
    /// The mapping's UUID.
    pub uuid: String,
    /// Its most `MaximumConcurrency`, when not `SLUICE_SCALE_MAX`.
    pub max: Option<u32>,
}

impl MappingSpec {
    /// The metric that counts the messages of one invocation of its function.
    pub fn messages_metric(&self) -> &'static str {
        CALIBRATED_BY
            .iter()
            .find(|(f, _)| *f == self.function)
            .map_or("RecordsIn", |(_, m)| m)
    }
}

/// The scaler's settings. Every variable is listed in the README.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalerConfig {
    /// `SLUICE_SCALER_MAPPINGS`: the mappings, as `function:uuid[:max]` separated by commas
    /// (required; empty entries are skipped).
    pub mappings: Vec<MappingSpec>,
    /// `SLUICE_SCALER_STATE`: the S3 object (`s3://bucket/key`) its window lives in between runs
    /// (required).
    pub state_bucket: String,
    /// The key of that object.
    pub state_key: String,
    /// The policy: `SLUICE_SCALE_TARGET_SECS` (120), `SLUICE_SCALE_MIN` (2), `SLUICE_SCALE_MAX`
    /// (100), `SLUICE_SCALE_COLD_START_SECS` (10), `SLUICE_SCALE_DOWN_WINDOW_SECS` (300).
    pub policy: ScalingConfig,
    /// `SLUICE_SCALE_CALIBRATION_SECS`: how far back the metrics that measure the rate per batch
    /// are read (900).
    pub calibration_secs: u64,
}

impl ScalerConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `env`, so tests need not touch the process environment.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = ScalingConfig::default();
        let policy = ScalingConfig {
            backlog_target_secs: parsed(
                &env,
                "SLUICE_SCALE_TARGET_SECS",
                defaults.backlog_target_secs,
            )?,
            min: parsed(&env, "SLUICE_SCALE_MIN", defaults.min)?,
            max: parsed(&env, "SLUICE_SCALE_MAX", defaults.max)?,
            cold_start_secs: parsed(
                &env,
                "SLUICE_SCALE_COLD_START_SECS",
                defaults.cold_start_secs,
            )?,
            scale_down_window_secs: parsed(
                &env,
                "SLUICE_SCALE_DOWN_WINDOW_SECS",
                defaults.scale_down_window_secs,
            )?,
            ..defaults
        };
        policy.validate().map_err(|reason| ConfigError::Invalid {
            name: "SLUICE_SCALE_*",
            value: format!(
                "target {} s, min {}, max {}, cold start {} s, window {} s",
                policy.backlog_target_secs,
                policy.min,
                policy.max,
                policy.cold_start_secs,
                policy.scale_down_window_secs
            ),
            reason,
        })?;
        let text = required(&env, "SLUICE_SCALER_MAPPINGS")?;
        let mappings = parse_mappings(&text, &policy).map_err(|reason| ConfigError::Invalid {
            name: "SLUICE_SCALER_MAPPINGS",
            value: text.clone(),
            reason,
        })?;
        let state = required(&env, "SLUICE_SCALER_STATE")?;
        let (state_bucket, state_key) = state
            .strip_prefix("s3://")
            .and_then(|p| p.split_once('/'))
            .filter(|(b, k)| !b.is_empty() && !k.is_empty() && !k.ends_with('/'))
            .map(|(b, k)| (b.to_owned(), k.to_owned()))
            .ok_or_else(|| ConfigError::Invalid {
                name: "SLUICE_SCALER_STATE",
                value: state.clone(),
                reason: "expected an object as s3://bucket/key".into(),
            })?;
        Ok(Self {
            mappings,
            state_bucket,
            state_key,
            policy,
            calibration_secs: parsed(&env, "SLUICE_SCALE_CALIBRATION_SECS", 900u64)?.max(60),
        })
    }

    /// The policy for one mapping: the shared settings with its own maximum.
    pub fn policy_for(&self, spec: &MappingSpec) -> ScalingConfig {
        ScalingConfig {
            max: spec.max.unwrap_or(self.policy.max),
            ..self.policy.clone()
        }
    }
}

fn parse_mappings(text: &str, policy: &ScalingConfig) -> Result<Vec<MappingSpec>, String> {
    let mut specs: Vec<MappingSpec> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut parts = entry.split(':').map(str::trim);
        let (Some(function), Some(uuid)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "{entry:?} is not function:uuid[:max] (for example ingest:6a1f…:50)"
            ));
        };
        if !CALIBRATED_BY.iter().any(|(f, _)| *f == function) {
            return Err(format!(
                "{entry:?}: the function must be ingest or transform, whose metrics calibrate it"
            ));
        }
        if uuid.is_empty() || !uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(format!(
                "{entry:?}: {uuid:?} is not an event source mapping UUID"
            ));
        }
        let max = match parts.next() {
            None => None,
            Some(m) => {
                let max: u32 = m
                    .parse()
                    .map_err(|e| format!("{entry:?}: the maximum {m:?} is not a number: {e}"))?;
                if !(policy.min..=1000).contains(&max) {
                    return Err(format!(
                        "{entry:?}: the maximum must be between SLUICE_SCALE_MIN ({}) and 1000",
                        policy.min
                    ));
                }
                Some(max)
            }
        };
        if parts.next().is_some() {
            return Err(format!("{entry:?} has more than function:uuid:max"));
        }
        if specs.iter().any(|s| s.uuid == uuid) {
            return Err(format!("mapping {uuid} is listed twice"));
        }
        specs.push(MappingSpec {
            function: function.to_owned(),
            uuid: uuid.to_owned(),
            max,
        });
    }
    if specs.is_empty() {
        return Err("no mapping is listed".into());
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const INGEST: &str = "3f2a5b1c-0000-4000-8000-00000000000a";
    const TRANSFORM: &str = "3f2a5b1c-0000-4000-8000-00000000000b";

    #[test]
    fn mappings_state_and_policy_are_read() {
        let mappings = format!("ingest:{INGEST}:50, transform:{TRANSFORM},");
        let c = ScalerConfig::from_lookup(lookup(&[
            ("SLUICE_SCALER_MAPPINGS", &mappings),
            ("SLUICE_SCALER_STATE", "s3://raw/scaler/state.json"),
            ("SLUICE_SCALE_TARGET_SECS", "60"),
            ("SLUICE_SCALE_MAX", "20"),
        ]))
        .unwrap();
        assert_eq!(c.mappings.len(), 2);
        assert_eq!(c.mappings[0].max, Some(50));
        assert_eq!(c.mappings[1].messages_metric(), "MessagesIn");
        assert_eq!(c.policy_for(&c.mappings[0]).max, 50);
        assert_eq!(c.policy_for(&c.mappings[1]).max, 20);
        assert_eq!(c.policy.backlog_target_secs, 60.0);
        assert_eq!(
            (c.state_bucket.as_str(), c.state_key.as_str()),
            ("raw", "scaler/state.json")
        );
        assert_eq!(c.calibration_secs, 900);
    }

    #[test]
    fn bad_settings_name_the_variable_and_the_entry() {
        let err = |mappings: &str, state: &str| {
            ScalerConfig::from_lookup(lookup(&[
                ("SLUICE_SCALER_MAPPINGS", mappings),
                ("SLUICE_SCALER_STATE", state),
            ]))
            .unwrap_err()
            .to_string()
        };
        let state = "s3://raw/scaler/state.json";
        assert!(err("", state).contains("SLUICE_SCALER_MAPPINGS is required"));
        assert!(err(",", state).contains("no mapping is listed"));
        assert!(err("ingest", state).contains("is not function:uuid[:max]"));
        assert!(err(&format!("redrive:{INGEST}"), state).contains("must be ingest or transform"));
        assert!(err("ingest:not a uuid", state).contains("is not an event source mapping UUID"));
        assert!(err(&format!("ingest:{INGEST}:1"), state).contains("between SLUICE_SCALE_MIN"));
        assert!(err(&format!("ingest:{INGEST}:x"), state).contains("is not a number"));
        assert!(err(&format!("ingest:{INGEST},transform:{INGEST}"), state).contains("listed twice"));
        assert!(err(&format!("ingest:{INGEST}"), "s3://raw/").contains("SLUICE_SCALER_STATE"));
        let bad_policy = ScalerConfig::from_lookup(lookup(&[
            ("SLUICE_SCALER_MAPPINGS", INGEST),
            ("SLUICE_SCALER_STATE", state),
            ("SLUICE_SCALE_MIN", "50"),
            ("SLUICE_SCALE_MAX", "10"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            bad_policy.contains("min (50) is above max (10)"),
            "{bad_policy}"
        );
    }
}
