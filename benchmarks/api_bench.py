"""Speed of the scoring API as a partner bank sees it, reproducible with one command: `make benchmark-api`.

    python -m benchmarks.api_bench [--home DIR] [--rates 50,100,200,300] [--duration 25]
                                   [--batch-rows 1000000] [--out docs/benchmarks-api.md]

Builds a demo-size home (20,000 members, 1,000 cooperatives, seed 42) in a temporary folder (or
reuses --home), registers a bank "bench" with consents for the members it asks about, starts the
real BentoML server (rate limit raised so that it does not interfere) and measures, in one run:
- open-loop load on POST /v1/scores at several rates (benchmarks.api_load.load_test);
- the naive baseline (pandas row + a new shap.TreeExplainer per request) on the same bodies;
- one POST /v1/scores:batch of 1,000 applications over HTTP;
- serving.batch.score_file on 10^6 member applications against the naive loop extrapolated;
- the audit log: rows with status 200 for the bank equal the 200 answers the generator counted.
Writes docs/benchmarks-api.md with the machine and the date.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from datetime import datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path

from benchmarks.machine import cpu_and_memory

import httpx
import numpy as np
import pandas as pd

from benchmarks.api_load import batch_throughput, load_test, naive_baseline, sample_applications
from settings import Paths, reset_settings
from serving.launcher import start_server, stop_server

ROOT = Path(__file__).resolve().parents[1]
BANK = "bench"
P99_TARGET_MS = 25.0
TARGET_RATE = 200.0
BATCH_TARGET_S = 120.0
logging.getLogger("mlflow").setLevel(logging.WARNING)


def say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def machine() -> dict:
    cpu, mem = cpu_and_memory()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": cpu, "cores": os.cpu_count(), "ram": mem,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "bentoml": version("bentoml"), "lightgbm": version("lightgbm"), "shap": version("shap"),
            "load_before": "{:.2f} / {:.2f} / {:.2f}".format(*load)}


def build_home(home: Path, members: int, cooperatives: int, seed: int = 42) -> Paths:
    """generate -> ingest -> snapshot -> train (and promote) the member model, unless already there."""
    from coopscore.synthetic import generate
    from data_contracts.ingest import ingest
    from features.snapshot import build_snapshot
    from governance.pipeline import train_and_promote
    from governance.promotion import promote

    paths = Paths(home)
    os.environ["COOPSCORE_HOME"] = str(home)
    os.environ.pop("COOPSCORE_TRACKING_URI", None)
    reset_settings()  # settings are read once per process: read them again for this home
    if (paths.features / "snapshot.parquet").exists():
        say(f"reusing the home {home}")
        return paths
    for label, fn in (("generate", lambda: generate(paths.raw, members=members,
                                                     cooperatives=cooperatives, seed=seed)),
                      ("ingest", lambda: ingest(paths.raw, paths.clean, paths.quarantine)),
                      ("feature snapshot", lambda: build_snapshot(paths.clean, paths.features))):
        t = time.perf_counter()
        say(f"{label} ...")
        fn()
        say(f"{label}: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    say("train the member model ...")
    result = train_and_promote(paths, "member")
    if not result.promoted:  # the service needs a champion; the gates are not what is measured here
        promote(paths, "member", result.version, override="benchmark")
    say(f"train: {time.perf_counter() - t:.1f} s (version {result.version}, "
        f"promoted by gates: {result.promoted})")
    return paths


def bank_and_consents(paths: Paths, member_ids: list[str]) -> tuple[str, dict]:
    """The bank "bench" (a new key if it exists already) and a year's consent for each member."""
    from records import Operator, Records

    with Records(paths) as records:
        scopes = ["scores:read", "scores:batch"]
        try:
            token = records.add_bank(BANK, "Benchmark bank", scopes).token
        except ValueError:
            token = records.issue_key(BANK, scopes).token
        expires = datetime.now(timezone.utc) + timedelta(days=364)
        for member_id in member_ids:
            records.grant_consent("member", member_id, BANK, purpose="credit_scoring", expires_at=expires,
                                  source="operator", actor=Operator("benchmark"))
        before = records.audit_count(bank_id=BANK, http_status=200)
    return token, {"audit_200_before": before}


def register_challenger(paths: Paths) -> str:
    """Alias a second version of the champion's artifacts `challenger`: the shadow scores it beside the
    champion, at the cost of any challenger of the same shape (the comparison itself is not measured)."""
    from mlflow import MlflowClient
    from governance.promotion import CHALLENGER
    from training import registry

    registry.use_store(paths)
    client = MlflowClient()
    champion = registry.champion_version("member")
    created = client.create_model_version("coopscore-member", champion.source, run_id=champion.run_id)
    client.set_registered_model_alias("coopscore-member", CHALLENGER, str(created.version))
    return str(created.version)


def bodies_for(paths: Paths, n: int) -> list[dict]:
    frame, _ = sample_applications(paths, n, seed=7)
    return [{"subject_type": "member", "subject_id": r.subject_id,
             "application": {"amount_vnd": int(r.amount_vnd), "term_months": int(r.term_months),
                             "purpose": r.purpose}}
            for r in frame.itertuples()]


def http_batch(base: str, headers: dict, bodies: list[dict], repeats: int = 5) -> dict:
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        ms, statuses, ok_items = [], {}, 0
        for _ in range(repeats):
            t = time.perf_counter()
            response = client.post("/v1/scores:batch", json={"applications": bodies})
            ms.append((time.perf_counter() - t) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                ok_items = sum(1 for r in response.json()["results"] if r["status"] != "rejected")
    return {"applications": len(bodies), "calls": repeats, "statuses": statuses,
            "scored_items": ok_items, "p50_ms": float(np.median(ms)), "max_ms": float(max(ms)),
            "min_ms": float(min(ms))}


def metric_sum(base: str, name: str, having: str) -> int:
    """The sum over a Prometheus counter's series on GET /metrics whose labels contain `having`."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") and having in line))


def shadow_row(label: str, r: dict | None) -> str:
    if r is None:
        return f"| {label} | (no run at {TARGET_RATE:.0f}/s) | | | | | | | | | |"
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors_by_status"].items())) or "none"
    return (f"| {label} | {r['target_rate_per_s']:.0f} | {r['duration_s']:.0f} | {r['sent']:,} | "
            f"{r['achieved_per_s']:.1f} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} | {fmt(r['p99_ms'])} | "
            f"{fmt(r['max_ms'])} | {errors} | {fmt(r['send_lag_p99_ms'])} |")


def fmt(value, spec=".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def write_report(out: Path, m: dict, setup: dict, loads: list[dict], naive: dict, batch_http: dict,
                 batch: dict, audit: dict, shadow: dict) -> None:
    def load_row(r):
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors_by_status"].items())) or "none"
        return (f"| {r['target_rate_per_s']:.0f} | {r['duration_s']:.0f} | {r['sent']:,} | "
                f"{r['achieved_per_s']:.1f} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} | "
                f"{fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {errors} | {fmt(r['send_lag_p99_ms'])} |")

    target = next((r for r in loads if r["target_rate_per_s"] == TARGET_RATE), None)
    if target is None:
        target_line = f"No run at {TARGET_RATE:.0f}/s in this report."
    else:
        met = (target["p99_ms"] is not None and target["p99_ms"] < P99_TARGET_MS
               and not target["errors_by_status"])
        target_line = (f"Target p99 < {P99_TARGET_MS:.0f} ms at {TARGET_RATE:.0f} requests/s with no "
                       f"error: **{'met' if met else 'missed'}** (p99 {fmt(target['p99_ms'])} ms, "
                       f"errors {target['errors_by_status'] or 'none'}).")
    lag = max((r["send_lag_p99_ms"] or 0) for r in loads) if loads else 0
    lag_line = (f"The generator's send lag (p99) stayed at or below {lag:.1f} ms: the client kept "
                "its schedule." if lag < 5 else
                f"The generator's send lag reached {lag:.1f} ms (p99): the client shared the "
                f"machine ({m['cores']} cores) with the server and fell behind its schedule, so part "
                "of the latency above is the client's; repeat on a quieter or bigger machine.")
    nv, sc = naive["naive"], naive["scorer"]
    speed = (nv["mean_ms"] / sc["mean_ms"]) if nv["mean_ms"] and sc["mean_ms"] else float("nan")
    batch_ok = batch["score_file_s"] < BATCH_TARGET_S
    text = f"""# Benchmarks: the scoring API

Written by `make benchmark-api` (`python -m benchmarks.api_bench`) on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.

Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; {m['os']}; Python {m['python']}, BentoML
{m['bentoml']}, LightGBM {m['lightgbm']}, SHAP {m['shap']}. Load average before the run: {m['load_before']}
(other work may have shared the machine). Client and server ran on the same machine, over loopback.

Data: demo size, {setup['members']:,} members and {setup['cooperatives']:,} cooperatives (seed 42), member
model trained in the run; bank `{BANK}` with consent for the {setup['consented']:,} members asked about;
server started with `COOPSCORE_RATE_LIMIT={setup['rate_limit']}` so that the rate limiter does not interfere.

## Open-loop load, POST /v1/scores (one application per request)

Requests leave on a fixed schedule whatever the server does; latency is measured from each
request's scheduled send time, so queueing in the server shows in the percentiles.

| target (req/s) | duration (s) | sent | achieved (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | errors by status | send lag p99 (ms) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(load_row(r) for r in loads)}

Reading: {target_line} {lag_line}

## The challenger in the shadow: the same load with the shadow switched off

The runs above score the `challenger` (version {shadow['challenger']}) beside the champion on every scored
answer (serving/shadow.py, after the answer, in a thread of its own). A second server with
`COOPSCORE_SHADOW=0` took the same load at {TARGET_RATE:.0f} req/s in the same run:

| shadow | target (req/s) | duration (s) | sent | achieved (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | errors by status | send lag p99 (ms) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{shadow['on_row']}
{shadow['off_row']}

Shadow rows recorded during the load runs: {shadow['rows']:,} for {shadow['answers']:,} answers with status 200
(answers with insufficient history are not shadowed); skipped for a full queue: {shadow['skipped']}.

## Naive baseline, in process, on the same bodies

| implementation | requests | p50 (ms) | p95 (ms) | p99 (ms) | mean (ms) |
| --- | --- | --- | --- | --- | --- |
| naive: pandas row + new shap.TreeExplainer per request | {naive['requests'] - naive['naive_skipped']} | {fmt(nv['p50_ms'])} | {fmt(nv['p95_ms'])} | {fmt(nv['p99_ms'])} | {fmt(nv['mean_ms'])} |
| scoring.scorer.Scorer.score (what the API runs) | {naive['requests']} | {fmt(sc['p50_ms'], '.2f')} | {fmt(sc['p95_ms'], '.2f')} | {fmt(sc['p99_ms'], '.2f')} | {fmt(sc['mean_ms'], '.2f')} |

Reading: the service's scorer is {speed:.0f}x faster per request than the naive implementation
(in process, without HTTP).

## One batch call over HTTP, POST /v1/scores:batch

| applications per call | calls | statuses | items scored (last call) | p50 (ms) | min (ms) | max (ms) |
| --- | --- | --- | --- | --- | --- | --- |
| {batch_http['applications']:,} | {batch_http['calls']} | {batch_http['statuses']} | {batch_http['scored_items']:,} | {batch_http['p50_ms']:.0f} | {batch_http['min_ms']:.0f} | {batch_http['max_ms']:.0f} |

Reading: a full batch of 1,000 applications answers in {batch_http['p50_ms'] / 1000:.2f} s (median),
{batch_http['p50_ms'] / batch_http['applications']:.2f} ms per application, each with its audit row.

## Batch scoring of files, serving.batch.score_file

| rows | score_file (s) | rows/s | scored | insufficient history | rejected | naive per row (ms, {batch['naive_sample_rows']} rows) | naive extrapolated (s) | speed-up |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
| {batch['rows']:,} | {batch['score_file_s']:.1f} | {batch['score_file_rows_per_s']:,.0f} | {batch['scored']:,} | {batch['insufficient_history']:,} | {batch['rejected']:,} | {batch['naive_per_row_ms']:.1f} | {batch['naive_extrapolated_s']:,.0f} | {batch['speedup']:.0f}x |

Reading: {batch['rows']:,} member applications with their top reasons in {batch['score_file_s']:.0f} s
(target under {BATCH_TARGET_S:.0f} s: **{'met' if batch_ok else 'missed'}**); the naive loop would take
about {batch['naive_extrapolated_s'] / 3600:.1f} h. Note: {batch['note']}.

## Audit log against the load generator

| audit rows, bank {BANK}, http_status 200 (added during the load runs) | 200 answers counted by the generator (incl. its warm-up) | equal |
| --- | --- | --- |
| {audit['audit_200']:,} | {audit['client_200']:,} | {'yes' if audit['equal'] else '**no**'} |

Reading: {'every 200 answer has its audit row, and no row is without an answer.' if audit['equal'] else 'the counts differ: some answers have no audit row or some rows no answer; investigate.'}
"""
    out.write_text(text, encoding="utf-8")
    say(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="reuse (or build in) this COOPSCORE_HOME")
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--cooperatives", type=int, default=1_000)
    parser.add_argument("--rates", default="50,100,200,300", help="requests a second, comma-separated")
    parser.add_argument("--duration", type=float, default=25.0, help="seconds per rate")
    parser.add_argument("--bodies", type=int, default=2_000, help="distinct request bodies")
    parser.add_argument("--naive-requests", type=int, default=300)
    parser.add_argument("--batch-rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-api.md")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    m = machine()
    say(f"machine: {m}")
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "home"
        home.mkdir(parents=True, exist_ok=True)
        paths = build_home(home, args.members, args.cooperatives)
        bodies = bodies_for(paths, args.bodies)
        batch_bodies = bodies_for(paths, 1_000)
        ids = sorted({b["subject_id"] for b in bodies + batch_bodies})
        say(f"bank {BANK} and consents for {len(ids):,} members ...")
        token, audit = bank_and_consents(paths, ids)
        challenger = register_challenger(paths)
        say(f"challenger (shadowed): version {challenger}")
        headers = {"Authorization": f"Bearer {token}"}
        rate_limit = "100000/200000"
        setup = {"members": args.members, "cooperatives": args.cooperatives, "consented": len(ids),
                 "rate_limit": rate_limit}
        say("starting the server ...")
        proc, base = start_server(home, env={"COOPSCORE_RATE_LIMIT": rate_limit},
                                  log_path=home / "bench-server.log")
        loads, client_200 = [], 0
        try:
            say(f"server at {base}; warm-up ...")
            warm = load_test(base, bodies[:200], 20, 5, headers=headers)
            client_200 += warm["ok"] + warm["warmup_ok"]
            say(f"warm-up: {warm['ok']} ok, errors {warm['errors_by_status']}, p99 {fmt(warm['p99_ms'])} ms")
            for rate in rates:
                say(f"open-loop load at {rate:.0f} req/s for {args.duration:.0f} s ...")
                r = load_test(base, bodies, rate, args.duration, headers=headers)
                client_200 += r["ok"] + r["warmup_ok"]
                loads.append(r)
                say(f"  achieved {r['achieved_per_s']:.1f}/s, p50 {fmt(r['p50_ms'])} p95 {fmt(r['p95_ms'])} "
                    f"p99 {fmt(r['p99_ms'])} ms, errors {r['errors_by_status']}, send lag p99 "
                    f"{fmt(r['send_lag_p99_ms'])} ms")
            from records import Records
            time.sleep(2.0)  # the shadow thread finishes what is queued
            with Records(paths) as records:
                audit_200 = records.audit_count(bank_id=BANK, http_status=200) - audit["audit_200_before"]
                shadow_rows = len(records.shadow_rows("member", challenger))
            audit = {"audit_200": audit_200, "client_200": client_200, "equal": audit_200 == client_200}
            say(f"audit: {audit}; shadow rows {shadow_rows:,}")
            skipped = metric_sum(base, "coopscore_shadow_scores_total", 'outcome="skipped"')
            say("one batch call of 1,000 applications over HTTP (5 times) ...")
            batch_http = http_batch(base, headers, batch_bodies)
            say(f"  {batch_http}")
        finally:
            stop_server(proc)
        on = next((r for r in loads if r["target_rate_per_s"] == TARGET_RATE), None)
        off = None
        if on is not None:
            say(f"the same load at {TARGET_RATE:.0f} req/s with the shadow off (COOPSCORE_SHADOW=0) ...")
            proc, base = start_server(home, env={"COOPSCORE_RATE_LIMIT": rate_limit, "COOPSCORE_SHADOW": "0"},
                                      log_path=home / "bench-server-noshadow.log")
            try:
                load_test(base, bodies[:200], 20, 5, headers=headers)
                off = load_test(base, bodies, TARGET_RATE, args.duration, headers=headers)
                say(f"  shadow off: p50 {fmt(off['p50_ms'])} p99 {fmt(off['p99_ms'])} ms; shadow on: "
                    f"p50 {fmt(on['p50_ms'])} p99 {fmt(on['p99_ms'])} ms")
            finally:
                stop_server(proc)
        say(f"naive baseline on {args.naive_requests} of the same bodies ...")
        naive = naive_baseline(paths, bodies[:args.naive_requests])
        say(f"  naive p50 {fmt(naive['naive']['p50_ms'])} ms, scorer p50 {fmt(naive['scorer']['p50_ms'], '.2f')} ms")
        say(f"batch_throughput on {args.batch_rows:,} rows ...")
        batch = batch_throughput(paths, args.batch_rows, work_dir=Path(tmp))
        say(f"  {args.batch_rows:,} rows in {batch['score_file_s']:.1f} s, naive extrapolated "
            f"{batch['naive_extrapolated_s']:.0f} s")
    shadow = {"challenger": challenger, "rows": shadow_rows, "answers": audit["client_200"],
              "skipped": skipped, "on_row": shadow_row("on", on), "off_row": shadow_row("off", off)}
    write_report(args.out, m, setup, loads, naive, batch_http, batch, audit, shadow)


if __name__ == "__main__":
    main()
