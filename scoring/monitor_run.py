"""`coopscore monitor`: score every application through the champion as of its own date, compute
the month-by-month monitoring report (evaluation.monitoring) and store it.

The applications are the platform's (data_contracts' loan_applications, through the door: declined
ones too). Each is scored as the service would have scored it on its application date: the history
row is features.engine's, built point in time for that date on the same spine training builds
(training.dataset.application_spine), and the champion scores it through `Scorer.decide` (the
service's own columnar path: PD, score, grade, reason codes). The training population is the
champion's training run's (params train_from, train_to, data_end: the funded applications whose
label had matured), scored the same way.

Stored per month, twice: an MLflow run in the experiment `coopscore-monitoring-<subject>` (the
month's figures as metrics, its tables as CSV artifacts) and rows in Parquet tables under
`<home>/monitoring/` (one file per table; a month monitored again replaces its rows), which the
fund console's monitoring page reads.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from evaluation import monitoring
from evaluation.alerts import AlertConfig
from features import engine
from scoring.scorer import Scorer
from settings import Paths
from training.dataset import LABEL_MONTHS, application_spine, data_end

DIRECTORY = "monitoring"  # under the home


@dataclass
class MonitorResult:
    """One monitoring pass: what was monitored, the report, where it went."""

    subject: str
    version: str
    today: date
    months: list[str]
    report: monitoring.MonitoringReport
    run_ids: dict[str, str] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    training_window: tuple[str, str] = ("", "")


def monitoring_dir(paths: Paths) -> Path:
    return paths.home / DIRECTORY


def experiment_name(subject: str) -> str:
    return f"coopscore-monitoring-{subject}"


def score_applications(scorer: Scorer, clean_dir: Path, subject: str) -> pd.DataFrame:
    """Every application of `subject` with enough history, scored by the champion as of its date:
    application_id, entity_id, as_of, month, default_12m, decision, pd, score, grade, reason_1..4
    (codes, "" when fewer) and the model's inputs (one column per feature)."""
    spine = application_spine(clean_dir, subject, labelled_only=False)
    if spine.empty:
        raise LookupError(f"no {subject} applications in {clean_dir}: nothing to monitor")
    spine = spine.reset_index(drop=True)
    history = engine.history_features(engine.connect(clean_dir),
                                      spine[["spine_id", "entity_type", "entity_id", "as_of"]])
    history = history.set_index("spine_id").loc[spine["spine_id"]]
    matrix = history[scorer.columns].to_numpy(dtype=np.float64)
    enough = scorer.enough_history(matrix)
    apps = spine[enough].reset_index(drop=True)
    decided = scorer.decide(subject, matrix[enough], apps["requested_amount_vnd"].to_numpy(dtype=float),
                            apps["term_months"].to_numpy(dtype=float))
    features = list(scorer.models[subject].model.features)
    out = pd.DataFrame({
        "application_id": apps["spine_id"], "entity_id": apps["entity_id"], "as_of": apps["as_of"],
        "month": apps["as_of"].dt.strftime("%Y-%m"), "default_12m": apps["default_12m"],
        "decision": apps["decision"] if "decision" in apps else None,
        "pd": decided.pd, "score": decided.score, "grade": decided.grade})
    codes = np.array([*decided.reason_codes, ""], dtype=object)  # index -1: no reason
    for k in range(decided.reason_idx.shape[1]):
        out[f"reason_{k + 1}"] = codes[decided.reason_idx[:, k]]
    return pd.concat([out, pd.DataFrame(decided.x, columns=features)], axis=1)


def training_window(run_id: str) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """(train_from, train_to, data_end) of the champion's training run."""
    params = mlflow.get_run(run_id).data.params if run_id else {}
    try:
        return (pd.Timestamp(params["train_from"]), pd.Timestamp(params["train_to"]),
                pd.Timestamp(params["data_end"]))
    except KeyError:
        raise LookupError(f"the champion's training run ({run_id or 'unknown'}) does not record "
                          "train_from, train_to and data_end: retrain it with `coopscore train` so "
                          "the monitor knows its training population") from None


def monitor(paths: Paths, subject: str = "member", month: str | None = None,
            today: date | None = None, config: AlertConfig = AlertConfig(), log: bool = True,
            store: bool = True, draws: int = monitoring.DRAWS) -> MonitorResult:
    """Monitor the subject's champion: every month of applications after its training population
    (or only `month`, YYYY-MM), with what is known by `today` (default: the data's end)."""
    started = time.perf_counter()
    scorer = Scorer(paths)
    loaded = scorer.models.get(subject)
    if loaded is None:
        raise LookupError(f"no {subject} champion: train and promote one before monitoring it")
    train_from, train_to, trained_end = training_window(loaded.info.run_id)
    today_ts = pd.Timestamp(today) if today is not None else data_end(paths.clean)
    scored = score_applications(scorer, paths.clean, subject)
    known = monitoring.outcomes(paths.clean, scored[["application_id", "as_of", "default_12m"]], today_ts)
    scored = scored.merge(known.drop(columns=["as_of"]), on="application_id", validate="one_to_one")
    in_training = ((scored["as_of"] >= train_from) & (scored["as_of"] <= train_to)
                   & (scored["as_of"] + pd.DateOffset(months=LABEL_MONTHS) <= trained_end)
                   & scored["default_12m"].notna())
    reference = scored[in_training]
    available = sorted(scored["month"].unique())
    if month is not None:
        if month not in available:
            raise LookupError(f"no scored {subject} application in {month}; months with applications: "
                              f"{available[0]} to {available[-1]}")
        months = [month]
    else:
        months = [m for m in available if m > train_to.strftime("%Y-%m")]
        if not months:
            raise LookupError(f"no application after the champion's training population (to "
                              f"{train_to.date()}): nothing to monitor yet")
    features = list(loaded.model.features)
    report = monitoring.monitor(scored, reference, features, config, months, draws=draws)
    result = MonitorResult(subject, loaded.info.version, today_ts.date(), months, report,
                           training_window=(str(train_from.date()), str(train_to.date())))
    if store:
        result.tables = store_tables(paths, result)
    if log:
        result.run_ids = log_months(paths, result, config)
    result.seconds = time.perf_counter() - started
    return result


def store_tables(paths: Paths, result: MonitorResult) -> dict[str, Path]:
    """Write the report's tables under <home>/monitoring/, replacing the rows of the same subject,
    version and months (vintages: of the same subject and version)."""
    folder = monitoring_dir(paths)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = {}
    for name in monitoring.MonitoringReport.TABLES:
        table = getattr(result.report, name).copy()
        table.insert(0, "version", result.version)
        table.insert(0, "subject", result.subject)
        table["today"] = str(result.today)
        if name == "monthly":  # the training population the months were compared with
            table["train_from"], table["train_to"] = result.training_window
        table["computed_at"] = stamp
        path = folder / f"{name}.parquet"
        if path.exists():
            old = pd.read_parquet(path)
            same = (old["subject"] == result.subject) & (old["version"] == result.version)
            if name != "vintages":
                same &= old["month"].isin(result.months)
            table = pd.concat([old[~same], table], ignore_index=True)
        table.to_parquet(path, index=False)
        out[name] = path
    return out


def read_tables(paths: Paths) -> dict[str, pd.DataFrame]:
    """The stored monitoring tables (empty frames where none is stored yet)."""
    folder = monitoring_dir(paths)
    return {name: (pd.read_parquet(folder / f"{name}.parquet") if (folder / f"{name}.parquet").exists()
                   else pd.DataFrame())
            for name in monitoring.MonitoringReport.TABLES}


def _experiment(paths: Paths, subject: str) -> str:
    found = mlflow.get_experiment_by_name(experiment_name(subject))
    if found is not None:
        return found.experiment_id
    paths.artifacts.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(experiment_name(subject), artifact_location=paths.artifacts.as_uri())


def log_months(paths: Paths, result: MonitorResult, config: AlertConfig) -> dict[str, str]:
    """One MLflow run per month: its figures as metrics, its tables as CSV artifacts."""
    experiment = _experiment(paths, result.subject)
    run_ids = {}
    for month in result.months:
        tables = result.report.month(month)
        row = tables["monthly"].iloc[0]
        with mlflow.start_run(experiment_id=experiment, run_name=f"{result.subject} v{result.version} "
                              f"{month}") as run:
            mlflow.set_tags({"subject": result.subject, "model_version": result.version,
                             "month": month, "today": str(result.today)})
            mlflow.log_params({"train_from": result.training_window[0],
                               "train_to": result.training_window[1], **config.as_params()})
            figures = {k: float(v) for k, v in row.items()
                       if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                       and np.isfinite(v)}
            figures.update({f"psi_{r.column}": float(r.psi) for r in tables["psi"].itertuples()
                            if np.isfinite(r.psi)})
            alerts = tables["alerts"]
            figures["alerts_act"] = float((alerts["level"] == "act").sum())
            figures["alerts_watch"] = float((alerts["level"] == "watch").sum())
            mlflow.log_metrics(figures)
            with tempfile.TemporaryDirectory() as tmp:
                for name, table in tables.items():
                    table.to_csv(Path(tmp) / f"{name}.csv", index=False)
                (Path(tmp) / "alerts.json").write_text(json.dumps(
                    alerts.to_dict(orient="records"), ensure_ascii=False, indent=1))
                mlflow.log_artifacts(tmp, "monitoring")
            run_ids[month] = run.info.run_id
    return run_ids
