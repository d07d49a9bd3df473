//! The fault battery's harness: one local pipeline (`sluice local up`), a seeded workload of
//! DynamoDB stream changes and SQS application events with poison among them, `sluice local run`
//! behind the fault-injecting proxy, and what the [checker](crate::checker) reads afterwards.
//!
//! Everything the checker is given is read here from the sources and the stores, in its own
//! terms: the source table's stream (through the DynamoDB Streams API) and the log of the
//! application events sent, the typed table, and the dead-letter queue. None of it goes through
//! sluice's decoders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue as A;
use serde_json::{json, Value};

use crate::checker::{ChangeId, Effect, LandedAt, Letter, Row, Sent, Snapshot, Staging};
use crate::{env_at, receive, scan, source_table, stream_records, unique, TestEnv};

/// The typed table (contract) every change of the battery goes to.
pub const TABLE: &str = "items";

/// An ordering token as a typed row's `_seq` holds a decimal one: 40 digits, zero-padded.
pub fn seq40(digits: &str) -> String {
    format!("{digits:0>40}")
}

/// One isolated local pipeline with its source table.
pub struct Battery {
    /// The endpoint, reached directly (the workload and the checker never meet a fault).
    pub env: TestEnv,
    /// The prefix of every resource.
    pub prefix: String,
    /// The source table.
    pub source: String,
    /// Its stream.
    pub stream_arn: String,
    /// A Kinesis data stream of its changes, when the battery has one.
    pub kinesis_arn: Option<String>,
    contracts: PathBuf,
    state: PathBuf,
    bin: PathBuf,
    repo: PathBuf,
    /// The application events sent, as the checker knows them.
    app: Vec<Sent>,
    /// The FIFO message groups sent, each with its changes in send order.
    groups: BTreeMap<String, Vec<ChangeId>>,
    /// Messages sent that are no change at all (not JSON): each must end as a dead letter of
    /// its own, which names no change.
    pub unkeyed: usize,
}

impl Battery {
    /// Creates a source table and its contract, and runs `sluice local up` with the `sluice`
    /// binary `bin`, from the repository `repo`.
    pub async fn new(endpoint: &str, bin: &Path, repo: &Path) -> Self {
        Self::create(endpoint, bin, repo, false).await
    }

    /// As [`Battery::new`], with a Kinesis data stream of one shard that ingest reads too
    /// (`sluice local up --kinesis-stream`) when `kinesis` is set.
    pub async fn create(endpoint: &str, bin: &Path, repo: &Path, kinesis: bool) -> Self {
        let env = env_at(endpoint).await;
        let source = unique("bat-src");
        let stream_arn = source_table(&env, &source).await;
        let kinesis_arn = match kinesis {
            true => Some(kinesis_stream(&env.kinesis, &unique("bat-kin")).await),
            false => None,
        };
        let contracts = std::env::temp_dir().join(unique("bat-contracts"));
        std::fs::create_dir_all(&contracts).unwrap();
        std::fs::write(
            contracts.join("items.yaml"),
            format!(
                "name: {TABLE}\nversion: 1\nsources: [{{table: {source}}}]\nprimary_key: [pk]\nfields:\n  - {{name: pk, type: string}}\n  - {{name: value, type: int}}\n  - {{name: label, type: string, required: true}}\n"
            ),
        )
        .unwrap();
        let battery = Self {
            env,
            prefix: unique("bat"),
            source,
            stream_arn,
            kinesis_arn,
            contracts,
            state: std::env::temp_dir().join(unique("bat-state")),
            bin: bin.to_owned(),
            repo: repo.to_owned(),
            app: Vec::new(),
            groups: BTreeMap::new(),
            unkeyed: 0,
        };
        let mut up = vec!["local", "up", "--fifo", "--source-table", &battery.source];
        if let Some(arn) = &battery.kinesis_arn {
            up.extend(["--kinesis-stream", arn.as_str()]);
        }
        let out = battery.command(endpoint, &up).output().unwrap();
        assert!(
            out.status.success(),
            "local up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        battery
    }

    /// A new pipeline (as [`Battery::new`]) with the workload of `seed` sent: `stream` changes
    /// to the source table, `app` application events to the ingest queue, and `app / 2` to the
    /// FIFO ingest queue in four message groups.
    pub async fn loaded(
        endpoint: &str,
        bin: &Path,
        repo: &Path,
        seed: u64,
        sizes: (u64, u64),
    ) -> Self {
        Self::loaded_with_kinesis(endpoint, bin, repo, seed, sizes, 0).await
    }

    /// As [`Battery::loaded`], and with `kinesis` changes of other keys through a Kinesis
    /// stream ([`Battery::kinesis_changes`]) when it is not 0.
    pub async fn loaded_with_kinesis(
        endpoint: &str,
        bin: &Path,
        repo: &Path,
        seed: u64,
        (stream, app): (u64, u64),
        kinesis: u64,
    ) -> Self {
        let mut battery = Self::create(endpoint, bin, repo, kinesis > 0).await;
        let mut rng = fastrand::Rng::with_seed(seed);
        battery.stream_changes(stream, &mut rng).await;
        battery.app_events(app, &mut rng).await;
        battery.fifo_events(app / 2, 4, &mut rng).await;
        if kinesis > 0 {
            battery.kinesis_changes(kinesis, &mut rng).await;
        }
        battery
    }

    /// A `sluice` command on this pipeline whose AWS calls go to `endpoint`.
    pub fn command(&self, endpoint: &str, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(&self.repo)
            .args(args)
            .args([
                "--prefix",
                &self.prefix,
                "--contracts",
                self.contracts.to_str().unwrap(),
                "--state-dir",
                self.state.to_str().unwrap(),
            ])
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("RUST_LOG", "warn")
            .env_remove("RUST_BACKTRACE");
        c
    }

    /// Starts `sluice local run --until-idle` through `endpoint`, retrying after 1 s, then 2 s.
    /// Its output is appended to [`Battery::run_log`] (a file: a pipe nobody reads while it runs
    /// would fill and stall the runner), at the level `SLUICE_BATTERY_LOG` names (default `warn`).
    pub fn run_until_idle(&self, endpoint: &str) -> Child {
        std::fs::create_dir_all(&self.state).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let level = std::env::var("SLUICE_BATTERY_LOG").unwrap_or_else(|_| "warn".into());
        self.command(
            endpoint,
            &[
                "local",
                "run",
                "--until-idle",
                "--retry-delay-secs",
                "1",
                "--max-retry-delay-secs",
                "2",
                "--progress-secs",
                "0",
            ],
        )
        .env("RUST_LOG", level)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
    }

    fn log_path(&self) -> PathBuf {
        self.state.join("run.log")
    }

    /// What the runs of [`Battery::run_until_idle`] printed so far.
    pub fn run_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Keeps [`Battery::run_log`] as `name` in the system's temporary directory (the battery's
    /// own directories go when it does), and returns where.
    pub fn keep_run_log(&self, name: &str) -> PathBuf {
        let to = std::env::temp_dir().join(name);
        let _ = std::fs::copy(self.log_path(), &to);
        to
    }

    /// Makes `n` changes in the source table: puts and updates over `n / 3` keys, a delete now and
    /// then, and a put without the required `label` (poison) now and then.
    pub async fn stream_changes(&self, n: u64, rng: &mut fastrand::Rng) {
        let keys = (n / 3).max(1);
        for i in 0..n {
            let pk = format!("d-{}", rng.u64(..keys));
            if rng.u8(..12) == 0 {
                self.env
                    .ddb
                    .delete_item()
                    .table_name(&self.source)
                    .key("pk", A::S(pk))
                    .send()
                    .await
                    .unwrap();
                continue;
            }
            let mut item = std::collections::HashMap::from([
                ("pk".to_owned(), A::S(pk)),
                ("value".to_owned(), A::N(i.to_string())),
            ]);
            if rng.u8(..15) != 0 {
                item.insert("label".into(), A::S(format!("v{i}")));
            }
            self.env
                .ddb
                .put_item()
                .table_name(&self.source)
                .set_item(Some(item))
                .send()
                .await
                .unwrap();
        }
    }

    /// Sends `n` application events to the ingest queue: upserts over `n / 4` keys with rising
    /// `seq`s in a shuffled order, a delete now and then, an event without the required `label`
    /// (poison for the transform) now and then, and a message that is not JSON (poison for
    /// ingest) now and then. Each is logged for the checker.
    pub async fn app_events(&mut self, n: u64, rng: &mut fastrand::Rng) {
        let url =
            sluice_local::provision::queue_url(&self.env.sqs, &format!("{}-ingest", self.prefix))
                .await
                .unwrap();
        let keys = (n / 4).max(1);
        let mut events: Vec<(u64, String, u8)> = (0..n)
            .map(|i| (i + 1, format!("s-{}", rng.u64(..keys)), rng.u8(..15)))
            .collect();
        rng.shuffle(&mut events);
        for (seq, pk, roll) in events {
            if roll == 2 {
                self.env
                    .sqs
                    .send_message()
                    .queue_url(&url)
                    .message_body(format!("not json {seq}"))
                    .send()
                    .await
                    .unwrap();
                self.unkeyed += 1;
                continue;
            }
            let (body, effect) = self.app_event(roll, &pk, seq, "a");
            self.env
                .sqs
                .send_message()
                .queue_url(&url)
                .message_body(body.to_string())
                .send()
                .await
                .unwrap();
            self.app.push(Sent {
                table: TABLE.into(),
                key: pk,
                seq: seq40(&seq.to_string()),
                effect,
            });
        }
    }

    /// Logs a change sent for the checker, as the next of `group`, whose order its source keeps.
    fn log_ordered(&mut self, group: String, key: String, seq: String, effect: Effect) {
        self.groups
            .entry(group)
            .or_default()
            .push((TABLE.into(), key.clone(), seq.clone()));
        self.app.push(Sent {
            table: TABLE.into(),
            key,
            seq,
            effect,
        });
    }

    /// An application event of `pk` at `seq` as `roll` draws it (0 a delete, 1 an update without
    /// the required `label`, anything else an upsert whose label starts with `label`), and what
    /// it must do.
    fn app_event(&self, roll: u8, pk: &str, seq: u64, label: &str) -> (Value, Effect) {
        match roll {
            0 => (
                json!({"table": self.source, "op": "delete", "key": {"pk": pk}, "seq": seq,
                       "before": {"pk": pk}}),
                Effect::Delete,
            ),
            1 => (
                json!({"table": self.source, "op": "update", "key": {"pk": pk}, "seq": seq,
                       "after": {"pk": pk, "value": seq}}),
                Effect::Poison,
            ),
            _ => (
                json!({"table": self.source, "op": "update", "key": {"pk": pk}, "seq": seq,
                       "after": {"pk": pk, "value": seq, "label": format!("{label}{seq}")}}),
                Effect::Put(BTreeMap::from([
                    ("value".to_owned(), json!(seq)),
                    ("label".to_owned(), json!(format!("{label}{seq}"))),
                ])),
            ),
        }
    }

    /// Sends `n` application events to the FIFO ingest queue in `groups` message groups (a
    /// group holds several keys), each key's `seq` rising in send order as a FIFO producer's
    /// would: upserts, a delete now and then, an event without `label` (poison for the
    /// transform) now and then, and a message that is not JSON now and then. Each is logged
    /// for the checker, and each group's order too.
    pub async fn fifo_events(&mut self, n: u64, groups: u64, rng: &mut fastrand::Rng) {
        let url = sluice_local::provision::queue_url(
            &self.env.sqs,
            &format!("{}-ingest.fifo", self.prefix),
        )
        .await
        .unwrap();
        let keys = (n / 4).max(groups).max(1);
        for i in 0..n {
            let k = rng.u64(..keys);
            let (pk, group) = (format!("f-{k}"), format!("g-{}", k % groups.max(1)));
            // Above the standard queue's seqs (at most n), so the two never meet.
            let seq = 1_000_000 + i;
            let roll = rng.u8(..15);
            let send = |body: String| {
                self.env
                    .sqs
                    .send_message()
                    .queue_url(&url)
                    .message_group_id(&group)
                    .message_deduplication_id(format!("{group}-{i}"))
                    .message_body(body)
                    .send()
            };
            if roll == 2 {
                send(format!("not json {seq}")).await.unwrap();
                self.unkeyed += 1;
                continue;
            }
            let (body, effect) = self.app_event(roll, &pk, seq, "f");
            send(body.to_string()).await.unwrap();
            self.log_ordered(
                format!("fifo group {group}"),
                pk,
                seq40(&seq.to_string()),
                effect,
            );
        }
    }

    /// Writes `n` DynamoDB change records of keys `k-*` to the Kinesis stream as DynamoDB
    /// writes them there (creation times in µs, strictly increasing; the key as partition key):
    /// upserts, a delete now and then, an update without `label` (poison) now and then. Each
    /// change is logged for the checker, and each item's order too.
    pub async fn kinesis_changes(&mut self, n: u64, rng: &mut fastrand::Rng) {
        let arn = self
            .kinesis_arn
            .clone()
            .expect("a battery made with a Kinesis stream");
        let keys = (n / 4).max(1);
        let base_us = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0);
        for i in 0..n {
            let pk = format!("k-{}", rng.u64(..keys));
            let created_us = base_us + i;
            let roll = rng.u8(..15);
            let image = |label: bool| {
                let mut m = json!({"pk": {"S": pk}, "value": {"N": i.to_string()}});
                if label {
                    m["label"] = json!({"S": format!("k{i}")});
                }
                m
            };
            let (name, dynamodb, effect) = match roll {
                0 => (
                    "REMOVE",
                    json!({"Keys": {"pk": {"S": pk}}, "OldImage": {"pk": {"S": pk}}}),
                    Effect::Delete,
                ),
                1 => (
                    "MODIFY",
                    json!({"Keys": {"pk": {"S": pk}}, "NewImage": image(false)}),
                    Effect::Poison,
                ),
                _ => (
                    "MODIFY",
                    json!({"Keys": {"pk": {"S": pk}}, "NewImage": image(true)}),
                    Effect::Put(BTreeMap::from([
                        ("value".to_owned(), json!(i)),
                        ("label".to_owned(), json!(format!("k{i}"))),
                    ])),
                ),
            };
            let mut dynamodb = dynamodb;
            dynamodb["ApproximateCreationDateTime"] = json!(created_us);
            dynamodb["ApproximateCreationDateTimePrecision"] = json!("MICROSECOND");
            dynamodb["SizeBytes"] = json!(64);
            let record = json!({
                "awsRegion": "us-east-1", "eventID": format!("kin-{i}"), "eventName": name,
                "userIdentity": null, "recordFormat": "application/json",
                "tableName": self.source, "dynamodb": dynamodb, "eventSource": "aws:dynamodb",
            });
            let put = self
                .env
                .kinesis
                .put_record()
                .stream_arn(&arn)
                .partition_key(&pk)
                .data(aws_sdk_kinesis::primitives::Blob::new(record.to_string()))
                .send()
                .await
                .unwrap();
            let seq = kinesis_seq(created_us, put.sequence_number());
            self.log_ordered(format!("kinesis item {pk}"), pk, seq, effect);
        }
    }

    /// Raw staging, read line by line as plain JSON, and the orders the sources promise: each
    /// FIFO group's in send order, and each item's stream records in sequence order (a
    /// DynamoDB stream keeps an item's changes in order, on one shard at a time).
    pub async fn staging(&self) -> Staging {
        use std::io::Read;
        let bucket = format!("{}-raw", self.prefix);
        let mut landings = Vec::new();
        for key in crate::list_keys(&self.env, &bucket, "raw/").await {
            let gz = crate::get_object(&self.env, &bucket, &key).await;
            let mut text = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut text)
                .unwrap_or_else(|e| panic!("{key} is not gzip text: {e}"));
            for (line, raw) in text.lines().enumerate() {
                let v: Value = serde_json::from_str(raw)
                    .unwrap_or_else(|e| panic!("{key} line {line} is not JSON: {e}"));
                let Some(change) = change_of(&v) else {
                    continue;
                };
                let ms = v
                    .get("ingested_ms")
                    .and_then(Value::as_i64)
                    .unwrap_or_else(|| panic!("{key} line {line} has no ingested_ms"));
                landings.push((
                    change,
                    LandedAt {
                        ms,
                        object: key.clone(),
                        line,
                    },
                ));
            }
        }
        let mut orders = self.groups.clone();
        let mut by_item: BTreeMap<String, Vec<ChangeId>> = BTreeMap::new();
        for r in stream_records(&self.env, &self.stream_arn).await {
            if let Some((key, seq)) = key_and_seq(&r) {
                by_item
                    .entry(format!("stream item {key}"))
                    .or_default()
                    .push((TABLE.into(), key, seq));
            }
        }
        for (item, mut changes) in by_item {
            changes.sort_by(|a, b| a.2.cmp(&b.2));
            orders.insert(item, changes);
        }
        Staging {
            landings,
            orders,
            reordered: Default::default(),
        }
    }

    /// Every change sent: the source table's stream records, read back from the stream, and
    /// the application events logged.
    pub async fn sent(&self) -> Vec<Sent> {
        let mut sent = self.app.clone();
        for r in stream_records(&self.env, &self.stream_arn).await {
            let Some((key, seq)) = key_and_seq(&r) else {
                continue;
            };
            let Some(d) = r.dynamodb() else { continue };
            let effect = match r.event_name().map(|e| e.as_str()) {
                Some("REMOVE") => Effect::Delete,
                _ => {
                    let image = d.new_image().cloned().unwrap_or_default();
                    match image.get("label").and_then(|v| v.as_s().ok()) {
                        None => Effect::Poison,
                        Some(label) => Effect::Put(BTreeMap::from([
                            (
                                "value".to_owned(),
                                image
                                    .get("value")
                                    .and_then(|v| v.as_n().ok())
                                    .and_then(|n| n.parse::<i64>().ok())
                                    .map_or(Value::Null, |n| json!(n)),
                            ),
                            ("label".to_owned(), json!(label)),
                        ])),
                    }
                }
            };
            sent.push(Sent {
                table: TABLE.into(),
                key,
                seq,
                effect,
            });
        }
        sent
    }

    /// The typed table now.
    pub async fn snapshot(&self) -> Snapshot {
        scan(&self.env, &format!("{}-{TABLE}", self.prefix))
            .await
            .into_iter()
            .map(|item| {
                let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned();
                let seq = item.get("_seq").and_then(|v| v.as_s().ok()).cloned();
                let deleted = item.get("_deleted").and_then(|v| v.as_bool().ok()) == Some(&true);
                let mut fields = BTreeMap::new();
                if let Some(n) = item.get("value").and_then(|v| v.as_n().ok()) {
                    fields.insert("value".to_owned(), json!(n.parse::<i64>().unwrap_or(-1)));
                }
                if let Some(s) = item.get("label").and_then(|v| v.as_s().ok()) {
                    fields.insert("label".to_owned(), json!(s));
                }
                (
                    (TABLE.to_owned(), pk.unwrap_or_default()),
                    Row {
                        seq: seq.unwrap_or_default(),
                        deleted,
                        fields,
                    },
                )
            })
            .collect()
    }

    /// Every message on the dead-letter queues (the DLQ and the FIFO path's), each read once,
    /// then made visible again.
    pub async fn letters(&self) -> Vec<Letter> {
        let mut messages = Vec::new();
        for queue in ["dlq", "dlq.fifo"] {
            let url = sluice_local::provision::queue_url(
                &self.env.sqs,
                &format!("{}-{queue}", self.prefix),
            )
            .await
            .unwrap();
            let read = receive(&self.env, &url, usize::MAX).await;
            let there = self.depth(&url).await;
            if read.len() < there && queue.ends_with(".fifo") {
                // A FIFO queue hides the rest of a group while a message of it is in flight,
                // so it cannot be read whole without taking messages off it.
                for m in &read {
                    self.show(&url, m).await;
                }
                messages.extend(self.take_and_put_back(&url, there).await);
                continue;
            }
            assert_eq!(
                there,
                read.len(),
                "{queue}: read {} of {there} message(s)",
                read.len()
            );
            // Visible again at once, for the next reader (a later check, a redrive).
            for m in &read {
                if let Some(handle) = m.receipt_handle() {
                    self.env
                        .sqs
                        .change_message_visibility()
                        .queue_url(&url)
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .send()
                        .await
                        .unwrap();
                }
            }
            messages.extend(read);
        }
        let mut letters = Vec::new();
        let mut stream = None;
        for m in &messages {
            let body = m.body().unwrap_or_default();
            if let Some((id, shard, start, end)) = kinesis_batch_info(body) {
                // A Kinesis batch given up: the changes it names, read back from the shard.
                let arn = self.kinesis_arn.clone().unwrap_or_default();
                for (seq, change) in kinesis_records(&self.env.kinesis, &arn, &shard).await {
                    let padded = format!("{seq:0>129}");
                    if padded < start || padded > end {
                        continue;
                    }
                    letters.push(Letter {
                        failure_id: format!("{id}#{seq}"),
                        change: Some(change),
                        code: "kinesis batch given up".into(),
                    });
                }
                continue;
            }
            match batch_info(body) {
                // A stream batch given up: the changes it names, read back from the stream.
                Some((id, start, end, condition)) => {
                    if stream.is_none() {
                        stream = Some(stream_records(&self.env, &self.stream_arn).await);
                    }
                    for r in stream.iter().flatten() {
                        let Some((key, seq)) = key_and_seq(r) else {
                            continue;
                        };
                        if seq < start || seq > end {
                            continue;
                        }
                        letters.push(Letter {
                            failure_id: format!("{id}#{seq}"),
                            change: Some((TABLE.into(), key, seq)),
                            code: format!("stream batch given up ({condition})"),
                        });
                    }
                }
                None => letters.push(letter(m.message_id().unwrap_or_default(), body)),
            }
        }
        letters
    }

    /// Messages waiting or in flight on the ingest queues and the transform queue.
    pub async fn backlog(&self) -> usize {
        let mut total = 0;
        for queue in ["ingest", "ingest.fifo", "transform"] {
            let url = sluice_local::provision::queue_url(
                &self.env.sqs,
                &format!("{}-{queue}", self.prefix),
            )
            .await
            .unwrap();
            total += self.depth(&url).await;
        }
        total
    }

    /// Makes a message received from `url` visible again.
    async fn show(&self, url: &str, m: &aws_sdk_sqs::types::Message) {
        if let Some(handle) = m.receipt_handle() {
            self.env
                .sqs
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
    }

    /// Reads the `n` messages of the FIFO queue at `url` by taking each off it, then puts them
    /// back in the order read, each with its group and message attributes. Order within a group
    /// is kept; what SQS alone sets (the message id, `DeadLetterQueueSourceArn`) is new, so a
    /// redrive afterwards sends them to the FIFO ingest queue its configuration names.
    async fn take_and_put_back(&self, url: &str, n: usize) -> Vec<aws_sdk_sqs::types::Message> {
        use aws_sdk_sqs::types::MessageSystemAttributeName as Attr;
        let mut taken = Vec::new();
        let mut empty = 0;
        while taken.len() < n && empty < 5 {
            let batch = receive(&self.env, url, 10).await;
            if batch.is_empty() {
                empty += 1;
                continue;
            }
            for m in &batch {
                self.env
                    .sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .unwrap();
            }
            taken.extend(batch);
        }
        assert_eq!(
            taken.len(),
            n,
            "{url}: took {} of {n} message(s)",
            taken.len()
        );
        for (i, m) in taken.iter().enumerate() {
            let group = m
                .attributes()
                .and_then(|a| a.get(&Attr::MessageGroupId))
                .cloned()
                .unwrap_or_else(|| "battery".to_owned());
            self.env
                .sqs
                .send_message()
                .queue_url(url)
                .message_body(m.body().unwrap_or_default())
                .message_group_id(group)
                .message_deduplication_id(format!("{}-{i}", m.message_id().unwrap_or_default()))
                .set_message_attributes(m.message_attributes().cloned())
                .send()
                .await
                .unwrap();
        }
        taken
    }

    /// Messages visible or in flight on a queue.
    async fn depth(&self, url: &str) -> usize {
        depth_of(&self.env.sqs, url).await
    }
}

impl Drop for Battery {
    /// Removes the contracts and state directories it made (the endpoint's resources go with
    /// the emulator).
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.contracts);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Messages visible or in flight on a queue.
async fn depth_of(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        )
        .send()
        .await
        .unwrap();
    attrs
        .attributes()
        .map(|a| {
            a.values()
                .filter_map(|v| v.parse::<usize>().ok())
                .sum::<usize>()
        })
        .unwrap_or(0)
}

/// A dead letter as the checker needs it: its failure id, and the change its original holds.
/// A message that is not a failure envelope is a source message the queue's redrive policy
/// moved; its id stands for the failure.
pub fn letter(message_id: &str, body: &str) -> Letter {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let (failure_id, original, code) = match parsed.get("failure_id").and_then(Value::as_str) {
        Some(id) => (
            id.to_owned(),
            parsed
                .get("original")
                .and_then(Value::as_str)
                .and_then(|o| serde_json::from_str::<Value>(o).ok()),
            parsed
                .get("error_code")
                .and_then(Value::as_str)
                .unwrap_or("no error code")
                .to_owned(),
        ),
        None => (
            format!("message:{message_id}"),
            Some(parsed),
            "moved by the redrive policy".to_owned(),
        ),
    };
    Letter {
        failure_id,
        change: original.as_ref().and_then(change_of),
        code,
    }
}

/// A stream record's key and sequence number (as [`seq40`]).
fn key_and_seq(r: &aws_sdk_dynamodbstreams::types::Record) -> Option<(String, String)> {
    let d = r.dynamodb()?;
    let key = d.keys()?.get("pk")?.as_s().ok()?.clone();
    Some((key, seq40(d.sequence_number()?)))
}

/// A stream's on-failure record (`DDBStreamBatchInfo`): its request id, the first and last
/// sequence numbers of the batch given up (as [`seq40`]), and why it was given up.
fn batch_info(body: &str) -> Option<(String, String, String, String)> {
    let v: Value = serde_json::from_str(body).ok()?;
    let info = v.get("DDBStreamBatchInfo")?;
    Some((
        v.pointer("/requestContext/requestId")?.as_str()?.to_owned(),
        seq40(info.get("startSequenceNumber")?.as_str()?),
        seq40(info.get("endSequenceNumber")?.as_str()?),
        v.pointer("/requestContext/condition")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned(),
    ))
}

/// A Kinesis on-failure record (`KinesisBatchInfo`): its request id, the shard, and the first
/// and last sequence numbers of the batch given up (zero-padded to 129 digits).
fn kinesis_batch_info(body: &str) -> Option<(String, String, String, String)> {
    let v: Value = serde_json::from_str(body).ok()?;
    let info = v.get("KinesisBatchInfo")?;
    let pad = |k: &str| Some(format!("{:0>129}", info.get(k)?.as_str()?));
    Some((
        v.pointer("/requestContext/requestId")?.as_str()?.to_owned(),
        info.get("shardId")?.as_str()?.to_owned(),
        pad("startSequenceNumber")?,
        pad("endSequenceNumber")?,
    ))
}

/// Every record of a Kinesis shard: its sequence number and the change it holds.
async fn kinesis_records(
    kinesis: &aws_sdk_kinesis::Client,
    arn: &str,
    shard: &str,
) -> Vec<(String, (String, String, String))> {
    let mut iterator = kinesis
        .get_shard_iterator()
        .stream_arn(arn)
        .shard_id(shard)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator;
    let mut out = Vec::new();
    let mut empty = 0;
    while let Some(it) = iterator {
        let page = kinesis
            .get_records()
            .stream_arn(arn)
            .shard_iterator(it)
            .send()
            .await
            .unwrap();
        empty = if page.records().is_empty() {
            empty + 1
        } else {
            0
        };
        for r in page.records() {
            let v: Value = serde_json::from_slice(r.data().as_ref()).unwrap_or(Value::Null);
            let key = v.pointer("/dynamodb/Keys/pk/S").and_then(Value::as_str);
            let created = v
                .pointer("/dynamodb/ApproximateCreationDateTime")
                .and_then(Value::as_u64);
            if let (Some(key), Some(created)) = (key, created) {
                let seq = r.sequence_number().to_owned();
                out.push((
                    seq.clone(),
                    (TABLE.into(), key.to_owned(), kinesis_seq(created, &seq)),
                ));
            }
        }
        if empty >= 2 {
            break;
        }
        iterator = page.next_shard_iterator;
    }
    out
}

/// The (table, key, seq) of a source record: a raw line's record, a DynamoDB stream record or an
/// application event.
fn change_of(original: &Value) -> Option<(String, String, String)> {
    if let (Some(record), Some(_)) = (original.get("record"), original.get("v")) {
        if original.get("format").and_then(Value::as_str) == Some("ddb-kinesis") {
            // The creation time is in the record; the Kinesis sequence number in the origin.
            let key = record.pointer("/dynamodb/Keys/pk/S")?.as_str()?;
            let created = record
                .pointer("/dynamodb/ApproximateCreationDateTime")?
                .as_u64()?;
            let seq = original
                .pointer("/origin/kinesis/sequence_number")?
                .as_str()?;
            return Some((TABLE.into(), key.into(), kinesis_seq(created, seq)));
        }
        return change_of(record);
    }
    if let Some(d) = original.get("dynamodb") {
        let key = d.pointer("/Keys/pk/S")?.as_str()?;
        let seq = d.get("SequenceNumber")?.as_str()?;
        return Some((TABLE.into(), key.into(), seq40(seq)));
    }
    let key = original.pointer("/key/pk")?.as_str()?;
    let seq = match original.get("seq")? {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    Some((TABLE.into(), key.into(), seq40(&seq)))
}

/// Runs `child` to its end, taking a snapshot of the typed table about every `every`; returns
/// the snapshots (the last taken after the end) and when the child ended.
pub async fn watch(
    battery: &Battery,
    child: &mut Child,
    every: Duration,
    limit: Duration,
) -> (Vec<Snapshot>, Instant, std::process::ExitStatus) {
    let started = Instant::now();
    let mut history = Vec::new();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let ended = Instant::now();
            history.push(battery.snapshot().await);
            return (history, ended, status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the runner did not drain within {limit:?}");
        }
        history.push(battery.snapshot().await);
        tokio::time::sleep(every).await;
    }
}

/// Appends one run's result as a JSON line to the file `SLUICE_BATTERY_RESULTS` names, if it
/// names one (`make faults` prints the table from it).
pub fn record(
    scenario: &str,
    seed: u64,
    counts: &crate::checker::Counts,
    drain: Option<Duration>,
    injected: usize,
) {
    use std::io::Write;
    let Ok(path) = std::env::var("SLUICE_BATTERY_RESULTS") else {
        return;
    };
    let line = json!({
        "scenario": scenario,
        "seed": seed,
        "counts": counts,
        "drain_secs": drain.map(|d| d.as_secs_f64()),
        "injected": injected,
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    writeln!(file, "{line}").unwrap();
}

impl Battery {
    /// Runs the pipeline to its end through S3 refusing every connection from the start, for at
    /// least `outage` and then until the queues' redrive policies have moved `strand` messages
    /// to the dead-letter queues (at most three minutes): longer than the retries ride out,
    /// however slow the machine. Returns the snapshots taken and the requests that met the
    /// outage.
    pub async fn run_through_s3_outage(
        &self,
        seed: u64,
        outage: Duration,
        strand: usize,
    ) -> (Vec<Snapshot>, usize) {
        let proxy = std::sync::Arc::new(crate::faults::FaultProxy::start_seeded(
            &self.env.endpoint,
            seed,
        ));
        proxy.add(crate::faults::Rule::new("s3", "", crate::faults::Fault::Refuse).any_operation());
        let mut dlqs = Vec::new();
        for queue in ["dlq", "dlq.fifo"] {
            dlqs.push(
                sluice_local::provision::queue_url(
                    &self.env.sqs,
                    &format!("{}-{queue}", self.prefix),
                )
                .await
                .unwrap(),
            );
        }
        let ender = {
            let (proxy, sqs, unkeyed) = (proxy.clone(), self.env.sqs.clone(), self.unkeyed);
            tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if started.elapsed() < outage {
                        continue;
                    }
                    let mut held = 0;
                    for url in &dlqs {
                        held += depth_of(&sqs, url).await;
                    }
                    // The messages that are no change are dead letters at once, outage or not.
                    let moved = held.saturating_sub(unkeyed);
                    if moved >= strand || started.elapsed() > Duration::from_secs(180) {
                        proxy.clear();
                        return;
                    }
                }
            })
        };
        let mut child = self.run_until_idle(&proxy.url);
        let (history, _, status) = watch(
            self,
            &mut child,
            Duration::from_secs(1),
            outage + Duration::from_secs(400),
        )
        .await;
        ender.abort();
        assert!(status.success(), "the run through the outage failed");
        let faults = proxy.calls().iter().filter(|c| c.fault.is_some()).count();
        (history, faults)
    }

    /// Runs the pipeline to its end, fault-free; returns the snapshots taken.
    pub async fn drain(&self) -> Vec<Snapshot> {
        let mut child = self.run_until_idle(&self.env.endpoint);
        let (history, _, status) = watch(
            self,
            &mut child,
            Duration::from_secs(1),
            Duration::from_secs(240),
        )
        .await;
        assert!(status.success(), "the run failed");
        history
    }
}

/// The ordering token of a DynamoDB change through Kinesis, as a typed row's `_seq` holds it:
/// the creation time in µs in 20 digits and the Kinesis sequence number in 129, joined by `.`.
pub fn kinesis_seq(created_us: u64, sequence_number: &str) -> String {
    format!("{created_us:020}.{sequence_number:0>129}")
}

/// Creates a Kinesis stream of one shard and waits until it is active; returns its ARN.
async fn kinesis_stream(kinesis: &aws_sdk_kinesis::Client, name: &str) -> String {
    kinesis
        .create_stream()
        .stream_name(name)
        .shard_count(1)
        .send()
        .await
        .unwrap();
    active(kinesis, name).await
}

/// Waits until the stream is active; returns its ARN.
async fn active(kinesis: &aws_sdk_kinesis::Client, name_or_arn: &str) -> String {
    for _ in 0..100 {
        let req = kinesis.describe_stream_summary();
        let req = if name_or_arn.starts_with("arn:") {
            req.stream_arn(name_or_arn)
        } else {
            req.stream_name(name_or_arn)
        };
        let summary = req
            .send()
            .await
            .unwrap()
            .stream_description_summary
            .unwrap();
        if summary.stream_status == aws_sdk_kinesis::types::StreamStatus::Active {
            return summary.stream_arn;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Kinesis stream {name_or_arn} never became active");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_names_the_change_its_original_holds() {
        let app = r#"{"table":"t","op":"update","key":{"pk":"s-1"},"seq":7,"after":{"pk":"s-1"}}"#;
        let envelope = json!({"failure_id": "f-1", "error_code": "missing_field", "original": app})
            .to_string();
        assert_eq!(
            letter("m", &envelope),
            Letter {
                failure_id: "f-1".into(),
                change: Some((TABLE.into(), "s-1".into(), seq40("7"))),
                code: "missing_field".into(),
            }
        );
        let raw_line = json!({"v": 1, "record": {"dynamodb": {"Keys": {"pk": {"S": "d-2"}}, "SequenceNumber": "500"}}});
        let envelope = json!({"failure_id": "f-2", "original": raw_line.to_string()}).to_string();
        assert_eq!(
            letter("m", &envelope).change,
            Some((TABLE.into(), "d-2".into(), seq40("500")))
        );
        // A source message moved by the queue's redrive policy.
        assert_eq!(
            letter("m-3", app),
            Letter {
                failure_id: "message:m-3".into(),
                change: Some((TABLE.into(), "s-1".into(), seq40("7"))),
                code: "moved by the redrive policy".into(),
            }
        );
        assert_eq!(letter("m-4", "not json").change, None);
    }
}
