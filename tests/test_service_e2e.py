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


def test_unknown_id_is_404_with_a_message(server):
    response = server.post("/v1/scores", json=_body("TV9999999"))
    assert response.status_code == 404
    assert "TV9999999" in response.json()["message"]


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
