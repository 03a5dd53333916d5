"""Model quality on generator seeds, as a bank's validator would read it: `make benchmark` runs it.

    python -m benchmarks.model_quality [--seeds 42,7] [--members 90000] [--cooperatives 4500]

For each seed: generate a pilot-size world (dirty; the pilot is 90,000 household businesses, and
at the demo's 20,000 members the first deployment dates train on a few dozen defaults, so the
figures measure the sample more than the model), ingest, train through the gates
(governance.pipeline.train_and_promote: as-deployed backtest, refit on every matured label), then
evaluate the new version: the pooled backtest AUC of the model, the WoE scorecard, the feature
ceiling and the true PD, calibration, and every gate's verdict on two bootstrap seeds (a verdict
that flips between them rests on noise). The gap from the model to the ceiling, and what the
features added for the risk the data carries (issue 12: member type, sector, harvest season, recent
shocks) lift the ceiling by, are paired differences on the same applications with their intervals. Writes the figures between the markers of
docs/evaluation.md: the only place the model's figures are written, so the docs cannot disagree.
"""
from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import mlflow

from benchmarks.machine import cpu_and_memory

# The features added so that the model sees the risk the data carries (what kind of business, its
# season, recent shocks): the ceiling without them is the ceiling before they existed.
CARRIED_RISK_PREFIXES = ("household_business", "sector_", "coop_sector_", "harvest_season",
                         "inflow_30d_vs_usual_month", "inflow_60d_vs_usual_month",
                         "weeks_without_inflow_13w", "customers_change_90d")
# Drivers of the true risk that the data shows only through noisy behaviour (evaluation.ceiling)
LATENT_DRIVERS = ("cooperative_health", "revenue_shock")

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "evaluation.md"
BEGIN, END = "<!-- figures: begin (written by benchmarks/model_quality.py) -->", "<!-- figures: end -->"


def say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def one_seed(seed: int, members: int, cooperatives: int, home: Path) -> list[dict]:
    """Every subject's figures for one generator seed, in a fresh home."""
    from coopscore.synthetic import generate
    from data_contracts.ingest import ingest
    from evaluation.champion import evaluate_model, summary
    from governance.pipeline import train_and_promote
    from governance.promotion import Gates, check_gates
    from settings import Paths, reset_settings
    from training import registry

    os.environ["COOPSCORE_HOME"] = str(home)
    os.environ.pop("COOPSCORE_TRACKING_URI", None)
    reset_settings()
    paths = Paths(home)
    started = time.perf_counter()
    generate(paths.raw, members=members, cooperatives=cooperatives, seed=seed, dirty=True)
    ingest(paths.raw, paths.clean, paths.quarantine)
    say(f"seed {seed}: data in {time.perf_counter() - started:.0f} s")
    out = []
    for subject in ("member", "cooperative"):
        t = time.perf_counter()
        run = train_and_promote(paths, subject, progress=lambda m: say(f"  {subject}: {m}"))
        registry.use_store(paths)
        model = mlflow.pyfunc.load_model(f"models:/{registry.model_name(subject)}/{run.version}")
        ev = evaluate_model(paths, subject, model, run.version, n_boot=500).evaluation
        verdicts: dict[str, list[bool]] = {}
        for boot_seed in (0, 1):
            for g in check_gates(ev, None, Gates(), n_boot=500, seed=boot_seed):
                verdicts.setdefault(g.name, []).append(g.passed)
        row = summary(ev)
        row.update(ceiling_reading(paths, subject, list(model.unwrap_python_model().features), ev.frame))
        row.update(seed=seed, subject=subject, seconds=time.perf_counter() - t, gates=verdicts)
        say(f"  {subject}: AUC {row['auc']:.3f}, ceiling {row['ceiling_auc']}, true {row['true_pd_auc']}")
        out.append(row)
    return out


def ceiling_reading(paths, subject: str, features: list[str], frame) -> dict:
    """Paired AUC differences on the pooled backtest applications (`frame`: application_id, label,
    pd): the ceiling minus the model (estimation), and the ceiling minus the ceiling on the features
    that existed before the carried-risk ones (their lift). Each ceiling is refitted per T on the
    same training rows as the backtest (evaluation.backtest.plan), so nothing differs but the features."""
    import numpy as np
    import pandas as pd

    from evaluation import backtest, metrics
    from evaluation.ceiling import DRIVER_PREFIX, fit_ceiling
    from evaluation.compare import paired_auc_difference
    from training.dataset import build_training_set, data_end

    truth_path = paths.clean / "true_pd.parquet"
    if not truth_path.exists():
        return {}
    rows = build_training_set(paths.clean, subject)
    rows = rows[rows["enough_history"]].reset_index(drop=True)
    truth = pd.read_parquet(truth_path)
    rows = rows.drop(columns=[c for c in truth.columns if c != "application_id" and c in rows])
    rows = rows.merge(truth, on="application_id", how="left", validate="many_to_one")
    before = [f for f in features if not f.startswith(CARRIED_RISK_PREFIXES)]
    folds = backtest.plan(rows, data_end(paths.clean))
    served = backtest.pooled_positions(folds, rows)
    # the most features could add: the ceiling given the latent drivers themselves (the generator's
    # terms for the cooperative's health and the application month's shock), as if a feature
    # recovered them exactly
    oracle = features + [f"{DRIVER_PREFIX}{d}" for d in LATENT_DRIVERS if f"{DRIVER_PREFIX}{d}" in rows]
    scored = {name: pd.Series(np.nan, index=rows.index) for name in ("now", "then", "oracle")}
    for k, fold in enumerate(folds):
        mine = [p for p in fold.test if served[int(p)] == k]
        train, test = rows.iloc[fold.train], rows.iloc[mine]
        for name, columns in (("now", features), ("then", before), ("oracle", oracle)):
            scored[name].iloc[mine] = fit_ceiling(train, columns).pd(test)
    by_id = pd.DataFrame({n: v.to_numpy() for n, v in scored.items()}, index=rows["application_id"])
    scored = by_id.loc[frame["application_id"]]
    if scored.isna().any().any():
        raise RuntimeError("the ceiling's pooled rows differ from the evaluation's: the backtest plan "
                           "and the evaluation disagree")
    y = frame["label"].to_numpy()
    gap = paired_auc_difference(y, scored["now"].to_numpy(), frame["pd"].to_numpy(), n_boot=500)
    lift = paired_auc_difference(y, scored["now"].to_numpy(), scored["then"].to_numpy(), n_boot=500)
    return {"estimation_gap": gap.value, "estimation_gap_ci": [gap.low, gap.high],
            "ceiling_before_auc": metrics.auc(y, scored["then"].to_numpy()),
            "ceiling_with_latent_drivers_auc": metrics.auc(y, scored["oracle"].to_numpy()),
            "ceiling_lift": lift.value, "ceiling_lift_ci": [lift.low, lift.high],
            "carried_risk_features": len(features) - len(before)}


def _ci(pair) -> str:
    return "-" if pair is None else f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def _num(value, fmt=".3f") -> str:
    return "-" if value is None else format(value, fmt)


def figures(rows: list[dict], machine: str, took: float, members: int, cooperatives: int) -> str:
    """The markdown written between the markers of docs/evaluation.md."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [BEGIN, "",
             f"Written by `make benchmark` (`python -m benchmarks.model_quality`) on {when}, in "
             f"{took / 60:.0f} min. Machine: {machine}.", "",
             "Pooled as-deployed backtest (each test application scored by the model deployed at "
             "the latest quarter start T before it, trained on labels matured by T); 95% bootstrap "
             f"intervals; {members:,} members and {cooperatives:,} cooperatives per seed, dirty data.", "",
             "| seed | model | dates T | test rows | defaults | model AUC | WoE scorecard AUC | "
             "feature ceiling AUC | true PD AUC | calibration in the large | calibration slope |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['subject']} | {', '.join(r['backtest_dates'])} | {r['n_test']:,} | "
            f"{r['n_defaults']:,} | {_num(r['auc'])} {_ci(r['auc_ci'])} | "
            f"{_num(r['scorecard_auc'])} {_ci(r.get('scorecard_auc_ci'))} | "
            f"{_num(r['ceiling_auc'])} {_ci(r.get('ceiling_auc_ci'))} | "
            f"{_num(r['true_pd_auc'])} {_ci(r.get('true_pd_auc_ci'))} | "
            f"{_num(r['calibration_in_the_large'], '+.4f')} {_ci(r.get('calibration_in_the_large_ci'))} | "
            f"{_num(r['calibration_slope'], '.2f')} {_ci(r['calibration_slope_ci'])} |")
    lines += ["", "Gate verdicts on two bootstrap seeds (0 and 1), the version judged alone "
              "(no champion): pass/FAIL, and whether the verdict flips between the seeds.", "",
              "| seed | model | gate | bootstrap seed 0 | bootstrap seed 1 | flips |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        for gate, passed in r["gates"].items():
            shown = ["pass" if p else "FAIL" for p in passed]
            lines.append(f"| {r['seed']} | {r['subject']} | {gate} | {shown[0]} | {shown[-1]} | "
                         f"{'**yes**' if len(set(passed)) > 1 else 'no'} |")
    lines += ["", "Reading, per model: information the features do not carry = true PD AUC - "
              "ceiling AUC; estimation = ceiling AUC - model AUC, and the ceiling's lift from the "
              "carried-risk features (member type, sector, harvest season, recent shocks) = ceiling "
              "AUC - the ceiling on the other features; both paired on the same applications, with "
              "95% paired-bootstrap intervals.", "",
              "The last column is the most better features could add: the ceiling given the "
              "cooperative's health and the application month's shock themselves (the generator's "
              "latent terms), as if a feature recovered them exactly.", "",
              "| seed | model | information | estimation | ceiling without the carried-risk features "
              "| their lift | ceiling given the latent drivers |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["ceiling_auc"] is None or r["true_pd_auc"] is None:
            continue
        lines.append(f"| {r['seed']} | {r['subject']} | {r['true_pd_auc'] - r['ceiling_auc']:+.3f} | "
                     f"{_num(r.get('estimation_gap'), '+.3f')} {_ci(r.get('estimation_gap_ci'))} | "
                     f"{_num(r.get('ceiling_before_auc'))} | "
                     f"{_num(r.get('ceiling_lift'), '+.3f')} {_ci(r.get('ceiling_lift_ci'))} | "
                     f"{_num(r.get('ceiling_with_latent_drivers_auc'))} |")
    lines += ["", END]
    return "\n".join(lines)


def write(doc: Path, block: str) -> None:
    """Replace the block between the markers (appended under a heading the first time)."""
    text = doc.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Figures\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="42,7", help="generator seeds, comma-separated")
    parser.add_argument("--members", type=int, default=90_000)
    parser.add_argument("--cooperatives", type=int, default=4_500)
    parser.add_argument("--doc", type=Path, default=DOC, help="the markdown file to write the figures to")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"coopscore-quality-{seed}-") as tmp:
            rows += one_seed(seed, args.members, args.cooperatives, Path(tmp))
    cpu, mem = cpu_and_memory()
    write(args.doc, figures(rows, f"{cpu}, {os.cpu_count()} cores, {mem}", time.perf_counter() - started,
                            args.members, args.cooperatives))
    say(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
