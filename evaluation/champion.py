"""Evaluate the champion model of a subject on its out-of-time applications.

One call gives what a model-risk team asks first: how well it ranks and how well it is calibrated
(with 95% bootstrap intervals), the same for the true PD on synthetic data (the best any model
could do), how stable the score and the features are between the training and out-of-time
periods (PSI), and how it treats groups at the operating threshold (fairness).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd

from evaluation import fairness, metrics, stability
from settings import Paths
from training import registry, scaling
from training.dataset import build_training_set, out_of_time_split
from training.scorecard import fit_scorecard

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
    """The champion-style evaluation plus the out-of-time arrays the card's plots need."""

    evaluation: ChampionEvaluation
    y: np.ndarray
    pd: np.ndarray
    true_pd: np.ndarray | None
    scores: np.ndarray
    mean_abs_contribution: np.ndarray  # per feature, in the model's feature order
    features: list[str]


def evaluate_model(paths: Paths, subject: str, model, version: str,
                   n_boot: int = 200, with_scorecard: bool = True) -> ModelEvaluation:
    """Evaluate any loaded pyfunc model of `subject` on its out-of-time applications.

    `with_scorecard=False` skips fitting the WoE challenger (the promotion gates do not need it)."""
    started = time.perf_counter()
    inner = model.unwrap_python_model()
    features = list(inner.features)
    rows = build_training_set(paths.clean, subject)
    unknown = sorted(set(features) - set(rows.columns))
    if unknown:
        raise LookupError(f"the model (version {version}) uses features the catalogue no longer "
                          f"computes: {unknown}. Retrain with `coopscore train`.")
    split = out_of_time_split(rows[rows["enough_history"]])
    oot = split.oot.copy()
    oot["pd"] = model.predict(oot[features])["pd"].to_numpy()
    train_pd = model.predict(split.train[features])["pd"].to_numpy()

    y = oot["label"].to_numpy()
    pd_oot = oot["pd"].to_numpy()
    model_metrics = metrics.evaluate(y, pd_oot, n_boot=n_boot)
    true = _true_pd(paths, oot)
    true_metrics = metrics.evaluate(y, true, n_boot=n_boot) if true is not None else None

    scores = pd.DataFrame({"score": _score(train_pd)})
    oot_scores = pd.DataFrame({"score": _score(pd_oot)})
    psi = pd.concat([stability.psi_table(scores, oot_scores, ["score"]),
                     stability.psi_table(split.train, oot, features)], ignore_index=True)

    groups = _with_groups(paths, oot[["entity_id", "label", "pd"]], subject)
    report = (fairness.fairness_report(groups, list(FAIRNESS_GROUPS), threshold=OPERATING_PD)
              if groups is not None else {})
    scorecard_metrics = None
    if with_scorecard:
        scorecard = fit_scorecard(split.train, features)
        scorecard_metrics = metrics.evaluate(y, scorecard.pd(oot), n_boot=n_boot)
    frame = test_frame(paths, oot, subject)
    evaluation = ChampionEvaluation(subject, version, len(oot), model_metrics, true_metrics, psi,
                                    report, time.perf_counter() - started, scorecard_metrics,
                                    frame=frame)
    contributions = inner.explain(oot[features]).contributions
    return ModelEvaluation(evaluation, y, pd_oot, true, oot_scores["score"].to_numpy(),
                           np.abs(contributions).mean(axis=0), features)


def test_frame(paths: Paths, scored: pd.DataFrame, subject: str) -> pd.DataFrame:
    """The evaluation's per-application frame: FRAME_COLUMNS plus the fairness groups (members),
    sorted by (as_of, application_id). `scored` needs application_id, entity_id, as_of, label, pd."""
    out = scored[["application_id", "entity_id", "as_of", "label", "pd"]].copy()
    out["label"] = out["label"].astype(int)
    path = paths.clean / "true_pd.parquet"
    truth = (pd.read_parquet(path) if path.exists()
             else pd.DataFrame({"application_id": pd.Series(dtype=object), "true_pd": []}))
    out = out.merge(truth[["application_id", "true_pd"]], on="application_id", how="left",
                    validate="one_to_one")
    out["true_pd"] = out["true_pd"].astype(float)
    groups = _with_groups(paths, out, subject)
    if groups is not None:
        out = groups
    out = out.sort_values(["as_of", "application_id"], kind="stable").reset_index(drop=True)
    return out.drop(columns=["entity_id"])


def _score(pd_values: np.ndarray) -> np.ndarray:
    return scaling.score_from_log_odds(np.log(pd_values / (1 - pd_values)))


def _true_pd(paths: Paths, oot: pd.DataFrame):
    path = paths.clean / "true_pd.parquet"
    if not path.exists():
        return None
    joined = oot[["application_id"]].merge(pd.read_parquet(path), on="application_id", how="left")
    return joined["true_pd"].to_numpy() if joined["true_pd"].notna().all() else None


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
