"""Issue 17 item 1: history features are declarations compiled to SQL.

- every catalogue feature is computed by the compiled query, and by nothing else in the code;
- every column a declaration reads exists in the data contract of its table;
- each kind of aggregation gives the value worked out by hand (or by numpy, independently of SQL)
  on a tiny hand-built world.
"""
from __future__ import annotations

import pathlib
import re

import duckdb
import numpy as np
import pandas as pd
import pytest

from data_contracts.contracts import CONTRACTS
from features import compiler, engine
from features.catalogue import FEATURES, MEASURES
from features.declarations import (EVENT, Aggregate, Attribute, Feature, Series, SeriesStat,
                                   Source, Trend, UsualBucket, days)
from features.sources import SOURCES, TRANSACTIONS

ROOT = pathlib.Path(__file__).resolve().parents[1]
HISTORY = [f for f in FEATURES if f.is_history]
SQL_WORDS = {"and", "or", "in", "is", "not", "null", "case", "when", "then", "else", "end",
             "floor", "cast", "as", "integer", "distinct", "between"}


# --- the compiled path is the only path ------------------------------------------------------------

def test_the_engine_runs_the_compiled_declarations():
    assert engine.history_sql() == compiler.history_sql(engine.HISTORY_FEATURES, MEASURES,
                                                         compiler.DUCKDB)
    sql = engine.history_sql()
    for f in HISTORY:
        assert f.inputs, f"{f.name} declares no inputs"
        assert {i.source for _, i in f.inputs} <= set(SOURCES), f.name
        assert len(re.findall(rf"\bAS {f.name}\n|\bAS {f.name},", sql)) == 1, \
            f"{f.name} is not one output of the compiled query"


def _computed_outside(names, files) -> list[str]:
    """Lines that compute a feature by name: an SQL alias `AS name` or a pandas `["name"] =`."""
    words = "|".join(map(re.escape, names))
    pattern = re.compile(rf"\bAS\s+({words})\b|\[\s*['\"]({words})['\"]\s*\]\s*=(?!=)", re.I)
    return [f"{path}:{n}: {line.strip()}" for path in files
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if pattern.search(line)]


def test_no_catalogue_feature_is_computed_outside_the_compiled_path():
    contract_columns = {c for contract in CONTRACTS.values() for c in contract.columns}
    # a feature that is a contract column as it is (member_count) shares its name with raw data
    names = [f.name for f in HISTORY if f.name not in contract_columns]
    files = [p for p in ROOT.rglob("*.py")
             if not {".venv", ".tools", "tests"} & set(p.relative_to(ROOT).parts)]
    assert len(files) > 50
    assert _computed_outside(names, files) == []


def test_the_outside_check_would_see_a_hand_written_feature(tmp_path):
    """The scan above could pass by matching nothing; it sees the two ways a feature is written."""
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text('sql = "SELECT SUM(x) AS inflow_sum_30d"\nrows["cash_share_365d"] = 0\n')
    hits = _computed_outside(["inflow_sum_30d", "cash_share_365d"], [sneaky])
    assert len(hits) == 2


def test_adding_a_feature_is_one_declaration():
    """A new declaration is computed by the compiled query with nothing else edited."""
    extra = Feature("inflow_sum_7d", "Tổng tiền vào 7 ngày qua", "Total inflows, last 7 days", -1,
                    "REVENUE_LOW", inputs=Aggregate(TRANSACTIONS, "sum", "amount",
                                                    "direction = 'inflow'", days(7)))
    sql = compiler.history_sql([*HISTORY, extra], MEASURES)
    assert "AS inflow_sum_7d\n" in sql
    with pytest.raises(ValueError, match="expression reads"):
        Feature("bad", "x", "x", 0, "X", inputs={"a": extra.inputs[0][1]}, expression="{b}")


# --- every declared input column is in the data contract -----------------------------------------

def _identifiers(sql: str) -> set[str]:
    sql = re.sub(r"'[^']*'", "", sql)
    return {w for w in re.findall(r"\b[a-z_][a-z0-9_]*\b", sql.lower())
            if w not in SQL_WORDS and not w.isdigit()}


def _undeclared(sources, features) -> list[str]:
    problems = []
    for source in sources:
        for table, columns in source.reads.items():
            if table not in CONTRACTS:
                problems.append(f"{source.name} reads {table}, which has no contract")
                continue
            problems += [f"{source.name} reads {table}.{c}, not in its contract"
                         for c in columns if c not in CONTRACTS[table].columns]
    for f in features:
        for _, inp in f.inputs:
            texts = []
            if isinstance(inp, Aggregate):
                texts = [inp.of.replace("*", ""), inp.where]
            elif isinstance(inp, Attribute):
                texts = [inp.of]
            elif isinstance(inp, (SeriesStat, Trend, UsualBucket)):
                texts = [inp.series.by, inp.series.of, inp.series.where]
            for name in set().union(*map(_identifiers, texts)) - set(inp.source.columns):
                problems.append(f"{f.name} reads {name}, not a column of {inp.source.name}")
    return problems


def test_every_declared_input_column_is_in_the_data_contract():
    assert _undeclared(SOURCES, HISTORY) == []


def test_the_contract_check_would_see_a_missing_column():
    ghost = Source("ghost", EVENT, columns=("amount", "age_days"),
                   reads={"transactions": ("entity_id", "no_such_column"), "nowhere": ("x",)},
                   rows=lambda d, history: "")
    bad = Feature("ghost_sum", "x", "x", 0, "X",
                  inputs=Aggregate(ghost, "sum", "amount", "colour = 'red'", days(30)))
    problems = _undeclared([ghost], [bad])
    assert any("no_such_column" in p for p in problems)
    assert any("nowhere" in p for p in problems)
    assert any("colour" in p for p in problems)


def test_the_compiled_query_reads_only_contract_columns():
    """Run the query over empty tables that have exactly the contract's columns: a column read
    that no contract declares fails here, whatever the declarations say they read."""
    types = {"str": "VARCHAR", "int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN",
             "date": "DATE", "timestamp": "TIMESTAMP"}
    con = duckdb.connect()
    for table in engine.SOURCE_TABLES:
        cols = ", ".join(f"{f.name} {types[f.dtype]}" for f in CONTRACTS[table].fields)
        con.execute(f"CREATE TABLE {table} ({cols})")
    con.execute("CREATE TABLE spine (spine_id VARCHAR, entity_type VARCHAR, entity_id VARCHAR, "
                "as_of DATE)")
    con.execute("INSERT INTO spine VALUES ('a', 'member', 'TV0000001', DATE '2025-06-15')")
    out = con.execute(engine.history_sql()).df()
    assert len(out) == 1 and set(f.name for f in HISTORY) <= set(out.columns)


# --- each aggregation kind, by hand ----------------------------------------------------------------

D = pd.Timestamp("2025-06-15")
M = 1_000_000


def _tx(i, entity_type, entity_id, ts, amount, direction="inflow", customer=None,
        category="sales", channel=None):
    return {"transaction_id": f"T{i}", "entity_type": entity_type, "entity_id": entity_id,
            "ts": ts, "amount_vnd": amount, "direction": direction,
            "channel": channel or ("cash" if customer is None else "vietqr"),
            "counterparty_hash": customer, "category": category}


def _ago(n_days):
    return D - pd.Timedelta(days=n_days) + pd.Timedelta(hours=9)


# TV1's transactions: (age in days, amount, direction, customer, category)
TV1 = [(5, 1 * M, "inflow", "A", "sales"), (10, 3 * M, "inflow", "B", "sales"),
       (40, 2 * M, "inflow", "A", "sales"), (100, 4 * M, "inflow", "C", "sales"),
       (3, M // 2, "outflow", None, "inputs"), (2, 50 * M, "inflow", None, "loan_disbursal")]
# The cooperative's own inflows: (timestamp, amount); June 2025 is the as-of month (not whole),
# May 2024 is 13 months back (outside the 12 whole months).
HTX1 = [(pd.Timestamp("2025-05-20"), 10 * M), (pd.Timestamp("2025-03-03"), 20 * M),
        (pd.Timestamp("2024-06-09"), 5 * M), (pd.Timestamp("2024-05-31"), 7 * M),
        (pd.Timestamp("2025-06-10"), 9 * M)]
# Repayment months: (loan, month end, days past due)
REPAYMENTS = [("L1", "2025-01-31", 0), ("L1", "2025-02-28", 0), ("L1", "2025-03-31", 45),
              ("L1", "2025-04-30", 0), ("L1", "2025-07-31", 100),
              ("L2", "2024-05-31", 90), ("L2", "2024-06-30", 30), ("L2", "2024-12-31", 0),
              ("L2", "2025-05-31", 60)]


def _write_world(path: pathlib.Path) -> pathlib.Path:
    path.mkdir(parents=True)
    pd.DataFrame({"cooperative_id": ["HTX1"], "province": ["Cần Thơ"], "sector": ["agriculture"],
                  "founding_date": [pd.Timestamp("2015-01-01")], "member_count": [10],
                  "legal_capital_vnd": [1_000 * M]}).to_parquet(path / "cooperatives.parquet")
    pd.DataFrame({"member_id": ["TV1", "TV2"], "cooperative_id": ["HTX1", "HTX1"],
                  "province": ["Hà Nội", "Hà Nội"], "member_type": ["household", "household"],
                  "business_sector": ["retail", "retail"],
                  "join_date": [pd.Timestamp("2020-06-15"), pd.Timestamp("2021-01-01")],
                  "capital_contribution_vnd": [10 * M, 10 * M]}).to_parquet(path / "members.parquet")
    rows = [_tx(i, "member", "TV1", _ago(a), x, d, c, cat) for i, (a, x, d, c, cat) in enumerate(TV1)]
    rows += [_tx(100 + i, "cooperative", "HTX1", ts, x) for i, (ts, x) in enumerate(HTX1)]
    rows.append(_tx(200, "cooperative", "HTX1", pd.Timestamp("2025-04-02"), 99 * M,
                    category="loan_disbursal"))  # borrowed: not revenue
    pd.DataFrame(rows).to_parquet(path / "transactions.parquet")
    inv = [(10, "issued"), (50, "issued"), (100, "cancelled"), (300, "adjusted"), (400, "cancelled")]
    pd.DataFrame({"invoice_id": [f"I{i}" for i in range(len(inv))], "entity_type": "member",
                  "entity_id": "TV1", "issued_at": [_ago(a) for a, _ in inv],
                  "status": [s for _, s in inv], "total_vnd": M, "vat_rate_percent": 8,
                  "buyer_tax_code_present": True}).to_parquet(path / "e_invoices.parquet")
    pd.DataFrame({"loan_id": ["L1", "L2", "L3"], "application_id": ["A1", "A2", "A3"],
                  "entity_type": "member", "entity_id": ["TV1", "TV2", "TV1"],
                  "disbursal_date": [pd.Timestamp("2024-12-01"), pd.Timestamp("2024-04-01"),
                                     pd.Timestamp("2025-07-01")],  # L3: after as_of
                  "principal_vnd": 10 * M, "term_months": 12}).to_parquet(path / "loans.parquet")
    pd.DataFrame({"loan_id": [r[0] for r in REPAYMENTS],
                  "month": [pd.Timestamp(r[1]) for r in REPAYMENTS],
                  "days_past_due": [r[2] for r in REPAYMENTS], "amount_due_vnd": M,
                  "amount_paid_vnd": M}).to_parquet(path / "repayments.parquet")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    clean = _write_world(tmp_path_factory.mktemp("declarations") / "clean")
    spine = pd.DataFrame({"spine_id": ["m1", "c1"], "entity_type": ["member", "cooperative"],
                          "entity_id": ["TV1", "HTX1"], "as_of": [D, D]})
    return engine.history_features(engine.connect(clean), spine).set_index("spine_id")


def _relative_trend(y_by_bucket: dict[int, float], n: int = 12) -> float:
    """numpy's least-squares slope of y on x = n-1-bucket (0 the oldest), over the mean."""
    y = np.array([y_by_bucket.get(b, 0.0) for b in range(n)])
    x = n - 1 - np.arange(n)
    return np.polyfit(x, y, 1)[0] / y.mean()


def test_sum_count_min_max_of_dated_rows(tiny):
    m = tiny.loc["m1"]
    assert m["inflow_sum_30d"] == 4 * M  # 1 + 3 million; the disbursal is borrowed, not an inflow
    assert m["inflow_count_90d"] == 3
    assert m["outflow_sum_30d"] == M // 2
    assert m["days_since_last_activity"] == 2  # the disbursal is still activity
    assert m["revenue_change_vs_last_year_90d"] != m["revenue_change_vs_last_year_90d"]  # no last year
    assert m["history_days"] == 100 and m["transactions_365d"] == 6
    assert m["cancelled_invoice_rate_365d"] == pytest.approx(1 / 4)  # the 400-day-old one is out
    assert m["prior_loans"] == 1  # L3 is disbursed after as_of
    assert m["repayment_on_time_rate"] == pytest.approx(3 / 4) and m["repayment_months"] == 4
    assert m["worst_days_past_due"] == 45  # July's 100 days is after as_of


def test_count_distinct(tiny):
    m = tiny.loc["m1"]
    # inflows at ages 5, 10, 40: weeks 0, 1 and 5 of the last 13
    assert m["weeks_without_inflow_13w"] == 13 - 3
    # customers A, B in the last 90 days against C in the 90 before
    assert m["customers_change_90d"] == pytest.approx((2 - 1) / 1)


def test_a_value_counts_once_per_window_and_a_missing_one_never(tmp_path):
    """TV2's inflows: customer X at ages 10 and 20 (the last 90 days, twice) and 100 (the 90
    before), Y at 120, cash (no customer) at 15; an outflow to Z at 12 is not an inflow."""
    clean = _write_world(tmp_path / "clean")
    tx = pd.read_parquet(clean / "transactions.parquet")
    extra = [_tx(700 + i, "member", "TV2", _ago(age), M, direction, customer)
             for i, (age, direction, customer) in enumerate(
                 [(10, "inflow", "X"), (20, "inflow", "X"), (100, "inflow", "X"),
                  (120, "inflow", "Y"), (15, "inflow", None), (12, "outflow", "Z")])]
    pd.concat([tx, pd.DataFrame(extra)], ignore_index=True).to_parquet(clean / "transactions.parquet")
    spine = pd.DataFrame({"spine_id": ["m2"], "entity_type": ["member"], "entity_id": ["TV2"],
                          "as_of": [D]})
    got = engine.history_features(engine.connect(clean), spine).iloc[0]
    assert got["customers_change_90d"] == pytest.approx((1 - 2) / 2)  # {X} against {X, Y}
    assert got["distinct_customers_365d"] == 2
    # inflows at ages 10, 15 (cash counts: a week with money in) and 20: weeks 1, 2 and 2
    assert got["weeks_without_inflow_13w"] == 13 - 2


def test_series_stats(tiny):
    m = tiny.loc["m1"]
    months = {0: 4 * M, 1: 2 * M, 3: 4 * M}  # 30-day buckets of ages 5+10, 40 and 100
    y = np.array([months.get(b, 0.0) for b in range(12)])
    assert m["active_months_12m"] == 3
    assert m["revenue_volatility_12m"] == pytest.approx(y.std() / y.mean(), rel=1e-12)
    assert m["revenue_trend_12m"] == pytest.approx(_relative_trend(months), rel=1e-9)
    by_customer = np.array([3, 3, 4]) * M  # A: 1 + 2, B: 3, C: 4 million
    assert m["customer_concentration_365d"] == pytest.approx(((by_customer / by_customer.sum())
                                                              ** 2).sum(), rel=1e-12)
    assert m["distinct_customers_365d"] == 3


def test_usual_bucket_median(tiny):
    m = tiny.loc["m1"]
    # a history of 100 days holds only bucket 2 (days 61-90) of buckets 2..11 wholly: fewer than
    # 3 months, so the usual month is unknown
    assert np.isnan(m["inflow_30d_vs_usual_month"])


def test_subject_attributes(tiny):
    m, c = tiny.loc["m1"], tiny.loc["c1"]
    assert m["tenure_years"] == pytest.approx((D - pd.Timestamp("2020-06-15")).days / 365.25)
    assert c["tenure_years"] == pytest.approx((D - pd.Timestamp("2015-01-01")).days / 365.25)
    assert m["capital_contribution_vnd"] == 10 * M and np.isnan(m["legal_capital_vnd"])
    assert c["member_count"] == 10 and c["coop_sector_agriculture"] == 1
    assert m["sector_retail"] == 1 and m["sector_livestock"] == 0 and m["household_business"] == 0


def test_the_cooperatives_whole_months(tiny):
    m, c = tiny.loc["m1"], tiny.loc["c1"]
    # May 2025 (bucket 0), March 2025 (bucket 2), June 2024 (bucket 11); not May 2024 (13 months
    # back), not June 2025 (the as-of month), not the disbursal
    assert m["coop_revenue_12m"] == 35 * M
    assert m["coop_revenue_trend_12m"] == pytest.approx(
        _relative_trend({0: 10 * M, 2: 20 * M, 11: 5 * M}), rel=1e-9)
    # members' loan-months Jun 2024 - May 2025: L1 Jan-Apr (one 45 days late), L2 Jun, Dec, May
    # (Jun 30 and May 60 days late); L2's May 2024 is 13 months back
    assert m["coop_members_in_arrears_rate"] == pytest.approx(3 / 7)
    assert c["coop_arrears_rate_among_members"] == pytest.approx(3 / 7)


def test_usual_bucket_over_a_long_history(tmp_path):
    """The median of buckets 2..11 counts an empty month as 0: 30-day months of 10 million in
    buckets 2-6, none in 7-11, with a history of 400 days: median of five 10s and five 0s = 5."""
    clean = _write_world(tmp_path / "clean")
    tx = pd.read_parquet(clean / "transactions.parquet")
    extra = [_tx(500 + b, "member", "TV2", _ago(30 * b + 15), 10 * M, customer="Z")
             for b in range(2, 7)]
    extra.append(_tx(600, "member", "TV2", _ago(400), M, direction="outflow"))
    extra.append(_tx(601, "member", "TV2", _ago(20), 6 * M, customer="Z"))
    pd.concat([tx, pd.DataFrame(extra)], ignore_index=True).to_parquet(clean / "transactions.parquet")
    spine = pd.DataFrame({"spine_id": ["m2"], "entity_type": ["member"], "entity_id": ["TV2"],
                          "as_of": [D]})
    got = engine.history_features(engine.connect(clean), spine).iloc[0]
    assert got["inflow_30d_vs_usual_month"] == pytest.approx(6 * M / (5 * M))
    assert got["inflow_60d_vs_usual_month"] == pytest.approx(6 * M / (2 * 5 * M))


def test_spark_dialect_changes_only_the_dialect_bits():
    duck = compiler.history_sql(HISTORY, MEASURES, compiler.DUCKDB)
    spark = compiler.history_sql(HISTORY, MEASURES, compiler.SPARK)
    assert "date_diff" in duck and "date_diff" not in spark and "datediff(" in spark
    assert "MEDIAN(" in duck and "percentile(" in spark
    assert "INTERVAL" not in spark
    # distinct counts by grouping, on both: a filtered COUNT(DISTINCT) is a hash set per count on
    # DuckDB and a copy of every row per count on Spark
    for sql in (duck, spark):
        assert "DISTINCT" not in sql.replace("SELECT DISTINCT coop_id", "") and "collect_set" not in sql
        assert "distinct_transactions_1 AS" in sql and "distinct_loans_0 AS" in sql


def test_the_steps_read_by_several_steps_are_named():
    """Spark keeps these (computed once); the join of the transactions is read five times over."""
    query = compiler.history_query(HISTORY, MEASURES, compiler.SPARK)
    assert {"src_transactions", "agg_transactions", "src_subject"} <= set(query.shared_steps)
    assert "distinct_loans_0" not in query.shared_steps and query.readers("distinct_loans_0") == 1
    # agg, the two distinct counts (weeks, customers) and the two series
    assert query.readers("src_transactions") == 5
    assert query.sql.startswith("WITH") and query.sql.rstrip().endswith("ORDER BY spine_id")
