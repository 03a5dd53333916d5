"""Writes docs/features.md and docs/data_contracts.md from the declarations, so the docs can never
drift from the code (tests/test_docs.py fails when they do: run `coopscore docs`)."""
from __future__ import annotations

from pathlib import Path

from data_contracts.contracts import CONTRACTS
from features.catalogue import FEATURES
from features.reasons import REASONS

RISK = {1: "higher = riskier", -1: "higher = safer", 0: "either way"}


def features_md() -> str:
    lines = ["# Features", "",
             "Generated from `features/catalogue.py` by `coopscore docs`; do not edit by hand.", "",
             "Every feature is computed as of a date from data strictly before it.", "",
             "| feature | meaning (vi) | meaning (en) | direction of risk | reason code | subjects |",
             "| --- | --- | --- | --- | --- | --- |"]
    for f in FEATURES:
        lines.append(f"| `{f.name}` | {f.vi} | {f.en} | {RISK[f.risk]} | {f.reason} | "
                     f"{', '.join(f.subjects)} |")
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
