"""Load and throughput measurements for the scoring API and the batch scorer, with baselines.

Importable pieces (the `main()` that ties them together, with auth headers, lives elsewhere):
- load_test: an OPEN-LOOP load generator. Requests leave on a fixed schedule whatever the server
  does, and latency is measured from the scheduled send time, so a server that falls behind shows
  its queueing in the percentiles (a closed loop would slow down with the server and hide it).
- naive_baseline: the obvious in-process implementation (a pandas row per request, a new
  shap.TreeExplainer per request), to compare scoring.scorer against.
- batch_throughput: serving.batch.score_file on n_rows sampled applications, against the naive
  per-row loop timed on a sample and extrapolated.
"""
from __future__ import annotations

import asyncio
import gc
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import uvloop

from settings import Paths
from data_contracts import vocabulary as v
from features import engine
from features.snapshot import SNAPSHOT_FILE
from scoring import schemas
from serving.batch import score_file
from scoring.scorer import Scorer, top_reasons
from training import scaling


def _percentiles(ms: list[float]) -> dict[str, float | None]:
    if not ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "max_ms": float(a.max())}


# -- (a) open-loop load over HTTP ----------------------------------------------------------------
def load_test(base_url: str, bodies: list[dict], rate_per_s: float, duration_s: float,
              headers: dict | None = None, path: str = "/v1/scores",
              max_connections: int = 512, timeout_s: float = 30.0) -> dict:
    """POST bodies (cycled) to base_url+path at rate_per_s for duration_s, on a fixed schedule.

    Returns latency percentiles (ms, from each request's scheduled time), achieved throughput
    (completed answers per second of wall time), counts by status ('error:<Exception>' for no
    answer) and how late the generator itself sent (if `send_lag_p99_ms` is large the client, not
    the server, was the bottleneck and the run should be repeated on a quieter machine)."""
    if not bodies:
        raise ValueError("load_test needs at least one request body")
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError("rate_per_s and duration_s must be positive")
    # uvloop: the generator shares the 2 cores with the server, so it should spend as little as it can
    return uvloop.run(_load(base_url, bodies, rate_per_s, duration_s, headers or {}, path,
                            max_connections, timeout_s))


async def _load(base_url, bodies, rate, duration, headers, path, max_connections, timeout_s) -> dict:
    """HTTP/1.1 keep-alive over raw asyncio streams with pre-encoded requests: the generator
    spends tens of microseconds per request, so on a 2-core machine it leaves the cores to the
    server (an httpx client spent a large share of a core at 200 requests/s and fell behind)."""
    url = httpx.URL(base_url)
    host, port = url.host, url.port or 80
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    requests = []
    for body in bodies:
        payload = json.dumps(body).encode()
        requests.append((f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json"
                         f"\r\nContent-Length: {len(payload)}\r\n{extra}\r\n").encode() + payload)
    n = int(rate * duration)
    latencies: list[float] = []
    lags: list[float] = []
    statuses: Counter = Counter()
    idle: list = []
    opened = 0

    async def exchange(conn, request: bytes) -> int:
        reader, writer = conn
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        return status

    async def one(scheduled: float, request: bytes) -> None:
        nonlocal opened
        lags.append((time.perf_counter() - scheduled) * 1000)
        reused = bool(idle)
        if reused:
            conn = idle.pop()
        elif opened < max_connections:
            opened += 1
            conn = await asyncio.open_connection(host, port)
        else:
            statuses["error:no_free_connection"] += 1
            return
        for attempt in (1, 2):
            try:
                status = await asyncio.wait_for(exchange(conn, request), timeout_s)
                break
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                conn[1].close()
                if reused and attempt == 1 and isinstance(exc, (asyncio.IncompleteReadError, OSError)):
                    # the server closed this idle keep-alive connection: reconnect, as any client does
                    conn = await asyncio.open_connection(host, port)
                    continue
                opened -= 1
                statuses[f"error:{type(exc).__name__}"] += 1
                return
        statuses[status] += 1
        latencies.append((time.perf_counter() - scheduled) * 1000)
        idle.append(conn)

    for request in requests[:min(20, len(requests))]:  # warm up (not measured)
        await one(time.perf_counter(), request)
    latencies.clear(), lags.clear()
    warm = statuses.copy()
    statuses.clear()
    gc.collect()
    gc.freeze()  # the generator's own full collections must not show up as server latency
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, requests[i % len(requests)])))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for reader, writer in idle:
        writer.close()
    ok = statuses.get(200, 0)
    return {"target_rate_per_s": rate, "duration_s": duration, "sent": n,
            "completed": sum(statuses.values()), "ok": ok, "warmup_ok": warm.get(200, 0),
            "achieved_per_s": sum(v for k, v in statuses.items() if isinstance(k, int)) / elapsed,
            **_percentiles(latencies),
            "errors_by_status": {str(k): c for k, c in statuses.items() if k != 200},
            "send_lag_p99_ms": float(np.percentile(lags, 99)) if lags else None}


# -- (b) the obvious implementation, in process ---------------------------------------------------
class _Naive:
    """Per request: the snapshot row as a pandas DataFrame, the application features, a new
    shap.TreeExplainer and its shap_values, then PD, score, grade and reasons."""

    def __init__(self, paths: Paths, scorer: Scorer | None = None):
        self.scorer = scorer or Scorer(paths)
        self.snapshot = pd.read_parquet(paths.features / SNAPSHOT_FILE).set_index(
            ["entity_type", "entity_id"]).sort_index()

    def score(self, body: dict) -> dict | None:
        import shap

        subject, subject_id = body["subject_type"], body["subject_id"]
        loaded = self.scorer.models.get(subject)
        if loaded is None or (subject, subject_id) not in self.snapshot.index:
            return None
        model = loaded.model
        history = self.snapshot.loc[[(subject, subject_id)]].reset_index()
        app = pd.DataFrame({"spine_id": history["spine_id"],
                            "requested_amount_vnd": [body["application"]["amount_vnd"]],
                            "term_months": [body["application"]["term_months"]]})
        row = engine.application_features(history, app)
        x = row[model.features]
        explainer = shap.TreeExplainer(model.booster)
        values = explainer.shap_values(x)
        values = values[-1] if isinstance(values, list) else values
        expected = explainer.expected_value
        expected = float(np.ravel(expected)[-1])
        contributions = model.slope * np.asarray(values)[0]
        log_odds = model.slope * expected + model.intercept + float(contributions.sum())
        pd_value = float(scaling.pd_from_log_odds(log_odds))
        return {"pd": pd_value, "score": round(float(scaling.score_from_log_odds(log_odds)), 1),
                "grade": str(scaling.grade_from_pd(pd_value)),
                "reasons": top_reasons(model.features, contributions, x.iloc[0])}


def naive_baseline(paths: Paths, bodies: list[dict], scorer: Scorer | None = None) -> dict:
    """Per-request latency (ms) of the naive implementation on `bodies`, and of scoring.scorer on
    the same bodies for comparison. Bodies it cannot score (unknown id, no model) are counted."""
    import warnings

    naive = _Naive(paths, scorer)
    for body in bodies[:5]:  # imports and first-call costs are not per-request costs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            naive.score(body)
    naive_ms, skipped = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for body in bodies:
            t = time.perf_counter()
            if naive.score(body) is None:
                skipped += 1
                continue
            naive_ms.append((time.perf_counter() - t) * 1000)
    fast_ms = []
    for body in bodies:
        request = schemas.ScoreRequest(**body)
        t = time.perf_counter()
        try:
            naive.scorer.score(request)
        except Exception:  # noqa: BLE001 - errors are timed too, as the API would answer them
            pass
        fast_ms.append((time.perf_counter() - t) * 1000)
    return {"requests": len(bodies), "naive_skipped": skipped,
            "naive": _percentiles(naive_ms), "scorer": _percentiles(fast_ms)}


# -- (c) batch throughput ------------------------------------------------------------------------
def sample_applications(paths: Paths, n_rows: int, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """n_rows member applications with ids sampled from the snapshot (with replacement when the
    snapshot has fewer members than n_rows), amounts within each member's Decree 156 limit."""
    snap = pd.read_parquet(paths.features / SNAPSHOT_FILE, columns=["entity_type", "entity_id"])
    ids = snap.loc[snap.entity_type == "member", "entity_id"].to_numpy()
    if len(ids) == 0:
        raise ValueError(f"no members in the snapshot under {paths.features}")
    rng = np.random.default_rng(seed)
    replace = len(ids) < n_rows
    chosen = rng.choice(ids, size=n_rows, replace=replace)
    members = pd.read_parquet(paths.clean / "members.parquet", columns=["member_id", "member_type"])
    limit = pd.Series(chosen).map(dict(zip(members.member_id, members.member_type))).map(
        v.UNSECURED_LIMIT_VND).fillna(v.UNSECURED_LIMIT_VND["household"]).to_numpy()
    amount = (rng.uniform(0.02, 1.0, n_rows) * limit // 1_000_000 * 1_000_000).astype(np.int64)
    frame = pd.DataFrame({"subject_type": "member", "subject_id": chosen,
                          "amount_vnd": np.maximum(amount, 1_000_000),
                          "term_months": rng.integers(3, 61, n_rows),
                          "purpose": rng.choice(v.LOAN_PURPOSES, n_rows)})
    note = {"distinct_members_in_snapshot": int(len(ids)), "sampled_with_replacement": bool(replace),
            "note": (f"the snapshot has {len(ids):,} members, fewer than {n_rows:,} rows: ids were "
                     "sampled with replacement, so members repeat" if replace else
                     "ids sampled without replacement")}
    return frame, note


def batch_throughput(paths: Paths, n_rows: int, naive_sample: int = 500, seed: int = 0,
                     work_dir: Path | None = None, scorer: Scorer | None = None) -> dict:
    """Time score_file on n_rows sampled applications (Parquet in, Parquet out), and the naive
    per-row loop on `naive_sample` rows, extrapolated to n_rows."""
    scorer = scorer or Scorer(paths)
    frame, note = sample_applications(paths, n_rows, seed)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        src, dst = Path(tmp) / "applications.parquet", Path(tmp) / "scores.parquet"
        frame.to_parquet(src, index=False)
        t = time.perf_counter()
        report = score_file(paths, src, dst, scorer=scorer)
        seconds = time.perf_counter() - t
    bodies = [{"subject_type": r.subject_type, "subject_id": r.subject_id,
               "application": {"amount_vnd": int(r.amount_vnd), "term_months": int(r.term_months),
                               "purpose": r.purpose}}
              for r in frame.head(naive_sample).itertuples()]
    naive = naive_baseline(paths, bodies, scorer)
    per_row_s = (naive["naive"]["mean_ms"] or float("nan")) / 1000
    return {"rows": n_rows, **note, "score_file_s": seconds,
            "score_file_rows_per_s": n_rows / seconds, "scored": report.scored,
            "insufficient_history": report.insufficient_history, "rejected": report.rejected,
            "naive_sample_rows": len(bodies) - naive["naive_skipped"],
            "naive_per_row_ms": per_row_s * 1000,
            "naive_extrapolated_s": per_row_s * n_rows,
            "speedup": per_row_s * n_rows / seconds}
