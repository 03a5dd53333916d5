"""When a subject has too little history for a score to mean anything.

We would rather say "not enough data yet" than invent a score: the service answers with what is
missing, and training leaves such applications out (the model is never asked about them).
"""
from __future__ import annotations

import pandas as pd

MIN_HISTORY_DAYS = 180  # at least six months on the platform before the as-of date
MIN_TRANSACTIONS_365D = 12  # about one a month over the last year


def has_enough_history(rows: pd.DataFrame) -> pd.Series:
    return (rows["history_days"] >= MIN_HISTORY_DAYS) & (
        rows["transactions_365d"] >= MIN_TRANSACTIONS_365D)


def what_is_missing(history_days: int, transactions_365d: int) -> list[dict[str, str]]:
    """Plain reasons, Vietnamese first, for a subject without enough history."""
    missing = []
    if history_days < MIN_HISTORY_DAYS:
        missing.append({
            "code": "HISTORY_TOO_SHORT",
            "vi": f"Mới có {history_days} ngày giao dịch trên nền tảng; cần ít nhất {MIN_HISTORY_DAYS} ngày.",
            "en": f"Only {history_days} days of transactions on the platform; at least "
                  f"{MIN_HISTORY_DAYS} are needed.",
        })
    if transactions_365d < MIN_TRANSACTIONS_365D:
        missing.append({
            "code": "TOO_FEW_TRANSACTIONS",
            "vi": f"Có {transactions_365d} giao dịch trong 12 tháng qua; cần ít nhất {MIN_TRANSACTIONS_365D}.",
            "en": f"{transactions_365d} transactions in the last 12 months; at least "
                  f"{MIN_TRANSACTIONS_365D} are needed.",
        })
    return missing
