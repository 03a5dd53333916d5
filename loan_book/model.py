"""LoanBookModel: what a lender's own model is once trained, and how it lives in the MLflow registry.

The model is the table's column roles (which columns, read how), its label coding, the chosen
candidate refitted on every row, and the reason texts. `score` takes a raw table, read as it came
(strings, as loan_book.reading gives them), and returns one row per input row, never fewer:

    row, [the id columns], status (scored | rejected), reason (why rejected), pd, score, grade,
    log_odds, reason_1 .. reason_3 (code = column name, _vi, _en, _points), notes

A row is rejected, not dropped, when one of its numeric cells is neither a number nor a
missing-value token; a category level never seen in training is scored as missing and said so in
`notes`; a feature column absent from the file stops the whole file (TableError naming it).
The reasons are the features whose contributions raise the row's log-odds most, each worth at
least MIN_REASON_POINTS score points (`_points` is what it costs on the score scale); `row` counts
the file's data rows from 1, and the table's id columns are copied through to join the scores back.

Registered as an MLflow pyfunc under `loan-book-<name>`: the LoanBookModel pickled as an artifact,
with roles.json, model.json (label, reasons, selection), the points table or the features' mean
absolute contributions, and the model card. Loading it needs coopscore installed (the pickle holds
loan_book's classes), which is where `coopscore score --model NAME` runs.
"""
from __future__ import annotations

import json
import pickle
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from loan_book.errors import TableError
from loan_book.labels import LabelCoding
from loan_book.reasons import ReasonTexts
from loan_book.reading import is_missing
from loan_book.roles import TableRoles, prepare
from training import scaling

REGISTERED_PREFIX = "loan-book-"
TOP_REASONS = 3
# A contribution worth less than half a point is noise, not a reason a lender can act on.
MIN_REASON_POINTS = 0.5
SCORED, REJECTED = "scored", "rejected"
UNSEEN = "was never seen in training: scored as missing"
NO_REASON = (f"no reason given: nothing in this loan raises its risk above the book's average "
             f"borrower by {MIN_REASON_POINTS} points or more")
ARTIFACT_PATH = "model"
OUTPUT_COLUMNS = ("row", "status", "reason", "pd", "score", "log_odds", "grade", "notes",
                  *(f"reason_{k}{s}" for k in range(1, TOP_REASONS + 1)
                    for s in ("", "_vi", "_en", "_points")))


def registered_name(name: str) -> str:
    """The registered model's name of loan book `name` (`loan-book-<name>`)."""
    return f"{REGISTERED_PREFIX}{name}"


class ModelNotFound(TableError):
    """No registered loan-book model (or version) by that name; the message lists what exists."""


@dataclass
class LoanBookModel:
    """What is registered: roles, label coding, the chosen candidate refitted on all rows, reasons."""

    name: str
    roles: TableRoles
    coding: LabelCoding
    candidate: object  # a loan_book.candidates object: log_odds(X), contributions(X)
    selection_summary: dict
    reasons: ReasonTexts
    importance: pd.DataFrame | None = None  # feature_importance() on the training rows, for the card
    version: str | None = None  # the registry version, set by load()

    # ------------------------------------------------------------------------ scoring
    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One output row per input row: PD, score, grade and the top reasons, or why it was rejected.

        TableError when a feature column is missing from `frame` (every row would fail alike)."""
        features = self.roles.features
        absent = [c for c in features if c not in frame.columns]
        if absent:
            raise TableError(f"the file has no column {', '.join(repr(c) for c in absent)}, which the "
                             f"model {registered_name(self.name)} needs. Add the column(s) with these "
                             "exact names (leave the cells empty where a value is unknown); the model "
                             f"reads {', '.join(features)}.")
        frame = frame.reset_index(drop=True)
        # prepare reads every cell the way training did; a numeric cell it could not read (and
        # that was not a missing-value token) rejects its row rather than becoming a silent NaN.
        X_all, _ = prepare(frame, self.roles)
        problems = _unreadable_numbers(frame, X_all, self.roles.numeric)
        ok = np.array([not p for p in problems], dtype=bool)
        out = _empty_output(frame, self.roles, ok, problems)
        if not ok.any():
            return out
        where = np.flatnonzero(ok)
        X = X_all.loc[ok].reset_index(drop=True)
        notes = np.array(_unseen_notes(frame, X_all, self.roles.category), dtype=object)[ok]

        contributions = self.candidate.contributions(X)
        log_odds = np.asarray(self.candidate.log_odds(X), dtype=float)
        pd_values = scaling.pd_from_log_odds(log_odds)
        out.loc[where, "log_odds"] = log_odds
        out.loc[where, "pd"] = pd_values
        out.loc[where, "score"] = np.round(scaling.score_from_log_odds(log_odds), 1)
        out.loc[where, "grade"] = scaling.grade_from_pd(pd_values)
        features_only = contributions[[c for c in contributions.columns if c != "base"]]
        vi = {c: self.reasons.vi(c) for c in features_only.columns}
        en = {c: self.reasons.en(c) for c in features_only.columns}
        vi[""] = en[""] = ""
        for k, (codes, values) in enumerate(_top_reasons(features_only), start=1):
            out.loc[where, f"reason_{k}"] = codes
            out.loc[where, f"reason_{k}_vi"] = [vi[c] for c in codes]
            out.loc[where, f"reason_{k}_en"] = [en[c] for c in codes]
            out.loc[where, f"reason_{k}_points"] = np.round(scaling.points_from_log_odds(values), 1)
            if k == 1:  # an empty reason column says why, so it is never mistaken for a gap
                notes = [_join(note, NO_REASON if code == "" else "") for note, code in zip(notes, codes)]
        out.loc[where, "notes"] = notes
        return out

    def explain(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Each row's log-odds split into one contribution per feature plus "base" (rows sum to the
        log-odds `score` reports). The rows must be readable: use `score` for a raw file."""
        X, _ = prepare(frame.reset_index(drop=True), self.roles)
        return self.candidate.contributions(X)


def feature_importance(candidate, X: pd.DataFrame) -> pd.DataFrame:
    """feature, mean |contribution| to the log-odds and in points, on the rows of X, largest first."""
    contributions = candidate.contributions(X)
    mean_abs = contributions.drop(columns="base").abs().mean()
    out = pd.DataFrame({"feature": mean_abs.index, "mean_abs_contribution": mean_abs.to_numpy(),
                        "mean_abs_points": np.abs(scaling.points_from_log_odds(mean_abs.to_numpy()))})
    return out.sort_values("mean_abs_contribution", ascending=False, ignore_index=True)


def _is_missing(values: pd.Series) -> np.ndarray:
    """Cells that mean "unknown" in a numeric column: empty, NaN, or a missing-value token."""
    return is_missing(values).to_numpy(dtype=bool)


def _is_empty(values: pd.Series) -> np.ndarray:
    """Cells with no value at all (in a category column a token such as "NA" is a level)."""
    return (values.isna() | (values.astype(str).str.strip() == "")).to_numpy(dtype=bool)


def _unreadable_numbers(raw: pd.DataFrame, X: pd.DataFrame, numeric: list[str]) -> list[list[str]]:
    """Per row, why it cannot be scored: numeric cells that are not missing-value tokens yet were
    not read as a finite number."""
    problems: list[list[str]] = [[] for _ in range(len(raw))]
    for column in numeric:
        unread = ~_is_missing(raw[column]) & ~np.isfinite(X[column].to_numpy(dtype=float))
        for i in np.flatnonzero(unread):
            problems[i].append(f"«{column}» is {raw[column].iat[i]!r}, not a number: write the "
                               "number (or leave the cell empty if it is unknown)")
    return problems


def _empty_output(frame: pd.DataFrame, roles: TableRoles, ok: np.ndarray,
                  problems: list[list[str]]) -> pd.DataFrame:
    """The output frame before scoring: row numbers, ids, status and rejections; scores empty."""
    out = pd.DataFrame({"row": np.arange(1, len(frame) + 1)})
    for column in roles.roles:  # the lender's ids travel along, to join the scores back
        if column.role == "id" and column.column in frame.columns:
            label = column.column if column.column not in OUTPUT_COLUMNS else f"{column.column} (input)"
            out[label] = frame[column.column].to_numpy()
    out["status"] = np.where(ok, SCORED, REJECTED)
    out["reason"] = ["; ".join(p) for p in problems]
    for column in ("pd", "score", "log_odds"):
        out[column] = np.nan
    out["grade"] = ""
    for k in range(1, TOP_REASONS + 1):
        out[f"reason_{k}"] = out[f"reason_{k}_vi"] = out[f"reason_{k}_en"] = ""
        out[f"reason_{k}_points"] = np.nan
    out["notes"] = ""
    return out


def _unseen_notes(raw: pd.DataFrame, X: pd.DataFrame, categories: list[str]) -> list[str]:
    """Per row, the category levels never seen in training (scored as missing, and said so)."""
    notes: list[list[str]] = [[] for _ in range(len(raw))]
    for column in categories:
        unseen = ~_is_empty(raw[column]) & X[column].isna().to_numpy()
        for i in np.flatnonzero(unseen):
            notes[i].append(f"«{column}» = {str(raw[column].iat[i])!r} {UNSEEN}")
    return ["; ".join(n) for n in notes]


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _top_reasons(contributions: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each rank 1..TOP_REASONS, (code, contribution) per row: the feature raising the row's
    risk most at that rank, or ("", NaN) when fewer features raise it by MIN_REASON_POINTS or
    more (a reason is only given for a contribution that costs points)."""
    values = contributions.to_numpy(dtype=float)
    names = np.array(contributions.columns, dtype=object)
    order = np.argsort(-values, axis=1, kind="stable")
    rows = np.arange(len(values))
    ranks = []
    for k in range(TOP_REASONS):
        if k >= values.shape[1]:  # fewer features than reasons
            ranks.append((np.full(len(values), "", dtype=object), np.full(len(values), np.nan)))
            continue
        value = values[rows, order[:, k]]
        positive = value * scaling.FACTOR >= MIN_REASON_POINTS
        ranks.append((np.where(positive, names[order[:, k]], ""), np.where(positive, value, np.nan)))
    return ranks


# ---------------------------------------------------------------------------- MLflow


class LoanBookPyfunc(mlflow.pyfunc.PythonModel):
    """The MLflow pyfunc face of a LoanBookModel (pickled in the `model` artifact)."""

    def load_context(self, context) -> None:
        """Unpickle the LoanBookModel (MLflow calls this on load)."""
        with open(context.artifacts["model"], "rb") as fh:
            self.model: LoanBookModel = pickle.load(fh)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """LoanBookModel.score of the raw table `model_input` (a DataFrame)."""
        return self.model.score(model_input)


def _requirements() -> list[str]:
    """Pinned versions of what unpickling and scoring need (written, so MLflow does not guess)."""
    out = []
    for name in ("mlflow", "pandas", "numpy", "scikit-learn", "lightgbm", "optbinning"):
        try:
            out.append(f"{name}=={package_version(name)}")
        except PackageNotFoundError:
            continue
    return out


def _jsonable(value):
    """`value` made JSON-safe: numpy scalars as numbers, anything else unknown as its text."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def explanation_table(model: LoanBookModel) -> pd.DataFrame | None:
    """The scorecard's points table, else the features' mean absolute contributions (if computed)."""
    if hasattr(model.candidate, "points_table"):
        return model.candidate.points_table()
    return model.importance


def register(model: LoanBookModel, tracking_uri: str, run_id: str, card: Path | None = None) -> str:
    """Log `model` as a pyfunc to run `run_id`, register it as `loan-book-<name>`; return the version.

    Artifacts: the pickled model, roles.json (TableRoles.to_dict), model.json (label coding, reasons,
    selection summary, score scale), explanation.csv (points table or mean |contribution|) and the
    model card `card` when given."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        artifacts = {"model": tmp / "loan_book_model.pkl", "roles": tmp / "roles.json",
                     "meta": tmp / "model.json"}
        with open(artifacts["model"], "wb") as fh:
            pickle.dump(model, fh)
        artifacts["roles"].write_text(json.dumps(model.roles.to_dict(), ensure_ascii=False, indent=2),
                                      encoding="utf-8")
        artifacts["meta"].write_text(json.dumps(_jsonable({
            "name": model.name, "registered_name": registered_name(model.name),
            "label": model.coding.to_dict(), "default_rate": model.coding.default_rate,
            "features": model.roles.features, "reasons": model.reasons.to_dict(),
            "selection": model.selection_summary,
            "scaling": {"base_score": scaling.BASE_SCORE, "base_odds": scaling.BASE_ODDS,
                        "pdo": scaling.PDO},
        }), ensure_ascii=False, indent=2), encoding="utf-8")
        table = explanation_table(model)
        if table is not None:
            artifacts["explanation"] = tmp / "explanation.csv"
            table.to_csv(artifacts["explanation"], index=False)
        if card is not None:
            artifacts["card"] = Path(card)
        active = mlflow.active_run()
        # train_loan_book registers from inside its own run; anywhere else, reopen the run.
        run = nullcontext() if active is not None and active.info.run_id == run_id else \
            mlflow.start_run(run_id=run_id, nested=active is not None)
        with run:
            info = mlflow.pyfunc.log_model(
                name=ARTIFACT_PATH, python_model=LoanBookPyfunc(),
                artifacts={k: str(v) for k, v in artifacts.items()},
                pip_requirements=_requirements(),
                registered_model_name=registered_name(model.name),
            )
    return str(info.registered_model_version)


def versions(name: str, tracking_uri: str) -> list[str]:
    """The registered versions of loan book `name`, oldest first (empty if none)."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found = client.search_model_versions(f"name = '{registered_name(name)}'")
    return [str(v) for v in sorted(int(m.version) for m in found)]


def load(name: str, tracking_uri: str, version: str | None = None) -> LoanBookModel:
    """The registered loan-book model `name` (the latest version unless `version` is given)."""
    known = versions(name, tracking_uri)
    if not known:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        others = sorted(m.name[len(REGISTERED_PREFIX):] for m in client.search_registered_models()
                        if m.name.startswith(REGISTERED_PREFIX))
        raise ModelNotFound(f"no loan-book model named {name!r} in {tracking_uri}. "
                            + (f"Models there: {', '.join(others)}. " if others else "")
                            + "Train one with `coopscore train --table FILE --target COLUMN --name "
                            f"{name}`.")
    chosen = known[-1] if version is None else str(version)
    if chosen not in known:
        raise ModelNotFound(f"{registered_name(name)} has no version {version}: its versions are "
                            f"{', '.join(known)}.")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{registered_name(name)}/{chosen}")
    model: LoanBookModel = pyfunc.unwrap_python_model().model
    model.version = chosen
    return model
