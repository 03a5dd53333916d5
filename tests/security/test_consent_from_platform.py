"""Attacks on consent: a bank writing its own, a consent for ever, for any purpose, unaudited.

Runs on SQLite and on PostgreSQL as the service role (so the role's grants are enough for consents).
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from settings.paths import Paths
from records import (CONSENT_MAX_DAYS, PURPOSES, NotAllowed, Operator, Principal, Records,
                             RecordsError)
from records.migrations import upgrade

from .test_audit_log import cluster, fresh_settings, roles  # noqa: F401 - fixtures

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
SOON = NOW + timedelta(days=90)


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, tmp_path):
    """Records with a lender (agribank), another lender (vbsp) and the platform (ecoop), and their principals."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'records.db'}"
    else:
        url = request.getfixturevalue("roles").app_url
    with Records(url=url) as records:
        bank = records.authenticate(records.add_bank("agribank", "Agribank", ["scores:read", "console"]).token)
        records.add_bank("vbsp", "VBSP", ["scores:read"])
        platform = records.authenticate(records.add_platform("ecoop", "E-cooperative platform").token)
        yield records, bank, platform


def grant(records, actor, bank_id="agribank", **kw):
    """A consent of member TV0000001 for `bank_id`, unless kw says otherwise."""
    values = dict(purpose="credit_scoring", expires_at=SOON, source="application_form", actor=actor, now=NOW)
    values.update(kw)
    return records.grant_consent("member", "TV0000001", bank_id, **values)


def test_a_bank_key_cannot_grant_consent_to_itself(world):
    records, bank, _ = world
    for target in ("agribank", "vbsp"):  # to itself, or to another bank
        with pytest.raises(NotAllowed, match="may not grant consent: only the platform records consents"):
            grant(records, bank, bank_id=target)
    assert records.list_consents("member", "TV0000001") == []
    assert not records.consent_for("member", "TV0000001", "agribank", at=NOW + timedelta(days=1)).active
    assert records.audit_count() == 0


def test_a_bank_key_dressed_as_the_platform_cannot_grant_consent(world):
    records, bank, _ = world
    forged = Principal(bank.bank_id, bank.key_id, frozenset({"consents:write"}), "platform")
    with pytest.raises(NotAllowed, match="only the platform"):
        grant(records, forged)
    stolen_id = Principal("ecoop", bank.key_id, frozenset({"consents:write"}), "platform")
    with pytest.raises(NotAllowed, match="only the platform"):
        grant(records, stolen_id)
    assert records.list_consents("member", "TV0000001") == []


def test_a_bank_key_cannot_withdraw_a_consent(world):
    records, bank, platform = world
    granted = grant(records, platform)
    with pytest.raises(NotAllowed, match="may not withdraw consent"):
        records.revoke_consent(granted["consent_id"], source="member_page", actor=bank)
    assert records.consent_for("member", "TV0000001", "agribank", at=NOW + timedelta(days=1)).active


def test_a_revoked_platform_key_cannot_grant_consent(world):
    records, _, platform = world
    records.revoke_key(platform.key_id)
    with pytest.raises(NotAllowed, match="revoked or expired"):
        grant(records, platform)


def test_a_lender_key_can_never_hold_a_platform_scope(world, tmp_path, monkeypatch):
    records, bank, platform = world
    for scopes in (["consents:write"], ["scores:read", "audit:read"]):
        with pytest.raises(ValueError, match="a lender's key can never hold the platform scope"):
            records.add_bank("sneaky", "Sneaky bank", scopes)
        with pytest.raises(ValueError, match="a lender's key can never hold the platform scope"):
            records.issue_key("agribank", scopes)
    with pytest.raises(ValueError, match="the platform's key does not score"):
        records.issue_key("ecoop", ["scores:read"])
    assert "sneaky" not in {b["bank_id"] for b in records.list_banks()}
    assert bank.scopes == {"scores:read", "console"} and platform.scopes == {"consents:write", "audit:read"}


def test_the_cli_gives_a_bank_no_platform_scope_and_the_platform_no_scoring(tmp_path, monkeypatch, fresh_settings):
    from coopscore.records_cli import banks_app, platform_app

    monkeypatch.setenv("COOPSCORE_HOME", str(tmp_path))
    monkeypatch.delenv("COOPSCORE_DATABASE_URL", raising=False)
    runner = CliRunner()
    refused = runner.invoke(banks_app, ["add", "agribank", "--name", "Agribank", "--scope", "consents:write"])
    assert refused.exit_code == 1 and "platform add-key" in refused.output and "Traceback" not in refused.output
    nameless = runner.invoke(platform_app, ["add-key", "ecoop"])
    assert nameless.exit_code == 1 and "--name" in nameless.output
    added = runner.invoke(platform_app, ["add-key", "ecoop", "--name", "E-cooperative platform"])
    assert added.exit_code == 0, added.output
    again = runner.invoke(platform_app, ["add-key", "ecoop"])  # a second key (rotation)
    assert again.exit_code == 0, again.output
    with Records(Paths(tmp_path)) as records:
        keys = [records.authenticate(r.output.strip().splitlines()[-1]) for r in (added, again)]
        assert {k.kind for k in keys} == {"platform"} and keys[0].key_id != keys[1].key_id
        assert all("scores:read" not in k.scopes for k in keys)
        records.add_bank("agribank", "Agribank", ["scores:read"])
    lender = runner.invoke(platform_app, ["add-key", "agribank"])
    assert lender.exit_code == 1 and "is a lender" in lender.output


def test_a_consent_cannot_outlive_the_configured_limit(world):
    records, _, platform = world
    assert CONSENT_MAX_DAYS == 365
    with pytest.raises(ValueError, match="at most 365 days"):
        grant(records, platform, expires_at=NOW + timedelta(days=367))
    with pytest.raises(ValueError, match="at most 365 days"):
        grant(records, platform, expires_at=date(2099, 12, 31))
    assert grant(records, platform, expires_at=(NOW + timedelta(days=365)).date())  # through that day
    with Records(url=str(records.url), consent_max_days=30) as short:
        with pytest.raises(ValueError, match="at most 30 days"):
            grant(short, platform, expires_at=NOW + timedelta(days=32))
    with pytest.raises(ValueError, match="consent_max_days"):
        Records(url=str(records.url), consent_max_days=0)


def test_a_consent_names_one_lender_and_one_listed_purpose(world):
    records, _, platform = world
    assert PURPOSES == ("credit_scoring",)
    with pytest.raises(ValueError, match="purpose 'marketing' is not one a consent can cover"):
        grant(records, platform, purpose="marketing")
    with pytest.raises(ValueError, match="ecoop is the platform, not a lender"):
        grant(records, platform, bank_id="ecoop")
    with pytest.raises(ValueError, match="source must be one of"):
        grant(records, platform, source="api")
    assert records.list_consents("member", "TV0000001") == [] and records.audit_count() == 0


def test_every_grant_and_withdrawal_says_who_and_is_audited(world):
    records, _, platform = world
    granted = grant(records, platform)
    revoked = records.revoke_consent(granted["consent_id"], source="member_page", actor=Operator("lan.nguyen"),
                                     now=NOW + timedelta(days=1))
    again = records.revoke_consent(granted["consent_id"], source="operator", actor=platform,
                                   now=NOW + timedelta(days=2))
    assert again["revoked_at"] == revoked["revoked_at"] and again["revoked_by"] == "operator:lan.nguyen"
    [row] = records.list_consents("member", "TV0000001")
    assert (row["granted_by"], row["source"], row["revoked_by"], row["revoke_source"]) == \
        (f"key:{platform.key_id}", "application_form", "operator:lan.nguyen", "member_page")
    log = records.access_log("member", "TV0000001")
    assert [(e["endpoint"], e["outcome"], e["bank_id"], e["key_id"]) for e in log] == [
        ("consents.revoke", "consent_revoked", "operator", "operator:lan.nguyen"),
        ("consents.grant", "consent_granted", "ecoop", platform.key_id)]
    answer = json.loads(log[1]["answer"])
    assert answer == {"consent_id": granted["consent_id"], "bank_id": "agribank", "purpose": "credit_scoring",
                      "source": "application_form", "expires_at": granted["expires_at"].isoformat()}
    assert json.loads(log[0]["answer"])["source"] == "member_page"
    assert records.verify_audit_chain().intact


def test_a_consent_whose_audit_row_cannot_be_written_is_not_recorded(tmp_path):
    with Records(url=f"sqlite:///{tmp_path / 'records.db'}") as records:
        records.add_bank("agribank", "Agribank", ["scores:read"])
        platform = records.authenticate(records.add_platform("ecoop", "E-cooperative platform").token)
        with records.engine.begin() as conn:  # the audit log refuses every row (a full disk, say)
            conn.exec_driver_sql("CREATE TRIGGER audit_down BEFORE INSERT ON audit_log "
                                 "BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END")
        with pytest.raises(Exception, match="audit log unavailable"):
            grant(records, platform)
        assert records.list_consents("member", "TV0000001") == []


def test_an_operator_name_cannot_smuggle_text_into_the_log():
    for bad in ("", "a" * 56, "root; DROP TABLE", "x\ny"):
        with pytest.raises(ValueError, match="operator name"):
            Operator(bad)


def test_consents_from_before_the_migration_keep_their_meaning(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO banks VALUES ('agribank', 'Agribank', '2026-01-01 00:00:00')")
        for cid, source in (("cn_cli", "cli"), ("cn_api", "api")):
            conn.execute(text("INSERT INTO consents VALUES (:c, 'member', 'TV1', 'agribank', 'credit_scoring', "
                              "'2026-01-01 00:00:00', '2026-12-31 00:00:00', NULL, :s)"), {"c": cid, "s": source})
    engine.dispose()
    with Records(url=url) as records:
        rows = {r["consent_id"]: r for r in records.list_consents("member", "TV1")}
        assert (rows["cn_cli"]["source"], rows["cn_cli"]["granted_by"]) == ("operator", "operator:unrecorded")
        assert (rows["cn_api"]["source"], rows["cn_api"]["granted_by"]) == ("application_form", "key:unrecorded")
        assert records.list_banks()[0]["kind"] == "lender"
        assert records.consent_for("member", "TV1", "agribank",
                                   at=datetime(2026, 6, 1, tzinfo=timezone.utc)).active


def test_records_error_is_exported_for_callers():
    assert issubclass(RecordsError, RuntimeError)


def test_a_bank_key_issued_with_platform_scopes_before_the_upgrade_loses_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO banks VALUES ('demo-bank', 'Demo bank', '2026-01-01 00:00:00')")
        for key_id, scopes in (("a" * 12, "scores:read scores:batch consents:write audit:read"),
                               ("b" * 12, "consents:write")):
            conn.execute(text("INSERT INTO api_keys (key_id, bank_id, secret_sha256, scopes, created_at) "
                              "VALUES (:k, 'demo-bank', :h, :s, '2026-01-01 00:00:00')"),
                         {"k": key_id, "h": "0" * 64, "s": scopes})
    engine.dispose()
    with Records(url=url) as records:
        keys = {k["key_id"]: k for k in records.list_banks()[0]["keys"]}
        assert keys["a" * 12]["scopes"] == ["scores:read", "scores:batch"] and keys["a" * 12]["revoked_at"] is None
        assert keys["b" * 12]["revoked_at"] is not None  # it held nothing a lender may keep
        # and a row written behind the code's back still gives a lender no platform scope
        with records.engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE api_keys SET scopes = 'scores:read audit:read' WHERE key_id = '{'a' * 12}'")
        assert records.key_principal("a" * 12).scopes == {"scores:read"}
