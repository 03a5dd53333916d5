"""Figures logged with every training run (matplotlib, no screen needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def roc(y, curves: dict[str, np.ndarray]):
    """ROC curves of several scores on the same outcomes `y`."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, scores in curves.items():
        fpr, tpr, _ = roc_curve(y, scores)
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, out of time")
    ax.legend(loc="lower right")
    return fig


def calibration(y, pd_values):
    """Observed default rate against predicted PD, by quantile bin."""
    fig, ax = plt.subplots(figsize=(5, 5))
    bins = min(10, max(3, int(np.sum(y)) // 5))
    frac, mean = calibration_curve(y, pd_values, n_bins=bins, strategy="quantile")
    ax.plot(mean, frac, "o-", label="model")
    top = max(mean.max(), frac.max()) * 1.1
    ax.plot([0, top], [0, top], "k:", lw=1, label="perfect")
    ax.set(xlabel="predicted PD", ylabel="observed default rate", title="Calibration, out of time")
    ax.legend()
    return fig


def importance(features: list[str], mean_abs_contribution: np.ndarray, top: int = 20):
    """The `top` features by mean absolute contribution to the log-odds."""
    order = np.argsort(mean_abs_contribution)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(order) + 1))
    ax.barh([features[i] for i in order], mean_abs_contribution[order])
    ax.set(xlabel="mean |contribution| to log-odds", title="What drives the score")
    fig.tight_layout()
    return fig


def score_distribution(scores, y):
    """Score densities of repaid and defaulted applications."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(scores[y == 0], bins=40, alpha=0.6, density=True, label="repaid")
    ax.hist(scores[y == 1], bins=40, alpha=0.6, density=True, label="defaulted")
    ax.set(xlabel="score", ylabel="density", title="Scores by outcome, out of time")
    ax.legend()
    return fig
