"""The orchestration of `make bench` (infra/bench.sh builds the binaries and runs this with
.venv-bench's python): generates the data with the peers' generators, runs sluice's handlers
(`sluice-bench`) and the peers of bench/peers/ on the same data, pinned to one core, checks that
they agree, and prints and writes the table.

Every peer runs as it is: its command line is the one its README gives, and nothing of it is
changed here. Only stdlib is used, so this runs with any Python 3.11."""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "peers"
PYTHON = sys.executable
BATCH = 100  # records per DynamoDB Streams event: the event source mapping's default batch size
KNOWN = {100_000: {"rows": 31_677, "tombstones": 1_599, "quarantined": 44}}  # bench/peers/README.md
GROWTH_TOLERANCE = 1.25  # "the same per-line cost": the largest within 25 % of the smallest
MIB = 1024


class OtherWork:
    """How much CPU the rest of the machine used while the benchmark ran, in cores on average:
    the machine's busy time (/proc/stat) less this process's and its children's."""

    def __init__(self):
        self.wall, self.busy, self.ours = time.monotonic(), self.machine_busy(), self.our_cpu()

    @staticmethod
    def machine_busy():
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def our_cpu():
        import resource
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def cores(self):
        wall = time.monotonic() - self.wall
        others = (self.machine_busy() - self.busy) - (self.our_cpu() - self.ours)
        return max(0.0, others / wall) if wall > 0 else 0.0

TRANSFORM_PEERS = [  # (name, script, arguments): the goal's reference first
    ("duckdb struct --encode", "peer_duckdb_transform.py", ["--mode", "struct", "--encode"]),
    ("duckdb struct", "peer_duckdb_transform.py", ["--mode", "struct"]),
    ("duckdb json", "peer_duckdb_transform.py", ["--mode", "json"]),
    ("python powertools", "peer_powertools_transform.py", []),
]
INGEST_PEERS = [("python powertools", "peer_powertools_ingest.py", [])]

TRANSFORM_LINE = re.compile(
    r"(\d+) lines -> (\d+) rows \((\d+) tombstones\), (\d+) quarantined in ([\d.]+)s = ([\d,]+) records/s")
CHECK_LINE = re.compile(
    r"check: sum\(amount\)=(\S+) sum\(qty\)=(\S+) paid=(\d+) tags=(\d+) created_at=\[(.+?) \.\. (.+?)\]")
INGEST_LINE = re.compile(r"(\d+) records in ([\d.]+)s = ([\d,]+) records/s")


class BenchError(Exception):
    """A step that could not run: a bug in the harness or a broken install, not a slow result."""


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# What template.yaml sets for the ingest and transform functions besides their own variables:
# sluice's handlers run under it, as deployed. (mimalloc keeps the pages it frees instead of
# handing them back to the kernel and faulting them in again: a function's memory is its own.)
FUNCTION_ENV = {"MIMALLOC_PURGE_DELAY": "-1"}


def run(cmd, cpu=None, cwd=ROOT, env=None):
    """Runs `cmd` (pinned to `cpu` when given, with `env` added to the environment) and returns
    its stdout and peak RSS in KiB."""
    full = (["taskset", "-c", str(cpu)] if cpu is not None else []) + [str(c) for c in cmd]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(full, stdout=out, stderr=err, cwd=cwd, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise BenchError(f"{' '.join(full)} exited with {proc.returncode}:\n{tail}")
    return stdout, usage.ru_maxrss


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Data


def stale(path, *sources):
    return not path.exists() or any(path.stat().st_mtime < s.stat().st_mtime for s in sources)


def raw_object(n, out):
    path = out / f"raw-{n}.ndjson.gz"
    if stale(path, PEERS / "gen_raw.py"):
        log(f"generating {n:,} raw lines into {path.relative_to(ROOT)}")
        run([PYTHON, PEERS / "gen_raw.py", n, path])
    return path


def events(n, out):
    path = out / f"events-{n}-b{BATCH}"
    stamp = path / ".done"
    if stale(stamp, PEERS / "gen_ddb_events.py"):
        log(f"generating {n:,} DynamoDB Streams records into {path.relative_to(ROOT)}")
        shutil.rmtree(path, ignore_errors=True)
        run([PYTHON, PEERS / "gen_ddb_events.py", n, BATCH, path])
        stamp.touch()
    return path


# --------------------------------------------------------------------------------------------
# Runs


def sluice_transform(bin_dir, path, runs, cpu, tables="memory"):
    stdout, _ = run([bin_dir / "sluice-bench", "transform", path, "--contracts", PEERS, "--runs", runs,
                     "--tables", tables], cpu, env=FUNCTION_ENV)
    result = last_json(stdout)
    if result["retried"]:
        raise BenchError(f"sluice transform asked to retry its message on {path.name}")
    return result


def sluice_ingest(bin_dir, path, runs, cpu):
    stdout, _ = run([bin_dir / "sluice-bench", "ingest", path, "--runs", runs], cpu, env=FUNCTION_ENV)
    return last_json(stdout)


def peer_transform(name, script, extra, path, runs, cpu):
    rates, checks, counts, rss = [], set(), set(), 0
    for _ in range(runs):
        stdout, maxrss = run([PYTHON, PEERS / script, path, *extra], cpu)
        m, c = TRANSFORM_LINE.search(stdout), CHECK_LINE.search(stdout)
        if not m or not c:
            raise BenchError(f"peer {name} printed no result or check line:\n{stdout}")
        rates.append(float(m.group(6).replace(",", "")))
        counts.add(tuple(int(m.group(i)) for i in range(1, 5)))
        checks.add(c.groups())
        rss = max(rss, maxrss)
        version = stdout.split(" transform")[0]
    if len(counts) > 1 or len(checks) > 1:
        raise BenchError(f"peer {name} gave different results on the same input: {counts} {checks}")
    lines, rows, tombstones, quarantined = counts.pop()
    sum_amount, sum_qty, paid, tags, tmin, tmax = checks.pop()
    return {"name": name, "tool": version, "command": f"{script} {path.name} {' '.join(extra)}".strip(),
            "lines": lines, "lines_per_sec": statistics.median(rates), "rates": rates,
            "rows": rows, "tombstones": tombstones, "quarantined": quarantined,
            "check": {"sum_amount": sum_amount, "sum_qty": sum_qty, "paid": int(paid), "tags": int(tags),
                      "created_at_min": tmin, "created_at_max": tmax},
            "peak_rss_kib": rss}


def peer_ingest(name, script, extra, path, runs, cpu):
    rates, records, rss = [], set(), 0
    for _ in range(runs):
        stdout, maxrss = run([PYTHON, PEERS / script, path, *extra], cpu)
        m = INGEST_LINE.search(stdout)
        if not m:
            raise BenchError(f"peer {name} printed no result line:\n{stdout}")
        rates.append(float(m.group(3).replace(",", "")))
        records.add(int(m.group(1)))
        rss = max(rss, maxrss)
    return {"name": name, "command": f"{script} {path.name}", "records": records.pop(),
            "records_per_sec": statistics.median(rates), "rates": rates, "peak_rss_kib": rss}


def criterion_stages(cpu):
    """Runs the per-stage micro-benchmarks and reads criterion's estimates."""
    log("running the per-stage micro-benchmarks (criterion)")
    stdout, _ = run(["cargo", "bench", "-q", "-p", "sluice-bench", "--bench", "stages"], cpu)
    base = ROOT / "target" / "criterion" / "transform"
    stages = []
    for name in ["read_object", "parse_raw_line", "decode_record", "type_change", "decide", "coalesce",
                 "build_item"]:
        est_path, bench_path = base / name / "new" / "estimates.json", base / name / "new" / "benchmark.json"
        if not est_path.exists():
            continue
        est, bench = json.loads(est_path.read_text()), json.loads(bench_path.read_text())
        elements = (bench.get("throughput") or {}).get("Elements") or 1
        stage = {"name": name, "ns_per_element": est["mean"]["point_estimate"] / elements, "elements": elements}
        change = base / name / "change" / "estimates.json"
        if change.exists():
            stage["change_pct"] = json.loads(change.read_text())["mean"]["point_estimate"] * 100
        stages.append(stage)
    return stages, stdout


# --------------------------------------------------------------------------------------------
# Agreement


def instant(text):
    return datetime.fromisoformat(text)


def same_check(sluice, peer):
    """The differences between sluice's check and a peer's, field by field."""
    diffs = []
    try:
        if Decimal(sluice["sum_amount"]) != Decimal(peer["sum_amount"]):
            diffs.append(f"sum(amount) {sluice['sum_amount']} != {peer['sum_amount']}")
    except InvalidOperation:
        diffs.append(f"sum(amount) {sluice['sum_amount']} vs {peer['sum_amount']}")
    if int(sluice["sum_qty"]) != int(peer["sum_qty"]):
        diffs.append(f"sum(qty) {sluice['sum_qty']} != {peer['sum_qty']}")
    for k in ("paid", "tags"):
        if int(sluice[k]) != int(peer[k]):
            diffs.append(f"{k} {sluice[k]} != {peer[k]}")
    for k in ("created_at_min", "created_at_max"):
        if sluice[k] is None or instant(sluice[k]) != instant(peer[k]):
            diffs.append(f"{k} {sluice[k]} != {peer[k]}")
    if sluice.get("unreadable"):
        diffs.append(f"{sluice['unreadable']} values of sluice's rows could not be read")
    return diffs


def agreement(n, transform, transform_peers, ingest, ingest_peers):
    """What differs between sluice and each peer (or the known values), by whom."""
    problems = {}

    def differs(who, what):
        problems.setdefault(who, []).append(what)

    for p in transform_peers:
        for k in ("lines", "rows", "tombstones", "quarantined"):
            if transform[k] != p[k]:
                differs(p["name"], f"transform {k}: sluice {transform[k]}, peer {p[k]}")
        for d in same_check(transform["check"], p["check"]):
            differs(p["name"], f"transform {d}")
    for k, v in KNOWN.get(n, {}).items():
        if transform[k] != v:
            differs("known values", f"transform {k}: sluice {transform[k]}, known {v} for N = {n:,}")
    for p in ingest_peers:
        if ingest["records"] != p["records"]:
            differs(p["name"] + " ingest", f"ingest records: sluice {ingest['records']}, peer {p['records']}")
    if ingest["landed"] != ingest["records"] or ingest["quarantined"] or ingest["retried"]:
        differs("sluice ingest", f"landed {ingest['landed']} of {ingest['records']} records "
                                 f"({ingest['quarantined']} dead letters, {ingest['retried']} retried)")
    return problems


# --------------------------------------------------------------------------------------------
# Report


def machine():
    model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                  if l.startswith("model name")), platform.processor() or "unknown")
    mem_kib = next((int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                    if l.startswith("MemTotal:")), 0)
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    return {"commit": commit or "unknown", "nproc": os.cpu_count(), "cpu": model, "memory_gib": round(mem_kib / 1024 / 1024, 1),
            "kernel": platform.release(), "rustc": rustc, "python": platform.python_version()}


def mib(kib):
    return f"{kib / MIB:.1f} MiB" if kib else "-"


def rate(x):
    return f"{x:,.0f}"


def goal(name, value, target, met, shown):
    return {"goal": name, "value": value, "target": target, "met": met, "shown": shown}


def table(r):
    t, i = r["transform"], r["ingest"]
    out = []
    m = r["machine"]
    mode = "TINY (debug build, one run: checks agreement, measures nothing)" if r["tiny"] else \
        f"release build, median of {r['runs']} runs"
    out.append(f"sluice bench: N = {r['n']:,} (seed 42), one core (taskset -c {r['cpu']}), {mode}")
    out.append(f"machine: {m['nproc']} cores, {m['cpu']}, {m['memory_gib']} GiB; {m['rustc']}; "
               f"Python {m['python']}; sluice at {m['commit']}")
    if r["other_work_cores"] > 0.2:
        out.append(f"warning: other processes kept {r['other_work_cores']:.1f} cores busy on average during the run: "
                   "the figures are lower and noisier than on an idle machine")
    out.append("")
    w = 26
    out.append(f"{'transform':<{w}} {'lines/s':>12} {'sluice is':>10} {'peak RSS':>11}   result")
    s = t["sluice"]
    out.append(f"{'  sluice (handler)':<{w}} {rate(s['lines_per_sec']):>12} {'':>10} {mib(s['peak_rss_kib']):>11}   "
               f"{s['rows']:,} rows ({s['tombstones']:,} tombstones), {s['quarantined']} quarantined")
    for p in t["peers"]:
        ratio = s["lines_per_sec"] / p["lines_per_sec"]
        res = "DIFFERENT" if p["name"] in r["agreement"]["problems"] else "same result"
        out.append(f"{'  ' + p['name']:<{w}} {rate(p['lines_per_sec']):>12} {ratio:>9.2f}x {mib(p['peak_rss_kib']):>11}   {res}")
    out.append("")
    out.append(f"{'ingest':<{w}} {'records/s':>12} {'sluice is':>10} {'peak RSS':>11}")
    s = i["sluice"]
    out.append(f"{'  sluice (handler)':<{w}} {rate(s['records_per_sec']):>12} {'':>10} {mib(s['peak_rss_kib']):>11}   "
               f"{s['landed']:,} landed in {s['objects']:,} objects")
    for p in i["peers"]:
        ratio = s["records_per_sec"] / p["records_per_sec"]
        res = "DIFFERENT" if p["name"] + " ingest" in r["agreement"]["problems"] else "same records"
        out.append(f"{'  ' + p['name']:<{w}} {rate(p['records_per_sec']):>12} {ratio:>9.2f}x {mib(p['peak_rss_kib']):>11}   {res}")
    out.append("")
    rss = r["rss"]
    out.append(f"peak RSS at {rss['lines']:,} lines / records: transform {mib(rss['transform_kib'])}, "
               f"ingest {mib(rss['ingest_kib'])}")
    c = r["cold_start"]
    out.append(f"cold start ({c['bootstrap']}): {c['ms']:.1f} ms (median of {c['runs']}, "
               f"{min(c['ms_all']):.1f} to {max(c['ms_all']):.1f})")
    out.append("growth (transform, one object): " + ", ".join(
        f"{g['lines']:,} lines {g['us_per_line']:.2f} us/line" for g in r["growth"]))
    if r.get("stages"):
        out.append("stages (criterion, ns per line; build_item per row): " + ", ".join(
            f"{s['name']} {s['ns_per_element']:,.0f}" + (f" ({s['change_pct']:+.1f}%)" if "change_pct" in s else "")
            for s in r["stages"]))
    out.append("")
    out.append("goals")
    gw = max(len(g["goal"]) for g in r["goals"])
    sw = max(len(g["shown"]) for g in r["goals"])
    for g in r["goals"]:
        status = "n/a (tiny)" if r["tiny"] else ("met" if g["met"] else "NOT MET")
        out.append(f"  {g['goal']:<{gw}}  {g['shown']:<{sw}}  {status}")
    out.append("")
    if r["agreement"]["problems"]:
        out.append("RESULTS DIFFER (a bug in sluice or in the harness):")
        out += [f"  {who}: {p}" for who, ps in r["agreement"]["problems"].items() for p in ps]
    else:
        known = " and the known values" if r["n"] in KNOWN else ""
        out.append(f"agreement: sluice's rows, tombstones, dead letters and sums equal every peer's{known}")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--cpu", type=int, default=0)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--growth-max", type=int, default=0,
                    help="the largest object of the growth (1000000 adds that point without running the peers on it)")
    ap.add_argument("--bin-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--criterion", action="store_true")
    a = ap.parse_args()
    started = time.monotonic()
    other_work = OtherWork()
    host = machine()  # the commit as the binaries were just built from it
    runs = a.runs or (1 if a.tiny else 3)
    cpu = a.cpu if shutil.which("taskset") else None
    if cpu is None:
        log("taskset not found: nothing is pinned")
    a.out.mkdir(parents=True, exist_ok=True)
    n = a.n
    rss_lines = n if a.tiny else 10_000
    growth_sizes = sorted({1_000, n} if a.tiny else
                          {1_000, 10_000, 100_000, n}
                          | ({1_000_000} if max(n, a.growth_max) >= 1_000_000 else set()))

    main_raw, main_events = raw_object(n, a.out), events(n, a.out)
    rss_events = events(rss_lines, a.out)
    growth_raw = {size: raw_object(size, a.out) for size in growth_sizes}

    log(f"sluice transform on {n:,} lines ({runs} runs)")
    transform = sluice_transform(a.bin_dir, main_raw, runs, cpu)
    log(f"sluice ingest on {n:,} records ({runs} runs)")
    ingest = sluice_ingest(a.bin_dir, main_events, runs, cpu)
    transform_peers, ingest_peers = [], []
    for name, script, extra in TRANSFORM_PEERS:
        log(f"peer {name} on {n:,} lines ({runs} runs)")
        transform_peers.append(peer_transform(name, script, extra, main_raw, runs, cpu))
    for name, script, extra in INGEST_PEERS:
        log(f"peer {name} ingest on {n:,} records ({runs} runs)")
        ingest_peers.append(peer_ingest(name, script, extra, main_events, runs, cpu))

    # The growth is the handler's own: each winner's item is built as the DynamoDB adapter builds
    # it, then dropped, so no table store grows with the object (DynamoDB holds the table).
    growth = []
    for size in growth_sizes:
        size_runs = 1 if a.tiny else max(runs, min(30, 30_000 // size))
        log(f"sluice transform on {size:,} lines, items built and dropped ({size_runs} runs)")
        g = sluice_transform(a.bin_dir, growth_raw[size], size_runs, cpu, tables="discard")
        growth.append({"lines": size, "us_per_line": g["us_per_line"], "lines_per_sec": g["lines_per_sec"],
                       "runs": g["runs"], "peak_rss_kib": g["peak_rss_kib"],
                       "written": g["written"], "quarantined": g["quarantined"]})
    transform_rss = next(g["peak_rss_kib"] for g in growth if g["lines"] == rss_lines)
    ingest_rss = ingest["peak_rss_kib"] if rss_lines == n else sluice_ingest(a.bin_dir, rss_events, runs, cpu)["peak_rss_kib"]

    bootstrap = a.bin_dir / "ingest"
    cold_runs = 1 if a.tiny else 21
    log(f"cold start of {bootstrap.relative_to(ROOT)} ({cold_runs} runs)")
    stdout, _ = run([a.bin_dir / "sluice-bench", "cold-start", bootstrap, "--runs", cold_runs], env=FUNCTION_ENV)
    cold = last_json(stdout)
    cold["bootstrap"] = str(bootstrap.relative_to(ROOT))

    stages = []
    if a.criterion:
        stages, _ = criterion_stages(cpu)

    problems = agreement(n, transform, transform_peers, ingest, ingest_peers)
    duck = transform_peers[0]
    py_ingest = ingest_peers[0]
    t_ratio = transform["lines_per_sec"] / duck["lines_per_sec"]
    i_ratio = ingest["records_per_sec"] / py_ingest["records_per_sec"]
    per_line = [g["us_per_line"] for g in growth]
    spread = max(per_line) / min(per_line) if per_line and min(per_line) > 0 else float("inf")
    sizes = f"{growth_sizes[0]:,} to {growth_sizes[-1]:,}"
    goals = [
        goal("transform >= 2x duckdb --mode struct --encode", t_ratio, 2.0, t_ratio >= 2.0, f"{t_ratio:.2f}x"),
        goal("ingest >= 20x python powertools", i_ratio, 20.0, i_ratio >= 20.0, f"{i_ratio:.1f}x"),
        goal(f"peak RSS at {rss_lines:,} lines / records <= 64 MiB", max(transform_rss, ingest_rss) / MIB, 64.0,
             max(transform_rss, ingest_rss) <= 64 * MIB,
             f"transform {mib(transform_rss)}, ingest {mib(ingest_rss)}"),
        goal("cold start <= 10 ms", cold["ms"], 10.0, cold["ms"] <= 10.0, f"{cold['ms']:.1f} ms"),
        goal(f"same per-line cost from 1,000 to 1,000,000 lines (max/min <= {GROWTH_TOLERANCE})", spread,
             GROWTH_TOLERANCE, spread <= GROWTH_TOLERANCE,
             f"max/min {spread:.2f} ({sizes}" + ("" if growth_sizes[-1] >= 1_000_000 else " only") + ")"),
    ]
    result = {
        "n": n, "tiny": a.tiny, "runs": runs, "cpu": cpu, "seed": 42, "ingest_batch": BATCH,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": host,
        "transform": {"sluice": transform, "peers": transform_peers,
                      "ratios": {p["name"]: transform["lines_per_sec"] / p["lines_per_sec"] for p in transform_peers}},
        "ingest": {"sluice": ingest, "peers": ingest_peers,
                   "ratios": {p["name"]: ingest["records_per_sec"] / p["records_per_sec"] for p in ingest_peers}},
        "rss": {"lines": rss_lines, "transform_kib": transform_rss, "ingest_kib": ingest_rss},
        "cold_start": cold,
        "growth": growth,
        "stages": stages,
        "goals": goals,
        "agreement": {"ok": not problems, "problems": problems},
        "seconds": round(time.monotonic() - started, 1),
        "other_work_cores": round(other_work.cores(), 2),
    }
    text = table(result)
    result["table"] = text
    results_json, results_svg = a.out / "results.json", a.out / "results.svg"
    results_json.write_text(json.dumps(result, indent=2) + "\n")
    written = [str(results_json.relative_to(ROOT))]
    try:
        run([a.bin_dir / "sluice-bench", "plot", results_json, results_svg])
        written.append(str(results_svg.relative_to(ROOT)))
    except BenchError as e:  # a chart is welcome, never a reason to fail
        log(f"no plot: {e}")
    print(text)
    print(f"\nwritten: {', '.join(written)} ({result['seconds']:.0f} s)")
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(str(e))
        sys.exit(2)
