#!/usr/bin/env bash
# `make faults`: the whole fault battery, larger than `make test` runs it. Every scenario of
# cli/tests/fault_battery.rs once per seed, and the crash tests of cli/tests/crash_points.rs
# (three crashes at each fail point, then a run to the end), against a private emulator; then a
# table with a row per run: changes sent, typed, stale, dead-lettered (and of those stranded:
# valid changes on the DLQ), lost, duplicate effects, nonmonotonic, resurrected, unstaged (in
# neither raw staging nor the DLQ), out of order (in raw staging, per FIFO group and per stream
# item), time to drain.
#
# Usage: bash infra/faults.sh
#
# Environment:
#   FAULT_CHANGES  changes per source (stream and SQS) in each run (default 400)
#   FAULT_SEEDS    comma-separated seeds (default 1,2,3); a failed run names its seed, and
#                  FAULT_SEEDS=<seed> draws the same faults again
# Output: the table on stdout and target/faults/results.jsonl. Exit status: non-zero when a run
# finds a loss, a duplicate effect, a nonmonotonic or resurrected key, a change unstaged or
# staged out of order, or a drain over 60 s.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/faults"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

export SLUICE_BATTERY_CHANGES="${FAULT_CHANGES:-400}"
export SLUICE_BATTERY_SEEDS="${FAULT_SEEDS:-1,2,3}"
export SLUICE_BATTERY_RESULTS="$RESULTS"

status=0
bash infra/with-emulator.sh cargo test -p sluice-cli --test fault_battery -- --nocapture --test-threads 1 || status=$?
bash infra/with-emulator.sh cargo test -p sluice-cli --features failpoints --test crash_points -- --nocapture --test-threads 8 || status=$?

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cols = ["sent", "typed", "stale", "dead_lettered", "stranded", "lost", "duplicate_effects",
        "nonmonotonic", "resurrected", "phantoms", "diverged", "unstaged", "out_of_order",
        "ordered_groups"]
heads = ["scenario", "seed"] + [c.replace("_", " ") for c in cols] + ["drain (s)", "faults"]
table = []
for r in rows:
    c = r["counts"]
    drain = r.get("drain_secs")
    table.append([r["scenario"], str(r["seed"])] + [str(c[k]) for k in cols]
                 + ["-" if drain is None else f"{drain:.1f}", str(r["injected"])])
widths = [max(len(x) for x in col) for col in zip(heads, *table)] if table else [len(h) for h in heads]
line = lambda cells: "  ".join(x.ljust(w) for x, w in zip(cells, widths))
print()
print(line(heads))
for t in table:
    print(line(t))
bad = [r for r in rows if any(r["counts"][k] for k in
       ("lost", "duplicate_effects", "nonmonotonic", "resurrected", "phantoms", "diverged",
        "unstaged", "out_of_order"))
       or (r.get("drain_secs") or 0) > 60]
print()
print(f"{len(rows)} run(s); " + ("every loss, duplicate effect, nonmonotonic, resurrected, unstaged and out-of-order count is 0 and every drain within 60 s"
      if not bad and rows else f"{len(bad)} run(s) with an anomaly"))
print("('faults' is the number of requests that met a fault, or for a crash test the rounds that crashed)")
PY
exit "$status"
