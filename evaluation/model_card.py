"""A model card for one training run: one self-contained HTML file a model-risk team can read offline.

`build_model_card(paths, run_id)` finds the run in MLflow, loads that run's model (not necessarily
the champion), evaluates it by its as-deployed backtest exactly as `evaluation.champion` does
for the champion, and writes `reports/<run_id>/model_card.html` (plots embedded as base64 PNG, no
external CSS, JavaScript or fonts). The card is also logged to the run as
`model_card/model_card.html`.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from evaluation import fairness, metrics  # noqa: E402
from evaluation.champion import (OPERATING_PD, ChampionEvaluation, ModelEvaluation,  # noqa: E402
                                 evaluate_model)
from features.catalogue import FEATURES_BY_NAME  # noqa: E402
from settings import Paths  # noqa: E402
from training import plots, registry  # noqa: E402

CARD_NAME = "model_card.html"
ARTIFACT_DIR = "model_card"

METRIC_LABELS = {
    "auc": "AUC",
    "gini": "Gini",
    "ks": "KS",
    "brier": "Brier score",
    "log_loss": "Log loss",
    "calibration_in_the_large": "Calibration in the large (mean PD - default rate)",
    "ece": "Expected calibration error",
    "calibration_slope": "Calibration slope (1 = right spread)",
}
DIRECTION = {1: "higher value, higher risk", -1: "higher value, lower risk", 0: "not one-sided"}


# --------------------------------------------------------------------------- the card


def build_model_card(paths: Paths, run_id: str, n_boot: int = 200) -> Path:
    """Write the model card of training run `run_id`, log it to the run, and return its path."""
    registry.use_store(paths)
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise LookupError(f"no MLflow run {run_id!r} in {paths.tracking_uri}: list the runs with "
                          "`mlflow ui` or take the run id printed by `coopscore train`.") from exc
    params = run.data.params
    subject = params.get("subject")
    if not subject:
        raise LookupError(f"run {run_id} has no 'subject' parameter: it is not a coopscore "
                          "training run.")
    name = registry.model_name(subject)
    versions = client.search_model_versions(f"run_id = '{run_id}'")
    version = next((str(v.version) for v in versions if v.name == name), "unregistered")
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    except (MlflowException, OSError) as exc:
        raise LookupError(f"run {run_id} has no loadable model at runs:/{run_id}/model") from exc

    result = evaluate_model(paths, subject, model, version, n_boot=n_boot, run_id=run_id)
    run_date = dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.timezone.utc)
    tags = next((v.tags for v in versions if v.name == name), {}) or {}
    gates = {k: v for k, v in tags.items() if k.startswith("gate.") or k.startswith("promotion")}
    text = render(result, name=name, version=version, run_id=run_id, params=params,
                  run_date=run_date, n_boot=n_boot, gates=gates)

    out = paths.home / "reports" / run_id / CARD_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    client.log_artifact(run_id, str(out), ARTIFACT_DIR)
    return out


def format_estimate(est: metrics.Estimate) -> str:
    """How the metrics table shows an estimate: value and 95% CI, three decimals."""
    return f"{est.value:.3f} [{est.low:.3f}, {est.high:.3f}]"


def render(result: ModelEvaluation, *, name: str, version: str, run_id: str, params: dict,
           run_date: dt.datetime, n_boot: int = 200, gates: dict[str, str] | None = None) -> str:
    """The model card as one self-contained HTML document; `gates` are the version's gate tags."""
    ev = result.evaluation
    e = html.escape
    today = dt.date.today().isoformat()
    meta = (f"MLflow run {run_id}; trained {run_date:%Y-%m-%d %H:%M} UTC; card generated {today}; "
            f"subject: {ev.subject}.")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(f'Model card: {name} v{version}')}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(f'Model card: {name}, version {version}')}</h1>",
        f"<p class='meta'>{e(meta)}</p>",
        _intended_use(ev.subject),
        _data_section(params, ev),
        _features_section(result.features),
        _metrics_section(ev),
        _calibration_section(ev, params),
        _backtest_section(ev),
        _ceiling_section(ev),
        _lift_section(result, n_boot),
        _approval_section(result, n_boot),
        _plots_section(result),
        _psi_section(ev.psi),
        _fairness_section(ev),
        _fairness_intervals_section(ev, n_boot),
        _gates_section(gates or {}),
        "</body></html>",
    ]
    return "\n".join(parts)


_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
        "th,td{border:1px solid #bbb;padding:3px 8px;text-align:left;font-size:0.9em}"
        "th{background:#eee}.meta{color:#555}.callout{background:#fff4d6;border-left:4px solid "
        "#e0a800;padding:0.6em 1em}.act{background:#f8d0d0}.watch{background:#fff0c0}"
        "img{max-width:100%;margin:0.5em 1em 0.5em 0;border:1px solid #ddd}")


def _intended_use(subject: str) -> str:
    who = "members (households and household businesses)" if subject == "member" else "cooperatives"
    use = [
        f"Who it is for: partner banks and cooperative funds scoring loan applications of "
        f"e-cooperative {who}. The PD, score and reasons support a credit officer's decision; "
        "they do not replace it.",
        "Label: default = the loan is more than 90 days past due (90+ DPD: 91 days or more, loan "
        "group 3 or worse) within 12 months "
        "of the application date.",
    ]
    limits = [
        "Subjects with insufficient history (less than 180 days or fewer than 12 transactions in "
        "the last year): they are not scored, and the model has never seen them.",
        "Amounts above the unsecured lending limits of Decree 156/2025/ND-CP (300 million VND for "
        "a household, 500 million for a household business, 5 billion for a cooperative).",
        "Employment, insurance or any decision other than credit on these loans.",
        "Synthetic data caveat: this model is trained and measured on synthetic data generated by "
        "coopscore. Its metrics say how the pipeline behaves, not how it will rank real "
        "applicants; it must be retrained and revalidated on the lender's own data before use.",
    ]
    return ("<h2>Intended use</h2><ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in use)
            + "</ul><h2>Not for</h2><ul>"
            + "".join(f"<li>{html.escape(t)}</li>" for t in limits) + "</ul>")


def _data_section(params: dict, ev: ChampionEvaluation) -> str:
    rows = [["the model registered (every label known by the data end)", params.get("train_from", "?"),
             params.get("train_to", "?"), params.get("train_rows", "?"), params.get("train_defaults", "?")]]
    note = ("The evidence is an as-deployed backtest: at each quarterly date T a model is trained and "
            "calibrated only on applications whose 12-month label window closed by T, and tested on "
            "the applications of the six months from T; each test application is scored by the "
            "model deployed at the latest T before it. Backtest dates: "
            f"{', '.join(ev.backtest_dates or []) or '?'}; pooled test applications: {ev.oot_rows}. "
            f"Data end: {params.get('data_end', '?')}. Applications without enough history left "
            f"out: {params.get('excluded_not_enough_history', '?')}.")
    return ("<h2>Data</h2>" + _table(["rows", "from", "to", "applications", "defaults"], rows)
            + f"<p>{html.escape(note)}</p>" + _population_note(params))


def _population_note(params: dict) -> str:
    """Who the model learned from and who it was validated on (they differ under reject inference)."""
    method = params.get("reject_inference", "funded_only")
    trained = params.get("training_population", "funded loans only")
    declined = params.get("train_declined", "0")
    validated = params.get("validated_on", "funded loans only (the as-deployed backtest)")
    why = params.get("reject_inference_why")
    text = (f"Trained on: {trained} (reject inference: {method}{', ' + why if why else ''}; declined "
            f"applications used: {declined}). Validated on: {validated}: the declined have no outcome, so no measure "
            "above covers them; through the door was measured on synthetic truth only "
            "(docs/reject-inference.md).")
    return f"<p class='callout'>{html.escape(text)}</p>"


def _calibration_section(ev: ChampionEvaluation, params: dict) -> str:
    slope = ev.calibration_slope
    verdict = "pinned down" if ev.calibration_pinned else "NOT pinned down"
    fitted = (f"The registered model's Platt calibrator: {params.get('calibration_method', '?')} "
              f"({params.get('calibration_defaults', '?')} defaults; never fitted on fewer than "
              f"{params.get('min_calibration_defaults', '?')}, in which case it is out of fold or "
              "absent).")
    return (f"<h2>Calibration evidence</h2><p class='callout'>Calibration slope "
            f"{html.escape(format_estimate(slope))}: {verdict}. {html.escape(ev.calibration_reason)}"
            f"</p><p>{html.escape(fitted)}</p>")


def _backtest_section(ev: ChampionEvaluation) -> str:
    if ev.backtest is None or ev.backtest.empty:
        return ""
    rows = []
    for r in ev.backtest.to_dict("records"):
        cells = [str(pd.Timestamp(r["date"]).date()), r["source"], r["n_train"], r["n_train_defaults"],
                 r["n_test"], r["n_test_defaults"], r.get("calibration", "")]
        for key in ("auc", "calibration_in_the_large", "calibration_slope"):
            value = r.get(key)
            cells.append("-" if value is None or value != value else
                         format_estimate(metrics.Estimate(value, r[f"{key}_low"], r[f"{key}_high"])))
        rows.append(cells)
    return ("<h2>Backtest by deployment date</h2>"
            + _table(["T", "PD of", "trained on", "defaults", "tested on", "defaults", "calibration",
                      "AUC (95% CI)", "calibration in the large (95% CI)", "slope (95% CI)"], rows)
            + "<p>Each T's six test months overlap the next T's: the pooled table above counts each "
              "application once.</p>")


def _features_section(features: list[str]) -> str:
    rows = []
    for name in features:
        f = FEATURES_BY_NAME.get(name)
        rows.append([name, f.vi if f else "", f.en if f else "(not in the catalogue)",
                     f.unit if f else "", DIRECTION.get(f.risk, "") if f else ""])
    return (f"<h2>Features ({len(features)})</h2>"
            + _table(["name", "meaning (vi)", "meaning (en)", "unit", "direction of risk"], rows))


def _ceiling_section(ev: ChampionEvaluation) -> str:
    """The gap to the true PD, split into what the features do not carry and what estimation
    loses, and which driver of the true risk the missing information belongs to (synthetic data)."""
    if not ev.ceiling or not ev.true_pd:
        return ("<h2>Gap to the true PD</h2><p>No generator truth for these data (real data): the "
                "gap to the best possible model cannot be split.</p>")
    model, ceiling, true = ev.model["auc"], ev.ceiling["auc"], ev.true_pd["auc"]
    split = [["true PD", format_estimate(true), ""],
             ["feature ceiling (true log-odds regressed on the features)", format_estimate(ceiling),
              f"information the features do not carry: {true.value - ceiling.value:+.3f}"],
             ["model", format_estimate(model),
              f"estimation (model against the ceiling): {ceiling.value - model.value:+.3f}"]]
    out = ["<h2>Gap to the true PD</h2>", _table(["pooled backtest AUC", "95% CI", "gap"], split)]
    if ev.drivers is not None and len(ev.drivers):
        rows = [[r.driver, f"{r.share:.3f}",
                 "-" if r.r2_from_features != r.r2_from_features else f"{r.r2_from_features:.3f}",
                 f"{r.unexplained:.3f}", r.visible if isinstance(r.visible, str) else ""]
                for r in ev.drivers.itertuples()]
        out.append(_table(["driver of the true risk", "share of its variance",
                           "R² recovered by the features", "out of reach (share x (1 - R²))",
                           "seen before the application date?"], rows))
        hidden = [r.driver for r in ev.drivers.itertuples() if isinstance(r.visible, str)
                  and r.visible.startswith(("mostly not", "no"))]
        out.append("<p>" + html.escape(
            "Each driver's R² is measured on later applications than the regression was fitted on. "
            + (f"Not visible before the application date: {', '.join(hidden)}." if hidden else ""))
            + "</p>")
    return "\n".join(out)


def _metrics_section(ev: ChampionEvaluation) -> str:
    headers = (["metric", "model (95% CI)"] + (["WoE scorecard (95% CI)"] if ev.scorecard else [])
               + (["feature ceiling (95% CI)"] if ev.ceiling else [])
               + (["true PD (95% CI)"] if ev.true_pd else []))
    rows = []
    for key, label in METRIC_LABELS.items():
        if key not in ev.model:
            continue
        row = [label, format_estimate(ev.model[key])]
        if ev.scorecard:
            row.append(format_estimate(ev.scorecard[key]))
        if ev.ceiling:
            row.append(format_estimate(ev.ceiling[key]))
        if ev.true_pd:
            row.append(format_estimate(ev.true_pd[key]))
        rows.append(row)
    note = (f"As-deployed backtest, {ev.oot_rows} pooled test applications; 95% intervals by "
            "bootstrap. The true PD is the probability the synthetic generator used: the best any "
            "model could do. The WoE scorecard is the transparent challenger, fitted at each T on "
            "the same training rows.")
    return "<h2>Performance</h2>" + _table(headers, rows) + f"<p>{html.escape(note)}</p>"


def _lift_section(result: ModelEvaluation, n_boot: int) -> str:
    """Deciles by PD, riskiest first: where the defaults are, for the model and the true PD."""
    table = metrics.lift_table(result.y, result.pd)
    true = metrics.lift_table(result.y, result.true_pd) if result.true_pd is not None else None
    headers = ["decile (riskiest first)", "applications", "defaults", "default rate", "PD range",
               "lift", "capture, cumulative"] + (["capture, true PD"] if true is not None else [])
    rows = []
    for i, r in table.iterrows():
        row = [int(r.decile), int(r["count"]), int(r.bads), f"{r.bad_rate:.1%}",
               f"{r.min_pd:.1%} to {r.max_pd:.1%}", f"{r.lift:.2f}", f"{r.capture:.1%}"]
        if true is not None:
            row.append(f"{true.loc[i, 'capture']:.1%}")
        rows.append(row)
    top = metrics.bootstrap(_top_decile_capture, result.y, result.pd, n=n_boot)
    note = (f"The riskiest 10% of applicants hold {top.value:.1%} of the defaults "
            f"(95% CI {top.low:.1%} to {top.high:.1%}).")
    return "<h2>Lift and capture by decile</h2>" + _table(headers, rows) + f"<p>{html.escape(note)}</p>"


def _top_decile_capture(y, pd_values) -> float:
    return float(metrics.lift_table(y, pd_values)["capture"].iloc[0])


APPROVAL_RATES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _approval_section(result: ModelEvaluation, n_boot: int) -> str:
    """The trade-off a lender chooses on: approve the lowest-PD share, see the default rate."""
    curve = metrics.approval_curve(result.y, result.pd, APPROVAL_RATES)
    true = (metrics.approval_curve(result.y, result.true_pd, APPROVAL_RATES)
            if result.true_pd is not None else None)
    headers = ["approve the safest", "applications approved", "highest PD approved",
               "default rate among approved (95% CI)"] + (["same, true PD"] if true is not None else [])
    rows = []
    for i, r in curve.iterrows():
        rate = float(r.approval_rate)
        est = metrics.bootstrap(lambda y, p, rate=rate: _bad_rate_at(y, p, rate), result.y, result.pd,
                                n=n_boot)
        row = [f"{rate:.0%}", int(r.approved), f"{r.pd_threshold:.1%}",
               f"{est.value:.2%} [{est.low:.2%}, {est.high:.2%}]"]
        if true is not None:
            row.append(f"{true.loc[i, 'bad_rate']:.2%}")
        rows.append(row)
    return "<h2>Approval rate against default rate</h2>" + _table(headers, rows)


def _bad_rate_at(y, pd_values, rate: float) -> float:
    return float(metrics.approval_curve(y, pd_values, [rate])["bad_rate"].iloc[0])


def _plots_section(result: ModelEvaluation) -> str:
    curves = {"model": result.pd}
    if result.true_pd is not None:
        curves["true PD"] = result.true_pd
    figures = [
        ("ROC curve, model against the true PD", plots.roc(result.y, curves)),
        ("Calibration: reliability curve", _reliability(result.y, result.pd)),
        ("Score distribution by outcome", plots.score_distribution(result.scores, result.y)),
        ("SHAP summary: mean |contribution| to the log-odds",
         plots.importance(result.features, result.mean_abs_contribution)),
    ]
    out = ["<h2>Plots</h2>"]
    for title, fig in figures:
        out.append(f"<figure><img src=\"{_png(fig)}\" alt=\"{html.escape(title)}\">"
                   f"<figcaption>{html.escape(title)}</figcaption></figure>")
    return "\n".join(out)


def _reliability(y, pd_values):
    return reliability_figure(metrics.reliability_curve(y, pd_values, bins=10), "model",
                              "decile", "Reliability, out of time")


def reliability_figure(curve, label: str, bin_word: str, title: str):
    """The reliability plot of a `metrics.reliability_curve` frame against the diagonal (also used
    by the loan-book card)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(curve["mean_pd"], curve["bad_rate"], "o-", label=label)
    top = max(curve["mean_pd"].max(), curve["bad_rate"].max()) * 1.1
    ax.plot([0, top], [0, top], "k:", lw=1, label="perfect")
    ax.set(xlabel=f"mean predicted PD ({bin_word})", ylabel="observed default rate", title=title)
    ax.legend()
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _psi_section(psi: pd.DataFrame) -> str:
    rows = [[r.column, f"{r.psi:.3f}", r.band] for r in psi.itertuples()]
    classes = [r.band for r in psi.itertuples()]
    note = ("Population stability index between the training and out-of-time periods, the score "
            "first then each feature: stable below 0.10, watch from 0.10 to 0.25, act above 0.25.")
    return ("<h2>Stability (PSI)</h2>" + f"<p>{html.escape(note)}</p>"
            + _table(["column", "PSI", "band"], rows, row_classes=classes))


def _fairness_section(ev: ChampionEvaluation) -> str:
    out = ["<h2>Fairness</h2>"]
    if not ev.fairness:
        note = f"Not measured for {ev.subject}: protected attributes are recorded for members only."
        out.append(f"<p>{html.escape(note)}</p>")
        return "".join(out)
    intro = (f"Measured at the operating cut-off PD {OPERATING_PD:.0%} (grades A to D approved). "
             "Protected attributes are joined after scoring, for measurement only; they are never "
             "model inputs.")
    out.append(f"<p>{html.escape(intro)}</p>")
    gap = ev.largest_fairness_gap()
    if gap is not None:
        column, metric, value = gap
        finding = f"{metric} differs by {value:.3f} across {column} groups."
        out.append(f"<p class='callout'><strong>Largest gap:</strong> {html.escape(finding)}</p>")
    columns = ["group", "count", "bads", "bad_rate", "mean_pd", "calibration_gap", "auc",
               "approval_rate", "bad_rate_among_approved", "note"]
    for column, table in ev.fairness.items():
        ratio = fairness.gaps(table)["approval_rate_ratio"]
        rows = [[_cell(row[c]) for c in columns] for _, row in table.iterrows()]
        ratio_text = f"Approval-rate ratio (four-fifths rule): {_cell(ratio)}"
        out.append(f"<h3>{html.escape(column)}</h3>" + _table(columns, rows)
                   + f"<p>{html.escape(ratio_text)}</p>")
    return "".join(out)


def _fairness_intervals_section(ev: ChampionEvaluation, n_boot: int) -> str:
    """The gaps the fairness gate decides on, with their 95% CIs (members only)."""
    if ev.frame is None or not ev.fairness:
        return ""
    table = fairness.model_gap_intervals(ev.frame, OPERATING_PD, n_boot=n_boot)
    if table.empty:
        return ""
    rows = [[_cell(v) for v in row] for row in table.itertuples(index=False)]
    note = ("Gaps between groups at the operating cut-off, with 95% bootstrap intervals; a gap "
            "versus the true PD is what the model adds to the real risk differences. Groups with "
            "too few defaults are named as too small to judge.")
    return ("<h2>Fairness gaps with intervals</h2>" + _table(list(table.columns), rows)
            + f"<p>{html.escape(note)}</p>")


def _gates_section(gates: dict[str, str]) -> str:
    """The promotion gates' verdicts and numbers, as recorded on the model version."""
    if not gates:
        return "<h2>Promotion gates</h2><p>No gate has judged this version yet.</p>"
    rows = [[k, v] for k, v in sorted(gates.items())]
    return "<h2>Promotion gates</h2>" + _table(["tag", "verdict and numbers"], rows)


def _cell(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _table(headers, rows, row_classes=None) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f" class=\"{html.escape(row_classes[i])}\"" if row_classes else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
