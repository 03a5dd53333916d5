"""Promotion gates: recorded in MLflow, refuse a drifting challenger, and rollback restores."""
from __future__ import annotations

import dataclasses
import shutil

import pytest
from mlflow import MlflowClient

from governance.pipeline import train_and_promote
from governance.promotion import PREVIOUS, Gates, promote, rollback
from settings import Paths
from training import registry

LENIENT = Gates(max_abs_calibration_in_the_large=1, max_ece=1, max_feature_psi=100,
                max_approval_rate_gap=1, auc_tolerance=1, max_equal_opportunity_gap=1,
                max_gap_widening=1, require_pinned_calibration=False)
STRICT = dataclasses.replace(LENIENT, max_feature_psi=0.0)


@pytest.fixture()
def home(pipeline_home, tmp_path):
    """A private copy of the data with its own registry: one champion, one newer version."""
    paths = Paths(tmp_path / "home")
    shutil.copytree(pipeline_home.clean, paths.clean)
    train_and_promote(paths, "member", gates=LENIENT, n_boot=50)  # version 1, champion
    train_and_promote(paths, "member", gates=STRICT, n_boot=50)  # version 2, refused: challenger
    return paths


def test_strict_gates_refuse_and_record_why(home):
    decision = promote(home, "member", "2", STRICT, n_boot=50)
    assert not decision.promoted
    assert [g.name for g in decision.gates if not g.passed] == ["stability"]
    registry.use_store(home)
    assert str(registry.champion_version("member").version) == "1"
    tags = MlflowClient().get_model_version("coopscore-member", "2").tags
    assert tags["gate.stability"].startswith("FAIL") and tags["promotion"] == "refused by the gates"
    # every check's numbers are on the version too, one tag per row of the decision's table
    table = decision.table()
    auc = table[table["gate"] == "auc"].iloc[0]
    assert auc["check"] == "auc_difference_vs_champion" and auc["low"] <= auc["value"] <= auc["high"]
    assert tags["gate.auc.auc_difference_vs_champion"].startswith(f"{auc['value']:.4f}")
    fair = table[table["gate"] == "fairness"]
    assert set(fair["group_column"]) >= {"household_head_gender", "ethnic_minority",
                                         "mountainous_commune", "region", "business_sector"}
    for row in fair.itertuples():
        assert f"gate.fairness.{row.check}.{row.group_column}" in tags


def test_passing_gates_promote_and_rollback_restores(home):
    decision = promote(home, "member", "2", LENIENT, n_boot=50)
    assert decision.promoted and decision.champion_before == "1"
    registry.use_store(home)
    assert str(registry.champion_version("member").version) == "2"
    assert str(MlflowClient().get_model_version_by_alias("coopscore-member", PREVIOUS).version) == "1"
    assert rollback(home, "member") == ("2", "1")
    registry.use_store(home)
    assert str(registry.champion_version("member").version) == "1"
    with pytest.raises(LookupError, match="no previous champion"):
        rollback(home, "member")


def test_unknown_version_is_a_clear_error(home):
    with pytest.raises(LookupError, match="no version 9"):
        promote(home, "member", "9", LENIENT)


def test_override_promotes_despite_failed_gates_and_records_the_reason(home):
    with pytest.raises(LookupError, match="needs a reason"):
        promote(home, "member", "2", STRICT, n_boot=50, override="  ")
    decision = promote(home, "member", "2", STRICT, n_boot=50, override="first release, PSI reviewed")
    assert decision.promoted and decision.overridden
    assert [g.name for g in decision.failed()] == ["stability"]
    registry.use_store(home)
    assert str(registry.champion_version("member").version) == "2"
    tags = MlflowClient().get_model_version("coopscore-member", "2").tags
    assert tags["promotion"] == "promoted by override despite failed gates"
    assert tags["promotion.override_reason"] == "first release, PSI reviewed"
