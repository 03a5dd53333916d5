"""The model card of a lender's own model: one self-contained HTML file, like the platform's cards.

    intended use and limits -> the label (coding, default rate) -> column roles -> validation
    -> every candidate's AUC with its 95% interval next to the logistic baseline -> the chosen model
    -> calibration (out-of-fold reliability) -> the points table (scorecard) or the features' mean
    absolute contributions (GBM, blend) -> the reason texts -> the score scale

Everything on it comes from the training run: the roles and label coding, the nested-CV selection
(its out-of-fold PDs for ROC and calibration), and the model refitted on every row. Plots are
embedded as PNG, with the platform card's style (evaluation.model_card), so a model-risk team reads
both the same way.
"""
from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402

from evaluation import metrics  # noqa: E402
# The platform card's look (style sheet, tables, embedded PNG) is shared rather than copied, so
# the two cards cannot drift apart.
from evaluation.model_card import _CSS, _png, _table, format_estimate, reliability_figure  # noqa: E402
from training import plots, scaling  # noqa: E402

BASELINE = "logistic"
CANDIDATE_LABELS = {
    "gbm": "calibrated gradient boosting (LightGBM)",
    "scorecard": "WoE scorecard (optbinning + logistic regression)",
    "blend": "blend of the GBM and the scorecard (mean log-odds)",
    "logistic": "logistic baseline (one-hot categories, standardised numbers)",
    "nested": "the whole procedure (candidate chosen inside each fold)",
}


def build_card(model, selection, coding, roles, path, X: pd.DataFrame | None = None) -> Path:
    """Write the card of `model` (a LoanBookModel) to `path` and return it.

    `selection` is the nested-CV Selection, `coding` the LabelCoding, `roles` the TableRoles. The
    GBM's and the blend's mean absolute contributions come from `model.importance`, or from the
    training rows `X` when given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(model, selection, coding, roles, X=X), encoding="utf-8")
    return path


def render(model, selection, coding, roles, X: pd.DataFrame | None = None) -> str:
    """The card as one HTML document (no external CSS, scripts or fonts)."""
    e = html.escape
    title = f"Model card: loan-book-{model.name}" + (f", version {model.version}" if model.version else "")
    meta = (f"A lender's own loan book: {coding.rows:,} loans, {coding.defaults:,} defaults. "
            f"Chosen model: {selection.chosen}. Card generated {dt.date.today().isoformat()}.")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p class='meta'>{e(meta)}</p>",
        _intended_use(),
        _label_section(coding),
        _roles_section(roles),
        _validation_section(selection),
        _candidates_section(selection),
        _chosen_section(model, selection),
        _calibration_section(selection, coding),
        _explanation_section(model, X),
        _reasons_section(model.reasons),
        _scale_section(),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _intended_use() -> str:
    use = [
        "Who it is for: the lender whose loan book it was trained on, to rank and price its own new "
        "applications of the same kind of loan. The PD, score and reasons support a credit "
        "officer's decision; they do not replace it.",
        "What it learned from: this lender's table only. None of the platform's data (members, "
        "cooperatives, transactions) went into it, and it says nothing about the platform's "
        "subjects.",
    ]
    limits = [
        "Loans unlike those in the book: another product, region, customer segment, amount range "
        "or period than the table covers. The figures below only hold for loans like the book's.",
        "Applicants scored with a column missing or read differently from training: the file is "
        "refused, and rows whose numbers cannot be read are rejected with the reason.",
        "Category levels never seen in training: such a cell is scored as missing, and every "
        "output row says so in its notes.",
        "Decisions other than credit on these loans (employment, insurance, pricing of other "
        "products).",
        "Use long after training without watching it: the book's population drifts; retrain when "
        "a new year of outcomes is known.",
    ]
    li = "".join
    return ("<h2>Intended use</h2><ul>" + li(f"<li>{html.escape(t)}</li>" for t in use)
            + "</ul><h2>Not for</h2><ul>" + li(f"<li>{html.escape(t)}</li>" for t in limits) + "</ul>")


def _label_section(coding) -> str:
    rows = [["target column", coding.column], ["value meaning default", coding.bad],
            ["value meaning repaid", coding.good], ["how the coding was decided", coding.how],
            ["rows", f"{coding.rows:,}"], ["defaults", f"{coding.defaults:,}"],
            ["default rate", f"{coding.default_rate:.2%}"]]
    note = ("Check the default rate: if it is the share of loans that were repaid, the coding is "
            "the wrong way round; retrain with --bad-value naming the value that means default.")
    return ("<h2>Label</h2>" + _table(["", "value"], rows)
            + f"<p class='callout'>{html.escape(note)}</p>")


def _roles_section(roles) -> str:
    table = roles.table()
    overridden = {r.column for r in roles.roles if r.overridden}
    rows = [[r.column, r.role, r.reason, f"{int(r.missing):,}" if r.missing else "",
             "yes" if r.column in overridden else ""] for r in table.itertuples(index=False)]
    out = [f"<h2>Column roles ({len(roles.features)} features)</h2>",
           _table(["column", "role", "reason", "read as missing", "set by the lender"], rows),
           "<p>Id, date, target and ignored columns are never features; the date orders the "
           "validation only.</p>"]
    if roles.category:
        levels = [[c, len(roles.categories.get(c, [])),
                   ", ".join(map(str, roles.categories.get(c, [])[:12]))
                   + (" ..." if len(roles.categories.get(c, [])) > 12 else "")]
                  for c in roles.category]
        out.append(_table(["category column", "levels seen in training", "levels"], levels))
    if roles.warnings:
        out.append("<h3>Warnings</h3><ul>" + "".join(f"<li>{html.escape(w)}</li>"
                                                     for w in roles.warnings) + "</ul>")
    return "\n".join(out)


def _validation_section(selection) -> str:
    y_of = _y_by_position(selection)
    rows = []
    for split in selection.splits:
        row = [split.name, f"{len(split.train):,}", f"{len(split.test):,}"]
        if y_of is not None:
            row.append(f"{int(y_of.reindex(split.test).sum()):,}")
        rows.append(row)
    headers = ["fold", "training rows", "test rows"] + (["test defaults"] if y_of is not None else [])
    note = ("Every candidate's hyper-parameters were chosen on inner splits of each outer fold's "
            "training rows only (nested cross-validation), so the test rows of a fold never "
            "influenced what was fitted on it."
            + (" Each training set holds only loans whose outcome window had closed before its "
               "test period starts." if selection.validation.startswith("out of time") else
               " The folds are random: without a date column the figures cannot show how the "
               "model ages, only how it ranks loans like those it was fitted on."))
    return (f"<h2>Validation</h2><p>{html.escape(selection.validation)}.</p>"
            + _table(headers, rows) + f"<p>{html.escape(note)}</p>")


def _y_by_position(selection) -> pd.Series | None:
    """Each row's outcome by its position, from the out-of-fold table (None if it has none)."""
    oof = getattr(selection, "oof", None)
    if oof is None or "y" not in oof or "position" not in oof:
        return None
    return oof.groupby("position")["y"].first()


def _candidates_section(selection) -> str:
    results = selection.candidates
    base = results.get(BASELINE)
    rows, classes = [], []
    for name, r in results.items():
        est = metrics.Estimate(r.auc, r.auc_low, r.auc_high)
        diff = "" if base is None or name == BASELINE else f"{r.auc - base.auc:+.3f}"
        folds = ", ".join(f"{a:.3f}" for a in (r.fold_aucs or []))
        params = _params_text(r.params_chosen)
        rows.append([name, CANDIDATE_LABELS.get(name, ""), format_estimate(est), diff, folds, params,
                     "chosen" if name == selection.chosen else ("baseline" if name == BASELINE else "")])
        classes.append("watch" if name == selection.chosen else "")
    note = ("AUC pooled over the out-of-fold rows with a 95% bootstrap interval. The baseline is a "
            "plain logistic regression on the same folds: a candidate whose interval sits around "
            "the baseline's adds little. 'nested' is the AUC of the whole procedure, the candidate "
            "itself being chosen inside each fold: the honest figure for the model deployed.")
    return ("<h2>Candidates</h2>"
            + _table(["candidate", "what it is", "AUC (95% CI)", "against the baseline",
                      "AUC per outer fold", "hyper-parameters chosen per fold", ""], rows,
                     row_classes=classes)
            + f"<p>{html.escape(note)}</p>" + _roc_plot(selection))


def _params_text(params_chosen) -> str:
    """One fold's choice after another: "C=0.2; C=1.0", or "gbm (num_leaves=4)" for the nested row."""
    def one(p: dict) -> str:
        if "candidate" in p:  # the nested procedure picked a candidate and its parameters
            return f"{p['candidate']} ({one(p.get('params') or {})})"
        return ", ".join(f"{k}={v}" for k, v in sorted(p.items())) or "-"
    return "; ".join(one(p) for p in params_chosen or [])


def _pd_column(oof: pd.DataFrame, name: str) -> str | None:
    for column in (name, f"pd_{name}", f"{name}_pd"):
        if column in oof.columns:
            return column
    return None


def _roc_plot(selection) -> str:
    oof = getattr(selection, "oof", None)
    if oof is None or "y" not in oof:
        return ""
    curves = {n: oof[c].to_numpy() for n in selection.candidates
              if (c := _pd_column(oof, n)) is not None and oof[c].notna().all()}
    if not curves or oof["y"].nunique() < 2:
        return ""
    fig = plots.roc(oof["y"].to_numpy(), curves)
    fig.axes[0].set_title("ROC, out of fold")
    return _figure(fig, "ROC curves of the candidates, out of fold")


def _chosen_section(model, selection) -> str:
    params = ", ".join(f"{k} = {v}" for k, v in sorted(selection.chosen_params.items())) or "defaults"
    text = (f"Chosen: {selection.chosen} ({CANDIDATE_LABELS.get(selection.chosen, '')}), with "
            f"{params}, chosen again by inner cross-validation on all rows, then refitted on every "
            f"row of the book ({model.coding.rows:,} loans). The figures above are those of the "
            "procedure on held-out rows; the refitted model has seen more data than any fold's.")
    return f"<h2>The model registered</h2><p>{html.escape(text)}</p>"


def _calibration_section(selection, coding) -> str:
    oof = getattr(selection, "oof", None)
    column = _pd_column(oof, selection.chosen) if oof is not None else None
    if column is None or "y" not in oof:
        return "<h2>Calibration</h2><p>No out-of-fold PDs were kept for the chosen model.</p>"
    frame = oof[["y", column]].dropna()
    y, p = frame["y"].to_numpy(dtype=float), frame[column].to_numpy(dtype=float)
    curve = metrics.reliability_curve(y, p, bins=10)
    rows = [[int(r.bin) + 1, int(r["count"]), f"{r.mean_pd:.2%}", f"{r.bad_rate:.2%}",
             f"{r.mean_pd - r.bad_rate:+.2%}"] for _, r in curve.iterrows()]
    figures = [("calibration_in_the_large", "mean PD - default rate"),
               ("ece", "expected calibration error"),
               ("calibration_slope", "calibration slope (1 = right spread)")]
    summary = []
    for key, label in figures:
        est = metrics.bootstrap(metrics.METRICS[key], y, p, n=200)
        summary.append([label, format_estimate(est)])
    note = (f"Out-of-fold PDs of the chosen candidate ({selection.chosen}) on {len(y):,} held-out "
            f"rows, in ten bins of PD; the book's default rate is {coding.default_rate:.2%}. Each "
            "candidate's PD comes calibrated from its own fit (the GBM by Platt scaling of its "
            "out-of-fold margins, the scorecard by its logistic regression); these held-out rows "
            "measure that calibration, they did not fit it.")
    return ("<h2>Calibration</h2>" + _table(["", "95% CI"], summary)
            + _table(["PD bin (lowest first)", "rows", "mean PD", "default rate", "difference"], rows)
            + f"<p>{html.escape(note)}</p>" + _figure(_reliability(curve), "Reliability, out of fold"))


def _reliability(curve: pd.DataFrame):
    return reliability_figure(curve, "chosen model", "bin", "Reliability, out of fold")


def _explanation_section(model, X: pd.DataFrame | None) -> str:
    candidate = model.candidate
    if hasattr(candidate, "points_table"):
        table = candidate.points_table()
        rows = [[r.feature, r.bin, f"{float(r.points):.1f}"]
                for r in table[["feature", "bin", "points"]].itertuples(index=False)]
        note = ("Points of each bin of each feature; an applicant's score is the sum of the points "
                "of the bins they fall in (plus the base, where the table lists one). Fewer points, "
                "higher risk.")
        return ("<h2>Points table</h2>" + f"<p>{html.escape(note)}</p>"
                + _table(["feature", "bin", "points"], rows))
    importance = model.importance
    if importance is None and X is not None:
        from loan_book.model import feature_importance  # model imports nothing from the card

        importance = feature_importance(candidate, X)
    if importance is None:
        return ("<h2>What drives the score</h2><p>The mean absolute contributions were not "
                "computed for this card (no training rows were given).</p>")
    rows = [[r.feature, f"{r.mean_abs_contribution:.4f}", f"{r.mean_abs_points:.1f}"]
            for r in importance.itertuples(index=False)]
    fig = plots.importance(list(importance["feature"]), importance["mean_abs_contribution"].to_numpy())
    note = ("Mean absolute contribution of each feature to the log-odds of default over the book's "
            "rows (exact additive contributions: a row's contributions and the base sum to its "
            "log-odds), and the same in score points. The three largest positive contributions of a "
            "row are its reasons.")
    return ("<h2>What drives the score</h2>" + f"<p>{html.escape(note)}</p>"
            + _table(["feature", "mean |contribution| (log-odds)", "mean |points|"], rows)
            + _figure(fig, "Mean absolute contribution to the log-odds"))


def _reasons_section(reasons) -> str:
    table = reasons.table()
    rows = [[r.code, r.text_vi, r.text_en, r.source] for r in table.itertuples(index=False)]
    note = ("Each scored row gives up to three reasons: the features that raise its risk most. The "
            "code is the column's name; texts come from the lender's reasons file "
            "(column,text_vi,text_en) where given, else from the column's name.")
    return ("<h2>Reason texts</h2>" + f"<p>{html.escape(note)}</p>"
            + _table(["code", "Vietnamese", "English", "source"], rows))


def _scale_section() -> str:
    grades = ", ".join(f"{g} up to {u:.0%}" for g, u in scaling.GRADE_UPPER_PD)
    text = (f"Score = {scaling.BASE_SCORE:.0f} at odds of {scaling.BASE_ODDS:.0f} good to 1 bad, "
            f"{scaling.PDO:.0f} points more each time the odds double (the platform's scale, "
            f"training.scaling); not clipped. Grades by PD: {grades}.")
    return f"<h2>Score scale</h2><p>{html.escape(text)}</p>"


def _figure(fig, title: str) -> str:
    return (f"<figure><img src=\"{_png(fig)}\" alt=\"{html.escape(title)}\">"
            f"<figcaption>{html.escape(title)}</figcaption></figure>")

