"""score_file: a new file of loans scored with a registered loan-book model.

    read the file (loan_book.reading, as in training) -> load loan-book-<name> (latest version
    unless one is named) -> LoanBookModel.score -> write CSV or Parquet

Every input row is one output row, in the same order: scored, or rejected with the reason. The
output format follows the output file's suffix, checked before anything is read or loaded, so a
typo costs nothing. CSV is written UTF-8 with a BOM so that Excel shows Vietnamese texts correctly.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from loan_book.errors import TableError
from loan_book.model import REJECTED, SCORED, UNSEEN, load, registered_name

OUTPUT_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class ScoreReport:
    """What score_file did: every input row is either scored or rejected (rows = scored + rejected)."""

    model: str  # the registered name, loan-book-<name>
    version: str
    rows: int
    scored: int
    rejected: int
    seconds: float
    output: Path
    unseen_rows: int = 0  # scored rows with a category level never seen in training (see notes)
    reasons_rejected: dict[str, int] = field(default_factory=dict)  # rejection reason -> rows


def score_file(name: str, input: Path, output: Path, tracking_uri: str,
               version: str | None = None) -> ScoreReport:
    """Score the CSV or Parquet file `input` with `loan-book-<name>` and write `output`.

    Returns a ScoreReport; TableError when the file cannot be read, lacks a column the model
    needs, the output suffix is neither .csv nor .parquet, or no such model is registered."""
    started = time.perf_counter()
    input, output = Path(input), Path(output)
    suffix = output.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise TableError(f"cannot write {output.name}: the output file must end in .csv or .parquet.")
    if output.resolve() == input.resolve():
        raise TableError(f"the output {output} is the input file: choose another name, so the "
                         "applications are not overwritten by their scores.")
    from loan_book.reading import read_table

    frame = read_table(input)
    model = load(name, tracking_uri, version)
    scored = model.score(frame)
    if len(scored) != len(frame):  # the promise of the output: one row per input row
        raise AssertionError(f"{len(frame)} rows in, {len(scored)} out")
    output.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        scored.to_csv(output, index=False, encoding="utf-8-sig")
    else:
        scored.to_parquet(output, index=False)
    rejected = scored[scored["status"] == REJECTED]
    return ScoreReport(
        model=registered_name(name), version=str(model.version), rows=len(scored),
        scored=int((scored["status"] == SCORED).sum()), rejected=len(rejected),
        seconds=time.perf_counter() - started, output=output,
        unseen_rows=int(scored["notes"].str.contains(UNSEEN, regex=False).sum()),
        reasons_rejected={str(k): int(v) for k, v in rejected["reason"].value_counts().items()})
