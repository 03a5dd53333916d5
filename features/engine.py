"""Computes the catalogue's features on DuckDB over the accepted Parquet tables.

Point in time: every feature of a row (entity, as_of) is computed from data strictly before as_of.
Each source is joined to the spine with `ts < as_of` (or `month < as_of`); nothing else reaches the
features. tests/test_features_point_in_time.py proves it by adding later data and comparing.

Two stages, so that serving does not recompute history on every request:
1. history: per (entity, as_of), the aggregates and every feature that does not need an application;
2. application: the features of a requested loan, from the history row and the application.
Training runs both on all applications; the service reads stage 1 from a snapshot and runs stage 2
per request. Stage 1 is the catalogue's SQL on DuckDB; stage 2 is the catalogue's on-demand numpy
functions (features/on_demand.py), the very ones the service calls, so training and serving share
one definition of every application feature.

Stage 1 also returns three counts that are not model inputs: history_days and transactions_365d
(features.sufficiency) and repayment_months (loan-months repaid so far: how long the record
behind the on-time rate is).
"""
from __future__ import annotations

from pathlib import Path

from collections.abc import Mapping

import duckdb
import numpy as np
import pandas as pd

from data_contracts.vocabulary import (HARVEST_COOPERATIVE_SECTORS, HARVEST_INTENSITY,
                                       HARVEST_MEMBER_SECTORS, REGION_OF_PROVINCE)
from features import on_demand
from features.catalogue import FEATURES

# Look-back: 365 days, plus 90 more for "the same season last year".
LOOKBACK_DAYS = 455

# Features computed in stage 2 (they need the application): the catalogue's on-demand ones.
APPLICATION_FEATURES = tuple(f.name for f in FEATURES if f.on_demand is not None)
HISTORY_FEATURES = tuple(f for f in FEATURES if f.on_demand is None)

SOURCE_TABLES = ("cooperatives", "members", "transactions", "e_invoices", "loans", "repayments")


def connect(clean_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per accepted table."""
    con = duckdb.connect()
    for table in SOURCE_TABLES:
        path = Path(clean_dir) / f"{table}.parquet"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: run `coopscore ingest` first so that accepted data exists.")
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')")
    return con


def _window_aggregates() -> str:
    parts = []
    for days in (30, 90, 180, 365):
        for direction in ("inflow", "outflow"):
            cond = f"direction = '{direction}' AND age_days <= {days}"
            parts.append(f"COALESCE(SUM(amount) FILTER (WHERE {cond}), 0) AS {direction}_sum_{days}d")
            parts.append(f"COUNT(*) FILTER (WHERE {cond}) AS {direction}_count_{days}d")
    return ",\n        ".join(parts)


def _tx_aggregates_sql(spine: str) -> str:
    """Aggregates of transactions and e-invoices per spine row; `spine` has spine_id, entity_type,
    entity_id, as_of."""
    return f"""
    tx_{spine} AS (
      SELECT s.spine_id, t.channel, t.counterparty_hash, t.category,
             -- borrowed money is not income: a disbursal counts as neither inflow nor revenue
             CASE WHEN t.category = 'loan_disbursal' THEN 'borrowed' ELSE t.direction END
               AS direction,
             CAST(t.amount_vnd AS DOUBLE) AS amount,
             date_diff('day', CAST(t.ts AS DATE), s.as_of) AS age_days
      FROM {spine} s JOIN transactions t
        ON t.entity_type = s.entity_type AND t.entity_id = s.entity_id
       AND t.ts < s.as_of AND t.ts >= s.as_of - INTERVAL {LOOKBACK_DAYS} DAY
    ),
    txagg_{spine} AS (
      SELECT spine_id,
        {_window_aggregates()},
        COALESCE(SUM(amount) FILTER (WHERE direction = 'inflow' AND age_days BETWEEN 366 AND 455), 0)
          AS inflow_sum_prev_year_90d,
        COALESCE(SUM(amount) FILTER (WHERE direction = 'inflow' AND age_days <= 365
          AND channel IN ('e_invoice', 'cash_register')), 0) AS einvoice_inflow_365d,
        COALESCE(SUM(amount) FILTER (WHERE direction = 'inflow' AND age_days <= 365
          AND channel = 'cash'), 0) AS cash_inflow_365d,
        COALESCE(SUM(amount) FILTER (WHERE direction = 'inflow' AND age_days <= 60), 0)
          AS inflow_sum_60d,
        -- the 13 weeks (91 days) before as_of: week 0 is the most recent
        COUNT(DISTINCT FLOOR((age_days - 1) / 7)) FILTER (WHERE direction = 'inflow'
          AND age_days <= 91) AS weeks_with_inflow_13w,
        COUNT(DISTINCT counterparty_hash) FILTER (WHERE direction = 'inflow' AND age_days <= 90)
          AS customers_90d,
        COUNT(DISTINCT counterparty_hash) FILTER (WHERE direction = 'inflow'
          AND age_days BETWEEN 91 AND 180) AS customers_prev_90d,
        MIN(age_days) AS days_since_last_activity,
        MAX(age_days) AS history_days,
        COUNT(*) FILTER (WHERE age_days <= 365) AS transactions_365d
      FROM tx_{spine} GROUP BY spine_id
    ),
    month_{spine} AS (  -- 12 buckets of 30 days; bucket 0 is the most recent
      SELECT spine_id, FLOOR((age_days - 1) / 30) AS bucket, SUM(amount) AS y
      FROM tx_{spine} WHERE direction = 'inflow' AND age_days <= 360
      GROUP BY spine_id, FLOOR((age_days - 1) / 30)
    ),
    monthagg_{spine} AS (  -- sums over the 12 buckets; empty buckets count as 0
      SELECT spine_id, SUM(y) AS monthly_sum, SUM(y * y) AS monthly_sumsq,
             SUM((11 - bucket) * y) AS monthly_xy, COUNT(*) AS active_months_12m
      FROM month_{spine} GROUP BY spine_id
    ),
    base_{spine} AS (  -- the subject's own usual month: median inflow of 30-day buckets 2..11
      -- (days 61-360, before the windows a shock is looked for in), counting an empty bucket as 0
      -- but only buckets wholly inside the subject's history; at least 3 of them, else unknown
      SELECT a.spine_id, MEDIAN(COALESCE(m.y, 0)) AS inflow_median_month
      FROM txagg_{spine} a CROSS JOIN range(2, 12) b(bucket)
      LEFT JOIN month_{spine} m ON m.spine_id = a.spine_id AND m.bucket = b.bucket
      WHERE (b.bucket + 1) * 30 <= a.history_days
      GROUP BY a.spine_id HAVING COUNT(*) >= 3
    ),
    cust_{spine} AS (
      SELECT spine_id, counterparty_hash, SUM(amount) AS v
      FROM tx_{spine}
      WHERE direction = 'inflow' AND age_days <= 365 AND counterparty_hash IS NOT NULL
      GROUP BY spine_id, counterparty_hash
    ),
    custagg_{spine} AS (
      SELECT spine_id, SUM(v * v) / (SUM(v) * SUM(v)) AS customer_hhi_365d,
             COUNT(*) AS distinct_customers_365d
      FROM cust_{spine} GROUP BY spine_id
    ),
    invagg_{spine} AS (
      SELECT s.spine_id, COUNT(*) AS invoices_total_365d,
             COUNT(*) FILTER (WHERE i.status = 'cancelled') AS invoices_cancelled_365d
      FROM {spine} s JOIN e_invoices i
        ON i.entity_type = s.entity_type AND i.entity_id = s.entity_id
       AND i.issued_at < s.as_of AND i.issued_at >= s.as_of - INTERVAL 365 DAY
      GROUP BY s.spine_id
    )"""


def _history_sql() -> str:
    feature_cols = ",\n      ".join(f"CAST({f.sql} AS DOUBLE) AS {f.name}" for f in HISTORY_FEATURES)
    return f"""
    WITH
    {_tx_aggregates_sql('spine')},
    -- The cooperative's own health, over the 12 whole months before the as-of month. Whole months
    -- (not days) so that one small monthly table serves every member of a cooperative: computing
    -- it per (cooperative, exact date) re-read the cooperative's year of transactions per row.
    coop_keys AS (  -- the cooperative of each row (a member's, or the cooperative itself)
      SELECT DISTINCT
             CASE WHEN s.entity_type = 'member' THEN m.cooperative_id ELSE s.entity_id END AS coop_id,
             CAST(date_trunc('month', s.as_of) AS DATE) AS month_start
      FROM spine s LEFT JOIN members m ON s.entity_type = 'member' AND m.member_id = s.entity_id
    ),
    coop_month AS (
      SELECT entity_id AS coop_id, CAST(date_trunc('month', ts) AS DATE) AS month,
             SUM(CAST(amount_vnd AS DOUBLE)) AS y
      FROM transactions
      WHERE entity_type = 'cooperative' AND direction = 'inflow' AND category <> 'loan_disbursal'
        AND entity_id IN (SELECT coop_id FROM coop_keys)
      GROUP BY 1, 2
    ),
    coop_revenue AS (  -- bucket 0 is the month just before the as-of month
      SELECT k.coop_id, k.month_start, SUM(cm.y) AS monthly_sum,
             SUM((11 - (date_diff('month', cm.month, k.month_start) - 1)) * cm.y) AS monthly_xy
      FROM coop_keys k JOIN coop_month cm ON cm.coop_id = k.coop_id
       AND cm.month < k.month_start AND cm.month >= k.month_start - INTERVAL 12 MONTH
      GROUP BY 1, 2
    ),
    coop_arrears_month AS (  -- per cooperative and month: members' loan-months, and those 30+ late
      SELECT m.cooperative_id AS coop_id, r.month,
             COUNT(*) AS loan_months, COUNT(*) FILTER (WHERE r.days_past_due >= 30) AS late_months
      FROM repayments r
      JOIN loans l ON l.loan_id = r.loan_id AND l.entity_type = 'member'
      JOIN members m ON m.member_id = l.entity_id
      GROUP BY 1, 2
    ),
    coop_arrears AS (
      SELECT k.coop_id, k.month_start,
             SUM(a.late_months) * 1.0 / SUM(a.loan_months) AS coop_members_in_arrears_rate
      FROM coop_keys k JOIN coop_arrears_month a ON a.coop_id = k.coop_id
       AND a.month < k.month_start AND a.month >= k.month_start - INTERVAL 12 MONTH
      GROUP BY 1, 2
    ),
    coop_health AS (
      SELECT k.coop_id, k.month_start,
             COALESCE(rv.monthly_sum, 0) AS coop_revenue_12m,
             CASE WHEN rv.monthly_sum > 0 THEN ((rv.monthly_xy - 5.5 * rv.monthly_sum) / 143.0)
                  / (rv.monthly_sum / 12.0) END AS coop_revenue_trend_12m,
             ar.coop_members_in_arrears_rate
      FROM coop_keys k
      LEFT JOIN coop_revenue rv USING (coop_id, month_start)
      LEFT JOIN coop_arrears ar USING (coop_id, month_start)
    ),
    repay AS (
      SELECT s.spine_id,
             COUNT(DISTINCT l.loan_id) FILTER (WHERE l.disbursal_date < s.as_of) AS prior_loans,
             COUNT(r.loan_id) AS repayment_months,
             COUNT(r.loan_id) FILTER (WHERE r.days_past_due = 0) AS on_time_months,
             MAX(r.days_past_due) AS worst_days_past_due
      FROM spine s
      JOIN loans l ON l.entity_type = s.entity_type AND l.entity_id = s.entity_id
                  AND l.disbursal_date < s.as_of
      LEFT JOIN repayments r ON r.loan_id = l.loan_id AND r.month < s.as_of
      GROUP BY s.spine_id
    ),
    -- the harvest calendar (data_contracts.vocabulary) as tables: province -> region, and the
    -- intensity of each region's calendar month
    region_of AS (SELECT * FROM (VALUES {_values(REGION_OF_PROVINCE.items())}) AS r(province, region)),
    harvest AS (SELECT * FROM (VALUES {_values(
        (r, m + 1, w) for r, ws in HARVEST_INTENSITY.items() for m, w in enumerate(ws))})
      AS h(region, month, intensity)),
    subject AS (
      SELECT s.spine_id,
             m.member_type, m.business_sector, c.sector AS coop_sector,
             -- the as-of month's harvest, for those whose sales follow it (the date itself is
             -- known before the application: no data from as_of or later is read)
             CASE WHEN m.business_sector IN {_values(HARVEST_MEMBER_SECTORS, row=True)}
                    OR c.sector IN {_values(HARVEST_COOPERATIVE_SECTORS, row=True)}
                  THEN COALESCE(h.intensity, 0) ELSE 0 END AS harvest_intensity,
             CASE WHEN s.entity_type = 'member'
                  THEN date_diff('day', m.join_date, s.as_of)
                  ELSE date_diff('day', c.founding_date, s.as_of) END AS tenure_days,
             m.capital_contribution_vnd, c.legal_capital_vnd, c.member_count,
             CASE WHEN s.entity_type = 'member' THEN m.cooperative_id ELSE s.entity_id END AS coop_id
      FROM spine s
      LEFT JOIN members m ON s.entity_type = 'member' AND m.member_id = s.entity_id
      LEFT JOIN cooperatives c ON c.cooperative_id =
           CASE WHEN s.entity_type = 'member' THEN NULL ELSE s.entity_id END
      LEFT JOIN region_of r ON r.province = COALESCE(m.province, c.province)
      LEFT JOIN harvest h ON h.region = r.region AND h.month = month(s.as_of)
    ),
    joined AS (
      SELECT s.spine_id, s.entity_type, s.entity_id, s.as_of,
             t.*  EXCLUDE (spine_id), mo.* EXCLUDE (spine_id), cu.* EXCLUDE (spine_id),
             ba.inflow_median_month,
             inv.* EXCLUDE (spine_id), rp.* EXCLUDE (spine_id), sj.* EXCLUDE (spine_id, coop_id),
             ch.coop_revenue_12m, ch.coop_revenue_trend_12m, ch.coop_members_in_arrears_rate
      FROM spine s
      LEFT JOIN txagg_spine t USING (spine_id)
      LEFT JOIN monthagg_spine mo USING (spine_id)
      LEFT JOIN custagg_spine cu USING (spine_id)
      LEFT JOIN base_spine ba USING (spine_id)
      LEFT JOIN invagg_spine inv USING (spine_id)
      LEFT JOIN repay rp USING (spine_id)
      LEFT JOIN subject sj USING (spine_id)
      LEFT JOIN coop_health ch ON ch.coop_id = sj.coop_id
       AND ch.month_start = CAST(date_trunc('month', s.as_of) AS DATE)
    ),
    filled AS (  -- a spine row with no transaction in the window has zero sums, not unknown ones
      SELECT * REPLACE (
        {", ".join(f"COALESCE({c}, 0) AS {c}" for c in _zero_when_missing())}
      ) FROM joined
    )
    SELECT spine_id, entity_type, entity_id, as_of,
      COALESCE(history_days, 0) AS history_days,
      COALESCE(transactions_365d, 0) AS transactions_365d,
      {feature_cols},
      -- not a model input: the length of the repayment record behind the on-time rate
      repayment_months
    FROM filled
    ORDER BY spine_id
    """


def _zero_when_missing() -> list[str]:
    cols = [f"{d}_{k}_{n}d" for n in (30, 90, 180, 365) for d in ("inflow", "outflow")
            for k in ("sum", "count")]
    return cols + ["inflow_sum_prev_year_90d", "einvoice_inflow_365d", "cash_inflow_365d",
                   "active_months_12m", "distinct_customers_365d", "invoices_total_365d",
                   "invoices_cancelled_365d", "prior_loans", "repayment_months", "on_time_months",
                   "inflow_sum_60d", "weeks_with_inflow_13w", "customers_90d", "customers_prev_90d"]


def _values(items, row: bool = False) -> str:
    """SQL literals: rows of a VALUES list, or (row=True) one parenthesised list for IN."""
    def lit(x) -> str:
        return "'" + x.replace("'", "''") + "'" if isinstance(x, str) else repr(x)
    if row:
        return "(" + ", ".join(lit(x) for x in sorted(items)) + ")"
    return ", ".join("(" + ", ".join(lit(x) for x in item) + ")" for item in items)


def history_features(con: duckdb.DuckDBPyConnection, spine: pd.DataFrame) -> pd.DataFrame:
    """Stage 1. `spine` has spine_id, entity_type, entity_id, as_of (date). One row out per row in."""
    _check_spine(spine)
    con.register("spine_df", spine[["spine_id", "entity_type", "entity_id", "as_of"]])
    con.execute("CREATE OR REPLACE TEMP TABLE spine AS SELECT spine_id, entity_type, entity_id, "
                "CAST(as_of AS DATE) AS as_of FROM spine_df")
    out = con.execute(_history_sql()).df()
    con.unregister("spine_df")
    if len(out) != len(spine):  # a join that multiplies or loses rows is a bug, loudly
        raise RuntimeError(f"feature build returned {len(out)} rows for {len(spine)} spine rows")
    out["as_of"] = pd.to_datetime(out["as_of"])
    return out


def on_demand_features(history: Mapping[str, np.ndarray], amount_vnd,
                       term_months) -> dict[str, np.ndarray]:
    """Stage 2 on aligned arrays: {feature: float64 array}, in catalogue order. `history` maps
    the columns in features.on_demand.HISTORY_INPUTS to arrays (one value per application)."""
    missing = [c for c in on_demand.HISTORY_INPUTS if c not in history]
    if missing:
        raise ValueError(f"on-demand features need the history columns {missing}")
    return {f.name: np.asarray(f.on_demand(history, amount_vnd, term_months), dtype=np.float64)
            for f in FEATURES if f.on_demand is not None}


def application_features(history: pd.DataFrame, applications: pd.DataFrame,
                         con: duckdb.DuckDBPyConnection | None = None) -> pd.DataFrame:
    """Stage 2. `applications` has spine_id, requested_amount_vnd, term_months; joined to the
    history rows by spine_id; rows sorted by spine_id. `con` is unused (kept for callers that
    pass one): the features are the catalogue's on-demand numpy functions, not SQL."""
    merged = history.merge(applications[["spine_id", "requested_amount_vnd", "term_months"]],
                           on="spine_id", how="inner", validate="one_to_one")
    if len(merged) != len(applications):
        raise RuntimeError("every application needs exactly one history row")
    merged = merged.sort_values("spine_id", kind="stable").reset_index(drop=True)
    values = on_demand_features({c: merged[c].to_numpy(dtype=float) for c in on_demand.HISTORY_INPUTS},
                                merged["requested_amount_vnd"].to_numpy(dtype=float),
                                merged["term_months"].to_numpy(dtype=float))
    out = merged.drop(columns=["requested_amount_vnd", "term_months"])
    for name, column in values.items():
        out[name] = column
    return out


def _check_spine(spine: pd.DataFrame) -> None:
    missing = {"spine_id", "entity_type", "entity_id", "as_of"} - set(spine.columns)
    if missing:
        raise ValueError(f"spine is missing columns {sorted(missing)}")
    if spine["spine_id"].duplicated().any():
        raise ValueError("spine_id must be unique")
