"""Promotion gates, promote and rollback: who may become `champion`, decided and recorded.

A challenger (a registered version) is promoted only if, on the same test applications:
- its AUC is not significantly worse than the champion's: the paired (DeLong) 95% CI of
  AUC(challenger) - AUC(champion) does not lie wholly below -`auc_tolerance` (`evaluation.compare`);
- it is calibrated: |calibration-in-the-large| and the expected calibration error within bounds,
  and its calibration is pinned down (the evaluation's `calibration_pinned`, with its reason);
- no feature drifts: every feature's PSI (training months -> out of time) at most the bound;
- it is fair enough: for every protected and proxy grouping, neither the approval-rate gap nor the
  equal-opportunity gap at the operating threshold is over its bound on its CI's *lower* bound, and
  the challenger does not widen either gap beyond the champion's, nor beyond the true PD's when
  the data records it, by more than the CI of that (paired) difference. Groups with fewer than
  `min_defaults_per_group` defaults are listed as too small to judge and never trip the gate.
Gates decide on intervals, so a verdict does not hinge on noise or a bootstrap seed. Every gate's
verdict and numbers are written as tags on the version (`Decision.table()` is the same as a table);
the previous champion keeps the alias `previous-champion`, so `rollback` can restore it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from evaluation import compare, fairness, metrics
from evaluation.champion import OPERATING_PD, ChampionEvaluation, ModelEvaluation, evaluate_model
from settings import Paths
from training import registry

PREVIOUS = "previous-champion"  # the alias `rollback` restores
CHALLENGER = "challenger"  # the alias of the latest version the gates refused


@dataclass(frozen=True)
class Gates:
    """The bounds a challenger must meet (the defaults are `coopscore promote`'s)."""

    max_abs_calibration_in_the_large: float = 0.02
    max_ece: float = 0.03
    max_feature_psi: float = 0.25
    max_approval_rate_gap: float = 0.15
    # refuse only a challenger significantly worse by more than this much AUC (see evaluation.compare)
    auc_tolerance: float = compare.AUC_TOLERANCE
    max_equal_opportunity_gap: float = 0.15
    # how much a challenger may widen a gap beyond the champion's or the true PD's (on the CI's
    # lower bound of the paired difference); 0: any widening that is more than noise trips
    max_gap_widening: float = 0.0
    min_defaults_per_group: int = fairness.MIN_DEFAULTS_TO_JUDGE
    require_pinned_calibration: bool = True
    # the shadow (live traffic): refuse a challenger whose approval rate at the operating cut-off moves
    # by more than this on the champion's own applicants, judged on the interval (evaluation/shadow.py)
    max_shadow_approval_shift: float = 0.10


GATE_MIN_BOOT = 500  # the fewest bootstrap resamples a gate's interval rests on

# the columns of every gate's table and of `Decision.table()`
TABLE_COLUMNS = ["gate", "check", "group_column", "value", "low", "high", "bound", "verdict",
                 "trips", "too_small"]


@dataclass
class GateResult:
    """One gate's verdict and the numbers behind it, as written on the version's tags.

    `table` has one row per check the gate made (TABLE_COLUMNS); None for a gate without numbers."""

    name: str
    passed: bool
    detail: str
    table: pd.DataFrame | None = None


@dataclass
class Decision:
    """What promote decided about a version, every gate's result, and who was champion before."""

    subject: str
    version: str
    promoted: bool
    gates: list[GateResult]
    champion_before: str | None
    overridden: bool = False

    def failed(self) -> list[GateResult]:
        """The gates the version did not pass."""
        return [g for g in self.gates if not g.passed]

    def table(self) -> pd.DataFrame:
        """Every gate's checks as one table (TABLE_COLUMNS), for the model card and the CLI."""
        return gates_table(self.gates)


def gates_table(results: list[GateResult]) -> pd.DataFrame:
    """The checks of `results` as one table; a gate without numbers is one row with its verdict."""
    parts = []
    for r in results:
        if r.table is not None and len(r.table):
            parts.append(r.table)
        else:
            parts.append(pd.DataFrame([{"gate": r.name, "check": r.name, "group_column": "",
                                        "value": math.nan, "low": math.nan, "high": math.nan,
                                        "bound": math.nan, "verdict": r.detail,
                                        "trips": not r.passed, "too_small": ""}]))
    return pd.concat(parts, ignore_index=True)[TABLE_COLUMNS]


def _evaluation(ev) -> ChampionEvaluation:
    return ev.evaluation if isinstance(ev, ModelEvaluation) else ev


def _frame(ev) -> pd.DataFrame | None:
    return getattr(_evaluation(ev), "frame", None)


def _paired(challenger: pd.DataFrame, champion: pd.DataFrame) -> pd.DataFrame:
    """The challenger's frame with the champion's PD as `pd_champion`, row by row."""
    if len(challenger) != len(champion) or not np.array_equal(
            challenger["application_id"].to_numpy(), champion["application_id"].to_numpy()):
        raise ValueError("the challenger and the champion were not evaluated on the same "
                         "applications in the same order: evaluate both on the same data")
    return challenger.assign(pd_champion=champion["pd"].to_numpy())


def auc_gate(challenger: pd.DataFrame, champion: pd.DataFrame | None, gates: Gates) -> GateResult:
    """Refuse only a challenger whose AUC is significantly worse than the champion's (paired DeLong
    on the same applications, beyond `gates.auc_tolerance`)."""
    if champion is None:
        auc = metrics.auc(challenger["label"], challenger["pd"])
        return GateResult("auc", True, f"AUC {auc:.3f}; no champion to compare with")
    both = _paired(challenger, champion)
    diff = compare.delong_auc_difference(both["label"], both["pd"], both["pd_champion"])
    passed = compare.auc_not_worse(diff, gates.auc_tolerance)
    verdict = ("not significantly worse" if passed
               else f"significantly worse by more than {gates.auc_tolerance}")
    table = pd.DataFrame([{"gate": "auc", "check": "auc_difference_vs_champion", "group_column": "",
                           "value": diff.value, "low": diff.low, "high": diff.high,
                           "bound": -gates.auc_tolerance, "verdict": verdict, "trips": not passed,
                           "too_small": ""}], columns=TABLE_COLUMNS)
    return GateResult("auc", passed, f"AUC challenger - champion {diff.value:+.4f} (paired DeLong "
                      f"95% CI {diff.low:+.4f} to {diff.high:+.4f}) on {len(both)} applications: "
                      f"{verdict} (refused only if the CI lies below {-gates.auc_tolerance:+.3f})",
                      table)


def calibration_evidence_gate(challenger, gates: Gates) -> GateResult:
    """Refuse a model whose calibration cannot be pinned down (the evaluation says why)."""
    ev = _evaluation(challenger)
    pinned = getattr(ev, "calibration_pinned", None)
    reason = getattr(ev, "calibration_reason", None) or ""
    if pinned is None:
        return GateResult("calibration_evidence", not gates.require_pinned_calibration,
                          "the evaluation does not say whether the calibration is pinned down (no "
                          "`calibration_pinned`): re-evaluate with the current coopscore")
    if not gates.require_pinned_calibration:
        return GateResult("calibration_evidence", True, f"not required; {reason}")
    return GateResult("calibration_evidence", bool(pinned), reason or
                      ("pinned down" if pinned else "the calibration cannot be pinned down"))


def fairness_gate(challenger: pd.DataFrame, champion: pd.DataFrame | None, gates: Gates,
                  threshold: float = OPERATING_PD, n_boot: int = 500, seed: int = 0) -> GateResult:
    """Approval-rate and equal-opportunity gaps per protected and proxy grouping, on intervals.

    Trips when a gap's CI lower bound is over its bound, or when the challenger widens a gap beyond
    the champion's (or the true PD's, when every row has one) by more than `max_gap_widening` on
    the lower bound of the paired difference. Groups with too few defaults never trip it."""
    champion_pd = _paired(challenger, champion)["pd_champion"] if champion is not None else None
    gaps = fairness.model_gap_intervals(challenger, threshold, champion_pd, n_boot=n_boot, seed=seed,
                                        min_defaults=gates.min_defaults_per_group)
    if gaps.empty:
        return GateResult("fairness", True, "no protected groups recorded for this subject")
    columns = gaps["group_column"].unique()
    bounds = {"approval_rate": gates.max_approval_rate_gap,
              "equal_opportunity": gates.max_equal_opportunity_gap}
    rows = []
    for r in gaps[gaps["scorer"] == "model"].itertuples():
        widening = bool(r.versus)
        bound = gates.max_gap_widening if widening else bounds[r.gap]
        if r.value != r.value:  # fewer than two groups with enough defaults
            verdict, trips = fairness.TOO_SMALL_TO_JUDGE, False
        elif r.low > bound:
            verdict, trips = (f"widened beyond the {r.versus}'s" if widening else "over the bound"), True
        elif r.high > bound:
            verdict, trips = ("maybe widened" if widening else "maybe over") + ": not evidence", False
        else:
            verdict, trips = "within", False
        check = f"{r.gap}_gap" + (f"_widening_vs_{r.versus}" if widening else "")
        rows.append({"gate": "fairness", "check": check, "group_column": r.group_column,
                     "value": r.value, "low": r.low, "high": r.high, "bound": bound,
                     "verdict": verdict, "trips": trips, "too_small": r.too_small})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    tripped = table[table["trips"]]
    unjudged = sorted(set(table.loc[table["verdict"] == fairness.TOO_SMALL_TO_JUDGE, "group_column"]))
    small = sorted({c for c, t in zip(table["group_column"], table["too_small"]) if t} - set(unjudged))
    detail = ("; ".join(f"{r.check} across {r.group_column} {r.value:.3f} (95% CI {r.low:.3f} to "
                        f"{r.high:.3f}) over {r.bound}" for r in tripped.itertuples())
              or f"no gap over its bound on its CI's lower bound ({len(columns)} groupings)")
    if unjudged:
        detail += f"; too small to judge (fewer than 2 groups with {gates.min_defaults_per_group}+ " \
                  f"defaults): {', '.join(unjudged)}"
    if small:
        detail += f"; groups too small to judge within {', '.join(small)}"
    return GateResult("fairness", tripped.empty, detail, table)


def shadow_gate(report, gates: Gates) -> GateResult:
    """Refuse a challenger whose approval rate on live traffic, scored in the shadow beside the
    champion, moves by more than `max_shadow_approval_shift` for certain (the whole 95% interval
    outside the bound). No shadow rows: the gate cannot judge and says so (a new challenger has
    not met live traffic yet); it does not refuse."""
    if report is None:
        return GateResult("shadow", True, "no shadow answers recorded for this version: the gate did "
                          "not run (alias it `challenger` and let the service score beside the champion)")
    change, bound = report.approval_change, gates.max_shadow_approval_shift
    tripped = change.low > bound or change.high < -bound
    table = pd.DataFrame([{"gate": "shadow", "check": "approval_rate_change", "group_column": None,
                           "value": change.value, "low": change.low, "high": change.high, "bound": bound,
                           "verdict": "trips" if tripped else "holds", "trips": tripped, "too_small": False}])
    return GateResult("shadow", not tripped,
                      f"on {report.n} live answers: approval rate {report.approval_champion:.1%} -> "
                      f"{report.approval_challenger:.1%} (change {change.value:+.3f} [{change.low:+.3f}, "
                      f"{change.high:+.3f}], bound ±{bound}); same grade {report.grade_agreement.value:.1%}, "
                      f"rank correlation {report.rank_correlation.value:.3f}", table)


def check_gates(challenger, champion, gates: Gates, n_boot: int = 500,
                seed: int = 0, shadow=None) -> list[GateResult]:
    """Run every gate on the challenger's evaluation, against the champion's when there is one.

    Either evaluation may be a ChampionEvaluation or a ModelEvaluation; the AUC and fairness gates
    read its per-application `frame` (both evaluated on the same applications)."""
    ev, champ = _evaluation(challenger), (_evaluation(champion) if champion is not None else None)
    frame, champ_frame = _frame(ev), (_frame(champ) if champ is not None else None)
    out = []
    if frame is None or (champ is not None and champ_frame is None):
        out.append(GateResult("auc", False, "the evaluation carries no per-application frame, so "
                              "the AUCs cannot be compared on the same applications: re-evaluate "
                              "with the current coopscore"))
    else:
        out.append(auc_gate(frame, champ_frame, gates))
    citl = ev.model["calibration_in_the_large"].value
    ece = ev.model["ece"].value
    out.append(GateResult("calibration", abs(citl) <= gates.max_abs_calibration_in_the_large
                          and ece <= gates.max_ece,
                          f"calibration-in-the-large {citl:+.3f} (bound ±"
                          f"{gates.max_abs_calibration_in_the_large}), ECE {ece:.3f} (bound {gates.max_ece})"))
    out.append(calibration_evidence_gate(ev, gates))
    features = ev.psi[ev.psi["column"] != "score"]
    worst = features.sort_values("psi", ascending=False).iloc[0]
    out.append(GateResult("stability", float(worst["psi"]) <= gates.max_feature_psi,
                          f"largest feature PSI {worst['psi']:.3f} ({worst['column']}); "
                          f"bound {gates.max_feature_psi}"))
    if frame is None:
        out.append(GateResult("fairness", False, "the evaluation carries no per-application frame: "
                              "re-evaluate with the current coopscore"))
    else:
        out.append(fairness_gate(frame, champ_frame, gates, n_boot=n_boot, seed=seed))
    out.append(shadow_gate(shadow, gates))
    return out


def promote(paths: Paths, subject: str, version: str | None = None, gates: Gates = Gates(),
            n_boot: int = 200, override: str | None = None, shadow=None) -> Decision:
    """Evaluate `version` (default: the newest) against the champion and move the aliases.

    `override` is the model owner's written reason to promote despite failed gates (for example a
    first champion on a young platform); it is recorded on the version next to the failed gates.
    `shadow` is the version's `evaluation.shadow.ShadowReport` on live traffic, when it has one."""
    if override is not None and not override.strip():
        raise LookupError("an override needs a reason: say why the failed gates are accepted.")
    registry.use_store(paths)
    client = MlflowClient()
    name = registry.model_name(subject)
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise LookupError(f"no registered {subject} model: run `coopscore train` first.")
    version = version or str(max(int(v.version) for v in versions))
    if version not in {str(v.version) for v in versions}:
        raise LookupError(f"{name} has no version {version}; versions: "
                          f"{sorted(int(v.version) for v in versions)}")
    current = registry.champion_version(subject)
    if current is not None and str(current.version) == version:
        raise LookupError(f"version {version} is already the champion")
    challenger = _evaluate(paths, subject, name, version, n_boot)
    champion = _evaluate(paths, subject, name, str(current.version), n_boot) if current else None
    # the gates' own resamples are cheap (0.3 s for 500 on 2,000 applications): at least 500, so
    # that a percentile bound does not move with the seed
    if shadow is not None and str(shadow.challenger_version) != version:
        raise LookupError(f"the shadow report is of version {shadow.challenger_version}, not {version}")
    results = check_gates(challenger, champion, gates, n_boot=max(n_boot, GATE_MIN_BOOT), shadow=shadow)
    passed = all(r.passed for r in results)
    promoted = passed or override is not None
    for r in results:
        client.set_model_version_tag(name, version, f"gate.{r.name}",
                                     f"{'pass' if r.passed else 'FAIL'}: {r.detail}")
    for key, value in gate_tags(results).items():
        client.set_model_version_tag(name, version, key, value)
    if passed:
        outcome = "promoted to champion"
    elif promoted:
        outcome = "promoted by override despite failed gates"
        client.set_model_version_tag(name, version, "promotion.override_reason", override.strip())
    else:
        outcome = "refused by the gates"
    client.set_model_version_tag(name, version, "promotion", outcome)
    if promoted:
        if current is not None:
            client.set_registered_model_alias(name, PREVIOUS, current.version)
        client.set_registered_model_alias(name, registry.CHAMPION, version)
        try:  # a challenger that becomes champion is no longer a challenger (the shadow stops)
            if str(client.get_model_version_by_alias(name, CHALLENGER).version) == version:
                client.delete_registered_model_alias(name, CHALLENGER)
        except mlflow.exceptions.MlflowException:
            pass  # no challenger alias
    else:
        client.set_registered_model_alias(name, CHALLENGER, version)
    return Decision(subject, version, promoted, results,
                    str(current.version) if current else None, overridden=promoted and not passed)


def gate_tags(results: list[GateResult]) -> dict[str, str]:
    """One tag per check with numbers: `gate.<gate>.<check>[.<grouping>]` -> "value [low, high]
    bound b: verdict", so a model version carries the evidence its verdict rests on."""
    tags = {}
    with_numbers = [r for r in results if r.table is not None and len(r.table)]
    for row in (gates_table(with_numbers).itertuples() if with_numbers else ()):
        key = f"gate.{row.gate}.{row.check}" + (f".{row.group_column}" if row.group_column else "")
        tags[key] = (f"{row.value:.4f} [{row.low:.4f}, {row.high:.4f}] bound {row.bound}: "
                     f"{row.verdict}" + (f"; too small to judge: {row.too_small}"
                                         if row.too_small else ""))[:5000]
    return tags


def _evaluate(paths: Paths, subject: str, name: str, version: str, n_boot: int) -> ChampionEvaluation:
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return evaluate_model(paths, subject, model, version, n_boot, with_scorecard=False).evaluation


def rollback(paths: Paths, subject: str) -> tuple[str, str]:
    """Make the previous champion champion again; returns (from_version, to_version)."""
    registry.use_store(paths)
    client = MlflowClient()
    name = registry.model_name(subject)
    try:
        previous = client.get_model_version_by_alias(name, PREVIOUS)
    except mlflow.exceptions.MlflowException:
        raise LookupError(f"{name} has no previous champion to roll back to") from None
    current = registry.champion_version(subject)
    client.set_registered_model_alias(name, registry.CHAMPION, previous.version)
    client.delete_registered_model_alias(name, PREVIOUS)
    if current is not None:
        client.set_model_version_tag(name, current.version, "promotion", "rolled back")
    return (str(current.version) if current else "-", str(previous.version))
