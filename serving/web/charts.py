"""Charts as inline SVG, drawn on the server: no script, no external library, readable alt text."""
from __future__ import annotations

from datetime import date, datetime
from html import escape

from serving.web.texts import text

INK, GRID, LINE = "#1a1a1a", "#6b6b6b", "#0b4f9c"
UP, DOWN = "#1b6e20", "#b00020"  # >= 4.5:1 on white


def _d(value) -> str:
    if isinstance(value, (date, datetime)):
        return value.strftime("%m/%Y")
    return str(value)[:7]


LABEL_W = 76  # a date "2025-06" at font-size 20, with a little air


def _date_labels(n: int, x) -> list[int]:
    """Which dates to print under the line: the first, the last, and as many between as fit
    without two touching (on a phone six monthly labels side by side overlapped)."""
    if n == 1:
        return [0]

    def span(i):  # left and right edge of label i, by its anchor (first: start, last: end)
        left = x(i) if i == 0 else x(i) - LABEL_W if i == n - 1 else x(i) - LABEL_W / 2
        return left, left + LABEL_W

    chosen, last_left = [0], span(n - 1)[0]
    for i in range(1, n - 1):
        left, right = span(i)
        if left >= span(chosen[-1])[1] and right <= last_left:
            chosen.append(i)
    return chosen + [n - 1]  # the first label ends far left of the last one on this chart's width


def trend_svg(history: list[dict], lang: str) -> str:
    """A line of the score over the member's rankings (oldest left)."""
    points = [h for h in history if h.get("score") is not None]
    points.sort(key=lambda h: str(h.get("as_of_date")))
    if not points:
        return ""
    w, h, left, right, top, bottom = 480, 260, 58, 20, 16, 44
    scores = [float(p["score"]) for p in points]
    low, high = min(scores) - 10, max(scores) + 10
    n = len(points)

    def x(i):
        return left + (w - left - right) * (i / (n - 1) if n > 1 else 0.5)

    def y(s):
        return top + (h - top - bottom) * (1 - (s - low) / (high - low))

    label = text("trend_alt", lang, n=n, first=round(scores[0]), last=round(scores[-1]))
    parts = [f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{escape(label)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>']
    for s in (low + 10, (low + high) / 2, high - 10):
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{y(s):.1f}" y2="{y(s):.1f}" stroke="#d0d0d0"/>'
                     f'<text x="{left - 8}" y="{y(s) + 5:.1f}" text-anchor="end" font-size="20" fill="{INK}">{round(s)}</text>')
    path = " ".join(f"{x(i):.1f},{y(s):.1f}" for i, s in enumerate(scores))
    parts.append(f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="4"/>')
    for i, s in enumerate(scores):
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(s):.1f}" r="6" fill="{LINE}"/>')
    for i in _date_labels(n, x):
        anchor = "end" if i == n - 1 and n > 1 else ("start" if i == 0 and n > 1 else "middle")
        parts.append(f'<text x="{x(i):.1f}" y="{h - 14}" text-anchor="{anchor}" font-size="20" '
                     f'fill="{INK}">{escape(_d(points[i].get("as_of_date")))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def contributions_svg(items: list[tuple[str, float]], lang: str) -> str:
    """Horizontal bars of points (positive raises the score), largest |points| first."""
    if not items:
        return ""
    row, label_w, w = 34, 300, 760
    h = row * len(items) + 40
    mid = label_w + (w - label_w) / 2
    scale = (w - label_w) / 2 - 60
    biggest = max(abs(p) for _, p in items) or 1.0
    label = text("contrib_alt", lang, n=len(items))
    parts = [f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{escape(label)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>',
             f'<line x1="{mid}" x2="{mid}" y1="0" y2="{h - 30}" stroke="{GRID}"/>']
    for i, (name, points) in enumerate(items):
        yy = 10 + i * row
        length = abs(points) / biggest * scale
        x0 = mid if points >= 0 else mid - length
        colour = UP if points >= 0 else DOWN
        short = name if len(name) <= 38 else name[:36] + "…"
        parts.append(f'<text x="{label_w - 10}" y="{yy + 18}" text-anchor="end" font-size="14" '
                     f'fill="{INK}">{escape(short)}</text>'
                     f'<rect x="{x0:.1f}" y="{yy + 4}" width="{max(length, 1):.1f}" height="20" fill="{colour}">'
                     f'<title>{escape(name)}: {points:+.1f}</title></rect>'
                     f'<text x="{(x0 + length + 6) if points >= 0 else (x0 - 6):.1f}" y="{yy + 19}" '
                     f'text-anchor="{"start" if points >= 0 else "end"}" font-size="14" fill="{INK}">{points:+.1f}</text>')
    parts.append(f'<text x="{mid}" y="{h - 8}" text-anchor="middle" font-size="13" fill="{INK}">'
                 f'{"điểm" if lang == "vi" else "points"}</text></svg>')
    return "".join(parts)
