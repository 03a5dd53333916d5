"""The Bento: built from the checkout into a temporary BentoML store (`coopscore bento`, what
`make bento` runs), then served FROM THE STORE (`bentoml serve coopscore:<tag>`) in a temporary
working directory, and a consented member scored over HTTP with a bank's key."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

from serving.launcher import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env(store: Path, home: Path) -> dict[str, str]:
    env = {**os.environ, "BENTOML_HOME": str(store), "COOPSCORE_HOME": str(home)}
    env.pop("COOPSCORE_TRACKING_URI", None)
    # Python writes the bytecode of what it imports next to the source: the proof below that the
    # server imported the Bento's copy of the code, not the checkout's.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@pytest.fixture(scope="module")
def bento(pipeline_home, tmp_path_factory):
    """(tag, the Bento's folder in the store, `bentoml get -o json`, the store's environment)."""
    store = tmp_path_factory.mktemp("bentoml-home")
    env = _env(store, pipeline_home.home)
    built = subprocess.run([str(BIN / "coopscore"), "bento"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    tag = built.stdout.strip().splitlines()[-1]
    assert tag.startswith("coopscore:"), built.stdout
    elsewhere = tmp_path_factory.mktemp("bento-get")
    got = subprocess.run([sys.executable, "-m", "bentoml", "get", tag, "-o", "json"], cwd=elsewhere,
                         env=env, capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr[-3000:]
    folder = store / "bentos" / "coopscore" / tag.split(":", 1)[1]
    assert (folder / "bento.yaml").exists()
    return tag, folder, json.loads(got.stdout), env


@pytest.fixture(scope="module")
def served(bento, tmp_path_factory):
    """The server started from the store, in a working directory that is not the checkout."""
    tag, folder, _, env = bento
    assert not list((folder / "src").rglob("__pycache__")), "the Bento must carry source, not bytecode"
    cwd = tmp_path_factory.mktemp("bento-serve")
    port = free_port()
    log_path = cwd / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", tag, "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=cwd, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 150
        while True:
            assert proc.poll() is None, f"the server exited; its log:\n{log_path.read_text()[-3000:]}"
            assert time.time() < deadline, f"not ready after 150 s; log:\n{log_path.read_text()[-3000:]}"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield proc, base, cwd
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def member_id(pipeline_home, grant) -> str:
    """A member with plenty of history, who consented to the test bank."""
    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet")
    snap = snap[(snap.entity_type == "member") & (snap.transactions_365d > 40)]
    subject = snap.entity_id.iloc[0]
    grant("member", subject)
    return subject


def test_the_bento_carries_the_code_the_migrations_and_pinned_dependencies(bento):
    _, folder, info, _ = bento
    src = folder / "src"
    assert info["service"] == "serving.service:CoopScore" and info["name"] == "coopscore"
    for package in ("settings", "data_contracts", "features", "training", "evaluation", "governance",
                    "loan_book", "records", "scoring", "ranking", "serving", "coopscore"):
        assert (src / package / "__init__.py").exists(), package
    assert (src / "records/migrations/env.py").exists()
    assert (src / "records/migrations/versions/0001_initial.py").exists()
    assert (src / "serving/web/templates/base.html").exists()
    for left_out in ("tests", "var", ".venv", "notebooks", "benchmarks"):
        assert not (src / left_out).exists(), left_out
    requirements = (folder / "env/python/requirements.txt").read_text().splitlines()
    pins = [line for line in requirements if line.strip() and not line.startswith(("#", "-"))]
    assert all("==" in line for line in pins), [line for line in pins if "==" not in line]
    from importlib.metadata import version

    for package in ("lightgbm", "mlflow", "bentoml", "sqlalchemy", "alembic"):
        assert f"{package}=={version(package)}" in {p.split(";")[0].strip().lower() for p in pins}, package
    assert not any(line.lower().startswith(("coopscore", "-e", "pytest", "playwright")) for line in pins)


def test_the_labels_pin_the_champion_versions(bento, pipeline_home):
    from training import registry

    labels = bento[2]["labels"]
    registry.use_store(pipeline_home)
    for subject in ("member", "cooperative"):
        assert labels[f"{subject}_model_version"] == str(registry.champion_version(subject).version)
    assert labels["tracking_store"] == pipeline_home.tracking_uri
    assert labels["coopscore_version"] and labels["git_commit"]


def test_served_from_the_store_not_from_the_checkout(served, bento):
    proc, _, cwd = served
    _, folder, _, _ = bento
    server = psutil.Process(proc.pid)
    assert Path(server.cwd()).resolve() == cwd.resolve() != ROOT
    workers = server.children(recursive=True)
    assert workers
    for worker in workers:  # BentoML's workers run in the Bento's own copy of the code
        assert Path(worker.cwd()).resolve() == (folder / "src").resolve()
    # ... and imported it from there: Python wrote the bytecode next to the Bento's sources.
    assert (folder / "src/serving/__pycache__").is_dir()
    assert list((folder / "src/serving/__pycache__").glob("service.*.pyc"))
    assert list((folder / "src/scoring/__pycache__").glob("scorer.*.pyc"))


def test_a_consented_member_is_scored_by_the_champion_the_labels_name(served, bento, bank_token, member_id):
    _, base, _ = served
    labels = bento[2]["labels"]
    with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {bank_token}"}) as client:
        response = client.post("/v1/scores", json={
            "subject_type": "member", "subject_id": member_id,
            "application": {"amount_vnd": 50_000_000, "term_months": 12, "purpose": "working_capital"}})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "scored" and 0 <= body["pd"] <= 1
        assert body["model"]["version"] == labels["member_model_version"]
        status = client.get("/v1/status").json()
    for subject in ("member", "cooperative"):
        assert status["models"][subject] == labels[f"{subject}_model_version"]
