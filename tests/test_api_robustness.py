"""The service under change and abuse: a new champion is picked up without a restart and without a
failed request, a broken one is refused while the last good model keeps serving, a missing model
stops the start with a clear message, and a bank that floods gets 429 with Retry-After."""
from __future__ import annotations

import shutil
import threading
import time

import httpx
import pytest
from mlflow import MlflowClient

from settings import Paths
from serving.launcher import start_server, stop_server
from training import registry

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def home(pipeline_home, tmp_path_factory) -> Paths:
    """A private copy of the trained home: these tests move its champion alias."""
    copy = Paths(tmp_path_factory.mktemp("robust") / "home")
    shutil.copytree(pipeline_home.home, copy.home, ignore=shutil.ignore_patterns("bentoml", "*.log"))
    return copy


@pytest.fixture(scope="module")
def member_id(home) -> str:
    import pandas as pd

    snap = pd.read_parquet(home.features / "snapshot.parquet")
    return snap[(snap.entity_type == "member") & (snap.transactions_365d > 40)].entity_id.iloc[0]


@pytest.fixture(scope="module")
def server(home, member_id):
    from datetime import datetime, timedelta, timezone

    from records import Operator, Records

    with Records(home) as records:
        tokens = {bank: records.add_bank(bank, bank, ["scores:read"]).token
                  for bank in ("robust-bank", "slow-bank")}
        for bank in tokens:
            records.grant_consent("member", member_id, bank, purpose="credit_scoring",
                                  expires_at=datetime.now(timezone.utc) + timedelta(days=30),
                                  source="operator", actor=Operator("tests"))
    proc, base = start_server(home.home, env={"COOPSCORE_RELOAD_SECONDS": "1",
                                              "COOPSCORE_RATE_LIMITS": "slow-bank=0.5/5"})
    with httpx.Client(base_url=base, timeout=30,
                      headers={"Authorization": f"Bearer {tokens['robust-bank']}"}) as client:
        client.slow_token = tokens["slow-bank"]
        yield client
    stop_server(proc)


def _body(member_id, amount=30_000_000):
    return {"subject_type": "member", "subject_id": member_id,
            "application": {"amount_vnd": amount, "term_months": 12, "purpose": "inputs"}}


def _new_version(home: Paths, source: str | None = None) -> str:
    """Register another version of the member model (the champion's artifacts, or a broken path)."""
    registry.use_store(home)
    client = MlflowClient()
    champion = registry.champion_version("member")
    created = client.create_model_version("coopscore-member", source or champion.source,
                                          run_id=champion.run_id)
    return str(created.version)


def _wait_for(predicate, seconds=30.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_new_champion_is_served_without_restart_or_failed_requests(server, home, member_id):
    before = server.get("/v1/status").json()["models"]["member"]
    new = _new_version(home)
    codes, versions, stop = [], set(), threading.Event()

    def hammer():
        while not stop.is_set():
            response = server.post("/v1/scores", json=_body(member_id))
            codes.append(response.status_code)
            if response.status_code == 200:
                versions.add(response.json()["model"]["version"])

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        time.sleep(1.0)
        MlflowClient().set_registered_model_alias("coopscore-member", registry.CHAMPION, new)
        switched = _wait_for(lambda: server.get("/v1/status").json()["models"]["member"] == new)
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join()
    assert switched, server.get("/v1/status").json()
    assert set(codes) == {200} and len(codes) > 20
    assert versions == {before, new}


def test_a_broken_champion_is_refused_and_the_last_good_model_keeps_serving(server, home, member_id):
    serving_now = server.get("/v1/status").json()["models"]["member"]
    broken = _new_version(home, source=str(home.home / "no-such-model"))
    MlflowClient().set_registered_model_alias("coopscore-member", registry.CHAMPION, broken)
    assert _wait_for(lambda: "member" in server.get("/v1/status").json()["reload_failures"])
    status = server.get("/v1/status").json()
    assert status["models"]["member"] == serving_now
    assert status["reload_failures"]["member"].startswith(f"version {broken}:")
    response = server.post("/v1/scores", json=_body(member_id))
    assert response.status_code == 200 and response.json()["model"]["version"] == serving_now


def test_a_flooding_bank_gets_429_with_retry_after(server, member_id):
    """slow-bank may send 0.5 requests a second in bursts of 5, per worker process (two by default,
    each with its own bucket and half the rate)."""
    codes, retry = [], None
    for _ in range(20):
        response = server.post("/v1/scores", json=_body(member_id),
                               headers={"Authorization": f"Bearer {server.slow_token}"})
        codes.append(response.status_code)
        if response.status_code == 429:
            retry = response.headers.get("Retry-After")
            assert response.json()["error"] == "rate_limited"
            break
    assert codes[:5] == [200] * 5 and codes[-1] == 429 and len(codes) <= 11
    assert 1 <= int(retry) <= 4
    other = server.post("/v1/scores", json=_body(member_id))  # another bank is not held back
    assert other.status_code == 200


def _serve(home: Paths) -> "subprocess.CompletedProcess":
    import os
    import subprocess
    import sys

    from serving.launcher import free_port

    env = {**os.environ, "COOPSCORE_HOME": str(home.home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "coopscore.cli", "serve", "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=120)


def test_without_a_champion_serve_refuses_to_start_and_says_why(pipeline_home, tmp_path):
    empty = Paths(tmp_path / "no-model")
    shutil.copytree(pipeline_home.features, empty.features)
    shutil.copytree(pipeline_home.clean, empty.clean)
    done = _serve(empty)
    assert done.returncode == 1
    assert "no champion model" in done.stdout and "coopscore train" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_a_broken_champion_at_start_is_a_clear_error(home, tmp_path):
    copy = Paths(tmp_path / "broken")
    shutil.copytree(home.home, copy.home, ignore=shutil.ignore_patterns("bentoml", "*.log"))
    broken = _new_version(copy, source=str(copy.home / "no-such-model"))
    MlflowClient().set_registered_model_alias("coopscore-member", registry.CHAMPION, broken)
    done = _serve(copy)
    assert done.returncode == 1
    assert f"the member champion (version {broken}) cannot be loaded" in done.stdout
    assert "coopscore rollback" in done.stdout
