"""End to end: the real BentoML server, started on a free port, called over HTTP."""
from __future__ import annotations

import httpx
import pandas as pd
import pytest

from serving.launcher import start_server, stop_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(pipeline_home, bank_token):
    proc, base = start_server(pipeline_home.home)
    with httpx.Client(base_url=base, timeout=30,
                      headers={"Authorization": f"Bearer {bank_token}"}) as client:
        yield client
    stop_server(proc)


@pytest.fixture(scope="module")
def member(pipeline_home, grant):
    """A member with plenty of history, its legal form (for the lending limit), and its consent."""
    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet")
    snap = snap[(snap.entity_type == "member") & (snap.transactions_365d > 40)]
    members = pd.read_parquet(pipeline_home.clean / "members.parquet")
    row = members[members.member_id.isin(snap.entity_id)].iloc[0]
    grant("member", row.member_id)
    return row


def _body(member_id, amount=50_000_000, **extra):
    return {"subject_type": "member", "subject_id": member_id,
            "application": {"amount_vnd": amount, "term_months": 12, "purpose": "working_capital"},
            **extra}


def test_health_and_docs(server):
    assert server.get("/healthz").status_code == 200
    assert server.get("/readyz").status_code == 200
    spec = server.get("/v1/openapi.json").json()
    assert "/scores" in spec["paths"] or "/v1/scores" in spec["paths"]
    assert server.get("/v1/docs").status_code == 200


def test_score_a_member(server, member):
    response = server.post("/v1/scores", json=_body(member.member_id))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "scored"
    assert 0 < body["pd"] < 1 and body["grade"] in "ABCDEF"
    exp = body["explanation"]
    total = exp["base_value"] + sum(c["contribution"] for c in exp["contributions"])
    assert total == pytest.approx(exp["log_odds"], abs=1e-9)
    assert len(exp["contributions"]) > 20
    assert 1 <= len(body["reasons"]) <= 4
    contributions = [r["contribution"] for r in body["reasons"]]
    assert contributions == sorted(contributions, reverse=True) and min(contributions) > 0
    for reason in body["reasons"]:
        assert reason["code"] and reason["text_vi"] and reason["text_en"] and reason["feature"]
    assert body["model"]["name"] == "coopscore-member" and body["model"]["version"]
    assert len(body["request_id"]) >= 16


def test_a_larger_loan_never_lowers_the_risk(server, member):
    small = server.post("/v1/scores", json=_body(member.member_id, amount=10_000_000)).json()
    large = server.post("/v1/scores", json=_body(member.member_id, amount=250_000_000)).json()
    assert large["pd"] >= small["pd"] * (1 - 1e-12)  # equal when no split separates them


def test_score_a_cooperative(server, pipeline_home, grant):
    coop = pd.read_parquet(pipeline_home.clean / "cooperatives.parquet").iloc[0]
    grant("cooperative", coop.cooperative_id)
    response = server.post("/v1/scores", json={
        "subject_type": "cooperative", "subject_id": coop.cooperative_id,
        "application": {"amount_vnd": 900_000_000, "term_months": 24, "purpose": "equipment"}})
    assert response.status_code == 200, response.text
    assert response.json()["model"]["name"] == "coopscore-cooperative"


def test_unknown_id_is_refused_like_an_unconsented_one(server):
    """A bank cannot tell an id that does not exist from one that did not consent to it."""
    response = server.post("/v1/scores", json=_body("TV9999999"))
    assert response.status_code == 403
    assert response.json()["error"] == "no_consent" and "TV9999999" in response.json()["message"]


@pytest.mark.parametrize("change,field", [
    ({"application": {"amount_vnd": -5, "term_months": 12, "purpose": "working_capital"}}, "application.amount_vnd"),
    ({"application": {"amount_vnd": 5_000_000, "term_months": 0, "purpose": "working_capital"}}, "application.term_months"),
    ({"application": {"amount_vnd": 5_000_000, "term_months": 12, "purpose": "holiday"}}, "application.purpose"),
    ({"application": {"amount_vnd": "a lot", "term_months": 12, "purpose": "inputs"}}, "application.amount_vnd"),
    ({"subject_type": "bank"}, "subject_type"),
    ({"as_of_date": "2025-13-45"}, "as_of_date"),
    ({"as_of_date": "2031-01-01"}, "as_of_date"),
])
def test_malformed_input_is_422_naming_the_field(server, member, change, field):
    response = server.post("/v1/scores", json={**_body(member.member_id), **change})
    assert response.status_code == 422, response.text
    assert field in [f["field"] for f in response.json()["fields"]]


def test_missing_application_is_422(server, member):
    body = _body(member.member_id)
    del body["application"]
    response = server.post("/v1/scores", json=body)
    assert response.status_code == 422
    assert "application" in response.json()["message"]


def test_above_the_decree_156_limit_is_422_with_the_reason(server, member):
    limit = {"household": 300_000_000, "household_business": 500_000_000}[member.member_type]
    response = server.post("/v1/scores", json=_body(member.member_id, amount=limit + 1))
    assert response.status_code == 422
    assert "Decree 156/2025" in response.json()["message"]
    ok = server.post("/v1/scores", json=_body(member.member_id, amount=limit))
    assert ok.status_code == 200


def test_too_little_history_says_so_instead_of_a_score(server, member, pipeline_home):
    tx = pd.read_parquet(pipeline_home.clean / "transactions.parquet")
    first = tx[tx.entity_id == member.member_id].ts.min()
    early = (first + pd.Timedelta(days=30)).date().isoformat()
    response = server.post("/v1/scores", json=_body(member.member_id, as_of_date=early))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "insufficient_history"
    assert body["pd"] is None and body["score"] is None
    assert "HISTORY_TOO_SHORT" in [m["code"] for m in body["missing"]]


def test_an_earlier_as_of_date_is_scored_from_earlier_data(server, member):
    latest = server.post("/v1/scores", json=_body(member.member_id)).json()
    earlier = server.post("/v1/scores", json=_body(member.member_id, as_of_date="2024-06-01")).json()
    assert earlier["as_of_date"] == "2024-06-01"
    assert earlier["status"] == "scored"
    assert earlier["explanation"]["log_odds"] != latest["explanation"]["log_odds"]


# -- authentication, consent, audit ------------------------------------------------------------
def test_no_key_or_a_wrong_key_is_401(server, member):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer cs_0123456789ab_wrong"},
                    {"Authorization": "Bearer nonsense"}):
        response = server.post("/v1/scores", json=_body(member.member_id), headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthenticated"


def test_a_key_without_the_scope_is_403(server, records, member):
    reader = records.add_bank("readonly-bank", "Read-only bank", ["scores:read"]).token
    batch = {"applications": [_body(member.member_id)]}
    response = server.post("/v1/scores:batch", json=batch, headers={"Authorization": f"Bearer {reader}"})
    assert response.status_code == 403
    assert "scores:batch" in response.json()["message"]


def test_without_consent_the_answer_is_403_with_the_reason_and_it_is_audited(server, records, pipeline_home):
    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet")
    stranger = snap[(snap.entity_type == "member") & (snap.transactions_365d > 40)].entity_id.iloc[-1]
    before = records.audit_count(subject_id=stranger)
    response = server.post("/v1/scores", json=_body(stranger))
    assert response.status_code == 403
    assert response.json()["error"] == "no_consent"
    assert "no active consent for testbank" in response.json()["message"]
    assert records.audit_count(subject_id=stranger) == before + 1


def test_consent_through_the_api_then_revoked(server, pipeline_home, platform_token):
    """The platform records a consent, the bank scores, the platform records the withdrawal."""
    from datetime import datetime, timedelta, timezone

    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet")
    subject = snap[(snap.entity_type == "member") & (snap.transactions_365d > 40)].entity_id.iloc[-2]
    platform = {"Authorization": f"Bearer {platform_token}"}
    until = (datetime.now(timezone.utc) + timedelta(days=180)).isoformat()
    body = {"subject_type": "member", "subject_id": subject, "bank_id": "testbank",
            "purpose": "credit_scoring", "expires_at": until, "source": "application_form"}
    granted = server.post("/v1/consents", json=body, headers=platform)
    assert granted.status_code == 201, granted.text
    assert granted.json()["granted_by"]
    assert server.post("/v1/scores", json=_body(subject)).status_code == 200
    revoked = server.post(f"/v1/consents/{granted.json()['consent_id']}/revoke",
                          json={"source": "member_page"}, headers=platform)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    refused = server.post("/v1/scores", json=_body(subject))
    assert refused.status_code == 403 and "revoked" in refused.json()["message"]
    log = server.get(f"/v1/subjects/member/{subject}/access-log", headers=platform).json()
    scores = [e for e in log if e["endpoint"] == "/v1/scores"]
    assert [e["http_status"] for e in scores[:2]] == [403, 200]
    assert {e["bank_id"] for e in scores} == {"testbank"}
    unknown = server.post("/v1/consents", json={**body, "subject_id": "TV9999999"}, headers=platform)
    assert unknown.status_code == 404
    bad_purpose = server.post("/v1/consents", json={**body, "purpose": "marketing"}, headers=platform)
    assert bad_purpose.status_code == 422
    assert [f["field"] for f in bad_purpose.json()["fields"]] == ["purpose"]


def test_each_answer_is_audited_with_the_model_version_and_a_feature_hash(server, records, member):
    response = server.post("/v1/scores", json=_body(member.member_id), headers={"X-Request-Id": "audit-check-1"})
    assert response.status_code == 200
    [entry] = [e for e in records.access_log("member", member.member_id)
               if e["request_id"] == response.json()["request_id"]]
    assert entry["client_request_id"] == "audit-check-1"
    assert entry["bank_id"] == "testbank" and entry["outcome"] == "scored"
    assert entry["model_version"] == response.json()["model"]["version"]
    assert len(entry["features_sha256"]) == 64
    assert f'"grade": "{response.json()["grade"]}"' in entry["answer"]


def test_under_concurrent_load_every_answer_has_its_audit_row(server, records, member):
    from concurrent.futures import ThreadPoolExecutor

    before = records.audit_count(bank_id="testbank", http_status=200)
    token = server.headers["Authorization"]

    def one(i):
        with httpx.Client(base_url=str(server.base_url), timeout=30, headers={"Authorization": token}) as c:
            return [c.post("/v1/scores", json=_body(member.member_id, amount=10_000_000 + i * 1_000_000 + k))
                    .status_code for k in range(25)]

    with ThreadPoolExecutor(8) as pool:
        codes = [c for batch in pool.map(one, range(8)) for c in batch]
    assert codes.count(200) == 200, set(codes)
    assert records.audit_count(bank_id="testbank", http_status=200) - before == 200


# -- batch and bad bodies -------------------------------------------------------------------------
def test_batch_keeps_order_and_reports_each_items_error(server, member):
    limit = {"household": 300_000_000, "household_business": 500_000_000}[member.member_type]
    items = [_body(member.member_id), _body("TV9999999"), _body(member.member_id, amount=limit + 1),
             _body(member.member_id, amount=20_000_000)]
    response = server.post("/v1/scores:batch", json={"applications": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["scored", "rejected", "rejected", "scored"]
    assert results[1]["http_status"] == 403 and results[1]["index"] == 1  # as if not consented
    assert results[2]["http_status"] == 422 and "Decree 156/2025" in results[2]["message"]
    single = server.post("/v1/scores", json=items[0]).json()
    assert results[0]["pd"] == pytest.approx(single["pd"], abs=1e-12)


def test_more_than_1000_applications_is_422_and_a_huge_body_is_413(server, member):
    too_many = {"applications": [_body(member.member_id)] * 1001}
    response = server.post("/v1/scores:batch", json=too_many)
    assert response.status_code == 422 and "applications" in response.json()["message"]
    huge = b'{"applications": [' + b" " * (3 * 1024 * 1024) + b"]}"
    response = server.post("/v1/scores:batch", content=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


def test_paths_no_route_matches_answer_json(server):
    for path in ("/v1/no-such-endpoint", "/v1/subjects/member/%0A/consents", "/nothing/here"):
        response = server.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/json"), path
        assert response.json()["error"] == "not_found"
