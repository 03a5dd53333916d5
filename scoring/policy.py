"""What a valid application is, written once: every door (API, batch endpoint, offline file scoring,
console decisions) asks these functions, so a rule cannot drift between them.

The rules work on numpy arrays (one element for a single request), because offline scoring checks
millions of rows at once and must give the same verdict, in the same words, as the API.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np

from data_contracts import vocabulary as v
from scoring.errors import InvalidApplication, field

SUBJECT_TYPES = tuple(v.ENTITY_TYPES)
# Platform ids: TV0000001 (members), HTX000001 (cooperatives); letters, digits, - and _ only.
SUBJECT_ID_MAX_LENGTH = 32
SUBJECT_ID_PATTERN = rf"^[A-Za-z0-9_-]{{1,{SUBJECT_ID_MAX_LENGTH}}}$"
TERM_MONTHS = (1, 120)
EARLIEST_AS_OF = date(2000, 1, 1)  # no e-cooperative platform data exists before this
# Decree 156/2025/ND-CP: unsecured agricultural and rural lending limits by legal form
LEGAL_LIMIT_VND: dict[str, int] = dict(v.UNSECURED_LIMIT_VND)


def legal_limit(kind: np.ndarray) -> np.ndarray:
    """The Decree 156 unsecured limit (float VND) for each legal form; NaN for an unknown form."""
    return np.array([LEGAL_LIMIT_VND.get(k, np.nan) if isinstance(k, str) else np.nan for k in kind],
                    dtype=float)


def over_legal_limit(kind: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """True where the amount is above the Decree 156 limit of the subject's legal form."""
    return np.asarray(amount, dtype=float) > legal_limit(kind)


def legal_limit_message(amount: int, kind: str) -> str:
    """Why an amount is refused, in the words every door uses."""
    limit = LEGAL_LIMIT_VND[kind]
    return (f"amount_vnd {int(amount):,} is above the unsecured lending limit of {limit:,} VND for a "
            f"{kind.replace('_', ' ')} (Decree 156/2025/ND-CP).")


def legal_limit_refusal(amount: int, kind: str) -> InvalidApplication:
    """The typed refusal of an amount above the legal limit, naming the field."""
    return InvalidApplication(legal_limit_message(amount, kind), [field(
        "application.amount_vnd", f"above the Decree 156/2025 limit of {LEGAL_LIMIT_VND[kind]} VND "
        f"for {kind}")])


def as_of_refusal(as_of: date, snapshot_date: date) -> InvalidApplication | None:
    """A score cannot use data that does not exist yet: as_of_date after the latest data is refused."""
    if as_of <= snapshot_date:
        return None
    return InvalidApplication(
        f"as_of_date {as_of} is after the latest data ({snapshot_date}); a score cannot use data "
        "that does not exist yet.", [field("as_of_date", f"must be on or before {snapshot_date}")])


def batch_refusal(as_of_dates: Sequence[date | None], max_dates: int) -> InvalidApplication | None:
    """A batch costs what it computes: every distinct as_of_date other than the latest data is a
    point-in-time history query over the platform's transactions (~65 ms each at the demo size),
    so a batch may ask for at most `max_dates` distinct dates."""
    distinct = {d for d in as_of_dates if d is not None}
    if len(distinct) <= max_dates:
        return None
    return InvalidApplication(
        f"this batch asks for {len(distinct)} distinct as_of_date values; at most {max_dates} are "
        "allowed per call, because each date is computed on its own. Split the batch by date, or "
        "leave as_of_date out to score on the latest data.",
        [field("applications[].as_of_date", f"{len(distinct)} distinct dates, at most {max_dates}")])
