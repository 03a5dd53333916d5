"""Ingest's peak memory and speed, in batches against whole tables in the same run:
`make benchmark-ingest`.

    python -m benchmarks.ingest_memory [--members 100000] [--batch-rows N] [--raw DIR]

Generates a dirty data set (the generator's dirt: duplicates, bad amounts, future dates, unknown
ids, missing fields), or takes the platform export in --raw, and ingests it twice, each time in a
child process whose peak resident memory the operating system reports:
- in batches (COOPSCORE_INGEST_BATCH_ROWS, or --batch-rows), the way ingest runs;
- the baseline: one batch per table, every table whole in memory, as ingest was before batches.
Both must give the same accepted and quarantined counts, table by table and rule by rule; then
docs/benchmarks-ingest.md is written. `benchmarks.run` uses `measure` for its ingest rows too.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.machine import cpu_and_memory

ROOT = Path(__file__).resolve().parents[1]
WHOLE_TABLES = 10**12  # more rows than any table: each table is read as one batch
RECEIVED_AT = "2026-11-30T12:00:00"  # after the generated data (which ends in 2025), fixed for repeatability

_CHILD = """
import json, sys, time
from datetime import datetime
from pathlib import Path
from data_contracts.ingest import ingest
raw, out, batch_rows, received_at, result = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
started = time.perf_counter()
report = ingest(Path(raw), out / "clean", out / "quarantine", received_at=datetime.fromisoformat(received_at),
                batch_rows=int(batch_rows) if batch_rows else None)
seconds = time.perf_counter() - started
Path(result).write_text(json.dumps({"seconds": seconds, "tables": [
    {"table": t.table, "input_rows": t.input_rows, "accepted": t.accepted,
     "quarantined": t.quarantined, "reasons": t.reasons} for t in report.tables]}))
"""


def measure(raw: Path, out: Path, batch_rows: int | None = None) -> dict:
    """Ingest `raw` into `out` in a child process: its seconds (ingest alone, without starting
    Python), its peak resident memory in bytes, and the report's counts. `batch_rows` None: the
    settings' batch size."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out.mkdir(parents=True, exist_ok=True)
    result_file = out / "measurement.json"  # a file, not stdout: a library may print there
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(raw), str(out), str(batch_rows or ""),
                             RECEIVED_AT, str(result_file)], env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage: its peak RSS alone
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"ingest of {raw} failed in the child process (exit {proc.returncode})")
    result = json.loads(result_file.read_text())
    result["peak_rss_bytes"] = usage.ru_maxrss * 1024  # Linux reports kilobytes
    result["rows"] = sum(t["input_rows"] for t in result["tables"])
    return result


def same_verdicts(a: dict, b: dict) -> bool:
    return a["tables"] == b["tables"]


def compare(raw: Path, batched_out: Path, whole_out: Path, batch_rows: int | None = None,
            ) -> tuple[dict, dict]:
    """The batched ingest (into `batched_out`) and the whole-table baseline (into `whole_out`) of
    `raw`, checked to agree."""
    print("  ingest in batches ...", flush=True)
    batched = measure(raw, batched_out, batch_rows)
    print(f"  {batched['seconds']:.1f} s, peak {batched['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
    print("  ingest, whole tables (baseline) ...", flush=True)
    whole = measure(raw, whole_out, WHOLE_TABLES)
    print(f"  {whole['seconds']:.1f} s, peak {whole['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
    if not same_verdicts(batched, whole):
        raise RuntimeError("ingest in batches and whole tables disagree:\n"
                           f"{json.dumps(batched['tables'], indent=1)}\n{json.dumps(whole['tables'], indent=1)}")
    return batched, whole


def write_report(batched: dict, whole: dict, members: int | None, batch_rows: int, path: Path) -> None:
    cpu, mem = cpu_and_memory()
    tx = next(t for t in batched["tables"] if t["table"] == "transactions")

    def line(label: str, r: dict) -> str:
        return (f"| {label} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | "
                f"{r['seconds'] / r['rows'] * 1e6:.2f} | {r['peak_rss_bytes'] / 2**30:.2f} |")

    size = f"{members:,} members, " if members else ""
    path.write_text(f"""# Ingest: memory and speed

Written by `make benchmark-ingest` (`python -m benchmarks.ingest_memory`) on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.

Machine: {cpu}, {os.cpu_count()} cores, {mem} (shared with other work while it ran: compare the two
rows, measured in the same run, rather than with other days).

Data: the generator's dirty data, {size}{batched['rows']:,} rows in all, {tx['input_rows']:,} of them
transactions; {sum(t['quarantined'] for t in batched['tables']):,} rows quarantined. Each ingest runs
in its own process; peak memory is that process's maximum resident set.

| ingest | seconds | rows / s | µs per row | peak memory (GiB) |
| --- | --- | --- | --- | --- |
{line(f"in batches of {batch_rows:,} rows", batched)}
{line("whole tables, one batch each (the baseline: ingest before batches)", whole)}

Both gave the same accepted and quarantined counts for every table and every rule (checked by the
benchmark). How the batches work and what bounds memory: docs/scaling.md.
""", encoding="utf-8")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--raw", type=Path, help="ingest this export instead of generating one")
    parser.add_argument("--batch-rows", type=int, help="default: the settings (COOPSCORE_INGEST_BATCH_ROWS)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-ingest.md")
    args = parser.parse_args(argv)
    from settings import get_settings

    batch_rows = args.batch_rows or get_settings().ingest_batch_rows
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw
        if raw is None:
            from coopscore.synthetic import generate

            raw = Path(tmp) / "raw"
            print(f"generating {args.members:,} members with dirt", flush=True)
            generate(raw, members=args.members, seed=42, dirty=True)
        batched, whole = compare(raw, Path(tmp) / "batched", Path(tmp) / "whole", batch_rows)
    write_report(batched, whole, None if args.raw else args.members, batch_rows, args.out)


if __name__ == "__main__":
    main()
