"""The training set: every labelled application with its features as of the application date,
when its label became known (`label_window_end`), and the data's end date.

A label (default within 12 months) is known only once its window has closed: a model deployed at
date T may learn only from applications with as_of + LABEL_MONTHS <= T (see evaluation.backtest).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from features import engine
from features.sufficiency import has_enough_history

OOT_MONTHS = 6  # the latest months: out-of-time validation
CALIBRATION_MONTHS = 3  # the months before them: early stopping and PD calibration
LABEL_MONTHS = 12  # the label window: default = 90+ days past due within 12 months


class NotEnoughData(Exception):
    """Too few labelled applications to train or validate; the message says what is missing."""


def application_spine(clean_dir: Path, subject: str, labelled_only: bool = True) -> pd.DataFrame:
    """The subject's accepted loan applications (labelled only, by default) as a feature spine:
    `spine_id` and `as_of` (the application date)."""
    path = Path(clean_dir) / "loan_applications.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `coopscore ingest` first so that "
                                "accepted loan applications exist.")
    apps = pd.read_parquet(path)
    apps = apps[apps["entity_type"] == subject]
    if labelled_only:
        apps = apps[apps["default_12m"].notna()]
    return apps.rename(columns={"application_id": "spine_id", "application_date": "as_of"})


def build_training_set(clean_dir: Path, subject: str) -> pd.DataFrame:
    """Applications x features as of each application date, with the label."""
    spine = application_spine(clean_dir, subject)
    if spine.empty:
        raise NotEnoughData(f"no labelled {subject} applications in {clean_dir}")
    con = engine.connect(clean_dir)
    history = engine.history_features(con, spine)
    rows = engine.application_features(history, spine, con)
    labels = spine[["spine_id", "default_12m"]].rename(columns={"default_12m": "label"})
    rows = rows.merge(labels, on="spine_id", validate="one_to_one")
    rows["label"] = rows["label"].astype(int)
    rows["enough_history"] = has_enough_history(rows)
    return rows.rename(columns={"spine_id": "application_id"})


def label_window_end(as_of: pd.Series) -> pd.Series:
    """The date each application's label becomes known: as_of + LABEL_MONTHS."""
    return as_of + pd.DateOffset(months=LABEL_MONTHS)


def data_end(clean_dir: Path) -> pd.Timestamp:
    """The day after the latest thing the platform recorded (a transaction, a repayment month or an
    application): a label whose window closed by then is known to a model trained today."""
    clean_dir = Path(clean_dir)
    sources = {"transactions.parquet": "max(ts) + INTERVAL 1 DAY",
               "repayments.parquet": "max(month) + INTERVAL 1 DAY",
               "loan_applications.parquet": "max(application_date) + INTERVAL 1 DAY"}
    found = []
    con = duckdb.connect()
    for name, expression in sources.items():
        path = clean_dir / name
        if path.exists():  # Parquet statistics answer max() without a full scan
            found.append(con.execute(f"SELECT {expression} FROM read_parquet(?)",
                                     [str(path)]).fetchall()[0][0])
    con.close()
    found = [f for f in found if f is not None]
    if not found:
        raise FileNotFoundError(f"no transactions, repayments or applications in {clean_dir}: run "
                                "`coopscore ingest` first.")
    return pd.Timestamp(max(found)).normalize()


def matured(rows: pd.DataFrame, by: pd.Timestamp) -> pd.DataFrame:
    """The rows whose label window closed by `by` (as_of + LABEL_MONTHS <= by)."""
    return rows[label_window_end(rows["as_of"]) <= by]


@dataclass
class Split:
    """Training, calibration and out-of-time applications, in that order in time."""

    train: pd.DataFrame
    calibration: pd.DataFrame
    oot: pd.DataFrame

    def describe(self) -> dict[str, object]:
        """Rows, defaults and date range of each part, as MLflow parameters."""
        out: dict[str, object] = {}
        for name in ("train", "calibration", "oot"):
            part = getattr(self, name)
            out[f"{name}_rows"] = len(part)
            out[f"{name}_defaults"] = int(part["label"].sum())
            out[f"{name}_from"] = str(part["as_of"].min().date())
            out[f"{name}_to"] = str(part["as_of"].max().date())
        return out


def out_of_time_split(rows: pd.DataFrame, min_defaults: int = 5) -> Split:
    """Split by application month: the latest OOT_MONTHS validate, the CALIBRATION_MONTHS before
    them calibrate, everything earlier trains. Never random: a bank scores next month's
    applicants with a model fitted on last year's."""
    month = rows["as_of"].dt.to_period("M")
    last = month.max()
    oot_start = last - (OOT_MONTHS - 1)
    cal_start = oot_start - CALIBRATION_MONTHS
    split = Split(train=rows[month < cal_start], calibration=rows[(month >= cal_start) & (month < oot_start)],
                  oot=rows[month >= oot_start])
    for name in ("train", "calibration", "oot"):
        part = getattr(split, name)
        defaults = int(part["label"].sum())
        if defaults < min_defaults or defaults == len(part):
            raise NotEnoughData(
                f"the {name} period has {len(part)} applications and {defaults} defaults; at least "
                f"{min_defaults} defaults and some non-defaults are needed. Generate more data "
                f"(coopscore generate --members ...) or wait for more outcomes.")
    return split
