"""A recommended limit: the most a member, household business or cooperative could borrow as of a date.

The largest amount (and the terms it holds for) that passes three tests at once:

(a) **PD target.** The PD of an application for that amount and term, computed by the real scorer
    (`Scorer.decide`, the columnar core every door uses: the snapshot's history row, the application
    features recomputed by `features.on_demand` for the amount and term, the champion model and its
    calibration), stays at or under the lender's target. Default: 8%, the operating cut-off of
    `evaluation.champion.OPERATING_PD` (grades A to D approved); `COOPSCORE_LIMIT_TARGET_PD`.
(b) **Affordability.** The monthly instalment stays within a share of the verified net monthly inflow.
    The instalment is the project's own: the annuity at 1% a month (12% a year) of
    `features.on_demand.instalment_to_net_inflow`, called here so that the formula exists once.
    Share default 40% (`COOPSCORE_LIMIT_INSTALMENT_SHARE`).
(c) **Legal cap.** The Decree 156/2025/ND-CP unsecured limit of the subject's legal form
    (`scoring.policy.LEGAL_LIMIT_VND`): 300 million VND for a household, 500 million for a household
    business, 5 billion for a cooperative.

**The verified net monthly inflow** is computed from the platform's own records over the 12 months
(twelve 30-day buckets, as the feature engine counts months) strictly before the as-of date: inflows
minus outflows of the subject's transactions, loan disbursals left out (borrowed money is not income,
as in the features). E-invoices enter through their payments: every e-invoice sale is a transaction of
channel `e_invoice` on the platform, so the invoice totals are not added again (that would count each
sale twice); a cancelled invoice was never paid and never counts. Only whole buckets inside the
subject's history count (an empty month counts as 0).

Seasonality: the figure used is the lower of the **median month** and the **mean month** of those
twelve. Why not the lower quartile or the mean of the weakest months: on the platform's data the
months are lumpy on the way out (inputs bought in bulk before a season): in the demo world 89% of
members have a lower-quartile month at or below zero and 99% have their three weakest months below
zero, while 69% have a positive year; a weak-month rule would refuse nearly everyone for the timing
of their purchases, not for their capacity. The median month ignores the harvest spike (income that
arrives in one or two months is not income every month, and a monthly instalment is due every month),
the mean spreads the bulk purchases over the year; the lower of the two is what the subject can count
on in an ordinary month. A subject whose ordinary month is not positive can afford no instalment.

**Monotone in the amount.** At a fixed term all three application features that move with the amount
(`requested_amount_vnd`, `loan_to_revenue`, `instalment_to_net_inflow`) have risk direction +1 in
`features/catalogue.py`, which training turns into LightGBM monotone constraints, and the Platt slope
is positive: the champion cannot give a larger amount a lower PD. The guarantee rests on training, so
it is also enforced here: the PD used at an amount is the running maximum of the scorer's PD over
every amount evaluated up to it (`RecommendedLimit.monotone_fixes` counts where that changed a value;
0 with the current models), and tests/test_recommended_limit.py checks the grid.

**The search.** For each term of the grid (the terms the model was trained on: 6-36 months for
members, 12-60 for cooperatives, plus the requested term when there is one), the affordable amount
comes first: it is exact (the instalment is linear in the amount), capped by the law and rounded down
to whole millions. The PD is then computed over a grid of amounts up to it (`GRID_POINTS` amounts,
geometric from `AMOUNT_UNIT_VND` to the legal cap, whole millions, those above the affordable amount
left out, the affordable amount itself added), then refined by bisection, in whole millions, between
the last amount under the target and the first above it. An amount nobody can afford is never
scored: the limit is the smaller of the two bounds, so the PD above the affordable amount cannot
change it (`pd_limit_vnd` is therefore at most `affordable_vnd`). A subject whose ordinary month is
not positive costs no model call at all. Amounts are integer VND, never rounded up.

**The binding constraint** of the recommended amount, at its term: `legal_cap` (the cap was reached),
`affordability` (the instalment share stops it first), `pd_target` (the PD target stops it first), or
`none_affordable` (no amount of at least 1,000,000 VND passes at any term; `blocked_by` says which test
refused even that: `affordability` when 1,000,000 VND is unaffordable at every term, else `pd_target`).
Ties go to the law first, then affordability, then the PD target.

The largest amount over the terms is recommended; among terms that reach it, the requested term
when it does, else the shortest. `terms_months` lists every term at which that amount holds.
"""
from __future__ import annotations

import functools
import threading
import weakref
from dataclasses import asdict, dataclass, field, replace
from datetime import date

import numpy as np
import pandas as pd

from settings import get_settings
from evaluation.champion import OPERATING_PD
from features import on_demand
from scoring import policy, schemas
from training import scaling

DEFAULT_TARGET_PD = OPERATING_PD  # 8%: the upper bound of grade D, the project's operating cut-off
DEFAULT_INSTALMENT_SHARE = 0.40
AMOUNT_UNIT_VND = 1_000_000  # banks lend whole millions; the synthetic applications ask for them too
GRID_POINTS = 40
MONTHS = 12
MONTH_DAYS = 30
TERMS: dict[str, tuple[int, ...]] = {"member": (6, 12, 18, 24, 36),
                                     "cooperative": (12, 24, 36, 48, 60)}
BINDINGS = ("pd_target", "affordability", "legal_cap", "none_affordable")

LEGAL_FORM_WORDS = {"household": ("hộ gia đình", "household"),
                    "household_business": ("hộ kinh doanh", "household business"),
                    "cooperative": ("hợp tác xã", "cooperative")}


@dataclass(frozen=True)
class RecommendedLimit:
    """The recommended limit of one subject as of a date, with the numbers behind it."""

    subject_type: str
    subject_id: str
    as_of_date: date
    amount_vnd: int  # 0 when no amount passes (binding none_affordable)
    term_months: int | None  # the term it is recommended at (None with none_affordable)
    terms_months: tuple[int, ...]  # every term of the grid at which amount_vnd holds
    binding: str  # one of BINDINGS
    blocked_by: str | None  # with none_affordable: pd_target or affordability
    reason_vi: str
    reason_en: str
    target_pd: float
    instalment_share: float
    pd: float | None  # the (monotone) PD at amount_vnd and term_months
    net_monthly_inflow_vnd: int  # the verified ordinary month's net inflow (see the module docstring)
    instalment_vnd: int  # the monthly instalment at amount_vnd and term_months
    max_instalment_vnd: int  # instalment_share x the net monthly inflow (0 when that is not positive)
    legal_form: str
    legal_cap_vnd: int
    pd_limit_vnd: int  # at term_months: the largest amount with PD <= target, searched up to affordable_vnd
    affordable_vnd: int  # at term_months: the largest affordable amount (capped)
    monotone_fixes: int  # grid PDs the running maximum raised (0 when the model is monotone)
    months_counted: int  # monthly buckets the net inflow is computed from
    by_term: dict[int, dict[str, int]] = field(default_factory=dict)  # term -> pd_limit/affordable/limit

    def as_dict(self) -> dict:
        out = asdict(self)
        out["as_of_date"] = self.as_of_date.isoformat()
        out["terms_months"] = list(self.terms_months)
        return out


# -- inputs ----------------------------------------------------------------------------------------
def limit_settings() -> tuple[float, float]:
    """(target PD, instalment share) from the settings (COOPSCORE_LIMIT_TARGET_PD, ..._INSTALMENT_SHARE)."""
    s = get_settings()
    return float(s.limit_target_pd), float(s.limit_instalment_share)


def instalment_vnd(amount_vnd, term_months) -> np.ndarray:
    """The monthly instalment of the features' annuity (1% a month), as float VND.

    `on_demand.instalment_to_net_inflow` divides it by the monthly net inflow, net / 12; with a
    12-month net of 12 VND that divisor is 1 and the feature *is* the instalment."""
    amount = np.atleast_1d(np.asarray(amount_vnd, dtype=float))
    one = {"inflow_sum_365d": np.full(amount.shape, 12.0), "outflow_sum_365d": np.zeros(amount.shape)}
    return on_demand.instalment_to_net_inflow(one, amount, np.asarray(term_months, dtype=float))


@functools.lru_cache(maxsize=64)
def _instalment_per_vnd(term_months: int) -> float:
    """The monthly instalment of one VND over `term_months` (the features' annuity)."""
    return float(instalment_vnd(1.0, term_months)[0])


def _affordable(max_instalment: float, term_months: int, cap: int) -> int:
    """The largest whole-million amount whose instalment fits `max_instalment`, at most `cap`."""
    per_vnd = _instalment_per_vnd(int(term_months))
    return max(0, int(min(cap, np.floor(max_instalment / per_vnd / AMOUNT_UNIT_VND) * AMOUNT_UNIT_VND)))


def _ordinary_month(monthly: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """min(median, mean) of each row's counted monthly nets (NaN where none counts)."""
    out = np.full(len(monthly), np.nan)
    for i, (row, k) in enumerate(zip(monthly, counted)):
        if k > 0:
            kept = row[:k]  # bucket 0 is the most recent; only the first k lie inside the history
            out[i] = min(float(np.median(kept)), float(np.mean(kept)))
    return out


_NET_CACHE: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _monthly_net_sql(all_subjects: bool) -> str:
    where = "" if all_subjects else "AND t.entity_id IN (SELECT unnest(?))"
    return f"""
      SELECT t.entity_id,
             CAST(FLOOR((date_diff('day', CAST(t.ts AS DATE), CAST(? AS DATE)) - 1) / {MONTH_DAYS}) AS INTEGER)
               AS bucket,
             SUM(CASE WHEN t.direction = 'inflow' THEN CAST(t.amount_vnd AS DOUBLE)
                      ELSE -CAST(t.amount_vnd AS DOUBLE) END) AS net
      FROM transactions t
      WHERE t.entity_type = ? {where}
        AND t.category <> 'loan_disbursal'
        AND t.ts < CAST(? AS DATE) AND t.ts >= CAST(? AS DATE) - INTERVAL {MONTHS * MONTH_DAYS} DAY
      GROUP BY 1, 2"""


def monthly_net_inflows(cursor, subject_type: str, as_of: date, subject_ids: list[str] | None = None
                        ) -> pd.DataFrame:
    """Net inflow (inflows - outflows, loan disbursals left out) of each subject in each of the twelve
    30-day buckets before `as_of` (columns 0..11, 0 the most recent; an empty bucket is 0). All the
    subject type's subjects when `subject_ids` is None (one query, cached for the snapshot date)."""
    if subject_ids is None:
        params = [as_of, subject_type, as_of, as_of]
    else:
        params = [as_of, subject_type, list(subject_ids), as_of, as_of]
    rows = cursor.execute(_monthly_net_sql(subject_ids is None), params).df()
    table = rows.pivot_table(index="entity_id", columns="bucket", values="net", aggfunc="sum",
                             fill_value=0.0)
    table = table.reindex(columns=range(MONTHS), fill_value=0.0)
    if subject_ids is not None:
        table = table.reindex(list(dict.fromkeys(subject_ids)), fill_value=0.0)
    return table


def _monthly(scorer, subject_type: str, ids: list[str], as_of: date) -> np.ndarray:
    """(len(ids), 12) monthly nets; the snapshot date's come from one cached query of all subjects."""
    if as_of == scorer.snapshot_date:
        with _LOCK:
            per = _NET_CACHE.setdefault(scorer, {})
            cached = per.get(subject_type)
            if cached is None:
                table = monthly_net_inflows(scorer._cursor(), subject_type, as_of)
                # a matrix and a row dict: a DataFrame reindex per request cost ~0.7 ms
                cached = per[subject_type] = (np.vstack([table.to_numpy(dtype=float), np.zeros(MONTHS)]),
                                              {k: i for i, k in enumerate(table.index)})
        matrix, row = cached
        return matrix[[row.get(i, len(matrix) - 1) for i in ids]]  # last row: no transaction, all 0
    return monthly_net_inflows(scorer._cursor(), subject_type, as_of, ids).loc[ids].to_numpy(dtype=float)


def prepare(scorer) -> None:
    """Compute the snapshot date's monthly nets now (the service calls it at start, not on the first
    request)."""
    for subject_type in scorer.plans:
        _monthly(scorer, subject_type, [], scorer.snapshot_date)


# -- the PD over a grid, through the scorer ------------------------------------------------------------
ROUNDING = 1e-12  # PDs closer than this are equal (contributions summed in another order)


def _pd(scorer, subject_type: str, history: np.ndarray, amounts: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """The scorer's PD of each row (history row, amount, term): `Scorer.decide`, as the API scores."""
    return scorer.decide(subject_type, history, amounts, terms).pd


def _pd_grid(scorer, subject_type: str, history: np.ndarray, amounts: np.ndarray,
             terms: np.ndarray) -> np.ndarray:
    """The same PD as `_pd` without the explanation, for the grid: the scorer's own input matrix
    (`_Plan.matrix`: the history row, the application features recomputed for the amount and term),
    the champion's margin and its calibration. `Scorer.decide` adds TreeSHAP contributions whose sum
    is this margin; skipping them makes the grid ten times cheaper. Equal to `_pd` within ROUNDING
    (tests/test_recommended_limit.py, which also checks the PD shown at the recommended amount
    against POST /v1/scores)."""
    plan = scorer._plan(subject_type)
    x = plan.matrix(history, np.asarray(amounts, dtype=float), np.asarray(terms, dtype=float))
    margin = plan.model.booster.predict(x, raw_score=True, num_threads=1 if len(x) < 20_000 else 0)
    return scaling.pd_from_log_odds(plan.model.slope * margin + plan.model.intercept)


@functools.lru_cache(maxsize=16)
def _amount_grid(cap: int) -> np.ndarray:
    points = np.geomspace(AMOUNT_UNIT_VND, cap, GRID_POINTS)
    grid = np.floor(points / AMOUNT_UNIT_VND).astype(np.int64) * AMOUNT_UNIT_VND
    out = np.unique(np.append(grid[grid >= AMOUNT_UNIT_VND], cap))
    out.flags.writeable = False  # cached: shared by every call
    return out


@dataclass
class _Curve:
    """PDs evaluated for one (subject, term): amounts ascending, raw and running-max PDs."""
    amounts: list[int]
    raw: list[float]

    def monotone(self) -> np.ndarray:
        return np.maximum.accumulate(np.asarray(self.raw))


def pd_curves(scorer, subject_type: str, subject_ids: list[str], as_of: date | None = None,
              terms: tuple[int, ...] | None = None, amounts: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(amounts, terms, pd[subject, term, amount]) from the scorer, raw (no running maximum): what the
    tests check the monotonicity on. Every subject must have enough history."""
    as_of = as_of or scorer.snapshot_date
    kinds = {scorer.legal_form(subject_type, s) for s in subject_ids}
    cap = max(policy.LEGAL_LIMIT_VND[k] for k in kinds)
    amounts = _amount_grid(cap) if amounts is None else np.asarray(amounts, dtype=np.int64)
    terms = tuple(terms or TERMS[subject_type])
    history = scorer._history(subject_ids, subject_type, as_of)
    n, t, a = len(subject_ids), len(terms), len(amounts)
    rows = np.repeat(history, t * a, axis=0)
    tt = np.tile(np.repeat(np.asarray(terms, dtype=float), a), n)
    aa = np.tile(amounts.astype(float), n * t)
    return amounts, np.asarray(terms), _pd(scorer, subject_type, rows, aa, tt).reshape(n, t, a)


# -- the recommendation -----------------------------------------------------------------------------
def recommend_limit(scorer, subject_type: str, subject_id: str, as_of: date | None = None,
                    requested_term: int | None = None, target_pd: float | None = None,
                    instalment_share: float | None = None) -> RecommendedLimit | None:
    """The recommended limit of one subject (None: not enough history to score it; unknown subject:
    LookupError). Defaults of target_pd / instalment_share: the settings (8% and 40%)."""
    return recommend_limits(scorer, subject_type, [subject_id], as_of, [requested_term],
                            target_pd, instalment_share)[0]


def recommend_limits(scorer, subject_type: str, subject_ids: list[str], as_of: date | None = None,
                     requested_terms: list[int | None] | None = None, target_pd: float | None = None,
                     instalment_share: float | None = None) -> list[RecommendedLimit | None]:
    """`recommend_limit` for many subjects of one type and date: one scorer call per step for all."""
    set_target, set_share = limit_settings()
    target = float(set_target if target_pd is None else target_pd)
    share = float(set_share if instalment_share is None else instalment_share)
    if not 0 < target < 1 or not 0 < share <= 1:
        raise ValueError(f"target_pd must be in (0, 1) and instalment_share in (0, 1]: {target}, {share}")
    as_of = as_of or scorer.snapshot_date
    requested_terms = list(requested_terms) if requested_terms is not None else [None] * len(subject_ids)
    out: list[RecommendedLimit | None] = [None] * len(subject_ids)
    if not subject_ids:
        return out
    kinds = [scorer.legal_form(subject_type, s) for s in subject_ids]
    unknown = [s for s, k in zip(subject_ids, kinds) if k is None]
    if unknown:
        raise LookupError(f"no {subject_type} with id {unknown[0]!r} on the platform")
    history = scorer._history(list(subject_ids), subject_type, as_of)
    enough = scorer.enough_history(history)
    ok = np.flatnonzero(enough)
    if len(ok) == 0:
        return out
    col = scorer._col
    monthly = _monthly(scorer, subject_type, [subject_ids[i] for i in ok], as_of)
    days = history[ok, col["history_days"]]
    counted = np.clip(np.floor(days / MONTH_DAYS), 0, MONTHS).astype(int)
    ordinary = _ordinary_month(monthly, counted)
    max_instalment = np.where(np.isfinite(ordinary) & (ordinary > 0), share * np.nan_to_num(ordinary), 0.0)
    # each subject's terms (the grid, plus the requested term) and the affordable amount at each
    term_sets, affordable = [], {}
    for j, i in enumerate(ok):
        req = requested_terms[i]
        terms = tuple(sorted(set(TERMS[subject_type]) | ({int(req)} if req else set())))
        term_sets.append(terms)
        cap = policy.LEGAL_LIMIT_VND[kinds[i]]
        for term in terms:
            affordable[(j, term)] = _affordable(float(max_instalment[j]), term, cap)
    # 1. the PD over the amount grid up to the affordable amount, every subject and term in one call
    rows, amounts_col, terms_col, owner = [], [], [], []
    for j, i in enumerate(ok):
        grid = _amount_grid(policy.LEGAL_LIMIT_VND[kinds[i]])
        for term in term_sets[j]:
            most = affordable[(j, term)]
            if most < AMOUNT_UNIT_VND:
                continue  # nothing is affordable at this term: no PD can change that
            amounts = np.append(grid[grid < most], most)
            rows.append(np.repeat(j, len(amounts)))
            amounts_col.append(amounts)
            terms_col.append(np.full(len(amounts), term))
            owner.append((j, term))
    curves: dict[tuple[int, int], _Curve] = {key: _Curve([], []) for key in affordable}
    if owner:
        idx = np.concatenate(rows)
        pds = _pd_grid(scorer, subject_type, history[ok][idx], np.concatenate(amounts_col).astype(float),
                       np.concatenate(terms_col).astype(float))
        pos = 0
        for key, amounts in zip(owner, amounts_col):
            curves[key] = _Curve(list(map(int, amounts)), list(map(float, pds[pos:pos + len(amounts)])))
            pos += len(amounts)
    # 2. bisection between the last grid amount under the target and the first above it
    brackets = {}
    for key, curve in curves.items():
        if not curve.amounts:
            continue
        mono = curve.monotone()
        under = np.flatnonzero(mono <= target)
        if len(under) == 0 or under[-1] == len(mono) - 1:
            continue  # nothing passes, or the whole grid (up to the affordable amount) does
        k = under[-1]
        brackets[key] = [curve.amounts[k], curve.amounts[k + 1]]  # passes, fails
    while True:
        open_ = [(key, (lo + hi) // 2 // AMOUNT_UNIT_VND * AMOUNT_UNIT_VND)
                 for key, (lo, hi) in brackets.items() if hi - lo > AMOUNT_UNIT_VND]
        if not open_:
            break
        keys = [key for key, _ in open_]
        mids = np.array([m for _, m in open_], dtype=float)
        p = _pd_grid(scorer, subject_type, history[ok][[key[0] for key in keys]], mids,
                     np.array([key[1] for key in keys], dtype=float))
        for key, mid, value in zip(keys, mids, p):
            curve = curves[key]
            insert = int(np.searchsorted(curve.amounts, mid))
            curve.amounts.insert(insert, int(mid))
            curve.raw.insert(insert, float(value))
            mono = curve.monotone()[insert]
            if mono <= target:
                brackets[key][0] = int(mid)
            else:
                brackets[key][1] = int(mid)
    # 3. per subject: the bounds per term, the best term, the binding constraint, and the PD at the
    # recommended amount: always an evaluated amount (a grid point, a bisection point or the affordable
    # amount), its running maximum, the same PD `Scorer.decide` gives (tests/test_recommended_limit.py)
    for j, i in enumerate(ok):
        out[i] = _decide(subject_type, subject_ids[i], as_of, kinds[i], term_sets[j], curves, affordable, j,
                         target, share, float(ordinary[j]), float(max_instalment[j]), int(counted[j]),
                         requested_terms[i])
    return out


def _decide(subject_type, subject_id, as_of, kind, terms, curves, affordable, j, target, share, net,
            max_instalment, counted, requested_term) -> RecommendedLimit:
    cap = policy.LEGAL_LIMIT_VND[kind]
    by_term: dict[int, dict[str, int]] = {}
    fixes = 0
    for term in terms:
        curve = curves[(j, term)]
        mono = curve.monotone() if curve.amounts else np.empty(0)
        fixes += int(np.sum(mono > np.asarray(curve.raw) + ROUNDING))
        under = np.flatnonzero(mono <= target)
        pd_limit = int(curve.amounts[under[-1]]) if len(under) else 0
        afford = affordable[(j, term)]
        by_term[term] = {"pd_limit_vnd": pd_limit, "affordable_vnd": afford,
                         "limit_vnd": max(0, min(pd_limit, afford, cap))}
    best = max(v["limit_vnd"] for v in by_term.values())
    pd_at = None
    if best < AMOUNT_UNIT_VND:
        best = 0
        holds = ()
        term = None
        blocked = ("affordability" if all(v["affordable_vnd"] < AMOUNT_UNIT_VND for v in by_term.values())
                   else "pd_target")
        binding = "none_affordable"
    else:
        holds = tuple(t for t in terms if by_term[t]["limit_vnd"] >= best)
        term = requested_term if requested_term in holds else holds[0]
        blocked = None
        b = by_term[term]
        binding = ("legal_cap" if best >= cap else "affordability" if b["affordable_vnd"] <= best
                   else "pd_target")
        curve = curves[(j, term)]
        pd_at = float(curve.monotone()[curve.amounts.index(best)])
    inst = int(round(float(instalment_vnd(best, term)[0]))) if term is not None else 0
    net_int = int(np.floor(net)) if np.isfinite(net) else 0
    vi, en = _reason(binding, blocked, kind, best, term, target, share, net_int,
                     int(np.floor(max_instalment)), cap, max(terms))
    pick = by_term[term] if term is not None else {"pd_limit_vnd": max(v["pd_limit_vnd"] for v in by_term.values()),
                                                   "affordable_vnd": max(v["affordable_vnd"] for v in by_term.values())}
    return RecommendedLimit(
        subject_type=subject_type, subject_id=subject_id, as_of_date=as_of, amount_vnd=int(best),
        term_months=term, terms_months=holds, binding=binding, blocked_by=blocked, reason_vi=vi,
        reason_en=en, target_pd=target, instalment_share=share, pd=pd_at,
        net_monthly_inflow_vnd=net_int, instalment_vnd=inst, max_instalment_vnd=int(np.floor(max_instalment)),
        legal_form=kind, legal_cap_vnd=cap, pd_limit_vnd=int(pick["pd_limit_vnd"]),
        affordable_vnd=int(pick["affordable_vnd"]), monotone_fixes=fixes, months_counted=counted,
        by_term=by_term)


# -- words ------------------------------------------------------------------------------------------
def vnd(amount: int, lang: str) -> str:
    """50.000.000 (Vietnamese) or 50,000,000 (English)."""
    text = f"{int(amount):,}"
    return text.replace(",", ".") if lang == "vi" else text


def _pct(x: float) -> str:
    return f"{x * 100:.0f}" if abs(x * 100 - round(x * 100)) < 1e-9 else f"{x * 100:.1f}"


def _reason(binding, blocked, kind, amount, term, target, share, net, max_inst, cap, longest
            ) -> tuple[str, str]:
    form_vi, form_en = LEGAL_FORM_WORDS.get(kind, (kind, kind))
    if binding == "legal_cap":
        return (f"Đây là mức cao nhất được vay không cần tài sản bảo đảm đối với {form_vi} theo Nghị định "
                f"156/2025/NĐ-CP ({vnd(cap, 'vi')} đồng).",
                f"This is the most a {form_en} may borrow without collateral under Decree "
                f"156/2025/ND-CP ({vnd(cap, 'en')} VND).")
    if binding == "affordability":
        return (f"Tiền trả góp mỗi tháng không nên quá {_pct(share)}% số tiền ròng bạn có trong một tháng "
                f"bình thường ({vnd(net, 'vi')} đồng), tức tối đa {vnd(max_inst, 'vi')} đồng mỗi tháng "
                f"trong {term} tháng.",
                f"The monthly instalment should stay within {_pct(share)}% of your net inflow in an "
                f"ordinary month ({vnd(net, 'en')} VND): at most {vnd(max_inst, 'en')} VND a month "
                f"over {term} months.")
    if binding == "pd_target":
        return (f"Vay nhiều hơn thì rủi ro không trả được nợ ước tính sẽ vượt mức {_pct(target)}% mà bên "
                f"cho vay chấp nhận.",
                f"Borrowing more would raise the estimated risk of not repaying above the "
                f"{_pct(target)}% the lender accepts.")
    unit_vi, unit_en = vnd(AMOUNT_UNIT_VND, "vi"), vnd(AMOUNT_UNIT_VND, "en")
    if blocked == "pd_target":
        return (f"Chưa thể đề xuất khoản vay: ngay cả khoản vay {unit_vi} đồng cũng có rủi ro không trả "
                f"được nợ ước tính cao hơn mức {_pct(target)}% mà bên cho vay chấp nhận.",
                f"No loan can be recommended yet: even {unit_en} VND would carry an estimated risk of "
                f"not repaying above the {_pct(target)}% the lender accepts.")
    if net <= 0:
        return (f"Chưa thể đề xuất khoản vay: trong một tháng bình thường, tiền vào qua nền tảng chưa "
                f"nhiều hơn tiền ra ({vnd(net, 'vi')} đồng).",
                f"No loan can be recommended yet: in an ordinary month, the money coming in through "
                f"the platform is not more than the money going out ({vnd(net, 'en')} VND).")
    return (f"Chưa thể đề xuất khoản vay: {_pct(share)}% số tiền ròng trong một tháng bình thường "
            f"({vnd(max_inst, 'vi')} đồng) chưa đủ trả góp {unit_vi} đồng trong {longest} tháng.",
            f"No loan can be recommended yet: {_pct(share)}% of your net inflow in an ordinary month "
            f"({vnd(max_inst, 'en')} VND) does not cover the instalments of {unit_en} VND over "
            f"{longest} months.")


# -- the API answer ---------------------------------------------------------------------------------
def to_schema(limit: RecommendedLimit):
    """The API's `recommended_limit` object."""
    return schemas.RecommendedLimit.model_construct(
        amount_vnd=limit.amount_vnd, term_months=limit.term_months, terms_months=list(limit.terms_months),
        binding=limit.binding, reason=limit.reason_en, reason_vi=limit.reason_vi, target_pd=limit.target_pd,
        pd=limit.pd, instalment_share=limit.instalment_share,
        net_monthly_inflow_vnd=limit.net_monthly_inflow_vnd, instalment_vnd=limit.instalment_vnd,
        legal_cap_vnd=limit.legal_cap_vnd)


def attach(scorer, requests, answers) -> None:
    """Set `recommended_limit_vnd` and `recommended_limit` on every scored answer (in place): one
    `recommend_limits` call per (subject type, as-of date), the requested term added to the grid.
    An answer that is an error or not scored is left as it is (null)."""
    groups: dict[tuple[str, date], list[int]] = {}
    for i, (request, answer) in enumerate(zip(requests, answers)):
        if getattr(answer, "status", None) == "scored":
            groups.setdefault((answer.subject_type, answer.as_of_date), []).append(i)
    for (subject_type, as_of), idx in groups.items():
        limits = recommend_limits(scorer, subject_type, [answers[i].subject_id for i in idx], as_of,
                                  [requests[i].application.term_months for i in idx])
        for i, limit in zip(idx, limits):
            if limit is not None:
                answers[i].recommended_limit_vnd = limit.amount_vnd
                answers[i].recommended_limit = to_schema(limit)
