"""Month-by-month monitoring of a deployed model, through the 12-month label lag.

Given the applications scored by the champion (scoring.monitor_run scores them point in time, as the
service would have on each application date) and the training population scored the same way, each
month of applications gets:

- the score's and grades' distribution, and the PSI of the score and of every model feature against
  the training population (evaluation.stability.psi);
- leading labels that arrive early: 30+ days past due by 3 and by 6 months on book (monthly days
  past due of the loan the application funded, counted only once those months have passed);
- performance estimated before any label arrives, from the calibrated PDs alone (confidence-based
  performance estimation, CBPE): if the PDs are calibrated, each applicant defaults with its PD, so
  drawing outcomes from the PDs many times gives the distribution of the AUC and of the default rate
  the month *will* show; the mean is the estimate and its 2.5-97.5 percentiles the interval within
  which the realised value should fall;
- the realised AUC and default rate (label: 90+ days past due within 12 months) once the month's
  labels have all matured (as_of + 12 months <= today), with intervals (bootstrap for the AUC, Wilson
  for the rate);
- the frequency of each reason code as first reason and among the reasons given;
- alerts (evaluation.alerts), each naming what moved and by how much.

Vintage curves (cumulative 90+ default rate by months on book, per origination quarter and per
grade) are computed over every loan observed so far.

Why not NannyML: its CBPE is the same idea (expected confusion-matrix figures from calibrated
probabilities), but nannyml 0.13.1 (the current release) requires lightgbm < 4.6 while uv.lock pins
lightgbm 4.7.0, and it brings FLAML, plotly < 6, gcsfs, s3fs and a telemetry client
(segment-analytics) into a credit service. The AUC estimate here is thirty lines of numpy on the
PDs the scorer already returns, and its interval is exact for a calibrated model (Monte Carlo).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from scipy.stats import chi2, norm, rankdata

from evaluation import metrics, stability
from evaluation.alerts import (Alert, AlertConfig, change_alert, interval_alert, psi_alert,
                               share_alert, psi_noise, ratio_alert)
from training.dataset import ARREARS_GRADE_DAYS, LABEL_MONTHS
from training.scaling import GRADE_UPPER_PD

GRADES = tuple(g for g, _ in GRADE_UPPER_PD)
DEFAULT_DAYS = ARREARS_GRADE_DAYS[-1]  # 91: loan group 3, the default
EARLY_DAYS = 30  # the leading label: 30+ days past due
EARLY_MOB = (3, 6)  # ... by 3 and by 6 months on book
VINTAGE_MONTHS = 24  # vintage curves up to this many months on book
DRAWS = 1000  # outcome draws of the performance estimate
N_BOOT = 200
REASON_COLUMNS = tuple(f"reason_{k}" for k in range(1, 5))
TENURE = "tenure_years"  # the feature new entrants are told by (AlertConfig.new_entrant_years)


@dataclass
class MonitoringReport:
    """The monitor's tables; every per-month table has a `month` column (YYYY-MM).

    monthly: one row per month (counts, score quantiles, PSI of the score, expected and realised
    performance with intervals, leading labels, whether the month was judged);
    psi: month, column, psi, noise (sampling), baseline (what the training months' own PSI reaches), n; grades: month, grade, share; reasons: month, code,
    share_first, share_any; vintages: group_kind (quarter | grade), group, mob, loans, cum_default_rate;
    alerts: month, level, kind, target, value, threshold, message."""

    monthly: pd.DataFrame
    psi: pd.DataFrame
    grades: pd.DataFrame
    reasons: pd.DataFrame
    vintages: pd.DataFrame
    alerts: pd.DataFrame
    reference: dict[str, float] = field(default_factory=dict)
    # every reported month's matured applications together: the estimate and the realised value
    pooled: dict[str, float] = field(default_factory=dict)

    TABLES = ("monthly", "psi", "grades", "reasons", "vintages", "alerts")

    def month(self, month: str) -> dict[str, pd.DataFrame]:
        """The per-month tables restricted to one month (vintages whole)."""
        return {name: (getattr(self, name) if name == "vintages" else
                       getattr(self, name)[getattr(self, name)["month"] == month])
                for name in self.TABLES}


# ------------------------------------------------------------------------------ outcomes
def outcomes(clean_dir: Path, applications: pd.DataFrame, today: pd.Timestamp) -> pd.DataFrame:
    """What is known by `today` of each application's loan: `application_id`, `disbursal_date`,
    `mob_observed` (whole months on book by today), `dpd30_mob3` / `dpd30_mob6` (1.0 if 30+ days
    past due at a month end within the first 3 / 6 months on book, 0.0 if not, NaN until those
    months have passed or without a loan), `default_mob` (months on book at the first 91+ days past
    due seen by today, NaN if none) and `label` (the recorded 12-month default, NaN until as_of + 12
    months <= today, as training.dataset reads it).

    `applications`: application_id, as_of, default_12m (the recorded label, NaN while unknown)."""
    clean_dir = Path(clean_dir)
    today = pd.Timestamp(today)
    con = duckdb.connect()
    con.register("apps", applications[["application_id"]])
    rows = con.execute(f"""
        SELECT l.application_id, CAST(l.disbursal_date AS DATE) AS disbursal_date,
          max(CASE WHEN r.days_past_due >= {EARLY_DAYS} AND date_diff('month', l.disbursal_date,
              r.month) <= 3 THEN 1 ELSE 0 END) AS dpd30_by3,
          max(CASE WHEN r.days_past_due >= {EARLY_DAYS} AND date_diff('month', l.disbursal_date,
              r.month) <= 6 THEN 1 ELSE 0 END) AS dpd30_by6,
          min(CASE WHEN r.days_past_due >= {DEFAULT_DAYS}
              THEN date_diff('month', l.disbursal_date, r.month) END) AS default_mob
        FROM apps a
        JOIN read_parquet(?) l ON l.application_id = a.application_id
        LEFT JOIN read_parquet(?) r ON r.loan_id = l.loan_id AND r.month < ?
        WHERE l.disbursal_date < ?
        GROUP BY l.application_id, l.disbursal_date""",
        [str(clean_dir / "loans.parquet"), str(clean_dir / "repayments.parquet"), today.date(),
         today.date()]).df()
    con.close()
    out = applications[["application_id", "as_of", "default_12m"]].merge(
        rows, on="application_id", how="left", validate="one_to_one")
    disbursal = pd.to_datetime(out["disbursal_date"])
    # months on book by today: of the last month end before today (the latest repayment row that
    # can exist), counted as the repayment rows count them (month difference to the disbursal)
    last = today - pd.offsets.MonthEnd(1)
    mob = ((last.year - disbursal.dt.year) * 12 + (last.month - disbursal.dt.month)).astype(float)
    out["disbursal_date"] = disbursal
    out["mob_observed"] = mob.where(disbursal.notna())
    for k, column in zip(EARLY_MOB, ("dpd30_by3", "dpd30_by6")):
        known = out["mob_observed"] >= k
        out[f"dpd30_mob{k}"] = out[column].astype(float).where(known)
    out["default_mob"] = out["default_mob"].astype(float)
    matured = out["as_of"] + pd.DateOffset(months=LABEL_MONTHS) <= today
    out["label"] = out["default_12m"].astype(float).where(matured)
    return out.drop(columns=["dpd30_by3", "dpd30_by6", "default_12m"])


# ------------------------------------------------------------------------------ estimates
def expected_performance(pd_values: np.ndarray, draws: int = DRAWS, seed: int = 0
                         ) -> dict[str, metrics.Estimate]:
    """CBPE: the AUC and default rate a calibrated model's PDs promise, with 95% intervals, from
    `draws` sets of outcomes drawn from the PDs (each applicant defaults with its PD)."""
    p = np.asarray(pd_values, dtype=float)
    if p.size < 2:
        nan = metrics.Estimate(np.nan, np.nan, np.nan)
        return {"auc": nan, "default_rate": nan}
    ranks = rankdata(p)
    rng = np.random.default_rng(seed)
    aucs, rates = [], []
    chunk = max(1, 2_000_000 // p.size)  # at most ~2 million draws held at once
    for start in range(0, draws, chunk):
        y = rng.random((min(chunk, draws - start), p.size)) < p
        n1 = y.sum(axis=1).astype(float)
        n0 = p.size - n1
        ok = (n1 > 0) & (n0 > 0)
        u = (y @ ranks)[ok] - n1[ok] * (n1[ok] + 1) / 2
        aucs.append(u / (n1[ok] * n0[ok]))
        rates.append(n1 / p.size)
    aucs, rates = np.concatenate(aucs), np.concatenate(rates)
    out = {"default_rate": metrics.Estimate(float(rates.mean()), *map(float, np.percentile(rates, [2.5, 97.5])))}
    out["auc"] = (metrics.Estimate(float(aucs.mean()), *map(float, np.percentile(aucs, [2.5, 97.5])))
                  if aucs.size else metrics.Estimate(np.nan, np.nan, np.nan))
    return out


def wilson(k: int, n: int) -> metrics.Estimate:
    """A rate k / n with its 95% Wilson interval (NaN for n = 0)."""
    if n == 0:
        return metrics.Estimate(np.nan, np.nan, np.nan)
    z = norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return metrics.Estimate(p, float(centre - half), float(centre + half))


def realised_auc(y: np.ndarray, pd_values: np.ndarray, n_boot: int = N_BOOT) -> metrics.Estimate:
    """The AUC on matured labels with its bootstrap interval (NaN with a single class)."""
    if len(y) == 0 or y.min() == y.max():
        return metrics.Estimate(np.nan, np.nan, np.nan)
    return metrics.bootstrap(metrics.auc, y, pd_values, n=n_boot, seed=0)


# ------------------------------------------------------------------------------ the report
def monitor(scored: pd.DataFrame, reference: pd.DataFrame, features: list[str],
            config: AlertConfig = AlertConfig(), months: list[str] | None = None,
            draws: int = DRAWS) -> MonitoringReport:
    """The monitoring report of `scored` by month against `reference` (the training population).

    Both frames: one row per scored application with `month` (YYYY-MM), `as_of`, `pd`, `score`,
    `grade`, reason_1..reason_4 (codes, "" when fewer), the model's `features`, and outcomes' columns
    (`label`, `dpd30_mob3`, `dpd30_mob6`, `default_mob`, `mob_observed`, `disbursal_date`).
    `months`: the months to report (default every month of `scored`)."""
    missing = sorted({"month", "pd", "score", "grade", "label", "dpd30_mob3", *features,
                      *REASON_COLUMNS} - set(scored.columns))
    if missing:
        raise ValueError(f"the scored applications lack {missing}")
    if reference.empty:
        raise ValueError("the training population is empty: nothing to compare the months with")
    months = sorted(scored["month"].unique()) if months is None else list(months)
    ref = _reference_figures(reference, config)
    baseline = reference_months_psi(reference, ["score", *features], config)
    monthly, psi_rows, grade_rows, reason_rows, alerts = [], [], [], [], []
    ref_first = _first_reason_shares(reference)
    for month in months:
        part = scored[scored["month"] == month]
        row, psi_part = _month(month, part, reference, features, config, draws, baseline)
        monthly.append(row)
        psi_rows.append(psi_part)
        grade_rows.append(_grades(month, part))
        reason_rows.append(_reasons(month, part))
        if row["judged"]:
            alerts.extend(_alerts(month, row, psi_part, reason_rows[-1], ref, ref_first, config))
    alert_frame = pd.DataFrame([a.__dict__ for a in alerts],
                               columns=["month", "level", "kind", "target", "value", "threshold",
                                        "message"])
    return MonitoringReport(
        pooled=pooled_performance(scored[scored["month"].isin(months)], config, draws),
        monthly=pd.DataFrame(monthly), psi=pd.concat(psi_rows, ignore_index=True),
        grades=pd.concat(grade_rows, ignore_index=True),
        reasons=pd.concat(reason_rows, ignore_index=True),
        vintages=vintage_curves(pd.concat([reference, scored[scored["month"].isin(months)]])
                                .drop_duplicates("application_id")),
        alerts=alert_frame, reference=ref)


def pooled_performance(scored: pd.DataFrame, config: AlertConfig, draws: int = DRAWS) -> dict[str, float]:
    """The AUC and default rate estimated from the PDs and realised, on every application of the
    reported months whose label has matured (a month alone holds a handful of defaults: its
    interval is wide; pooled, the estimate's bias, if any, shows)."""
    labelled = scored[scored["label"].notna()]
    y = labelled["label"].to_numpy(dtype=float)
    out: dict[str, float] = {"n_labelled": float(len(y)), "defaults": float(y.sum())}
    if y.sum() < config.min_labelled_defaults or y.sum() == len(y):
        return out
    p = labelled["pd"].to_numpy()
    expected = expected_performance(p, draws=draws, seed=2)
    realised = {"auc": realised_auc(y, p), "default_rate": wilson(int(y.sum()), len(y))}
    for name in ("auc", "default_rate"):
        for prefix, est in (("expected", expected[name]), ("realised", realised[name])):
            out[f"{prefix}_{name}"], out[f"{prefix}_{name}_low"], out[f"{prefix}_{name}_high"] = \
                est.value, est.low, est.high
    return out


def _reference_figures(reference: pd.DataFrame, config: AlertConfig) -> dict[str, float]:
    early = reference["dpd30_mob3"].dropna()
    return {"n": float(len(reference)), "mean_pd": float(reference["pd"].mean()),
            "default_rate": float(reference["label"].mean()),
            "dpd30_mob3": float(early.mean()) if len(early) else np.nan,
            "new_entrant_share": _new_entrant_share(reference, config).value}


def _new_entrant_share(frame: pd.DataFrame, config: AlertConfig) -> metrics.Estimate:
    """The share of applications whose subject has been on the platform under
    config.new_entrant_years (NaN when the model has no tenure feature)."""
    if TENURE not in frame or frame.empty:
        return metrics.Estimate(np.nan, np.nan, np.nan)
    tenure = frame[TENURE].to_numpy(dtype=float)
    return wilson(int((tenure < config.new_entrant_years).sum()), len(tenure))


def reference_months_psi(reference: pd.DataFrame, columns: list[str], config: AlertConfig) -> pd.Series:
    """Per column, the PSI a month of the training population itself exceeds with probability
    1 - psi_noise_quantile against the whole of it: the month-to-month movement the model was trained
    through (seasonal features; features shared by a cooperative's members, whose months cluster on
    a few cooperatives, so that the rows are not independent). The months' mean PSI scales a
    chi-square(bins - 1) / (bins - 1), the shape of a PSI under sampling, so the quantile is not the
    maximum of a dozen months. A month's PSI must exceed it, as well as the band and the sampling
    noise of independent rows, to alert."""
    months = [part for _, part in reference.groupby("month") if len(part) >= config.min_applications]
    if len(months) < 2:
        return pd.Series(0.0, index=columns)
    scale = chi2.ppf(config.psi_noise_quantile, config.psi_bins - 1) / (config.psi_bins - 1)
    return pd.Series({c: scale * float(np.mean([stability.psi(reference[c], part[c], bins=config.psi_bins)
                                                for part in months]))
                      for c in columns})


def _month(month: str, part: pd.DataFrame, reference: pd.DataFrame, features: list[str],
           config: AlertConfig, draws: int, baseline: pd.Series) -> tuple[dict, pd.DataFrame]:
    n = len(part)
    row: dict[str, object] = {"month": month, "n_scored": n,
                              "judged": n >= config.min_applications}
    score = part["score"].to_numpy(dtype=float)
    for q in (10, 50, 90):
        row[f"score_p{q}"] = float(np.percentile(score, q)) if n else np.nan
    row["mean_pd"] = float(part["pd"].mean()) if n else np.nan
    entrants = _new_entrant_share(part, config)
    row["new_entrant_share"], row["new_entrant_share_low"], row["new_entrant_share_high"] = \
        entrants.value, entrants.low, entrants.high
    psi_part = []
    for column in ["score", *features]:
        value = stability.psi(reference[column], part[column], bins=config.psi_bins) if n else np.nan
        psi_part.append({"month": month, "column": column, "psi": value, "n": n,
                         "noise": psi_noise(n, len(reference), config),
                         "baseline": float(baseline.get(column, 0.0))})
    psi_part = pd.DataFrame(psi_part)
    row["psi_score"] = float(psi_part["psi"].iloc[0])
    feats = psi_part.iloc[1:]
    row["psi_max_feature"] = float(feats["psi"].max()) if len(feats) and n else np.nan
    row["psi_max_feature_name"] = str(feats.loc[feats["psi"].idxmax(), "column"]) if len(feats) and n else ""
    expected = expected_performance(part["pd"].to_numpy(), draws=draws)
    for name, est in expected.items():
        row[f"expected_{name}"], row[f"expected_{name}_low"], row[f"expected_{name}_high"] = \
            est.value, est.low, est.high
    labelled = part[part["label"].notna()]
    row["n_labelled"] = len(labelled)
    # the month's labels are complete when every funded application's window has closed
    funded = part["disbursal_date"].notna() if "disbursal_date" in part else pd.Series(True, part.index)
    row["labels_complete"] = bool(len(labelled) == int(funded.sum()) and len(labelled) > 0)
    y = labelled["label"].to_numpy(dtype=float)
    rate = wilson(int(y.sum()), len(y))
    auc = (realised_auc(y, labelled["pd"].to_numpy())
           if y.sum() >= config.min_labelled_defaults and row["labels_complete"]
           else metrics.Estimate(np.nan, np.nan, np.nan))
    rate = rate if row["labels_complete"] else metrics.Estimate(np.nan, np.nan, np.nan)
    row["realised_default_rate"], row["realised_default_rate_low"], row["realised_default_rate_high"] = \
        rate.value, rate.low, rate.high
    row["realised_auc"], row["realised_auc_low"], row["realised_auc_high"] = auc.value, auc.low, auc.high
    # the expected figures on the funded (labelled) rows only: what the realised ones compare with
    if len(labelled) >= 2:
        on_funded = expected_performance(labelled["pd"].to_numpy(), draws=draws, seed=1)
        row["expected_auc_funded"] = on_funded["auc"].value
        row["expected_auc_funded_low"] = on_funded["auc"].low
        row["expected_auc_funded_high"] = on_funded["auc"].high
        row["expected_default_rate_funded"] = on_funded["default_rate"].value
        row["expected_default_rate_funded_low"] = on_funded["default_rate"].low
        row["expected_default_rate_funded_high"] = on_funded["default_rate"].high
    for k in EARLY_MOB:
        known = part[f"dpd30_mob{k}"].dropna()
        est = wilson(int(known.sum()), len(known))
        row[f"n_mob{k}"] = len(known)
        row[f"dpd30_mob{k}"], row[f"dpd30_mob{k}_low"], row[f"dpd30_mob{k}_high"] = \
            est.value, est.low, est.high
    return row, psi_part


def _grades(month: str, part: pd.DataFrame) -> pd.DataFrame:
    counts = part["grade"].value_counts().reindex(GRADES, fill_value=0)
    share = counts / max(len(part), 1)
    return pd.DataFrame({"month": month, "grade": GRADES, "count": counts.to_numpy(),
                         "share": share.to_numpy()})


def _first_reason_shares(frame: pd.DataFrame) -> pd.Series:
    first = frame["reason_1"][frame["reason_1"] != ""]
    return first.value_counts() / max(len(frame), 1)


def _reasons(month: str, part: pd.DataFrame) -> pd.DataFrame:
    n = max(len(part), 1)
    first = _first_reason_shares(part)
    codes = pd.unique(part[list(REASON_COLUMNS)].to_numpy().ravel())
    rows = []
    for code in sorted(c for c in codes if c):
        given = (part[list(REASON_COLUMNS)] == code).any(axis=1).sum()
        rows.append({"month": month, "code": code, "share_first": float(first.get(code, 0.0)),
                     "share_any": float(given / n)})
    return pd.DataFrame(rows, columns=["month", "code", "share_first", "share_any"])


def _alerts(month: str, row: dict, psi_part: pd.DataFrame, reasons: pd.DataFrame,
            ref: dict[str, float], ref_first: pd.Series, config: AlertConfig) -> list[Alert]:
    out = [psi_alert(month, r.column, r.psi, r.noise, r.baseline, r.n, config)
           for r in psi_part.itertuples()]
    out.append(change_alert(month, "expected_default_rate", "mean_pd", row["mean_pd"], ref["mean_pd"],
                            config.pd_change_watch, config.pd_change_act,
                            "the expected default rate (mean PD)", relative=True))
    if row["n_mob3"] >= config.dpd30_min_loans:
        out.append(ratio_alert(month, "early_delinquency", "dpd30_mob3", row["dpd30_mob3"],
                               ref["dpd30_mob3"], config.dpd30_ratio_watch, config.dpd30_ratio_act,
                               "30+ days past due by 3 months on book"))
    out.append(interval_alert(month, "realised_auc", row["realised_auc"],
                              row.get("expected_auc_funded_low", np.nan),
                              row.get("expected_auc_funded_high", np.nan), "act", "AUC",
                              only_below=True))
    out.append(interval_alert(month, "realised_default_rate", row["realised_default_rate"],
                              row.get("expected_default_rate_funded_low", np.nan),
                              row.get("expected_default_rate_funded_high", np.nan), "watch",
                              "default rate"))
    out.append(share_alert(month, "new_entrants", "new_entrant_share", row["new_entrant_share"],
                           row["new_entrant_share_low"], row["new_entrant_share_high"],
                           ref["new_entrant_share"], config.new_entrant_share_watch,
                           config.new_entrant_share_act,
                           f"the share of applicants on the platform under {config.new_entrant_years:g} "
                           "years"))
    shares = reasons.set_index("code")["share_first"]
    for code in sorted(set(shares.index) | set(ref_first.index)):
        alert = change_alert(month, "reason_share", code, float(shares.get(code, 0.0)),
                             float(ref_first.get(code, 0.0)), config.reason_share_watch,
                             config.reason_share_act, f"the share of {code} as first reason",
                             relative=False)
        out.append(alert)
    return [a for a in out if a is not None]


def vintage_curves(frame: pd.DataFrame, max_mob: int = VINTAGE_MONTHS) -> pd.DataFrame:
    """Cumulative default rate (first 91+ days past due) by months on book, per origination quarter
    (of the disbursal) and per grade: at k months, the share of loans observed k months on book that
    defaulted within them."""
    loans = frame[frame["disbursal_date"].notna()]
    quarter = pd.to_datetime(loans["disbursal_date"]).dt.to_period("Q").astype(str)
    rows = []
    for kind, groups in (("quarter", quarter), ("grade", loans["grade"])):
        for group, part in loans.groupby(groups.to_numpy()):
            mob, default_mob = part["mob_observed"].to_numpy(), part["default_mob"].to_numpy()
            for k in range(1, max_mob + 1):
                seen = mob >= k
                if seen.sum() == 0:
                    break
                rows.append({"group_kind": kind, "group": str(group), "mob": k,
                             "loans": int(seen.sum()),
                             "cum_default_rate": float(np.mean(default_mob[seen] <= k))})
    return pd.DataFrame(rows, columns=["group_kind", "group", "mob", "loans", "cum_default_rate"])
