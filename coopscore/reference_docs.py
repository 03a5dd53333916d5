"""Writes docs/features.md and docs/data_contracts.md from the declarations, so the docs can never
drift from the code (tests/test_docs.py fails when they do: run `coopscore docs`)."""
from __future__ import annotations

from pathlib import Path

from data_contracts.contracts import CONTRACTS
from features.catalogue import FEATURES
from features.declarations import Aggregate, Attribute, SeriesStat, Trend, UsualBucket
from features.reasons import REASONS

RISK = {1: "higher = riskier", -1: "higher = safer", 0: "either way"}


def _window(source, window) -> str:
    if window is None:
        return ""
    unit = "months" if source.age == "months_ago" else "days"
    return f", {unit} {window.first}-{window.last} before"


def _input(i) -> str:
    """One input of a declaration, in a few words: what, of which source, which rows."""
    if isinstance(i, Aggregate):
        where = f" where {i.where}" if i.where else ""
        return f"{i.how}({i.of}) of {i.source.name}{where}{_window(i.source, i.window)}"
    if isinstance(i, Attribute):
        return f"{i.of} of the {i.source.name}"
    name = f"series `{i.series.name}`"
    if isinstance(i, SeriesStat):
        return f"{i.how} over the buckets of {name}"
    if isinstance(i, Trend):
        return f"trend over {i.buckets} buckets of {name}"
    if isinstance(i, UsualBucket):
        return (f"median of buckets {i.first}-{i.last} of {name} (an empty bucket as 0, at "
                f"least {i.at_least} wholly inside the subject's history)")
    raise TypeError(f"no description for {type(i).__name__}")


def computed_as(f) -> str:
    """How a feature is computed, from its declaration."""
    if not f.is_history:
        return f"on demand: `features.on_demand.{f.on_demand.__name__}` (the application)"
    inputs = "; ".join(f"`{k}` = {_input(i)}" for k, i in f.inputs)
    if f.expression == "{value}":
        return _input(f.inputs[0][1])
    return f"`{f.expression}`, {inputs}"


def features_md() -> str:
    lines = ["# Features", "",
             "Generated from `features/catalogue.py` by `coopscore docs`; do not edit by hand.", "",
             "Every feature is computed as of a date from data strictly before it. A history "
             "feature is a declaration (`features/declarations.py`): its inputs, each an "
             "aggregation of a source (`features/sources.py`) over the rows that pass a filter "
             "within a window, and an expression over them; `features/compiler.py` compiles the "
             "declarations to one SQL query (DuckDB today, Spark SQL by the same compiler). "
             "Adding a feature is adding one declaration to the catalogue.", "",
             "| feature | meaning (vi) | meaning (en) | direction of risk | reason code | subjects "
             "| computed as |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for f in FEATURES:
        how = computed_as(f).replace("|", "\\|")
        lines.append(f"| `{f.name}` | {f.vi} | {f.en} | {RISK[f.risk]} | {f.reason} | "
                     f"{', '.join(f.subjects)} | {how} |")
    series = {i.series: None for f in FEATURES for _, i in f.inputs if hasattr(i, "series")}
    lines += ["", "## Series", "", "Buckets of a source's rows, each bucket's sum; features read "
              "stats over them.", "", "| series | sum of | source | bucket | rows |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| `{s.name}` | {s.of} | {s.source.name} | `{s.by}` | "
              f"{s.where or 'all'}{_window(s.source, s.window)} |" for s in series]
    lines += ["", "## Reason codes", "", "| code | text (vi) | text (en) |", "| --- | --- | --- |"]
    lines += [f"| `{r.code}` | {r.vi} | {r.en} |" for r in REASONS.values()]
    return "\n".join(lines) + "\n"


def contracts_md() -> str:
    lines = ["# Data contracts", "",
             "Generated from `data_contracts/contracts.py` by `coopscore docs`; do not edit by hand.",
             "Protected attributes are kept for fairness evaluation only and never reach a model.", ""]
    for c in CONTRACTS.values():
        lines += [f"## `{c.table}`", "", f"{c.meaning_vi} / {c.meaning_en}. Key: "
                  f"{', '.join(f'`{k}`' for k in c.key)}.", "",
                  "| column | type | unit | allowed | meaning (vi) | meaning (en) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for f in c.fields:
            allowed = []
            if f.allowed is not None:
                allowed.append(", ".join(str(a) for a in f.allowed))
            if f.min is not None:
                allowed.append(f">= {f.min:,}")
            if f.max is not None:
                allowed.append(f"<= {f.max:,}")
            if f.pattern:
                allowed.append(f"`{f.pattern}`")
            if f.nullable:
                allowed.append("may be empty")
            if f.protected:
                allowed.append("**protected**")
            lines.append(f"| `{f.name}` | {f.dtype} | {f.unit} | {'; '.join(allowed)} | "
                         f"{f.meaning_vi} | {f.meaning_en} |")
        lines.append("")
    return "\n".join(lines)


def write(docs_dir: Path) -> list[Path]:
    docs_dir.mkdir(parents=True, exist_ok=True)
    out = [(docs_dir / "features.md", features_md()), (docs_dir / "data_contracts.md", contracts_md())]
    for path, text in out:
        path.write_text(text, encoding="utf-8")
    return [p for p, _ in out]
