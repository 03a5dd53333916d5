"""The promotion gates decide on intervals: synthetic worlds whose truth is known by construction.

A latent creditworthiness z drives the true PD and the label; models see z through noise (more
noise, lower AUC), and a model may add a penalty on a group that the truth does not carry.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from evaluation import compare, fairness, metrics
from evaluation.champion import ChampionEvaluation
from governance.promotion import (
    TABLE_COLUMNS, Decision, Gates, auc_gate, calibration_evidence_gate, check_gates, fairness_gate,
    gate_tags,
)

THRESHOLD = 0.08


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def world(n: int = 20000, seed: int = 0) -> pd.DataFrame:
    """Applications with a true PD (about 8% default), a mountainous flag and a region."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    true_pd = _sigmoid(-2.8 + 1.2 * z)
    return pd.DataFrame({
        "application_id": [f"A{i:06d}" for i in range(n)],
        "label": (rng.random(n) < true_pd).astype(int),
        "true_pd": true_pd,
        "z": z,
        "mountainous_commune": rng.random(n) < 0.3,
        "region": rng.choice(["north", "centre", "south"], n),
    })


def model(w: pd.DataFrame, noise: float, seed: int, penalty: float = 0.0) -> pd.DataFrame:
    """A model's evaluation frame: z seen through `noise`, plus `penalty` log-odds on mountainous."""
    rng = np.random.default_rng(seed)
    logit = -2.8 + 1.2 * (w["z"] + rng.normal(scale=noise, size=len(w))) \
        + penalty * w["mountainous_commune"]
    return w.assign(pd=_sigmoid(logit.to_numpy()))


# --------------------------------------------------------------------------- AUC


def test_delong_agrees_with_sklearn_and_with_the_paired_bootstrap():
    w = world(6000)
    a, b = model(w, 1.0, 1)["pd"], model(w, 0.6, 2)["pd"]
    delong = compare.delong_auc_difference(w["label"], a, b)
    boot = compare.paired_auc_difference(w["label"], a, b, n_boot=400, seed=3)
    truth = roc_auc_score(w["label"], a) - roc_auc_score(w["label"], b)
    assert delong.value == pytest.approx(truth) and boot.value == pytest.approx(truth)
    # same interval up to bootstrap noise: widths within 25%, ends within a quarter-width
    width = delong.high - delong.low
    assert abs((boot.high - boot.low) / width - 1) < 0.25
    assert abs(boot.low - delong.low) < width / 4 and abs(boot.high - delong.high) < width / 4


def test_pairing_makes_the_interval_narrower_than_either_auc_alone():
    w = world(6000)
    a, b = model(w, 0.6, 1)["pd"], model(w, 0.6, 2)["pd"]
    paired = compare.delong_auc_difference(w["label"], a, b)
    from evaluation.metrics import auc, bootstrap
    alone = bootstrap(auc, w["label"], b, n=300, seed=0)
    assert paired.high - paired.low < alone.high - alone.low


def test_a_challenger_worse_by_five_points_is_refused():
    w = world()
    champion, challenger = model(w, 0.5, 1), model(w, 1.5, 2)
    drop = roc_auc_score(w["label"], challenger["pd"]) - roc_auc_score(w["label"], champion["pd"])
    assert drop < -0.05  # the construction is what the test claims
    result = auc_gate(challenger, champion, Gates())
    assert not result.passed and "significantly worse" in result.detail
    assert result.table.loc[0, "high"] < -Gates().auc_tolerance


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_challenger_equal_within_noise_is_not_refused(seed):
    w = world(3000, seed)
    champion, challenger = model(w, 0.8, 10 + seed), model(w, 0.8, 20 + seed)
    result = auc_gate(challenger, champion, Gates())
    # passes even on seed 3, whose 95% CI happens to lie just below 0 (about 1 in 40 of such
    # draws): the tolerance keeps an immaterial, chance "loss" from refusing an equal model
    assert result.passed, result.detail
    assert result.table.iloc[0].high > -0.02


def test_the_paired_bootstrap_verdict_does_not_flip_between_seeds_on_a_clear_case():
    w = world(6000)
    champion, challenger = model(w, 0.5, 1), model(w, 1.5, 2)
    verdicts = {compare.auc_not_worse(compare.paired_auc_difference(
        w["label"], challenger["pd"], champion["pd"], n_boot=200, seed=s)) for s in (0, 1)}
    assert verdicts == {False}


def test_the_tolerance_lets_a_significant_but_immaterial_loss_through():
    tiny_loss = compare.Estimate(-0.003, -0.004, -0.002)
    assert compare.auc_not_worse(tiny_loss, tolerance=0.005)
    assert not compare.auc_not_worse(tiny_loss, tolerance=0.0)
    with pytest.raises(ValueError, match="tolerance"):
        compare.auc_not_worse(tiny_loss, tolerance=-0.01)


def test_compare_rejects_bad_input_clearly():
    with pytest.raises(ValueError, match="same applications"):
        compare.delong_auc_difference([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2])
    with pytest.raises(ValueError, match="at least 2 bads"):
        compare.delong_auc_difference([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="NaN"):
        compare.paired_auc_difference([0, 1, 0, 1], [0.1, np.nan, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])


def test_frames_of_different_applications_are_refused():
    w = world(2000)
    champion = model(w, 0.5, 1)
    challenger = model(w, 0.5, 2).iloc[::-1].reset_index(drop=True)
    with pytest.raises(ValueError, match="same applications"):
        auc_gate(challenger, champion, Gates())


# --------------------------------------------------------------------------- fairness


def test_a_model_that_penalises_a_group_trips_on_level_and_on_widening():
    w = world()
    champion, challenger = model(w, 0.5, 1), model(w, 0.5, 2, penalty=1.5)
    result = fairness_gate(challenger, champion, Gates(), n_boot=200)
    assert not result.passed
    t = result.table.set_index(["check", "group_column"])
    level = t.loc[("approval_rate_gap", "mountainous_commune")]
    assert level.trips and level.low > Gates().max_approval_rate_gap
    assert t.loc[("approval_rate_gap_widening_vs_champion", "mountainous_commune")].trips
    assert t.loc[("approval_rate_gap_widening_vs_true_pd", "mountainous_commune")].trips
    assert t.loc[("equal_opportunity_gap_widening_vs_true_pd", "mountainous_commune")].trips
    # region carries no penalty: nothing trips there
    assert not t.xs("region", level="group_column")["trips"].any()
    assert "mountainous_commune" in result.detail


def test_a_fair_challenger_passes_and_the_verdict_does_not_flip_between_seeds():
    w = world()
    champion, challenger = model(w, 0.5, 1), model(w, 0.5, 2)
    verdicts = [fairness_gate(challenger, champion, Gates(), n_boot=200, seed=s) for s in (0, 1)]
    assert all(v.passed for v in verdicts), verdicts[0].detail
    penalised = model(w, 0.5, 2, penalty=1.5)
    assert not any(fairness_gate(penalised, champion, Gates(), n_boot=200, seed=s).passed
                   for s in (0, 1))


def test_a_gap_that_is_only_maybe_over_does_not_trip():
    w = world()
    challenger = model(w, 0.5, 2, penalty=1.5)
    level = fairness_gate(challenger, None, Gates(), n_boot=200).table.set_index(
        ["check", "group_column"]).loc[("approval_rate_gap", "mountainous_commune")]
    # a bound inside the gap's interval: the gap may be over it, but that is not evidence
    bound = (level.low + level.high) / 2
    gates = Gates(max_approval_rate_gap=bound, max_equal_opportunity_gap=1, max_gap_widening=1)
    result = fairness_gate(challenger, None, gates, n_boot=200)
    row = result.table.set_index(["check", "group_column"]).loc[
        ("approval_rate_gap", "mountainous_commune")]
    assert row.low < bound < row.high and not row.trips and row.verdict.startswith("maybe over")
    assert result.passed
    assert not fairness_gate(challenger, None, Gates(max_approval_rate_gap=level.low - 0.01,
                                                     max_equal_opportunity_gap=1, max_gap_widening=1),
                             n_boot=200).passed


def test_groups_with_too_few_defaults_are_listed_and_never_trip():
    w = world(20000)
    # a tiny region "islands": 200 rows, about 16 defaults, which the model refuses wholesale
    w.loc[w.index[:200], "region"] = "islands"
    challenger = model(w, 0.5, 2)
    challenger.loc[challenger["region"] == "islands", "pd"] = 0.9
    result = fairness_gate(challenger, None, Gates(), n_boot=100)
    region = result.table[result.table["group_column"] == "region"]
    assert region["too_small"].str.contains("islands").all()
    assert not region["trips"].any() and result.passed
    assert "too small to judge" in result.detail
    # with the bar lowered the same group is judged, and its zero approval rate trips the gate
    assert not fairness_gate(challenger, None, Gates(min_defaults_per_group=5), n_boot=100).passed


def test_a_grouping_with_fewer_than_two_judgeable_groups_is_reported_not_passed_silently():
    w = world(600)  # about 50 defaults in all: at most one group of a split reaches 30
    result = fairness_gate(model(w, 0.5, 1), None, Gates(), n_boot=50)
    unjudged = result.table[result.table["verdict"] == fairness.TOO_SMALL_TO_JUDGE]
    assert set(unjudged["group_column"]) == {"mountainous_commune", "region"}
    assert "too small to judge" in result.detail and unjudged["value"].isna().all()


def test_gap_intervals_rejects_bad_input_clearly():
    w = model(world(500), 0.5, 1)
    with pytest.raises(ValueError, match="missing column"):
        fairness.gap_intervals(w, ["gender"], THRESHOLD, {"m": "pd"})
    with pytest.raises(ValueError, match="not in scorers"):
        fairness.gap_intervals(w, ["region"], THRESHOLD, {"m": "pd"}, [("m", "champion")])
    with pytest.raises(ValueError, match="missing value"):
        fairness.gap_intervals(w.assign(pd=np.nan), ["region"], THRESHOLD, {"m": "pd"})


def test_gap_intervals_point_estimate_is_the_hand_computed_gap():
    w = model(world(20000), 0.5, 1)
    table = fairness.gap_intervals(w, ["mountainous_commune"], THRESHOLD, {"m": "pd"}, n_boot=50)
    rates = (w["pd"] <= THRESHOLD).groupby(w["mountainous_commune"]).mean()
    good = w[w["label"] == 0]
    eo = (good["pd"] <= THRESHOLD).groupby(good["mountainous_commune"]).mean()
    got = table.set_index("gap")["value"]
    assert got["approval_rate"] == pytest.approx(abs(rates[True] - rates[False]))
    assert got["equal_opportunity"] == pytest.approx(abs(eo[True] - eo[False]))


# --------------------------------------------------------------------------- table and tags


def test_decision_table_and_tags_carry_every_checks_numbers():
    w = world()
    champion, challenger = model(w, 0.5, 1), model(w, 0.5, 2, penalty=1.5)
    results = [auc_gate(challenger, champion, Gates()),
               fairness_gate(challenger, champion, Gates(), n_boot=100)]
    decision = Decision("member", "2", False, results, "1")
    table = decision.table()
    assert list(table.columns) == TABLE_COLUMNS
    assert len(table) == 1 + 2 * 2 * 3  # auc + 2 groupings x 2 gaps x (level, vs champion, vs truth)
    tags = gate_tags(results)
    assert len(tags) == len(table)
    key = "gate.fairness.approval_rate_gap.mountainous_commune"
    level = table[(table["check"] == "approval_rate_gap")
                  & (table["group_column"] == "mountainous_commune")].iloc[0]
    assert tags[key].startswith(f"{level.value:.4f} [{level.low:.4f}, {level.high:.4f}]")
    assert tags[key].endswith("over the bound")


# --------------------------------------------------------------------------- the whole set of gates


def evaluation(frame: pd.DataFrame, version: str) -> ChampionEvaluation:
    """A real ChampionEvaluation of a synthetic frame (metrics with bootstrap CIs)."""
    psi = pd.DataFrame({"column": ["score", "x"], "psi": [0.01, 0.02], "band": ["stable", "stable"]})
    return ChampionEvaluation("member", version, len(frame),
                              metrics.evaluate(frame["label"], frame["pd"], n_boot=100), None, psi,
                              {}, 0.0, frame=frame)


def test_check_gates_runs_every_gate_on_intervals():
    w = world()
    champion = evaluation(model(w, 0.5, 1), "1")
    fair = check_gates(evaluation(model(w, 0.5, 2), "2"), champion, Gates(), n_boot=100)
    assert [g.name for g in fair] == ["auc", "calibration", "calibration_evidence", "stability",
                                      "fairness", "shadow"]
    assert {g.name: g.passed for g in fair} == {
        "auc": True, "calibration": True, "calibration_evidence": True, "stability": True,
        "fairness": True, "shadow": True}, [g.detail for g in fair]
    assert "did not run" in fair[-1].detail  # no live traffic recorded: said, not a refusal
    unfair = check_gates(evaluation(model(w, 0.5, 2, penalty=1.5), "2"), champion, Gates(),
                         n_boot=100)
    assert "fairness" in [g.name for g in unfair if not g.passed]


def test_a_model_whose_calibration_cannot_be_pinned_down_is_refused_saying_why():
    few = model(world(100, 5), 0.5, 1)  # 8 defaults: the slope's CI is wider than 1
    ev = evaluation(few, "2")
    assert not ev.calibration_pinned
    result = calibration_evidence_gate(ev, Gates())
    assert not result.passed and result.detail == ev.calibration_reason
    assert "calibration slope" in result.detail
    assert calibration_evidence_gate(ev, Gates(require_pinned_calibration=False)).passed
    assert calibration_evidence_gate(evaluation(model(world(), 0.5, 1), "3"), Gates()).passed


def test_an_evaluation_that_does_not_say_refuses_with_a_clear_message():
    class Legacy:  # an evaluation object from before the calibration slope was reported
        pass
    result = calibration_evidence_gate(Legacy(), Gates())
    assert not result.passed and "calibration_pinned" in result.detail
