"""Advice that holds when followed: each lever applied to the member's RAW history, as it would
really happen, and the features recomputed by the real feature engine.

A lever here is an ACTION on rows, never an edit of feature columns: new or changed transactions,
e-invoices and repayment rows of the member (`Change`: rows removed and rows added, per table).
The features are then recomputed by `features.engine.history_features` on a DuckDB connection whose
tables are the accepted data minus the removed rows plus the added ones (`overlay`), so whatever the
engine computes from the changed rows is what the member is shown: a changed history cannot be
inconsistent (more active months than inflows, more customers than inflows, "active last week" with
no transaction in 30 days), because no feature is set by hand.

What "following the advice" means, in rows (the score a year from now, if the member does this and
the rest of the business stays as in the past year). The windowed features only see the last year,
so the year ahead is written as the past year redone; the whole-history repayment record cannot be
rewritten, so the year ahead is ADDED to it:

- EINVOICE_SHARE: the member's cash sales of the past 365 days (then, if that is not enough, sales
  paid by QR or e-wallet), in an order spread over the year, re-issued as e-invoice sales until at
  least 80% of the inflows are e-invoiced (cash registers count already): the transaction's channel
  becomes `e_invoice` and a matching issued e-invoice appears (same time, same total, no buyer tax
  code; the member's usual VAT rate). A cash sale keeps its empty counterparty (the buyer is not
  known): e-invoicing proves the revenue, it does not invent customers.
- MORE_CUSTOMERS: max(5, 25% of the distinct customers) sales of the past 365 days that went to a
  customer who bought more than once (the largest customers' largest sales first; every customer
  keeps at least one sale) come from new, distinct hashed counterparties instead.
- REGULAR_REVENUE (only when revenue volatility > 0.5 or fewer than 10 months had revenue): the
  inflows of the last 360 days, same amounts and order, re-dated so that each 30-day month gets an
  even share of the money; the e-invoices of moved e-invoice sales move with them.
- FEWER_CANCELLED (only when over 2% of the year's e-invoices were cancelled): the fewest cancelled
  invoices removed (they were mistakes re-issued under another number) for the rate to be <= 2%.
- STAY_ACTIVE: a small sale by VietQR (the member's median sale, at most 200,000 VND, from their
  most frequent customer) in every week of the last 13 with no inflow: so the last transaction is
  within a week, and it counts in every window that contains it.
- REPAY_ON_TIME (only with a loan history): the next 12 monthly instalments paid on time, ADDED to
  the record and never replacing a past delay. They cannot be dated after the as-of date, so they
  are written where they change nothing else the features read: 12 on-time months in front of the
  member's oldest loan (its disbursal and its disbursal transaction 12 months earlier, its term 12
  months longer), each with its VietQR repayment outflow. The repayment counts the features read
  (loan-months, on-time months, worst days past due, loans) are exactly those of the record a year
  from now.

Everything is vectorised over members (pandas on the members' rows): the member page applies a lever
to one member, the ranking batch to every member at once, with the same functions (`apply`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from features import engine

SUBJECT = "member"
LOOKBACK = pd.Timedelta(days=engine.LOOKBACK_DAYS)
EINVOICE_TARGET = 0.8
CANCELLED_TARGET = 0.02
VOLATILITY_TARGET = 0.5
ACTIVE_MONTHS_TARGET = 10
MIN_NEW_CUSTOMERS = 5
NEW_CUSTOMER_SHARE = 0.25
ACTIVE_WEEKS = 13
SMALL_SALE_MAX_VND = 200_000
SMALL_SALE_MIN_VND = 10_000
REPAY_HORIZON_MONTHS = 12
KEYS = {"transactions": ("transaction_id",), "e_invoices": ("invoice_id",), "loans": ("loan_id",),
        "repayments": ("loan_id", "month"), "loan_applications": ("application_id",)}
# The engine's sources, and the applications: the features never read them, but a loan must not be
# disbursed before its application (data_contracts.rules), so an action that moves a disbursal
# moves its application date with it.
TABLES = (*engine.SOURCE_TABLES, "loan_applications")
HELPER_COLUMNS = ("as_of", "age_days")
# Columns of the rows an action may add, per table (the data contracts' columns).
COLUMNS = {
    "transactions": ["transaction_id", "entity_type", "entity_id", "ts", "amount_vnd", "direction",
                     "channel", "counterparty_hash", "category"],
    "e_invoices": ["invoice_id", "entity_type", "entity_id", "issued_at", "status", "total_vnd",
                   "vat_rate_percent", "buyer_tax_code_present"],
    "loans": ["loan_id", "application_id", "entity_type", "entity_id", "disbursal_date",
              "principal_vnd", "term_months"],
    "repayments": ["loan_id", "month", "days_past_due", "amount_due_vnd", "amount_paid_vnd"],
}
FORMAL = ("e_invoice", "cash_register")


# -- the raw history of some members -------------------------------------------------------------
@dataclass
class History:
    """The raw rows of some members that a lever may change, each row with its member's `as_of`
    (one as-of date per member): transactions and e-invoices of the look-back window (with
    `age_days` as the engine counts it), every loan disbursed before as_of and its repayment rows
    before as_of. `now` holds the members' current features (index entity_id) for the levers that
    only apply under a threshold."""
    as_of: pd.Series  # entity_id -> Timestamp (midnight)
    tx: pd.DataFrame
    inv: pd.DataFrame
    loans: pd.DataFrame
    rep: pd.DataFrame
    now: pd.DataFrame
    apps: pd.DataFrame  # the applications of `loans`


def load_history(con: duckdb.DuckDBPyConnection, as_of: pd.Series, now: pd.DataFrame) -> History:
    """The raw rows of the members of `as_of` (entity_id -> date) from `con`'s tables."""
    as_of = pd.to_datetime(as_of).dt.normalize().rename("as_of")
    as_of.index.name = "entity_id"
    spine = as_of.reset_index()
    con.register("_follow_spine", spine)
    try:
        tx = con.execute(f"""
            SELECT t.*, s.as_of, date_diff('day', CAST(t.ts AS DATE), CAST(s.as_of AS DATE)) AS age_days
            FROM transactions t JOIN _follow_spine s ON t.entity_id = s.entity_id
            WHERE t.entity_type = '{SUBJECT}' AND t.ts < s.as_of
              AND t.ts >= s.as_of - INTERVAL {engine.LOOKBACK_DAYS} DAY
            ORDER BY t.entity_id, t.ts, t.transaction_id""").df()
        inv = con.execute(f"""
            SELECT i.*, s.as_of FROM e_invoices i JOIN _follow_spine s ON i.entity_id = s.entity_id
            WHERE i.entity_type = '{SUBJECT}' AND i.issued_at < s.as_of
              AND i.issued_at >= s.as_of - INTERVAL {engine.LOOKBACK_DAYS} DAY
            ORDER BY i.entity_id, i.issued_at, i.invoice_id""").df()
        loans = con.execute(f"""
            SELECT l.*, s.as_of FROM loans l JOIN _follow_spine s ON l.entity_id = s.entity_id
            WHERE l.entity_type = '{SUBJECT}' AND l.disbursal_date < s.as_of
            ORDER BY l.entity_id, l.disbursal_date, l.loan_id""").df()
        rep = con.execute(f"""
            SELECT r.*, l.entity_id, s.as_of FROM repayments r
            JOIN loans l ON l.loan_id = r.loan_id AND l.entity_type = '{SUBJECT}'
            JOIN _follow_spine s ON l.entity_id = s.entity_id
            WHERE l.disbursal_date < s.as_of AND r.month < s.as_of
            ORDER BY l.entity_id, r.loan_id, r.month""").df()
        apps = con.execute(f"""
            SELECT a.* FROM loan_applications a JOIN loans l ON l.application_id = a.application_id
            JOIN _follow_spine s ON l.entity_id = s.entity_id
            WHERE l.entity_type = '{SUBJECT}' AND l.disbursal_date < s.as_of""").df()
    finally:
        con.unregister("_follow_spine")
    return History(as_of=as_of, tx=tx, inv=inv, loans=loans, rep=rep, now=now, apps=apps)


# -- what a lever does to the rows ------------------------------------------------------------------
@dataclass
class Change:
    """Rows removed (their keys) and rows added, per table; `members`: whom the change concerns.
    A changed row is removed under its key and added with its new values."""
    members: pd.Index
    remove: dict[str, pd.DataFrame] = field(default_factory=dict)
    add: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return len(self.members) == 0

    def only(self, members: Iterable[str]) -> "Change":
        """The part of the change that concerns `members`."""
        keep = self.members.intersection(pd.Index(list(members)))
        return Change(members=keep,
                      remove={t: f[f["entity_id"].isin(keep)] for t, f in self.remove.items()},
                      add={t: f[f["entity_id"].isin(keep)] for t, f in self.add.items()})


def _change(removed: dict[str, pd.DataFrame], added: dict[str, pd.DataFrame]) -> Change:
    """A Change from full rows: keys (+ entity_id) of the removed, contract columns of the added."""
    members = pd.Index(sorted(set().union(*(set(f["entity_id"]) for f in
                                             [*removed.values(), *added.values()]))))
    return Change(members=members,
                  remove={t: f[[*KEYS[t], "entity_id"]].reset_index(drop=True)
                          for t, f in removed.items()},
                  add={t: f[_columns(t, f) + (["entity_id"] if "entity_id" not in _columns(t, f) else [])]
                       .reset_index(drop=True) for t, f in added.items()})


def _columns(table: str, frame: pd.DataFrame) -> list[str]:
    """The table's own columns in `frame` (the contract's; for the applications, as read)."""
    return COLUMNS.get(table) or [c for c in frame.columns if c not in HELPER_COLUMNS]


def _hash_hex(keys: pd.Series, salt: str) -> pd.Series:
    """16 hex digits per key, like the platform's counterparty hashes (a new, stable id)."""
    h = pd.util.hash_pandas_object(salt + "|" + keys.astype(str), index=False).to_numpy()
    return pd.Series([f"{x:016x}" for x in h.tolist()], index=keys.index)


def _spread_order(ids: pd.Series) -> np.ndarray:
    """A fixed pseudo-random order key per row (spreads a selection over the year)."""
    return pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy()


def _most_frequent(frame: pd.DataFrame, column: str) -> pd.Series:
    """Per entity_id, the most frequent non-null value of `column` (ties: the smallest)."""
    counts = frame.dropna(subset=[column]).groupby(["entity_id", column]).size().rename("n")
    if counts.empty:
        return pd.Series(dtype=object)
    counts = counts.reset_index().sort_values(["entity_id", "n", column],
                                              ascending=[True, False, True], kind="stable")
    return counts.drop_duplicates("entity_id").set_index("entity_id")[column]


def _revenue(tx: pd.DataFrame, days: int) -> pd.DataFrame:
    """Inflows the engine counts as revenue (a loan disbursal is borrowed, not revenue)."""
    return tx[(tx["direction"] == "inflow") & (tx["category"] != "loan_disbursal")
              & (tx["age_days"] <= days)]


def einvoice(h: History) -> Change:
    rev = _revenue(h.tx, 365)
    total = rev.groupby("entity_id")["amount_vnd"].sum().astype(float)
    formal = rev[rev["channel"].isin(FORMAL)].groupby("entity_id")["amount_vnd"].sum()
    formal = formal.reindex(total.index, fill_value=0).astype(float)
    need = (EINVOICE_TARGET * total - formal)
    need = need[(total > 0) & (need > 0)]
    cand = rev[(rev["category"] == "sales") & ~rev["channel"].isin(FORMAL)
               & rev["entity_id"].isin(need.index)].copy()
    if cand.empty:
        return Change(members=pd.Index([]))
    cand["first"] = (cand["channel"] != "cash").astype(int)  # cash sales first
    cand["spread"] = _spread_order(cand["transaction_id"])
    cand = cand.sort_values(["entity_id", "first", "spread"], kind="stable")
    before = cand.groupby("entity_id")["amount_vnd"].cumsum() - cand["amount_vnd"]
    chosen = cand[before.to_numpy() < cand["entity_id"].map(need).to_numpy()]
    new_tx = chosen.copy()
    new_tx["channel"] = "e_invoice"
    vat = _most_frequent(h.inv[h.inv["status"] != "cancelled"], "vat_rate_percent")
    inv = pd.DataFrame({
        "invoice_id": "ADV-" + chosen["transaction_id"].astype(str),
        "entity_type": SUBJECT, "entity_id": chosen["entity_id"].to_numpy(),
        "issued_at": chosen["ts"].to_numpy(), "status": "issued",
        "total_vnd": chosen["amount_vnd"].to_numpy(),
        "vat_rate_percent": chosen["entity_id"].map(vat).fillna(0).astype("int64").to_numpy(),
        "buyer_tax_code_present": False})
    return _change({"transactions": chosen}, {"transactions": new_tx, "e_invoices": inv})


def more_customers(h: History) -> Change:
    sales = _revenue(h.tx, 365)
    sales = sales[sales["counterparty_hash"].notna()].copy()
    if sales.empty:
        return Change(members=pd.Index([]))
    per = sales.groupby(["entity_id", "counterparty_hash"])["amount_vnd"]
    sales["cust_total"] = per.transform("sum")
    sales["cust_n"] = per.transform("size")
    distinct = sales.groupby("entity_id")["counterparty_hash"].nunique()
    k = np.maximum(MIN_NEW_CUSTOMERS, np.ceil(NEW_CUSTOMER_SHARE * distinct)).astype(int)
    sales = sales.sort_values(["entity_id", "cust_total", "counterparty_hash", "amount_vnd", "ts"],
                              ascending=[True, False, True, False, True], kind="stable")
    # every customer keeps its smallest sale: only the others may move
    sales["in_cust"] = sales.groupby(["entity_id", "counterparty_hash"]).cumcount()
    movable = sales[sales["in_cust"] < sales["cust_n"] - 1]
    rank = movable.groupby("entity_id").cumcount()
    chosen = movable[rank.to_numpy() < movable["entity_id"].map(k).to_numpy()]
    if chosen.empty:
        return Change(members=pd.Index([]))
    new_tx = chosen.copy()
    new_tx["counterparty_hash"] = _hash_hex(chosen["transaction_id"], "new-customer")
    return _change({"transactions": chosen}, {"transactions": new_tx})


def regular_revenue(h: History) -> Change:
    now = h.now
    irregular = now.index[(now["revenue_volatility_12m"] > VOLATILITY_TARGET)
                          | ((now["active_months_12m"] > 0)
                             & (now["active_months_12m"] < ACTIVE_MONTHS_TARGET))]
    rev = _revenue(h.tx, 360)
    rev = rev[rev["entity_id"].isin(irregular)].sort_values(["entity_id", "ts", "transaction_id"],
                                                           kind="stable").copy()
    if rev.empty:
        return Change(members=pd.Index([]))
    g = rev.groupby("entity_id")["amount_vnd"]
    total = g.transform("sum").astype(float)
    mid = (g.cumsum() - rev["amount_vnd"] / 2.0) / total  # where the inflow sits in the year's money
    slot = np.clip(12.0 * mid.to_numpy(), 0, 12 - 1e-9)
    bucket = 11 - np.floor(slot)  # the oldest money goes to the oldest 30-day month
    age = 30 * bucket + 1 + np.floor(30 * (1 - (slot - np.floor(slot))) - 1e-9).clip(0, 29)
    new_day = rev["as_of"] - pd.to_timedelta(age, unit="D")
    new_ts = new_day + (rev["ts"] - rev["ts"].dt.normalize())
    delta = new_ts - rev["ts"]
    moved = rev[delta != pd.Timedelta(0)]
    new_tx = moved.copy()
    new_tx["ts"] = new_ts[delta != pd.Timedelta(0)]
    # the e-invoices of the moved e-invoice sales move with them: an invoice belongs to the sale of
    # the same member at its issue time (issued) or up to 3 hours after it (cancelled and re-issued)
    inv = h.inv.sort_values("issued_at", kind="stable")
    sold = rev.assign(delta=delta)[rev["channel"] == "e_invoice"].sort_values("ts", kind="stable")
    matched = pd.merge_asof(inv, sold[["entity_id", "ts", "delta"]], left_on="issued_at",
                            right_on="ts", by="entity_id", direction="forward",
                            tolerance=pd.Timedelta(hours=3))
    matched = matched[matched["delta"].notna() & (matched["delta"] != pd.Timedelta(0))]
    new_inv = matched.copy()
    new_inv["issued_at"] = matched["issued_at"] + matched["delta"]
    return _change({"transactions": moved, "e_invoices": matched},
                   {"transactions": new_tx, "e_invoices": new_inv})


def fewer_cancelled(h: History) -> Change:
    year = h.inv[h.inv["issued_at"] >= h.inv["as_of"] - pd.Timedelta(days=365)].copy()
    if year.empty:
        return Change(members=pd.Index([]))
    total = year.groupby("entity_id").size()
    cancelled = year[year["status"] == "cancelled"].groupby("entity_id").size()
    cancelled = cancelled.reindex(total.index, fill_value=0)
    # the fewest removals r with (c - r) / (n - r) <= target
    r = np.ceil((cancelled - CANCELLED_TARGET * total) / (1 - CANCELLED_TARGET) - 1e-9).clip(lower=0)
    r = r[r > 0]
    cand = year[(year["status"] == "cancelled") & year["entity_id"].isin(r.index)].copy()
    cand["spread"] = _spread_order(cand["invoice_id"])
    cand = cand.sort_values(["entity_id", "spread"], kind="stable")
    chosen = cand[cand.groupby("entity_id").cumcount().to_numpy()
                  < cand["entity_id"].map(r).to_numpy()]
    if chosen.empty:
        return Change(members=pd.Index([]))
    return _change({"e_invoices": chosen}, {})


def stay_active(h: History) -> Change:
    rev = _revenue(h.tx, 7 * ACTIVE_WEEKS)
    week = ((rev["age_days"] - 1) // 7).astype(int)
    has = pd.DataFrame({"entity_id": rev["entity_id"].to_numpy(), "week": week.to_numpy(),
                        "has": True}).drop_duplicates(["entity_id", "week"])
    members = h.as_of.index
    grid = pd.DataFrame({"entity_id": np.repeat(members.to_numpy(), ACTIVE_WEEKS),
                         "week": np.tile(np.arange(ACTIVE_WEEKS), len(members))})
    grid = grid.merge(has, on=["entity_id", "week"], how="left")
    empty = grid[grid["has"].isna()][["entity_id", "week"]]
    # only members the engine scores (some revenue in the year); a member with none is not "active"
    year = _revenue(h.tx, 365)
    empty = empty[empty["entity_id"].isin(year["entity_id"].unique())]
    if empty.empty:
        return Change(members=pd.Index([]))
    sales = year[year["category"] == "sales"]
    median = sales.groupby("entity_id")["amount_vnd"].median()
    small = (np.floor(median.clip(upper=SMALL_SALE_MAX_VND) / 1000) * 1000).clip(lower=SMALL_SALE_MIN_VND)
    known = year[year["counterparty_hash"].notna()]
    usual = _most_frequent(known, "counterparty_hash")
    eid = empty["entity_id"]
    day = eid.map(h.as_of) - pd.to_timedelta(7 * empty["week"] + 4, unit="D")
    key = eid + ":" + empty["week"].astype(str)
    new_tx = pd.DataFrame({
        "transaction_id": "ADV-" + key,
        "entity_type": SUBJECT, "entity_id": eid.to_numpy(),
        "ts": (day + pd.Timedelta(hours=12)).to_numpy(),
        "amount_vnd": eid.map(small).fillna(SMALL_SALE_MIN_VND).astype("int64").to_numpy(),
        "direction": "inflow", "channel": "vietqr",
        "counterparty_hash": eid.map(usual).fillna(_hash_hex(eid, "customer")).to_numpy(),
        "category": "sales"})
    return _change({}, {"transactions": new_tx})


def repay_on_time(h: History) -> Change:
    rep = h.rep
    if rep.empty:
        return Change(members=pd.Index([]))
    loans = h.loans[h.loans["loan_id"].isin(rep["loan_id"])]
    oldest = loans.sort_values(["entity_id", "disbursal_date", "loan_id"], kind="stable") \
        .groupby("entity_id").head(1).copy()
    first = rep.groupby("loan_id")["month"].min()
    instalment = rep.groupby("loan_id")["amount_due_vnd"].max()
    oldest["first_month"] = oldest["loan_id"].map(first)
    oldest["instalment"] = oldest["loan_id"].map(instalment).astype("int64")
    oldest = oldest[oldest["instalment"] > 0]
    if oldest.empty:
        return Change(members=pd.Index([]))
    h_ = REPAY_HORIZON_MONTHS
    rows = oldest.loc[oldest.index.repeat(h_)].copy()
    k = np.tile(np.arange(h_, 0, -1), len(oldest))  # 12 .. 1 months before the first
    first_m = rows["first_month"].dt.year.to_numpy() * 12 + rows["first_month"].dt.month.to_numpy() - 1
    m = first_m - k
    starts = pd.Series(pd.to_datetime(pd.DataFrame({"year": m // 12, "month": m % 12 + 1, "day": 1})).to_numpy(),
                       index=rows.index)
    month_end = starts + pd.offsets.MonthEnd(0)
    new_rep = pd.DataFrame({"loan_id": rows["loan_id"].to_numpy(), "month": month_end.to_numpy(),
                            "days_past_due": 0, "amount_due_vnd": rows["instalment"].to_numpy(),
                            "amount_paid_vnd": rows["instalment"].to_numpy(),
                            "entity_id": rows["entity_id"].to_numpy()})
    # the repayment money: one VietQR outflow a month, to the lender's usual account
    repaid = h.tx[h.tx["category"] == "loan_repayment"]
    lender = _most_frequent(repaid, "counterparty_hash")
    eid = rows["entity_id"]
    pay_tx = pd.DataFrame({
        "transaction_id": ("ADV-" + rows["loan_id"].astype(str) + "-"
                           + month_end.dt.strftime("%Y%m").to_numpy()),
        "entity_type": SUBJECT, "entity_id": eid.to_numpy(),
        "ts": (starts + pd.Timedelta(days=9, hours=9)).to_numpy(),
        "amount_vnd": rows["instalment"].to_numpy(), "direction": "outflow", "channel": "vietqr",
        "counterparty_hash": eid.map(lender).fillna(_hash_hex(rows["loan_id"], "lender")).to_numpy(),
        "category": "loan_repayment"})
    new_loans = oldest.copy()
    new_loans["disbursal_date"] = oldest["disbursal_date"] - pd.DateOffset(months=h_)
    new_loans["term_months"] = oldest["term_months"] + h_
    # the application came before the (earlier) disbursal
    apps = h.apps.merge(new_loans[["application_id", "disbursal_date"]], on="application_id")
    apps = apps[apps["application_date"] > apps["disbursal_date"]]
    new_apps = apps.drop(columns=["disbursal_date"]).copy()
    new_apps["application_date"] = apps["disbursal_date"].to_numpy()
    apps = apps.drop(columns=["disbursal_date"])
    # its disbursal (if the platform recorded it) moves with it
    disb = h.tx[(h.tx["category"] == "loan_disbursal")]
    disb = disb.merge(oldest[["entity_id", "principal_vnd", "disbursal_date"]], on="entity_id")
    disb = disb[(disb["amount_vnd"] == disb["principal_vnd"])
                & ((disb["ts"].dt.normalize() - disb["disbursal_date"]).abs() <= pd.Timedelta(days=1))]
    new_disb = disb.copy()
    new_disb["ts"] = disb["ts"] - pd.DateOffset(months=h_)
    return _change({"loans": oldest, "transactions": disb[COLUMNS["transactions"]],
                    "loan_applications": apps},
                   {"loans": new_loans, "repayments": new_rep, "loan_applications": new_apps,
                    "transactions": pd.concat([pay_tx, new_disb[COLUMNS["transactions"]]],
                                              ignore_index=True)})


# -- the engine on the changed data -------------------------------------------------------------------
def _changed_relation(con: duckdb.DuckDBPyConnection, table: str, base: str,
                      change: Change | None, tag: str = "", types: dict | None = None) -> str:
    """SQL of `base`'s rows minus the change's removed rows plus its added ones (`types`: the
    base's column types, if known)."""
    removed = change.remove.get(table) if change else None
    added = change.add.get(table) if change else None
    sql = f"SELECT * FROM {base}"
    if removed is not None and len(removed):
        con.register(f"_rm_{table}{tag}", removed[list(KEYS[table])])
        keys = " AND ".join(f"b.{k} = r.{k}" for k in KEYS[table])
        sql = f"SELECT b.* FROM {base} b ANTI JOIN _rm_{table}{tag} r ON {keys}"
    if added is not None and len(added):
        types = types or _types(con, base)
        columns = [c for c in _columns(table, added) if c in types]
        con.register(f"_add_{table}{tag}", added[columns])
        cols = ", ".join(f"CAST({c} AS {types[c]}) AS {c}" for c in columns)
        sql = f"{sql} UNION ALL BY NAME SELECT {cols} FROM _add_{table}{tag}"
    return sql


def _types(con: duckdb.DuckDBPyConnection, base: str) -> dict[str, str]:
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {base}").fetchall()}


def overlay(con: duckdb.DuckDBPyConnection, bases: dict[str, str], change: Change | None) -> None:
    """(Re)define the engine's source tables on `con`: each base relation minus the change's
    removed rows plus its added ones. `bases` maps a table to the SQL relation holding its rows."""
    for table in TABLES:
        if table in bases:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS "
                        f"{_changed_relation(con, table, bases[table], change)}")


# The ids a world renames, per table: every id the engine joins on, so that no row of one world
# meets a row of another.
_WORLD_IDS = {"transactions": ("entity_id",), "e_invoices": ("entity_id",),
              "members": ("member_id", "cooperative_id"), "cooperatives": ("cooperative_id",),
              "loans": ("loan_id", "entity_id"), "repayments": ("loan_id",)}
WORLD_SEP = "~"


def recompute_worlds(con: duckdb.DuckDBPyConnection, bases: dict[str, str],
                     changes: dict[str, Change], as_of: pd.Series) -> dict[str, pd.DataFrame]:
    """`recompute` for several changes in ONE engine run: each change gets its own copy of the
    data (a "world": every id the engine joins on suffixed with ~<name>), the worlds side by side
    in the same tables, and a spine row per (member, world). Nothing joins across worlds, so each
    member's features are exactly those of `recompute(change)` alone (tests check it). For small
    data (the member page's scope), where an engine run is mostly DuckDB's fixed cost."""
    names = [n for n, c in changes.items() if not c.empty]
    if not names:
        return {}
    for table in engine.SOURCE_TABLES:
        parts, types = [], _types(con, bases[table])
        for i, name in enumerate(names):
            rel = _changed_relation(con, table, bases[table], changes[name], f"_w{i}", types)
            renamed = ", ".join(f"{c} || '{WORLD_SEP}{name}' AS {c}" for c in _WORLD_IDS[table])
            parts.append(f"SELECT * REPLACE ({renamed}) FROM ({rel})")
        con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS " + " UNION ALL ".join(parts))
    rows = [(f"{m}{WORLD_SEP}{name}", as_of.loc[m]) for name in names for m in changes[name].members]
    ids = [r[0] for r in rows]
    spine = pd.DataFrame({"spine_id": [f"{SUBJECT}:{i}" for i in ids], "entity_type": SUBJECT,
                          "entity_id": ids, "as_of": pd.to_datetime([r[1] for r in rows])})
    out = engine.history_features(con, spine).set_index("entity_id").loc[ids]
    overlay(con, bases, None)
    world = out.index.str.rsplit(WORLD_SEP, n=1)
    member = pd.Index([w[0] for w in world], name="entity_id")
    which = np.array([w[1] for w in world])
    return {name: out[which == name].set_axis(member[which == name]) for name in names}


def parquet_bases(clean_dir: Path) -> dict[str, str]:
    out = {}
    for table in TABLES:
        path = Path(clean_dir) / f"{table}.parquet"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: run `coopscore ingest` first so that accepted data exists.")
        out[table] = f"read_parquet('{path}')"
    return out


def _sql_list(values) -> str:
    return "(" + ", ".join("'" + str(v).replace("'", "''") + "'" for v in values) + ")" \
        if len(values) else "(NULL)"


def scoped_connection(clean_dir: Path, member_ids: list[str], as_of: date
                      ) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
    """An in-memory DuckDB holding only what the features of `member_ids` read: their rows, their
    cooperatives' own transactions, and the loans and repayments of their cooperatives' members
    (for the cooperative's arrears rate); transactions and e-invoices only from the look-back window
    before `as_of` on (the engine reads nothing older). The engine on it gives these members the
    same features as on the whole data, at a fraction of the cost (the member page). The filters
    are literal: DuckDB pushes them into the Parquet scan (row groups outside the window are
    skipped; a sub-query filter costs ~10x more)."""
    since = f"TIMESTAMP '{pd.Timestamp(as_of) - LOOKBACK}'"
    src = parquet_bases(clean_dir)
    con = duckdb.connect()
    ids = _sql_list(member_ids)
    coops = [r[0] for r in con.execute(f"SELECT DISTINCT cooperative_id FROM {src['members']} "
                                        f"WHERE member_id IN {ids}").fetchall()]
    con.execute(f"CREATE TABLE b_members AS SELECT * FROM {src['members']} "
                f"WHERE cooperative_id IN {_sql_list(coops)}")
    con.execute(f"CREATE TABLE b_cooperatives AS SELECT * FROM {src['cooperatives']} "
                f"WHERE cooperative_id IN {_sql_list(coops)}")
    con.execute(f"""CREATE TABLE b_transactions AS SELECT * FROM {src['transactions']}
        WHERE entity_id IN {_sql_list([*member_ids, *coops])} AND ts >= {since}""")
    con.execute(f"""CREATE TABLE b_e_invoices AS SELECT * FROM {src['e_invoices']}
        WHERE entity_id IN {ids} AND issued_at >= {since}""")
    coop_members = [r[0] for r in con.execute("SELECT member_id FROM b_members").fetchall()]
    con.execute(f"""CREATE TABLE b_loans AS SELECT * FROM {src['loans']}
        WHERE entity_type = 'member' AND entity_id IN {_sql_list(coop_members)}""")
    loans = [r[0] for r in con.execute("SELECT loan_id FROM b_loans").fetchall()]
    con.execute(f"""CREATE TABLE b_repayments AS SELECT * FROM {src['repayments']}
        WHERE loan_id IN {_sql_list(loans)}""")
    apps = [r[0] for r in con.execute("SELECT DISTINCT application_id FROM b_loans").fetchall()]
    con.execute(f"""CREATE TABLE b_loan_applications AS SELECT * FROM {src['loan_applications']}
        WHERE application_id IN {_sql_list(apps)}""")
    return con, {t: f"b_{t}" for t in TABLES}


def recompute(con: duckdb.DuckDBPyConnection, bases: dict[str, str], change: Change | None,
              as_of: pd.Series) -> pd.DataFrame:
    """The engine's history features of the members of `as_of` (entity_id -> date) on the data
    changed by `change`; index entity_id, in the order of `as_of`."""
    overlay(con, bases, change)
    ids = as_of.index.to_numpy()
    spine = pd.DataFrame({"spine_id": [f"{SUBJECT}:{i}" for i in ids], "entity_type": SUBJECT,
                          "entity_id": ids, "as_of": pd.to_datetime(as_of.to_numpy())})
    out = engine.history_features(con, spine).set_index("entity_id")
    return out.loc[ids]


Action = Callable[[History], Change]
