"""Scoring one application: features, model, explanation, reasons.

Kept apart from the HTTP layer so the CLI, the tests and the service all score the same way.
"""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import mlflow
import numpy as np
import pandas as pd

from coopscore.paths import Paths
from data_contracts import vocabulary as v
from features import engine, snapshot
from features.catalogue import FEATURES_BY_NAME
from features.reasons import REASONS
from features.sufficiency import has_enough_history, what_is_missing
from serving import schemas
from training import registry, scaling
from training.credit_model import CreditModel

MAX_REASONS = 4


class ApiError(Exception):
    """An answer other than 200, with a message that tells the client what to fix."""

    def __init__(self, status: int, error: str, message: str, fields: list[dict] | None = None):
        super().__init__(message)
        self.status, self.error, self.message, self.fields = status, error, message, fields or []


@dataclass
class LoadedModel:
    model: CreditModel
    info: schemas.ModelInfo


def load_champion(subject: str) -> LoadedModel | None:
    version = registry.champion_version(subject)
    if version is None:
        return None
    pyfunc = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
    return LoadedModel(pyfunc.unwrap_python_model(),
                       schemas.ModelInfo(name=version.name, version=str(version.version),
                                         run_id=version.run_id or ""))


class Scorer:
    def __init__(self, paths: Paths):
        registry.use_store(paths)
        self.models = {s: load_champion(s) for s in v.ENTITY_TYPES}
        if not any(self.models.values()):
            raise RuntimeError("no champion model in the MLflow registry at "
                               f"{paths.tracking_uri}: run `coopscore train` first.")
        self.snapshot_date = snapshot.snapshot_date(paths.features)
        snap = pd.read_parquet(paths.features / snapshot.SNAPSHOT_FILE)
        self.snapshot = snap.set_index(["entity_type", "entity_id"]).sort_index()
        members = pd.read_parquet(paths.clean / "members.parquet",
                                  columns=["member_id", "member_type"])
        self.member_type = dict(zip(members["member_id"], members["member_type"]))
        coops = pd.read_parquet(paths.clean / "cooperatives.parquet", columns=["cooperative_id"])
        self.cooperatives = set(coops["cooperative_id"])
        # one DuckDB with views over the accepted data; each serving thread gets its own cursor
        # (a DuckDB connection is not safe to share between threads, and opening one costs ~20 ms)
        self._duckdb = engine.connect(paths.clean)
        self._local = threading.local()

    @property
    def ready(self) -> bool:
        return any(self.models.values())

    # -- the one public call ------------------------------------------------------------------
    def score(self, request: schemas.ScoreRequest, request_id: str | None = None) -> schemas.ScoreResponse:
        request_id = request_id or uuid.uuid4().hex
        self._check_subject(request)
        self._check_limit(request)
        as_of = request.as_of_date or self.snapshot_date
        loaded = self.models.get(request.subject_type)
        if loaded is None:
            raise ApiError(503, "model_unavailable",
                           f"no champion model for {request.subject_type} subjects yet; "
                           "the model owner must train and promote one.")
        history = self._history(request.subject_type, request.subject_id, as_of)
        base = dict(request_id=request_id, subject_type=request.subject_type,
                    subject_id=request.subject_id, as_of_date=as_of, model=loaded.info)
        if not bool(has_enough_history(history).iloc[0]):
            missing = what_is_missing(int(history["history_days"].iloc[0]),
                                      int(history["transactions_365d"].iloc[0]))
            return schemas.ScoreResponse(status="insufficient_history",
                                         missing=[schemas.Missing(**m) for m in missing], **base)
        app = pd.DataFrame({"spine_id": history["spine_id"],
                            "requested_amount_vnd": [request.application.amount_vnd],
                            "term_months": [request.application.term_months]})
        row = engine.application_features(history, app, self._cursor())
        return schemas.ScoreResponse(status="scored", **self._decision(loaded.model, row), **base)

    # -- steps ----------------------------------------------------------------------------------
    def _check_subject(self, request: schemas.ScoreRequest) -> None:
        known = (request.subject_id in self.member_type if request.subject_type == "member"
                 else request.subject_id in self.cooperatives)
        if not known:
            raise ApiError(404, "unknown_subject",
                           f"no {request.subject_type} with id '{request.subject_id}' on the "
                           "platform; check the id and the subject_type.")
        if request.as_of_date is not None and request.as_of_date > self.snapshot_date:
            raise ApiError(422, "invalid_request",
                           f"as_of_date {request.as_of_date} is after the latest data "
                           f"({self.snapshot_date}); a score cannot use data that does not exist yet.",
                           [{"field": "as_of_date", "problem": f"must be on or before {self.snapshot_date}"}])

    def _check_limit(self, request: schemas.ScoreRequest) -> None:
        kind = (self.member_type[request.subject_id] if request.subject_type == "member"
                else "cooperative")
        limit = v.UNSECURED_LIMIT_VND[kind]
        if request.application.amount_vnd > limit:
            raise ApiError(422, "invalid_request",
                           f"amount_vnd {request.application.amount_vnd:,} is above the unsecured "
                           f"lending limit of {limit:,} VND for a {kind.replace('_', ' ')} "
                           "(Decree 156/2025/ND-CP).",
                           [{"field": "application.amount_vnd",
                             "problem": f"above the Decree 156/2025 limit of {limit} VND for {kind}"}])

    def _history(self, subject_type: str, subject_id: str, as_of: date) -> pd.DataFrame:
        if as_of == self.snapshot_date:
            row = self.snapshot.loc[[(subject_type, subject_id)]].reset_index()
            return row
        spine = pd.DataFrame({"spine_id": [f"{subject_type}:{subject_id}"],
                              "entity_type": [subject_type], "entity_id": [subject_id],
                              "as_of": [pd.Timestamp(as_of)]})
        return engine.history_features(self._cursor(), spine)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if not hasattr(self._local, "cursor"):
            self._local.cursor = self._duckdb.cursor()
        return self._local.cursor

    def _decision(self, model: CreditModel, row: pd.DataFrame) -> dict:
        explanation = model.explain(row)
        log_odds = float(explanation.log_odds[0])
        contributions = explanation.contributions[0]
        values = row[model.features].iloc[0]
        pd_value = float(scaling.pd_from_log_odds(log_odds))
        return {
            "pd": pd_value,
            "score": round(float(scaling.score_from_log_odds(log_odds)), 1),
            "grade": str(scaling.grade_from_pd(pd_value)),
            "explanation": schemas.Explanation(
                log_odds=log_odds, base_value=explanation.base_value,
                contributions=[schemas.Contribution(
                    feature=f, value=_finite(values[f]), contribution=float(c),
                    points=float(scaling.points_from_log_odds(c)))
                    for f, c in zip(model.features, contributions)]),
            "reasons": top_reasons(model.features, contributions, values),
        }


def top_reasons(features: list[str], contributions: np.ndarray, values: pd.Series,
                limit: int = MAX_REASONS) -> list[schemas.Reason]:
    """Group contributions by reason code, keep the codes that raise risk, most first."""
    by_code: dict[str, list[tuple[str, float]]] = {}
    for f, c in zip(features, contributions):
        by_code.setdefault(FEATURES_BY_NAME[f].reason, []).append((f, float(c)))
    ranked = sorted(((sum(c for _, c in items), code, items) for code, items in by_code.items()),
                    reverse=True)
    out = []
    for total, code, items in ranked:
        if total <= 0 or len(out) == limit:
            break
        lead = max(items, key=lambda fc: fc[1])[0]
        reason = REASONS[code]
        out.append(schemas.Reason(code=code, feature=lead, value=_finite(values[lead]),
                                  contribution=total, points=float(scaling.points_from_log_odds(total)),
                                  text_vi=reason.vi, text_en=reason.en))
    return out


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
