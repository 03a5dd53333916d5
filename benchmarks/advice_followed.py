"""Does the advice hold when followed? One command: `make benchmark-advice`.

    python -m benchmarks.advice_followed [--home DIR] [--members 20000] [--cooperatives 1000]
                                         [--seed 2027] [--sample 300] [--no-write]

Builds (or reuses) a generated home (demo size, seed 2027: generate -> ingest -> snapshot -> train
the member model, as benchmarks/api_bench.py does) and measures two things.

1. Shown against real gains. For a sample of ranked members with an action on offer, the member
   page's own call (`ranking.advice.advise`) gives the top action and its gain, and its latency.
   Then the action is carried out INDEPENDENTLY of the advice code's engine run: the changed rows of
   every sampled member are written into a copy of the RAW data, the copy is re-ingested
   (data_contracts.ingest), the snapshot rebuilt (features.snapshot.build_snapshot) and the sampled
   members re-scored by the same champion. Goal: |shown - real| <= 2 points for 95% of the members,
   and nobody losing points.

2. Calibration when everyone follows. For every member loan application with a true PD (the
   generator records it), the features as of the application date, and again after the applicant
   follows one lever (each lever on its own, every applicant it applies to). The true PD does not
   move (no lever is in the generator's true-PD formula); the model's PD does. Calibration in the
   large = mean predicted PD - mean true PD, with a bootstrap 95% interval, before and after. An
   evidence lever whose mass adoption puts calibration in the large outside the promotion gate's
   bound (governance.promotion.Gates.max_abs_calibration_in_the_large, the same rule as the gate:
   the point value against the bound) is SUSPENDED: the verdicts are written to
   ranking/lever_calibration.json, which ranking.advice reads (a suspended lever is not offered).
   A risk lever (REPAY_ON_TIME) is measured too but not suspended by this test: repaying on time is
   the risk itself going down, which the generator's true PD does not model.

Prints a report (markdown) with the machine and the date.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.api_bench import build_home, machine, say
from settings import Paths

logging.getLogger("mlflow").setLevel(logging.WARNING)
AGREEMENT_POINTS = 2.0
AGREEMENT_SHARE = 0.95
N_BOOT = 1000


# -- 1. shown against real ----------------------------------------------------------------------------
def shown_gains(scorer, paths: Paths, sample: int, seed: int,
                keep: Path | None = None) -> tuple[pd.DataFrame, dict]:
    """The member page's advice for `sample` random ranked members with an action on offer:
    member_id, code, kind, score_now, score_after, gain (shown), page_ms; plus the changes.
    `keep`: a Parquet file the frame is written to, and read from when it exists."""
    from ranking import advice, follow
    rng = np.random.default_rng(seed)
    matrix = scorer.matrix["member"]
    ids = scorer.ids["member"].to_numpy()[scorer.enough_history(matrix)]
    rows, changes = [], {}
    if keep is not None and keep.exists():
        rows = pd.read_parquet(keep).to_dict("records")
        ids = []
    for member_id in rng.permutation(ids):
        t = time.perf_counter()
        actions = advice.advise(scorer, member_id)
        ms = (time.perf_counter() - t) * 1000
        if not actions:
            continue
        top = actions[0]
        rows.append({"member_id": member_id, "code": top["code"], "kind": top["kind"],
                     "score_now": top["score_now"], "score_after": top["score_after"],
                     "gain": top["gain"], "page_ms": ms})
        if len(rows) >= sample:
            break
    frame = pd.DataFrame(rows)
    if keep is not None:
        frame.to_parquet(keep, index=False)
    # the raw rows of each member's top action (the same action functions, on the clean rows)
    con = duckdb.connect()
    bases = follow.parquet_bases(paths.clean)
    follow.overlay(con, bases, None)
    now = pd.DataFrame(matrix[[scorer.row["member"][m] for m in frame["member_id"]]],
                       columns=scorer.columns, index=pd.Index(frame["member_id"], name="entity_id"))
    as_of = pd.Series(pd.Timestamp(scorer.snapshot_date), index=now.index)
    history = follow.load_history(con, as_of, now)
    for code, part in frame.groupby("code"):
        change = advice.LEVERS_BY_CODE[code].action(history)
        changes[code] = change.only(part["member_id"])
    return frame, changes


def write_changed_raw(raw: Path, out: Path, changes: dict) -> dict[str, int]:
    """A copy of the raw data with the changes applied: rows removed by key, rows added. A table
    delivered as a folder of Parquet parts (generate --stream) is copied as it is when unchanged,
    else written as one file."""
    from data_contracts.contracts import CONTRACTS
    from data_contracts.ingest import parquet_parts
    from ranking.follow import KEYS
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    folders = [p for p in raw.iterdir() if p.is_dir() and p.name in CONTRACTS]
    for path in sorted(raw.glob("*.parquet")) + sorted(folders):
        table = path.stem
        parts = [c for c in changes.values() if table in c.remove or table in c.add]
        if path.is_dir():
            if not parts:
                shutil.copytree(path, out / path.name)
                continue
            # the rows of the parts, without the partition values their folder names carry
            original = pa.concat_tables([pq.ParquetFile(p).read() for p in parquet_parts(path)])
            path = path.with_name(f"{table}.parquet")
        else:
            original = pq.read_table(path)
        contract = CONTRACTS.get(table)
        # a home generated before a column was added to the contracts as optional ("a feed may
        # leave it out; it is then empty"): the copy carries it, empty, as the contract says
        absent = [f for f in (contract.fields if contract else []) if getattr(f, "optional", False)
                  and f.name not in original.schema.names]
        for f in absent:
            original = original.append_column(f.name, pa.nulls(len(original), pa.string()
                                                               if f.dtype == "str" else pa.float64()))
        if not parts:
            if absent:
                pq.write_table(original, out / path.name)
            else:
                shutil.copy(path, out / path.name)
            continue
        frame = original.to_pandas()
        removed = pd.concat([c.remove[table] for c in parts if table in c.remove] or
                            [pd.DataFrame(columns=list(KEYS[table]))], ignore_index=True)
        if len(removed):
            keys = list(KEYS[table])
            gone = removed[keys].drop_duplicates().assign(_gone=True)
            frame = frame.merge(gone, on=keys, how="left")
            frame = frame[frame["_gone"].isna()].drop(columns="_gone")
        added = [c.add[table].reindex(columns=original.schema.names) for c in parts if table in c.add]
        if added:
            frame = pd.concat([frame, *added], ignore_index=True)
        counts[table] = int(len(removed)), int(sum(len(a) for a in added))
        pq.write_table(pa.Table.from_pandas(frame, schema=original.schema, preserve_index=False),
                       out / path.name)
    return counts


def real_gains(scorer, paths: Paths, frame: pd.DataFrame, changes: dict, work: Path) -> pd.DataFrame:
    """Re-run the pipeline on the changed raw copy (ingest, snapshot) and score the sampled
    members with the same champion: real score_after and gain."""
    from data_contracts.ingest import ingest
    from features.snapshot import build_snapshot
    from ranking import advice, rank
    changed = Paths(work)
    t = time.perf_counter()
    counts = write_changed_raw(paths.raw, changed.raw, changes)
    say(f"changed raw copy ({counts}): {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    ingest(changed.raw, changed.clean, changed.quarantine)
    build_snapshot(changed.clean, changed.features, as_of=scorer.snapshot_date)
    say(f"re-ingest and snapshot: {time.perf_counter() - t:.1f} s")
    snap = pd.read_parquet(changed.features / "snapshot.parquet")
    snap = snap[snap["entity_type"] == "member"].set_index("entity_id")
    new = snap.loc[frame["member_id"], scorer.columns].to_numpy(dtype=np.float64)
    old = scorer.matrix["member"][[scorer.row["member"][m] for m in frame["member_id"]]]
    amount, term = rank.REFERENCE_AMOUNT_VND, rank.REFERENCE_TERM_MONTHS
    out = frame.copy()
    out["real_now"] = advice.score_history(scorer, old, amount, term)
    out["real_after"] = advice.score_history(scorer, new, amount, term)
    out["real_gain"] = out["real_after"] - out["real_now"]
    out["diff"] = out["gain"] - out["real_gain"]
    return out


# -- 2. calibration when everyone follows ------------------------------------------------------------
def _pd(scorer, history: np.ndarray, amount: np.ndarray, term: np.ndarray) -> np.ndarray:
    plan = scorer.plans["member"]
    x = plan.matrix(history, amount, term)
    margin = plan.model.booster.predict(x, raw_score=True)
    return 1.0 / (1.0 + np.exp(-(plan.model.slope * margin + plan.model.intercept)))


def _interval(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    n = len(values)
    boots = np.array([values[rng.integers(0, n, n)].mean() for _ in range(N_BOOT)])
    return float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def calibration_drift(scorer, paths: Paths) -> dict:
    """Calibration in the large of the champion on every member application with a true PD,
    as it is and after each lever is followed by every applicant it applies to."""
    from features import engine
    from governance.promotion import Gates
    from ranking import advice, follow
    apps = pd.read_parquet(paths.clean / "loan_applications.parquet")
    truth = pd.read_parquet(paths.clean / "true_pd.parquet", columns=["application_id", "true_pd"])
    apps = apps[apps["entity_type"] == "member"].merge(truth, on="application_id")
    apps = apps.sort_values(["entity_id", "application_date", "application_id"]).reset_index(drop=True)
    apps["round"] = apps.groupby("entity_id").cumcount()  # one application of a member per run
    con = duckdb.connect()
    bases = follow.parquet_bases(paths.clean)
    follow.overlay(con, bases, None)
    t = time.perf_counter()
    spine = pd.DataFrame({"spine_id": apps["application_id"], "entity_type": "member",
                          "entity_id": apps["entity_id"],
                          "as_of": pd.to_datetime(apps["application_date"])})
    base = engine.history_features(con, spine).set_index("spine_id").loc[apps["application_id"]]
    say(f"features of {len(apps):,} applications: {time.perf_counter() - t:.1f} s")
    before = base[scorer.columns].to_numpy(dtype=np.float64)
    amount = apps["requested_amount_vnd"].to_numpy(dtype=float)
    term = apps["term_months"].to_numpy(dtype=float)
    truth_pd = apps["true_pd"].to_numpy()
    pd_before = _pd(scorer, before, amount, term)
    bound = Gates().max_abs_calibration_in_the_large
    record = {"applications": int(len(apps)), "gate_bound": bound,
              "citl_before": _estimate(pd_before - truth_pd), "levers": {}}
    for lever in advice.LEVERS:
        t = time.perf_counter()
        after = before.copy()
        followed = np.zeros(len(apps), dtype=bool)
        for r, part in apps.groupby("round"):
            idx = part.index.to_numpy()
            now = pd.DataFrame(before[idx], columns=scorer.columns,
                               index=pd.Index(part["entity_id"].to_numpy(), name="entity_id"))
            as_of = pd.Series(pd.to_datetime(part["application_date"]).to_numpy(), index=now.index)
            got = advice.follow_all(con, bases, as_of, now, levers=(lever,))[lever.code]
            if len(got):
                pos = pd.Series(idx, index=now.index).loc[got.index].to_numpy()
                after[pos] = got[scorer.columns].to_numpy(dtype=np.float64)
                followed[pos] = True
        pd_after = _pd(scorer, after, amount, term)
        citl = _estimate(pd_after - truth_pd)
        drift = _estimate(pd_after - pd_before)
        suspended = lever.kind == "evidence" and out_of_bounds(citl["value"], drift["value"], bound)
        record["levers"][lever.code] = {
            "kind": lever.kind, "followed": int(followed.sum()), "citl_after": citl,
            "drift": drift, "suspended": bool(suspended),
            "reason": (f"mass adoption moves the mean PD by {drift['value']:+.4f} (calibration in "
                       f"the large {citl['value']:+.4f} after): out of the gate's ±{bound}"
                       if suspended else "within the gate's bound" if lever.kind == "evidence" else
                       "a risk lever: the generator's true PD does not model it; not suspended")}
        say(f"{lever.code}: followed by {followed.sum():,}, CITL {citl['value']:+.4f} "
            f"[{citl['low']:+.4f}, {citl['high']:+.4f}], drift {drift['value']:+.4f} "
            f"({time.perf_counter() - t:.1f} s)")
    return record


def out_of_bounds(citl_after: float, drift: float, bound: float) -> bool:
    """The gate's rule (|calibration in the large| <= bound, on the point value), applied twice:
    to the measured model after mass adoption, and to a model calibrated exactly before it (a
    champion that passed the gate may sit anywhere inside the bound, so a shift larger than the
    bound can push a gate-passing model out whatever this synthetic model's own offset)."""
    return abs(citl_after) > bound or abs(drift) > bound


def _estimate(values: np.ndarray) -> dict:
    low, high = _interval(values)
    return {"value": float(values.mean()), "low": low, "high": high}


# -- the report ------------------------------------------------------------------------------------
def summary(result: pd.DataFrame) -> dict:
    diff = result["diff"].abs()
    by_code = result.groupby("code").agg(members=("member_id", "size"), shown=("gain", "mean"),
                                         real=("real_gain", "mean"),
                                         mean_abs_diff=("diff", lambda d: d.abs().mean()),
                                         max_abs_diff=("diff", lambda d: d.abs().max()),
                                         lose=("real_gain", lambda g: int((g < 0).sum())))
    return {"members": int(len(result)),
            "within_2_points": float((diff <= AGREEMENT_POINTS).mean()),
            "mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()),
            "lose_points": int((result["real_gain"] < 0).sum()),
            "goal_met": bool((diff <= AGREEMENT_POINTS).mean() >= AGREEMENT_SHARE
                             and (result["real_gain"] >= 0).all()),
            "page_ms_p50": float(result["page_ms"].median()),
            "page_ms_p95": float(result["page_ms"].quantile(0.95)),
            "by_code": by_code.reset_index().to_dict("records")}


def report(setup: dict, gains: dict, calib: dict, batch: dict) -> str:
    rows = "\n".join(f"| {r['code']} | {r['members']} | {r['shown']:+.2f} | {r['real']:+.2f} | "
                     f"{r['mean_abs_diff']:.3f} | {r['max_abs_diff']:.3f} | {r['lose']} |"
                     for r in gains["by_code"])
    b = calib["citl_before"]
    lever_rows = "\n".join(
        f"| {code} | {r['kind']} | {r['followed']:,} | {r['citl_after']['value']:+.4f} "
        f"[{r['citl_after']['low']:+.4f}, {r['citl_after']['high']:+.4f}] | "
        f"{r['drift']['value']:+.4f} [{r['drift']['low']:+.4f}, {r['drift']['high']:+.4f}] | "
        f"{'SUSPENDED' if r['suspended'] else 'offered'} |" for code, r in calib["levers"].items())
    return f"""# Advice followed ({setup['date']})

Home: {setup['members']:,} members, {setup['cooperatives']:,} cooperatives, seed {setup['seed']};
machine {setup['machine']['cpu']} ({setup['machine']['cores']} cores), load before
{setup['machine']['load_before']}.

## Shown against real gains ({gains['members']} members, top action each)

Real = the action's rows written into a copy of the raw data, re-ingested, snapshot rebuilt,
re-scored by the same champion. Within ±{AGREEMENT_POINTS:g} points: {gains['within_2_points']:.1%}
(goal {AGREEMENT_SHARE:.0%}); mean |shown - real| {gains['mean_abs_diff']:.4f}, max
{gains['max_abs_diff']:.4f}; members losing points: {gains['lose_points']}. Goal met:
{'yes' if gains['goal_met'] else 'NO'}.

| top action | members | mean shown gain | mean real gain | mean abs diff | max abs diff | lose points |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

Member page advice (`advise`, live): p50 {gains['page_ms_p50']:.0f} ms, p95 {gains['page_ms_p95']:.0f} ms.
Ranking run advice (`advise_all`, every ranked member): {batch.get('advice_s', float('nan')):.1f} s for
{batch.get('members', 0):,} members ({batch.get('steps', '')}).

## Calibration when everyone follows ({calib['applications']:,} member applications with a true PD)

Calibration in the large (mean PD - mean true PD) as trained: {b['value']:+.4f} [{b['low']:+.4f},
{b['high']:+.4f}]; the gate's bound ±{calib['gate_bound']}.

| lever | kind | applications that follow | CITL after [95% CI] | drift (mean PD change) [95% CI] | verdict |
| --- | --- | --- | --- | --- | --- |
{lever_rows}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="reuse (or build in) this COOPSCORE_HOME")
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--cooperatives", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--no-write", action="store_true",
                        help="do not update ranking/lever_calibration.json")
    parser.add_argument("--no-calibration", action="store_true",
                        help="report the calibration recorded in ranking/lever_calibration.json "
                             "instead of measuring it again")
    parser.add_argument("--shown", type=Path,
                        help="keep the shown gains in this Parquet file (read it if it exists: "
                             "the member page's advice for 300 members takes minutes)")
    args = parser.parse_args()
    from ranking import advice, rank
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "home"
        home.mkdir(parents=True, exist_ok=True)
        paths = build_home(home, args.members, args.cooperatives, args.seed)
        setup = {"members": args.members, "cooperatives": args.cooperatives, "seed": args.seed,
                 "machine": machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
        scorer = rank.get_scorer(paths)

        if args.no_calibration:
            calib = advice.calibration_record()
        else:
            say("calibration when everyone follows each lever ...")
            calib = calibration_drift(scorer, paths)
            calib["measured"] = {"date": setup["date"], "members": args.members,
                                 "cooperatives": args.cooperatives, "seed": args.seed,
                                 "model_version": scorer.plans["member"].loaded.info.version,
                                 "command": "python -m benchmarks.advice_followed"}
            if not args.no_write:
                advice.CALIBRATION_FILE.write_text(json.dumps(calib, indent=2) + "\n",
                                                   encoding="utf-8")
                say(f"wrote {advice.CALIBRATION_FILE}")

        say(f"shown gains of {args.sample} members (the member page's advise) ...")
        frame, changes = shown_gains(scorer, paths, args.sample, seed=7, keep=args.shown)
        result = real_gains(scorer, paths, frame, changes, Path(tmp) / "changed")
        gains = summary(result)

        say("the ranking run's advice for every member ...")
        matrix = scorer.matrix["member"]
        ok = scorer.enough_history(matrix)
        steps: dict = {}
        t = time.perf_counter()
        advice.advise_all(scorer, paths.clean, scorer.ids["member"].to_numpy()[ok],
                          scorer.snapshot_date, matrix[ok], timings=steps)
        batch = {"advice_s": time.perf_counter() - t, "members": int(ok.sum()),
                 "steps": ", ".join(f"{k} {v:.1f} s" for k, v in steps.items())}
        print(report(setup, gains, calib, batch))
        worst = result.reindex(result["diff"].abs().sort_values(ascending=False).index).head(5)
        print("largest differences:\n" + worst.to_string(index=False))


if __name__ == "__main__":
    main()
