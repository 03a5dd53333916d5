"""Challengers in the shadow (issue 16): the version aliased `challenger` is scored on live traffic beside
the champion, on the same inputs, after the answer; the rows are recorded, `coopscore shadow-report`
compares them and the promotion gates read the report."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy.special import expit, logit

from evaluation.shadow import shadow_report
from governance.promotion import CHALLENGER, Gates, shadow_gate
from settings import Paths
from serving.launcher import ROOT, start_server, stop_server
from training import registry

pytestmark = pytest.mark.e2e
SHIFT = 0.8  # the challenger's log-odds = the champion's + SHIFT: riskier everywhere, same order
BANK = "shadow-bank"


def _challenger(home: Paths) -> str:
    """Register the champion with its calibration intercept moved by SHIFT and alias it `challenger`."""
    from training.train import _log_model

    registry.use_store(home)
    champion = registry.champion_version("member")
    model = mlflow.pyfunc.load_model(f"models:/coopscore-member/{champion.version}").unwrap_python_model()
    model.intercept += SHIFT
    model.calibration = model.meta["calibration"]["fitted_on"]
    example = pd.DataFrame([{f: 0.0 for f in model.features}])
    with mlflow.start_run(experiment_id=registry.experiment(home, "member")):
        version = _log_model(model, "member", example)
    MlflowClient().set_registered_model_alias("coopscore-member", CHALLENGER, version)
    return version


@pytest.fixture(scope="module")
def home(pipeline_home, tmp_path_factory) -> Paths:
    """A private copy of the trained home: these tests register a version and alias it."""
    copy = Paths(tmp_path_factory.mktemp("shadow") / "home")
    shutil.copytree(pipeline_home.home, copy.home, ignore=shutil.ignore_patterns("bentoml", "*.log"))
    return copy


@pytest.fixture(scope="module")
def challenger(home) -> str:
    return _challenger(home)


@pytest.fixture(scope="module")
def members(home) -> list[str]:
    snap = pd.read_parquet(home.features / "snapshot.parquet")
    ok = snap[(snap.entity_type == "member") & (snap.transactions_365d > 40) & (snap.history_days > 200)]
    return list(ok.entity_id.iloc[:60])


@pytest.fixture(scope="module")
def client(home, challenger, members):
    from records import Operator, Records

    with Records(home) as records:
        token = records.add_bank(BANK, "Shadow bank", ["scores:read", "scores:batch"]).token
        for member_id in members:
            records.grant_consent("member", member_id, BANK, purpose="credit_scoring",
                                  expires_at=datetime.now(timezone.utc) + timedelta(days=30),
                                  source="operator", actor=Operator("tests"))
    proc, base = start_server(home.home, env={"COOPSCORE_RELOAD_SECONDS": "1"})
    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c
    stop_server(proc)


def _body(member_id: str, amount: int = 40_000_000, term: int = 12) -> dict:
    return {"subject_type": "member", "subject_id": member_id,
            "application": {"amount_vnd": amount, "term_months": term, "purpose": "inputs"}}


def _rows(home: Paths, version: str, expected: int, seconds: float = 60.0) -> pd.DataFrame:
    from records import Records

    deadline = time.time() + seconds
    with Records(home) as records:
        while True:
            rows = records.shadow_rows("member", version)
            if len(rows) >= expected or time.time() > deadline:
                return pd.DataFrame(rows)
            time.sleep(0.3)


def test_the_challenger_is_scored_on_the_answers_inputs_and_recorded(client, home, challenger, members):
    answers, bodies = {}, {}
    for i, member_id in enumerate(members[:30]):
        body = _body(member_id, 20_000_000 + 5_000_000 * i, 12 + 6 * (i % 3))
        response = client.post("/v1/scores", json=body)
        assert response.status_code == 200, response.text
        answers[response.json()["request_id"]] = response.json()
        bodies[response.json()["request_id"]] = body["application"]
    scored = {k: a for k, a in answers.items() if a["status"] == "scored"}
    assert len(scored) >= 20
    champion = {a["model"]["version"] for a in scored.values()}
    assert challenger not in champion  # the answer is the champion's, never the challenger's
    rows = _rows(home, challenger, len(scored)).set_index("request_id")
    assert set(rows.index) == set(scored)  # every scored answer shadowed, nothing else
    for request_id, answer in scored.items():
        row = rows.loc[request_id]
        assert row.champion_version == answer["model"]["version"] and row.champion_grade == answer["grade"]
        assert row.champion_pd == pytest.approx(answer["pd"], abs=1e-6)
        # same history row, amount and term: the challenger's log-odds are the champion's + SHIFT
        assert float(logit(row.challenger_pd)) == pytest.approx(float(logit(answer["pd"])) + SHIFT, abs=1e-4)
        assert (row.amount_vnd, row.term_months) == (bodies[request_id]["amount_vnd"],
                                                     bodies[request_id]["term_months"])
    status = client.get("/v1/status").json()
    assert status["shadow"] == {"member": challenger} and status["models"]["member"] in champion


def test_a_batch_is_shadowed_item_by_item(client, home, challenger, members):
    before = len(_rows(home, challenger, 0, seconds=0))
    batch = [_body(m, 60_000_000, 24) for m in members[30:50]]
    response = client.post("/v1/scores:batch", json={"applications": batch})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    scored = [r for r in results if r.get("status") == "scored"]
    rows = _rows(home, challenger, before + len(scored))
    new = rows.iloc[before:]
    assert len(new) == len(scored) and set(new.term_months) == {24} and set(new.amount_vnd) == {60_000_000}
    assert set(new.request_id) == {r["request_id"] for r in scored}


def test_shadow_report_cli_and_the_gate(client, home, challenger):
    rows = _rows(home, challenger, 1)
    env = {**os.environ, "COOPSCORE_HOME": str(home.home)}
    out = subprocess.run([sys.executable, "-m", "coopscore.cli", "shadow-report", "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["challenger_version"] == challenger and report["n"] == len(rows)
    assert sum(sum(r.values()) for r in report["migration"].values()) == len(rows)
    assert report["rank_correlation"]["value"] == pytest.approx(1.0)  # a monotone shift keeps the order
    assert report["mean_pd_change"]["low"] > 0  # riskier everywhere, and the interval says so
    assert report["approval_challenger"] <= report["approval_champion"]
    text = subprocess.run([sys.executable, "-m", "coopscore.cli", "shadow-report"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "grade migration" in text.stdout and "shadow gate" in text.stdout
    missing = subprocess.run([sys.executable, "-m", "coopscore.cli", "shadow-report", "--version", "999"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "no shadow answers recorded" in (missing.stdout + missing.stderr)
    assert "Traceback" not in missing.stderr


# -- the report and the gate, on rows whose answers are known ----------------------------------------
def _frame(champion_pd, challenger_pd) -> pd.DataFrame:
    from training.scaling import grade_from_pd

    c, h = np.asarray(champion_pd, dtype=float), np.asarray(challenger_pd, dtype=float)
    return pd.DataFrame({"champion_pd": c, "challenger_pd": h, "champion_grade": grade_from_pd(c),
                         "challenger_grade": grade_from_pd(h), "champion_version": "1",
                         "challenger_version": "2"})


def test_report_figures_are_exact_on_known_rows():
    rng = np.random.default_rng(3)
    champ = rng.uniform(0.01, 0.2, 2000)
    same = shadow_report(_frame(champ, champ), n_boot=200)
    assert same.grade_agreement.value == 1.0 and same.approval_change.value == 0.0
    assert np.trace(same.migration.to_numpy()) == 2000
    riskier = expit(logit(champ) + 1.0)
    report = shadow_report(_frame(champ, riskier), n_boot=200)
    expected = (riskier <= 0.08).mean() - (champ <= 0.08).mean()
    assert report.approval_change.value == pytest.approx(expected)
    assert report.approval_change.low <= expected <= report.approval_change.high
    assert report.rank_correlation.value == pytest.approx(1.0)
    assert report.migration.to_numpy().sum() == 2000
    assert not shadow_gate(report, Gates(max_shadow_approval_shift=0.05)).passed  # moves ~25 points
    assert shadow_gate(report, Gates(max_shadow_approval_shift=0.9)).passed
    assert shadow_gate(None, Gates()).passed  # no live traffic yet: said, not refused
    with pytest.raises(ValueError, match="mix challenger versions"):
        shadow_report(pd.concat([_frame(champ[:5], champ[:5]), _frame(champ[:5], champ[:5]).assign(
            challenger_version="3")]))
    with pytest.raises(ValueError, match="no shadow rows"):
        shadow_report(_frame([], []))
