"""Rules that one row cannot check alone: duplicate keys, references to other tables, dates in
the future, and the Decree 156/2025 unsecured lending limit.

Each rule reads the parsed table (indexed by source row; ingest passes one batch of it at a time)
and, for references, the columns `PARENT_COLUMNS` of the tables already accepted, and returns the
rows that break it as issues: one row per (source row, rule) with a
sentence saying what was wrong. `TABLE_RULES` lists which rules apply to which table; duplicate
keys and future dates apply to all. Rules never drop or change a row; `data_contracts.ingest` decides.
All rules are vectorised: reason sentences are only built for the rows that break a rule.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data_contracts import vocabulary as v
from data_contracts.contracts import CONTRACTS, Contract

LOCAL_TZ = "Asia/Ho_Chi_Minh"  # the contracts' timestamps are local time without an offset

# ---- issues: the rows that broke a rule ------------------------------------------------------

ISSUE_COLUMNS = ["row", "rule", "reason"]


def issues(rows, rule: str, reasons) -> pd.DataFrame:
    """Rows (source row numbers) that broke `rule`, with one reason sentence each."""
    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(reasons, str):
        reasons = [reasons] * len(rows)
    return pd.DataFrame({"row": rows, "rule": rule, "reason": np.asarray(reasons, dtype=object)},
                        columns=ISSUE_COLUMNS)


def no_issues() -> pd.DataFrame:
    return issues([], "", [])


def show(values: pd.Series) -> pd.Series:
    """How values are quoted in a reason: text in quotes, numbers and dates plain."""
    return values.map(_show_one).astype(object)


def _show_one(value) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return "<empty>"
    if isinstance(value, float) and np.isnan(value):
        return "<empty>"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, pd.Timestamp):
        return str(value.date()) if value == value.normalize() else str(value)
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return str(value.item())
    return str(value)


def number(x: float) -> str:
    """A limit as people write it: 50,000,000,000 rather than 50000000000.0."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,}"


# ---- the clock --------------------------------------------------------------------------------

def local_time(received_at: datetime | None) -> pd.Timestamp:
    """When the data was received, as a naive local timestamp comparable with the data.

    A naive `received_at` follows the contracts' convention (Asia/Ho_Chi_Minh local time);
    an aware one is converted. None means now.
    """
    stamp = pd.Timestamp(received_at or datetime.now(timezone.utc))
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert(LOCAL_TZ).tz_localize(None)
    return stamp


# ---- rules for every table --------------------------------------------------------------------

def duplicate_keys(table: pd.DataFrame, contract: Contract, first_row: pd.Series) -> pd.DataFrame:
    """A second row with the same key is a duplicate: the first one in the file is kept.

    `first_row` maps every source row whose key appeared earlier in the whole table to the row
    where it first appeared (`data_contracts.duplicates.RepeatedKeys`, which looks past the batch
    `table` belongs to). Rows whose key is incomplete are never in it: they are already
    quarantined as missing.
    """
    repeated = table.index.intersection(first_row.index)
    if not len(repeated):
        return no_issues()
    dup = table.loc[repeated, list(contract.key)]
    shown = pd.Series("", index=dup.index, dtype=object)
    for i, column in enumerate(contract.key):
        shown = shown + ("" if i == 0 else ", ") + column + "=" + show(dup[column])
    reasons = shown + " already appeared at source_row " + first_row.loc[repeated].astype(str).to_numpy()
    return issues(dup.index, "duplicate_key", reasons + "; the first occurrence is kept")


def future_values(table: pd.DataFrame, contract: Contract, received_at: pd.Timestamp) -> pd.DataFrame:
    """Nothing can have happened after the data was received.

    A timestamp at or after `received_at` is in the future; a date is in the future when it is
    after the day of `received_at` (today's date is fine).
    """
    found = []
    for f in contract.fields:
        if f.dtype == "timestamp":
            bad = table[f.name] >= received_at
            when = f"the time the data was received ({received_at.floor('s')}, {LOCAL_TZ})"
            verb = "is at or after"
        elif f.dtype == "date":
            bad = table[f.name] > received_at.normalize()
            when = f"the day the data was received ({received_at.date()})"
            verb = "is after"
        else:
            continue
        rows = table.index[bad.to_numpy()]
        if len(rows):
            found.append(issues(rows, "in_future",
                                f"{f.name}=" + show(table.loc[rows, f.name]) + f" {verb} {when}"))
    return pd.concat(found, ignore_index=True) if found else no_issues()


# ---- references to other tables ---------------------------------------------------------------

def _unknown(values: pd.Series, known: pd.Series) -> np.ndarray:
    """True where a value is given but not among the known ones (missing values are not unknown)."""
    return values.notna().to_numpy() & ~_among(values, known)


def _among(values: pd.Series, known) -> np.ndarray:
    """True where a value is among the known ones (a missing value never is)."""
    # Arrow's own set lookup: pandas' isin on Arrow text turns every known value into a Python
    # object first, a cost paid again for every batch of a large table.
    found = pc.is_in(_chunked(values), value_set=_chunked(known).combine_chunks())
    return found.to_numpy().astype(bool)


def _chunked(values: pd.Series) -> pa.ChunkedArray:
    array = pa.array(values, from_pandas=True)  # Arrow-backed text comes as it is, uncopied
    return array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])


def unknown_reference(table: pd.DataFrame, column: str, parent: pd.DataFrame, parent_table: str,
                      parent_column: str, rule: str) -> pd.DataFrame:
    bad = _unknown(table[column], parent[parent_column])
    rows = table.index[bad]
    return issues(rows, rule, f"{column}=" + show(table.loc[rows, column])
                  + f" is not among the accepted {parent_table}")


def unknown_entity(table: pd.DataFrame, accepted: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """entity_id must name an accepted member or cooperative, as entity_type says."""
    known_ids = {"member": accepted["members"]["member_id"],
                 "cooperative": accepted["cooperatives"]["cooperative_id"]}
    parent_name = {"member": "members", "cooperative": "cooperatives"}
    found = []
    for entity_type, known in known_ids.items():
        of_type = (table["entity_type"] == entity_type).to_numpy(dtype=bool, na_value=False)
        rows = table.index[of_type & _unknown(table["entity_id"], known)]
        if len(rows):
            found.append(issues(rows, "unknown_entity",
                                "entity_id=" + show(table.loc[rows, "entity_id"])
                                + f" is not among the accepted {parent_name[entity_type]}"
                                + f" (entity_type={entity_type!r})"))
    return pd.concat(found, ignore_index=True) if found else no_issues()


def member_cooperative(table, accepted, received_at):
    return unknown_reference(table, "cooperative_id", accepted["cooperatives"], "cooperatives",
                             "cooperative_id", "unknown_cooperative")


def entity_exists(table, accepted, received_at):
    return unknown_entity(table, accepted)


def application_exists(table, accepted, received_at):
    return unknown_reference(table, "application_id", accepted["loan_applications"],
                             "loan_applications", "application_id", "unknown_application")


def loan_exists(table, accepted, received_at):
    return unknown_reference(table, "loan_id", accepted["loans"], "loans", "loan_id", "unknown_loan")


# ---- rules between a loan and where it came from ----------------------------------------------

def loan_matches_application(table, accepted, received_at):
    """A loan goes to the borrower who applied, and is disbursed on or after the application."""
    apps = accepted["loan_applications"].set_index("application_id")
    known = _among(table["application_id"], apps.index.to_series())
    loans = table[known]
    app = apps.reindex(loans["application_id"])
    found = []
    other_borrower = ((loans["entity_type"].to_numpy() != app["entity_type"].to_numpy())
                      | (loans["entity_id"].to_numpy() != app["entity_id"].to_numpy()))
    other_borrower &= loans[["entity_type", "entity_id"]].notna().all(axis=1).to_numpy()
    rows = loans.index[other_borrower]
    if len(rows):
        a = app[other_borrower]
        found.append(issues(rows, "application_entity_mismatch",
                            "loan to " + loans.loc[rows, "entity_type"].astype(str) + " "
                            + show(loans.loc[rows, "entity_id"]).to_numpy()
                            + " but application " + show(loans.loc[rows, "application_id"]).to_numpy()
                            + " was made by " + a["entity_type"].astype(str).to_numpy() + " "
                            + show(a["entity_id"]).to_numpy()))
    early = (loans["disbursal_date"].to_numpy() < app["application_date"].to_numpy())
    rows = loans.index[early]
    if len(rows):
        found.append(issues(rows, "disbursed_before_application",
                            "disbursal_date=" + show(loans.loc[rows, "disbursal_date"])
                            + " is before the application_date "
                            + show(app.loc[early, "application_date"]).to_numpy()
                            + " of application " + show(loans.loc[rows, "application_id"])))
    return pd.concat(found, ignore_index=True) if found else no_issues()


def repayment_after_disbursal(table, accepted, received_at):
    """A month that ended before the loan was disbursed cannot have a repayment status."""
    disbursed = accepted["loans"].set_index("loan_id")["disbursal_date"]
    disbursal = table["loan_id"].map(disbursed)
    early = (table["month"] < disbursal).to_numpy()  # NaT compares False: unknown loans pass here
    rows = table.index[early]
    return issues(rows, "before_disbursal",
                  "month=" + show(table.loc[rows, "month"]) + " ended before loan "
                  + show(table.loc[rows, "loan_id"]) + " was disbursed on "
                  + show(disbursal[early]))


# ---- Decree 156/2025: unsecured lending limits ------------------------------------------------

def unsecured_limit(table, accepted, received_at):
    """An application above the unsecured limit of its borrower's legal form is refused.

    Decree 156/2025/ND-CP: VND 300 million for households, 500 million for household
    businesses, 5 billion for cooperatives. A member's legal form is its member_type.
    """
    member_type = accepted["members"].set_index("member_id")["member_type"]
    form = pd.Series(np.where(table["entity_type"] == "cooperative", "cooperative", None),
                     index=table.index, dtype=object)
    is_member = (table["entity_type"] == "member").to_numpy()
    form[is_member] = table.loc[is_member, "entity_id"].map(member_type)
    limit = form.map(v.UNSECURED_LIMIT_VND).astype("Float64")  # unknown borrower: no limit here
    above = (table["requested_amount_vnd"].astype("Float64") > limit).fillna(False).to_numpy(bool)
    rows = table.index[above]
    if not len(rows):
        return no_issues()
    limit_text = limit[above].map(lambda x: number(x)).astype(object)
    return issues(rows, "above_unsecured_limit",
                  "requested_amount_vnd=" + table.loc[rows, "requested_amount_vnd"].map(number).astype(object)
                  + " is above the unsecured lending limit of " + limit_text + " VND for a "
                  + form[above].str.replace("_", " ") + " (Decree 156/2025/ND-CP)")


# ---- which rules apply to which table ---------------------------------------------------------

Rule = Callable[[pd.DataFrame, dict, pd.Timestamp], pd.DataFrame]

TABLE_RULES: dict[str, list[Rule]] = {
    "cooperatives": [],
    "members": [member_cooperative],
    "transactions": [entity_exists],
    "e_invoices": [entity_exists],
    "loan_applications": [entity_exists, unsecured_limit],
    "loans": [entity_exists, application_exists, loan_matches_application],
    "repayments": [loan_exists, repayment_after_disbursal],
    "true_pd": [application_exists],
}
assert set(TABLE_RULES) == set(CONTRACTS), "every contract table needs its cross-table rules listed"

# What the rules above read of the tables accepted before: ingest keeps only these columns of a
# parent's accepted rows, and nothing of the large child tables (transactions, e-invoices,
# repayments), whatever their size.
PARENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "cooperatives": ("cooperative_id",),
    "members": ("member_id", "member_type"),
    "loan_applications": ("application_id", "entity_type", "entity_id", "application_date"),
    "loans": ("loan_id", "disbursal_date"),
}


def cross_table_issues(table_name: str, table: pd.DataFrame, accepted: dict[str, pd.DataFrame],
                       received_at: pd.Timestamp, first_row: pd.Series) -> pd.DataFrame:
    """Every cross-table rule broken by every row of `table` (parsed, indexed by source row; one
    batch of the table or all of it). `first_row` is what `duplicate_keys` needs: every repeating
    source row of the whole table mapped to where its key first appeared."""
    contract = CONTRACTS[table_name]
    found = [duplicate_keys(table, contract, first_row), future_values(table, contract, received_at)]
    found += [rule(table, accepted, received_at) for rule in TABLE_RULES[table_name]]
    return pd.concat(found, ignore_index=True)
