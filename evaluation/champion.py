"""Evaluate the champion model of a subject by its as-deployed backtest (evaluation.backtest).

One call gives what a model-risk team asks first: how well it ranks and how well it is calibrated
(with 95% bootstrap intervals), the same for the true PD on synthetic data (the best any model
could do), how well its calibration is pinned down (the slope's CI), how stable the score and
the features are between the training and test periods (PSI), and how it treats groups at the
operating threshold (fairness).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from evaluation import backtest, fairness, metrics, stability
from settings import Paths
from training import registry, scaling
from training.dataset import build_training_set, data_end
from training.train import load_backtest, load_drivers

# Approve grades A to D: PD up to 8%. The threshold fairness is measured at.
OPERATING_PD = 0.08
FAIRNESS_GROUPS = ("household_head_gender", "ethnic_minority", "mountainous_commune", "region",
                   "business_sector")
# A calibration slope whose 95% CI is wider than this cannot be said to be pinned down.
MAX_SLOPE_CI_WIDTH = 1.0
FRAME_COLUMNS = ("application_id", "as_of", "label", "pd", "true_pd")


@dataclass
class ChampionEvaluation:
    """A model's out-of-time evaluation: metrics with 95% CIs, PSI and fairness by group."""

    subject: str
    model_version: str
    oot_rows: int
    model: dict[str, metrics.Estimate]
    true_pd: dict[str, metrics.Estimate] | None
    psi: pd.DataFrame  # column, psi, band: the score first, then every feature
    fairness: dict[str, pd.DataFrame]
    seconds: float
    # the transparent challenger (WoE scorecard) fitted on the same training months
    scorecard: dict[str, metrics.Estimate] | None = None
    # one row per test application, in a fixed order (as_of, application_id) so that two models
    # evaluated on the same data pair row by row: FRAME_COLUMNS, then the groups of FAIRNESS_GROUPS
    # (members only; measurement only, never a model input)
    frame: pd.DataFrame | None = None
    backtest_dates: list[str] | None = None  # the deployment dates T (ISO) the test rows come from
    backtest: pd.DataFrame | None = None  # per (T, source): rows, defaults, metrics with CIs
    # synthetic data only: the feature ceiling's pooled metrics (the true log-odds regressed on the
    # same features at each T) and the driver table (evaluation.ceiling)
    ceiling: dict[str, metrics.Estimate] | None = None
    drivers: pd.DataFrame | None = None

    @property
    def calibration_slope(self) -> metrics.Estimate:
        """The calibration slope of the model's PD on the test rows, with its 95% CI."""
        return self.model["calibration_slope"]

    @property
    def calibration_pinned(self) -> bool:
        """Whether the calibration slope is known well enough to trust the PD (see the reason)."""
        return calibration_verdict(self.calibration_slope)[0]

    @property
    def calibration_reason(self) -> str:
        """Why the calibration is, or is not, pinned down (the slope and its CI)."""
        return calibration_verdict(self.calibration_slope)[1]

    def largest_fairness_gap(self) -> tuple[str, str, float] | None:
        """(grouping, metric, gap) of the largest gap between groups, or None without groups."""
        return fairness.largest_gap(self.fairness) if self.fairness else None


def calibration_verdict(slope: metrics.Estimate,
                        max_width: float = MAX_SLOPE_CI_WIDTH) -> tuple[bool, str]:
    """(pinned, reason): a calibration slope is pinned down when its 95% CI excludes 0 and is at
    most `max_width` wide; otherwise the PD's spread is not known from the evidence."""
    text = f"calibration slope {slope.value:.2f} (95% CI {slope.low:.2f} to {slope.high:.2f})"
    if slope.low <= 0:
        return False, f"{text} includes 0: the PD's ranking is not established on the test rows"
    if slope.high - slope.low > max_width:
        return False, f"{text} is wider than {max_width}: too few defaults to pin the PD's spread"
    return True, f"{text}: pinned down (CI excludes 0, width at most {max_width})"


def evaluate_champion(paths: Paths, subject: str = "member", n_boot: int = 300) -> ChampionEvaluation:
    """Evaluate the subject's champion on its out-of-time applications (LookupError without one)."""
    registry.use_store(paths)
    version = registry.champion_version(subject)
    if version is None:
        raise LookupError(f"no champion for {subject} yet: run `coopscore train` first.")
    model = mlflow.pyfunc.load_model(registry.champion_uri(subject))
    return evaluate_model(paths, subject, model, str(version.version), n_boot).evaluation


@dataclass
class ModelEvaluation:
    """The champion-style evaluation plus the test arrays the card's plots need."""

    evaluation: ChampionEvaluation
    y: np.ndarray
    pd: np.ndarray
    true_pd: np.ndarray | None
    scores: np.ndarray
    mean_abs_contribution: np.ndarray  # per feature, in the model's feature order
    features: list[str]

    @property
    def frame(self) -> pd.DataFrame:
        """The evaluation's per-application frame (see ChampionEvaluation.frame)."""
        return self.evaluation.frame


def evaluate_model(paths: Paths, subject: str, model, version: str,
                   n_boot: int = 200, with_scorecard: bool = True,
                   run_id: str | None = None) -> ModelEvaluation:
    """Evaluate a loaded pyfunc model of `subject` by its as-deployed backtest (evaluation.backtest).

    The backtest evaluates the training procedure with the model's features: at each date T a model
    trained on the labels known then. The predictions the version's training run logged are used
    when they cover exactly the pooled test rows of today's data (`run_id`, default: the version's
    run); otherwise the backtest is run again, so a champion and a challenger evaluated on the same
    data always get the same rows in the same order. The served model itself is used only where no
    outcome is measured: the score's and features' stability (PSI) and the feature importances.
    `with_scorecard=False` skips the WoE challenger (the promotion gates do not need it)."""
    started = time.perf_counter()
    inner = model.unwrap_python_model()
    features = list(inner.features)
    rows = build_training_set(paths.clean, subject)
    unknown = sorted(set(features) - set(rows.columns))
    if unknown:
        raise LookupError(f"the model (version {version}) uses features the catalogue no longer "
                          f"computes: {unknown}. Retrain with `coopscore train`.")
    rows = rows[rows["enough_history"]].reset_index(drop=True)
    end = data_end(paths.clean)
    folds = backtest.plan(rows, end)
    served = sorted(backtest.pooled_positions(folds, rows))
    expected = rows.iloc[served].sort_values(["as_of", "application_id"], kind="stable")

    logged = _logged_backtest(subject, version, run_id)
    if (logged is not None and logged[0]["application_id"].tolist() == expected["application_id"].tolist()
            and (not with_scorecard or logged[0]["scorecard_pd"].notna().all())):
        scored, per_t = logged
        drivers = load_drivers(run_id or _run_id(subject, version) or "")
    else:
        run = backtest.run_backtest(rows, features, end, _truth(paths), n_boot=n_boot,
                                    with_scorecard=with_scorecard)
        scored, per_t, drivers = run.frame, run.folds, run.drivers
    frame = evaluation_frame(paths, scored, subject)

    y = frame["label"].to_numpy()
    pd_test = frame["pd"].to_numpy()
    model_metrics = metrics.evaluate(y, pd_test, n_boot=n_boot)
    true = frame["true_pd"].to_numpy() if frame["true_pd"].notna().all() else None
    true_metrics = metrics.evaluate(y, true, n_boot=n_boot) if true is not None else None
    scorecard_metrics = None
    if with_scorecard:
        card = scored.set_index("application_id").loc[frame["application_id"], "scorecard_pd"]
        scorecard_metrics = metrics.evaluate(y, card.to_numpy(), n_boot=n_boot)
    ceiling_metrics = None
    if "ceiling_pd" in scored and scored["ceiling_pd"].notna().all():
        ceiling = scored.set_index("application_id").loc[frame["application_id"], "ceiling_pd"]
        ceiling_metrics = metrics.evaluate(y, ceiling.to_numpy(), n_boot=n_boot)

    # stability of the population the model scores: the labels known at the last T against the
    # applications after it, both scored by the served model
    last = folds[-1]
    before, after = rows.iloc[last.train], rows.iloc[last.test]
    score_before = pd.DataFrame({"score": _score(model.predict(before[features])["pd"].to_numpy())})
    score_after = pd.DataFrame({"score": _score(model.predict(after[features])["pd"].to_numpy())})
    psi = pd.concat([stability.psi_table(score_before, score_after, ["score"]),
                     stability.psi_table(before, after, features)], ignore_index=True)

    groups = frame if subject == "member" else None
    report = (fairness.fairness_report(groups, list(FAIRNESS_GROUPS), threshold=OPERATING_PD)
              if groups is not None else {})
    dates = sorted({str(pd.Timestamp(d).date()) for d in scored["deployed"]})
    evaluation = ChampionEvaluation(subject, version, len(frame), model_metrics, true_metrics, psi,
                                    report, time.perf_counter() - started, scorecard_metrics,
                                    frame=frame, backtest_dates=dates, backtest=per_t,
                                    ceiling=ceiling_metrics, drivers=drivers)
    test_rows = rows.set_index("application_id").loc[frame["application_id"]]
    contributions = inner.explain(test_rows[features]).contributions
    return ModelEvaluation(evaluation, y, pd_test, true, _score(pd_test),
                           np.abs(contributions).mean(axis=0), features)


def evaluation_frame(paths: Paths, scored: pd.DataFrame, subject: str) -> pd.DataFrame:
    """The evaluation's per-application frame: FRAME_COLUMNS plus the fairness groups (members),
    sorted by (as_of, application_id). `scored` needs application_id, entity_id, as_of, label, pd
    and may carry true_pd (else it is joined from the generator's truth, NaN without it)."""
    out = scored[["application_id", "entity_id", "as_of", "label", "pd"]].copy()
    out["label"] = out["label"].astype(int)
    if "true_pd" in scored:
        out["true_pd"] = scored["true_pd"].astype(float).to_numpy()
    else:
        truth = _truth(paths)
        out = out.merge(truth[["application_id", "true_pd"]] if truth is not None else pd.DataFrame(
            {"application_id": pd.Series(dtype=object), "true_pd": pd.Series(dtype=float)}),
            on="application_id", how="left", validate="one_to_one")
        out["true_pd"] = out["true_pd"].astype(float)
    groups = _with_groups(paths, out, subject)
    if groups is not None:
        out = groups
    out = out.sort_values(["as_of", "application_id"], kind="stable").reset_index(drop=True)
    return out.drop(columns=["entity_id"])


def _run_id(subject: str, version: str) -> str | None:
    try:
        return MlflowClient().get_model_version(registry.model_name(subject), version).run_id
    except MlflowException:
        return None


def _logged_backtest(subject: str, version: str, run_id: str | None):
    run_id = run_id or _run_id(subject, version)
    return load_backtest(run_id) if run_id else None


def _truth(paths: Paths) -> pd.DataFrame | None:
    """The generator's truth: application_id, true_pd and each driver's term (synthetic data)."""
    path = paths.clean / "true_pd.parquet"
    return pd.read_parquet(path) if path.exists() else None


def _score(pd_values: np.ndarray) -> np.ndarray:
    return scaling.score_from_log_odds(np.log(pd_values / (1 - pd_values)))


def _with_groups(paths: Paths, oot: pd.DataFrame, subject: str) -> pd.DataFrame | None:
    """Protected attributes are joined here, after scoring, for measurement only."""
    if subject != "member":
        return None
    members = pd.read_parquet(paths.clean / "members.parquet")
    keep = ["member_id", "province", *(g for g in FAIRNESS_GROUPS if g != "region")]
    out = oot[["entity_id", *(c for c in oot.columns if c not in keep and c != "entity_id")]].merge(
        members[keep].rename(columns={"member_id": "entity_id"}), on="entity_id", how="left",
        validate="many_to_one")
    out["region"] = fairness.region_of(out["province"])
    return out


def _ci(est: metrics.Estimate | None) -> list[float] | None:
    return None if est is None else [est.low, est.high]


def summary(ev: ChampionEvaluation, gates: dict[str, str] | None = None,
            ceiling_auc: float | None = None) -> dict:
    """The evaluation as one JSON-ready dict (`coopscore evaluate --json`): the headline numbers
    with their 95% CIs, the backtest's design, the calibration verdict and the gates' verdicts
    (None when unknown). `ceiling_auc` is the feature ceiling's (synthetic data; None on real data)."""
    if ceiling_auc is None and ev.ceiling is not None:
        ceiling_auc = ev.ceiling["auc"].value
    model, true, card = ev.model, ev.true_pd or {}, ev.scorecard or {}
    frame = ev.frame

    def value(d: dict, key: str) -> float | None:
        return d[key].value if key in d else None

    return {
        "subject": ev.subject, "model_version": ev.model_version,
        "auc": model["auc"].value, "auc_ci": _ci(model["auc"]),
        "true_pd_auc": value(true, "auc"), "true_pd_auc_ci": _ci(true.get("auc")),
        "ceiling_auc": ceiling_auc, "ceiling_auc_ci": _ci(ev.ceiling["auc"]) if ev.ceiling else None,
        "scorecard_auc": value(card, "auc"), "scorecard_auc_ci": _ci(card.get("auc")),
        "ks": model["ks"].value, "ks_ci": _ci(model["ks"]),
        "brier": model["brier"].value, "brier_ci": _ci(model["brier"]),
        "calibration_in_the_large": model["calibration_in_the_large"].value,
        "calibration_in_the_large_ci": _ci(model["calibration_in_the_large"]),
        "ece": model["ece"].value, "ece_ci": _ci(model["ece"]),
        "calibration_slope": ev.calibration_slope.value,
        "calibration_slope_ci": _ci(ev.calibration_slope),
        "calibration_pinned": ev.calibration_pinned, "calibration_reason": ev.calibration_reason,
        "backtest_dates": ev.backtest_dates or [],
        "n_test": ev.oot_rows,
        "n_defaults": int(frame["label"].sum()) if frame is not None else None,
        "gates": gates,
    }
