"""Proof of the monitor on synthetic data: a shift injected from a known month is alerted on within
two months, and the performance estimated from the PDs tracks the realised one within its interval.

For each shift (coopscore.shifts) a data set is generated with the shift from SHIFT_MONTH, the
champion is trained and promoted on the platform as it was at CUT (every table cut before that date,
so its training population is the labels matured by then, long before the shift), and the monitor
then runs on the whole data as of its end (every month's labels matured: the realised AUC of every
month is known and can be compared with what was estimated before it was).

    python -m benchmarks.monitoring            # writes docs/monitoring.md (make benchmark-monitoring)
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from benchmarks.machine import cpu_and_memory
from coopscore.shifts import Shift
from settings import Paths, reset_settings

START = date(2019, 1, 1)  # before the generator's own e-invoice law dates (2025-06, 2026-01)
MONTHS = 72
CUT = date(2023, 1, 1)  # the champion is trained on the platform as it was then
SHIFT_MONTH = date(2023, 1, 1)
TIME_COLUMNS = {"transactions": "ts", "e_invoices": "issued_at", "loan_applications": "application_date",
                "loans": "disbursal_date", "repayments": "month", "members": "join_date",
                "cooperatives": "founding_date"}
DOC = Path(__file__).resolve().parents[1] / "docs" / "monitoring.md"
# what each shift moves, so an alert can be told to be about it (alert targets: features, the score,
# the mean PD, early delinquency)
SHIFT_TARGETS = {
    "e_invoice_law": {"einvoice_share_365d", "cash_share_365d"},
    "cooperative_wave": {"new_entrant_share", "tenure_years", "active_months_12m", "revenue_change_vs_last_year_90d", "prior_loans",
                         "repayment_on_time_rate", "worst_days_past_due", "inflow_count_365d",
                         "inflow_sum_365d", "score", "mean_pd"},
    "province_shock": {"inflow_30d_vs_usual_month", "inflow_60d_vs_usual_month", "revenue_trend_12m",
                       "revenue_change_vs_last_year_90d", "weeks_without_inflow_13w", "inflow_sum_30d",
                       "inflow_sum_90d", "inflow_count_30d", "inflow_count_90d", "coop_revenue_trend_12m",
                       "coop_revenue_12m", "score", "mean_pd", "dpd30_mob3"},
}


def platform_as_of(clean_dir: Path, out_dir: Path, cut: date) -> None:
    """The accepted tables as the platform held them on `cut`: every row dated before it (the truth
    table, for evaluation only, is copied whole)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    for path in Path(clean_dir).glob("*.parquet"):
        column = TIME_COLUMNS.get(path.stem)
        target = out_dir / path.name
        if column is None:
            shutil.copy(path, target)
            continue
        con.execute(f"COPY (SELECT * FROM read_parquet('{path}') WHERE {column} < DATE '{cut}') "
                    f"TO '{target}' (FORMAT PARQUET)")
    con.close()


def proof_home(home: Path, members: int, seed: int, shift: Shift | None, cut: date = CUT,
               start: date = START, months: int = MONTHS, gated: bool = True) -> Paths:
    """generate (with the shift) -> ingest -> the platform as of `cut` -> snapshot -> train and
    promote the member model on it -> the whole data back in place for the monitor.

    `gated=False` (the tests: minutes less on a shared machine) trains without the as-deployed
    backtest and aliases the version champion directly, without the promotion gates."""
    from coopscore.synthetic import generate
    from data_contracts.ingest import ingest
    from features.snapshot import build_snapshot
    from governance.pipeline import train_and_promote
    from governance.promotion import promote

    paths = Paths(Path(home))
    os.environ["COOPSCORE_HOME"] = str(home)
    os.environ.pop("COOPSCORE_TRACKING_URI", None)
    reset_settings()
    generate(paths.raw, members=members, seed=seed, start=start, months=months, shift=shift)
    full = paths.home / "data" / "full"
    ingest(paths.raw, full, paths.quarantine)
    platform_as_of(full, paths.clean, cut)
    build_snapshot(paths.clean, paths.features)
    if gated:
        result = train_and_promote(paths, "member", n_boot=100)
        if not result.promoted:
            promote(paths, "member", result.version,
                    override="monitoring proof: a synthetic champion trained before the shift")
    else:
        from mlflow import MlflowClient

        from training import registry
        from training.train import train_subject

        trained = train_subject(paths, "member")
        MlflowClient().set_registered_model_alias(registry.model_name("member"), registry.CHAMPION,
                                                  trained.version)
    shutil.rmtree(paths.clean)
    full.rename(paths.clean)
    return paths


@dataclass
class Proof:
    """What one shifted data set showed."""

    kind: str
    seed: int
    shift_month: str
    first_act: str | None  # the first month from the shift on with an `act` alert on what it moves
    act_before: list[str]  # months before the shift with an `act` alert on what it moves
    other_act_before: list[str]  # months before the shift with an `act` alert on anything else
    first_alerts: list[str]  # the messages of the first alerting month
    covered: int  # months whose realised AUC lies in its estimate's interval
    compared: int  # months with a realised AUC
    monthly: pd.DataFrame
    pooled: dict
    seconds_build: float
    seconds_monitor: float

    @property
    def months_to_alert(self) -> int | None:
        if self.first_act is None:
            return None
        a, s = pd.Period(self.first_act, "M"), pd.Period(self.shift_month, "M")
        return (a - s).n


def prove(home: Path, kind: str, members: int, seed: int, shift_month: date = SHIFT_MONTH,
          log: bool = True) -> Proof:
    from scoring.monitor_run import monitor

    started = time.perf_counter()
    paths = proof_home(home, members, seed, Shift(kind, shift_month))
    built = time.perf_counter() - started
    result = monitor(paths, "member", log=log)
    return summarise(kind, seed, shift_month, result, built)


def summarise(kind: str, seed: int, shift_month: date, result, built: float) -> Proof:
    shift = f"{shift_month:%Y-%m}"
    alerts = result.report.alerts
    act = alerts[alerts["level"] == "act"]
    moved = act["target"].isin(SHIFT_TARGETS[kind])
    after = sorted(m for m in act[moved]["month"].unique() if m >= shift)
    before = sorted(m for m in act[moved]["month"].unique() if m < shift)
    other = sorted(m for m in act[~moved]["month"].unique() if m < shift)
    first = after[0] if after else None
    messages = act[moved & (act["month"] == first)]["message"].tolist() if first else []
    monthly = result.report.monthly
    has = monthly["realised_auc"].notna()
    inside = ((monthly["realised_auc"] >= monthly["expected_auc_funded_low"])
              & (monthly["realised_auc"] <= monthly["expected_auc_funded_high"]))
    return Proof(kind, seed, shift, first, before, other, messages, int((inside & has).sum()),
                 int(has.sum()), monthly, result.report.pooled, built, result.seconds)


def _table(proof: Proof) -> str:
    lines = ["| month | scored | PSI score | largest feature PSI | expected AUC [95%] | realised AUC [95%] "
             "| expected default rate | realised default rate | 30+ DPD by 3 MOB | new entrants |",
             "| --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in proof.monthly.itertuples():
        mark = " (shift)" if r.month == proof.shift_month else ""
        lines.append(
            f"| {r.month}{mark} | {r.n_scored} | {r.psi_score:.3f} | {r.psi_max_feature:.3f} "
            f"({r.psi_max_feature_name}) | {r.expected_auc_funded:.3f} [{r.expected_auc_funded_low:.3f}, "
            f"{r.expected_auc_funded_high:.3f}] | {r.realised_auc:.3f} [{r.realised_auc_low:.3f}, "
            f"{r.realised_auc_high:.3f}] | {r.expected_default_rate:.2%} | {r.realised_default_rate:.2%} "
            f"| {r.dpd30_mob3:.2%} | {r.new_entrant_share:.1%} |")
    return "\n".join(lines)


def _months_before(proof: Proof) -> int:
    return int((proof.monthly["month"] < proof.shift_month).sum())


READING = "## What this run shows"


def write_doc(proofs: list[Proof], members: int, seconds: float) -> None:
    reading = _kept_reading()
    cpu, memory = cpu_and_memory()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = ["| shift | seed | shift month | first `act` alert on what it moves | months to alert | such "
            "alerts before the shift | months before the shift with other `act` alerts | monthly realised "
            "AUC inside the estimate's 95% interval | pooled AUC: estimated [95%] / realised [95%] | "
            "build (s) | monitor (s) |",
            "| --- | ---: | --- | --- | ---: | --- | --- | ---: | --- | ---: | ---: |"]
    for p in proofs:
        q = p.pooled
        pooled = (f"{q['expected_auc']:.3f} [{q['expected_auc_low']:.3f}, {q['expected_auc_high']:.3f}] / "
                  f"{q['realised_auc']:.3f} [{q['realised_auc_low']:.3f}, {q['realised_auc_high']:.3f}] "
                  f"({q['n_labelled']:.0f} loans, {q['defaults']:.0f} defaults)"
                  if "expected_auc" in q else "-")
        rows.append(f"| {p.kind} | {p.seed} | {p.shift_month} | {p.first_act or 'none'} | "
                    f"{p.months_to_alert if p.months_to_alert is not None else '-'} | "
                    f"{', '.join(p.act_before) or 'none'} | {len(p.other_act_before)} of "
                    f"{_months_before(p)} | {p.covered} of {p.compared} | {pooled} | "
                    f"{p.seconds_build:.0f} | {p.seconds_monitor:.0f} |")
    details = []
    for p in proofs:
        details += [f"### {p.kind}, seed {p.seed}", "", "First alerts:", "",
                    *[f"- {msg}" for msg in p.first_alerts[:8]], "", _table(p), ""]
    text = f"""# Monitoring, month by month

`coopscore monitor [--month YYYY-MM] [--subject member]` scores every application through the
champion as of its own date (scoring/monitor_run.py: features.engine's point-in-time history row,
`Scorer.decide`), and for each month after the champion's training population computes
(evaluation/monitoring.py): the score and grade distribution, the PSI of the score and of every
model feature against the training population, the early-delinquency leading labels (30+ days past
due by 3 and by 6 months on book), the AUC and default rate expected from the calibrated PDs before
any label arrives (confidence-based performance estimation: outcomes drawn from the PDs 1,000
times), the realised AUC and default rate once the month's 12-month labels have all matured, vintage
curves, the reason codes' frequencies, and alerts from one configuration (evaluation/alerts.py,
`AlertConfig`). Each month is stored as an MLflow run (experiment `coopscore-monitoring-<subject>`)
and as rows of the Parquet tables under `<home>/monitoring/`; the fund console draws them at
`/app/console/monitoring`.

## Reading the alerts

A PSI alert needs two things: the PSI above its band (watch above 0.1, act above 0.25, the
conventional bands of evaluation/stability.py) and above what sampling alone gives at the month's
size (the 99.9% quantile of chi-square(9) x (1/n + 1/m): about 0.19 for a month of 150 applications
against 3,000). Without the second condition a pilot-sized month alerts on noise. The other alerts:
the mean PD moving by 25% (watch) or 50% (act) from the training population's; 30+ days past due
by 3 months on book at 1.5 (watch) or 2 (act) times the training population's rate; the realised AUC
below its estimate's interval (act); the realised default rate outside its estimate's interval
(watch); a reason code's share as first reason moving by 15 (watch) or 25 (act) points; the share
of new entrants (applicants on the platform for under 1.5 years, by the `tenure_years` feature)
moving by 10 (watch) or 20 (act) points from the training population's, with the month's 95%
interval excluding it: a wave of newcomers changes who applies before it moves any feature's
distribution over everyone.

Why not NannyML for the estimate: nannyml 0.13.1 requires lightgbm < 4.6 (uv.lock pins 4.7.0) and
brings FLAML, plotly < 6, cloud-storage clients and a telemetry client; the estimate is a few lines
of numpy on the PDs the scorer returns, exact in distribution for a calibrated model.

## One run

{now}; {cpu}, {os.cpu_count()} cores, {memory}.
Each data set: {members:,} members over {MONTHS} months from {START:%Y-%m}; the champion trained on
the platform as of {CUT} (its training population: the applications whose label had matured by
then); the shift from {SHIFT_MONTH:%Y-%m}; the monitor as of the data's end (every month's label
matured). Total {seconds:.0f} s. Run: `python -m benchmarks.monitoring` (make benchmark-monitoring).

{chr(10).join(rows)}

"Months to alert": 0 is the shift's own month, 1 the next. The realised AUC is compared with the
AUC the PDs of the same funded applications promised (the interval of the estimate is where the
realised AUC falls 95% of the time if the PDs are calibrated).

{chr(10).join(details)}
{reading}## How it scales

The scoring is the service's columnar path (one LightGBM call for all applications); the history
rows are features.engine's SQL, the part that runs on Spark nationwide. The monitor's own work is a
PSI per feature and month and 1,000 outcome draws per month (vectorised: a month of 100,000
applications is drawn in chunks of 2 million cells). The Parquet tables append by month.
"""
    DOC.write_text(text)


def _kept_reading() -> str:
    """The hand-written reading of the last run ("## What this run shows" up to "## How it scales"),
    kept across runs: figures are the benchmark's, their reading a person's (re-read it after a run)."""
    if not DOC.exists():
        return ""
    text = DOC.read_text()
    start, end = text.find(READING), text.find("## How it scales")
    return text[start:end] if 0 <= start < end else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=15_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--untuned-seed", type=int, default=29)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    proofs = []
    plan = [("e_invoice_law", args.seed), ("cooperative_wave", args.seed),
            ("province_shock", args.seed), ("e_invoice_law", args.untuned_seed)]
    for kind, seed in plan:
        with tempfile.TemporaryDirectory(prefix="coopscore-monitoring-") as tmp:
            proof = prove(Path(tmp), kind, args.members, seed)
        print(f"{kind} seed {seed}: first act alert {proof.first_act} (shift {proof.shift_month}), "
              f"act before: {proof.act_before}, AUC inside {proof.covered}/{proof.compared}", flush=True)
        proofs.append(proof)
    write_doc(proofs, args.members, time.perf_counter() - started)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
