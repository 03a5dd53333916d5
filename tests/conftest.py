"""Shared fixtures: one small but real data set, ingested and trained once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from settings import Paths, reset_settings

SMALL_MEMBERS = 3000
SMALL_COOPERATIVES = 1000


@pytest.fixture(autouse=True)
def _settings_read_again_after_each_test():
    """Settings are read once per process; a test that changes a COOPSCORE_* variable (monkeypatch
    undoes it afterwards) must not leave its values behind for the next test."""
    yield
    reset_settings()


@pytest.fixture(scope="session")
def pipeline_home(tmp_path_factory) -> Paths:
    """generate -> ingest -> features snapshot -> train both models, in a temporary COOPSCORE_HOME."""
    from coopscore.synthetic import generate
    from data_contracts.ingest import ingest
    from features.snapshot import build_snapshot
    from governance.pipeline import train_and_promote
    from governance.promotion import promote

    home = tmp_path_factory.mktemp("coopscore-home")
    paths = Paths(home)
    os.environ["COOPSCORE_HOME"] = str(home)
    os.environ.pop("COOPSCORE_TRACKING_URI", None)
    reset_settings()  # settings are read once per process: read them again for this home
    generate(paths.raw, members=SMALL_MEMBERS, cooperatives=SMALL_COOPERATIVES, seed=11)
    report = ingest(paths.raw, paths.clean, paths.quarantine)
    assert all(t.reconciles for t in report.tables)
    build_snapshot(paths.clean, paths.features)
    for subject in ("member", "cooperative"):
        result = train_and_promote(paths, subject)
        if not result.promoted:  # what a model owner does with a small sample: override, in writing
            promote(paths, subject, result.version,
                    override="test data set: 3,000 members, too small for the stability and fairness gates")
    return paths


@pytest.fixture(scope="session")
def clean_dir(pipeline_home) -> Path:
    return pipeline_home.clean


BANK_SCOPES = ("scores:read", "scores:batch")  # what a partner bank's key may hold


@pytest.fixture(scope="session")
def records(pipeline_home):
    """The service's records in the pipeline home (the server started on that home reads them)."""
    from records import Records

    with Records(pipeline_home) as store:
        yield store


@pytest.fixture(scope="session")
def bank_token(records) -> str:
    """A partner bank with both scoring scopes; its token goes in `Authorization: Bearer ...`."""
    return records.add_bank("testbank", "Test bank", BANK_SCOPES).token


@pytest.fixture(scope="session")
def platform_token(records) -> str:
    """The platform's own key (consents:write, audit:read): the only principal that writes consents."""
    return records.add_platform("platform", "E-cooperative platform").token


@pytest.fixture(scope="session")
def grant(records):
    """grant(subject_type, subject_id, bank_id="testbank") -> consent id: explicit, for a year."""
    from datetime import datetime, timedelta, timezone

    def _grant(subject_type: str, subject_id: str, bank_id: str = "testbank") -> str:
        from records import Operator

        row = records.grant_consent(subject_type, subject_id, bank_id, purpose="credit_scoring",
                                    expires_at=datetime.now(timezone.utc) + timedelta(days=364),
                                    source="operator", actor=Operator("tests"))
        return row["consent_id"]
    return _grant
