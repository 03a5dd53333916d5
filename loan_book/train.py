"""train_loan_book: a lender's table to a registered model, every step of the package in order.

    read the table -> which value is a default -> every column's role -> refuse likely leaks
    -> out-of-time (or random) splits -> nested selection among the candidates
    -> refit the chosen one on every row -> model card -> MLflow run + registered model

The roles, the label coding and the selection are returned so the CLI can print them before
anything else; the run logs the same (roles.json, selection.csv, the card) for a validator.
"""
from __future__ import annotations

import re
import tempfile
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mlflow
import numpy as np
import pandas as pd

from loan_book import candidates as candidate_models
from loan_book.card import build_card
from loan_book.errors import TableError
from loan_book.labels import LabelCoding, encode_label, label_warnings
from loan_book.model import LoanBookModel, feature_importance, register
from loan_book.reading import read_table
from loan_book.reasons import ReasonTexts
from loan_book.roles import RoleOverrides, TableRoles, check_leaks, dates_of, infer_roles, prepare
from loan_book.selection import Selection, select
from loan_book.validation import random_splits, time_splits

EXPERIMENT = "coopscore-loan-book"
CV_CHOICES = ("auto", "time", "random")


@dataclass
class LoanBookResult:
    """What one training run produced: the registered model and the evidence behind it."""

    name: str  # the registered model is f"loan-book-{name}"
    version: str
    run_id: str
    coding: LabelCoding
    roles: TableRoles
    selection: Selection
    card: Path
    seconds: float
    allowed_leaks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def registered_name(self) -> str:
        return f"loan-book-{self.name}"


def model_name(path: Path, name: str | None = None) -> str:
    """A registry-safe name: the one given, else the file's stem, in ASCII lower case with hyphens
    ("Sổ vay HTX 2024.csv" -> "so-vay-htx-2024")."""
    text = (name or Path(path).stem).replace("đ", "d").replace("Đ", "D")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if not slug:
        raise TableError(f"cannot make a model name from {text!r}: give one with --name "
                         "(letters, digits and hyphens).")
    return slug[:60]


def _experiment(tracking_uri: str) -> str:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):  # artifacts beside the database, not in the cwd
        where = Path(tracking_uri[len("sqlite:///"):]).parent / "artifacts"
        where.mkdir(parents=True, exist_ok=True)
        location = where.resolve().as_uri()
    return mlflow.create_experiment(EXPERIMENT, artifact_location=location)


def _splits(cv: str, dates: pd.Series | None, y: np.ndarray, label_months: int, folds: int | None,
            repeats: int, seed: int):
    if cv not in CV_CHOICES:
        raise TableError(f"--cv must be one of {', '.join(CV_CHOICES)}, not {cv!r}.")
    if cv == "time" and dates is None:
        raise TableError("--cv time needs a date column (the application or disbursal date); the "
                         "table has none that was recognised: name it with --date COLUMN.")
    if cv == "random" or dates is None:
        return random_splits(y, folds=folds or 5, repeats=repeats, seed=seed)
    return time_splits(dates, y, folds=folds or 4, gap_months=label_months)


def train_loan_book(path: Path, target: str, tracking_uri: str, *, bad_value: str | None = None,
                    overrides: RoleOverrides = RoleOverrides(), cv: str = "auto",
                    label_months: int = 12, folds: int | None = None, repeats: int = 2,
                    name: str | None = None, reasons_file: Path | None = None, seed: int = 0,
                    progress: Callable[[str], None] = lambda _: None,
                    on_roles: Callable[[LabelCoding, TableRoles], None] = lambda *_: None) -> LoanBookResult:
    """Train, validate, choose, refit and register a model on a lender's own table.

    Parameters: `path` a CSV or Parquet file, one row per loan; `target` the outcome column;
    `bad_value` the target value meaning default (needed unless the coding is unambiguous);
    `overrides` the lender's column roles; `cv` "auto" (out of time when a date column exists),
    "time" or "random"; `label_months` the outcome window (the gap between training and test);
    `on_roles` is called with the label coding and the roles before any model is fitted (the CLI
    prints them there). Returns a LoanBookResult; TableError says what is wrong with the table."""
    started = time.perf_counter()
    name = model_name(path, name)
    progress(f"reading {Path(path).name}")
    frame = read_table(path)
    y, coding = encode_label(frame, target, bad_value)
    roles = infer_roles(frame, target, overrides)
    warnings = [*label_warnings(coding), *roles.warnings]
    on_roles(coding, roles)
    if not roles.features:
        raise TableError(f"no column is left to learn from: every column besides {target!r} is an "
                         "id, a date, empty or constant (see the roles above). Give the roles with "
                         "--numeric/--category if one was misread.")
    X, _ = prepare(frame, roles)  # no unseen levels: this table defines them
    allowed = check_leaks(X, y, roles)
    dates = dates_of(frame, roles)
    splits = _splits(cv, dates, y, label_months, folds, repeats, seed)
    progress(f"nested cross-validation on {len(splits)} folds")
    selection = select(X, y, dates, splits, seed=seed, progress=progress)

    progress(f"refitting the {selection.chosen} model on all {len(y):,} rows")
    chosen = candidate_models.make(selection.chosen, **selection.chosen_params).fit(X, y, dates)
    reasons = ReasonTexts.from_file(reasons_file, roles.features) if reasons_file else \
        ReasonTexts.derived(roles.features)
    model = LoanBookModel(name=name, roles=roles, coding=coding, candidate=chosen,
                          selection_summary=_summary(selection), reasons=reasons,
                          importance=feature_importance(chosen, X))

    experiment_id = _experiment(tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"loan-book-{name}") as run:
        mlflow.log_params({"source": Path(path).name, "target": target, "bad_value": str(coding.bad),
                           "label_coding": coding.how, "rows": coding.rows, "defaults": coding.defaults,
                           "validation": selection.validation, "chosen": selection.chosen,
                           "label_months": label_months, "seed": seed, "n_features": len(roles.features),
                           **{f"chosen.{k}": v for k, v in selection.chosen_params.items()}})
        mlflow.log_metrics({f"{c}_{m}": getattr(r, m) for c, r in selection.candidates.items()
                            for m in ("auc", "auc_low", "auc_high")})
        mlflow.log_metric("default_rate", coding.default_rate)
        mlflow.log_dict(roles.to_dict(), "roles.json")
        mlflow.log_text(_candidates_frame(selection).to_csv(index=False), "selection.csv")
        card = build_card(model, selection, coding, roles, _card_path(tracking_uri, name), X=X)
        mlflow.set_tags({"loan_book": name, "warnings": " | ".join(warnings)[:4000],
                         "allowed_leaks": ",".join(allowed)})
        version = register(model, tracking_uri, run.info.run_id, card=card)
        run_id = run.info.run_id
    return LoanBookResult(name, version, run_id, coding, roles, selection, card,
                          time.perf_counter() - started, allowed, warnings)


def _card_path(tracking_uri: str, name: str) -> Path:
    """Beside the MLflow database (var/reports/loan-book-NAME/ in a checkout), else a temporary
    directory: the card is logged to the run either way."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///"):]).parent.parent / "reports" / f"loan-book-{name}" / "model_card.html"
    return Path(tempfile.mkdtemp(prefix="coopscore-card-")) / "model_card.html"


def _summary(selection: Selection) -> dict:
    return {"chosen": selection.chosen, "chosen_params": selection.chosen_params,
            "validation": selection.validation,
            "candidates": {c: {"auc": r.auc, "auc_low": r.auc_low, "auc_high": r.auc_high}
                           for c, r in selection.candidates.items()}}


def _candidates_frame(selection: Selection) -> pd.DataFrame:
    """One row per candidate: AUC and its 95% interval (the nested procedure and the baseline too)."""
    return pd.DataFrame([{"candidate": c, "auc": r.auc, "auc_low": r.auc_low, "auc_high": r.auc_high,
                          "chosen": c == selection.chosen} for c, r in selection.candidates.items()])
