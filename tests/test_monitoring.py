"""Monitoring month by month (evaluation/monitoring.py, scoring/monitor_run.py, coopscore monitor).

The proof runs on a data set with a shift injected from a known month (coopscore.shifts): the
champion is trained on the platform as it was long before the shift (benchmarks.monitoring.proof_home,
the benchmark's own code), the monitor then runs over every month after its training population.
It must raise an `act` alert naming what the shift moved within two months of it, and the AUC it
estimated from the PDs before any label arrived must hold the realised AUC within its interval.
"""
from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from coopscore.shifts import Shift
from evaluation import monitoring
from evaluation.alerts import AlertConfig, psi_alert, psi_noise

pytestmark = pytest.mark.timeout(1500)  # the proof's data set: about 4 minutes on a quiet machine
PROOF_MEMBERS = 10_000
PROOF_SEED = 7
PROOF_KIND = "e_invoice_law"
# what the e-invoice law moves: the share of sales invoiced, and of cash
LAW_FEATURES = {"einvoice_share_365d", "cash_share_365d"}


def proof_home(tmp_path_factory) -> Path:
    """The shifted home, built once per session (the page test reuses it) and monitored once."""
    from benchmarks.monitoring import SHIFT_MONTH
    from benchmarks.monitoring import proof_home as build

    # COOPSCORE_TEST_MONITORING_HOME: a folder to build it in and keep for later runs (its MLflow
    # store names its artifacts by absolute path: a home cannot be copied elsewhere)
    kept = os.environ.get("COOPSCORE_TEST_MONITORING_HOME")
    home = Path(kept) if kept else tmp_path_factory.getbasetemp() / "monitoring-proof"
    if not (home / "built").exists():
        shutil.rmtree(home, ignore_errors=True)
        build(home, PROOF_MEMBERS, PROOF_SEED, Shift(PROOF_KIND, SHIFT_MONTH), gated=False)
        (home / "built").write_text("ok")
    return home


@pytest.fixture(scope="module")
def proof(tmp_path_factory):
    from scoring.monitor_run import monitor
    from settings import Paths, reset_settings

    home = proof_home(tmp_path_factory)
    os.environ["COOPSCORE_HOME"] = str(home)
    reset_settings()
    return Paths(home), monitor(Paths(home), "member", draws=500)


# -- the proof ---------------------------------------------------------------------------------------
def test_the_shift_is_alerted_within_two_months_naming_what_moved(proof):
    """The law is alerted on by name within two months. The generator's own formalisation trend
    (e-invoice share up every year) has already moved these features since the training years, so
    they alert before the law too: the law then moves them beyond anything seen before it."""
    from benchmarks.monitoring import SHIFT_MONTH

    _, result = proof
    shift = pd.Period(SHIFT_MONTH, "M")
    alerts = result.report.alerts
    law = alerts[(alerts["level"] == "act") & alerts["target"].isin(LAW_FEATURES)]
    after = sorted(m for m in law["month"].unique() if pd.Period(m, "M") >= shift)
    assert after, f"no act alert on {LAW_FEATURES} after the shift:\n{alerts.to_string()}"
    assert (pd.Period(after[0], "M") - shift).n <= 1, f"first alert {after[0]}, the shift was {shift}"
    message = law[law["month"] == after[0]]["message"].iloc[0]
    assert "PSI of feature" in message and "above 0.25" in message  # what moved and by how much
    psi = result.report.psi
    moved = psi[psi["column"].isin(LAW_FEATURES)].groupby("month")["psi"].max()
    months = moved.index.map(lambda m: pd.Period(m, "M"))
    before, settled = moved[months < shift], moved[months >= shift + 3]
    assert settled.max() > 1.5 * before.max(), (before.to_dict(), settled.to_dict())


def test_estimated_auc_tracks_the_realised_auc_within_its_interval(proof):
    _, result = proof
    m = result.report.monthly
    known = m[m["realised_auc"].notna()]
    assert len(known) >= 8, "the months with enough defaults to measure an AUC"
    inside = ((known["realised_auc"] >= known["expected_auc_funded_low"])
              & (known["realised_auc"] <= known["expected_auc_funded_high"]))
    assert inside.mean() >= 0.8, known[["month", "expected_auc_funded_low", "realised_auc",
                                        "expected_auc_funded_high"]].to_string()
    # pooled over the months (about a hundred defaults) the estimate is not optimistic: the
    # champion's PDs are too flat (calibration slope above 1 after training on few defaults), so
    # the PDs promise less ranking than they deliver
    pooled = result.report.pooled
    assert pooled["defaults"] >= 50
    assert pooled["realised_auc"] >= pooled["expected_auc_low"], pooled


def test_with_calibrated_pds_the_estimate_holds_the_realised_auc(proof):
    """The estimator itself, given PDs that are calibrated by construction (the generator's true
    PDs of the same monitored applications): the pooled realised AUC lies within its interval."""
    paths, result = proof
    from scoring.monitor_run import score_applications
    from scoring.scorer import Scorer

    scored = score_applications(Scorer(paths), paths.clean, "member")
    scored = scored[scored["month"].isin(result.months) & scored["default_12m"].notna()]
    truth = pd.read_parquet(paths.clean / "true_pd.parquet", columns=["application_id", "true_pd"])
    rows = scored.merge(truth, on="application_id", validate="one_to_one")
    assert len(rows) == len(scored)
    est = monitoring.expected_performance(rows["true_pd"].to_numpy(), draws=500)["auc"]
    realised = monitoring.metrics.auc(rows["default_12m"].to_numpy(), rows["true_pd"].to_numpy())
    assert est.low <= realised <= est.high, (est, realised)


def test_every_figure_of_a_month_is_there(proof):
    _, result = proof
    row = result.report.monthly.iloc[-1]
    for column in ("psi_score", "expected_auc", "expected_auc_low", "expected_auc_high",
                   "expected_default_rate", "realised_default_rate", "realised_default_rate_low",
                   "dpd30_mob3", "dpd30_mob6", "n_mob3", "score_p50"):
        assert np.isfinite(row[column]), column
    assert row["expected_auc_low"] <= row["expected_auc"] <= row["expected_auc_high"]
    grades = result.report.grades
    assert np.allclose(grades.groupby("month")["share"].sum(), 1.0)
    reasons = result.report.reasons
    assert (reasons["share_first"] <= reasons["share_any"] + 1e-12).all()
    vintages = result.report.vintages
    assert set(vintages["group_kind"]) == {"quarter", "grade"}
    for _, curve in vintages.groupby(["group_kind", "group"]):  # cumulative: never falls... much
        rates = curve.sort_values("mob")["cum_default_rate"].to_numpy()
        assert rates[-1] >= rates[0]


def test_stored_as_parquet_tables_and_one_mlflow_run_per_month(proof):
    from scoring.monitor_run import experiment_name, monitor, read_tables

    paths, result = proof
    tables = read_tables(paths)
    assert set(tables["monthly"]["month"]) == set(result.months)
    runs = mlflow.search_runs(experiment_names=[experiment_name("member")])
    assert set(runs["tags.month"]) == set(result.months)
    one = runs[runs["tags.month"] == result.months[0]].iloc[0]
    assert np.isclose(one["metrics.psi_score"], result.report.monthly.iloc[0]["psi_score"])
    files = {f.path for f in mlflow.MlflowClient().list_artifacts(one["run_id"], "monitoring")}
    assert {"monitoring/monthly.csv", "monitoring/psi.csv", "monitoring/alerts.json"} <= files
    # a month monitored again replaces its rows, the others stay
    again = monitor(paths, "member", month=result.months[-1], log=False, draws=200)
    assert again.months == [result.months[-1]]
    tables = read_tables(paths)
    assert (tables["monthly"]["month"] == result.months[-1]).sum() == 1
    assert len(tables["monthly"]) == len(result.months)


def test_scores_are_the_scorers_own_point_in_time(proof):
    """An application's monitored PD is what Scorer.score answers for it as of its date."""
    from scoring import schemas
    from scoring.monitor_run import score_applications
    from scoring.scorer import Scorer

    paths, _ = proof
    scorer = Scorer(paths)
    scored = score_applications(scorer, paths.clean, "member")
    apps = pd.read_parquet(paths.clean / "loan_applications.parquet").set_index("application_id")
    servable = scored[scored["as_of"].dt.date < scorer.snapshot_date]  # the service refuses later dates
    for row in servable.sample(3, random_state=1).itertuples():
        app = apps.loc[row.application_id]
        answer = scorer.score(schemas.ScoreRequest(
            subject_type="member", subject_id=row.entity_id, as_of_date=row.as_of.date(),
            application={"amount_vnd": int(app.requested_amount_vnd), "term_months": int(app.term_months),
                         "purpose": app.purpose}))
        assert answer.pd == pytest.approx(row.pd, rel=1e-9)
        assert [r.code for r in answer.reasons][:1] == [row.reason_1]


# -- units ------------------------------------------------------------------------------------------
def test_expected_auc_interval_covers_outcomes_drawn_from_calibrated_pds():
    rng = np.random.default_rng(3)
    p = 1 / (1 + np.exp(-(rng.normal(-3, 1, 400))))
    inside = 0
    for trial in range(60):
        y = (rng.random(p.size) < p).astype(float)
        if y.min() == y.max():
            continue
        est = monitoring.expected_performance(p, draws=400, seed=trial)["auc"]
        inside += est.low <= monitoring.metrics.auc(y, p) <= est.high
    assert inside >= 52  # ~95% of 60


def test_expected_auc_of_uninformative_pds_is_a_half():
    est = monitoring.expected_performance(np.full(500, 0.1), draws=300)["auc"]
    assert est.value == pytest.approx(0.5, abs=0.01)


def test_psi_alert_needs_band_noise_and_baseline():
    config = AlertConfig()
    noise = psi_noise(100, 2000, config)
    assert 0.2 < noise < 0.35  # a month of 100 applications: PSI 0.2 by chance is common
    assert psi_alert("2024-01", "x", 0.3, noise=0.1, baseline=0.0, n=2000, config=config).level == "act"
    assert psi_alert("2024-01", "x", 0.3, noise=0.31, baseline=0.0, n=100, config=config) is None
    assert psi_alert("2024-01", "x", 0.3, noise=0.1, baseline=0.4, n=100, config=config) is None
    assert psi_alert("2024-01", "x", 0.15, noise=0.1, baseline=0.0, n=2000, config=config).level == "watch"
    assert psi_alert("2024-01", "tenure_years", 0.9, 0.1, 0.0, 2000, config).level == "watch"


def test_outcomes_are_known_only_once_their_months_have_passed(tmp_path):
    pd.DataFrame({"loan_id": ["L1"], "application_id": ["A1"], "entity_type": ["member"],
                  "entity_id": ["M1"], "disbursal_date": [pd.Timestamp("2024-01-10")],
                  "principal_vnd": [10], "term_months": [12]}).to_parquet(tmp_path / "loans.parquet")
    months = pd.date_range("2024-01-31", periods=12, freq="ME")
    dpd = [0, 0, 35, 65, 95, 125, 155, 185, 215, 245, 275, 305]
    pd.DataFrame({"loan_id": "L1", "month": months, "days_past_due": dpd, "amount_due_vnd": 1,
                  "amount_paid_vnd": 0}).to_parquet(tmp_path / "repayments.parquet")
    apps = pd.DataFrame({"application_id": ["A1"], "as_of": [pd.Timestamp("2024-01-05")],
                         "default_12m": [1.0]})
    early = monitoring.outcomes(tmp_path, apps, pd.Timestamp("2024-03-15")).iloc[0]
    assert np.isnan(early["dpd30_mob3"]) and np.isnan(early["label"]) and np.isnan(early["default_mob"])
    half = monitoring.outcomes(tmp_path, apps, pd.Timestamp("2024-07-20")).iloc[0]
    assert half["dpd30_mob3"] == 1.0 and np.isnan(half["dpd30_mob6"])  # the July row is not there yet
    later = monitoring.outcomes(tmp_path, apps, pd.Timestamp("2024-08-05")).iloc[0]
    assert later["dpd30_mob3"] == 1.0 and later["dpd30_mob6"] == 1.0
    assert later["default_mob"] == 4 and np.isnan(later["label"])  # 95 DPD at the 4th month end
    done = monitoring.outcomes(tmp_path, apps, pd.Timestamp("2025-02-01")).iloc[0]
    assert done["label"] == 1.0


def test_shift_moves_the_data_only_from_its_month(tmp_path):
    from coopscore.synthetic import generate

    def einvoice_share(folder: Path) -> pd.Series:
        tx = pd.read_parquet(folder / "transactions.parquet", columns=["ts", "channel", "direction"])
        tx = tx[tx["direction"] == "inflow"]
        return (tx["channel"] == "e_invoice").groupby(tx["ts"].dt.to_period("M")).mean()

    month = date(2023, 6, 1)
    generate(tmp_path / "plain", members=400, seed=5, months=48)
    generate(tmp_path / "law", members=400, seed=5, months=48, shift=Shift("e_invoice_law", month))
    plain, law = einvoice_share(tmp_path / "plain"), einvoice_share(tmp_path / "law")
    start = pd.Period(month, "M")
    assert (law[law.index >= start] - plain[plain.index >= start]).mean() > 0.1
    assert abs((law[law.index < start] - plain[plain.index < start]).mean()) < 0.01


def test_shift_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="kind:YYYY-MM"):
        Shift.parse("province_shock")
    with pytest.raises(ValueError, match="unknown shift"):
        Shift.parse("flood:2024-01")
    with pytest.raises(ValueError, match="unknown province"):
        Shift("province_shock", date(2024, 1, 1), provinces=("Sài Gòn",))
    assert Shift.parse("cooperative_wave:2024-03").month == date(2024, 3, 1)


# -- the command -----------------------------------------------------------------------------------
def test_cli_monitor_on_the_trained_home(pipeline_home, tmp_path):
    """`coopscore monitor` (a real process) on the session's home: its champion was trained on every
    matured label, so no month comes after its training population; a month named is monitored."""
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    shutil.copytree(pipeline_home.home, home)
    env = {**os.environ, "COOPSCORE_HOME": str(home), "COLUMNS": "200"}
    env.pop("COOPSCORE_TRACKING_URI", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "coopscore.cli", "monitor", *args], env=env,
                              capture_output=True, text=True, timeout=600)

    nothing = run()
    assert nothing.returncode == 1 and "nothing to monitor yet" in nothing.stdout, nothing.stdout
    bad = run("--month", "2024/05")
    assert bad.returncode == 1 and "YYYY-MM" in bad.stdout
    apps = pd.read_parquet(home / "data" / "clean" / "loan_applications.parquet")
    month = apps["application_date"].max().strftime("%Y-%m")
    done = run("--month", month)
    assert done.returncode == 0, done.stdout + done.stderr
    assert month in done.stdout and "coopscore-monitoring-member" in done.stdout
    stored = pd.read_parquet(home / "monitoring" / "monthly.parquet")
    assert stored["month"].tolist() == [month]


def test_a_cooperative_wave_is_told_by_its_new_entrants_in_its_own_month(tmp_path):
    """The wave's cooperatives are founded, and their members join, thirteen months before the
    shift; their first applications arrive from its month on. The features computed as of each
    application carry that (tenure), and the monitor's new-entrant rule alerts `act` in the shift's
    month, while no month of the training population before it alerts at all."""
    from coopscore.synthetic import generate
    from data_contracts.ingest import ingest
    from evaluation.alerts import AlertConfig, share_alert
    from evaluation.monitoring import _new_entrant_share
    from training.dataset import build_training_set

    month = date(2023, 1, 1)
    config = AlertConfig()
    generate(tmp_path / "raw", members=4_000, seed=11, start=date(2019, 1, 1), months=62,
             shift=Shift("cooperative_wave", month))
    ingest(tmp_path / "raw", tmp_path / "clean", tmp_path / "quarantine")
    members = pd.read_parquet(tmp_path / "clean" / "members.parquet")
    coops = pd.read_parquet(tmp_path / "clean" / "cooperatives.parquet")
    founded = coops["founding_date"].dt.to_period("M") == pd.Period(month, "M") - 13
    assert 0.2 < founded.mean() < 0.5  # share 0.35 of cooperatives
    joined = members["cooperative_id"].isin(coops.loc[founded, "cooperative_id"])
    assert (members.loc[joined, "join_date"].dt.to_period("M") == pd.Period(month, "M") - 13).all()
    rows = build_training_set(tmp_path / "clean", "member")
    rows["month"] = rows["as_of"].dt.strftime("%Y-%m")
    reference = rows[rows["as_of"] < pd.Timestamp(month) - pd.DateOffset(months=12)]
    ref_share = _new_entrant_share(reference, config).value

    def alert(part: pd.DataFrame):
        share = _new_entrant_share(part, config)
        return share_alert(part["month"].iloc[0], "new_entrants", "new_entrant_share", share.value,
                           share.low, share.high, ref_share, config.new_entrant_share_watch,
                           config.new_entrant_share_act, "new entrants")

    shifted = alert(rows[rows["month"] == f"{month:%Y-%m}"])
    assert shifted is not None and shifted.level == "act", (ref_share, shifted)
    assert "against" in shifted.message and "points" in shifted.message
    before = rows[(rows["as_of"] >= pd.Timestamp(month) - pd.DateOffset(months=12))
                  & (rows["as_of"] < pd.Timestamp(month))]
    quiet = [alert(part) for _, part in before.groupby("month")]  # small months: judged on intervals
    assert quiet and all(a is None for a in quiet), [a.message for a in quiet if a]
