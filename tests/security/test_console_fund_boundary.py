"""The fund console against a curious or careless officer of another fund (issue 11), in-process
(Starlette's TestClient) over the pipeline_home world: a browser adds nothing to these checks.
Each test is named after the attack it stops."""
from __future__ import annotations

import csv
import io
import json

import pytest

from serving.web.applications import recent_member_applications
from web_browser import consent, console_client, fund_key, sign_in

OURS, THEIRS, SILENT = "quy-htx-ha-noi", "quy-htx-tp-hcm", "quy-htx-can-tho"
PERSONAL = ("member_id", "cooperative_id", "province", "business_sector", "requested_amount_vnd",
            "term_months", "purpose")


@pytest.fixture(scope="module")
def scorer(pipeline_home):
    from scoring.scorer import Scorer

    return Scorer(pipeline_home)


@pytest.fixture(scope="module")
def our_apps(pipeline_home):
    return recent_member_applications(pipeline_home, lender_id=OURS)


@pytest.fixture(scope="module")
def world(pipeline_home, records, scorer, our_apps):
    """Our fund's applicants consented to us AND to the other fund (consent is not addressing:
    the other fund must still see none of our applications)."""
    keys = {"ours": fund_key(records, OURS), "theirs": fund_key(records, THEIRS),
            "silent": fund_key(records, SILENT)}
    for member in dict.fromkeys(our_apps.entity_id):
        consent(records, member, OURS)
        consent(records, member, THEIRS)
    return keys


@pytest.fixture
def client(pipeline_home, records, scorer):
    with console_client(pipeline_home, records, scorer) as c:
        yield c


def _csv(response) -> list[dict]:
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))


def test_another_funds_officer_cannot_see_or_export_our_applicants(client, world, records, our_apps):
    csrf = sign_in(client, world["theirs"])
    page = client.get("/console").text
    exported = _csv(client.get("/console/export.csv"))
    theirs = {r["application_id"] for r in exported}
    assert theirs, "the other fund has its own queue"
    leaked = [a for a in our_apps.application_id if a in page or a in theirs]
    assert leaked == []
    # one of our applications, whose member has nothing addressed to the other fund
    target = next(a for a in our_apps.itertuples() if a.entity_id not in
                  {r["member_id"] for r in exported})
    unknown_page = client.get("/console/applicant/HS99999999")
    before = records.audit_count(subject_id=target.entity_id, outcome="not_addressed_to_fund")
    ours_page = client.get(f"/console/applicant/{target.application_id}")
    assert ours_page.status_code == 404  # exactly like an unknown id (the page names the path asked)
    assert ours_page.text.replace(target.application_id, "HS99999999") == unknown_page.text
    assert target.entity_id not in ours_page.text
    body = {"application_id": target.application_id, "amount_vnd": 1_000_000, "term_months": 12}
    whatif = client.post("/console/api/whatif", json=body, headers={"X-CSRF-Token": csrf})
    unknown_whatif = client.post("/console/api/whatif", json={**body, "application_id": "HS99999999"},
                                 headers={"X-CSRF-Token": csrf})
    assert (whatif.status_code, whatif.json()) == (404, unknown_whatif.json())
    decided = client.post("/console/decision", data={
        "application_id": target.application_id, "decision": "approve", "note": "x", "csrf": csrf,
        "amount_vnd": "1000000", "term_months": "12"})
    assert decided.status_code == 404
    # every attempt is in the member's access log as a refusal, none as a disclosure
    assert records.audit_count(subject_id=target.entity_id, outcome="not_addressed_to_fund") == before + 3
    assert records.audit_count(subject_id=target.entity_id, bank_id=THEIRS, http_status=200) == 0
    # filters cannot reach it either
    coop = client.get(f"/console?cooperative={target.cooperative_id}").text
    assert target.application_id not in coop


def test_our_officer_sees_our_applicants(client, world, our_apps):
    sign_in(client, world["ours"])
    exported = _csv(client.get("/console/export.csv"))
    assert [r["application_id"] for r in exported] != []
    assert {r["application_id"] for r in exported} == set(our_apps.application_id)
    assert all(r["consent"] == "active" and r["member_id"] for r in exported)


def test_a_row_without_consent_shows_nothing_personal(client, world, records, pipeline_home):
    apps = recent_member_applications(pipeline_home, lender_id=SILENT)  # nobody consented to it
    assert len(apps) > 10
    sign_in(client, world["silent"])
    before = records.audit_count(bank_id=SILENT, endpoint="/app/console", outcome="listed_no_consent")
    html = client.get("/console").text
    for app in apps.itertuples():
        assert app.application_id in html  # the reference is shown ...
        for secret in (app.entity_id, app.cooperative_id, f"{app.requested_amount_vnd:,}"):
            assert secret not in html, secret  # ... and nothing about who applied, or for how much
    for value in set(apps.province) | set(apps.business_sector):  # not even as a filter's choice
        assert f">{value}<" not in html, value
    members = apps.entity_id.nunique()
    assert records.audit_count(bank_id=SILENT, endpoint="/app/console",
                               outcome="listed_no_consent") == before + members  # every row shown
    row = records.access_log("member", apps.entity_id.iloc[0])[0]
    shown = json.loads(row["answer"])["applications"]
    assert set().union(*shown) == {"application_id", "consent"}

    exported = _csv(client.get("/console/export.csv"))
    assert {r["application_id"] for r in exported} == set(apps.application_id)
    assert all(r[c] == "" for r in exported for c in PERSONAL + ("score", "grade", "pd"))
    # a filter on a withheld attribute finds nothing (it would tell who applied)
    first = apps.iloc[0]
    for query in (f"cooperative={first.cooperative_id}", f"province={first.province}",
                  f"sector={first.business_sector}"):
        assert _csv(client.get(f"/console/export.csv?{query}")) == [], query
    page = client.get(f"/console/applicant/{first.application_id}")
    assert page.status_code == 403 and first.application_id in page.text
    for secret in (first.entity_id, first.cooperative_id, f"{first.requested_amount_vnd:,}"):
        assert secret not in page.text


def _scored(client, our_apps):
    """One of our applications the scorer scores at its own amount (on the queue page)."""
    exported = _csv(client.get("/console/export.csv"))
    return next(r for r in exported if r["status"] == "scored")


def test_decision_above_the_legal_limit_is_refused(client, world, records, our_apps):
    csrf = sign_in(client, world["ours"])
    app = _scored(client, our_apps)
    before = records.audit_count(subject_id=app["member_id"], outcome="decision_refused")
    response = client.post("/console/decision", data={
        "application_id": app["application_id"], "decision": "approve", "note": "x", "csrf": csrf,
        "amount_vnd": "9999999999999", "term_months": "12"})
    assert response.status_code == 422
    assert "Nghị định 156/2025/NĐ-CP" in response.text and "Decree 156/2025/ND-CP" in response.text
    assert records.audit_count(subject_id=app["member_id"], outcome="decision_refused") == before + 1
    assert records.audit_count(subject_id=app["member_id"], endpoint="/app/console/decision",
                               outcome="approved") == 0
    row = next(r for r in records.access_log("member", app["member_id"]) if r["outcome"] == "decision_refused")
    assert json.loads(row["answer"])["amount_vnd"] == 9_999_999_999_999
    # a bad amount is refused as well, saying what is wrong, and nothing is approved
    bad = client.post("/console/decision", data={
        "application_id": app["application_id"], "decision": "approve", "note": "x", "csrf": csrf,
        "amount_vnd": "-5", "term_months": "12"})
    assert bad.status_code == 422 and "nguyên dương" in bad.text
    assert records.audit_count(subject_id=app["member_id"], endpoint="/app/console/decision",
                               outcome="approved") == 0
    # and a decision within the limit is recorded
    fine = client.post("/console/decision", data={
        "application_id": app["application_id"], "decision": "approve", "note": "ok", "csrf": csrf,
        "amount_vnd": "5000000", "term_months": "12"})
    assert fine.status_code == 303
    assert records.audit_count(subject_id=app["member_id"], endpoint="/app/console/decision",
                               outcome="approved") == 1


def test_logout_ends_the_session_on_the_server(client, world):
    csrf = sign_in(client, world["ours"])
    cookie = client.cookies.get("coopscore_session")
    out = client.post("/console/logout", data={"csrf": csrf})
    assert out.status_code == 303
    client.cookies.set("coopscore_session", cookie)  # the old cookie, replayed
    page = client.get("/console")
    assert page.status_code == 200 and 'id="api_key"' in page.text and 'id="queue"' not in page.text
    assert client.get("/console/export.csv").status_code == 303  # to sign-in
    whatif = client.post("/console/api/whatif", json={"application_id": "HS00000001"},
                         headers={"X-CSRF-Token": csrf})
    assert whatif.status_code == 401


def test_logout_without_csrf_is_refused(client, world):
    sign_in(client, world["ours"])
    for forged in ({}, {"csrf": "forged"}):
        response = client.post("/console/logout", data=forged)
        assert response.status_code == 403
        assert 'id="queue"' in client.get("/console").text  # the session is still live


def test_whatif_form_without_csrf_is_refused(client, world, records, our_apps):
    """Another site cannot make a signed-in officer's browser re-score (and audit) an applicant."""
    csrf = sign_in(client, world["ours"])
    app = our_apps.iloc[0]
    path = f"/console/applicant/{app.application_id}"
    before = records.audit_count(subject_id=app.entity_id, outcome="whatif")
    for forged in ({}, {"csrf": "forged"}):
        response = client.post(path, data={"amount_vnd": "5000000", "term_months": "12", **forged})
        assert response.status_code == 403
    assert records.audit_count(subject_id=app.entity_id, outcome="whatif") == before
    fine = client.post(path, data={"amount_vnd": "5000000", "term_months": "12", "csrf": csrf})
    assert fine.status_code == 200
    assert records.audit_count(subject_id=app.entity_id, outcome="whatif") == before + 1
