"""Offline batch scoring: a file of applications in, a file of scores with reasons out.

For portfolio reviews and pre-approved offers over millions of members: the same columnar core as
the online scorer (scoring.scorer.Scorer.decide: snapshot matrix, on-demand features, one
LightGBM call per chunk), read and written in chunks so memory stays flat. Every input row gets an
output row, in order, with status scored, insufficient_history or rejected (and why): a bank must
be able to account for every application it sent.

Scores use the snapshot (`coopscore features`); an as_of_date column is allowed but must be empty or
equal to the snapshot date (history on other dates is an online, one-at-a-time feature).
"""
from __future__ import annotations

import math
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from settings import Paths
from data_contracts import vocabulary as v
from scoring import policy
from scoring.disclosure import Disclosure
from records import AuditEntry
from scoring.scorer import Champions, Scorer

REQUIRED_COLUMNS = ("subject_type", "subject_id", "amount_vnd", "term_months", "purpose")
OPTIONAL_COLUMNS = ("as_of_date",)
EXTENSIONS = (".csv", ".parquet")
TOP_REASONS = 3

OUTPUT_SCHEMA = pa.schema(
    [("row_number", pa.int64()), ("subject_type", pa.string()), ("subject_id", pa.string()),
     ("status", pa.string()), ("pd", pa.float64()), ("score", pa.float64()), ("grade", pa.string())]
    + [(f"reason_{k}_{part}", pa.string()) for k in range(1, TOP_REASONS + 1)
       for part in ("code", "vi", "en")]
    + [("model_name", pa.string()), ("model_version", pa.string()),
       ("error", pa.string()), ("message", pa.string())])


class PathTreeShap:
    """Exact path-dependent TreeSHAP (what LightGBM's pred_contrib computes) for small numeric
    trees, vectorised over rows with numpy.

    Why: LightGBM's pred_contrib costs ~100 us a row here (it walks every path per row); for
    10^6 rows that is most of the run. Each leaf's contribution to a feature depends only on which
    of the leaf's path conditions a row meets (at most 2^depth patterns), so a table per leaf is
    computed once and every row is a lookup. Built only when every split is a numeric '<=';
    `verify` checks it against LightGBM before use."""

    MAX_PATH_FEATURES = 10

    def __init__(self, booster):
        dump = booster.dump_model()
        self.n_features = booster.num_feature()
        self.trees = []
        self.base_margin = 0.0
        for info in dump["tree_info"]:
            nodes, leaves = [], []
            root = info["tree_structure"]
            if "split_index" not in root:  # a single-leaf tree: a constant, all in the base
                self.base_margin += float(root["leaf_value"])
                continue
            self._walk(root, [], nodes, leaves)
            self.trees.append((nodes, leaves))

    @staticmethod
    def _count(node) -> float:
        return float(node["internal_count"] if "split_index" in node else node["leaf_count"])

    def _walk(self, node, path, nodes, leaves) -> None:
        if "split_index" not in node:
            self._leaf(float(node["leaf_value"]), path, leaves)
            return
        if node["decision_type"] != "<=":
            raise NotImplementedError(f"split type {node['decision_type']}")
        i = len(nodes)
        nodes.append((int(node["split_feature"]), float(node["threshold"]), node["missing_type"],
                      bool(node["default_left"])))
        total = self._count(node)
        for child, goes_left in ((node["left_child"], True), (node["right_child"], False)):
            self._walk(child, path + [(int(node["split_feature"]), i, goes_left,
                                       self._count(child) / total)], nodes, leaves)

    def _leaf(self, value, path, leaves) -> None:
        feats, conds, zs = [], [], []
        for f, node, goes_left, fraction in path:
            if f not in feats:
                feats.append(f)
                conds.append([])
                zs.append(1.0)
            k = feats.index(f)
            conds[k].append((node, goes_left))
            zs[k] *= fraction
        d = len(feats)
        if d > self.MAX_PATH_FEATURES:
            raise NotImplementedError("path too deep for tables")
        z = np.array(zs)
        self.base_margin += value * float(np.prod(z))
        patterns = np.arange(2 ** d)
        o = ((patterns[:, None] >> np.arange(d)) & 1).astype(float)  # (2^d, d)
        weights = np.array([math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d)
                            for s in range(d)])
        table = np.empty((2 ** d, d))
        for j in range(d):
            poly = np.zeros((2 ** d, d))  # coefficients in s = |S| of prod_{k != j}(z_k + o_k t)
            poly[:, 0] = 1.0
            for k in range(d):
                if k == j:
                    continue
                shifted = np.zeros_like(poly)
                shifted[:, 1:] = poly[:, :-1] * o[:, k:k + 1]
                poly = poly * z[k] + shifted
            table[:, j] = value * (poly @ weights) * (o[:, j] - z[j])
        leaves.append((np.array(feats), conds, table))

    BLOCK_ROWS = 8_192  # rows per pass: the per-node and per-leaf arrays stay in cache

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(n, n_features + 1): per-feature contributions to the raw margin, then the base."""
        out = np.empty((len(x), self.n_features + 1))
        for start in range(0, len(x), self.BLOCK_ROWS):
            block = x[start:start + self.BLOCK_ROWS]
            out[start:start + len(block)] = self._block(block).T
        return out

    def _block(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        phi = np.zeros((self.n_features + 1, n))  # feature-major: each += is contiguous
        xt = np.ascontiguousarray(x.T)
        for nodes, leaves in self.trees:
            left = np.empty((len(nodes), n), dtype=bool)
            for i, (f, threshold, missing, default_left) in enumerate(nodes):
                col = xt[f]
                nan = np.isnan(col)
                if missing == "NaN":
                    left[i] = np.where(nan, default_left, col <= threshold)
                else:  # LightGBM reads NaN as 0 unless NaN is the missing value
                    col = np.where(nan, 0.0, col)
                    if missing == "Zero":
                        zero = (col > -1e-35) & (col <= 1e-35)
                        left[i] = np.where(zero, default_left, col <= threshold)
                    else:
                        left[i] = col <= threshold
            right = ~left
            for feats, conds, table in leaves:
                pattern = np.zeros(n, dtype=np.intp)
                for k, cond in enumerate(conds):
                    node, goes_left = cond[0]
                    met = left[node] if goes_left else right[node]
                    for node, goes_left in cond[1:]:
                        met = met & (left[node] if goes_left else right[node])
                    pattern |= met.astype(np.intp) << k
                values = table.T[:, pattern]  # (d, n)
                for k, f in enumerate(feats):
                    phi[f] += values[k]
        phi[-1] = self.base_margin
        return phi


def _explainers(scorer: Champions, verify_rows: int = 2_000,
                samples: dict[str, np.ndarray] | None = None) -> dict[str, Callable | None]:
    """Per subject type: the table TreeSHAP when it reproduces LightGBM's pred_contrib on history
    rows (max difference 1e-9 in the margin), else None (LightGBM is used). The rows are the
    snapshot's first `verify_rows`, or `samples[subject]` (the Spark job's, which has no snapshot
    matrix)."""
    out: dict[str, Callable | None] = {}
    rng = np.random.default_rng(0)
    for subject, plan in scorer.plans.items():
        try:
            shap_tables = PathTreeShap(plan.model.booster)
        except NotImplementedError as exc:
            warnings.warn(f"{subject}: table TreeSHAP not usable ({exc}); using LightGBM")
            out[subject] = None
            continue
        history = (samples[subject] if samples is not None else scorer.matrix[subject])[:verify_rows]
        n = len(history)
        if n == 0:  # no history of this subject type to check on (the Spark job: none to score)
            out[subject] = None
            continue
        x = plan.matrix(history, rng.integers(1, 500, n) * 1e6, rng.integers(1, 121, n).astype(float))
        x[: n // 10, :] = np.where(rng.random((n // 10, x.shape[1])) < 0.2, np.nan, x[: n // 10])
        reference = plan.model.booster.predict(x, pred_contrib=True)
        if n and np.abs(shap_tables.contributions(x) - reference).max() > 1e-9:
            warnings.warn(f"{subject}: table TreeSHAP differs from LightGBM; using LightGBM")
            out[subject] = None
        else:
            out[subject] = shap_tables.contributions
    return out


@dataclass
class BatchFileReport:
    input_path: Path
    output_path: Path
    rows: int
    scored: int
    insufficient_history: int
    rejected: int
    seconds: float
    snapshot_date: date
    explainer: dict[str, str] = field(default_factory=dict)  # subject -> "tables" | "lightgbm"
    rejected_by_error: dict[str, int] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


@dataclass(frozen=True)
class ForLender:
    """Offline scoring whose output goes to a lender: every row passes the same disclosure step as
    the API (consent of that lender; an unknown id refused like an unconsented one) and every row
    is an audit entry, written before the chunk's output. `actor` is who ran it ("operator:<user>")."""

    lender_id: str
    records: object  # records.Records
    actor: str


def score_file(paths: Paths, input_path: Path | str, output_path: Path | str,
               progress: Callable[[float], None] | None = None, chunk_rows: int = 200_000,
               scorer: Scorer | None = None, num_threads: int | None = None,
               for_lender: ForLender | None = None) -> BatchFileReport:
    """Score every row of `input_path` (CSV or Parquet) into `output_path` (CSV or Parquet, by
    extension). `progress(fraction)` is called after each chunk. Pass `scorer` to reuse a loaded
    one; `num_threads` for LightGBM (default: all cores for large chunks). Without `for_lender` it
    is the platform's own run (ranking, monitoring): nothing is disclosed to anyone."""
    started = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    check_files(input_path, output_path, chunk_rows)
    chunks, total = _reader(input_path, chunk_rows)
    scorer = scorer or Scorer(paths)
    explainers = _explainers(scorer)
    disclosure = Disclosure(for_lender.records, scorer.knows) if for_lender else None
    subjects = SnapshotSubjects(scorer)

    def scored():
        offset = 0
        for chunk in chunks:
            yield len(chunk), _score_chunk(
                scorer, chunk, np.arange(offset + 1, offset + len(chunk) + 1, dtype=np.int64),
                num_threads, explainers, subjects,
                (for_lender.lender_id, disclosure) if for_lender else None)
            offset += len(chunk)

    counts, errors = write_results(scored(), output_path, total, for_lender, progress)
    return BatchFileReport(input_path, output_path, sum(counts.values()), counts["scored"],
                           counts["insufficient_history"], counts["rejected"],
                           time.perf_counter() - started, scorer.snapshot_date,
                           {k: "tables" if f else "lightgbm" for k, f in explainers.items()}, errors)


def write_results(tables: Iterable[tuple[int, pa.Table]], output_path: Path, total: int | None,
                  for_lender: ForLender | None = None,
                  progress: Callable[[float], None] | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """Write scored chunks, in order, to `output_path` (Parquet or CSV by extension) atomically:
    `tables` yields (input rows of the chunk, its output table). For a lender, each chunk's audit
    entries are written before the chunk's output. Returns (rows by status, rows by error);
    RuntimeError, and no output, when the rows out are not the rows in."""
    run_id = uuid.uuid4().hex
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(output_path.name + ".partial")
    writer = (pq.ParquetWriter(partial, OUTPUT_SCHEMA) if output_path.suffix == ".parquet"
              else pacsv.CSVWriter(partial, OUTPUT_SCHEMA))
    rows_in = rows_out = 0
    counts: dict[str, int] = {"scored": 0, "insufficient_history": 0, "rejected": 0}
    errors: dict[str, int] = {}
    try:
        for chunk_rows, table in tables:
            if for_lender is not None:  # no audit row, no disclosure
                for_lender.records.append_audit(_audit_entries(table, for_lender, run_id))
            writer.write_table(table)
            rows_in += chunk_rows
            rows_out += table.num_rows
            status = table.column("status").to_numpy(zero_copy_only=False)
            for name in counts:
                counts[name] += int((status == name).sum())
            for name, n in pd.Series(table.column("error").to_numpy(zero_copy_only=False)).value_counts().items():
                errors[name] = errors.get(name, 0) + int(n)
            if progress is not None:
                progress(min(1.0, rows_in / total) if total else 1.0)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    if rows_out != rows_in or (total is not None and rows_in != total):
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"rows in ({rows_in}, expected {total}) != rows out ({rows_out}): "
                           "no output written")
    os.replace(partial, output_path)
    if progress is not None and rows_in == 0:
        progress(1.0)
    return counts, errors


def _fits(value: str, width: int) -> str:
    """A rejected row's id as the audit column can hold it: never cut short, named instead."""
    return value if len(value) <= width else f"(invalid, {len(value)} characters)"[:width]


def _audit_entries(table: pa.Table, lender: ForLender, run_id: str) -> list[AuditEntry]:
    """One audit entry per output row of a lender's file: what was disclosed, or why not."""
    cols = {name: table.column(name).to_pylist() for name in
            ("row_number", "subject_type", "subject_id", "status", "pd", "score", "grade", "error",
             "message", "model_name", "model_version", "reason_1_code", "reason_2_code", "reason_3_code")}
    at = datetime.now(timezone.utc)
    out = []
    for k in range(table.num_rows):
        scored = cols["status"][k] != "rejected"
        answer = ({"status": cols["status"][k], "pd": cols["pd"][k], "score": cols["score"][k],
                   "grade": cols["grade"][k],
                   "reasons": [c for c in (cols[f"reason_{j}_code"][k] for j in (1, 2, 3)) if c]}
                  if scored else {"error": cols["error"][k], "message": cols["message"][k]})
        out.append(AuditEntry(
            request_id=f"{run_id}-{cols['row_number'][k]}", at=at, bank_id=lender.lender_id,
            key_id=lender.actor, subject_type=_fits(cols["subject_type"][k], 16),
            subject_id=_fits(cols["subject_id"][k], 64), endpoint="cli.score",
            http_status=200 if scored else (403 if cols["error"][k] == "no_consent" else 422),
            outcome=cols["status"][k] if scored else cols["error"][k],
            model_name=cols["model_name"][k] if scored else None,
            model_version=cols["model_version"][k] if scored else None, answer=answer))
    return out


# -- reading ---------------------------------------------------------------------------------------
def check_files(input_path: Path, output_path: Path, chunk_rows: int) -> None:
    """ValueError for a file type other than CSV or Parquet or chunk_rows below 1;
    FileNotFoundError for a missing input."""
    _check_extension(input_path, "input")
    _check_extension(output_path, "output")
    if not input_path.exists():
        raise FileNotFoundError(f"input file {input_path} does not exist")
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")


def _check_extension(path: Path, role: str) -> None:
    if path.suffix.lower() not in EXTENSIONS:
        raise ValueError(f"unsupported {role} file type '{path.suffix or path.name}' for {path}: "
                         f"use one of {', '.join(EXTENSIONS)}")


def _check_columns(columns: list[str], path: Path) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"{path} is missing the required column(s) {', '.join(missing)}; "
                         f"required: {', '.join(REQUIRED_COLUMNS)} (optional: as_of_date)")


def _reader(path: Path, chunk_rows: int):
    """(iterator of DataFrames with the known columns, total row count)."""
    wanted = list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    if path.suffix.lower() == ".parquet":
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        _check_columns(names, path)
        columns = [c for c in wanted if c in names]
        return (b.to_pandas() for b in pf.iter_batches(batch_size=chunk_rows, columns=columns)), \
            pf.metadata.num_rows
    names = list(pd.read_csv(path, nrows=0).columns)
    _check_columns(names, path)
    columns = [c for c in wanted if c in names]
    reader = pd.read_csv(path, usecols=columns, dtype=str, keep_default_na=False,
                         chunksize=chunk_rows)
    return reader, None


# -- scoring one chunk -----------------------------------------------------------------------------
def _text(series: pd.Series) -> np.ndarray:
    return series.fillna("").astype(str).str.strip().to_numpy(dtype=object)


def _whole(series: pd.Series) -> np.ndarray:
    """Numbers that must be whole; NaN for anything else (empty, text, 1.5)."""
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    return np.where(np.mod(values, 1) == 0, values, np.nan)


class SnapshotSubjects:
    """Who the applications name, answered from a Scorer: the platform's members and cooperatives
    (their legal form) and the snapshot's history rows. The Spark job answers the same two
    questions from columns it joined to each row (serving.spark_batch.JoinedSubjects)."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer

    def legal_forms(self, subject_type: np.ndarray, subject_id: np.ndarray) -> np.ndarray:
        """Per row: the subject's legal form (member_type, or "cooperative"); None when the
        platform does not know it. Rows of another subject_type: anything (they are rejected)."""
        kind = pd.Series(subject_id).map(self.scorer.member_type).to_numpy(dtype=object)
        is_coop = subject_type == "cooperative"
        kind[is_coop] = np.where(pd.Series(subject_id[is_coop]).isin(self.scorer.cooperatives),
                                 "cooperative", None)
        return kind

    def history(self, subject: str, subject_id: np.ndarray, rows: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """(found, history): whether each of `rows` (positions in the chunk, all of `subject`) is
        in the snapshot, and the history rows (columns scorer.columns) of the found ones."""
        at = self.scorer.ids[subject].get_indexer(subject_id[rows])
        found = at >= 0
        return found, self.scorer.matrix[subject][at[found]]


def _score_chunk(scorer: Champions, chunk: pd.DataFrame, row_number: np.ndarray,
                 num_threads: int | None, explainers: dict[str, Callable | None],
                 subjects: SnapshotSubjects, lender: tuple[str, Disclosure] | None = None) -> pa.Table:
    """One output row per row of `chunk` (numbered `row_number`): scored, insufficient_history or
    rejected with the first reason, in the order of the checks below. `scorer` holds the models;
    `subjects` says who exists and their history; `lender` (its id and a Disclosure, or anything
    with the same `refusal`) adds the consent step."""
    n = len(chunk)
    subject_type, subject_id = _text(chunk["subject_type"]), _text(chunk["subject_id"])
    purpose = _text(chunk["purpose"])
    amount, term = _whole(chunk["amount_vnd"]), _whole(chunk["term_months"])
    error = np.full(n, None, dtype=object)
    message = np.full(n, None, dtype=object)

    def reject(mask: np.ndarray, code: str, text) -> None:
        """Record the first reason a row is rejected (later checks do not overwrite it)."""
        mask = mask & (error == None)  # noqa: E711 (element-wise)
        if mask.any():
            error[mask] = code
            message[mask] = text(mask) if callable(text) else text

    reject(~np.isin(subject_type, policy.SUBJECT_TYPES), "invalid_request",
           "subject_type must be member or cooperative")
    lengths = np.fromiter((len(s) for s in subject_id), dtype=int, count=n)
    reject((lengths < 1) | (lengths > policy.SUBJECT_ID_MAX_LENGTH), "invalid_request",
           f"subject_id must be 1 to {policy.SUBJECT_ID_MAX_LENGTH} characters")
    reject(~(amount > 0), "invalid_request", "amount_vnd must be a whole number of VND above 0")
    low, high = policy.TERM_MONTHS
    reject(~((term >= low) & (term <= high)), "invalid_request",
           f"term_months must be a whole number from {low} to {high}")
    reject(~np.isin(purpose, v.LOAN_PURPOSES), "invalid_request",
           f"purpose must be one of {', '.join(v.LOAN_PURPOSES)}")
    if "as_of_date" in chunk:
        raw = _text(chunk["as_of_date"])
        parsed = pd.to_datetime(pd.Series(raw), errors="coerce", format="%Y-%m-%d")
        given = raw != ""
        reject(given & parsed.isna().to_numpy(), "invalid_request",
               "as_of_date must be an ISO date (YYYY-MM-DD)")
        snapshot_day = pd.Timestamp(scorer.snapshot_date)
        reject(given & (parsed > snapshot_day).to_numpy(), "invalid_request",
               f"as_of_date is after the latest data ({scorer.snapshot_date}); a score cannot use "
               "data that does not exist yet")
        reject(given & (parsed != snapshot_day).to_numpy(), "invalid_request",
               f"offline scoring uses the snapshot of {scorer.snapshot_date}: leave as_of_date empty "
               "or set it to that date (score other dates through the API)")
    if lender is not None:  # before the unknown-id check: a lender learns nothing about ids
        lender_id, disclosure = lender
        checks = {(t, i): disclosure.refusal(lender_id, t, i)
                  for t, i in dict.fromkeys(zip(subject_type[error == None], subject_id[error == None]))}  # noqa: E711
        refused = np.array([checks.get((t, i)) is not None for t, i in zip(subject_type, subject_id)], dtype=bool)
        reject(refused, "no_consent", lambda m: np.array(
            [checks[(t, i)].message for t, i in zip(subject_type[m], subject_id[m])], dtype=object))
    # subjects, Decree 156 limits, models
    is_member, is_coop = subject_type == "member", subject_type == "cooperative"
    kind = subjects.legal_forms(subject_type, subject_id)
    reject((is_member | is_coop) & pd.isna(kind), "unknown_subject",
           lambda m: np.array([f"no {t} with id '{i}' on the platform; check the id and the "
                               "subject_type." for t, i in zip(subject_type[m], subject_id[m])],
                              dtype=object))
    reject(policy.over_legal_limit(kind, amount), "invalid_request",
           lambda m: np.array([policy.legal_limit_message(a, k) for a, k in zip(amount[m], kind[m])],
                              dtype=object))
    for subject in v.ENTITY_TYPES:
        if subject not in scorer.plans:
            reject(subject_type == subject, "model_unavailable",
                   f"no champion model for {subject} subjects yet; the model owner must train "
                   "and promote one.")

    out = {name: np.full(n, None, dtype=object) for name in OUTPUT_SCHEMA.names}
    out["row_number"] = np.asarray(row_number, dtype=np.int64)
    out["subject_type"], out["subject_id"] = subject_type, subject_id
    out["pd"], out["score"] = np.full(n, np.nan), np.full(n, np.nan)
    out["status"] = np.where(error == None, "scored", "rejected").astype(object)  # noqa: E711
    for subject, plan in list(scorer.plans.items()):
        rows = np.flatnonzero((error == None) & (subject_type == subject))  # noqa: E711
        if len(rows) == 0:
            continue
        found, history = subjects.history(subject, subject_id, rows)
        stale = ~found  # known on the platform, but not in the snapshot: it predates them
        if stale.any():
            out["status"][rows[stale]] = "rejected"
            error[rows[stale]] = "not_in_snapshot"
            message[rows[stale]] = (f"not in the snapshot of {scorer.snapshot_date}; rebuild it "
                                    "(`coopscore features`) or score through the API")
            rows = rows[found]
        out["model_name"][rows] = plan.loaded.info.name
        out["model_version"][rows] = plan.loaded.info.version
        enough = scorer.enough_history(history)
        out["status"][rows[~enough]] = "insufficient_history"
        ok = rows[enough]
        if len(ok) == 0:
            continue
        d = scorer._decide(plan, history[enough], amount[ok], term[ok], num_threads=num_threads,
                          contrib_fn=explainers.get(subject))
        out["pd"][ok] = d.pd
        out["score"][ok] = np.array([round(s, 1) for s in d.score.tolist()])
        out["grade"][ok] = d.grade.astype(object)
        codes = np.array(plan.codes + [None], dtype=object)  # index -1 -> None
        vi = np.array([r.vi for r in plan.reason_objs] + [None], dtype=object)
        en = np.array([r.en for r in plan.reason_objs] + [None], dtype=object)
        for k in range(TOP_REASONS):
            idx = d.reason_idx[:, k]
            out[f"reason_{k + 1}_code"][ok] = codes[idx]
            out[f"reason_{k + 1}_vi"][ok] = vi[idx]
            out[f"reason_{k + 1}_en"][ok] = en[idx]
    out["error"], out["message"] = error, message
    table = pa.Table.from_arrays([pa.array(out[f.name], type=f.type, from_pandas=True)
                                  for f in OUTPUT_SCHEMA], schema=OUTPUT_SCHEMA)
    assert table.num_rows == n, "a row was lost while scoring a chunk"
    return table
