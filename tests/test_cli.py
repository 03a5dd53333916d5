"""The `coopscore` command as a user runs it: a real process, in its own COOPSCORE_HOME."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(home: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "COOPSCORE_HOME": str(home), "COLUMNS": "200"}
    env.pop("COOPSCORE_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "coopscore.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("demo-home")
    done = run_cli(home, "demo", "--no-serve", timeout=900)  # the demo's own size: its models pass the gates
    assert done.returncode == 0, done.stdout + done.stderr
    (home / "demo.out").write_text(done.stdout)
    return home


def done_text(home: Path) -> str:
    return (home / "demo.out").read_text()


def test_demo_runs_every_step_and_leaves_champions(demo_home):
    for table in ("transactions", "members", "loan_applications"):
        assert (demo_home / "data" / "clean" / f"{table}.parquet").exists()
    assert (demo_home / "features" / "snapshot.json").exists()
    _champions_are_promoted_or_openly_overridden(demo_home)
    assert "demo bank 'demo-bank': API key cs_" in done_text(demo_home)
    # members ranked over six months (a trend on their page), and one member's own signed link
    assert len(list((demo_home / "ranking" / "rankings").glob("as_of=*"))) == 6
    link = re.search(r"member page of (TV\d+) \(.+\): (http://localhost:3000/app/member/\S+)",
                     done_text(demo_home))
    assert link is not None, done_text(demo_home)
    from serving.web.links import verify, web_secret
    from settings import Paths

    token = link.group(2).rsplit("/", 1)[1]
    assert verify(token, web_secret(Paths(demo_home))) == link.group(1)
    again = run_cli(demo_home, "demo", "--no-serve")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "reusing the champion models" in again.stdout
    assert "reusing the member rankings" in again.stdout and "member page of" in again.stdout


def test_demo_bank_holds_bank_scopes_only_and_its_secrets_are_private(demo_home):
    """The demo hands a world-readable file no more: its bank key scores and signs in to the
    console, never writes consent; the consents are the platform's; the audit chain is intact."""
    import stat

    from records import LENDER_SCOPES, Records
    from settings import Paths

    service = demo_home / "service"
    for name in ("demo-bank.token", "demo-platform.token", "records.db", "web-secret"):
        if (service / name).exists() or name != "web-secret":
            assert stat.S_IMODE((service / name).stat().st_mode) == 0o600, name
    with Records(Paths(demo_home)) as records:
        banks = {b["bank_id"]: b for b in records.list_banks()}
        live = [k for k in banks["demo-bank"]["keys"] if k["revoked_at"] is None]
        assert live and all(set(k["scopes"]) <= set(LENDER_SCOPES) for k in live)
        assert banks["demo-platform"]["kind"] == "platform"
        platform_keys = {k["key_id"] for k in banks["demo-platform"]["keys"]}
        member = next(c for c in records.list_consents("member", _first_consented(demo_home)))
        assert member["source"] == "application_form"
        assert any(key in member["granted_by"] for key in platform_keys), member["granted_by"]
    verified = run_cli(demo_home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _first_consented(home: Path) -> str:
    """The member of the demo's curl example (consented to the demo bank)."""
    text = done_text(home)
    return re.search(r'subject_id\W+(TV\d+)', text).group(1)


def _champions_are_promoted_or_openly_overridden(home: Path) -> None:
    """Both subjects serve a champion; one the gates refused is there only by a written override,
    recorded on the version and said in the demo's own output (the refusal is shown, not hidden)."""
    import mlflow

    from settings import Paths
    from training import registry

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()  # other tests' store, restored
    try:
        registry.use_store(Paths(home))
        for subject in ("member", "cooperative"):
            version = registry.champion_version(subject)
            assert version is not None, subject
            overridden = "promotion.override_reason" in version.tags
            said = f"{subject} version {version.version} promoted by override for the demo" in done_text(home)
            assert overridden == said, (subject, version.tags)
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


def test_train_with_only_a_target_is_refused_with_advice(demo_home):
    done = run_cli(demo_home, "train", "--target", "default")
    assert done.returncode == 1
    assert "--table and --target go together" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_score_a_file_offline_every_row_accounted_for(demo_home, tmp_path):
    import pandas as pd

    snap = pd.read_parquet(demo_home / "features" / "snapshot.parquet")
    ids = snap[snap.entity_type == "member"].entity_id.head(300).tolist()
    apps = pd.DataFrame({"subject_type": "member", "subject_id": ids, "amount_vnd": 40_000_000,
                         "term_months": 12, "purpose": "working_capital"})
    apps.loc[7, "subject_id"] = "TV9999999"
    apps.to_csv(tmp_path / "apps.csv", index=False)
    done = run_cli(demo_home, "score", "--input", str(tmp_path / "apps.csv"),
                   "--output", str(tmp_path / "scores.parquet"))
    assert done.returncode == 0, done.stdout + done.stderr
    out = pd.read_parquet(tmp_path / "scores.parquet")
    assert len(out) == 300 and out.row_number.tolist() == list(range(1, 301))
    assert out.loc[7, "status"] == "rejected" and "TV9999999" in out.loc[7, "message"]
    scored = out[out.status == "scored"]
    assert len(scored) > 250 and scored.grade.isin(list("ABCDEF")).all()
    # a reason only when something raises the risk above the base; then in both languages
    with_reason = scored[scored.reason_1_code.notna()]
    assert len(with_reason) > 0.8 * len(scored)
    assert with_reason.reason_1_vi.str.len().gt(0).all() and with_reason.reason_1_en.str.len().gt(0).all()
    assert scored[scored.reason_1_code.isna()].reason_1_vi.isna().all()
    missing = run_cli(demo_home, "score", "--input", str(tmp_path / "none.csv"),
                      "--output", str(tmp_path / "x.csv"))
    assert missing.returncode == 1 and "does not exist" in missing.stdout


def test_rank_members_with_a_trend(demo_home):
    import pandas as pd

    def written() -> dict[str, int]:  # as_of=DATE -> when its file was written
        root = demo_home / "ranking" / "rankings"
        return {p.parent.name: p.stat().st_mtime_ns for p in root.glob("as_of=*/*.parquet")}

    before = written()  # the demo ranked six months already
    done = run_cli(demo_home, "rank", "--months", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    after = written()
    # the two latest dates are ranked again (replaced, not duplicated); the four older untouched
    assert len(before) == 6 and sorted(after) == sorted(before)
    assert sorted(d for d in after if after[d] != before[d]) == sorted(after)[-2:]
    runs = sorted((demo_home / "ranking" / "rankings").glob("as_of=*"))
    latest = pd.read_parquet(runs[-1])
    members = pd.read_parquet(demo_home / "features" / "snapshot.parquet")
    assert len(latest) == (members.entity_type == "member").sum()
    assert set(latest.status) <= {"ranked", "not_enough_data"}


def test_version_names_the_package_and_the_serving_models(demo_home):
    from importlib.metadata import version

    from training import registry
    from settings import Paths

    done = run_cli(demo_home, "--version")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"coopscore {version('coopscore')}" in done.stdout
    registry.use_store(Paths(demo_home))
    for subject in ("member", "cooperative"):
        champion = registry.champion_version(subject)
        assert f"{registry.model_name(subject)}: version {champion.version} (champion)" in done.stdout
