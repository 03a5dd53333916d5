"""The vocabulary the feature catalogue is written in: sources, windows, aggregations, features.

A history feature is a declaration, not SQL: its inputs are aggregations of a source (which rows,
after which filter, over which window, aggregated how) and its expression combines them. The
compiler (features.compiler) turns the declarations into one SQL query; nothing about a feature is
written anywhere else. As in Feast, the declaration says what, the engine says how, and the same
declarations are meant to compile to DuckDB today and to Spark SQL later.

Filters and expressions are SQL over the source's columns (`Source.columns`), kept to what DuckDB
and Spark SQL 3.5 read alike: CASE, NULLIF, COALESCE, GREATEST, SQRT, CAST, IN, arithmetic. What
differs between the two (date arithmetic, the median) lives in the compiler's dialect mapping.

Point in time: every source reads only rows strictly before the as-of date (`Source.rows` is
written that way, and tests/test_features_point_in_time.py proves it). A row's age is counted in
whole days before the as-of date (1 = the day before), or for a monthly source in calendar months
before the as-of month (1 = the month before); windows are ranges of that age.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from string import Formatter

# Grains: what one row of a source is, and how it is joined to a spine row (entity, as_of).
EVENT = "event"  # dated rows of the subject itself (transactions, invoices, loans, repayments)
SUBJECT = "subject"  # the subject's own row: one per spine row (attributes, not aggregated)
COOPERATIVE_MONTH = "cooperative_month"  # the subject's cooperative, one row per calendar month

# Subjects a feature may be declared for.
MEMBER = "member"
COOPERATIVE = "cooperative"
BOTH = (MEMBER, COOPERATIVE)


@dataclass(frozen=True)
class Source:
    """A relation features read, as rows belonging to a spine row.

    `rows(dialect, history)` returns the SELECT that produces them (written once, in
    features/sources.py): keyed by `spine_id` (grains EVENT and SUBJECT) or by `coop_id,
    month_start` (COOPERATIVE_MONTH), with `age_days` (EVENT) or `months_ago` (COOPERATIVE_MONTH)
    and every name in `columns`. `reads` lists the contract columns it reads, per table: a test
    checks them against data_contracts. `history` is how far back (in age units) it reads, None
    for all the past. `member_can_change`: whether a member's own actions (sales, invoices,
    repayments) can change its rows; features read only from sources a member cannot change are
    never offered as levers (ranking.advice).
    """
    name: str
    grain: str
    columns: tuple[str, ...]
    reads: Mapping[str, tuple[str, ...]]
    rows: Callable[..., str] = field(compare=False)
    history: int | None = None
    member_can_change: bool = True
    # reference tables (name -> rows and column names) the rows join; built from data_contracts'
    # vocabulary, not read from data
    references: tuple[tuple[str, tuple[str, ...], tuple[tuple, ...]], ...] = ()

    @property
    def age(self) -> str:
        return "months_ago" if self.grain == COOPERATIVE_MONTH else "age_days"

    def __hash__(self) -> int:
        return hash((self.name, self.grain))


@dataclass(frozen=True)
class Window:
    """Rows whose age is in [first, last] (days, or months for a monthly source)."""
    last: int
    first: int = 1

    def __post_init__(self):
        if not 1 <= self.first <= self.last:
            raise ValueError(f"a window needs 1 <= first <= last, got [{self.first}, {self.last}]")


def days(last: int, first: int = 1) -> Window:
    """The rows of the `last` days before the as-of date (or of days first..last before it)."""
    return Window(last, first)


months = days  # the same range, read in months on a monthly source


class Input:
    """Something a feature's expression reads: one value per spine row."""
    source: Source

    # Zero rather than unknown when the subject has no row to aggregate: a sum or count of
    # nothing is 0; a minimum, a median or a ratio of nothing is unknown.
    zero_when_empty: bool = False


AGGREGATIONS = ("sum", "count", "count_distinct", "min", "max")


@dataclass(frozen=True)
class Aggregate(Input):
    """`how` (sum, count, count_distinct, min, max) of `of` over the source's rows that pass
    `where` and fall in `window` (None: every row the source reads)."""
    source: Source
    how: str
    of: str = "*"
    where: str = ""
    window: Window | None = None

    def __post_init__(self):
        if self.how not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.how!r}: one of {AGGREGATIONS}")
        if self.source.grain == SUBJECT:
            raise ValueError(f"{self.source.name} has one row per subject: use Attribute")

    @property
    def zero_when_empty(self) -> bool:
        return self.how in ("sum", "count", "count_distinct")


@dataclass(frozen=True)
class Attribute(Input):
    """A column of the subject's own row (source of grain SUBJECT), as it is."""
    source: Source
    of: str

    def __post_init__(self):
        if self.source.grain != SUBJECT:
            raise ValueError(f"{self.source.name} is not the subject's own row: use Aggregate")


@dataclass(frozen=True)
class Series:
    """The source's rows that pass `where` within `window`, grouped into buckets by `by` (an
    expression of the source's columns: a 30-day month, a customer), each bucket's sum of `of`:
    the series the stats below read (column `y`, its bucket in `bucket`)."""
    name: str
    source: Source
    by: str
    of: str
    where: str = ""
    window: Window | None = None


SERIES_STATS = ("sum", "sum_squares", "count", "hhi")


@dataclass(frozen=True)
class SeriesStat(Input):
    """Over a series' buckets: sum, sum_squares (sum of y squared), count (buckets with a row), or
    hhi (Herfindahl index: sum of squared shares)."""
    series: Series
    how: str

    def __post_init__(self):
        if self.how not in SERIES_STATS:
            raise ValueError(f"unknown series stat {self.how!r}: one of {SERIES_STATS}")

    @property
    def source(self) -> Source:
        return self.series.source

    @property
    def zero_when_empty(self) -> bool:
        return self.how != "hhi"


@dataclass(frozen=True)
class Trend(Input):
    """The least-squares slope of a series over `buckets` buckets (bucket 0 the most recent; an
    empty bucket counts as 0), relative to the mean bucket; unknown when the series sums to <= 0."""
    series: Series
    buckets: int = 12

    @property
    def source(self) -> Source:
        return self.series.source


@dataclass(frozen=True)
class UsualBucket(Input):
    """The subject's usual bucket: the median of a day-bucketed series over buckets first..last,
    an empty bucket counting as 0, but only buckets wholly inside the subject's history (the
    oldest row the source reads); unknown with fewer than `at_least` such buckets."""
    series: Series
    first: int
    last: int
    bucket_days: int
    at_least: int = 3

    @property
    def source(self) -> Source:
        return self.series.source


def placeholders(expression: str) -> set[str]:
    """The `{name}` inputs an expression reads."""
    return {name for _, name, _, _ in Formatter().parse(expression) if name}


@dataclass(frozen=True)
class Feature:
    """One feature: its meaning (Vietnamese and English), direction of risk (+1 higher is riskier,
    -1 higher is safer, 0 either way), the reason code it speaks for, and how it is computed.

    A history feature declares `inputs` (name -> Input) and an `expression` over them (`{name}`;
    by default the single input `{value}`); an application feature has `on_demand` instead, a numpy
    function of the history row and the application (features.on_demand).
    """
    name: str
    vi: str
    en: str
    risk: int
    reason: str
    subjects: tuple[str, ...] = BOTH
    unit: str = ""
    inputs: Mapping[str, Input] | Input | None = None
    expression: str = "{value}"
    on_demand: Callable | None = None

    def __post_init__(self):
        inputs = self.inputs
        if isinstance(inputs, Input):
            inputs = {"value": inputs}
        object.__setattr__(self, "inputs", tuple(sorted((inputs or {}).items())))
        if (self.on_demand is None) == (not self.inputs):
            raise ValueError(f"{self.name}: declare either inputs (history) or on_demand "
                             "(application), exactly one")
        if self.inputs and placeholders(self.expression) != {k for k, _ in self.inputs}:
            raise ValueError(f"{self.name}: expression reads {sorted(placeholders(self.expression))} "
                             f"but the inputs are {sorted(k for k, _ in self.inputs)}")

    @property
    def is_history(self) -> bool:
        return self.on_demand is None

    @property
    def sources(self) -> frozenset[Source]:
        return frozenset(i.source for _, i in self.inputs)


@dataclass(frozen=True)
class Measure:
    """A column stage 1 returns that is not a model input (how long the record behind the
    features is: features.sufficiency, the on-time rate's months); computed like a feature."""
    name: str
    inputs: Mapping[str, Input] | Input
    expression: str = "{value}"

    def __post_init__(self):
        inputs = self.inputs
        if isinstance(inputs, Input):
            inputs = {"value": inputs}
        object.__setattr__(self, "inputs", tuple(sorted(inputs.items())))
