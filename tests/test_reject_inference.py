"""Reject inference against the synthetic truth: the lender's past policy in the generator (decisions
recorded, outcomes of the declined kept out of the platform's data), the methods of
training.reject_inference, and the through-the-door comparison (evaluation.through_the_door)."""
from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from coopscore.synthetic import generate
from data_contracts.contracts import CONTRACTS
from data_contracts.ingest import ingest
from training import reject_inference as ri

POLICY_MEMBERS = 20_000  # enough declines and defaults for a through-the-door interval
POLICY_SEED = 7  # not the seed the policy's parameters were chosen on (42)


@pytest.fixture(scope="module")
def policy_home(tmp_path_factory):
    """A world whose lender declined 30 % of the applications (2 % of them funded at random)."""
    from settings import Paths

    paths = Paths(tmp_path_factory.mktemp("reject-inference"))
    generate(paths.raw, members=POLICY_MEMBERS, cooperatives=POLICY_MEMBERS // 20, seed=POLICY_SEED,
             past_policy_decline_share=0.3)
    report = ingest(paths.raw, paths.clean, paths.quarantine)
    assert all(t.reconciles for t in report.tables)
    return paths


def _tables(directory) -> dict[str, pd.DataFrame]:
    return {t: pd.read_parquet(directory / f"{t}.parquet") for t in CONTRACTS}


def test_default_generator_records_no_decision_and_funds_everyone(tmp_path):
    generate(tmp_path, members=300, cooperatives=10, seed=5)
    t = _tables(tmp_path)
    apps = t["loan_applications"]
    assert apps["decision"].isna().all() and apps["policy_score"].isna().all()
    assert len(t["loans"]) == len(apps)
    assert set(t["loans"].application_id) == set(apps.application_id)
    truth = t["true_pd"].merge(apps, on="application_id")
    assert (truth["outcome_if_funded"] == truth["default_12m"]).all()  # every one was funded


def test_past_policy_is_refused_outside_its_range(tmp_path):
    with pytest.raises(ValueError, match="past_policy_decline_share"):
        generate(tmp_path, members=100, past_policy_decline_share=1.0)
    with pytest.raises(ValueError, match="random_accept_share"):
        generate(tmp_path, members=100, past_policy_decline_share=0.3, random_accept_share=-0.1)


def test_decisions_are_recorded_and_the_declined_outcomes_stay_in_the_truth(policy_home):
    t = _tables(policy_home.clean)
    apps, truth = t["loan_applications"], t["true_pd"]
    in_window = apps[apps.application_id.isin(truth.application_id)]
    share = in_window["decision"].value_counts(normalize=True)
    assert share["declined"] + share["random_accept"] == pytest.approx(0.3, abs=0.01)
    would_be_declined = share["declined"] + share["random_accept"]
    assert share["random_accept"] / would_be_declined == pytest.approx(0.02, abs=0.01)
    assert in_window["policy_score"].notna().all()
    legacy = apps[~apps.application_id.isin(truth.application_id)]
    assert (legacy["decision"] == "funded").all()  # the legacy book was funded
    # declined: no label, no loan, no repayment, no money
    declined = apps[apps["decision"] == "declined"]
    assert declined["default_12m"].isna().all()
    assert not set(declined.application_id) & set(t["loans"].application_id)
    funded = apps[apps["decision"] != "declined"]
    assert set(t["loans"].application_id) == set(funded.application_id)
    assert set(t["repayments"].loan_id) <= set(t["loans"].loan_id)
    disbursals = t["transactions"][t["transactions"].category == "loan_disbursal"]
    data_start = t["transactions"].ts.min()
    assert len(disbursals) == int((t["loans"].disbursal_date >= data_start.normalize()).sum())
    # funded (by policy or at random): labelled, as before
    assert apps.loc[apps.application_id.isin(truth.application_id) & (apps.decision != "declined"),
                    "default_12m"].notna().all()
    # the truth: every in-window application's would-be outcome, declined ones included
    declined_truth = truth.merge(declined[["application_id"]])
    assert len(declined_truth) == len(declined) and declined_truth["outcome_if_funded"].notna().all()
    # the policy declined the riskier: their true PD and would-be default rate are higher
    by = truth.merge(apps[["application_id", "decision"]]).groupby("decision")
    assert by.true_pd.mean()["declined"] > 2 * by.true_pd.mean()["funded"]
    assert by.outcome_if_funded.mean()["declined"] > 2 * by.outcome_if_funded.mean()["funded"]


def test_replicate_applies_weights_in_expectation():
    rows = pd.DataFrame({"x": np.arange(4)})
    out = ri.replicate(rows, np.array([0.0, 1.0, 2.5, 10.0]), seed=1)
    counts = out["x"].value_counts()
    assert 0 not in counts and counts[1] == 1 and counts[2] in (2, 3) and counts[3] == 10
    many = ri.replicate(pd.DataFrame({"x": np.zeros(20_000)}), np.full(20_000, 1.3), seed=2)
    assert len(many) / 20_000 == pytest.approx(1.3, abs=0.02)
    with pytest.raises(ValueError, match="weights"):
        ri.replicate(rows, np.array([1.0, -1.0, 1.0, 1.0]))


def test_unknown_method_and_data_without_decisions_are_clear_errors():
    with pytest.raises(ValueError, match="reject_inference must be one of"):
        ri.method("fuzzy_augmentation")
    applicants = pd.DataFrame({"label": [0.0, 1.0], "decision": [np.nan, np.nan],
                               "policy_score": [np.nan, np.nan]})
    with pytest.raises(ValueError, match="records none"):
        ri.InverseAcceptanceWeighting().weights(applicants)
    with pytest.raises(ValueError, match="records none"):
        ri.RandomAcceptanceCalibration().design_weights(applicants)


def test_acceptance_weights_grow_as_the_older_score_falls(policy_home):
    apps = pd.read_parquet(policy_home.clean / "loan_applications.parquet")
    apps = apps[apps["decision"].notna() & apps["policy_score"].notna()].copy()
    apps["label"] = np.where(apps["decision"] == "declined", np.nan, apps["default_12m"].fillna(0))
    ipw = ri.InverseAcceptanceWeighting()
    p = ipw.acceptance(apps)
    score = apps["policy_score"].to_numpy()
    low, high = score < np.quantile(score, 0.1), score > np.quantile(score, 0.9)
    assert p[low].mean() < 0.5 < 0.95 < p[high].mean()
    w = ipw.weights(apps)
    assert w.min() >= 1.0 and w.max() <= 1 / ri.MIN_PROPENSITY
    # the weighted funded stand for every applicant
    assert w.sum() == pytest.approx(len(apps), rel=0.05)


@pytest.fixture(scope="module")
def comparison(policy_home):
    from evaluation.through_the_door import compare

    return compare(policy_home.clean, "member", n_boot=300)


def test_reject_inference_at_least_halves_the_funded_only_calibration_error(comparison):
    c = comparison
    for name in c.results:  # shown with pytest -s
        print(name, c.results[name].calibration_vs_true_pd, c.halving_vs_true_pd[name])
    base = c.results["funded_only"].calibration_vs_true_pd
    assert base.high < 0, f"the funded-only model should under-predict through the door: {base}"
    best = c.best
    assert best != "funded_only"
    ratio = c.halving_vs_true_pd[best]
    assert ratio.high < 0.5, f"{best}: |CITL| / |CITL funded-only| = {ratio}"
    # ... without giving up ranking: the AUC stays within the funded-only model's interval
    assert c.results[best].auc.value > c.results["funded_only"].auc.low
    # at least two methods that change the model (not only its intercept) were measured
    assert {"inverse_acceptance_weighting", "parcelling"} <= set(c.results)


def test_through_the_door_measures_come_with_intervals(comparison):
    for name, r in comparison.results.items():
        for est in (r.auc, r.calibration_in_the_large, r.calibration_vs_true_pd, r.approval_rate):
            assert est.low <= est.value <= est.high, (name, est)
        assert 0 < r.approval_rate.value <= 1
    assert comparison.test_rows > 1000 and comparison.train_declined > 500


def test_approval_rate_at_a_bad_rate():
    from evaluation.through_the_door import approval_rate_at_bad_rate

    y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    pd_values = np.arange(8) / 10
    assert approval_rate_at_bad_rate(y, pd_values, 0.25) == 5 / 8  # 1 bad in the 5 safest
    assert approval_rate_at_bad_rate(y, pd_values, 0.0) == 3 / 8
    assert approval_rate_at_bad_rate(y[::-1], pd_values, 0.0) == 0.0


def test_training_records_the_method_and_the_population(policy_home, monkeypatch):
    from evaluation.model_card import _population_note
    from settings import Paths, reset_settings
    from training.train import VALIDATED_ON, train_subject

    monkeypatch.setenv("COOPSCORE_HOME", str(policy_home.home))
    monkeypatch.delenv("COOPSCORE_TRACKING_URI", raising=False)
    reset_settings()
    paths = Paths(policy_home.home)
    result = train_subject(paths, "member")  # the default: the measured best, as data has declines
    params = mlflow.get_run(result.run_id).data.params
    measured = ri.measured_choice()
    assert measured is not None, "run `make benchmark-reject-inference` to measure the methods"
    assert params["reject_inference"] == measured["method"] != "funded_only"
    assert params["reject_inference_why"].startswith("measured best through the door")
    assert int(params["train_declined"]) > 500
    assert params["validated_on"] == VALIDATED_ON
    note = _population_note(params)
    assert "Trained on: every applicant" in note and "Validated on: funded loans only" in note
    assert "reject inference: funded_only" in _population_note({})  # older runs: funded only


def test_the_default_method_is_funded_only_without_declines_and_the_measured_best_with_them(tmp_path):
    assert ri.resolve(ri.MEASURED, declined=0, path=tmp_path / "absent.json")[0] == "funded_only"
    with pytest.raises(ri.NoMeasuredMethod, match="benchmark-reject-inference"):
        ri.resolve(ri.MEASURED, declined=12, path=tmp_path / "absent.json")
    record = tmp_path / "choice.json"
    record.write_text('{"method": "inverse_acceptance_weighting", "seeds": [1, 2]}')
    assert ri.resolve(ri.MEASURED, declined=12, path=record)[0] == "inverse_acceptance_weighting"
    assert ri.resolve("parcelling", declined=0, path=record) == ("parcelling", "asked for by name")
    with pytest.raises(ValueError, match="must be one of"):
        ri.resolve("fuzzy_augmentation", declined=12, path=record)
    record.write_text('{"method": "fuzzy_augmentation"}')
    with pytest.raises(ValueError, match="unknown reject-inference method"):
        ri.measured_choice(record)


def test_the_benchmark_choice_is_the_comparisons_own_best(comparison):
    from benchmarks.reject_inference import choice

    record = choice({POLICY_SEED: comparison})
    assert record["method"] == comparison.best
    assert set(record["evidence"][str(POLICY_SEED)]) == set(comparison.results)


def test_the_checked_in_choice_follows_its_own_evidence():
    """training/reject_inference_choice.json is written by benchmarks/reject_inference.py; its method
    is the rule applied to the numbers it records (every seed, the far end of each interval)."""
    record = ri.measured_choice()
    assert record is not None, "run `make benchmark-reject-inference` to measure the methods"
    seeds = record["evidence"]
    assert len(seeds) >= 2 and {str(s) for s in record["seeds"]} == set(seeds)

    def worst(name):
        return max(max(abs(e[name]["citl_vs_true_pd"]["low"]), abs(e[name]["citl_vs_true_pd"]["high"]))
                   for e in seeds.values())
    assert record["method"] == min(ri.METHODS, key=worst)
