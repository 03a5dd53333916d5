"""The web pages in a real headless Chromium: members' own page and the loan officers' console.

The console runs on the real BentoML server (serving.launcher) over the pipeline_home fixture.
The member page is checked twice: on the real server for access (own signed link, forged,
expired, raw id) and, since `ranking/` may not be computed, on the same web app served in-process
with a stand-in ranking that follows the agreed interface (ranking.rank / ranking.advice).
"""
from __future__ import annotations

import csv
import io
import json
import os
import stat
import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from records import Operator

from serving.launcher import start_server, stop_server
from serving.web import links
from web_browser import (CONTRAST_JS, LABELS_JS, LOAD_TIMES, ThreadServer, consent, launch,
                         load_time_ms, screenshot)
from web_browser import browser, page  # noqa: F401 (fixtures)
from web_browser import fund_key as new_fund_key

pytestmark = pytest.mark.e2e
sync_api = pytest.importorskip("playwright.sync_api")


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(pipeline_home):
    os.environ.pop(links.SECRET_ENV, None)  # the server and the tests share the file secret
    proc, url = start_server(pipeline_home.home)
    yield url
    stop_server(proc)
    print("load times (ms):", json.dumps({k: round(v) for k, v in LOAD_TIMES.items()}))


FUND = "quy-htx-trung-uong"  # a lender of vocabulary.LENDERS: its queue is what is addressed to it


@pytest.fixture(scope="module")
def queue_apps(pipeline_home) -> pd.DataFrame:
    """The applications the console lists (the same function the app and `coopscore demo` use)."""
    from serving.web.applications import recent_member_applications

    return recent_member_applications(pipeline_home, lender_id=FUND)


@pytest.fixture(scope="module")
def unconsented(pipeline_home, queue_apps) -> list[str]:
    """Three members of the queue, each with one application there and enough history to be scored,
    who have NOT consented to the fund (the rest of the queue has)."""
    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet",
                           columns=["entity_type", "entity_id", "history_days", "transactions_365d"])
    scorable = set(snap[(snap.entity_type == "member") & (snap.history_days >= 180)
                        & (snap.transactions_365d >= 12)].entity_id)
    once = queue_apps.entity_id.value_counts()
    picked = [m for m in queue_apps.entity_id if once[m] == 1 and m in scorable][5:8]
    assert len(picked) == 3, "the test data set has too few scorable members in the queue"
    return picked


@pytest.fixture(scope="module")
def fund_key(records, queue_apps, unconsented) -> str:
    """A cooperative development fund: its officers sign in with a key that has the `console` scope.
    The members of its queue consented to the fund when they applied, except `unconsented`."""
    key = new_fund_key(records, FUND)
    for member in dict.fromkeys(queue_apps.entity_id):
        if member not in unconsented:
            consent(records, member, FUND)
    return key


@pytest.fixture(scope="module")
def member_id(pipeline_home) -> str:
    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet")
    return snap[(snap.entity_type == "member") & (snap.transactions_365d > 40)].entity_id.iloc[0]


class StandInRanking:
    """Follows the interface of ranking.rank and ranking.advice (what the page is coded against)."""

    @staticmethod
    def latest_ranking(paths, member_id):
        if member_id == "TV_NEW":
            return {"member_id": member_id, "as_of_date": "2025-06-30", "status": "not_enough_data",
                    "score": None, "pd": None, "tier": None, "tier_vi": None, "tier_en": None,
                    "pct_cooperative": None, "pct_province": None, "pct_sector": None, "reasons": [],
                    "missing": [{"code": "HISTORY_TOO_SHORT", "vi": "Mới có 40 ngày giao dịch trên nền tảng; cần ít nhất 90 ngày.",
                                 "en": "Only 40 days of transactions on the platform; at least 90 are needed."}],
                    "model_version": "3"}
        return {"member_id": member_id, "as_of_date": "2025-06-30", "status": "ranked", "score": 603.4,
                "pd": 0.018, "tier": "GOLD", "tier_vi": "Vàng", "tier_en": "Gold",
                "pct_cooperative": 72.0, "pct_province": 64.0, "pct_sector": 58.0,
                "reasons": [{"code": "FORMALITY_LOW", "text_vi": "Phần lớn doanh thu bằng tiền mặt, ít hóa đơn điện tử",
                             "text_en": "Most revenue is in cash, few e-invoices"}],
                "missing": [], "model_version": "3"}

    @staticmethod
    def rank_history(paths, member_id):
        return [{"as_of_date": f"2025-0{m}-28", "score": s, "tier": "GOLD", "pct_cooperative": 0.7}
                for m, s in zip(range(1, 7), (571, 578, 590, 588, 597, 603.4))]

    @staticmethod
    def advise(paths, member_id):
        return [{"code": "MORE_EINVOICES", "text_vi": "Xuất hóa đơn điện tử cho mọi đơn bán hàng",
                 "text_en": "Issue an e-invoice for every sale", "current": 0.2, "target": 0.6,
                 "score_now": 603.4, "score_after": 611.0, "gain": 7.6},
                {"code": "MORE_VIETQR", "text_vi": "Nhận tiền qua VietQR thay vì tiền mặt",
                 "text_en": "Take payments by VietQR instead of cash", "current": 0.1, "target": 0.4,
                 "score_now": 603.4, "score_after": 608.2, "gain": 4.8}]


@pytest.fixture(scope="module")
def standin(pipeline_home, records):
    """The web app alone, served in-process, with the stand-in ranking (and the records, which
    hold each member's link version)."""
    from serving.web.app import web

    web.state.paths, web.state.ranking, web.state.records = pipeline_home, StandInRanking(), records
    with ThreadServer(web) as url:
        yield url
    web.state.ranking = None


def _token(paths, member_id, **kw):
    return links.member_token(member_id, links.web_secret(paths), **kw)


# -- the member page ---------------------------------------------------------------------------
def test_member_page_in_vietnamese_then_english(page, standin, pipeline_home):
    page.goto(f"{standin}/member/{_token(pipeline_home, 'TV0000001')}")
    assert page.get_attribute("html", "lang") == "vi"
    body = page.inner_text("main")
    assert "Vàng" in body and "603" in body
    assert "Bạn đứng trên 72% thành viên trong hợp tác xã" in body
    assert "Bạn đứng trên 64% thành viên trong tỉnh" in body
    assert "Xuất hóa đơn điện tử cho mọi đơn bán hàng" in body and "611" in body
    chart = page.locator("svg.chart")
    assert chart.count() == 1 and "571" in chart.get_attribute("aria-label")
    assert page.locator(".actions li").count() == 2
    load_time_ms(page, "member page (desktop)")
    screenshot(page, "member-vi")
    page.get_by_role("link", name="English").click()
    assert page.get_attribute("html", "lang") == "en"
    body = page.inner_text("main")
    assert "Gold" in body and "You rank above 72% of the members of your cooperative" in body
    assert "Issue an e-invoice for every sale" in body
    screenshot(page, "member-en")


def test_member_page_on_a_phone_has_no_horizontal_scroll(browser, standin, pipeline_home):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  device_scale_factor=2)
    page = context.new_page()
    page.goto(f"{standin}/member/{_token(pipeline_home, 'TV0000001')}")
    width = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], f"horizontal scroll on a phone: {width}"
    size = page.evaluate("() => parseFloat(getComputedStyle(document.querySelector('main p, main li')).fontSize)")
    assert size >= 18, f"member text is {size}px: too small for a phone"
    load_time_ms(page, "member page (phone)")
    screenshot(page, "member-phone")
    context.close()


def test_member_without_enough_data_sees_what_is_missing(page, standin, pipeline_home):
    page.goto(f"{standin}/member/{_token(pipeline_home, 'TV_NEW')}")
    body = page.inner_text("main")
    assert "Chưa đủ dữ liệu" in body and "cần ít nhất 90 ngày" in body
    page.goto(f"{standin}/member/{_token(pipeline_home, 'TV_NEW')}?lang=en")
    assert "Not enough data yet" in page.inner_text("main")


def test_member_access_only_through_own_signed_link(page, base, pipeline_home, member_id):
    secret_file = pipeline_home.service / links.SECRET_FILE
    own = f"{base}/app/member/{_token(pipeline_home, member_id)}"
    response = page.goto(own)
    assert response.status == 200 and page.get_attribute("html", "lang") == "vi"
    body = page.inner_text("main")
    ranked_before = (pipeline_home.home / "ranking").exists()  # tests/test_ranking.py may have ranked
    if not ranked_before:  # nothing ranked yet in this home: the page says so, clearly
        assert "Chưa tính xếp hạng" in body and "coopscore rank" in body
    try:
        from ranking import rank
    except ImportError:
        rank = None
    if rank is not None:  # then rank, as `coopscore rank` does, and see the real page
        rank.rank_members(pipeline_home)
        page.goto(own)
        body = page.inner_text("main")
        assert "Bạn đứng trên" in body and "trong hợp tác xã" in body, body
        runs = len(rank.rank_history(pipeline_home, member_id))
        assert page.locator("svg.chart").count() == (1 if runs >= 2 else 0)  # a line needs two runs
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    load_time_ms(page, "member page (real server)")
    screenshot(page, "member-real-server")
    forged = _token(pipeline_home, member_id)[:-4] + "AAAA"
    other_secret = links.member_token(member_id, b"not-the-secret")
    expired = _token(pipeline_home, member_id, expires=int(time.time()) - 60)
    for bad in (forged, other_secret, expired):
        response = page.goto(f"{base}/app/member/{bad}")
        assert response.status == 403
        text = page.inner_text("main")
        assert "Không có quyền truy cập" in text and "Access denied" not in text  # one language a page
    screenshot(page, "member-forbidden")
    assert page.goto(f"{base}/app/member/{member_id}").status == 404
    assert "Không tìm thấy trang" in page.inner_text("main")
    assert links.verify(_token(pipeline_home, member_id, expires=timedelta(days=1)),
                        links.web_secret(pipeline_home)) == member_id
    assert links.member_link(member_id, base, pipeline_home).startswith(f"{base}/app/member/")


# -- the console -------------------------------------------------------------------------------
def _login(page, base, key):
    page.goto(f"{base}/app/console")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_selector("#queue")


def test_keyboard_reaches_the_login_field_and_submit(page, base, fund_key):
    page.goto(f"{base}/app/console")
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.id || document.activeElement.tagName"))
        if reached[-1] == "api_key":
            break
    assert "api_key" in reached, reached
    page.keyboard.type(fund_key)
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.type") == "submit"
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "no visible focus outline"
    page.keyboard.press("Enter")
    page.wait_for_selector("#queue")
    cookie = next(c for c in page.context.cookies() if c["name"] == "coopscore_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_bad_keys_are_refused(page, base, records):
    page.goto(f"{base}/app/console")
    page.fill("#api_key", "cs_000000000000_" + "x" * 43)
    page.click("button[type=submit]")
    assert "không được chấp nhận" in page.inner_text("main")
    platform = records.add_platform("platform-only", "Platform").token  # not a lender: no console
    page.fill("#api_key", platform)
    page.click("button[type=submit]")
    assert "không có quyền" in page.inner_text("main")
    assert page.request.get(f"{base}/app/console/export.csv", max_redirects=0).status == 303


def _scores(page):
    return [float(s) for s in page.locator("#queue tbody td[data-score]").evaluate_all(
        "els => els.map(e => e.dataset.score)") if s != ""]


def test_queue_sorted_filtered_and_exported(page, base, fund_key):
    _login(page, base, fund_key)
    load_time_ms(page, "console queue")
    screenshot(page, "console-queue")
    scores = _scores(page)
    assert len(scores) > 20 and scores == sorted(scores, reverse=True)
    page.get_by_role("link", name="Sắp xếp theo Điểm").click()  # ascending now
    scores = _scores(page)
    assert scores == sorted(scores)
    page.get_by_role("link", name="Sắp xếp theo Hạng tín dụng").click()
    grades = [g for g in page.locator("#queue tbody td[data-grade]").evaluate_all(
        "els => els.map(e => e.dataset.grade)") if g]
    assert grades == sorted(grades)
    # filter: the most common grade and province of the queue, through the form
    common = pd.Series(grades).value_counts().index[0]
    page.select_option("#f-grade", common)
    page.click(".filters button[type=submit]")
    rows = page.locator("#queue tbody tr")
    n = rows.count()
    assert n >= 1 and set(page.locator("#queue tbody td[data-grade]").evaluate_all(
        "els => els.map(e => e.dataset.grade)")) == {common}
    province = page.locator("#queue tbody tr td:nth-child(4)").first.inner_text()
    page.select_option("#f-province", province)
    page.click(".filters button[type=submit]")
    ids = page.locator("#queue tbody tr td:first-child").all_inner_texts()
    assert 1 <= len(ids) <= n
    assert set(page.locator("#queue tbody tr td:nth-child(4)").all_inner_texts()) == {province}
    assert f"grade={common}" in page.url
    screenshot(page, "console-queue-filtered")
    href = page.get_attribute("#export", "href")
    response = page.request.get(f"{base}{href}")
    assert response.status == 200 and response.headers["content-type"].startswith("text/csv")
    exported = list(csv.DictReader(io.StringIO(response.text().lstrip("\ufeff"))))
    assert [r["application_id"] for r in exported] == ids
    assert {r["grade"] for r in exported} == {common} and {r["province"] for r in exported} == {province}


def test_applicant_chart_whatif_and_decision(page, base, fund_key, records):
    _login(page, base, fund_key)
    page.locator("#queue tbody tr").first.locator("a").click()
    page.wait_for_selector("#contributions svg")
    load_time_ms(page, "console applicant")
    svg = page.locator("#contributions svg")
    assert svg.get_attribute("role") == "img" and svg.get_attribute("aria-label")
    assert svg.locator("rect").count() == 10
    assert page.locator(".reasons li").count() >= 1 and "—" in page.inner_text(".reasons")
    screenshot(page, "console-applicant")
    application_id = page.url.rsplit("/", 1)[-1].split("?")[0]
    member = page.locator(".facts dd").first.inner_text()
    before = page.inner_text("#score")
    changed = None
    for amount in ("1000000", "280000000", "60000000"):  # the JS fetch to the JSON endpoint
        page.fill("#amount_vnd", amount)
        page.click("#whatif button[type=submit]")
        page.wait_for_function(f"() => document.querySelector('#decision input[name=amount_vnd]').value === '{amount}'")
        if page.inner_text("#score") != before:
            changed = amount
            break
    assert changed, "the score did not change with the amount"
    assert page.url.endswith(application_id)  # re-scored in place, no navigation
    screenshot(page, "console-whatif")
    shown = float(page.inner_text("#score"))
    page.fill("#note", "Dòng tiền ổn định; duyệt với số tiền thấp hơn.")
    before_rows = records.audit_count(endpoint="/app/console/decision", outcome="approved")
    page.get_by_role("button", name="Duyệt").click()
    page.wait_for_selector("p.ok")
    assert records.audit_count(endpoint="/app/console/decision", outcome="approved") == before_rows + 1
    row = next(r for r in records.access_log("member", member) if r["endpoint"] == "/app/console/decision")
    answer = json.loads(row["answer"])
    assert row["bank_id"] == FUND and row["outcome"] == "approved"
    assert answer["note"].startswith("Dòng tiền ổn định") and answer["score"] == shown
    assert answer["amount_vnd"] == int(changed) and answer["application_id"] == application_id
    # a decision without the form's CSRF token is refused and not recorded
    response = page.request.post(f"{base}/app/console/decision", form={
        "application_id": application_id, "decision": "decline", "note": "x", "csrf": "forged",
        "amount_vnd": "1000000", "term_months": "12"})
    assert response.status == 403
    assert records.audit_count(endpoint="/app/console/decision", outcome="declined") == 0


def test_whatif_without_javascript(browser, base, fund_key):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    _login(page, base, fund_key)
    page.locator("#queue tbody tr").first.locator("a").click()
    page.fill("#amount_vnd", "abc")
    page.click("#whatif button[type=submit]")
    assert "nguyên dương" in page.inner_text("#whatif-error")
    page.fill("#amount_vnd", "20000000")
    page.fill("#term_months", "24")
    page.click("#whatif button[type=submit]")
    assert page.locator("#score").count() == 1
    context.close()


# -- consent and sessions ------------------------------------------------------------------------
def _row(page, application_id):
    return page.locator(f"#queue tbody tr:has(a:text-is('{application_id}'))")


def _export(page, base, query):
    response = page.request.get(f"{base}/app/console/export.csv?{query}")
    assert response.status == 200
    return {r["application_id"]: r for r in csv.DictReader(io.StringIO(response.text().lstrip("\ufeff")))}


def test_only_consented_applicants_are_scored_and_every_view_is_audited(page, base, fund_key, records,
                                                                         queue_apps, unconsented):
    member = unconsented[0]
    app = queue_apps[queue_apps.entity_id == member].iloc[0]
    application_id, cooperative = app.application_id, app.cooperative_id
    _login(page, base, fund_key)
    assert page.locator("#queue tbody tr[data-consent=none]").count() == len(unconsented)
    assert f"{len(unconsented)} hồ sơ chưa có đồng ý" in page.inner_text("#no-consent-count")
    assert page.locator(f"#queue tbody tr:has(td:text-is('{member}'))").count() == 0  # withheld
    row = _row(page, application_id)
    assert row.get_attribute("data-consent") == "none"
    assert row.locator("td[data-score]").get_attribute("data-score") == ""
    assert row.locator("td[data-grade]").get_attribute("data-grade") == ""
    assert "Chưa có đồng ý cho quỹ" in row.inner_text() and "chưa đồng ý cho quỹ" in row.inner_text()
    screenshot(page, "console-queue-no-consent")
    shown_before = records.audit_count(endpoint="/app/console", subject_id=member)
    assert application_id not in _export(page, base, f"cooperative={cooperative}")  # no filter reveals it
    exported = _export(page, base, "")[application_id]
    assert (exported["score"], exported["grade"], exported["pd"]) == ("", "", "")
    assert (exported["member_id"], exported["cooperative_id"], exported["requested_amount_vnd"]) == ("", "", "")
    assert (exported["status"], exported["consent"]) == ("no_consent", "none")
    assert records.audit_count(endpoint="/app/console/export.csv", subject_id=member,
                               outcome="exported_no_consent") == 1  # the reference shown is audited

    # the applicant page explains, in the page's language, and shows nothing computed from the data
    response = page.goto(f"{base}/app/console/applicant/{application_id}")
    assert response.status == 403
    body = page.inner_text("main")
    assert "Chưa có đồng ý cho quỹ" in body and "No consent for this fund" not in body  # one language a page
    assert "91/2025/QH15" in body and application_id in body and member not in body
    for absent in ("#score", "#contributions", "#whatif", "#decision", ".reasons"):
        assert page.locator(absent).count() == 0, absent
    screenshot(page, "console-applicant-no-consent")
    csrf = page.get_attribute("input[name=csrf]", "value")
    refused = page.request.post(f"{base}/app/console/decision", form={
        "application_id": application_id, "decision": "approve", "note": "x", "csrf": csrf,
        "amount_vnd": "1000000", "term_months": "12"})
    assert refused.status == 403 and "cần đồng ý của thành viên" in refused.text()
    whatif = page.request.post(f"{base}/app/console/api/whatif", headers={"X-CSRF-Token": csrf},
                               data={"application_id": application_id, "amount_vnd": 1000000,
                                     "term_months": 12})
    assert whatif.status == 403 and whatif.json()["error"] == "no_consent"
    log = records.access_log("member", member)
    refusals = {(r["endpoint"], r["http_status"], r["outcome"], r["bank_id"]) for r in log}
    assert refusals == {(e, 403, "no_consent", FUND) for e in
                        ("/app/console/applicant", "/app/console/decision", "/app/console/api/whatif")} | {
        ("/app/console", 200, "listed_no_consent", FUND), ("/app/console/export.csv", 200, "exported_no_consent", FUND)}
    assert records.audit_count(endpoint="/app/console/decision", subject_id=member, http_status=200) == 0
    assert records.audit_count(endpoint="/app/console", subject_id=member, outcome="listed") == 0
    assert shown_before >= 1  # the row shown without consent: its reference, audited

    # the member consents: the score appears, and each view is in the member's access log
    granted = consent(records, member, FUND)
    page.goto(f"{base}/app/console?cooperative={cooperative}")
    row = _row(page, application_id)
    assert row.get_attribute("data-consent") == "active"
    assert float(row.locator("td[data-score]").get_attribute("data-score")) > 0
    assert records.audit_count(endpoint="/app/console", subject_id=member, outcome="listed") == 1
    assert _export(page, base, f"cooperative={cooperative}")[application_id]["score"] != ""
    assert records.audit_count(endpoint="/app/console/export.csv", subject_id=member, outcome="exported") == 1
    assert page.goto(f"{base}/app/console/applicant/{application_id}").status == 200
    page.wait_for_selector("#contributions svg")
    page.fill("#amount_vnd", "20000000")
    page.click("#whatif button[type=submit]")
    page.wait_for_function("() => document.querySelector('#decision input[name=amount_vnd]').value === '20000000'")
    views = [r for r in records.access_log("member", member)
             if r["http_status"] == 200 and r["endpoint"].startswith("/app/console")
             and not r["outcome"].endswith("_no_consent")]  # the grant itself is audited too
    assert {(r["endpoint"], r["outcome"]) for r in views} == {
        ("/app/console", "listed"), ("/app/console/export.csv", "exported"),
        ("/app/console/applicant", "viewed"), ("/app/console/api/whatif", "whatif")}
    assert all(r["bank_id"] == FUND and r["model_version"] for r in views)
    viewed = next(r for r in views if r["outcome"] == "viewed")
    assert json.loads(viewed["answer"])["application_id"] == application_id and viewed["features_sha256"]
    assert json.loads(views[0]["answer"])["amount_vnd"] == 20000000  # newest first: the what-if

    # the member withdraws it: hidden again on the very next load
    records.revoke_consent(granted, source="member_page", actor=Operator("tests"))
    page.goto(f"{base}/app/console")  # its cooperative is withheld again: no filter finds it
    row = _row(page, application_id)
    assert row.get_attribute("data-consent") == "revoked"
    assert row.locator("td[data-score]").get_attribute("data-score") == ""
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert f"đã rút lại đồng ý ngày {today}" in row.inner_text()
    assert page.goto(f"{base}/app/console/applicant/{application_id}").status == 403
    assert f"đã rút lại đồng ý ngày {today}" in page.inner_text("#no-consent")


def test_queue_page_writes_one_audit_row_per_member_shown(page, base, fund_key, records, queue_apps,
                                                          unconsented):
    _login(page, base, fund_key)
    coop = queue_apps.cooperative_id.value_counts().index[0]
    members = set(queue_apps[queue_apps.cooperative_id == coop].entity_id)
    before = records.audit_count(endpoint="/app/console")
    page.goto(f"{base}/app/console")
    shown = set(page.locator("#queue tbody tr[data-consent=active] td:nth-child(2)").all_inner_texts())
    withheld = page.locator("#queue tbody tr:not([data-consent=active])").count()
    assert shown == set(queue_apps.entity_id) - set(unconsented) and withheld == len(unconsented)
    # every row shown is audited, with or without consent: one row per member
    assert records.audit_count(endpoint="/app/console") == before + len(shown) + len(unconsented)
    before = records.audit_count(endpoint="/app/console")
    page.goto(f"{base}/app/console?cooperative={coop}")
    shown = set(page.locator("#queue tbody tr[data-consent=active] td:nth-child(2)").all_inner_texts())
    assert shown == members - set(unconsented)
    assert records.audit_count(endpoint="/app/console") == before + len(shown)


def test_a_revoked_key_ends_its_session_on_the_next_request(browser, base, records):
    key = records.issue_key(FUND, ["console"])
    context = browser.new_context()
    page = context.new_page()
    _login(page, base, key.token)
    records.revoke_key(key.key_id)  # this process, not the server's: no shared cache to clear
    response = page.reload()
    assert response.status == 401 and page.locator("#api_key").count() == 1
    message = page.inner_text("#login-error")
    assert "đã bị thu hồi hoặc hết hạn" in message and "revoked or has expired" not in message
    assert not [c for c in context.cookies() if c["name"] == "coopscore_session"]
    screenshot(page, "console-session-ended")
    # and every other console route refuses the old cookie as well
    other = browser.new_context()
    page = other.new_page()
    second = records.issue_key(FUND, ["console"])
    _login(page, base, second.token)
    records.revoke_key(second.key_id)
    whatif = page.request.post(f"{base}/app/console/api/whatif", headers={"X-CSRF-Token": "x"},
                               data={"application_id": "A", "amount_vnd": 1, "term_months": 1})
    assert whatif.status == 401 and whatif.json()["error"] == "session_ended"
    assert page.request.get(f"{base}/app/console/export.csv", max_redirects=0).status == 303
    context.close()
    other.close()


# -- accessibility basics ------------------------------------------------------------------------
def _check_accessibility(page, name):
    assert page.get_attribute("html", "lang") in ("vi", "en")
    assert page.evaluate(LABELS_JS) == [], f"{name}: inputs without a label"
    result = page.evaluate(CONTRAST_JS)
    assert result["checked"] > 3 and result["failures"] == [], f"{name}: {result['failures']}"
    levels = page.evaluate("() => [...document.querySelectorAll('h1,h2,h3,h4')].map(h => +h.tagName[1])")
    assert levels[0] == 1 and all(b - a <= 1 for a, b in zip(levels, levels[1:])), f"{name}: {levels}"
    for svg in page.locator("svg").all():
        assert svg.get_attribute("aria-label"), f"{name}: a chart without aria-label"


def test_accessibility_basics(page, base, standin, pipeline_home, fund_key):
    page.goto(f"{standin}/member/{_token(pipeline_home, 'TV0000001')}")
    _check_accessibility(page, "member page")
    page.goto(f"{base}/app/console")
    _check_accessibility(page, "login")
    _login(page, base, fund_key)
    _check_accessibility(page, "queue")
    page.locator("#queue tbody tr").first.locator("a").click()
    _check_accessibility(page, "applicant")
    assert page.locator("div[onclick], span[onclick]").count() == 0


def test_trend_chart_date_labels_never_overlap():
    """Dates under the trend line are ~70 units wide at font-size 20: labels closer than that
    overlapped on a phone (seen with six monthly rankings)."""
    import re

    from serving.web.charts import trend_svg

    for n in range(2, 25):
        history = [{"as_of_date": f"{2024 + m // 12}-{m % 12 + 1:02d}-01", "score": 550 + m} for m in range(n)]
        svg = trend_svg(history, "vi")
        labels = [(float(x), anchor) for x, anchor in
                  re.findall(r'<text x="([\d.]+)" y="\d+" text-anchor="(\w+)"[^>]*>\d{4}-\d\d<', svg)]
        assert labels[0][1] == "start" and labels[-1][1] == "end", n  # first and last dates shown
        # the right edge of each label stays left of the next label's left edge
        width = 70.0  # the text itself; the chart keeps LABEL_W = 76
        spans = [(x - {"start": 0, "middle": width / 2, "end": width}[a],) for x, a in labels]
        lefts = [s[0] for s in spans]
        assert all(b - a >= width for a, b in zip(lefts, lefts[1:])), (n, labels)
