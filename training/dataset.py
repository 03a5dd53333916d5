"""The training set: every labelled application with its features as of the application date,
when its label became known (`label_window_end`), and the data's end date.

A label (default within 12 months) is known only once its window has closed: a model deployed at
date T may learn only from applications with as_of + LABEL_MONTHS <= T (see evaluation.backtest).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from features import engine
from features.engines import open_engine
from features.sufficiency import has_enough_history

OOT_MONTHS = 6  # the latest months: out-of-time validation
CALIBRATION_MONTHS = 3  # the months before them: early stopping and PD calibration
LABEL_MONTHS = 12  # the label window: default = 90+ days past due within 12 months
# The worst arrears within the label window, graded on the loan-classification days past due
# (Circular 11/2021, carried into Circular 31/2024): 0 never late, 1 from 1 day, 2 from 10 (group 2),
# 3 from 30, 4 from 60, 5 from 91 (group 3: the default). A richer outcome than default alone: a
# non-defaulter who was 60 days late says more about the borrower than one never late.
ARREARS_GRADE_DAYS = (1, 10, 30, 60, 91)
DEFAULT_GRADE = len(ARREARS_GRADE_DAYS)


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


def build_training_set(clean_dir: Path, subject: str, engine_name: str | None = None) -> pd.DataFrame:
    """Applications x features as of each application date, with the label; stage 1 on the engine
    named (features.engines: duckdb or spark; default the settings')."""
    spine = application_spine(clean_dir, subject)
    if spine.empty:
        raise NotEnoughData(f"no labelled {subject} applications in {clean_dir}")
    return _features_and_outcomes(clean_dir, spine, engine_name)


DECISION_COLUMNS = ("decision", "policy_score")  # a lender's recorded decision (data_contracts)


def build_applicant_set(clean_dir: Path, subject: str, engine_name: str | None = None) -> pd.DataFrame:
    """Every application a lender decided on, as build_training_set's rows: the labelled (funded)
    ones with their label and arrears grade, the declined ones with `label` and `arrears_grade`
    NaN; `decision` and `policy_score` as recorded (NaN where the feed does not say). The
    population reject inference learns from (training.reject_inference)."""
    spine = application_spine(clean_dir, subject, labelled_only=False)
    for column in DECISION_COLUMNS:
        if column not in spine:
            spine[column] = np.nan
    spine = spine[spine["default_12m"].notna() | (spine["decision"] == "declined")]
    if spine.empty:
        raise NotEnoughData(f"no labelled or declined {subject} applications in {clean_dir}")
    rows = _features_and_outcomes(clean_dir, spine, engine_name)
    decisions = spine[["spine_id", *DECISION_COLUMNS]].rename(columns={"spine_id": "application_id"})
    return rows.merge(decisions, on="application_id", how="left", validate="one_to_one")


def _features_and_outcomes(clean_dir: Path, spine: pd.DataFrame,
                           engine_name: str | None = None) -> pd.DataFrame:
    """Features as of each spine row's date (stage 1 on the engine named, features.engines), its
    label (NaN when unknown: int when every row has one) and its arrears grade."""
    history = open_engine(clean_dir, engine_name).history_features(spine)
    rows = engine.application_features(history, spine)
    labels = spine[["spine_id", "default_12m"]].rename(columns={"default_12m": "label"})
    rows = rows.merge(labels, on="spine_id", validate="one_to_one")
    if rows["label"].notna().all():
        rows["label"] = rows["label"].astype(int)
    rows["enough_history"] = has_enough_history(rows)
    rows = rows.rename(columns={"spine_id": "application_id"})
    labelled = rows[rows["label"].notna()]
    outcome = arrears_grades(clean_dir, labelled[["application_id", "as_of", "label"]])
    clash = sorted(set(outcome.columns) & set(rows.columns) - {"application_id"})
    if clash:  # an outcome column must never shadow a feature of the same name
        raise RuntimeError(f"outcome columns {clash} clash with feature names")
    return rows.merge(outcome, on="application_id", how="left", validate="one_to_one")


def arrears_grades(clean_dir: Path, applications: pd.DataFrame) -> pd.DataFrame:
    """`application_id`, `outcome_worst_days_past_due` and `arrears_grade` (0-5, ARREARS_GRADE_DAYS) of each
    application over its label window [as_of, as_of + LABEL_MONTHS), from the monthly repayments of
    the loan it funded. Known exactly when the label is (the same window).

    The grade agrees with the label: a default is grade 5 whatever the monthly rows say (the label is
    the recorded outcome), a non-default at most 4. An application whose loan has no repayment row in
    the window gets `outcome_worst_days_past_due` NaN and the grade its label implies (5 or 0), and
    `arrears_from_label` True so that a run can count them."""
    clean_dir = Path(clean_dir)
    con = duckdb.connect()
    con.register("apps", applications[["application_id", "as_of"]])
    worst = con.execute(f"""
        SELECT a.application_id, max(r.days_past_due) AS outcome_worst_days_past_due
        FROM apps a
        JOIN read_parquet(?) l ON l.application_id = a.application_id
        JOIN read_parquet(?) r ON r.loan_id = l.loan_id
        WHERE r.month >= a.as_of AND r.month < a.as_of + INTERVAL {LABEL_MONTHS} MONTH
        GROUP BY a.application_id""", [str(clean_dir / "loans.parquet"),
                                       str(clean_dir / "repayments.parquet")]).df()
    con.close()
    out = applications[["application_id", "label"]].merge(worst, on="application_id", how="left")
    days = out["outcome_worst_days_past_due"].to_numpy(dtype=float)
    grade = np.searchsorted(np.asarray(ARREARS_GRADE_DAYS), np.nan_to_num(days, nan=0.0), side="right")
    label = out["label"].to_numpy(dtype=int)
    grade = np.where(label == 1, DEFAULT_GRADE, np.minimum(grade, DEFAULT_GRADE - 1))
    out["arrears_grade"] = grade.astype(float)
    out["arrears_from_label"] = np.isnan(days)
    return out.drop(columns=["label"])


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
