"""Promotion gates, promote and rollback: who may become `champion`, decided and recorded.

A challenger (a registered version) is promoted only if, on the same out-of-time applications:
- its AUC is at least the lower end of the champion's 95% interval (as good, within noise);
- it is calibrated: |calibration-in-the-large| and the expected calibration error within bounds;
- no feature drifts: every feature's PSI (training months -> out of time) at most the bound;
- it is fair enough: the approval-rate gap between groups at the operating threshold within bound.
Every gate's result is written as a tag on the version; the previous champion keeps the alias
`previous-champion`, so `rollback` can restore it.
"""
from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient

from evaluation import fairness
from evaluation.champion import ChampionEvaluation, evaluate_model
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


@dataclass
class GateResult:
    """One gate's verdict and the numbers behind it, as written on the version's tag."""

    name: str
    passed: bool
    detail: str


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


def check_gates(challenger: ChampionEvaluation, champion: ChampionEvaluation | None,
                gates: Gates) -> list[GateResult]:
    """Run every gate on the challenger's evaluation, against the champion's when there is one."""
    out = []
    auc = challenger.model["auc"].value
    if champion is None:
        out.append(GateResult("auc", True, f"AUC {auc:.3f}; no champion to compare with"))
    else:
        floor = champion.model["auc"].low
        out.append(GateResult("auc", auc >= floor, f"AUC {auc:.3f} against the champion's "
                              f"{champion.model['auc'].value:.3f} (95% CI low {floor:.3f})"))
    citl = challenger.model["calibration_in_the_large"].value
    ece = challenger.model["ece"].value
    out.append(GateResult("calibration", abs(citl) <= gates.max_abs_calibration_in_the_large
                          and ece <= gates.max_ece,
                          f"calibration-in-the-large {citl:+.3f} (bound ±"
                          f"{gates.max_abs_calibration_in_the_large}), ECE {ece:.3f} (bound {gates.max_ece})"))
    features = challenger.psi[challenger.psi["column"] != "score"]
    worst = features.sort_values("psi", ascending=False).iloc[0]
    out.append(GateResult("stability", float(worst["psi"]) <= gates.max_feature_psi,
                          f"largest feature PSI {worst['psi']:.3f} ({worst['column']}); "
                          f"bound {gates.max_feature_psi}"))
    gaps = [(column, fairness.gaps(table)["approval_rate"]) for column, table in challenger.fairness.items()]
    gaps = [(c, g) for c, g in gaps if g == g]  # NaN when a grouping has one measurable group
    if gaps:
        column, gap = max(gaps, key=lambda cg: cg[1])
        out.append(GateResult("fairness", gap <= gates.max_approval_rate_gap,
                              f"largest approval-rate gap {gap:.3f} across {column}; "
                              f"bound {gates.max_approval_rate_gap}"))
    else:
        out.append(GateResult("fairness", True, "no protected groups recorded for this subject"))
    return out


def promote(paths: Paths, subject: str, version: str | None = None, gates: Gates = Gates(),
            n_boot: int = 200, override: str | None = None) -> Decision:
    """Evaluate `version` (default: the newest) against the champion and move the aliases.

    `override` is the model owner's written reason to promote despite failed gates (for example a
    first champion on a young platform); it is recorded on the version next to the failed gates."""
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
    results = check_gates(challenger, champion, gates)
    passed = all(r.passed for r in results)
    promoted = passed or override is not None
    for r in results:
        client.set_model_version_tag(name, version, f"gate.{r.name}",
                                     f"{'pass' if r.passed else 'FAIL'}: {r.detail}")
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
    else:
        client.set_registered_model_alias(name, CHALLENGER, version)
    return Decision(subject, version, promoted, results,
                    str(current.version) if current else None, overridden=promoted and not passed)


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
