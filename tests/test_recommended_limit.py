"""The recommended limit (scoring/limit.py): monotone PD over the grid, never above the legal cap, the
right binding constraint, and every door: the API answer, the console's applicant page, the member page."""
from __future__ import annotations

import os
import re

import httpx
import numpy as np
import pandas as pd
import pytest

from scoring import limit, policy, schemas
from serving.launcher import start_server, stop_server
from serving.web import links
from web_browser import consent, fund_key, launch, screenshot

FUND = "quy-htx-trung-uong"


@pytest.fixture(scope="module")
def scorer(pipeline_home):
    from scoring.scorer import Scorer

    return Scorer(pipeline_home)


@pytest.fixture(scope="module")
def members(scorer) -> list[str]:
    snap = scorer.snapshot.loc["member"]
    ok = snap[(snap.history_days >= 180) & (snap.transactions_365d >= 40)]
    return list(ok.index[:80])


@pytest.fixture(scope="module")
def limits(scorer, members) -> dict[str, limit.RecommendedLimit]:
    return dict(zip(members, limit.recommend_limits(scorer, "member", members)))


def _score(scorer, member_id, amount, term):
    return scorer.score(schemas.ScoreRequest(
        subject_type="member", subject_id=member_id,
        application=schemas.Application(amount_vnd=int(amount), term_months=int(term), purpose="inputs")))


# -- the numbers --------------------------------------------------------------------------------------
def test_pd_never_falls_as_the_amount_grows_over_the_grid(scorer, members):
    amounts, terms, pds = limit.pd_curves(scorer, "member", members[:60])
    assert pds.shape == (60, len(terms), len(amounts)) and len(amounts) >= 30
    steps = np.diff(pds, axis=2)
    assert steps.min() >= -limit.ROUNDING, f"the PD falls by {-steps.min():.2e} somewhere on the grid"
    assert (pds[:, :, -1] > pds[:, :, 0]).mean() > 0.5  # and the amount does move it
    coops = list(scorer.snapshot.loc["cooperative"].query("transactions_365d >= 40").index[:20])
    _, _, cpds = limit.pd_curves(scorer, "cooperative", coops)
    assert np.diff(cpds, axis=2).min() >= -limit.ROUNDING
    # the grid's fast path is the scorer's PD
    history = scorer._history(members[:5], "member", scorer.snapshot_date)
    rows = np.repeat(history, 3, axis=0)
    a, t = np.tile([5e6, 8e7, 3e8], 5), np.full(15, 12.0)
    assert np.allclose(limit._pd_grid(scorer, "member", rows, a, t), limit._pd(scorer, "member", rows, a, t),
                       rtol=0, atol=limit.ROUNDING)


def test_the_limit_never_exceeds_the_legal_cap_and_is_whole_millions(scorer, limits):
    assert limits and all(v is not None for v in limits.values())
    for member_id, found in limits.items():
        cap = policy.LEGAL_LIMIT_VND[scorer.legal_form("member", member_id)]
        assert isinstance(found.amount_vnd, int) and 0 <= found.amount_vnd <= cap == found.legal_cap_vnd
        assert found.amount_vnd % limit.AMOUNT_UNIT_VND == 0
        assert found.binding in limit.BINDINGS and found.reason_vi and found.reason_en
        assert found.monotone_fixes == 0
        if found.binding == "none_affordable":
            assert found.amount_vnd == 0 and found.term_months is None and found.blocked_by
        else:
            assert found.pd <= found.target_pd and found.instalment_vnd <= found.max_instalment_vnd
            assert found.term_months in found.terms_months
    cap_bound = limit.recommend_limits(scorer, "member", list(limits), target_pd=0.99, instalment_share=1.0)
    for found in cap_bound:
        assert found.amount_vnd <= found.legal_cap_vnd


def test_the_pd_at_the_limit_is_the_apis(scorer, limits):
    """The PD reported is the one POST /v1/scores gives for that amount and term, under the target."""
    shown = [f for f in limits.values() if f.binding != "none_affordable"][:5]
    assert shown
    for found in shown:
        answer = _score(scorer, found.subject_id, found.amount_vnd, found.term_months)
        assert answer.pd == pytest.approx(found.pd, abs=limit.ROUNDING)
        assert answer.pd <= found.target_pd


def test_affordability_bound(scorer, limits):
    """A small instalment share binds first: the amount is the largest whose instalment fits."""
    found = next(f for f in (limit.recommend_limit(scorer, "member", m, target_pd=0.99, instalment_share=0.05)
                             for m, f0 in limits.items() if f0.net_monthly_inflow_vnd > 5_000_000)
                 if f.binding == "affordability")
    per_vnd = float(limit.instalment_vnd(1.0, found.term_months)[0])
    assert found.instalment_vnd <= found.max_instalment_vnd
    assert (found.amount_vnd + limit.AMOUNT_UNIT_VND) * per_vnd > found.max_instalment_vnd
    assert found.term_months == max(limit.TERMS["member"])  # the longest term lends the most
    assert "40%" not in found.reason_en and "5%" in found.reason_en and "5%" in found.reason_vi


def test_legal_cap_bound(scorer, limits):
    rich = max(limits.values(), key=lambda f: f.net_monthly_inflow_vnd)
    found = limit.recommend_limit(scorer, "member", rich.subject_id, target_pd=0.99, instalment_share=1.0)
    assert found.binding == "legal_cap" and found.amount_vnd == found.legal_cap_vnd
    assert "Decree 156/2025" in found.reason_en and "Nghị định 156/2025" in found.reason_vi


def test_pd_target_bound(scorer, limits):
    """A PD target between the PD of the smallest and the largest amount binds: the next million
    would cross it, through the scorer."""
    for member_id, base in limits.items():
        if base.net_monthly_inflow_vnd <= 0:
            continue
        _, terms, pds = limit.pd_curves(scorer, "member", [member_id])
        lo, hi = pds[0].min(), pds[0].max()
        if hi - lo < 0.002:
            continue
        target = float(lo + 0.3 * (hi - lo))
        found = limit.recommend_limit(scorer, "member", member_id, target_pd=target, instalment_share=1.0)
        if found.binding != "pd_target":
            continue
        assert found.pd <= target < found.legal_cap_vnd
        assert found.amount_vnd < found.affordable_vnd
        above = _score(scorer, member_id, found.amount_vnd + limit.AMOUNT_UNIT_VND, found.term_months)
        assert above.pd > target
        assert "risk" in found.reason_en and "rủi ro" in found.reason_vi
        return
    pytest.fail("no member of the sample could be made PD-bound")


def test_none_affordable_is_said_not_clipped(scorer, limits):
    poor = next(f for f in limits.values() if f.net_monthly_inflow_vnd <= 0)
    assert poor.binding == "none_affordable" and poor.amount_vnd == 0 and poor.blocked_by == "affordability"
    assert "No loan can be recommended" in poor.reason_en and "Chưa thể đề xuất" in poor.reason_vi
    rich = max(limits.values(), key=lambda f: f.net_monthly_inflow_vnd)
    strict = limit.recommend_limit(scorer, "member", rich.subject_id, target_pd=1e-6)
    assert strict.binding == "none_affordable" and strict.blocked_by == "pd_target"


def test_requested_term_is_searched_and_cooperatives_too(scorer, members):
    found = limit.recommend_limit(scorer, "member", members[0], requested_term=9)
    assert 9 in found.by_term
    coop = scorer.snapshot.loc["cooperative"].query("transactions_365d >= 40").index[0]
    c = limit.recommend_limit(scorer, "cooperative", coop)
    assert c.legal_cap_vnd == 5_000_000_000 and 0 <= c.amount_vnd <= c.legal_cap_vnd


# -- every door -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(pipeline_home):
    os.environ.pop(links.SECRET_ENV, None)
    proc, url = start_server(pipeline_home.home)
    yield url
    stop_server(proc)


def test_the_api_answer_carries_the_limit(server, bank_token, grant, members, limits):
    member_id = members[0]
    grant("member", member_id)
    with httpx.Client(base_url=server, timeout=60, headers={"Authorization": f"Bearer {bank_token}"}) as c:
        body = {"subject_type": "member", "subject_id": member_id,
                "application": {"amount_vnd": 50_000_000, "term_months": 12, "purpose": "inputs"}}
        response = c.post("/v1/scores", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        found = answer["recommended_limit"]
        assert answer["recommended_limit_vnd"] == found["amount_vnd"] == limits[member_id].amount_vnd
        assert found["binding"] in limit.BINDINGS and found["reason"] and found["reason_vi"]
        assert found["legal_cap_vnd"] == policy.LEGAL_LIMIT_VND[limits[member_id].legal_form]
        batch = c.post("/v1/scores:batch", json={"applications": [body, body]})
        assert batch.status_code == 200, batch.text
        assert [r["recommended_limit_vnd"] for r in batch.json()["results"]] == [found["amount_vnd"]] * 2
        spec = c.get("/v1/openapi.json").json()
        assert "recommended_limit" in str(spec)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def test_the_pages_show_the_limit(browser, server, pipeline_home, records, scorer):
    from serving.web.applications import recent_member_applications

    apps = recent_member_applications(pipeline_home, lender_id=FUND)
    history = scorer.snapshot.loc["member"]
    scorable = set(history[(history.history_days >= 180) & (history.transactions_365d >= 12)].index)
    app = apps[apps.entity_id.isin(scorable)].iloc[0]
    key = fund_key(records, FUND)  # registers the fund on first use
    consent(records, app.entity_id, FUND)
    expected = limit.recommend_limit(scorer, "member", app.entity_id, requested_term=int(app.term_months))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server}/app/console")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_selector("#queue")
    page.goto(f"{server}/app/console/applicant/{app.application_id}")
    shown = page.locator("#recommended-limit")
    assert int(shown.get_attribute("data-amount")) == expected.amount_vnd
    assert shown.get_attribute("data-binding") == expected.binding
    assert expected.reason_vi in page.inner_text("#recommended-limit")
    screenshot(page, "console-applicant-limit")
    context.close()
    # the member's own page (ranked, as `coopscore rank` does)
    from ranking import rank

    rank.rank_members(pipeline_home)
    member = next(m for m in apps.entity_id if m in scorable
                  and (rank.latest_ranking(pipeline_home, m) or {}).get("status") == "ranked")
    mine = limit.recommend_limit(scorer, "member", member)
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = phone.new_page()
    token = links.member_token(member, links.web_secret(pipeline_home))
    page.goto(f"{server}/app/member/{token}")
    text = page.inner_text("#recommended-limit")
    if mine.binding == "none_affordable":
        assert "Hiện chưa thể đề xuất số tiền vay" in text
    else:
        assert f"Bạn có thể vay tới {limit.vnd(mine.amount_vnd, 'vi')} đồng" in text
    assert mine.reason_vi in text
    screenshot(page, "member-limit-vi")
    page.goto(f"{server}/app/member/{token}?lang=en")
    text = page.inner_text("#recommended-limit")
    if mine.binding != "none_affordable":
        assert f"You could borrow up to {limit.vnd(mine.amount_vnd, 'en')} VND" in text
    assert mine.reason_en in text and not re.search(r"[ạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹđ]", text)
    width = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1]
    phone.close()
