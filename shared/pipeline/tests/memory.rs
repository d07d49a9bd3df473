//! Memory stays bounded: a 10,000-record, 6 MB batch needs no more than a small multiple of its
//! own size (DESIGN §4: it must fit a 128 MB function). The ports are the in-memory adapters,
//! keeping nothing, so only the handler's own allocations are counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A counting global allocator is the only unsafe code in the workspace: it forwards to the
// system allocator unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use sluice_aws::memory::Memory;
use sluice_aws::metrics::Sink;
use sluice_pipeline::ingest::{handle, Ingest};
use sluice_pipeline::IngestConfig;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn batch(records: usize, bytes: usize) -> String {
    let per_record = bytes / records;
    let mut out = String::with_capacity(bytes + 4096);
    out.push_str(r#"{"Records":["#);
    for i in 0..records {
        if i > 0 {
            out.push(',');
        }
        let head = format!(
            r#"{{"table":"orders","op":"update","key":{{"order_id":"o-{i}"}},"seq":{i},"ts":"2026-11-25T07:00:00Z","after":{{"order_id":"o-{i}","note":""#
        );
        let pad = per_record.saturating_sub(head.len() + 295);
        let body = format!(r#"{head}{}"}}}}"#, "x".repeat(pad));
        out.push_str(&format!(
            r#"{{"messageId":"m-{i}","receiptHandle":"r","body":{},"attributes":{{"ApproximateReceiveCount":"1","SentTimestamp":"1795520000000"}},"messageAttributes":{{}},"md5OfBody":"0","eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:1:q","awsRegion":"us-east-1"}}"#,
            serde_json::to_string(&body).unwrap()
        ));
    }
    out.push_str("]}");
    out
}

#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_records_of_six_megabytes_need_a_small_multiple_of_their_size() {
    let event = batch(10_000, 6 * 1024 * 1024);
    assert!(
        event.len().abs_diff(6 * 1024 * 1024) < 100_000,
        "event is {} bytes",
        event.len()
    );
    let deps = Ingest {
        config: IngestConfig::from_lookup(|n| match n {
            "SLUICE_RAW_BUCKET" | "SLUICE_DLQ_URL" => Some("x".into()),
            _ => None,
        })
        .unwrap(),
        store: Memory::discarding(),
        dead_letters: Memory::discarding(),
        metrics: Sink::Discard,
    };
    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let response = handle(&event, &deps).await.unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    assert!(response.failed_ids().is_empty());
    let ratio = peak as f64 / event.len() as f64;
    eprintln!(
        "event {} bytes, peak extra {} bytes, ratio {ratio:.2}",
        event.len(),
        peak
    );
    assert!(ratio <= 3.0, "peak extra memory is {ratio:.2}× the batch");
}
