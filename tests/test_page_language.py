"""Every page speaks its language (issue 15, item 6), checked in a real headless Chromium on the
real server over the pipeline_home world.

A Vietnamese page shows no vocabulary code (`crop_farming`, `household`, `quy-htx-ha-noi`, ...),
no reason code (`REVENUE_LOW`, any ABC_DEF code) and no English reason text; an English page
shows no Vietnamese reason text and no code either. Only what a person reads is checked: the
visible text (`innerText`), not attributes: a reason code may sit in a tooltip (`title`), and the
CSV export keeps the codes for machines.
"""
from __future__ import annotations

import csv
import io
import os
import re

import pandas as pd
import pytest

from data_contracts import vocabulary as v
from data_contracts.labels import LABELS, VOCABULARIES, label, missing_labels
from features.catalogue import FEATURES
from features.reasons import REASONS
from serving.launcher import start_server, stop_server
from serving.web import links
from web_browser import consent, fund_key, screenshot
from web_browser import browser, page  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e
sync_api = pytest.importorskip("playwright.sync_api")

# A lender no other page test uses: what this module audits stays out of their members' logs.
LENDER = "demo-bank"


# -- what may not be read ----------------------------------------------------------------------------
def vocabulary_codes() -> set[str]:
    """Every code of every vocabulary in data_contracts/vocabulary.py (collections of strings that
    look like codes: lower case, digits, _ and -; the provinces are names, not codes)."""
    codes: set[str] = set()
    for name, value in vars(v).items():
        if name.startswith("_") or not name.isupper():
            continue
        items = []
        if isinstance(value, (tuple, frozenset, set, list)):
            items = list(value)
        elif isinstance(value, dict):
            items = list(value) + [x for x in value.values() if isinstance(x, str)]
        codes |= {x for x in items if isinstance(x, str) and re.fullmatch(r"[a-z][a-z0-9_-]*", x)}
    return codes


CODES = vocabulary_codes()
# a reason code, or any code of that form (missing-data codes, action codes): two upper-case words
# or more joined by "_" (province names and ids such as HTX000001 do not match)
REASON_CODE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
VI_REASONS = {r.vi for r in REASONS.values()}
EN_REASONS = {r.en for r in REASONS.values()}
VI_FEATURES = {f.vi for f in FEATURES}
EN_FEATURES = {f.en for f in FEATURES}


def problems(text: str, lang: str) -> list[str]:
    """What the visible text of a page in `lang` must not contain."""
    found = [f"reason code {c}" for c in sorted(set(REASON_CODE.findall(text)))]
    found += [f"reason code {c}" for c in REASONS if c in text and f"reason code {c}" not in found]
    if lang == "vi":
        # every code: a single English word (`livestock`, `cash`) is English on a Vietnamese page too
        found += [f"vocabulary code {c!r}" for c in sorted(CODES)
                  if re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", text)]
        found += [f"English reason text {t!r}" for t in sorted(EN_REASONS) if t in text]
    else:
        # codes written as codes; a one-word code is an English word on an English page
        found += [f"vocabulary code {c!r}" for c in sorted(CODES) if re.search(r"[_-]", c)
                  and re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", text)]
        found += [f"Vietnamese reason text {t!r}" for t in sorted(VI_REASONS) if t in text]
    return found


def visible(page) -> str:
    return page.evaluate("() => document.body.innerText")


def chart_words(page) -> set[str]:
    """The labels written in the page's SVG charts (innerText may leave SVG text out)."""
    return set(page.locator("svg text").all_text_contents())


def assert_speaks(page, lang: str, what: str) -> None:
    assert page.get_attribute("html", "lang") == lang, what
    found = problems(visible(page), lang)
    words = chart_words(page)
    other = EN_FEATURES - VI_FEATURES if lang == "vi" else VI_FEATURES - EN_FEATURES
    found += [f"chart label {w!r} in the other language" for w in sorted(words)
              if any(w == f or (w.endswith("…") and f.startswith(w[:-1])) for f in other)]
    found += [f"chart: {p}" for p in problems("\n".join(sorted(words)), lang)]
    assert not found, f"{what} ({lang}): " + "; ".join(found)


# -- labels -------------------------------------------------------------------------------------------
def test_every_vocabulary_code_has_both_labels():
    assert missing_labels() == []
    for name, codes in VOCABULARIES.items():
        for code in codes:
            vi, en = LABELS[name][code]
            assert vi.strip() and en.strip() and vi != code and en != code, (name, code)
    assert label("member_sector", "crop_farming", "vi") == "Trồng trọt"
    assert label("member_sector", "crop_farming", "en") == "Crop farming"
    assert label("lender", "quy-htx-ha-noi", "vi").startswith("Quỹ hỗ trợ phát triển hợp tác xã")
    assert label("member_sector", None, "vi") == "" and label("member_sector", float("nan"), "en") == ""
    # every code of the vocabulary module is in a declared vocabulary (the test's own list agrees)
    declared = {c for codes in VOCABULARIES.values() for c in codes}
    assert CODES <= declared, sorted(CODES - declared)

def test_the_check_finds_what_it_looks_for():
    """The checks themselves: a raw code, a reason code and the other language's reason text."""
    reason = REASONS["REVENUE_LOW"]
    assert problems(f"Ngành nghề crop_farming · REVENUE_LOW {reason.vi} — {reason.en}", "vi") == [
        "reason code REVENUE_LOW", "vocabulary code 'crop_farming'", f"English reason text {reason.en!r}"]
    assert problems(f"Sector: livestock. {reason.vi}", "en") == [f"Vietnamese reason text {reason.vi!r}"]
    assert problems(f"Ngành nghề: Trồng trọt. {reason.vi}. Quỹ: Ngân hàng demo. Hà Nội HTX000001", "vi") == []


# -- the pages ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(pipeline_home):
    os.environ.pop(links.SECRET_ENV, None)  # the server and the tests share the file secret
    proc, url = start_server(pipeline_home.home)
    yield url
    stop_server(proc)


@pytest.fixture(scope="module")
def world(pipeline_home, records):
    """The lender's key, and one cooperative of its queue whose applicants applied to this lender
    only and consented to it: the pages shown (and audited) and the consents touch no other test's
    members (their access logs and consent lists are checked row by row elsewhere)."""
    from serving.web.applications import recent_member_applications

    apps = pd.read_parquet(pipeline_home.clean / "loan_applications.parquet",
                           columns=["entity_type", "entity_id", "lender_id"])
    elsewhere = set(apps[(apps.entity_type == "member") & (apps.lender_id != LENDER)].entity_id)
    queue = recent_member_applications(pipeline_home, lender_id=LENDER)
    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet",
                           columns=["entity_type", "entity_id", "history_days", "transactions_365d"])
    scorable = set(snap[(snap.entity_type == "member") & (snap.history_days >= 180)
                        & (snap.transactions_365d >= 24)].entity_id)
    # other modules take their members from the ends of the snapshot's list, sorted or not
    listed = snap[snap.entity_type == "member"]
    busy = listed[listed.transactions_365d > 40].entity_id
    ends = sorted(busy)
    taken = set(listed.entity_id.iloc[:5]) | set(busy.iloc[:5]) | set(ends[:5]) | set(ends[-10:])
    members_of = queue.groupby("cooperative_id").entity_id.agg(set)
    coops = sorted((c for c, ms in members_of.items()
                    if ms.isdisjoint(elsewhere) and ms.isdisjoint(taken) and ms & scorable),
                   key=lambda c: (-len(members_of[c] & scorable), c))
    assert coops, "no cooperative of the demo bank's queue applies to it alone"
    coop = coops[0]
    rows = queue[queue.cooperative_id == coop]
    key = fund_key(records, LENDER)
    for member in dict.fromkeys(rows.entity_id):
        consent(records, member, LENDER)
    member = next(m for m in rows.entity_id if m in scorable)
    application = rows[rows.entity_id == member].application_id.iloc[0]
    return {"key": key, "cooperative": coop, "member": member, "application": application,
            "sectors": set(rows.business_sector)}


def _login(page, base, key, lang):
    page.goto(f"{base}/app/console" + ("?lang=en" if lang == "en" else ""))
    assert_speaks(page, lang, "sign-in page")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_selector("#queue")


def _q(lang: str, sep: str = "?") -> str:
    return f"{sep}lang=en" if lang == "en" else ""


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_console_queue_speaks_the_pages_language(page, base, world, lang):
    _login(page, base, world["key"], lang)
    page.goto(f"{base}/app/console?cooperative={world['cooperative']}{_q(lang, '&')}")
    assert page.locator("#queue tbody tr[data-consent=active]").count() >= 1
    screenshot(page, f"language-queue-{lang}")
    assert_speaks(page, lang, "console queue")
    cells = set(page.locator("#queue tbody tr[data-consent=active] td:nth-child(5)").all_inner_texts())
    assert cells == {label("member_sector", s, lang) for s in world["sectors"]}
    # the filter lists sectors by their label and still sends the code
    options = page.locator("#f-sector option").evaluate_all("os => os.map(o => [o.value, o.textContent])")
    assert all(text == label("member_sector", value, lang) for value, text in options if value), options
    # the export keeps the codes, for machines
    response = page.request.get(f"{base}/app/console/export.csv?cooperative={world['cooperative']}")
    rows = list(csv.DictReader(io.StringIO(response.text().lstrip("\ufeff"))))
    assert rows and {r["business_sector"] for r in rows if r["consent"] == "active"} <= set(v.MEMBER_SECTORS)


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_applicant_page_speaks_the_pages_language(page, base, world, lang):
    _login(page, base, world["key"], lang)
    page.goto(f"{base}/app/console/applicant/{world['application']}{_q(lang)}")
    page.wait_for_selector("#score")
    screenshot(page, f"language-applicant-{lang}")
    assert_speaks(page, lang, "applicant page")
    reasons = page.locator(".reasons li")
    assert reasons.count() >= 1
    # each reason reads in the page's language; its code is in the tooltip (and the API, the audit)
    titles = reasons.evaluate_all("els => els.map(e => e.title)")
    assert all(t in REASONS for t in titles), titles
    texts = reasons.all_inner_texts()
    for code, line in zip(titles, texts):
        assert (REASONS[code].en if lang == "en" else REASONS[code].vi) in line, line


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_whatif_refusal_speaks_the_pages_language(page, base, world, lang):
    """The what-if far above the Decree 156 limit: refused, in words of the page's language,
    through the page's script and through the plain form (without JavaScript)."""
    _login(page, base, world["key"], lang)
    page.goto(f"{base}/app/console/applicant/{world['application']}{_q(lang)}")
    page.fill("#amount_vnd", "900000000000")
    page.click("#whatif button[type=submit]")
    page.wait_for_selector("#whatif-error")
    assert_speaks(page, lang, "applicant page after a refused what-if")
    assert ("Nghị định 156/2025" if lang == "vi" else "Decree 156/2025") in page.inner_text("#whatif-error")
    csrf = page.get_attribute("#whatif input[name=csrf]", "value")
    response = page.request.post(f"{base}/app/console/applicant/{world['application']}{_q(lang)}",
                                 form={"amount_vnd": "900000000000", "term_months": "12", "csrf": csrf})
    assert response.status == 422
    page.set_content(response.text())
    assert page.locator("#whatif-error").count() == 1
    assert_speaks(page, lang, "applicant page after a refused what-if without JavaScript")


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_member_page_speaks_its_language(page, base, world, pipeline_home, lang):
    rank = pytest.importorskip("ranking.rank")
    if rank.latest_ranking(pipeline_home, world["member"]) is None:
        rank.rank_members(pipeline_home)
    token = links.member_token(world["member"], links.web_secret(pipeline_home))
    page.goto(f"{base}/app/member/{token}" + ("?lang=en" if lang == "en" else ""))
    screenshot(page, f"language-member-{lang}")
    assert_speaks(page, lang, "member page")
    body = visible(page)
    assert ("Dữ liệu của bạn" if lang == "vi" else "Your data") in body
    assert label("lender", LENDER, lang) in body  # who holds consent, and who looked, by name


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_error_and_refusal_pages_speak_one_language(page, base, pipeline_home, lang):
    suffix = "?lang=en" if lang == "en" else ""
    forged = links.member_token("TV0000001", b"not-the-secret")
    assert page.goto(f"{base}/app/member/{forged}{suffix}").status == 403
    body = visible(page)
    assert ("Không có quyền truy cập" in body) == (lang == "vi")
    assert ("Access denied" in body) == (lang == "en")
    assert page.goto(f"{base}/app/member/TV0000001{suffix}").status == 404
    body = visible(page)
    assert ("Không tìm thấy trang" in body) == (lang == "vi") and ("Page not found" in body) == (lang == "en")
    page.goto(f"{base}/app/console{suffix}")
    page.fill("#api_key", "cs_000000000000_" + "x" * 43)
    page.click("button[type=submit]")
    message = page.inner_text("#login-error")
    assert ("không được chấp nhận" in message) == (lang == "vi")
    assert ("was not accepted" in message) == (lang == "en")
