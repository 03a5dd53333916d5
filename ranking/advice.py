"""What a member can do to move up: the 2-3 changes that would raise the score most, each one
checked by FOLLOWING it in the member's raw history.

A lever is an action on the member's raw rows (ranking/follow.py: new e-invoices, sales from new
customers, inflows spread over the months, a weekly sale, a year of on-time instalments), never an
edit of feature columns. The features of the changed history are recomputed by the real feature
engine (features.engine.history_features on the accepted data with the member's rows changed) and
re-scored by the real champion for the reference application: the gain shown IS that recomputed
gain, and a changed history cannot be inconsistent, since no feature is set by hand. Only changes
that raise the score by at least MIN_GAIN are offered, best first.

Every door, one rule: the member page (`advise`, one member) and the ranking run (`advise_all`,
every member: one engine run per lever over all members' changed rows) call the same `follow_all`.

What an action does (`Lever.kind`, shown apart on the member page):
- "risk": it lowers the real risk of a loan (repaying on time; borrowing less or longer is the
  recommended limit's business, scoring/limit.py);
- "evidence": it gives lenders evidence (e-invoices, digital payments, regular recorded sales make
  the revenue verifiable); the business and its true risk do not change, only what lenders see.
An evidence lever whose mass adoption would push the model's calibration out of the promotion
gate's bound (governance.promotion.Gates.max_abs_calibration_in_the_large: the mean PD of the
applicants moved by more than the bound, or calibration in the large after it outside the bound)
is not offered: the measurement is `python -m benchmarks.advice_followed` on synthetic data with
the true PD of every application, which writes CALIBRATION_FILE; this module reads the verdicts
from it (`suspended_levers`), so no lever is suspended by hand.

Never a lever (FIXED_FEATURES and data_contracts PROTECTED_ATTRIBUTES): tenure, capital, the
cooperative's own health, the reference application, province, sector, gender, ethnicity,
mountainous commune (never even a model input). No action changes the members or cooperatives
tables, the applications, or another member's rows (tests/test_advice_followed.py).
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from settings import Paths
from data_contracts.contracts import PROTECTED_ATTRIBUTES
from features.catalogue import FEATURES
from ranking import follow
from training import scaling

SUBJECT = "member"
# An action must raise the score by at least this many points (scores are shown to 0.1 point; a
# smaller "gain" is float noise between the two exact scoring paths, not advice).
MIN_GAIN = 0.1
# REPAY_ON_TIME's horizon: the next 12 monthly instalments, i.e. the reference application's term.
REPAY_HORIZON_MONTHS = follow.REPAY_HORIZON_MONTHS
# Where the calibration benchmark records which levers mass adoption would miscalibrate.
CALIBRATION_FILE = Path(__file__).with_name("lever_calibration.json")
Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Kind:
    code: str
    vi: str  # the heading on the member page
    en: str
    why_vi: str  # one plain sentence under it
    why_en: str


KINDS: dict[str, Kind] = {
    "risk": Kind("risk", "Giảm rủi ro thật", "Lowers the real risk",
                 "Những việc này làm khoản vay của bạn an toàn hơn thật sự.",
                 "These make your loans genuinely safer."),
    "evidence": Kind("evidence", "Giúp bên cho vay thấy rõ việc kinh doanh",
                     "Gives lenders evidence",
                     "Hóa đơn điện tử và thanh toán số giúp ngân hàng kiểm chứng doanh thu của bạn. "
                     "Việc kinh doanh không đổi, chỉ rõ ràng hơn.",
                     "E-invoices and digital payments let lenders verify your revenue. "
                     "The business stays the same; it is only easier to see."),
}


@dataclass(frozen=True)
class Lever:
    code: str
    kind: str  # a key of KINDS
    feature: str  # the feature shown to the member as current -> after
    text_vi: str
    text_en: str
    target: str  # what the action does to the raw rows, in words (for docs)
    action: follow.Action  # raw history -> the rows removed and added
    touches_loans: bool = False  # changes loans/repayments (the cooperative's arrears rate reads them)

    @property
    def kind_vi(self) -> str:
        return KINDS[self.kind].vi

    @property
    def kind_en(self) -> str:
        return KINDS[self.kind].en


LEVERS: tuple[Lever, ...] = (
    Lever("EINVOICE_SHARE", "evidence", "einvoice_share_365d",
          "Xuất hóa đơn điện tử (hoặc dùng máy tính tiền) cho ít nhất 80% doanh thu",
          "Issue e-invoices (or use the cash register) for at least 80% of sales",
          "the year's cash sales (then QR / e-wallet sales), spread over the year, re-issued as "
          "e-invoice sales with a matching e-invoice, until 80% of inflows are e-invoiced",
          follow.einvoice),
    Lever("REPAY_ON_TIME", "risk", "repayment_on_time_rate",
          f"Trả nợ đúng hạn mọi kỳ trong {REPAY_HORIZON_MONTHS} tháng tới, không trễ ngày nào",
          f"Pay every instalment on time for the next {REPAY_HORIZON_MONTHS} months, "
          "not a day late",
          f"{REPAY_HORIZON_MONTHS} on-time monthly instalments added to the loan record (with their "
          "repayment outflows); past delays stay (only with a loan history)",
          follow.repay_on_time, touches_loans=True),
    Lever("REGULAR_REVENUE", "evidence", "revenue_volatility_12m",
          "Bán hàng và nhận tiền qua nền tảng đều đặn mỗi tháng",
          "Sell and get paid through the platform evenly, every month",
          "the inflows of the last 360 days re-dated so that each 30-day month gets an even share "
          "(only when volatility > 0.5 or fewer than 10 months had revenue)", follow.regular_revenue),
    Lever("MORE_CUSTOMERS", "evidence", "distinct_customers_365d",
          "Bán cho nhiều khách hàng hơn, không phụ thuộc vào vài khách lớn",
          "Sell to more customers; do not depend on a few big buyers",
          "max(5, 25% of customers) repeat sales of the largest customers come from new customers",
          follow.more_customers),
    Lever("FEWER_CANCELLED", "evidence", "cancelled_invoice_rate_365d",
          "Lập hóa đơn cẩn thận để ít phải hủy (dưới 2%)",
          "Issue invoices carefully so that few are cancelled (under 2%)",
          "the fewest cancelled e-invoices of the year left out for the rate to be <= 2%",
          follow.fewer_cancelled),
    Lever("STAY_ACTIVE", "evidence", "days_since_last_activity",
          "Giao dịch qua nền tảng ít nhất mỗi tuần",
          "Use the platform for a sale or payment at least once a week",
          "a small VietQR sale in every week of the last 13 without an inflow", follow.stay_active),
)
LEVERS_BY_CODE = {lever.code: lever for lever in LEVERS}
assert all(lever.kind in KINDS for lever in LEVERS)

# Model inputs a member cannot (or must not be asked to) change, read from the declarations: the
# application's features, and every history feature whose sources no action of the member writes
# (features.declarations.Source.member_can_change: the members and cooperatives tables, the
# cooperative's own transactions). Not among them: the cooperative's arrears rate, which counts the
# member's own loan-months too (REPAY_ON_TIME's added months may fall in its 12-month window, as a
# year of on-time payments would).
FIXED_FEATURES: frozenset[str] = frozenset({
    *(f.name for f in FEATURES
      if not f.is_history or not any(s.member_can_change for s in f.sources)),
    # attributes that are not features at all, listed so no lever can ever grow into them
    "province", "business_sector", "cooperative_id", "member_type", "join_date",
}) | PROTECTED_ATTRIBUTES


@lru_cache(maxsize=4)
def _calibration(path: str, mtime_ns: int) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def calibration_record(path: Path = CALIBRATION_FILE) -> dict | None:
    """The last calibration measurement of the levers (benchmarks/advice_followed.py), or None."""
    if not path.exists():
        return None
    return _calibration(str(path), path.stat().st_mtime_ns)


def suspended_levers(path: Path = CALIBRATION_FILE) -> frozenset[str]:
    """Levers not offered: mass adoption would push calibration out of the gate's bound."""
    record = calibration_record(path)
    if record is None:
        return frozenset()
    return frozenset(code for code, r in record.get("levers", {}).items() if r.get("suspended"))


def offered_levers() -> tuple[Lever, ...]:
    suspended = suspended_levers()
    return tuple(lever for lever in LEVERS if lever.code not in suspended)


@dataclass
class Action:
    code: str
    kind: str
    kind_vi: str
    kind_en: str
    kind_why_vi: str
    kind_why_en: str
    text_vi: str
    text_en: str
    feature: str
    current: float | None
    target: float | None  # the feature after following, as the engine recomputes it
    score_now: float
    score_after: float
    gain: float

    def as_dict(self) -> dict:
        return asdict(self)


# -- following the levers: one engine run per lever over all members ------------------------------
def _coop_window_members(change: follow.Change, as_of: pd.Series) -> pd.Index:
    """Members whose changed repayment rows fall in the 12 whole months before their as-of month:
    the cooperative's arrears rate (a feature of every member of the cooperative) reads them."""
    rows = [f for t, f in [*change.add.items(), *change.remove.items()] if t == "repayments"]
    if not rows:
        return pd.Index([])
    rep = pd.concat(rows, ignore_index=True)
    if "month" not in rep:
        return pd.Index([])
    start = as_of.dt.to_period("M").dt.to_timestamp() - pd.DateOffset(months=12)
    inside = pd.to_datetime(rep["month"]) >= rep["entity_id"].map(start)
    return pd.Index(rep.loc[inside.to_numpy(), "entity_id"].unique())


def _rounds(con, change: follow.Change, as_of: pd.Series) -> list[pd.Index]:
    """Groups of members whose changes can share one engine run: a member's change reaches only
    its own features, except loan rows inside the cooperative's arrears window, which reach every
    member of the cooperative; such members go in separate runs, one per cooperative and round."""
    shared = _coop_window_members(change, as_of)
    rest = change.members.difference(shared)
    if not len(shared):
        return [rest]
    con.register("_ids", pd.DataFrame({"member_id": list(shared)}))
    coop = con.execute("SELECT m.member_id, m.cooperative_id FROM members m "
                       "JOIN _ids USING (member_id)").df().set_index("member_id")["cooperative_id"]
    con.unregister("_ids")
    order = coop.groupby(coop).cumcount()
    rounds = [rest.union(pd.Index(order.index[order == 0]))]
    rounds += [pd.Index(order.index[order == r]) for r in range(1, int(order.max()) + 1)]
    return [r for r in rounds if len(r)]


def follow_all(con: duckdb.DuckDBPyConnection, bases: dict[str, str], as_of: pd.Series,
               now: pd.DataFrame, levers: tuple[Lever, ...] | None = None,
               timings: dict | None = None, worlds: bool = False) -> dict[str, pd.DataFrame]:
    """For each lever: the engine's history features of every member of `as_of` (entity_id ->
    date; one date per member) that the lever changes, recomputed on the data with each member's
    own change applied. `now` holds the members' current features (index entity_id). Returns
    {lever code: features frame, index entity_id} (members the lever leaves alone are absent).

    One engine run per lever and round (the ranking run: every member's change at once), or with
    `worlds` one engine run for all levers, each in its own copy of the data
    (`follow.recompute_worlds`; the member page, on a small scope, where a run is mostly fixed
    cost). Both give the same features (tests/test_advice_followed.py)."""
    levers = offered_levers() if levers is None else levers
    timings = {} if timings is None else timings
    t = time.perf_counter()
    follow.overlay(con, bases, None)
    history = follow.load_history(con, as_of, now)
    timings["load"] = time.perf_counter() - t
    t = time.perf_counter()
    runs: dict[str, tuple[str, follow.Change]] = {}  # run name -> (lever code, change of one round)
    for lever in levers:
        change = lever.action(history)
        if change.empty:
            continue
        rounds = _rounds(con, change, as_of) if lever.touches_loans else [change.members]
        for r, members in enumerate(rounds):
            runs[f"{lever.code}.{r}"] = (lever.code,
                                         change if len(rounds) == 1 else change.only(members))
    timings["actions"] = time.perf_counter() - t
    t = time.perf_counter()
    if worlds and runs:
        frames = follow.recompute_worlds(con, bases, {k: c for k, (_, c) in runs.items()}, as_of)
    else:
        frames = {k: follow.recompute(con, bases, c, as_of.loc[c.members]) for k, (_, c) in runs.items()}
        follow.overlay(con, bases, None)
    timings["engine"] = time.perf_counter() - t
    empty = pd.DataFrame(columns=now.columns, index=pd.Index([], name="entity_id"))
    out = {}
    for lever in levers:
        parts = [frames[k] for k, (code, _) in runs.items() if code == lever.code and k in frames]
        out[lever.code] = pd.concat(parts) if parts else empty
    return out


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


def advise_all(scorer, clean_dir: Path, ids: np.ndarray, as_of: date, history: np.ndarray,
               score_now: np.ndarray | None = None, k: int = 3, amount: float | None = None,
               term: float | None = None, timings: dict | None = None,
               scoped: bool = False) -> dict[str, np.ndarray]:
    """Top-k actions for every member `ids` (rows of `history`, columns scorer.columns, as of
    `as_of`), each followed in the raw data of `clean_dir` (one engine run per lever over all
    members; with `scoped`, over a DuckDB holding only what these members' features read,
    follow.scoped_connection: the same features, for a Spark partition's members). Returns {"code": (n, k) object (None when fewer), "score_after", "gain", "current",
    "target": (n, k)}, sorted by gain, only gains >= MIN_GAIN."""
    from ranking.rank import REFERENCE_AMOUNT_VND, REFERENCE_TERM_MONTHS
    amount = REFERENCE_AMOUNT_VND if amount is None else amount
    term = REFERENCE_TERM_MONTHS if term is None else term
    ids = np.asarray(ids)
    n = len(ids)
    now = pd.DataFrame(history, columns=scorer.columns, index=pd.Index(ids, name="entity_id"))
    score_now = (score_history(scorer, history, amount, term) if score_now is None
                 else np.asarray(score_now, dtype=float))
    if scoped:
        con, bases = follow.scoped_connection(clean_dir, list(ids), as_of)
    else:
        con, bases = duckdb.connect(), follow.parquet_bases(clean_dir)
    try:
        recomputed = follow_all(con, bases,
                                pd.Series(pd.Timestamp(as_of), index=now.index), now,
                                timings=timings)
    finally:
        con.close()
    return _top(scorer, now, score_now, recomputed, k, amount, term)


def _top(scorer, now: pd.DataFrame, score_now: np.ndarray, recomputed: dict[str, pd.DataFrame],
         k: int, amount: float, term: float) -> dict[str, np.ndarray]:
    n = len(now)
    levers = [LEVERS_BY_CODE[c] for c in recomputed]
    position = pd.Series(np.arange(n), index=now.index)
    after = np.full((n, len(levers)), np.nan)
    current = np.full((n, len(levers)), np.nan)
    target = np.full((n, len(levers)), np.nan)
    for j, lever in enumerate(levers):
        frame = recomputed[lever.code]
        current[:, j] = now[lever.feature].to_numpy(dtype=float)
        if len(frame):
            rows = position.loc[frame.index].to_numpy()
            after[rows, j] = score_history(scorer, frame[scorer.columns].to_numpy(dtype=np.float64),
                                           amount, term)
            target[rows, j] = frame[lever.feature].to_numpy(dtype=float)
    gain = after - score_now[:, None]
    gain = np.where(gain >= MIN_GAIN, gain, -np.inf)  # NaN (not followed), no gain: out
    order = np.argsort(-gain, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(gain, order, axis=1)
    keep = np.isfinite(top)
    names = np.array([lv.code for lv in levers] + [None], dtype=object)
    pick = (lambda a: np.where(keep, np.take_along_axis(a, order, axis=1), np.nan))
    return {"code": np.where(keep, names[order] if len(levers) else None, None),
            "score_after": pick(after), "gain": np.where(keep, top, np.nan),
            "current": pick(current), "target": pick(target)}


# -- one member, for the member's page ----------------------------------------------------------
def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _paths_of(scorer) -> Paths:
    """The home a Scorer reads (its snapshot lies at <home>/features/snapshot.parquet)."""
    paths = getattr(scorer, "paths", None)
    return paths if paths is not None else Paths(Path(scorer._snapshot_path).parents[1])


def stored_actions(paths: Paths, scorer, member_id: str, k: int = 3) -> list[dict] | None:
    """The member's actions as the ranking run computed them (the same `follow_all`), or None
    when they may not be current: no ranking on the snapshot's date, written before the snapshot,
    by another model version, before the stored gains existed, for fewer actions than `k`, or
    naming a lever suspended since. The member page then computes them live."""
    from ranking import rank
    if k > rank.N_ACTIONS or scorer.snapshot_date not in rank.ranking_dates(paths):
        return None
    part = rank._partition(paths, scorer.snapshot_date) / "part-0.parquet"
    snap = paths.features / "snapshot.json"
    if snap.exists() and part.stat().st_mtime_ns < snap.stat().st_mtime_ns:
        return None
    rows = rank._read_member(paths, scorer.snapshot_date, member_id)
    if rows.empty or "action_1_gain" not in rows:
        return None
    r = rows.iloc[0]
    plan = scorer.plans.get(SUBJECT)
    if plan is None or str(r["model_version"]) != str(plan.loaded.info.version):
        return None
    codes = [r[f"action_{j + 1}"] for j in range(rank.N_ACTIONS)
             if isinstance(r[f"action_{j + 1}"], str)]
    suspended = suspended_levers()
    if any(c in suspended or c not in LEVERS_BY_CODE for c in codes):
        return None
    if r["status"] != "ranked":
        return []
    history = scorer._history([member_id], SUBJECT, scorer.snapshot_date)
    from ranking.rank import REFERENCE_AMOUNT_VND, REFERENCE_TERM_MONTHS
    now = float(score_history(scorer, history, REFERENCE_AMOUNT_VND, REFERENCE_TERM_MONTHS)[0])
    col = {c: i for i, c in enumerate(scorer.columns)}
    out = []
    for j, code in enumerate(codes[:k]):
        lv, gain = LEVERS_BY_CODE[code], float(r[f"action_{j + 1}_gain"])
        out.append(Action(code=lv.code, kind=lv.kind, kind_vi=lv.kind_vi, kind_en=lv.kind_en,
                          kind_why_vi=KINDS[lv.kind].why_vi, kind_why_en=KINDS[lv.kind].why_en,
                          text_vi=lv.text_vi, text_en=lv.text_en, feature=lv.feature,
                          current=_finite(history[0, col[lv.feature]]),
                          target=_finite(r[f"action_{j + 1}_target"]), score_now=now,
                          score_after=now + gain, gain=gain).as_dict())
    return out


def advise(paths_or_scorer, member_id: str, as_of: date | None = None, k: int = 3,
           timings: dict | None = None, stored: bool = True) -> list[dict]:
    """The k actions that would raise this member's ranking score most, best first, each a dict
    with code, kind (+ kind_vi, kind_en, kind_why_vi, kind_why_en), text_vi, text_en, feature, current, target, score_now,
    score_after, gain. Each action is followed in the member's raw rows and the features
    recomputed by the engine (`follow_all`, as the ranking run does); every score comes from
    `Scorer.decide`. [] when the member has not enough history to be scored or nothing realistic
    would help. KeyError for an unknown member.

    With `stored` (the default), on the snapshot's date, the ranking run's own result for the
    member is returned when it is current (`stored_actions`: same computation, read in
    milliseconds instead of the ~0.5-1 s of following every lever live; its scores come from the
    champion's prediction without TreeSHAP, equal to `Scorer.decide`'s to 1e-8 points)."""
    from ranking.rank import REFERENCE_AMOUNT_VND, REFERENCE_TERM_MONTHS, get_scorer
    if isinstance(paths_or_scorer, Paths):
        paths, scorer = paths_or_scorer, get_scorer(paths_or_scorer)
    else:
        scorer = paths_or_scorer
        paths = _paths_of(scorer)
    if member_id not in scorer.row[SUBJECT] and member_id not in scorer.member_type:
        raise KeyError(f"no member with id '{member_id}' on the platform")
    as_of = as_of or scorer.snapshot_date
    if stored and as_of == scorer.snapshot_date:
        found = stored_actions(paths, scorer, member_id, k)
        if found is not None:
            return found
    history = scorer._history([member_id], SUBJECT, as_of)
    if not scorer.enough_history(history)[0]:
        return []
    now = pd.DataFrame(history, columns=scorer.columns, index=pd.Index([member_id], name="entity_id"))
    t = time.perf_counter()
    con, bases = follow.scoped_connection(paths.clean, [member_id], as_of)
    if timings is not None:
        timings["scope"] = time.perf_counter() - t
    try:
        recomputed = follow_all(con, bases, pd.Series(pd.Timestamp(as_of), index=now.index), now,
                                timings=timings, worlds=True)
    finally:
        con.close()
    followed = [(LEVERS_BY_CODE[c], f) for c, f in recomputed.items() if len(f)]
    stacked = np.vstack([history, *(f[scorer.columns].to_numpy(dtype=np.float64)
                                    for _, f in followed)])
    m = len(stacked)
    scores = scorer.decide(SUBJECT, stacked, np.full(m, float(REFERENCE_AMOUNT_VND)),
                           np.full(m, float(REFERENCE_TERM_MONTHS))).score
    actions = [Action(code=lv.code, kind=lv.kind, kind_vi=lv.kind_vi, kind_en=lv.kind_en,
                      kind_why_vi=KINDS[lv.kind].why_vi, kind_why_en=KINDS[lv.kind].why_en,
                      text_vi=lv.text_vi, text_en=lv.text_en, feature=lv.feature,
                      current=_finite(now.iloc[0][lv.feature]),
                      target=_finite(f.iloc[0][lv.feature]),
                      score_now=float(scores[0]), score_after=float(scores[i + 1]),
                      gain=float(scores[i + 1] - scores[0]))
               for i, (lv, f) in enumerate(followed)]
    actions = sorted((a for a in actions if a.gain >= MIN_GAIN), key=lambda a: -a.gain)
    return [a.as_dict() for a in actions[:k]]
