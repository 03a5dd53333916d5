"""Scoring applications: features, model, explanation, reasons.

Kept apart from the HTTP layer so the CLI, the tests, the service and the offline batch scorer all
score the same way. The hot path is numpy only: the snapshot is one float64 matrix per subject
type with a dict id -> row, the application features are the catalogue's on-demand numpy
functions, and one LightGBM call explains every row of a batch. Requests for another as_of_date
compute the history on demand on DuckDB (slower) and then join the same path.
"""
from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import duckdb
import mlflow
import numpy as np
import pandas as pd

from settings import Paths
from data_contracts import vocabulary as v
from features import engine, on_demand, snapshot
from features.catalogue import FEATURES_BY_NAME
from features.reasons import REASONS
from features.sufficiency import MIN_HISTORY_DAYS, MIN_TRANSACTIONS_365D, what_is_missing
from scoring import policy, schemas
from scoring.errors import ApiError, ModelUnavailable, UnknownSubject  # noqa: F401 (ApiError re-exported)
from training import registry, scaling
from training.credit_model import CreditModel, Explanation

MAX_REASONS = 4
# Below this many rows LightGBM runs on one thread: OpenMP start-up costs more than it saves for
# a single request, and the service already runs requests in parallel.
SINGLE_THREAD_ROWS = 2_000


@dataclass
class LoadedModel:
    model: CreditModel
    info: schemas.ModelInfo


def load_champion(subject: str) -> LoadedModel | None:
    version = registry.champion_version(subject)
    if version is None:
        return None
    return load_version(version.name, str(version.version), version.run_id or "")


def load_version(name: str, version: str, run_id: str = "") -> LoadedModel:
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return LoadedModel(pyfunc.unwrap_python_model(),
                       schemas.ModelInfo(name=name, version=str(version), run_id=run_id))


def explain_matrix(model: CreditModel, x: np.ndarray, num_threads: int | None = None,
                   contrib_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> Explanation:
    """`CreditModel.explain` on a matrix already in `model.features` order (no DataFrame: the
    per-request cost of building one was most of a request). Same arithmetic; tests check that
    it equals `model.explain` bit for bit. `contrib_fn` replaces LightGBM's pred_contrib (the
    offline scorer passes its table-based TreeSHAP, checked against LightGBM first)."""
    if contrib_fn is not None:
        contrib = contrib_fn(x)
    else:
        threads = num_threads if num_threads is not None else (1 if len(x) < SINGLE_THREAD_ROWS else 0)
        contrib = model.booster.predict(x, pred_contrib=True, num_threads=threads)
    base_margin = float(contrib[0, -1]) if len(contrib) else 0.0
    contributions = model.slope * contrib[:, :-1]
    base_value = model.slope * base_margin + model.intercept
    log_odds = base_value + contributions.sum(axis=1)
    return Explanation(log_odds=log_odds, base_value=base_value, contributions=contributions)


@dataclass
class Decisions:
    """Column-wise result of scoring n rows with enough history (what `Scorer.decide` returns)."""
    x: np.ndarray  # (n, n_features) model inputs, model.features order
    explanation: Explanation
    pd: np.ndarray
    score: np.ndarray  # unrounded
    grade: np.ndarray
    reason_codes: list[str]  # the reason codes, in tie-break order (code descending)
    reason_idx: np.ndarray  # (n, MAX_REASONS) index into reason_codes, -1 when fewer reasons
    reason_total: np.ndarray  # (n, MAX_REASONS) log-odds of each reason
    reason_lead: np.ndarray  # (n, MAX_REASONS) feature index of the reason's leading feature


class _Plan:
    """How to build one model's input matrix from the snapshot columns, and its reason groups."""

    def __init__(self, loaded: LoadedModel, columns: list[str]):
        self.loaded = loaded
        self.model = loaded.model
        self.features = list(self.model.features)
        col = {c: i for i, c in enumerate(columns)}
        self.hist_pos = np.array([i for i, f in enumerate(self.features) if f in col], dtype=int)
        self.hist_src = np.array([col[f] for f in self.features if f in col], dtype=int)
        self.app_pos = {f: i for i, f in enumerate(self.features) if f not in col}
        unknown = [f for f in self.app_pos if f not in engine.APPLICATION_FEATURES]
        if unknown:
            raise RuntimeError(f"the model needs features the snapshot does not have: {unknown}; "
                               "rebuild the snapshot (`coopscore features`).")
        self.inputs = {c: col[c] for c in on_demand.HISTORY_INPUTS}
        groups: dict[str, list[int]] = {}
        for i, f in enumerate(self.features):
            groups.setdefault(FEATURES_BY_NAME[f].reason, []).append(i)
        # ties on the total are broken by code descending, as sorted(..., reverse=True) did
        self.codes = sorted(groups, reverse=True)
        self.members = [np.array(groups[c], dtype=int) for c in self.codes]
        self.reason_objs = [REASONS[c] for c in self.codes]

    def matrix(self, history: np.ndarray, amount: np.ndarray, term: np.ndarray) -> np.ndarray:
        x = np.empty((len(history), len(self.features)), dtype=np.float64)
        x[:, self.hist_pos] = history[:, self.hist_src]
        if self.app_pos:
            app = engine.on_demand_features({c: history[:, i] for c, i in self.inputs.items()},
                                            amount, term)
            for f, i in self.app_pos.items():
                x[:, i] = app[f]
        return x


def _load_at_start(subject: str) -> LoadedModel | None:
    """A champion that cannot be loaded stops the start with advice, not a stack trace."""
    try:
        return load_champion(subject)
    except Exception as exc:
        version = registry.champion_version(subject)
        raise RuntimeError(
            f"the {subject} champion (version {version.version if version else '?'}) cannot be "
            f"loaded: {exc}. Promote a working version (`coopscore promote --subject {subject} "
            f"--version N`) or roll back (`coopscore rollback --subject {subject}`).") from None


class Champions:
    """The champion models and the columnar scoring core, without the snapshot: the plans, the
    history columns they read, the snapshot date applications are checked against, the
    minimum-history rule and `decide`. What a Spark executor needs to score rows whose history
    the job joined to them (serving.spark_batch, ranking.spark_rank): it pickles (no DuckDB, no
    snapshot matrix), so the driver loads the registered versions once and ships them."""

    def __init__(self, models: dict[str, LoadedModel | None], columns: Sequence[str],
                 snapshot_date: date):
        self.models = dict(models)
        self.columns = list(columns)
        self._col = {c: i for i, c in enumerate(self.columns)}
        self.snapshot_date = snapshot_date
        self.plans = {s: _Plan(m, self.columns) for s, m in self.models.items() if m is not None}

    @classmethod
    def load(cls, paths: Paths, columns: Sequence[str], snapshot_date: date) -> "Champions":
        """The registry's champions over history `columns`; RuntimeError (with advice) when there
        is none or one cannot be loaded."""
        return cls(_load_champions(paths), columns, snapshot_date)

    @property
    def ready(self) -> bool:
        return any(self.models.values())

    def served_version(self, subject: str) -> str | None:
        loaded = self.models.get(subject)
        return loaded.info.version if loaded is not None else None

    # -- columnar core, shared with serving.batch ---------------------------------------------
    def decide(self, subject: str, history: np.ndarray, amount: np.ndarray, term: np.ndarray,
               num_threads: int | None = None,
               contrib_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> Decisions:
        """Score rows of `history` (columns `self.columns`) that have enough history."""
        return self._decide(self._plan(subject), history, amount, term, num_threads, contrib_fn)

    def _decide(self, plan: _Plan, history: np.ndarray, amount, term, num_threads: int | None = None,
                contrib_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> Decisions:
        x = plan.matrix(history, np.asarray(amount, dtype=float), np.asarray(term, dtype=float))
        exp = explain_matrix(plan.model, x, num_threads, contrib_fn)
        pd_values = scaling.pd_from_log_odds(exp.log_odds)
        c = exp.contributions
        n, k = len(x), len(plan.codes)
        totals = np.empty((n, k))
        lead = np.empty((n, k), dtype=int)
        for j, members in enumerate(plan.members):
            t = c[:, members[0]].copy()
            for m in members[1:]:  # in feature order, as Python's sum() added them
                t += c[:, m]
            totals[:, j] = t
            lead[:, j] = members[np.argmax(c[:, members], axis=1)]
        order = np.argsort(-totals, axis=1, kind="stable")[:, :MAX_REASONS]
        top = np.take_along_axis(totals, order, axis=1)
        return Decisions(x=x, explanation=exp, pd=pd_values,
                         score=scaling.score_from_log_odds(exp.log_odds),
                         grade=scaling.grade_from_pd(pd_values), reason_codes=plan.codes,
                         reason_idx=np.where(top > 0, order, -1), reason_total=top,
                         reason_lead=np.take_along_axis(lead, order, axis=1))

    def enough_history(self, history: np.ndarray) -> np.ndarray:
        """features.sufficiency.has_enough_history on matrix rows."""
        return ((history[:, self._col["history_days"]] >= MIN_HISTORY_DAYS)
                & (history[:, self._col["transactions_365d"]] >= MIN_TRANSACTIONS_365D))

    def _plan(self, subject: str) -> _Plan:
        plan = self.plans.get(subject)
        if plan is None:
            raise ModelUnavailable(f"no champion model for {subject} subjects yet; "
                                   "the model owner must train and promote one.")
        return plan


def _load_champions(paths: Paths) -> dict[str, LoadedModel | None]:
    registry.use_store(paths)
    models = {s: _load_at_start(s) for s in v.ENTITY_TYPES}
    if not any(models.values()):
        raise RuntimeError("no champion model in the MLflow registry at "
                           f"{paths.tracking_uri}: run `coopscore train` first.")
    return models


# Every member and cooperative on the platform, with its legal form for the Decree 156 limit (a
# member's type; a cooperative is one): the one rule every scorer reads, as SQL text both engines
# run (DuckDB here, Spark SQL in serving.spark_batch) over the accepted tables' views.
PLATFORM_SUBJECTS_SQL = """
    SELECT 'member' AS entity_type, member_id AS entity_id, member_type AS legal_form FROM members
    UNION ALL
    SELECT 'cooperative' AS entity_type, cooperative_id AS entity_id, 'cooperative' AS legal_form
    FROM cooperatives"""


class Scorer(Champions):
    """The champions over the snapshot: every subject's history in memory (one float64 matrix
    per subject type, id -> row in a dict), the platform's subjects, and history on demand on
    DuckDB for other dates: the service, the CLI and the single-machine batch scorer."""

    def __init__(self, paths: Paths):
        models = _load_champions(paths)
        self._snapshot_path = paths.features / snapshot.SNAPSHOT_FILE
        snap = pd.read_parquet(self._snapshot_path)
        super().__init__(models, [c for c in snap.columns
                                  if c not in ("spine_id", "entity_type", "entity_id", "as_of")],
                         snapshot.snapshot_date(paths.features))
        self.matrix: dict[str, np.ndarray] = {}
        self.row: dict[str, dict[str, int]] = {}
        self.ids: dict[str, pd.Index] = {}
        for subject in v.ENTITY_TYPES:
            part = snap[snap["entity_type"] == subject]
            self.matrix[subject] = np.ascontiguousarray(part[self.columns].to_numpy(dtype=np.float64))
            self.ids[subject] = pd.Index(part["entity_id"].to_numpy())
            self.row[subject] = {k: i for i, k in enumerate(part["entity_id"])}
        # one DuckDB with views over the accepted data; each serving thread gets its own cursor
        # (a DuckDB connection is not safe to share between threads, and opening one costs ~20 ms)
        self._duckdb = engine.connect(paths.clean)
        subjects = self._duckdb.execute(PLATFORM_SUBJECTS_SQL).df()
        members = subjects[subjects["entity_type"] == "member"]
        self.member_type = dict(zip(members["entity_id"], members["legal_form"]))
        self.cooperatives = set(subjects.loc[subjects["entity_type"] == "cooperative", "entity_id"])
        self._local = threading.local()

    # -- what the service's champion watcher and consent endpoints call -----------------------------
    def knows(self, subject_type: str, subject_id: str) -> bool:
        """Whether the subject exists on the platform (accepted data)."""
        return (subject_id in self.member_type if subject_type == "member"
                else subject_id in self.cooperatives)

    @staticmethod
    def champion_version(subject: str) -> str | None:
        """The version the registry names champion now (None: no champion)."""
        version = registry.champion_version(subject)
        return str(version.version) if version is not None else None

    def reload(self, subject: str, version: str) -> None:
        """Load `version` of the subject's model completely, then swap it in (one assignment, so
        a request sees either the old plan or the new one); raises, serving the old, on failure."""
        version_info = registry.champion_version(subject)
        run_id = (version_info.run_id or "") if version_info is not None and \
            str(version_info.version) == str(version) else ""
        loaded = load_version(registry.model_name(subject), str(version), run_id)
        plan = _Plan(loaded, self.columns)
        self.models[subject] = loaded
        self.plans = {**self.plans, subject: plan}

    @property
    def snapshot(self) -> pd.DataFrame:
        """The snapshot as a DataFrame indexed by (entity_type, entity_id), read when asked: for
        scripts and tests only, never used to score."""
        return pd.read_parquet(self._snapshot_path).set_index(["entity_type", "entity_id"]).sort_index()

    # -- public calls ---------------------------------------------------------------------------
    def score(self, request: schemas.ScoreRequest, request_id: str | None = None) -> schemas.ScoreResponse:
        """Score one application; raises ApiError (404, 422, 503) like the HTTP API answers."""
        result = self.score_many([request], [request_id or uuid.uuid4().hex])[0]
        if isinstance(result, ApiError):
            raise result
        return result

    def score_many(self, requests: Sequence[schemas.ScoreRequest],
                   request_ids: Sequence[str] | None = None) -> list[schemas.ScoreResponse | ApiError]:
        """Score many applications at once: one feature matrix and one model call per subject
        type. Returns, in order, a response or the ApiError that request alone would raise."""
        ids = list(request_ids) if request_ids is not None else [uuid.uuid4().hex for _ in requests]
        if len(ids) != len(requests):
            raise ValueError(f"{len(requests)} requests but {len(ids)} request ids")
        out: list = [None] * len(requests)
        groups: dict[tuple[str, date], list[int]] = {}
        for i, request in enumerate(requests):
            try:
                self._check_subject(request)
                self._check_limit(request)
                self._plan(request.subject_type)
            except ApiError as exc:
                out[i] = exc
                continue
            as_of = request.as_of_date or self.snapshot_date
            groups.setdefault((request.subject_type, as_of), []).append(i)
        for (subject, as_of), idx in groups.items():
            history = self._history([requests[i].subject_id for i in idx], subject, as_of)
            responses = self._respond(subject, as_of, history, [requests[i] for i in idx],
                                      [ids[i] for i in idx])
            for i, response in zip(idx, responses):
                out[i] = response
        return out

    def score_batch(self, batch: schemas.BatchScoreRequest, request_id: str) -> schemas.BatchScoreResponse:
        """A batch: every item scored or reported with its own error; one bad item never fails the
        batch. Item request ids are `<request_id>-<index>`."""
        results = self.score_many(batch.applications,
                                  [f"{request_id}-{i}" for i in range(len(batch.applications))])
        items = [schemas.BatchItemError.model_construct(
                     index=i, status="rejected", http_status=r.status, error=r.error,
                     message=r.message, fields=r.fields)
                 if isinstance(r, ApiError) else r for i, r in enumerate(results)]
        return schemas.BatchScoreResponse.model_construct(request_id=request_id, results=items)

    @staticmethod
    def features_used(response: schemas.ScoreResponse) -> dict[str, float | None] | None:
        """The model inputs a scored response was computed from ({feature: value}, None for a
        missing value), for the audit log to hash; None for insufficient_history. Not in the JSON."""
        return response._features_used

    # -- steps ----------------------------------------------------------------------------------
    def legal_form(self, subject_type: str, subject_id: str) -> str | None:
        """The subject's legal form for the Decree 156 limit (None: not on the platform)."""
        if subject_type == "member":
            return self.member_type.get(subject_id)
        return "cooperative" if subject_id in self.cooperatives else None

    def _check_subject(self, request: schemas.ScoreRequest) -> None:
        if self.legal_form(request.subject_type, request.subject_id) is None:
            raise UnknownSubject(f"no {request.subject_type} with id '{request.subject_id}' on the "
                                 "platform; check the id and the subject_type.")
        if request.as_of_date is not None:
            refusal = policy.as_of_refusal(request.as_of_date, self.snapshot_date)
            if refusal is not None:
                raise refusal

    def _check_limit(self, request: schemas.ScoreRequest) -> None:
        kind = self.legal_form(request.subject_type, request.subject_id)
        if policy.over_legal_limit(np.array([kind], dtype=object), [request.application.amount_vnd])[0]:
            raise policy.legal_limit_refusal(request.application.amount_vnd, kind)

    def _history(self, subject_ids: list[str], subject: str, as_of: date) -> np.ndarray:
        """History rows (columns `self.columns`) for the ids: from the snapshot when as_of is its
        date and the id is in it, else computed on demand on DuckDB."""
        rows = self.row[subject]
        if as_of == self.snapshot_date and all(s in rows for s in subject_ids):
            return self.matrix[subject][[rows[s] for s in subject_ids]]
        unique = list(dict.fromkeys(subject_ids))
        spine = pd.DataFrame({"spine_id": [f"{subject}:{s}" for s in unique],
                              "entity_type": subject, "entity_id": unique,
                              "as_of": pd.Timestamp(as_of)})
        frame = engine.history_features(self._cursor(), spine).set_index("entity_id")
        return frame.loc[subject_ids, self.columns].to_numpy(dtype=np.float64)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if not hasattr(self._local, "cursor"):
            self._local.cursor = self._duckdb.cursor()
        return self._local.cursor

    def _respond(self, subject: str, as_of: date, history: np.ndarray,
                 requests: list[schemas.ScoreRequest], ids: list[str]) -> list[schemas.ScoreResponse]:
        """Responses for requests of one subject type and date. Built with model_construct: the
        values are ours and already valid, and validating 42 contributions per request cost
        more than scoring; tests check the JSON equals that of validated objects."""
        plan = self._plan(subject)
        info = plan.loaded.info
        construct = schemas.ScoreResponse.model_construct
        out: list = [None] * len(requests)
        enough = self.enough_history(history)
        for i in np.flatnonzero(~enough):
            missing = what_is_missing(int(history[i, self._col["history_days"]]),
                                      int(history[i, self._col["transactions_365d"]]))
            out[i] = construct(request_id=ids[i], subject_type=subject,
                               subject_id=requests[i].subject_id, as_of_date=as_of,
                               status="insufficient_history", pd=None, score=None, grade=None,
                               explanation=None, reasons=[],
                               missing=[schemas.Missing.model_construct(**m) for m in missing],
                               model=info)
        ok = np.flatnonzero(enough)
        if len(ok) == 0:
            return out
        d = self._decide(plan, history[ok],
                        [requests[i].application.amount_vnd for i in ok],
                        [requests[i].application.term_months for i in ok])
        features = plan.features
        values = np.where(np.isfinite(d.x), d.x, np.nan)
        values_list = [[None if f != f else f for f in row] for row in values.tolist()]
        contributions = d.explanation.contributions.tolist()
        points = scaling.points_from_log_odds(d.explanation.contributions).tolist()
        log_odds = d.explanation.log_odds.tolist()
        pds, scores, grades = d.pd.tolist(), d.score.tolist(), d.grade.tolist()
        r_total = d.reason_total.tolist()
        r_points = scaling.points_from_log_odds(d.reason_total).tolist()
        r_idx, r_lead = d.reason_idx.tolist(), d.reason_lead.tolist()
        base_value = d.explanation.base_value
        contribution, reason, explanation = (schemas.Contribution.model_construct,
                                             schemas.Reason.model_construct,
                                             schemas.Explanation.model_construct)
        for j, i in enumerate(ok):
            vals = values_list[j]
            reasons = []
            for k, code_i in enumerate(r_idx[j]):
                if code_i < 0:
                    break
                lead = r_lead[j][k]
                text = plan.reason_objs[code_i]
                reasons.append(reason(code=text.code, feature=features[lead], value=vals[lead],
                                      contribution=r_total[j][k], points=r_points[j][k],
                                      text_vi=text.vi, text_en=text.en))
            response = construct(
                request_id=ids[i], subject_type=subject, subject_id=requests[i].subject_id,
                as_of_date=as_of, status="scored", pd=pds[j], score=round(scores[j], 1),
                grade=grades[j],
                explanation=explanation(log_odds=log_odds[j], base_value=base_value, contributions=[
                    contribution(feature=f, value=val, contribution=cv, points=p)
                    for f, val, cv, p in zip(features, vals, contributions[j], points[j])]),
                reasons=reasons, missing=[], model=info)
            response._features_used = dict(zip(features, vals))
            out[i] = response
        return out


def top_reasons(features: list[str], contributions: np.ndarray, values: pd.Series,
                limit: int = MAX_REASONS) -> list[schemas.Reason]:
    """Group contributions by reason code, keep the codes that raise risk, most first.

    The one-row reference of what `Scorer.decide` does vectorised (tests compare the two)."""
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
