"""The sources history features read: each accepted table as rows belonging to a spine row
(spine_id, entity_type, entity_id, as_of), strictly before the as-of date.

Written once here, shared by every feature: a feature (features.catalogue) only names its source
and says which of its rows, over which window, aggregated how. `d` is the compiler's dialect
(features.compiler): the few date functions that differ between DuckDB and Spark SQL.
"""
from __future__ import annotations

from data_contracts.vocabulary import HARVEST_INTENSITY, REGION_OF_PROVINCE
from features.declarations import COOPERATIVE_MONTH, EVENT, SUBJECT, Source

# Transactions are read 365 days back, plus 90 more for "the same season last year".
TRANSACTIONS_HISTORY_DAYS = 365 + 90

# Borrowed money is not income: a disbursal counts as neither inflow nor revenue.
_DIRECTION = "CASE WHEN t.category = 'loan_disbursal' THEN 'borrowed' ELSE t.direction END"

TRANSACTIONS = Source(
    name="transactions", grain=EVENT, history=TRANSACTIONS_HISTORY_DAYS,
    columns=("direction", "amount", "channel", "counterparty_hash", "category", "age_days"),
    reads={"transactions": ("entity_type", "entity_id", "ts", "amount_vnd", "direction", "channel",
                            "counterparty_hash", "category")},
    rows=lambda d, history: f"""
      SELECT s.spine_id, t.channel, t.counterparty_hash, t.category,
             {_DIRECTION} AS direction,
             CAST(t.amount_vnd AS DOUBLE) AS amount,
             {d.days_between('CAST(t.ts AS DATE)', 's.as_of')} AS age_days
      FROM spine s JOIN transactions t
        ON t.entity_type = s.entity_type AND t.entity_id = s.entity_id
       AND t.ts < s.as_of AND t.ts >= {d.days_before('s.as_of', history)}""")

E_INVOICES = Source(
    name="e_invoices", grain=EVENT, history=365,
    columns=("status", "age_days"),
    reads={"e_invoices": ("entity_type", "entity_id", "issued_at", "status")},
    rows=lambda d, history: f"""
      SELECT s.spine_id, i.status,
             {d.days_between('CAST(i.issued_at AS DATE)', 's.as_of')} AS age_days
      FROM spine s JOIN e_invoices i
        ON i.entity_type = s.entity_type AND i.entity_id = s.entity_id
       AND i.issued_at < s.as_of AND i.issued_at >= {d.days_before('s.as_of', history)}""")

LOANS = Source(
    name="loans", grain=EVENT,
    columns=("loan_id", "age_days"),
    reads={"loans": ("loan_id", "entity_type", "entity_id", "disbursal_date")},
    rows=lambda d, history: f"""
      SELECT s.spine_id, l.loan_id,
             {d.days_between('CAST(l.disbursal_date AS DATE)', 's.as_of')} AS age_days
      FROM spine s JOIN loans l
        ON l.entity_type = s.entity_type AND l.entity_id = s.entity_id
       AND l.disbursal_date < s.as_of""")

REPAYMENTS = Source(  # the monthly repayment rows of the subject's own loans
    name="repayments", grain=EVENT,
    columns=("loan_id", "days_past_due", "age_days"),
    reads={"loans": ("loan_id", "entity_type", "entity_id", "disbursal_date"),
           "repayments": ("loan_id", "month", "days_past_due")},
    rows=lambda d, history: f"""
      SELECT s.spine_id, r.loan_id, r.days_past_due,
             {d.days_between('CAST(r.month AS DATE)', 's.as_of')} AS age_days
      FROM spine s JOIN loans l
        ON l.entity_type = s.entity_type AND l.entity_id = s.entity_id
       AND l.disbursal_date < s.as_of
      JOIN repayments r ON r.loan_id = l.loan_id AND r.month < s.as_of""")

SUBJECT_ROW = Source(  # the member or cooperative itself, and the harvest calendar of its region
    name="subject", grain=SUBJECT, member_can_change=False,
    columns=("member_type", "business_sector", "coop_sector", "capital_contribution_vnd",
             "legal_capital_vnd", "member_count", "days_since_joining", "days_since_founding",
             "harvest_intensity", "coop_id", "month_start"),
    reads={"members": ("member_id", "cooperative_id", "province", "member_type",
                       "business_sector", "join_date", "capital_contribution_vnd"),
           "cooperatives": ("cooperative_id", "province", "sector", "founding_date",
                            "member_count", "legal_capital_vnd")},
    # the harvest calendar (data_contracts.vocabulary): province -> region, and the intensity of
    # each region's calendar month
    references=(
        ("region_of", ("province", "region"), tuple(REGION_OF_PROVINCE.items())),
        ("harvest", ("region", "month", "intensity"),
         tuple((r, m + 1, w) for r, ws in HARVEST_INTENSITY.items() for m, w in enumerate(ws))),
    ),
    # harvest_intensity: the as-of month's (the date itself is known before the application)
    rows=lambda d, history: f"""
      SELECT s.spine_id, m.member_type, m.business_sector, c.sector AS coop_sector,
             m.capital_contribution_vnd, c.legal_capital_vnd, c.member_count,
             {d.days_between('m.join_date', 's.as_of')} AS days_since_joining,
             {d.days_between('c.founding_date', 's.as_of')} AS days_since_founding,
             h.intensity AS harvest_intensity,
             CASE WHEN s.entity_type = 'member' THEN m.cooperative_id ELSE s.entity_id END AS coop_id,
             {d.month_start('s.as_of')} AS month_start
      FROM spine s
      LEFT JOIN members m ON s.entity_type = 'member' AND m.member_id = s.entity_id
      LEFT JOIN cooperatives c ON c.cooperative_id =
           CASE WHEN s.entity_type = 'member' THEN NULL ELSE s.entity_id END
      LEFT JOIN region_of r ON r.province = COALESCE(m.province, c.province)
      LEFT JOIN harvest h ON h.region = r.region AND h.month = {d.month_of('s.as_of')}""")

# The cooperative's own health is read by whole calendar months (not days) so that one small
# monthly table serves every member of a cooperative: computing it per (cooperative, exact date)
# re-read the cooperative's year of transactions per row. Keys: `coop_keys` (coop_id, month_start),
# the subject's cooperative and the first day of its as-of month.
COOPERATIVE_MONTHLY_FLOWS = Source(  # the cooperative's own transactions, summed per month
    name="cooperative_monthly_flows", grain=COOPERATIVE_MONTH, history=12,
    member_can_change=False,
    columns=("direction", "amount", "months_ago"),
    reads={"transactions": ("entity_type", "entity_id", "ts", "amount_vnd", "direction",
                            "category")},
    rows=lambda d, history: f"""
      SELECT k.coop_id, k.month_start, cm.direction, cm.amount,
             {d.months_between('cm.month', 'k.month_start')} AS months_ago
      FROM coop_keys k JOIN (
        SELECT t.entity_id AS coop_id, {d.month_start('t.ts')} AS month,
               {_DIRECTION} AS direction, SUM(CAST(t.amount_vnd AS DOUBLE)) AS amount
        FROM transactions t
        WHERE t.entity_type = 'cooperative' AND t.entity_id IN (SELECT coop_id FROM coop_keys)
        GROUP BY 1, 2, 3) cm
        ON cm.coop_id = k.coop_id AND cm.month < k.month_start
       AND cm.month >= {d.months_before('k.month_start', history)}""")

COOPERATIVE_MONTHLY_REPAYMENTS = Source(  # its members' loan-months, per month and days past due
    # a member's own repayments are among them: not a source a member cannot change
    name="cooperative_monthly_repayments", grain=COOPERATIVE_MONTH, history=12,
    columns=("days_past_due", "loan_months", "months_ago"),
    reads={"repayments": ("loan_id", "month", "days_past_due"),
           "loans": ("loan_id", "entity_type", "entity_id"),
           "members": ("member_id", "cooperative_id")},
    rows=lambda d, history: f"""
      SELECT k.coop_id, k.month_start, a.days_past_due, a.loan_months,
             {d.months_between('a.month', 'k.month_start')} AS months_ago
      FROM coop_keys k JOIN (
        SELECT m.cooperative_id AS coop_id, r.month, r.days_past_due, COUNT(*) AS loan_months
        FROM repayments r
        JOIN loans l ON l.loan_id = r.loan_id AND l.entity_type = 'member'
        JOIN members m ON m.member_id = l.entity_id
        GROUP BY 1, 2, 3) a
        ON a.coop_id = k.coop_id AND a.month < k.month_start
       AND a.month >= {d.months_before('k.month_start', history)}""")

SOURCES = (TRANSACTIONS, E_INVOICES, LOANS, REPAYMENTS, SUBJECT_ROW, COOPERATIVE_MONTHLY_FLOWS,
           COOPERATIVE_MONTHLY_REPAYMENTS)
