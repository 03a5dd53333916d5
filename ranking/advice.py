"""What a member can do to move up: the 2-3 changes that would raise the score most.

Only ACTIONABLE levers are considered: behaviour a household business really controls through the
platform. Each lever is a vectorised function from the member's current history columns to the
changed ones, with a realistic target (never a perfect business): the changed row is re-scored by
the REAL champion through the same Scorer (same input matrix, same booster, same calibration), and
only changes that raise the score are offered, best first.

Never a lever (FIXED_FEATURES and data_contracts PROTECTED_ATTRIBUTES): tenure, capital, the
cooperative's own health, the reference application, revenue levels and trends (not something a
member can promise), province, sector, gender, ethnicity, mountainous commune (never even a model
input). tests/test_ranking.py checks every lever against these lists on real rows.

REPAY_ON_TIME models only the future. The repayment features cover the member's whole loan
history (no window), and nobody can rewrite the past, so the lever re-scores the member as if the
next REPAY_HORIZON_MONTHS monthly instalments (one a month, as on the reference application's
12-month loan) were all paid on time, BLENDED with the record so far in proportion to counts:

    on-time rate -> (on-time months + 12) / (repayment months + 12)

so a member with 40 past instalments moves less than one with 4. The worst days past due is a
maximum over the whole history: a past delay stays in it, so the lever leaves it alone. The
count (repayment_months) is a snapshot column that is not a model input (features/engine.py); on
a snapshot built before it existed the lever is not offered rather than guessed.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import date

import numpy as np

from settings import Paths
from data_contracts.contracts import PROTECTED_ATTRIBUTES
from data_contracts.vocabulary import COOPERATIVE_SECTORS, MEMBER_SECTORS
from training import scaling

SUBJECT = "member"
# An action must raise the score by at least this many points (scores are shown to 0.1 point; a
# smaller "gain" is float noise between the two exact scoring paths, not advice).
MIN_GAIN = 0.1
# REPAY_ON_TIME's horizon: the next 12 monthly instalments, i.e. the reference application's term.
REPAY_HORIZON_MONTHS = 12
Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Lever:
    code: str
    feature: str  # the feature shown to the member as current -> target
    text_vi: str
    text_en: str
    target: str  # the realistic target, in words (for docs and the page)
    change: Callable[[Columns], dict[str, np.ndarray]]  # current columns -> new values of changed ones


def _einvoice(c: Columns) -> dict[str, np.ndarray]:
    share = c["einvoice_share_365d"]
    target = np.maximum(share, 0.8)  # NaN (no revenue) stays NaN: lever does not apply
    # the extra e-invoiced revenue comes out of cash sales first
    cash = np.maximum(c["cash_share_365d"] - (target - share), 0.0)
    return {"einvoice_share_365d": target, "cash_share_365d": cash}


def _repay(c: Columns) -> dict[str, np.ndarray]:
    rate = c["repayment_on_time_rate"]  # NaN without a loan history: the lever does not apply
    months = c.get("repayment_months")
    if months is None:  # snapshot older than the count: the honest move is unknown, so none
        return {"repayment_on_time_rate": rate}
    # on-time months so far (rate * months is exact up to float rounding) plus a clean horizon
    blended = (rate * months + REPAY_HORIZON_MONTHS) / (months + REPAY_HORIZON_MONTHS)
    return {"repayment_on_time_rate": np.where(months > 0, blended, rate)}


def _regular(c: Columns) -> dict[str, np.ndarray]:
    return {"revenue_volatility_12m": np.minimum(c["revenue_volatility_12m"], 0.5),
            "active_months_12m": np.where(c["active_months_12m"] > 0,
                                          np.maximum(c["active_months_12m"], 10.0),
                                          c["active_months_12m"])}


def _customers(c: Columns) -> dict[str, np.ndarray]:
    n = c["distinct_customers_365d"]
    more = n + np.maximum(5.0, np.ceil(0.25 * n))
    return {"distinct_customers_365d": np.where(n > 0, more, n),
            "customer_concentration_365d": np.minimum(c["customer_concentration_365d"], 0.25)}


def _cancelled(c: Columns) -> dict[str, np.ndarray]:
    return {"cancelled_invoice_rate_365d": np.minimum(c["cancelled_invoice_rate_365d"], 0.02)}


def _active(c: Columns) -> dict[str, np.ndarray]:
    return {"days_since_last_activity": np.minimum(c["days_since_last_activity"], 7.0)}


LEVERS: tuple[Lever, ...] = (
    Lever("EINVOICE_SHARE", "einvoice_share_365d",
          "Xuất hóa đơn điện tử (hoặc dùng máy tính tiền) cho ít nhất 80% doanh thu",
          "Issue e-invoices (or use the cash register) for at least 80% of sales",
          "e-invoice share -> max(current, 0.8); the increase comes out of the cash share", _einvoice),
    Lever("REPAY_ON_TIME", "repayment_on_time_rate",
          f"Trả nợ đúng hạn mọi kỳ trong {REPAY_HORIZON_MONTHS} tháng tới, không trễ ngày nào",
          f"Pay every instalment on time for the next {REPAY_HORIZON_MONTHS} months, "
          "not a day late",
          f"on-time rate -> (on-time months + {REPAY_HORIZON_MONTHS}) / (repayment months + "
          f"{REPAY_HORIZON_MONTHS}): the next {REPAY_HORIZON_MONTHS} monthly instalments on time, "
          "blended with the whole history; worst days past due unchanged (only with a loan "
          "history)", _repay),
    Lever("REGULAR_REVENUE", "revenue_volatility_12m",
          "Bán hàng và nhận tiền qua nền tảng đều đặn mỗi tháng",
          "Sell and get paid through the platform evenly, every month",
          "revenue volatility -> min(current, 0.5); months with revenue -> max(current, 10)", _regular),
    Lever("MORE_CUSTOMERS", "distinct_customers_365d",
          "Bán cho nhiều khách hàng hơn, không phụ thuộc vào vài khách lớn",
          "Sell to more customers; do not depend on a few big buyers",
          "distinct customers + max(5, 25%); concentration (HHI) -> min(current, 0.25)", _customers),
    Lever("FEWER_CANCELLED", "cancelled_invoice_rate_365d",
          "Lập hóa đơn cẩn thận để ít phải hủy (dưới 2%)",
          "Issue invoices carefully so that few are cancelled (under 2%)",
          "cancelled invoice rate -> min(current, 0.02)", _cancelled),
    Lever("STAY_ACTIVE", "days_since_last_activity",
          "Giao dịch qua nền tảng ít nhất mỗi tuần",
          "Use the platform for a sale or payment at least once a week",
          "days since the last transaction -> min(current, 7)", _active),
)
LEVERS_BY_CODE = {lever.code: lever for lever in LEVERS}

# Model inputs a member cannot (or must not be asked to) change: never touched by a lever.
FIXED_FEATURES: frozenset[str] = frozenset({
    "tenure_years", "capital_contribution_vnd", "legal_capital_vnd", "member_count",
    "coop_revenue_12m", "coop_revenue_trend_12m", "coop_members_in_arrears_rate",
    "coop_arrears_rate_among_members",
    "requested_amount_vnd", "term_months", "loan_to_revenue", "instalment_to_net_inflow",
    "prior_loans", "history_days", "transactions_365d", "repayment_months",
    # a past delay cannot be undone: REPAY_ON_TIME only adds on-time months to the rate
    "worst_days_past_due",
    # revenue levels and trends: an outcome, not an action a member can promise
    *(f"{d}_{k}_{n}d" for d in ("inflow", "outflow") for k in ("sum", "count") for n in (30, 90, 180, 365)),
    "net_inflow_ratio_365d", "revenue_trend_12m", "revenue_change_vs_last_year_90d",
    # a recent shock is an outcome too; the kind of business, its sector and the season are facts
    "inflow_30d_vs_usual_month", "inflow_60d_vs_usual_month", "weeks_without_inflow_13w",
    "customers_change_90d", "household_business", "harvest_season",
    *(f"sector_{s}" for s in MEMBER_SECTORS), *(f"coop_sector_{s}" for s in COOPERATIVE_SECTORS),
    # attributes that are not features at all, listed so no lever can ever grow into them
    "province", "business_sector", "cooperative_id", "member_type", "join_date",
}) | PROTECTED_ATTRIBUTES


@dataclass
class Action:
    code: str
    text_vi: str
    text_en: str
    feature: str
    current: float | None
    target: float | None
    score_now: float
    score_after: float
    gain: float

    def as_dict(self) -> dict:
        return asdict(self)


# -- vectorised core --------------------------------------------------------------------------
def changed_history(scorer, history: np.ndarray, lever: Lever) -> tuple[np.ndarray, np.ndarray]:
    """(changed copy of `history`, mask of rows the lever changes)."""
    col = {c: i for i, c in enumerate(scorer.columns)}
    new = lever.change({c: history[:, col[c]] for c in col})
    out = history.copy()
    applies = np.zeros(len(history), dtype=bool)
    for feature, values in new.items():
        old = history[:, col[feature]]
        applies |= np.isfinite(values) & np.isfinite(old) & (values != old)
        out[:, col[feature]] = values
    return out, applies


def score_history(scorer, history: np.ndarray, amount: float, term: float,
                  num_threads: int = 0) -> np.ndarray:
    """Unrounded scores of history rows for one application, by the champion's own prediction
    (input matrix from the Scorer's plan, booster raw score, Platt calibration, scaling): the
    log-odds `Scorer.decide` returns without its TreeSHAP step, which advice does not need and
    which costs ~10x the prediction. tests/test_ranking.py checks it equals decide()."""
    plan = scorer.plans[SUBJECT]
    n = len(history)
    x = plan.matrix(history, np.full(n, float(amount)), np.full(n, float(term)))
    margin = plan.model.booster.predict(x, raw_score=True, num_threads=num_threads)
    return scaling.score_from_log_odds(plan.model.slope * margin + plan.model.intercept)


def advise_all(scorer, history: np.ndarray, score_now: np.ndarray | None = None, k: int = 3,
               amount: float | None = None, term: float | None = None,
               chunk: int = 250_000) -> dict[str, np.ndarray]:
    """Top-k actions for every row of `history` (rows with enough history), vectorised: one model
    call per lever and chunk. Returns {"code": (n, k) object (None when fewer), "score_after":
    (n, k), "gain": (n, k)}, sorted by gain, only gains >= MIN_GAIN."""
    from ranking.rank import REFERENCE_AMOUNT_VND, REFERENCE_TERM_MONTHS
    amount = REFERENCE_AMOUNT_VND if amount is None else amount
    term = REFERENCE_TERM_MONTHS if term is None else term
    n = len(history)
    codes = np.full((n, k), None, dtype=object)
    after = np.full((n, k), np.nan)
    gains = np.full((n, k), np.nan)
    names = np.array([lv.code for lv in LEVERS] + [None], dtype=object)
    for start in range(0, n, chunk):
        h = history[start:start + chunk]
        now = (score_history(scorer, h, amount, term) if score_now is None
               else np.asarray(score_now[start:start + chunk], dtype=float))
        all_after = np.full((len(h), len(LEVERS)), np.nan)
        for j, lever in enumerate(LEVERS):
            changed, applies = changed_history(scorer, h, lever)
            rows = np.flatnonzero(applies)
            if len(rows):
                all_after[rows, j] = score_history(scorer, changed[rows], amount, term)
        gain = all_after - now[:, None]
        gain = np.where(gain >= MIN_GAIN, gain, -np.inf)  # NaN (not applicable), no gain: out
        order = np.argsort(-gain, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(gain, order, axis=1)
        keep = np.isfinite(top)
        sl = slice(start, start + len(h))
        codes[sl] = np.where(keep, names[order], None)
        after[sl] = np.where(keep, np.take_along_axis(all_after, order, axis=1), np.nan)
        gains[sl] = np.where(keep, top, np.nan)
    return {"code": codes, "score_after": after, "gain": gains}


# -- one member, for the member's page ----------------------------------------------------------
def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def advise(paths_or_scorer, member_id: str, as_of: date | None = None, k: int = 3) -> list[dict]:
    """The k actions that would raise this member's ranking score most, best first, each a dict
    with code, text_vi, text_en, feature, current, target, score_now, score_after, gain. Every
    score comes from `Scorer.decide` (the path the service scores with). [] when the member has not
    enough history to be scored or nothing realistic would help. KeyError for an unknown member."""
    from ranking.rank import REFERENCE_AMOUNT_VND, REFERENCE_TERM_MONTHS, get_scorer
    scorer = get_scorer(paths_or_scorer) if isinstance(paths_or_scorer, Paths) else paths_or_scorer
    if member_id not in scorer.row[SUBJECT] and member_id not in scorer.member_type:
        raise KeyError(f"no member with id '{member_id}' on the platform")
    as_of = as_of or scorer.snapshot_date
    history = scorer._history([member_id], SUBJECT, as_of)
    if not scorer.enough_history(history)[0]:
        return []
    rows = [history]
    applicable = []
    for lever in LEVERS:
        changed, applies = changed_history(scorer, history, lever)
        if applies[0]:
            rows.append(changed)
            applicable.append(lever)
    stacked = np.vstack(rows)
    m = len(stacked)
    scores = scorer.decide(SUBJECT, stacked, np.full(m, float(REFERENCE_AMOUNT_VND)),
                           np.full(m, float(REFERENCE_TERM_MONTHS))).score
    col = {c: i for i, c in enumerate(scorer.columns)}
    actions = [Action(code=lv.code, text_vi=lv.text_vi, text_en=lv.text_en, feature=lv.feature,
                      current=_finite(history[0, col[lv.feature]]),
                      target=_finite(stacked[i + 1, col[lv.feature]]),
                      score_now=float(scores[0]), score_after=float(scores[i + 1]),
                      gain=float(scores[i + 1] - scores[0]))
               for i, lv in enumerate(applicable)]
    actions = sorted((a for a in actions if a.gain >= MIN_GAIN), key=lambda a: -a.gain)
    return [a.as_dict() for a in actions[:k]]
