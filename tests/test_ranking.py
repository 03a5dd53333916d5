"""Members' digital ranking: every member ranked or told what is missing, percentiles, tiers,
history, and advice that only touches what a member can change, followed in the raw data and
scored by the real champion."""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from data_contracts.contracts import PROTECTED_ATTRIBUTES
from features.catalogue import FEATURES_BY_NAME
from ranking import advice, rank, tiers


@pytest.fixture(scope="module")
def scorer(pipeline_home):
    return rank.get_scorer(pipeline_home)


@pytest.fixture(scope="module")
def run(pipeline_home, scorer):
    return rank.rank_members(pipeline_home, scorer=scorer)


def test_every_member_gets_a_row(run, scorer):
    f = run.frame
    assert sorted(f["member_id"]) == sorted(scorer.ids["member"])
    assert f["member_id"].is_unique
    assert set(f["status"]) <= {"ranked", "not_enough_data"}
    assert run.ranked + run.not_enough_data == len(f) == len(scorer.ids["member"])
    assert run.ranked > 0
    ranked = f[f["status"] == "ranked"]
    assert ranked[["score", "pd", "tier", "pct_cooperative", "pct_province", "pct_sector"]].notna().all().all()
    assert (ranked["model_version"] == scorer.served_version("member")).all()
    assert ((ranked[["pct_cooperative", "pct_province", "pct_sector"]] >= 0)
            & (ranked[["pct_cooperative", "pct_province", "pct_sector"]] <= 100)).all().all()


def test_scores_match_the_scorer_for_the_reference_application(run, scorer):
    f = run.frame.set_index("member_id")
    ranked = f[f["status"] == "ranked"].head(50)
    rows = scorer.matrix["member"][[scorer.row["member"][m] for m in ranked.index]]
    d = scorer.decide("member", rows, np.full(len(rows), 50_000_000.0), np.full(len(rows), 12.0))
    np.testing.assert_allclose(ranked["score"], np.round(d.score, 1))
    np.testing.assert_allclose(ranked["pd"], d.pd)


def test_percentiles_within_a_cooperative_follow_the_score(run):
    ranked = run.frame[run.frame["status"] == "ranked"]
    checked = 0
    for column, group in (("pct_cooperative", "cooperative_id"), ("pct_province", "province"),
                          ("pct_sector", "business_sector")):
        for _, g in ranked.groupby(group):
            g = g.sort_values("score")
            pct = g[column].to_numpy()
            assert np.all(np.diff(pct) >= -1e-9)
            # equal scores, equal percentile; higher score, strictly higher percentile
            s = g["score"].to_numpy()
            assert np.all((np.diff(s) > 0) == (np.diff(pct) > 1e-9))
            checked += len(g) > 1
    assert checked > 0
    # members without enough data take no part in percentiles
    short = run.frame[run.frame["status"] == "not_enough_data"]
    assert short[["score", "pct_cooperative", "pct_province", "pct_sector", "tier"]].isna().all().all()


def test_tiers_follow_the_cut_offs(run):
    order = [t["code"] for t in tiers.TIERS]
    cut = {t["code"]: t["min_score"] for t in tiers.TIERS}
    assert [t["min_score"] for t in tiers.TIERS] == sorted(cut.values(), reverse=True)
    for t in tiers.TIERS:
        assert t["vi"] and t["en"]
    ranked = run.frame[run.frame["status"] == "ranked"]
    # from the unrounded PD, the number the grade comes from; the score is kept rounded to 0.1
    assert list(ranked["tier"]) == list(tiers.tier_from_pd(ranked["pd"].to_numpy()))
    for score, tier in zip(ranked["score"], ranked["tier"]):
        i = order.index(tier)
        assert score >= cut[tier] - 0.05
        if i > 0:
            assert score < cut[order[i - 1]] + 0.05
    assert list(tiers.tier_of([605, 604.9, 600, 599.5, 599.4, 590, 589.9, 570, 569.9, 300])) == [
        "DIAMOND", "GOLD", "GOLD", "GOLD", "SILVER", "SILVER", "BRONZE", "BRONZE", "STARTER", "STARTER"]
    tv = ranked.drop_duplicates("tier")
    for tier, vi, en in zip(tv["tier"], tv["tier_vi"], tv["tier_en"]):
        assert (tiers.TIERS_BY_CODE[tier]["vi"], tiers.TIERS_BY_CODE[tier]["en"]) == (vi, en)


def test_tiers_and_grades_never_disagree_around_any_boundary(run):
    """Issue 15: grade B started at 599.4 and Gold at 600, so grade-B members showed as Silver.
    On a fine grid of scores around every tier and grade boundary (steps of 0.001 point over +-2
    points, plus the bounds themselves and their neighbouring floats), each score's tier holds its
    grade (ranking/tiers.py's mapping), and Gold-or-better is exactly grade A or B."""
    from training import scaling

    assert tiers.TIER_GRADES == {"DIAMOND": ("A", "B"), "GOLD": ("B",), "SILVER": ("C",),
                                 "BRONZE": ("C", "D"), "STARTER": ("D", "E", "F")}
    bounds = [t["min_score"] for t in tiers.TIERS[:-1]] + \
        [tiers.score_of_pd(u) for _, u in scaling.GRADE_UPPER_PD[:-1]]
    steps = np.linspace(-2.0, 2.0, 4001)
    grid = np.concatenate([np.concatenate([b + steps, [b, np.nextafter(b, -np.inf), np.nextafter(b, np.inf),
                                                       b - 1e-9, b + 1e-9]]) for b in bounds])
    pds = tiers.pd_of_score(grid)
    grade, tier = scaling.grade_from_pd(pds), tiers.tier_of(grid)
    wrong = [(s, t, g) for s, t, g in zip(grid, tier, grade) if g not in tiers.TIER_GRADES[t]]
    assert not wrong, f"{len(wrong)} scores whose tier and grade disagree, e.g. {wrong[:5]}"
    assert (tier == tiers.tier_from_pd(pds)).all()
    assert (np.isin(tier, ["DIAMOND", "GOLD"]) == np.isin(grade, ["A", "B"])).all()
    assert (np.isin(tier, ["DIAMOND", "GOLD", "SILVER"]) <= np.isin(grade, ["A", "B", "C"])).all()
    # the same on PDs one float either side of every grade bound
    for _, upper in scaling.GRADE_UPPER_PD[:-1]:
        around = np.array([np.nextafter(upper, 0), upper, np.nextafter(upper, 1)])
        for t, g in zip(tiers.tier_from_pd(around), scaling.grade_from_pd(around)):
            assert g in tiers.TIER_GRADES[t]
    # and on the ranked members themselves: not one grade-B member below Gold
    ranked = run.frame[run.frame["status"] == "ranked"]
    member_grades = scaling.grade_from_pd(ranked["pd"].to_numpy())
    for t, g in zip(ranked["tier"], member_grades):
        assert g in tiers.TIER_GRADES[t]


def test_top_tier_is_reachable_and_every_tier_is_used(run):
    """Fixed cut-offs must still be reachable: the champion's best member makes the top tier, and
    no tier is empty on the fixture population (a cut-off above every score would be a promise
    no member can keep, as Diamond at 620 was on the demo data)."""
    ranked = run.frame[run.frame["status"] == "ranked"]
    assert ranked["score"].max() >= tiers.TIERS[0]["min_score"]
    assert set(ranked["tier"]) == set(tiers.TIERS_BY_CODE)


def test_tier_cut_offs_are_grade_bounds_or_whole_scores_with_the_documented_pd():
    from pathlib import Path

    from training import scaling
    doc = (Path(__file__).resolve().parents[1] / "docs" / "ranking.md").read_text(encoding="utf-8")
    pds = [t["max_pd"] for t in tiers.TIERS[:-1]]
    assert pds == sorted(pds), "a better tier must stand for a lower PD"
    for t in tiers.TIERS[:-1]:
        assert t["max_pd"] == pytest.approx(tiers.max_pd(t["min_score"]))
        if "grade" in t:  # the grade's own bound, not a copy of it
            assert t["max_pd"] == dict(scaling.GRADE_UPPER_PD)[t["grade"]]
        else:
            assert t["min_score"] == int(t["min_score"])
        # the table in docs/ranking.md and the tiers.py docstring give each cut-off's PD
        row = f"| {t['code']} | {t['vi']} | {t['en']} | {t['cut_off']} |"
        assert row in doc and f"~{100 * t['max_pd']:.2f}%" in doc, t["code"]
        assert f"score >= {t['cut_off']}" in tiers.__doc__ and f"~{100 * t['max_pd']:.2f}%" in tiers.__doc__
    assert tiers.TIERS_BY_CODE["GOLD"]["max_pd"] == 0.02  # grade B's bound
    assert tiers.max_pd(600) == pytest.approx(1 / 51)  # the scale's anchor: odds 50:1


def test_ranking_in_batches_of_cooperatives_equals_ranking_all_at_once(pipeline_home, scorer, run):
    # several batches: each follows the levers on a DuckDB holding only its cooperatives' rows
    batched = rank.rank_members(pipeline_home, scorer=scorer, batch_members=700)
    assert len(rank.cooperative_batches(batched.frame["cooperative_id"], 700)) > 2
    once = run.frame.sort_values("member_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(batched.frame.sort_values("member_id").reset_index(drop=True), once)
    assert (once["action_1"].notna()).any()  # the comparison covers followed advice, not only scores


def test_cooperative_batches_keep_cooperatives_whole_and_every_row_once():
    coop = pd.Series(["b", "a", "b", "c", "a", "d", "b", "e"])
    batches = rank.cooperative_batches(coop, 3)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(coop)))  # each row once
    for b in batches:
        assert set(coop.iloc[b]).isdisjoint(set(coop.drop(coop.index[b])))  # no cooperative split
    assert len(batches) > 1
    assert len(rank.cooperative_batches(coop, 100)) == 1
    with pytest.raises(ValueError, match="batch_members"):
        rank.cooperative_batches(coop, 0)


def test_rerun_replaces_and_another_date_appends(pipeline_home, scorer, run):
    member = run.frame.loc[run.frame["status"] == "ranked", "member_id"].iloc[0]
    again = rank.rank_members(pipeline_home, scorer=scorer)  # same as-of: replaces
    assert rank.ranking_dates(pipeline_home) == [run.as_of]
    assert len(pd.read_parquet(again.path)) == len(run.frame)
    earlier = run.as_of - timedelta(days=61)
    past = rank.rank_members(pipeline_home, as_of=earlier, scorer=scorer)
    assert past.ranked + past.not_enough_data == len(run.frame)
    assert rank.ranking_dates(pipeline_home) == [earlier, run.as_of]
    history = rank.rank_history(pipeline_home, member)
    assert [h["as_of_date"] for h in history] == [earlier.isoformat(), run.as_of.isoformat()]
    assert {"as_of_date", "score", "tier", "pct_cooperative"} <= set(history[0])
    latest = rank.latest_ranking(pipeline_home, member)
    assert latest["as_of_date"] == run.as_of.isoformat()
    assert latest["score"] == history[-1]["score"]
    for key in ("member_id", "as_of_date", "status", "score", "pd", "tier", "tier_vi", "tier_en",
                "pct_cooperative", "pct_province", "pct_sector", "reasons", "missing",
                "model_version"):
        assert key in latest
    for r in latest["reasons"]:
        assert set(r) == {"code", "text_vi", "text_en"}
    assert rank.latest_ranking(pipeline_home, "NO-SUCH-MEMBER") is None
    assert rank.rank_history(pipeline_home, "NO-SUCH-MEMBER") == []
    with pytest.raises(ValueError):
        rank.rank_members(pipeline_home, as_of=run.as_of + timedelta(days=1), scorer=scorer)


def test_earlier_as_of_equals_on_demand_history(pipeline_home, scorer):
    """An earlier date goes through the same point-in-time history the service computes."""
    as_of = scorer.snapshot_date - timedelta(days=61)
    ids, history = rank.member_history(scorer, pipeline_home, as_of)
    some = list(ids[:20])
    # DuckDB's parallel aggregates may add doubles in another order for another spine size
    np.testing.assert_allclose(history[:20], scorer._history(some, "member", as_of), rtol=1e-12, atol=0)


def test_not_enough_data_keeps_what_is_missing(pipeline_home, run):
    short = run.frame[run.frame["status"] == "not_enough_data"]
    assert len(short) > 0, "the synthetic data should hold some members with a short history"
    member = short["member_id"].iloc[0]
    latest = rank.latest_ranking(pipeline_home, member)
    assert latest["status"] == "not_enough_data" and latest["score"] is None
    assert latest["tier"] is None and latest["pct_cooperative"] is None
    assert latest["missing"], "a member without enough data must be told what is missing"
    for m in latest["missing"]:
        assert set(m) == {"code", "vi", "en"} and m["code"] in {"HISTORY_TOO_SHORT", "TOO_FEW_TRANSACTIONS"}
    assert advice.advise(pipeline_home, member) == []


def test_levers_never_touch_protected_or_fixed_features(scorer, run, pipeline_home):
    """A lever is an action on the member's own transactions, e-invoices and loan rows
    (tests/test_advice_followed.py checks the rows): the features of the rows no action writes
    (the member's profile, the cooperative, the protected attributes) never move."""
    protected = set(PROTECTED_ATTRIBUTES)
    assert protected <= advice.FIXED_FEATURES
    assert {"tenure_years", "capital_contribution_vnd", "coop_revenue_12m",
            "requested_amount_vnd"} <= advice.FIXED_FEATURES
    assert not protected & set(scorer.columns)  # never even a model input
    ranked = run.frame[run.frame["status"] == "ranked"]["member_id"].head(150).to_numpy()
    matrix = scorer.matrix["member"][[scorer.row["member"][m] for m in ranked]]
    now = pd.DataFrame(matrix, columns=scorer.columns, index=pd.Index(ranked, name="entity_id"))
    import duckdb
    from ranking import follow
    con = duckdb.connect()
    got = advice.follow_all(con, follow.parquet_bases(pipeline_home.clean),
                            pd.Series(pd.Timestamp(scorer.snapshot_date), index=now.index), now,
                            levers=advice.LEVERS)
    fixed = [c for c in scorer.columns if c in advice.FIXED_FEATURES]
    assert "tenure_years" in fixed and "coop_revenue_12m" in fixed
    for lever in advice.LEVERS:
        frame = got[lever.code]
        assert len(frame), lever.code
        before, after = now.loc[frame.index, fixed], frame[fixed].astype(float)
        same = (before.to_numpy() == after.to_numpy()) | (before.isna().to_numpy() & after.isna().to_numpy())
        assert same.all(), (lever.code, [c for c, ok in zip(fixed, same.all(axis=0)) if not ok])
        assert lever.feature in FEATURES_BY_NAME and lever.text_vi and lever.text_en


def test_advice_is_rescored_by_the_champion_and_sorted(pipeline_home, scorer, run):
    ranked = run.frame[run.frame["status"] == "ranked"]
    with_actions = ranked[ranked["action_1"].notna()]
    assert len(with_actions) > 0
    seen = 0
    for member in with_actions["member_id"].head(15):
        actions = advice.advise(pipeline_home, member, stored=False)  # followed live
        assert 1 <= len(actions) <= 3
        gains = [a["gain"] for a in actions]
        assert all(g >= advice.MIN_GAIN > 0 for g in gains) and gains == sorted(gains, reverse=True)
        row = scorer.matrix["member"][scorer.row["member"][member]]
        now = scorer.decide("member", row[None, :], np.array([50_000_000.0]), np.array([12.0])).score[0]
        for a in actions:
            assert set(a) >= {"code", "kind", "kind_vi", "kind_en", "text_vi", "text_en", "current",
                              "target", "score_now", "score_after", "gain"}
            assert a["score_now"] == pytest.approx(now, abs=1e-9)
            assert a["gain"] == pytest.approx(a["score_after"] - a["score_now"])
            assert a["kind"] == advice.LEVERS_BY_CODE[a["code"]].kind
        # the batch run's actions are the same ones, with the same score after (rounded to 0.1)
        r = with_actions.set_index("member_id").loc[member]
        assert [r[f"action_{j + 1}"] for j in range(len(actions))] == [a["code"] for a in actions]
        for j, a in enumerate(actions):
            assert r[f"action_{j + 1}_score_after"] == pytest.approx(round(a["score_after"], 1), abs=0.051)
        seen += 1
    assert seen > 0


def test_fast_advice_scoring_equals_decide(scorer):
    hist = scorer.matrix["member"]
    hist = hist[scorer.enough_history(hist)][:500]
    fast = advice.score_history(scorer, hist, 50_000_000, 12)
    d = scorer.decide("member", hist, np.full(len(hist), 50_000_000.0), np.full(len(hist), 12.0))
    np.testing.assert_allclose(fast, d.score, rtol=0, atol=1e-8)


def test_month_starts():
    assert rank.month_starts(date(2026, 1, 15), 3) == [date(2025, 11, 1), date(2025, 12, 1),
                                                       date(2026, 1, 1)]


# -- REPAY_ON_TIME adds the next instalments, never a rewritten past -----------------------------
# (the rows and the blended rate: tests/test_advice_followed.py)
def test_repay_lever_says_its_horizon():
    lever = advice.LEVERS_BY_CODE["REPAY_ON_TIME"]
    assert advice.REPAY_HORIZON_MONTHS == 12
    assert "trả" in lever.text_vi.lower() and "đúng hạn mọi kỳ trong 12 tháng tới" in lever.text_vi
    assert "on time for the next 12 months" in lever.text_en
