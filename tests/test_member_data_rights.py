"""A member's say over their own data (issue 15, item 4; Law 91/2025/QH15), in a real Chromium on
the real server: the member's own page lists who holds their consent (lender, purpose, until
when) and who looked at their data (the audit rows about them), in Vietnamese first; one click
withdraws a consent, at once (the bank's very next POST /v1/scores is refused by the API's own
consent check), audited with the member as the actor through the platform's one revoke path,
and the audit chain stays intact. A forged form post for another member's consent, a wrong CSRF
token and a revoked or expired link change nothing.
"""
from __future__ import annotations

import os
import re
import time

import httpx
import pandas as pd
import pytest

from records import Member, NotAllowed
from serving.launcher import start_server, stop_server
from serving.web import links
from web_browser import browser, page, screenshot  # noqa: F401 (fixtures)
from web_browser import fund_key as new_fund_key

pytestmark = pytest.mark.e2e
sync_api = pytest.importorskip("playwright.sync_api")

FUND = "quy-du-lieu-cua-ban"  # a second lender holding the member's consent (a fund)


@pytest.fixture(scope="module")
def base(pipeline_home, bank_token):
    os.environ.pop(links.SECRET_ENV, None)  # the server and the tests share the file secret
    proc, url = start_server(pipeline_home.home)
    yield url
    stop_server(proc)


@pytest.fixture(scope="module")
def bank(base, bank_token):
    """The partner bank 'testbank' calling the real API with its own key."""
    with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {bank_token}"}) as c:
        yield c


@pytest.fixture(scope="module")
def members(pipeline_home) -> tuple[str, str]:
    """Two scorable members no other test module consents for (taken from the end of the list)."""
    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet",
                           columns=["entity_type", "entity_id", "history_days", "transactions_365d"])
    ok = snap[(snap.entity_type == "member") & (snap.history_days >= 180) & (snap.transactions_365d > 40)]
    # nobody with a loan application: the console tests consent applicants to their funds
    applied = set(pd.read_parquet(pipeline_home.clean / "loan_applications.parquet", columns=["entity_id"]).entity_id)
    ids = sorted(set(ok.entity_id) - applied)
    return ids[-3], ids[-4]


@pytest.fixture(scope="module")
def consents(records, grant, members) -> dict[str, str]:
    """Member A consents to testbank and to FUND; member B to testbank."""
    a, b = members
    new_fund_key(records, FUND)
    for m in (a, b):
        assert not records.consent_for("member", m, "testbank").active, "another test consented for them"
    return {"a_bank": grant("member", a, "testbank"), "a_fund": grant("member", a, FUND),
            "b_bank": grant("member", b, "testbank")}


def _link(base, paths, records, member_id, **kw) -> str:
    token = links.member_token(member_id, links.web_secret(paths),
                               version=records.member_link_version(member_id), **kw)
    return f"{base}/app/member/{token}"


def _score(bank, member_id):
    return bank.post("/v1/scores", json={
        "subject_type": "member", "subject_id": member_id,
        "application": {"amount_vnd": 50_000_000, "term_months": 12, "purpose": "working_capital"}})


def _form(html: str) -> tuple[str, str]:
    """(action, csrf) of the first withdraw form of a member page."""
    action = re.search(r'<form method="post" action="([^"]+)"', html).group(1)
    return action.replace("&amp;", "&"), re.search(r'name="csrf" value="([^"]+)"', html).group(1)


# ------------------------------------------------------------------------------------------------
def test_member_sees_who_holds_consent_and_who_looked_in_vietnamese_then_english(
        page, base, bank, pipeline_home, records, members, consents, bank_token):
    a, b = members
    assert _score(bank, a).status_code == 200  # testbank looks: the member's log shows it
    assert _score(bank, b).status_code == 200  # someone else's look: never on A's page
    page.goto(_link(base, pipeline_home, records, a))
    assert page.get_attribute("html", "lang") == "vi"
    section = page.locator("#your-data")
    text = section.inner_text()
    assert "Dữ liệu của bạn" in text and "Ai đang được bạn đồng ý cho dùng dữ liệu" in text
    assert "Test bank" in text and f"Fund {FUND}" in text
    assert "Mục đích: chấm điểm tín dụng" in text and "Còn hiệu lực đến ngày" in text
    assert section.locator("li.consent-active").count() == 2
    log = section.locator("ol.access-log li")
    assert log.count() >= 3  # two consents recorded, one score
    first = log.first.inner_text()  # most recent first: testbank's score
    assert "Test bank" in first and "Chấm điểm tín dụng qua hệ thống của ngân hàng" in first
    assert "đã thấy điểm" in first and "hạng" in first
    assert "Ghi nhận đồng ý" in text and "Giờ Việt Nam." in text
    html = page.content()
    key_id = bank_token.split("_")[1]
    for secret in (key_id, bank_token, b, consents["b_bank"], "operator:tests", "prev_hash"):
        assert secret not in html, f"{secret} leaked onto the member's page"
    page.get_by_role("link", name="English").click()
    assert page.get_attribute("html", "lang") == "en"
    text = page.locator("#your-data").inner_text()
    assert "Your data" in text and "Who holds your consent" in text and "Who looked at your data" in text
    assert "Purpose: credit scoring" in text and "Valid until" in text
    assert page.get_by_role("button", name="Withdraw consent from Test bank").count() == 1
    assert "Credit score through the bank's system" in text and "saw score" in text


def test_one_click_withdrawal_refuses_the_next_api_score_and_is_audited(
        page, base, bank, pipeline_home, records, members, consents):
    a, _ = members
    assert _score(bank, a).status_code == 200
    rows_before = records.audit_count()
    page.goto(_link(base, pipeline_home, records, a))
    page.get_by_role("button", name="Rút lại đồng ý cho Test bank").click()  # one click
    page.wait_for_selector("#your-data p.ok")
    text = page.locator("#your-data").inner_text()
    assert "Đã rút lại đồng ý cho Test bank" in text and "Bạn đã rút lại đồng ý lúc" in text
    assert page.get_by_role("button", name="Rút lại đồng ý cho Test bank").count() == 0
    assert page.get_by_role("button", name=f"Rút lại đồng ý cho Fund {FUND}").count() == 1  # untouched

    refused = _score(bank, a)  # the very next request: the API's own consent check refuses it
    assert refused.status_code == 403 and refused.json()["error"] == "no_consent", refused.text
    assert "revoked" in refused.json()["message"]
    assert records.consent_for("member", a, FUND).active  # only the one withdrawn

    row = next(c for c in records.list_consents("member", a) if c["consent_id"] == consents["a_bank"])
    assert row["revoked_at"] is not None and row["revoked_by"] == f"member:{a}"
    assert row["revoke_source"] == "member_page"
    log = records.access_log("member", a, limit=10)
    withdrawal = next(r for r in log if r["outcome"] == "consent_revoked")
    assert (withdrawal["bank_id"], withdrawal["key_id"], withdrawal["endpoint"]) == (
        "member", f"member:{a}", "consents.revoke")
    assert consents["a_bank"] in withdrawal["answer"] and "member_page" in withdrawal["answer"]
    assert log[0]["outcome"] == "no_consent" and log[0]["bank_id"] == "testbank"  # the refusal
    assert records.audit_count() == rows_before + 2  # the withdrawal and the refused score
    report = records.verify_audit_chain()
    assert report.intact, report.detail

    page.reload()  # the member sees the refusal and their own withdrawal in their log
    entries = page.locator("#your-data ol.access-log li").all_inner_texts()
    assert "bị từ chối vì không có đồng ý của bạn" in entries[0]
    assert "Bạn" in entries[1] and "Rút lại đồng ý" in entries[1] and "Test bank" in entries[1]


def test_forged_withdrawals_change_nothing(base, pipeline_home, records, members, consents):
    a, b = members
    own = _link(base, pipeline_home, records, a)
    with httpx.Client(timeout=30, follow_redirects=False) as client:
        action, csrf = _form(client.get(own).text)
        rows = records.audit_count()
        # A's link, A's CSRF token, B's consent id: refused like an unknown id, B keeps consenting
        forged = client.post(base + action, data={"consent_id": consents["b_bank"], "csrf": csrf})
        assert forged.status_code == 404
        assert records.consent_for("member", b, "testbank").active
        for junk in ("cn_doesnotexist", "", "<script>", "x" * 200):
            assert client.post(base + action, data={"consent_id": junk, "csrf": csrf}).status_code == 404
        # no or a wrong CSRF token
        for bad in ("", "AAAA", csrf[:-2] + "xx", "ý"):
            response = client.post(base + action, data={"consent_id": consents["a_fund"], "csrf": bad})
            assert response.status_code == 403
        # A's CSRF token on B's link (tokens are bound to the link they came with)
        b_link = _link(base, pipeline_home, records, b)
        response = client.post(f"{b_link}/withdraw", data={"consent_id": consents["b_bank"], "csrf": csrf})
        assert response.status_code == 403
        # an expired link, and a revoked one: nothing to see and nothing to withdraw
        expired = _link(base, pipeline_home, records, a, expires=int(time.time()) - 60)
        response = client.post(f"{expired}/withdraw", data={"consent_id": consents["a_fund"], "csrf": csrf})
        assert response.status_code == 403
        links.revoke_links(a, records=records)
        page = client.get(own)
        assert page.status_code == 403 and "Dữ liệu của bạn" not in page.text and "Test bank" not in page.text
        response = client.post(base + action, data={"consent_id": consents["a_fund"], "csrf": csrf})
        assert response.status_code == 403
        assert records.audit_count() == rows  # nothing was written
        assert records.consent_for("member", a, FUND).active
        assert records.consent_for("member", b, "testbank").active
        # a fresh link works again, with its own token
        fresh = _link(base, pipeline_home, records, a)
        assert client.get(fresh).status_code == 200


def test_member_may_only_withdraw_their_own_consent_in_records(records, members, consents):
    a, b = members
    with pytest.raises(LookupError):
        records.revoke_consent(consents["b_bank"], source="member_page", actor=Member(a))
    assert records.consent_for("member", b, "testbank").active
    with pytest.raises(NotAllowed):
        records.grant_consent("member", a, "testbank", purpose="credit_scoring",
                              expires_at=pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=30),
                              source="member_page", actor=Member(a))
    with pytest.raises(ValueError):
        Member("TV 1; DROP")


def test_member_page_on_a_360px_phone(browser, base, pipeline_home, records, members, consents, tmp_path):
    a, _ = members
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True,
                                  device_scale_factor=2)
    page = context.new_page()
    page.goto(_link(base, pipeline_home, records, a))
    page.wait_for_selector("#your-data")
    width = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], f"horizontal scroll at 360 px: {width}"
    button = page.locator("#your-data button").first
    box = button.bounding_box()
    assert box["height"] >= 44 and box["x"] + box["width"] <= 360, box  # a thumb-sized, visible target
    shot = tmp_path / "member-your-data-360.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    screenshot(page, "member-your-data-phone")  # with the others, var/test-artifacts/screenshots/
    context.close()


@pytest.mark.parametrize("reserved", ["member", "operator"])
def test_no_bank_may_take_the_id_of_the_audit_logs_own_actors(tmp_path, reserved):
    # a withdrawal by a member is recorded with party "member"; a bank of that id would read it back
    from records import Records
    from settings import Paths

    records = Records(Paths(tmp_path))
    with pytest.raises(ValueError, match="reserved"):
        records.add_bank(reserved, "Look-alike", ["scores:read"])
