"""The scoring API against a hostile or careless partner bank, on a real BentoML server over HTTP.
Each test is named after the attack (issue 11) it stops."""
from __future__ import annotations

import logging
from datetime import date, timedelta

import httpx
import pandas as pd
import pytest

from serving.launcher import start_server, stop_server

pytestmark = pytest.mark.e2e
MAX_DATES = 3  # the server below allows 3 distinct as_of dates per batch (the default is 31)


@pytest.fixture(scope="module")
def base(pipeline_home):
    proc, url = start_server(pipeline_home.home, log_path=pipeline_home.home / "security-server.log",
                             env={"COOPSCORE_BATCH_MAX_AS_OF_DATES": str(MAX_DATES)})
    yield url
    stop_server(proc)


@pytest.fixture(scope="module")
def bank(base, bank_token):
    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {bank_token}"}) as c:
        yield c


@pytest.fixture(scope="module")
def members(pipeline_home, grant) -> tuple[str, str]:
    """(a member who consented to the test bank, a member with history who did not)."""
    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet")
    rich = snap[(snap.entity_type == "member") & (snap.transactions_365d > 40)].entity_id.tolist()
    consented, stranger = rich[3], rich[-5]
    grant("member", consented)
    return consented, stranger


def _body(member_id: str, amount=30_000_000, term=12, **extra) -> dict:
    return {"subject_type": "member", "subject_id": member_id,
            "application": {"amount_vnd": amount, "term_months": term, "purpose": "inputs"}, **extra}


def test_a_bank_key_cannot_grant_consent_to_itself_over_the_api(bank, records, members):
    _, stranger = members
    before = records.audit_count(endpoint="/v1/consents", outcome="forbidden")
    response = bank.post("/v1/consents", json={
        "subject_type": "member", "subject_id": stranger, "bank_id": "testbank",
        "purpose": "credit_scoring", "expires_at": "2099-01-01T00:00:00Z", "source": "application_form"})
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    assert not records.consent_for("member", stranger, "testbank").active
    assert bank.post("/v1/scores", json=_body(stranger)).status_code == 403
    assert records.audit_count(endpoint="/v1/consents", outcome="forbidden") == before + 1


def test_unknown_and_unconsented_ids_get_the_same_answer(bank, records, members):
    _, stranger = members
    unknown = bank.post("/v1/scores", json=_body("TV9999998"))
    unconsented = bank.post("/v1/scores", json=_body(stranger))
    assert unknown.status_code == unconsented.status_code == 403
    a, b = unknown.json(), unconsented.json()
    assert a["error"] == b["error"] == "no_consent"
    assert a["message"].replace("TV9999998", "X") == b["message"].replace(stranger, "X")
    # the audit log, which only the platform reads, still says which was which
    assert records.audit_count(subject_id="TV9999998", outcome="unknown_subject") >= 1


@pytest.mark.parametrize("application,field", [
    ({"amount_vnd": "80000000", "term_months": 12, "purpose": "inputs"}, "application.amount_vnd"),
    ({"amount_vnd": 80_000_000, "term_months": True, "purpose": "inputs"}, "application.term_months"),
    ({"amount_vnd": True, "term_months": 12, "purpose": "inputs"}, "application.amount_vnd"),
    ({"amount_vnd": 80_000_000, "term_months": "12", "purpose": "inputs"}, "application.term_months"),
])
def test_numbers_sent_as_strings_or_booleans_are_refused(bank, members, application, field):
    consented, _ = members
    response = bank.post("/v1/scores", json={**_body(consented), "application": application})
    assert response.status_code == 422, response.text
    assert field in [f["field"] for f in response.json()["fields"]]


def test_client_request_ids_can_neither_collide_nor_overflow(bank, records, members):
    consented, _ = members
    same = {"X-Request-Id": "shared-id-1"}
    first, second = (bank.post("/v1/scores", json=_body(consented), headers=same) for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert first.json()["request_id"] != second.json()["request_id"]  # the server's own ids
    rows = [e for e in records.access_log("member", consented) if e["client_request_id"] == "shared-id-1"]
    assert {e["request_id"] for e in rows} == {first.json()["request_id"], second.json()["request_id"]}
    assert bank.post("/v1/scores", json=_body(consented), headers={"X-Request-Id": "x" * 64}).status_code == 200
    too_long = bank.post("/v1/scores", json=_body(consented), headers={"X-Request-Id": "x" * 65})
    assert too_long.status_code == 400
    assert too_long.json()["fields"][0]["field"] == "header.x-request-id"


def test_every_answer_says_nosniff(base, bank, members):
    consented, _ = members
    answers = [bank.post("/v1/scores", json=_body(consented)), bank.post("/v1/scores", json={}),
               httpx.get(f"{base}/v1/reason-codes"), httpx.get(f"{base}/v1/openapi.json"),
               httpx.get(f"{base}/v1/docs"), httpx.post(f"{base}/v1/scores", json=_body(consented)),
               httpx.get(f"{base}/app/console"), httpx.get(f"{base}/nothing/here"),
               httpx.get(f"{base}/readyz")]
    assert sorted({a.status_code for a in answers}) == [200, 401, 404, 422]
    for answer in answers:
        assert answer.headers.get("x-content-type-options") == "nosniff", answer.request.url
        assert "strict-transport-security" not in answer.headers  # plain HTTP: no HSTS
    behind_tls = httpx.get(f"{base}/v1/reason-codes", headers={"X-Forwarded-Proto": "https"})
    assert "max-age=" in behind_tls.headers["strict-transport-security"]


def test_a_missing_scope_is_refused_and_audited(base, records, members):
    consented, _ = members
    reader = records.add_bank("scores-only-bank", "Scores only", ["scores:read"]).token
    before = records.audit_count(bank_id="scores-only-bank", outcome="forbidden")
    response = httpx.post(f"{base}/v1/scores:batch", json={"applications": [_body(consented)]},
                          headers={"Authorization": f"Bearer {reader}"})
    assert response.status_code == 403 and "scores:batch" in response.json()["message"]
    for path in (f"/v1/subjects/member/{consented}/consents", f"/v1/subjects/member/{consented}/access-log"):
        assert httpx.get(f"{base}{path}", headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    assert records.audit_count(bank_id="scores-only-bank", outcome="forbidden") == before + 3


def test_reading_a_subjects_consents_or_access_log_is_itself_audited(base, records, members, platform_token):
    consented, _ = members
    platform = {"Authorization": f"Bearer {platform_token}"}
    before = records.audit_count(subject_id=consented, outcome="read")
    for suffix in ("consents", "access-log"):
        response = httpx.get(f"{base}/v1/subjects/member/{consented}/{suffix}", headers=platform)
        assert response.status_code == 200 and response.json()
    assert records.audit_count(subject_id=consented, outcome="read") == before + 2


def test_a_batch_of_many_as_of_dates_is_refused_before_any_work(bank, records, members):
    consented, _ = members
    day = date.fromisoformat(bank.get("/v1/status").json()["snapshot_date"])
    dates = [(day - timedelta(days=30 * k)).isoformat() for k in range(1, MAX_DATES + 2)]
    before = records.audit_count(bank_id="testbank")
    too_many = bank.post("/v1/scores:batch", json={"applications": [_body(consented, as_of_date=d) for d in dates]})
    assert too_many.status_code == 422, too_many.text
    assert f"at most {MAX_DATES}" in too_many.json()["message"]
    assert records.audit_count(bank_id="testbank") == before  # nothing computed, nothing disclosed
    enough = bank.post("/v1/scores:batch",
                       json={"applications": [_body(consented, as_of_date=d) for d in dates[:MAX_DATES]]})
    assert enough.status_code == 200
    assert [r["as_of_date"] for r in enough.json()["results"]] == dates[:MAX_DATES]


def test_a_batch_past_its_deadline_is_cancelled_and_audited_as_undelivered(pipeline_home, bank_token,
                                                                         records, members):
    consented, _ = members
    proc, url = start_server(pipeline_home.home, log_path=pipeline_home.home / "deadline-server.log",
                             env={"COOPSCORE_BATCH_DEADLINE_SECONDS": "0"})
    try:
        response = httpx.post(f"{url}/v1/scores:batch", timeout=60,
                              json={"applications": [_body(consented), _body(consented, amount=40_000_000)]},
                              headers={"Authorization": f"Bearer {bank_token}"})
    finally:
        stop_server(proc)
    assert response.status_code == 503 and response.json()["error"] == "batch_timeout"
    request_id = response.json()["request_id"]
    rows = [e for e in records.access_log("member", consented) if e["request_id"].startswith(request_id)]
    assert len(rows) == 2 and {e["outcome"] for e in rows} == {"cancelled_deadline"}
    assert all('"pd"' not in (e["answer"] or "") for e in rows)


def test_audit_failures_log_no_personal_data(caplog):
    from serving.service import _log_failure

    try:
        raise RuntimeError("INSERT failed for subject TV0000123 with pd 0.1234 and score 612.5")
    except RuntimeError as exc:
        with caplog.at_level(logging.ERROR, logger="coopscore.service"):
            _log_failure("could not write 1 audit rows", "req-abc", exc)
    text = caplog.text
    assert "req-abc" in text and "RuntimeError" in text
    for secret in ("TV0000123", "0.1234", "612.5"):
        assert secret not in text


def test_member_link_tokens_never_reach_the_servers_access_log(pipeline_home, members):
    """With the access log on, the server logs every path, but a member page's token is redacted."""
    from serving.web.links import member_link

    log_path = pipeline_home.home / "access-log-server.log"
    proc, url = start_server(pipeline_home.home, log_path=log_path, env={"COOPSCORE_ACCESS_LOG": "1"})
    try:
        link = member_link(members[0], url, paths=pipeline_home)
        token = link.rsplit("/", 1)[1]
        assert httpx.get(link, timeout=60).status_code in (200, 404)  # shown, or not ranked yet
        assert httpx.get(f"{url}/app/member/{token}x", timeout=60).status_code == 403  # forged
    finally:
        stop_server(proc)
    text = log_path.read_text()
    assert "/app/member/" in text, "the access log was not on: nothing was checked"
    assert token not in text and token[:20] not in text
