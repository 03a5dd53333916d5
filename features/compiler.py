"""Compiles the catalogue's declarations (features.declarations) into one SQL query.

The query reads a table `spine` (spine_id, entity_type, entity_id, as_of) and the accepted tables,
and returns one row per spine row: spine_id, entity_type, entity_id, as_of, the measures, then
every history feature as a DOUBLE. Its shape, per source used:
- `src_<source>`: the source's rows (features.sources), joined to the spine strictly before as_of;
- `agg_<source>`: its aggregates, one `AGG(x) FILTER (WHERE filter AND window)` column each;
- `distinct_<source>_<n>`: its distinct counts of one expression, by grouping (_distinct_steps);
- `ser_<series>` and `seragg_<series>`: a series' per-bucket sums and the stats over them;
- `usual_<series>_<n>`: a usual bucket (a median over the buckets, empty ones as 0);
- for the cooperative's monthly sources, the same keyed by (coop_id, month_start) and joined
  through the subject's cooperative;
then one `joined` row per spine row, and each feature's expression over it. Identical inputs
declared by several features are computed once.

The query comes as its named steps (HistoryQuery): DuckDB runs them as one WITH statement and
materialises a CTE read twice by itself; Spark inlines a CTE at every reader, so its engine
(features.spark_engine) runs the steps one by one and keeps those several steps read.

Dialects: DuckDB and Spark SQL (PySpark 4) run the same query; the Spark mapping differs in its
date functions, median, distinct counts and inline tables. Declarations never hold a
dialect-specific function: only this mapping does.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from features.declarations import (COOPERATIVE_MONTH, EVENT, SUBJECT, Aggregate, Attribute,
                                   Feature, Input, Measure, Series, SeriesStat, Source, Trend,
                                   UsualBucket, Window)
from features.sources import SUBJECT_ROW


@dataclass(frozen=True)
class Dialect:
    """The SQL that differs between engines, as format strings ({0}, {1} the arguments)."""
    name: str
    days_between_sql: str  # whole days from date {0} to date {1}
    days_before_sql: str  # the date {1} days before {0}
    months_before_sql: str  # the date {1} months before {0}
    months_between_sql: str  # whole calendar months from {0} to {1}
    month_start_sql: str  # the first day of {0}'s month, a DATE
    month_of_sql: str  # {0}'s month number, 1-12
    median_sql: str  # the median of {0} (interpolated between the two middle values)
    values_sql: str  # an inline table: {0} the rows "(a, b), (c, d)", {1} alias(columns)

    def days_between(self, start: str, end: str) -> str:
        return self.days_between_sql.format(start, end)

    def days_before(self, day: str, n: int) -> str:
        return self.days_before_sql.format(day, n)

    def months_before(self, day: str, n: int) -> str:
        return self.months_before_sql.format(day, n)

    def months_between(self, start: str, end: str) -> str:
        return self.months_between_sql.format(start, end)

    def month_start(self, x: str) -> str:
        return self.month_start_sql.format(x)

    def month_of(self, x: str) -> str:
        return self.month_of_sql.format(x)

    def median(self, x: str) -> str:
        return self.median_sql.format(x)

    def values(self, rows: Iterable[tuple], alias: str, columns: Iterable[str]) -> str:
        body = ", ".join("(" + ", ".join(_literal(x) for x in row) + ")" for row in rows)
        return self.values_sql.format(body, f"{alias}({', '.join(columns)})")


DUCKDB = Dialect(
    "duckdb", days_between_sql="date_diff('day', {0}, {1})",
    days_before_sql="{0} - INTERVAL {1} DAY", months_before_sql="{0} - INTERVAL {1} MONTH",
    months_between_sql="date_diff('month', {0}, {1})",
    month_start_sql="CAST(date_trunc('month', {0}) AS DATE)", month_of_sql="month({0})",
    median_sql="MEDIAN({0})",
    values_sql="(VALUES {0}) AS {1}")
SPARK = Dialect(
    "spark", days_between_sql="datediff({1}, {0})",
    days_before_sql="date_sub({0}, {1})", months_before_sql="add_months({0}, -{1})",
    # calendar-month boundaries, as DuckDB's date_diff('month'): months_between is fractional
    # between a month's end and a month's start
    months_between_sql="((year({1}) - year({0})) * 12 + month({1}) - month({0}))",
    month_start_sql="trunc({0}, 'MM')", month_of_sql="month({0})",
    median_sql="percentile({0}, 0.5)", values_sql="VALUES {0} AS {1}")
DIALECTS = {d.name: d for d in (DUCKDB, SPARK)}


def _literal(x) -> str:
    return "'" + x.replace("'", "''") + "'" if isinstance(x, str) else repr(x)


def _window_sql(window: Window | None, age: str) -> str:
    if window is None:
        return ""
    if window.first == 1:
        return f"{age} <= {window.last}"
    return f"{age} BETWEEN {window.first} AND {window.last}"


def _conditions(*parts: str) -> str:
    return " AND ".join(p for p in parts if p)


def _check_window(source: Source, window: Window | None, what: str) -> None:
    if window is not None and source.history is not None and window.last > source.history:
        raise ValueError(f"{what}: window up to {window.last} but {source.name} reads only "
                         f"{source.history} back")


def _aggregate_condition(a: Aggregate) -> str:
    _check_window(a.source, a.window, f"{a.how}({a.of})")
    return _conditions(a.where, _window_sql(a.window, a.source.age))


def _aggregate_sql(a: Aggregate) -> str:
    cond = _aggregate_condition(a)
    func = {"sum": "SUM", "count": "COUNT", "min": "MIN", "max": "MAX"}[a.how]
    expr = f"{func}({a.of})"
    if cond:
        expr += f" FILTER (WHERE {cond})"
    return f"COALESCE({expr}, 0)" if a.how == "sum" else expr


def _series_stat_sql(s: SeriesStat | Trend) -> str:
    if isinstance(s, Trend):  # least-squares slope on x = n-1-bucket, over the mean bucket
        n = s.buckets
        mean_x, sxx = (n - 1) / 2, n * (n * n - 1) / 12
        return (f"CASE WHEN SUM(y) > 0 THEN ((SUM(({n - 1} - bucket) * y) - {mean_x!r} * SUM(y))"
                f" / {sxx!r}) / (SUM(y) / {float(n)!r}) END")
    return {"sum": "SUM(y)", "sum_squares": "SUM(y * y)", "count": "COUNT(*)",
            "hhi": "SUM(y * y) / (SUM(y) * SUM(y))"}[s.how]


def _distinct_steps(source: Source, plan: "_Plan", key_sql: str) -> list[tuple[str, str]]:
    """The source's distinct counts, one step per counted expression: its values grouped per key,
    each with a 0/1 flag per count (a row of that value passed the count's filter), then the
    flags counted per key. A filtered COUNT(DISTINCT) costs more: DuckDB keeps a hash set per
    count per group (2.3 s against 0.9 s for the 200,000-row training set's aggregates), Spark
    copies every row once per count (`Expand`, docs/scaling.md); grouping is one pass on both."""
    counted: dict[str, list[Aggregate]] = {}
    for a in plan.by_source[source]:
        if isinstance(a, Aggregate) and a.how == "count_distinct":
            counted.setdefault(a.of, []).append(a)
    steps = []
    for n, (of, counts) in enumerate(counted.items()):
        conds = [_aggregate_condition(a) for a in counts]
        flags = ", ".join(f"MAX(CASE WHEN {c} THEN 1 ELSE 0 END) AS f{i}" if c else f"1 AS f{i}"
                          for i, c in enumerate(conds))
        where = " OR ".join(f"({c})" for c in conds) if all(conds) else ""
        sums = ", ".join(f"COUNT(*) FILTER (WHERE f{i} = 1) AS {plan.column[a]}"
                         for i, a in enumerate(counts))
        steps.append((f"distinct_{source.name}_{n}",
                      f"\n      SELECT {key_sql}, {sums} FROM (\n"
                      f"        SELECT {key_sql}, {flags}\n        FROM src_{source.name}\n"
                      f"        WHERE ({of}) IS NOT NULL{' AND (' + where + ')' if where else ''}\n"
                      f"        GROUP BY {key_sql}, {of}) v\n      GROUP BY {key_sql}\n    "))
    return steps


class _Plan:
    """Names a column for every distinct input and collects the CTEs that compute them."""

    def __init__(self, dialect: Dialect):
        self.d = dialect
        self.column: dict[Input, str] = {}
        self.by_source: dict[Source, list[Input]] = {}
        self.series: dict[Series, list[Input]] = {}
        self.usual: list[UsualBucket] = []

    def add(self, item: Input, hint: str) -> str:
        if item not in self.column:
            # an attribute keeps its own name; an aggregate is named after its first reader
            self.column[item] = item.of if isinstance(item, Attribute) else hint
            src = item.source
            self.by_source.setdefault(src, [])
            if isinstance(item, Aggregate):
                self.by_source[src].append(item)
            elif isinstance(item, (SeriesStat, Trend)):
                self.series.setdefault(item.series, []).append(item)
            elif isinstance(item, UsualBucket):
                self.series.setdefault(item.series, [])
                self.usual.append(item)
                # the subject's history: the oldest row its source reads
                self.add(Aggregate(src, "max", src.age), f"{src.name}_oldest_age")
        return self.column[item]


@dataclass(frozen=True)
class HistoryQuery:
    """Stage 1's query as named steps in dependency order, each a SELECT over the tables, `spine`
    and the steps before it, and a final SELECT over the steps (in no order: `sql` sorts)."""
    steps: tuple[tuple[str, str], ...]
    select: str
    columns: tuple[str, ...]  # the measures' and features' columns, after the spine's four

    @property
    def sql(self) -> str:
        """The whole query, rows sorted by spine_id: each step a CTE of one WITH."""
        return ("WITH\n    " + ",\n    ".join(f"{name} AS ({body})" for name, body in self.steps)
                + "\n" + self.select + "    ORDER BY spine_id\n")

    def readers(self, name: str) -> int:
        """How many later steps (the final SELECT included) read step `name`."""
        word = re.compile(rf"\b{re.escape(name)}\b")
        later = [body for step, body in self.steps if step != name] + [self.select]
        return sum(bool(word.search(body)) for body in later)

    @property
    def shared_steps(self) -> tuple[str, ...]:
        """The steps several later steps read. An engine that inlines each CTE where it is read
        (Spark) computes such a step once per reader: the spine's join to the transactions, the
        costliest step, five times. DuckDB materialises them itself; Spark keeps them
        (features.spark_engine)."""
        return tuple(name for name, _ in self.steps if self.readers(name) > 1)


def history_sql(features: Iterable[Feature], measures: Iterable[Measure] = (),
                dialect: Dialect = DUCKDB) -> str:
    """The query computing `measures` and `features` (history features only) for table `spine`."""
    return history_query(features, measures, dialect).sql


def history_query(features: Iterable[Feature], measures: Iterable[Measure] = (),
                  dialect: Dialect = DUCKDB) -> HistoryQuery:
    """`history_sql`'s query as its steps (HistoryQuery)."""
    features = [f for f in features if f.is_history]
    measures = list(measures)
    plan = _Plan(dialect)
    outputs = []  # (name, expression over joined columns, cast to double)
    for item, cast in [*((m, False) for m in measures), *((f, True) for f in features)]:
        refs = {key: plan.add(inp, f"{item.name}__{key}") for key, inp in item.inputs}
        outputs.append((item.name, item.expression.format(**refs), cast))
    d = dialect
    steps: list[tuple[str, str]] = []
    keyed = any(s.grain == COOPERATIVE_MONTH for s in plan.by_source)
    if keyed or SUBJECT_ROW in plan.by_source:
        plan.by_source.setdefault(SUBJECT_ROW, [])
    for source in plan.by_source:
        for name, cols, rows in source.references:
            steps.append((name, f"SELECT * FROM {d.values(rows, name[0], cols)}"))
    # the subject's row first: the cooperative keys come from it
    order = sorted(plan.by_source, key=lambda s: (s.grain != SUBJECT, s.grain == COOPERATIVE_MONTH))
    joins: list[str] = []
    selected: list[str] = []
    for source in order:
        steps.append((f"src_{source.name}", f"{source.rows(d, source.history)}\n    "))
        if source.grain == SUBJECT:
            steps.append(("coop_keys", "SELECT DISTINCT coop_id, month_start FROM src_subject"))
            joins.append("LEFT JOIN src_subject sj USING (spine_id)")
            selected += [f"sj.{c}" for c in source.columns
                         if any(isinstance(i, Attribute) and i.of == c for i in plan.column)]
            continue
        key = ("spine_id",) if source.grain == EVENT else ("coop_id", "month_start")
        key_sql = ", ".join(key)
        items = [i for i in plan.column if i.source == source and not isinstance(i, Attribute)]
        parts = []  # (cte, alias) of this source's aggregate tables
        aggs = [a for a in plan.by_source[source] if a.how != "count_distinct"]
        if aggs:
            cols = ",\n        ".join(f"{_aggregate_sql(a)} AS {plan.column[a]}" for a in aggs)
            steps.append((f"agg_{source.name}", f"\n      SELECT {key_sql},\n        {cols}\n"
                          f"      FROM src_{source.name} GROUP BY {key_sql}\n    "))
            parts.append(f"agg_{source.name}")
        for name, body in _distinct_steps(source, plan, key_sql):
            steps.append((name, body))
            parts.append(name)
        for series, stats in plan.series.items():
            if series.source != source:
                continue
            _check_window(source, series.window, f"series {series.name}")
            cond = _conditions(series.where, _window_sql(series.window, source.age))
            steps.append((f"ser_{series.name}",
                          f"\n      SELECT {key_sql}, {series.by} AS bucket, "
                          f"SUM({series.of}) AS y\n      FROM src_{source.name}"
                          f"{' WHERE ' + cond if cond else ''}\n"
                          f"      GROUP BY {key_sql}, {series.by}\n    "))
            if stats:
                cols = ", ".join(f"{_series_stat_sql(s)} AS {plan.column[s]}" for s in stats)
                steps.append((f"seragg_{series.name}", f"SELECT {key_sql}, {cols} "
                              f"FROM ser_{series.name} GROUP BY {key_sql}"))
                parts.append(f"seragg_{series.name}")
        for u in plan.usual:
            if u.source != source:
                continue
            if source.grain != EVENT:
                raise ValueError(f"a usual bucket needs a source of daily rows, not {source.name}")
            oldest = plan.column[Aggregate(source, "max", source.age)]
            name = f"usual_{plan.column[u]}"
            buckets = d.values(((b,) for b in range(u.first, u.last + 1)), "b", ("bucket",))
            steps.append((name,
                f"\n      SELECT a.spine_id, {d.median('COALESCE(m.y, 0)')} AS "
                f"{plan.column[u]}\n      FROM agg_{source.name} a CROSS JOIN {buckets}\n"
                f"      LEFT JOIN ser_{u.series.name} m ON m.spine_id = a.spine_id "
                f"AND m.bucket = b.bucket\n"
                f"      WHERE (b.bucket + 1) * {u.bucket_days} <= a.{oldest}\n"
                f"      GROUP BY a.spine_id HAVING COUNT(*) >= {u.at_least}\n    "))
            parts.append(name)
        if source.grain == EVENT:
            for p in parts:
                joins.append(f"LEFT JOIN {p} USING (spine_id)")
            selected += [f"COALESCE({plan.column[i]}, 0) AS {plan.column[i]}"
                         if i.zero_when_empty else plan.column[i] for i in items]
        else:  # per cooperative key: zero-filled there, then joined through the subject's row
            table = f"keyed_{source.name}"
            fills = ", ".join(f"COALESCE({plan.column[i]}, 0) AS {plan.column[i]}"
                              if i.zero_when_empty else plan.column[i] for i in items)
            steps.append((table, f"SELECT k.coop_id, k.month_start, {fills} FROM coop_keys k "
                          + " ".join(f"LEFT JOIN {p} USING (coop_id, month_start)" for p in parts)))
            joins.append(f"LEFT JOIN {table} ON {table}.coop_id = sj.coop_id "
                         f"AND {table}.month_start = sj.month_start")
            selected += [f"{table}.{plan.column[i]}" for i in items]
    steps.append(("joined", "\n      SELECT s.spine_id, s.entity_type, s.entity_id, s.as_of,\n        "
                  + ",\n        ".join(selected) + "\n      FROM spine s\n      "
                  + "\n      ".join(joins) + "\n    "))
    out = ",\n      ".join(f"CAST({expr} AS DOUBLE) AS {name}" if cast else f"{expr} AS {name}"
                           for name, expr, cast in outputs)
    return HistoryQuery(tuple(steps), f"    SELECT spine_id, entity_type, entity_id, as_of,\n      {out}\n"
                        "    FROM joined\n", tuple(name for name, _, _ in outputs))
