"""The training set: every labelled application with its features as of the application date,
and the out-of-time split (train on earlier months, calibrate on the next, validate on the latest).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features import engine
from features.sufficiency import has_enough_history

OOT_MONTHS = 6  # the latest months: out-of-time validation
CALIBRATION_MONTHS = 3  # the months before them: early stopping and PD calibration


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
