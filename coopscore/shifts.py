"""Population shifts the synthetic generator can inject from a given month: the proof that the
monitor (evaluation.monitoring) sees a change within two months of it.

Each shift changes the generator's own drivers from its first month on, so everything downstream
(transactions, e-invoices, applications, true PD, defaults, repayments) follows from the same
mechanics as the rest of the data, and the months before it are statistically what they were:

- `province_shock`: a province-wide bad spell (drought, salinity, a typhoon) in the named
  provinces: every entity's sales fall by `depth` for `length` months (two months to sink in, as
  the generator's own shocks do). Sales fall, so the features move, and the true PD rises through
  the generator's revenue-shock term.
- `e_invoice_law`: a law that moves household businesses from lump-sum tax to declaration, so to
  e-invoices: the generator's formalisation clock (Calendar.years_since_2022, which drives the
  share of sales that are invoiced and the share that is cash) jumps by `years` from the month on.
  The clock is per month, not per entity, so every seller moves, household businesses most
  (their formal propensity is the highest). Behaviour changes; risk does not.
- `cooperative_wave`: a wave of newly founded cooperatives (`share` of them, with their members;
  a programme that registers farmer groups as cooperatives): founded in the month thirteen months
  before the shift, their members joining then, all on the platform from the next month, so their
  first applications (which need twelve months of history) arrive from the shift's month on. New
  to the platform and to digital sales, they invoice less and take more cash (`informality` in
  log-odds), and have no loan record before joining. Their creditworthiness is drawn as everyone's:
  risk moves only through the generator's own mechanics (short history, no repayment record).

Used by coopscore.synthetic.generate(shift=...); `Shift.parse("province_shock:2025-06")` reads the
form a command line gives.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pandas as pd

from data_contracts import vocabulary as v

NS_PER_DAY = 86_400 * 10**9

KINDS = ("province_shock", "e_invoice_law", "cooperative_wave")
# The Mekong delta: salinity intrusion and drought hit these provinces together (2016, 2020, 2024).
MEKONG_DELTA = ("Cần Thơ", "Vĩnh Long", "Đồng Tháp", "An Giang", "Cà Mau")


@dataclass(frozen=True)
class Shift:
    """A change in the population from `month` (the first day of a month) on."""

    kind: str
    month: date
    provinces: tuple[str, ...] = MEKONG_DELTA  # province_shock: where
    depth: float = 0.6  # province_shock: the share of sales lost
    length: int = 12  # province_shock: months
    years: float = 5.0  # e_invoice_law: how many years the formalisation clock jumps
    share: float = 0.35  # cooperative_wave: the share of cooperatives in the wave
    seed: int = 0  # cooperative_wave: which cooperatives
    informality: float = 0.8  # cooperative_wave: less invoicing, more cash (channel log-odds)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown shift '{self.kind}'; one of {', '.join(KINDS)}")
        if self.month.day != 1:
            raise ValueError(f"a shift starts on the first day of a month, got {self.month}")
        unknown = [p for p in self.provinces if p not in v.PROVINCES]
        if unknown:
            raise ValueError(f"unknown province(s) {unknown}; the 34 provinces are in "
                             "data_contracts.vocabulary.PROVINCES")
        if not 0.0 < self.depth < 1.0 or not 0.0 < self.share < 1.0:
            raise ValueError("depth and share must be in (0, 1)")
        if self.length < 1:
            raise ValueError(f"length must be at least one month, got {self.length}")

    @classmethod
    def parse(cls, text: str) -> "Shift":
        """'kind:YYYY-MM', e.g. 'province_shock:2025-06'."""
        kind, sep, month = text.partition(":")
        if not sep:
            raise ValueError(f"a shift is written kind:YYYY-MM (e.g. province_shock:2025-06), got '{text}'")
        try:
            first = date.fromisoformat(f"{month}-01")
        except ValueError:
            raise ValueError(f"the shift's month must be YYYY-MM, got '{month}'") from None
        return cls(kind.strip(), first)


def month_index(shift: Shift, start: date, months: int) -> int:
    """The generator's month number of the shift's first month; ValueError outside the data."""
    t = (shift.month.year - start.year) * 12 + shift.month.month - start.month
    if not 12 < t < months - 13:
        raise ValueError(f"the shift's month {shift.month:%Y-%m} must fall after the first year of "
                         f"history and at least 13 months before the data ends (months 13 to "
                         f"{months - 14} of the {months} from {start:%Y-%m})")
    return t


def inject(shift: Shift | None, ent: pd.DataFrame, shocks: np.ndarray, cal, people: pd.DataFrame,
           coops: pd.DataFrame):
    """(ent, shocks, cal, people, coops) with the shift applied; the same objects when `shift` is
    None.

    `ent`: the generator's entities (members first, then cooperatives); `shocks`: (entity, month)
    sales factors; `cal`: its Calendar; `people`, `coops`: its member and cooperative frames."""
    if shift is None:
        return ent, shocks, cal, people, coops
    t = month_index(shift, cal.start, cal.months)
    if shift.kind == "province_shock":
        return ent, _province_shock(shift, t, shocks, people, coops), cal, people, coops
    if shift.kind == "e_invoice_law":
        clock = cal.years_since_2022.copy()
        clock[t:] += shift.years
        return ent, shocks, replace(cal, years_since_2022=clock), people, coops
    ent = _cooperative_wave(shift, t, ent, people, coops)
    people, coops = _cooperative_wave_frames(shift, t, people, coops, cal)
    return ent, shocks, cal, people, coops


def _province_shock(shift: Shift, t: int, shocks: np.ndarray, people: pd.DataFrame,
                    coops: pd.DataFrame) -> np.ndarray:
    codes = [v.PROVINCES.index(p) for p in shift.provinces]
    hit = np.isin(np.r_[people.province.to_numpy(), coops.province.to_numpy()], codes)
    months = shocks.shape[1]
    rel = np.arange(months) - t
    ramp = np.clip((rel + 1) / 2.0, 0.0, 1.0) * ((rel >= 0) & (rel < shift.length))
    out = shocks.copy()
    out[hit] *= (1.0 - shift.depth * ramp)[None, :].astype(out.dtype)
    return out


def _wave(shift: Shift, coops: pd.DataFrame) -> np.ndarray:
    """Which cooperatives are in the wave."""
    return np.random.default_rng([shift.seed, 16]).random(len(coops)) < shift.share


def _day_in_month(rng: np.random.Generator, cal, month: int, n: int) -> np.ndarray:
    return cal.month_start[month] + (rng.random(n) * cal.days[month]).astype(np.int64) * NS_PER_DAY


def _cooperative_wave(shift: Shift, t: int, ent: pd.DataFrame, people: pd.DataFrame,
                      coops: pd.DataFrame) -> pd.DataFrame:
    """The entities of the wave active on the platform from month t - 12, less formal."""
    wave = _wave(shift, coops)
    joined = np.r_[wave[people.coop.to_numpy()], wave]  # the cooperatives and their members
    out = ent.copy()
    out["active_from"] = np.where(joined, t - 12, out["active_from"].to_numpy())
    out["formal0"] = out["formal0"].to_numpy() - shift.informality * joined
    out["cash0"] = out["cash0"].to_numpy() + shift.informality * joined
    return out


def _cooperative_wave_frames(shift: Shift, t: int, people: pd.DataFrame, coops: pd.DataFrame, cal
                             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The wave's founding and joining dates: founded, and joined by their members, in month t - 13
    (so the contracts' dates agree with when they trade: members and cooperatives that join during
    the data trade from the month after)."""
    rng = np.random.default_rng([shift.seed, 17])
    wave = _wave(shift, coops)
    members = wave[people.coop.to_numpy()]
    coops, people = coops.copy(), people.copy()
    coops["founding"] = np.where(wave, _day_in_month(rng, cal, t - 13, len(coops)) // NS_PER_DAY
                                 * NS_PER_DAY, coops["founding"].to_numpy())
    coops["active_from"] = np.where(wave, t - 12, coops["active_from"].to_numpy())
    founded = coops["founding"].to_numpy()[people.coop.to_numpy()]
    day = np.maximum(_day_in_month(rng, cal, t - 13, len(people)) // NS_PER_DAY * NS_PER_DAY, founded)
    people["joined"] = np.where(members, day, people["joined"].to_numpy())
    people["active_from"] = np.where(members, t - 12, people["active_from"].to_numpy())
    return people, coops
