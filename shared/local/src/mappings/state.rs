//! The local mappings and the per-shard checkpoints, kept as JSON files in a state directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which handler a mapping invokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    /// The ingest handler.
    Ingest,
    /// The transform handler.
    Transform,
}

/// Where a stream mapping starts when it has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StartingPosition {
    /// The oldest record still in the stream.
    TrimHorizon,
    /// Only records written from now on.
    Latest,
}

/// What a mapping reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MappingSource {
    /// A DynamoDB stream.
    Stream {
        /// The stream's ARN.
        stream_arn: String,
        /// The table the stream belongs to.
        table: String,
        /// Where to start without a checkpoint.
        starting_position: StartingPosition,
    },
    /// An SQS queue.
    Queue {
        /// The queue's URL.
        queue_url: String,
        /// The queue's ARN, for the events' `eventSourceARN`.
        queue_arn: String,
    },
    /// A Kinesis data stream a DynamoDB table streams its changes to.
    Kinesis {
        /// The stream's ARN.
        stream_arn: String,
        /// Where to start without a checkpoint.
        starting_position: StartingPosition,
    },
}

/// One local event source mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// A name for logs.
    pub name: String,
    /// The handler it invokes.
    pub function: FunctionKind,
    /// What it reads.
    pub source: MappingSource,
    /// Records per invocation at most.
    pub batch_size: usize,
    /// How long to gather records for a batch, in ms.
    pub batching_window_ms: u64,
    /// Batches in flight at once at most.
    pub max_concurrency: usize,
    /// Streams: retries of a failing batch before its on-failure record is sent (-1: until the
    /// records expire).
    pub max_retry_attempts: i64,
    /// Streams: records older than this are not retried, in seconds (-1: no limit).
    pub max_record_age_secs: i64,
    /// Streams: split a failing batch in two on a function error.
    pub bisect_on_error: bool,
    /// Streams: where on-failure records go.
    pub on_failure_queue_url: Option<String>,
}

impl Mapping {
    /// A stream mapping with Lambda's usual settings for sluice.
    pub fn stream(table: &str, stream_arn: &str, on_failure_queue_url: &str) -> Self {
        Self {
            name: format!("stream:{table}"),
            function: FunctionKind::Ingest,
            source: MappingSource::Stream {
                stream_arn: stream_arn.to_owned(),
                table: table.to_owned(),
                starting_position: StartingPosition::TrimHorizon,
            },
            batch_size: 100,
            batching_window_ms: 500,
            max_concurrency: 2,
            max_retry_attempts: 10,
            max_record_age_secs: 86_400,
            bisect_on_error: true,
            on_failure_queue_url: Some(on_failure_queue_url.to_owned()),
        }
    }

    /// A Kinesis stream mapping, with the settings of a DynamoDB stream mapping (the stack's
    /// Kinesis mapping has the same).
    pub fn kinesis(name: &str, stream_arn: &str, on_failure_queue_url: &str) -> Self {
        Self {
            name: format!("kinesis:{name}"),
            source: MappingSource::Kinesis {
                stream_arn: stream_arn.to_owned(),
                starting_position: StartingPosition::TrimHorizon,
            },
            max_record_age_secs: 604_800,
            ..Self::stream(name, stream_arn, on_failure_queue_url)
        }
    }

    /// A queue mapping with Lambda's usual settings for sluice.
    pub fn queue(name: &str, function: FunctionKind, queue_url: &str, queue_arn: &str) -> Self {
        Self {
            name: name.to_owned(),
            function,
            source: MappingSource::Queue {
                queue_url: queue_url.to_owned(),
                queue_arn: queue_arn.to_owned(),
            },
            batch_size: 100,
            batching_window_ms: 500,
            max_concurrency: 2,
            max_retry_attempts: -1,
            max_record_age_secs: -1,
            bisect_on_error: false,
            on_failure_queue_url: None,
        }
    }

    /// A FIFO queue mapping: as [`Mapping::queue`], with what Lambda allows a FIFO source, at
    /// most 10 messages per batch and no batching window.
    pub fn fifo_queue(
        name: &str,
        function: FunctionKind,
        queue_url: &str,
        queue_arn: &str,
    ) -> Self {
        Self {
            batch_size: 10,
            batching_window_ms: 0,
            ..Self::queue(name, function, queue_url, queue_arn)
        }
    }
}

/// The mappings of one local pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mappings {
    /// The mappings, by name.
    pub mappings: BTreeMap<String, Mapping>,
}

/// The file of a pipeline's mappings: `<state dir>/<prefix>/mappings.json`.
pub fn mappings_path(state_dir: &Path, prefix: &str) -> PathBuf {
    state_dir.join(prefix).join("mappings.json")
}

/// The file of a pipeline's checkpoints: `<state dir>/<prefix>/checkpoints.json`.
pub fn checkpoints_path(state_dir: &Path, prefix: &str) -> PathBuf {
    state_dir.join(prefix).join("checkpoints.json")
}

/// Where `local run` keeps what each queue mapping's scaler did (for `sluice status`), next to
/// the checkpoints.
pub fn scaling_path(state_dir: &Path, prefix: &str) -> PathBuf {
    state_dir.join(prefix).join("scaling.json")
}

impl Mappings {
    /// Reads the mappings, or none if the file does not exist.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        load_json(path)
    }

    /// Writes the mappings atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        write_atomically(
            path,
            &serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )
    }

    /// Adds or replaces a mapping.
    pub fn put(&mut self, m: Mapping) {
        self.mappings.insert(m.name.clone(), m);
    }
}

/// A shard's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    /// The last sequence number handled (landed or sent on as an on-failure record).
    pub sequence_number: Option<String>,
    /// The shard is closed and was read to its end.
    pub finished: bool,
}

/// Checkpoints of every shard of every stream, keyed by stream ARN and shard id: emulators give
/// every stream the same shard ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    /// `<stream ARN>|<shard id>` → progress.
    pub shards: BTreeMap<String, ShardCheckpoint>,
}

impl Checkpoints {
    /// The key of a shard.
    pub fn key(stream_arn: &str, shard_id: &str) -> String {
        format!("{stream_arn}|{shard_id}")
    }

    /// Reads the checkpoints, or none if the file does not exist.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        load_json(path)
    }

    /// Writes the checkpoints atomically: a crash leaves the old file or the new one.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        write_atomically(
            path,
            &serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )
    }
}

/// Reads a JSON state file; a missing file is the empty state, a corrupt one an error.
fn load_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> std::io::Result<T> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_round_trip_and_missing_files_are_empty() {
        let dir = std::env::temp_dir().join(format!("sluice-state-{}", std::process::id()));
        let path = checkpoints_path(&dir, "p");
        assert_eq!(Checkpoints::load(&path).unwrap(), Checkpoints::default());
        let mut c = Checkpoints::default();
        c.shards.insert(
            Checkpoints::key("arn", "shard-1"),
            ShardCheckpoint {
                sequence_number: Some("42".into()),
                finished: false,
            },
        );
        c.save(&path).unwrap();
        assert_eq!(Checkpoints::load(&path).unwrap(), c);
        let mpath = mappings_path(&dir, "p");
        let mut m = Mappings::default();
        m.put(Mapping::queue("q", FunctionKind::Transform, "url", "arn"));
        m.put(Mapping::stream("t", "sarn", "dlq"));
        m.save(&mpath).unwrap();
        assert_eq!(Mappings::load(&mpath).unwrap(), m);
        std::fs::write(&path, "{").unwrap();
        assert!(
            Checkpoints::load(&path).is_err(),
            "a corrupt file is an error, not an empty state"
        );
    }
}
