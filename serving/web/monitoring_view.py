"""The fund console's monitoring page: what `coopscore monitor` stored, drawn for a risk analyst.

Reads the Parquet tables under <home>/monitoring/ (scoring.monitor_run.read_tables) for the newest
monitored version of a subject's model and gives the template: the months (score PSI, largest
feature PSI, expected and realised AUC with intervals, early delinquency, alerts), the alerts newest
first, the reason codes' shares in the last month, and three inline SVG charts drawn here like
serving/web/charts.py draws its own: PSI by month against the 0.1 / 0.25 bands, the AUC estimated
from the PDs (its interval shaded) against the realised AUC as labels mature, and the vintage
curves (cumulative default rate by months on book, one line per origination quarter).

The page's words are here, Vietnamese first with English (`WORDS`), not in texts.py: they are the
analyst's vocabulary of this page only.
"""
from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd

from features.catalogue import FEATURES_BY_NAME
from features.reasons import REASONS
from scoring.monitor_run import read_tables
from settings import Paths

INK, GRID, BAND = "#1a1a1a", "#6b6b6b", "#d9e4f2"
SERIES = ("#0b4f9c", "#b00020", "#1b6e20", "#7a4a00", "#5b2a86", "#00646e", "#8a1c5a", "#3d3d3d")

WORDS: dict[str, tuple[str, str]] = {
    "title": ("Giám sát mô hình theo tháng", "Model monitoring, month by month"),
    "nav": ("Giám sát mô hình", "Model monitoring"),
    "queue": ("Danh sách hồ sơ", "Applicant queue"),
    "none": ("Chưa có kết quả giám sát: chạy `coopscore monitor` trên máy chủ.",
             "No monitoring yet: run `coopscore monitor` on the server."),
    "model": ("Mô hình {name} phiên bản {version}, huấn luyện trên hồ sơ từ {start} đến {end}; "
              "dữ liệu đến {today}.",
              "Model {name} version {version}, trained on applications from {start} to {end}; "
              "data known by {today}."),
    "psi_h": ("Độ ổn định (PSI) theo tháng", "Stability (PSI) by month"),
    "psi_note": ("PSI của điểm và của đặc trưng thay đổi nhiều nhất so với tập huấn luyện; dưới 0,1 "
                 "là ổn định, trên 0,25 cần hành động.",
                 "PSI of the score and of the most-moved feature against the training population; "
                 "below 0.1 stable, above 0.25 act."),
    "psi_alt": ("Biểu đồ PSI theo {n} tháng", "PSI over {n} months"),
    "psi_score": ("PSI của điểm", "score PSI"),
    "psi_feature": ("PSI lớn nhất của đặc trưng", "largest feature PSI"),
    "auc_h": ("AUC ước tính và AUC thực tế", "Estimated and realised AUC"),
    "auc_note": ("AUC ước tính từ xác suất vỡ nợ đã hiệu chỉnh (vùng tô là khoảng tin cậy 95%), "
                 "trước khi biết nhãn; điểm là AUC thực tế khi nhãn 12 tháng đã có.",
                 "AUC estimated from the calibrated PDs (shaded: its 95% interval) before any label; "
                 "dots: the realised AUC once the 12-month labels are known."),
    "auc_alt": ("Biểu đồ AUC ước tính và thực tế theo {n} tháng",
                "Estimated and realised AUC over {n} months"),
    "expected": ("ước tính", "estimated"),
    "realised": ("thực tế", "realised"),
    "vintage_h": ("Đường cong theo lứa giải ngân", "Vintage curves"),
    "vintage_note": ("Tỷ lệ vỡ nợ cộng dồn (quá hạn từ 91 ngày) theo số tháng từ khi giải ngân, "
                     "mỗi đường là một quý giải ngân.",
                     "Cumulative default rate (91+ days past due) by months on book, one line per "
                     "disbursal quarter."),
    "vintage_alt": ("Đường cong theo lứa của {n} quý", "Vintage curves of {n} quarters"),
    "mob": ("tháng từ khi giải ngân", "months on book"),
    "months_h": ("Từng tháng", "Month by month"),
    "month": ("Tháng", "Month"), "scored": ("Hồ sơ được chấm", "Scored"),
    "mean_pd": ("PD trung bình", "Mean PD"),
    "dpd30": ("Quá hạn 30+ ngày sau 3 tháng", "30+ DPD by 3 months"),
    "new_entrants": ("Người mới tham gia", "New entrants"),
    "alerts": ("Cảnh báo", "Alerts"),
    "not_yet": ("chưa có", "not yet"),
    "alerts_h": ("Cảnh báo", "Alerts"),
    "no_alerts": ("Không có cảnh báo.", "No alerts."),
    "act": ("Hành động", "Act"), "watch": ("Theo dõi", "Watch"),
    "reasons_h": ("Lý do hàng đầu trong tháng {month}", "First reasons in {month}"),
    "reason": ("Lý do", "Reason"), "share_first": ("Là lý do đầu tiên", "As first reason"),
    "share_any": ("Có trong các lý do", "Among the reasons"),
}


def word(key: str, lang: str, **kw) -> str:
    vi, en = WORDS[key]
    return (vi if lang == "vi" else en).format(**kw)


def view(paths: Paths, lang: str, subject: str = "member") -> dict:
    """The template's context: `monitoring` (None when nothing is stored) and `w` (the words)."""
    tables = read_tables(paths)
    out = {"w": lambda key, **kw: word(key, lang, **kw), "monitoring": None}
    monthly = tables["monthly"]
    if monthly.empty or subject not in set(monthly["subject"]):
        return out
    mine = monthly[monthly["subject"] == subject]
    version = mine.sort_values("computed_at")["version"].iloc[-1]

    def of(name: str) -> pd.DataFrame:
        table = tables[name]
        if table.empty:
            return table
        return table[(table["subject"] == subject) & (table["version"] == version)]

    monthly = of("monthly").sort_values("month").reset_index(drop=True)
    psi, alerts, vintages, reasons = of("psi"), of("alerts"), of("vintages"), of("reasons")
    months = monthly["month"].tolist()
    last = months[-1]
    level_words = {"act": word("act", lang), "watch": word("watch", lang)}
    rows = []
    for r in monthly.itertuples():
        here = alerts[alerts["month"] == r.month]
        rows.append({
            "month": r.month, "n": int(r.n_scored), "psi_score": _f(r.psi_score, 3),
            "psi_feature": f"{_f(r.psi_max_feature, 3)} ({_feature(r.psi_max_feature_name, lang)})",
            "mean_pd": _pct(r.mean_pd),
            "expected": f"{_f(r.expected_auc, 3)} [{_f(r.expected_auc_low, 3)}, {_f(r.expected_auc_high, 3)}]",
            "realised": (word("not_yet", lang) if not np.isfinite(r.realised_auc) else
                         f"{_f(r.realised_auc, 3)} [{_f(r.realised_auc_low, 3)}, {_f(r.realised_auc_high, 3)}]"),
            "dpd30": word("not_yet", lang) if not np.isfinite(r.dpd30_mob3) else _pct(r.dpd30_mob3),
            "new_entrants": _pct(getattr(r, "new_entrant_share", np.nan)),
            "act": int((here["level"] == "act").sum()), "watch": int((here["level"] == "watch").sum())})
    alert_rows = [{"month": a.month, "level": a.level, "level_text": level_words[a.level],
                   "message": alert_text(a, lang)}
                  for a in alerts.sort_values(["month", "level"], ascending=[False, True]).itertuples()]
    last_reasons = reasons[reasons["month"] == last].sort_values("share_first", ascending=False)
    first = monthly.iloc[0]
    out["monitoring"] = {
        "model": word("model", lang, name=f"coopscore-{subject}", version=version,
                      start=first.get("train_from", "?"), end=first.get("train_to", "?"),
                      today=first["today"]),
        "rows": rows, "alerts": alert_rows, "last": last,
        "reasons": [{"code": r.code, "text": _reason(r.code, lang), "first": _pct(r.share_first),
                     "any": _pct(r.share_any)}
                    for r in last_reasons.head(8).itertuples()],
        "psi_svg": psi_svg(monthly, lang), "auc_svg": auc_svg(monthly, lang),
        "vintage_svg": vintage_svg(vintages, lang)}
    return out


ALERT_WORDS: dict[str, tuple[str, str]] = {
    "psi": ("PSI của {what} là {value:.3f}, vượt ngưỡng {threshold:.3f}",
            "PSI of {what} is {value:.3f}, above {threshold:.3f}"),
    "expected_default_rate": ("PD trung bình (tỷ lệ vỡ nợ dự kiến) là {value:.2%}, thay đổi quá {threshold:.0%} "
                              "so với tập huấn luyện",
                              "The mean PD (expected default rate) is {value:.2%}, a change of more than "
                              "{threshold:.0%} from the training population"),
    "early_delinquency": ("Tỷ lệ quá hạn 30+ ngày sau 3 tháng là {value:.2%}, vượt {threshold:.2%}",
                          "30+ days past due by 3 months on book is {value:.2%}, above {threshold:.2%}"),
    "realised_auc": ("AUC thực tế {value:.3f} nằm ngoài khoảng ước tính (biên {threshold:.3f})",
                     "The realised AUC {value:.3f} is outside its estimate's interval (bound {threshold:.3f})"),
    "realised_default_rate": ("Tỷ lệ vỡ nợ thực tế {value:.2%} nằm ngoài khoảng ước tính (biên {threshold:.2%})",
                              "The realised default rate {value:.2%} is outside its estimate's interval "
                              "(bound {threshold:.2%})"),
    "new_entrants": ("Người mới tham gia nền tảng chiếm {value:.1%} hồ sơ, thay đổi quá {threshold:.0%} điểm "
                     "so với tập huấn luyện",
                     "New entrants to the platform are {value:.1%} of applications, a change of more "
                     "than {threshold:.0%} points from the training population"),
    "reason_share": ("Lý do “{what}” đứng đầu ở {value:.1%} hồ sơ, thay đổi quá {threshold:.0%} điểm",
                     "The reason “{what}” comes first for {value:.1%} of applications, a change of more "
                     "than {threshold:.0%} points"),
}


def alert_text(alert, lang: str) -> str:
    """An alert in the page's language, from its fields (the stored message is the English log's)."""
    if alert.kind == "psi":
        what = (("điểm" if lang == "vi" else "the score") if alert.target == "score" else
                _feature(alert.target, lang))
    elif alert.kind == "reason_share":
        what = _reason(alert.target, lang)
    else:
        what = ""
    vi, en = ALERT_WORDS.get(alert.kind, ("{what} {value}", "{what} {value}"))
    return (vi if lang == "vi" else en).format(what=what, value=alert.value, threshold=alert.threshold)


def _feature(name: str, lang: str) -> str:
    feature = FEATURES_BY_NAME.get(name)
    return name if feature is None else (feature.vi if lang == "vi" else feature.en)


def _reason(code: str, lang: str) -> str:
    reason = REASONS.get(code)
    return code if reason is None else (reason.vi if lang == "vi" else reason.en)


def _f(value, digits: int) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.1%}"


# ------------------------------------------------------------------------------ charts
W, H, LEFT, RIGHT, TOP, BOTTOM = 760, 300, 64, 20, 16, 56


def _frame(label: str, ticks: list[float], y, fmt) -> list[str]:
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(label)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>']
    for v in ticks:
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#d0d0d0"/>'
                     f'<text x="{LEFT - 8}" y="{y(v) + 5:.1f}" text-anchor="end" font-size="14" '
                     f'fill="{INK}">{fmt(v)}</text>')
    return parts


def _x(n: int):
    return lambda i: LEFT + (W - LEFT - RIGHT) * (i / (n - 1) if n > 1 else 0.5)


def _month_labels(months: list[str], x) -> list[str]:
    step = max(1, int(np.ceil(len(months) / 8)))
    return [f'<text x="{x(i):.1f}" y="{H - BOTTOM + 22}" text-anchor="middle" font-size="13" '
            f'fill="{INK}">{escape(m)}</text>' for i, m in enumerate(months) if i % step == 0]


def _legend(items: list[tuple[str, str]]) -> str:
    return "".join(f'<rect x="{LEFT + 200 * k}" y="{H - 22}" width="14" height="14" fill="{c}"/>'
                   f'<text x="{LEFT + 200 * k + 20}" y="{H - 10}" font-size="14" fill="{INK}">{escape(t)}</text>'
                   for k, (t, c) in enumerate(items))


def _polyline(points: list[tuple[float, float]], colour: str, dash: str = "") -> str:
    if not points:
        return ""
    path = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
    return (f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="3"'
            + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")


def psi_svg(monthly: pd.DataFrame, lang: str) -> str:
    """The score's PSI and the largest feature PSI by month, with the 0.1 and 0.25 bands."""
    months = monthly["month"].tolist()
    n = len(months)
    top = max(0.3, float(np.nanmax(monthly[["psi_score", "psi_max_feature"]].to_numpy())) * 1.05)
    x = _x(n)

    def y(v):
        return TOP + (H - TOP - BOTTOM) * (1 - min(v, top) / top)
    ticks = [0.0, 0.1, 0.25, round(top, 2)] if top < 1 else [0.0, 0.25, round(top / 2, 1), round(top, 1)]
    parts = _frame(word("psi_alt", lang, n=n), ticks, y, lambda v: f"{v:.2f}")
    for bound in (0.1, 0.25):
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(bound):.1f}" y2="{y(bound):.1f}" '
                     f'stroke="{GRID}" stroke-dasharray="6 4"/>')
    for column, colour in (("psi_score", SERIES[0]), ("psi_max_feature", SERIES[1])):
        values = monthly[column].to_numpy(dtype=float)
        parts.append(_polyline([(x(i), y(v)) for i, v in enumerate(values) if np.isfinite(v)], colour))
    parts += _month_labels(months, x)
    parts.append(_legend([(word("psi_score", lang), SERIES[0]), (word("psi_feature", lang), SERIES[1])]))
    return "".join(parts) + "</svg>"


def auc_svg(monthly: pd.DataFrame, lang: str) -> str:
    """The AUC estimated from the PDs (line, interval shaded) and the realised AUC (dots, bars)."""
    months = monthly["month"].tolist()
    n = len(months)
    x = _x(n)
    low, high = 0.3, 1.0

    def y(v):
        return TOP + (H - TOP - BOTTOM) * (1 - (min(max(v, low), high) - low) / (high - low))
    parts = _frame(word("auc_alt", lang, n=n), [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], y, lambda v: f"{v:.1f}")
    lo, hi = monthly["expected_auc_low"].to_numpy(float), monthly["expected_auc_high"].to_numpy(float)
    ok = [i for i in range(n) if np.isfinite(lo[i]) and np.isfinite(hi[i])]
    if ok:
        band = [(x(i), y(hi[i])) for i in ok] + [(x(i), y(lo[i])) for i in reversed(ok)]
        parts.append('<polygon points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in band)
                     + f'" fill="{BAND}" stroke="none"/>')
    est = monthly["expected_auc"].to_numpy(float)
    parts.append(_polyline([(x(i), y(v)) for i, v in enumerate(est) if np.isfinite(v)], SERIES[0]))
    for i, r in enumerate(monthly.itertuples()):
        if np.isfinite(r.realised_auc):
            parts.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{y(r.realised_auc_low):.1f}" '
                         f'y2="{y(r.realised_auc_high):.1f}" stroke="{SERIES[1]}" stroke-width="2"/>'
                         f'<circle cx="{x(i):.1f}" cy="{y(r.realised_auc):.1f}" r="5" fill="{SERIES[1]}">'
                         f'<title>{escape(r.month)}: {r.realised_auc:.3f}</title></circle>')
    parts += _month_labels(months, x)
    parts.append(_legend([(word("expected", lang), SERIES[0]), (word("realised", lang), SERIES[1])]))
    return "".join(parts) + "</svg>"


def vintage_svg(vintages: pd.DataFrame, lang: str) -> str:
    """Cumulative default rate by months on book, one line per disbursal quarter (the last eight)."""
    if vintages.empty:
        return ""
    quarters = vintages[vintages["group_kind"] == "quarter"]
    groups = sorted(quarters["group"].unique())[-8:]
    if not groups:
        return ""
    max_mob = int(quarters["mob"].max())
    top = max(0.02, float(quarters["cum_default_rate"].max()) * 1.1)

    def x(k):
        return LEFT + (W - LEFT - RIGHT) * (k - 1) / max(max_mob - 1, 1)

    def y(v):
        return TOP + (H - TOP - BOTTOM) * (1 - v / top)
    parts = _frame(word("vintage_alt", lang, n=len(groups)), [0.0, top / 2, top], y, lambda v: f"{v:.0%}")
    legend = []
    for k, group in enumerate(groups):
        part = quarters[quarters["group"] == group].sort_values("mob")
        colour = SERIES[k % len(SERIES)]
        parts.append(_polyline([(x(m), y(v)) for m, v in zip(part["mob"], part["cum_default_rate"])], colour,
                               "" if k % 2 == 0 else "8 4"))
        legend.append((group, colour))
    for m in range(1, max_mob + 1, max(1, max_mob // 8)):
        parts.append(f'<text x="{x(m):.1f}" y="{H - BOTTOM + 22}" text-anchor="middle" font-size="13" '
                     f'fill="{INK}">{m}</text>')
    parts.append(f'<text x="{W - RIGHT}" y="{H - BOTTOM + 40}" text-anchor="end" font-size="13" '
                 f'fill="{INK}">{escape(word("mob", lang))}</text>')
    parts.append("".join(f'<rect x="{LEFT + 86 * k}" y="{H - 16}" width="12" height="12" fill="{c}"/>'
                         f'<text x="{LEFT + 86 * k + 16}" y="{H - 5}" font-size="12" fill="{INK}">{escape(t)}</text>'
                         for k, (t, c) in enumerate(legend)))
    return "".join(parts) + "</svg>"
