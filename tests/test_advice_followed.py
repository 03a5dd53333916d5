"""Advice that holds when followed (issue 15, items 2 and 3).

Every lever is an action on the member's raw rows (ranking/follow.py); the features of the changed
history are recomputed by the real engine and re-scored by the real champion. These tests check that
no followed history is inconsistent, that the shown gain is the engine's recomputed gain (on the
whole data, independently of the page's scoped, one-run path), that the page and the ranking run
agree, that an action only touches the member's own rows and never rewrites a past delay, that
levers carry a kind and the member page keeps the kinds apart, and that a suspended lever is not
offered.
"""
from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from features import engine
from governance.promotion import Gates
from ranking import advice, follow, rank

AMOUNT, TERM = float(rank.REFERENCE_AMOUNT_VND), float(rank.REFERENCE_TERM_MONTHS)


@pytest.fixture(scope="module")
def scorer(pipeline_home):
    return rank.get_scorer(pipeline_home)


@pytest.fixture(scope="module")
def sample(scorer) -> pd.DataFrame:
    """Current features of 400 ranked members (index entity_id)."""
    matrix = scorer.matrix["member"]
    ok = np.flatnonzero(scorer.enough_history(matrix))
    rows = np.random.default_rng(3).choice(ok, size=min(400, len(ok)), replace=False)
    return pd.DataFrame(matrix[rows], columns=scorer.columns,
                        index=pd.Index(scorer.ids["member"][rows], name="entity_id"))


@pytest.fixture(scope="module")
def whole(pipeline_home):
    con = duckdb.connect()
    bases = follow.parquet_bases(pipeline_home.clean)
    follow.overlay(con, bases, None)
    yield con, bases
    con.close()


@pytest.fixture(scope="module")
def followed(scorer, sample, whole):
    """Every lever (suspended or not) followed by every sampled member, on the whole data."""
    con, bases = whole
    as_of = pd.Series(pd.Timestamp(scorer.snapshot_date), index=sample.index)
    history = follow.load_history(con, as_of, sample)
    changes = {lv.code: lv.action(history) for lv in advice.LEVERS}
    features = advice.follow_all(con, bases, as_of, sample, levers=advice.LEVERS)
    return changes, features


def test_levers_carry_a_kind():
    assert set(advice.KINDS) == {"risk", "evidence"}
    for kind in advice.KINDS.values():
        assert kind.vi and kind.en and kind.why_vi and kind.why_en and kind.vi != kind.en
    kinds = {lv.code: lv.kind for lv in advice.LEVERS}
    assert kinds["REPAY_ON_TIME"] == "risk"
    assert kinds["EINVOICE_SHARE"] == "evidence" and kinds["STAY_ACTIVE"] == "evidence"
    for lever in advice.LEVERS:
        assert lever.kind_vi == advice.KINDS[lever.kind].vi and lever.text_vi and lever.text_en
        assert lever.touches_loans == (lever.code == "REPAY_ON_TIME")


def test_the_engine_on_unchanged_data_is_the_snapshot(scorer, sample, whole, pipeline_home):
    """The baseline of every gain: the engine through the overlay (whole data, or the page's scope)
    gives exactly the snapshot's features."""
    con, bases = whole
    ids = sample.index[:40]
    as_of = pd.Series(pd.Timestamp(scorer.snapshot_date), index=ids)
    got = follow.recompute(con, bases, None, as_of)[scorer.columns].to_numpy(dtype=float)
    np.testing.assert_array_equal(got, sample.loc[ids].to_numpy(dtype=float))
    scoped, sbases = follow.scoped_connection(pipeline_home.clean, [ids[0]], scorer.snapshot_date)
    one = follow.recompute(scoped, sbases, None, as_of.loc[[ids[0]]])[scorer.columns]
    np.testing.assert_array_equal(one.to_numpy(dtype=float), sample.loc[[ids[0]]].to_numpy(dtype=float))


def test_no_followed_history_is_inconsistent(followed, whole, sample, scorer):
    """Whatever a member is offered, the changed raw history's own features hold together."""
    changes, features = followed
    con, bases = whole
    seen = 0
    for code, frame in features.items():
        if frame.empty:
            continue
        seen += len(frame)
        f = frame
        assert (f["active_months_12m"] <= f["inflow_count_365d"]).all(), code
        assert (f["distinct_customers_365d"] <= f["inflow_count_365d"]).all(), code
        assert (f["active_months_12m"] <= 12).all() and (f["weeks_without_inflow_13w"] >= 0).all(), code
        for share in ("einvoice_share_365d", "cash_share_365d", "cancelled_invoice_rate_365d",
                      "repayment_on_time_rate"):
            v = f[share].dropna()
            assert ((v >= 0) & (v <= 1 + 1e-12)).all(), (code, share)
        both = (f["einvoice_share_365d"] + f["cash_share_365d"]).dropna()
        assert (both <= 1 + 1e-9).all(), code
        # "active within 30 days" means a transaction within 30 days in the changed raw rows
        follow.overlay(con, bases, changes[code])
        spine = pd.DataFrame({"entity_id": f.index, "as_of": pd.Timestamp(scorer.snapshot_date)})
        con.register("_t_spine", spine)
        recent = con.execute("""
            SELECT s.entity_id, COUNT(t.entity_id) AS n FROM _t_spine s LEFT JOIN transactions t
              ON t.entity_type = 'member' AND t.entity_id = s.entity_id AND t.ts < s.as_of
             AND date_diff('day', CAST(t.ts AS DATE), CAST(s.as_of AS DATE)) <= 30
            GROUP BY s.entity_id""").df().set_index("entity_id")["n"]
        con.unregister("_t_spine")
        follow.overlay(con, bases, None)
        active = f.index[f["days_since_last_activity"] <= 30]
        assert (recent.loc[active] >= 1).all(), code
    assert seen > 0
    stay = features["STAY_ACTIVE"]
    assert len(stay) and (stay["days_since_last_activity"] <= 7).all()
    assert (stay["weeks_without_inflow_13w"] == 0).all()
    einv = features["EINVOICE_SHARE"]
    assert len(einv) and (einv["einvoice_share_365d"] >= follow.EINVOICE_TARGET - 1e-9).mean() > 0.9


def test_an_action_touches_only_the_members_own_rows(followed, sample):
    changes, _ = followed
    for code, change in changes.items():
        lever = advice.LEVERS_BY_CODE[code]
        tables = set(change.remove) | set(change.add)
        assert tables <= {"transactions", "e_invoices", "loans", "repayments",
                          "loan_applications"}, code
        assert lever.touches_loans or not tables & {"loans", "repayments", "loan_applications"}, code
        for frame in [*change.remove.values(), *change.add.values()]:
            assert frame["entity_id"].isin(sample.index).all(), code
        assert set(change.members) <= set(sample.index)
    repay = changes["REPAY_ON_TIME"]
    assert "repayments" not in repay.remove  # a past delay is never rewritten
    added = repay.add["repayments"]
    assert len(added) and (added["days_past_due"] == 0).all()
    assert (added["amount_paid_vnd"] == added["amount_due_vnd"]).all()
    per_member = added.groupby("entity_id").size()
    assert (per_member == advice.REPAY_HORIZON_MONTHS).all()
    # a loan moved 12 months earlier keeps its application before it; nothing else of it changes
    loans = repay.add["loans"].set_index("loan_id")
    apps = repay.add.get("loan_applications", pd.DataFrame(columns=["application_id"]))
    assert set(apps["application_id"]) <= set(loans["application_id"])
    for app in apps.itertuples():
        assert app.application_date == loans.loc[loans["application_id"] == app.application_id,
                                                 "disbursal_date"].iloc[0]
    assert (added.groupby("loan_id")["month"].min().reindex(loans.index)
            >= loans["disbursal_date"]).all()  # no repayment before its disbursal
    einv = changes["EINVOICE_SHARE"]  # every re-issued sale has its e-invoice
    assert len(einv.add["transactions"]) == len(einv.add["e_invoices"])
    assert (einv.add["transactions"]["channel"] == "e_invoice").all()


def test_repay_adds_the_year_and_keeps_past_delays(followed, sample):
    _, features = followed
    f = features["REPAY_ON_TIME"]
    assert len(f)
    now = sample.loc[f.index]
    h = advice.REPAY_HORIZON_MONTHS
    np.testing.assert_array_equal(f["repayment_months"], now["repayment_months"] + h)
    blended = (now["repayment_on_time_rate"] * now["repayment_months"] + h) / (now["repayment_months"] + h)
    np.testing.assert_allclose(f["repayment_on_time_rate"], blended, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(f["worst_days_past_due"], now["worst_days_past_due"])


def test_shown_gain_is_the_engine_recomputed_gain(pipeline_home, scorer, sample, whole):
    """advise (the page: a scoped copy, all levers in one engine run) against each action applied
    again on the WHOLE data in its own engine run, scored by Scorer.decide."""
    con, bases = whole
    checked = 0
    for member in sample.index[:12]:
        actions = advice.advise(pipeline_home, member, stored=False)
        as_of = pd.Series(pd.Timestamp(scorer.snapshot_date), index=pd.Index([member], name="entity_id"))
        history = follow.load_history(con, as_of, sample.loc[[member]])
        row = sample.loc[[member]].to_numpy(dtype=float)
        now = scorer.decide("member", row, np.array([AMOUNT]), np.array([TERM])).score[0]
        for a in actions:
            lever = advice.LEVERS_BY_CODE[a["code"]]
            assert a["kind"] == lever.kind and a["kind_vi"] and a["kind_en"]
            f = follow.recompute(con, bases, lever.action(history), as_of)
            after = scorer.decide("member", f[scorer.columns].to_numpy(dtype=float),
                                  np.array([AMOUNT]), np.array([TERM])).score[0]
            assert a["score_now"] == pytest.approx(now, abs=1e-9)
            assert a["score_after"] == pytest.approx(after, abs=1e-9)
            assert a["gain"] == pytest.approx(after - now, abs=1e-9) and a["gain"] >= advice.MIN_GAIN
            assert a["target"] == pytest.approx(f.iloc[0][lever.feature], nan_ok=True)
            checked += 1
    assert checked > 0


def test_the_ranking_run_and_the_page_agree(pipeline_home, scorer, sample):
    ids = sample.index[:25].to_numpy()
    got = advice.advise_all(scorer, pipeline_home.clean, ids, scorer.snapshot_date,
                            sample.loc[ids].to_numpy(dtype=float), k=3)
    for i, member in enumerate(ids):
        page = advice.advise(scorer, member, stored=False)
        codes = [c for c in got["code"][i] if c is not None]
        assert codes == [a["code"] for a in page], member
        for j, a in enumerate(page):
            assert got["score_after"][i, j] == pytest.approx(a["score_after"], abs=1e-6)


def test_the_page_reads_the_ranking_runs_result_when_it_is_current(pipeline_home, scorer, sample,
                                                                  monkeypatch):
    """The member page answers in milliseconds from the ranking run's stored result (the same
    follow_all), equal to following live; a lever suspended since makes it follow live again."""
    import time
    run = rank.rank_members(pipeline_home, scorer=scorer)
    ranked = run.frame[(run.frame["status"] == "ranked") & run.frame["action_1"].notna()]
    checked = 0
    for member in ranked["member_id"].head(10):
        t = time.perf_counter()
        stored = advice.stored_actions(pipeline_home, scorer, member)
        assert time.perf_counter() - t < 0.5
        live = advice.advise(scorer, member, stored=False)
        assert stored is not None and [a["code"] for a in stored] == [a["code"] for a in live]
        assert advice.advise(scorer, member) == stored
        for s_, l_ in zip(stored, live):
            assert s_["score_after"] == pytest.approx(l_["score_after"], abs=1e-6)
            assert s_["gain"] == pytest.approx(l_["gain"], abs=1e-6)
            assert s_["target"] == pytest.approx(l_["target"], nan_ok=True)
            assert s_["kind"] == l_["kind"] and s_["current"] == pytest.approx(l_["current"], nan_ok=True)
        checked += 1
    assert checked
    first = ranked.iloc[0]
    monkeypatch.setattr(advice, "suspended_levers", lambda p=None: frozenset({first["action_1"]}))
    assert advice.stored_actions(pipeline_home, scorer, first["member_id"]) is None


def test_worlds_equal_separate_runs(pipeline_home, scorer, sample):
    """The page's one-run trick (each lever in its own copy of the data) changes nothing."""
    member = sample.index[1]
    con, bases = follow.scoped_connection(pipeline_home.clean, [member], scorer.snapshot_date)
    as_of = pd.Series(pd.Timestamp(scorer.snapshot_date), index=pd.Index([member], name="entity_id"))
    one = advice.follow_all(con, bases, as_of, sample.loc[[member]], levers=advice.LEVERS, worlds=True)
    apart = advice.follow_all(con, bases, as_of, sample.loc[[member]], levers=advice.LEVERS)
    assert one.keys() == apart.keys()
    for code in one:
        np.testing.assert_array_equal(one[code][scorer.columns].to_numpy(dtype=float),
                                      apart[code][scorer.columns].to_numpy(dtype=float))


def test_a_suspended_lever_is_not_offered(pipeline_home, scorer, sample, tmp_path, monkeypatch):
    members = [m for m in sample.index[:30] if any(a["code"] == "MORE_CUSTOMERS"
                                                  for a in advice.advise(scorer, m, stored=False))][:3]
    assert members, "the fixture should offer MORE_CUSTOMERS to someone"
    path = tmp_path / "lever_calibration.json"
    path.write_text(json.dumps({"levers": {"MORE_CUSTOMERS": {"suspended": True}}}))
    monkeypatch.setattr(advice, "CALIBRATION_FILE", path)
    assert advice.suspended_levers(path) == {"MORE_CUSTOMERS"}
    monkeypatch.setattr(advice, "suspended_levers", lambda p=path: frozenset({"MORE_CUSTOMERS"}))
    for m in members:
        assert all(a["code"] != "MORE_CUSTOMERS" for a in advice.advise(scorer, m))
        assert all(a["code"] != "MORE_CUSTOMERS" for a in advice.advise(scorer, m, stored=False))
    got = advice.advise_all(scorer, pipeline_home.clean, np.array(members), scorer.snapshot_date,
                            sample.loc[members].to_numpy(dtype=float))
    assert "MORE_CUSTOMERS" not in set(got["code"].ravel())


def test_the_checked_in_verdicts_follow_their_measurement_and_the_gate():
    """ranking/lever_calibration.json is written by benchmarks/advice_followed.py; its verdicts are
    the gate's own rule (|CITL| over Gates' bound) applied to its own numbers (after mass adoption,
    and the shift alone for a model calibrated exactly before), evidence levers only."""
    record = advice.calibration_record()
    assert record is not None, "run `make benchmark-advice` to measure the levers' calibration"
    bound = Gates().max_abs_calibration_in_the_large
    assert record["gate_bound"] == bound
    assert set(record["levers"]) == set(advice.LEVERS_BY_CODE)
    for code, r in record["levers"].items():
        lever = advice.LEVERS_BY_CODE[code]
        c, d = r["citl_after"], r["drift"]
        assert c["low"] <= c["value"] <= c["high"] and d["low"] <= d["value"] <= d["high"]
        out = abs(c["value"]) > bound or abs(d["value"]) > bound
        assert r["suspended"] == (lever.kind == "evidence" and out), code
    assert advice.suspended_levers() == {c for c, r in record["levers"].items() if r["suspended"]}
    assert all(lv.code not in advice.suspended_levers() for lv in advice.offered_levers())


# -- the member page keeps the two kinds apart (Chromium) ---------------------------------------------
from web_browser import ThreadServer, screenshot  # noqa: E402
from web_browser import browser, page  # noqa: E402,F401 (fixtures)


def _action(code: str, gain: float) -> dict:
    lever = advice.LEVERS_BY_CODE[code]
    kind = advice.KINDS[lever.kind]
    return advice.Action(code=code, kind=lever.kind, kind_vi=kind.vi, kind_en=kind.en,
                         kind_why_vi=kind.why_vi, kind_why_en=kind.why_en, text_vi=lever.text_vi,
                         text_en=lever.text_en, feature=lever.feature, current=0.5, target=0.8,
                         score_now=600.0, score_after=600.0 + gain, gain=gain).as_dict()


class _Ranking:
    """ranking.rank / ranking.advice as the page calls them, with one action of each kind."""

    @staticmethod
    def latest_ranking(paths, member_id):
        return {"member_id": member_id, "as_of_date": "2025-12-31", "status": "ranked",
                "score": 600.0, "pd": 0.02, "tier": "GOLD", "tier_vi": "Vàng", "tier_en": "Gold",
                "pct_cooperative": 60.0, "pct_province": 55.0, "pct_sector": 50.0,
                "reasons": [], "missing": [], "model_version": "1"}

    @staticmethod
    def rank_history(paths, member_id):
        return []

    @staticmethod
    def advise(paths, member_id):
        return [_action("EINVOICE_SHARE", 9.0), _action("REPAY_ON_TIME", 4.0),
                _action("STAY_ACTIVE", 2.0)]


@pytest.fixture(scope="module")
def kinds_page(pipeline_home, records):
    from serving.web.app import web

    web.state.paths, web.state.ranking, web.state.records = pipeline_home, _Ranking(), records
    with ThreadServer(web) as url:
        yield url
    web.state.ranking = None


@pytest.mark.e2e
def test_member_page_keeps_the_two_kinds_apart(page, browser, kinds_page, pipeline_home):
    pytest.importorskip("playwright.sync_api")
    from serving.web import links

    token = links.member_token("TV0000001", links.web_secret(pipeline_home))
    page.goto(f"{kinds_page}/member/{token}")
    groups = page.locator(".action-kind")
    assert groups.count() == 2
    assert groups.nth(0).get_attribute("data-kind") == "risk"  # lowering the risk comes first
    assert groups.nth(1).get_attribute("data-kind") == "evidence"
    risk, evidence = groups.nth(0).inner_text(), groups.nth(1).inner_text()
    assert advice.KINDS["risk"].vi in risk and advice.LEVERS_BY_CODE["REPAY_ON_TIME"].text_vi in risk
    assert advice.LEVERS_BY_CODE["EINVOICE_SHARE"].text_vi not in risk
    assert advice.KINDS["evidence"].vi in evidence and advice.KINDS["evidence"].why_vi in evidence
    assert groups.nth(1).locator("li").count() == 2
    screenshot(page, "member-actions-kinds-vi")
    page.goto(f"{kinds_page}/member/{token}?lang=en")
    groups = page.locator(".action-kind")
    assert advice.KINDS["risk"].en in groups.nth(0).inner_text()
    assert advice.KINDS["evidence"].en in groups.nth(1).inner_text()
    assert advice.KINDS["evidence"].vi not in page.inner_text("main")
    # on a phone: both kinds readable without a horizontal scroll
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, device_scale_factor=2)
    try:
        small = phone.new_page()
        small.goto(f"{kinds_page}/member/{token}")
        assert small.locator(".action-kind").count() == 2
        width = small.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"horizontal scroll on a phone: {width}"
        small.locator(".action-kind").nth(1).scroll_into_view_if_needed()
        screenshot(small, "member-actions-kinds-phone")
    finally:
        phone.close()
