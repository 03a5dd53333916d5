"""What can be wrong with a lender's table, said as advice: what was wrong and what to do.

Every refusal in `loan_book` is a `TableError` (a `ValueError`), so the CLI prints its message and
never a traceback. `LeakError` is the one refusal a lender may overrule (`--allow-leak COL`), so it
carries the column and its AUC for the caller to report.
"""
from __future__ import annotations


class TableError(ValueError):
    """The table cannot be used; the message says what is wrong and what to do."""


class LeakError(TableError):
    """A single column separates defaults from non-defaults almost perfectly: likely a leak.

    `column` is the column, `auc` its single-column AUC (0.5 to 1). The message names the column,
    the AUC and the option `--allow-leak COL` for a column the lender knows is genuinely available
    when the loan is granted.
    """

    def __init__(self, column: str, auc: float, message: str | None = None) -> None:
        self.column = column
        self.auc = float(auc)
        super().__init__(message or (
            f"Column {column!r} alone separates defaults from non-defaults (AUC {auc:.3f}): it is "
            "probably filled in after the outcome is known (a leak), and a model using it would fail "
            f"on new loans. Remove it or pass --ignore {column}; if it is really known when the loan "
            f"is granted, pass --allow-leak {column}."))

    def __reduce__(self):  # keep column and auc through pickling (multiprocessing, MLflow)
        return (type(self), (self.column, self.auc, str(self)))
