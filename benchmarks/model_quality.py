"""Model quality on generator seeds, as a bank's validator would read it: `make benchmark` runs it.

    python -m benchmarks.model_quality [--seeds 42,7] [--members 20000] [--cooperatives 1000]

For each seed: generate the demo-size world (dirty), ingest, train through the gates
(governance.pipeline.train_and_promote: as-deployed backtest, refit on every matured label), then
evaluate the new version: the pooled backtest AUC of the model, the WoE scorecard, the feature
ceiling and the true PD, calibration, and every gate's verdict on two bootstrap seeds (a verdict
that flips between them rests on noise). Writes the figures between the markers of
docs/evaluation.md: the only place the model's figures are written, so the docs cannot disagree.
"""
from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import mlflow

from benchmarks.machine import cpu_and_memory

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "evaluation.md"
BEGIN, END = "<!-- figures: begin (written by benchmarks/model_quality.py) -->", "<!-- figures: end -->"


def say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def one_seed(seed: int, members: int, cooperatives: int, home: Path) -> list[dict]:
    """Every subject's figures for one generator seed, in a fresh home."""
    from coopscore.synthetic import generate
    from data_contracts.ingest import ingest
    from evaluation.champion import evaluate_model, summary
    from governance.pipeline import train_and_promote
    from governance.promotion import Gates, check_gates
    from settings import Paths, reset_settings
    from training import registry

    os.environ["COOPSCORE_HOME"] = str(home)
    os.environ.pop("COOPSCORE_TRACKING_URI", None)
    reset_settings()
    paths = Paths(home)
    started = time.perf_counter()
    generate(paths.raw, members=members, cooperatives=cooperatives, seed=seed, dirty=True)
    ingest(paths.raw, paths.clean, paths.quarantine)
    say(f"seed {seed}: data in {time.perf_counter() - started:.0f} s")
    out = []
    for subject in ("member", "cooperative"):
        t = time.perf_counter()
        run = train_and_promote(paths, subject, progress=lambda m: say(f"  {subject}: {m}"))
        registry.use_store(paths)
        model = mlflow.pyfunc.load_model(f"models:/{registry.model_name(subject)}/{run.version}")
        ev = evaluate_model(paths, subject, model, run.version, n_boot=500).evaluation
        verdicts: dict[str, list[bool]] = {}
        for boot_seed in (0, 1):
            for g in check_gates(ev, None, Gates(), n_boot=500, seed=boot_seed):
                verdicts.setdefault(g.name, []).append(g.passed)
        row = summary(ev)
        row.update(seed=seed, subject=subject, seconds=time.perf_counter() - t, gates=verdicts)
        say(f"  {subject}: AUC {row['auc']:.3f}, ceiling {row['ceiling_auc']}, true {row['true_pd_auc']}")
        out.append(row)
    return out


def _ci(pair) -> str:
    return "-" if pair is None else f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def _num(value, fmt=".3f") -> str:
    return "-" if value is None else format(value, fmt)


def figures(rows: list[dict], machine: str, took: float, members: int, cooperatives: int) -> str:
    """The markdown written between the markers of docs/evaluation.md."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [BEGIN, "",
             f"Written by `make benchmark` (`python -m benchmarks.model_quality`) on {when}, in "
             f"{took / 60:.0f} min. Machine: {machine}.", "",
             "Pooled as-deployed backtest (each test application scored by the model deployed at "
             "the latest quarter start T before it, trained on labels matured by T); 95% bootstrap "
             f"intervals; {members:,} members and {cooperatives:,} cooperatives per seed, dirty data.", "",
             "| seed | model | dates T | test rows | defaults | model AUC | WoE scorecard AUC | "
             "feature ceiling AUC | true PD AUC | calibration in the large | calibration slope |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['subject']} | {', '.join(r['backtest_dates'])} | {r['n_test']:,} | "
            f"{r['n_defaults']:,} | {_num(r['auc'])} {_ci(r['auc_ci'])} | "
            f"{_num(r['scorecard_auc'])} {_ci(r.get('scorecard_auc_ci'))} | "
            f"{_num(r['ceiling_auc'])} {_ci(r.get('ceiling_auc_ci'))} | "
            f"{_num(r['true_pd_auc'])} {_ci(r.get('true_pd_auc_ci'))} | "
            f"{_num(r['calibration_in_the_large'], '+.4f')} {_ci(r.get('calibration_in_the_large_ci'))} | "
            f"{_num(r['calibration_slope'], '.2f')} {_ci(r['calibration_slope_ci'])} |")
    lines += ["", "Gate verdicts on two bootstrap seeds (0 and 1), the version judged alone "
              "(no champion): pass/FAIL, and whether the verdict flips between the seeds.", "",
              "| seed | model | gate | bootstrap seed 0 | bootstrap seed 1 | flips |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        for gate, passed in r["gates"].items():
            shown = ["pass" if p else "FAIL" for p in passed]
            lines.append(f"| {r['seed']} | {r['subject']} | {gate} | {shown[0]} | {shown[-1]} | "
                         f"{'**yes**' if len(set(passed)) > 1 else 'no'} |")
    lines += ["", "Reading, per model: information the features do not carry = true PD AUC - "
              "ceiling AUC; estimation = ceiling AUC - model AUC.", ""]
    for r in rows:
        if r["ceiling_auc"] is not None and r["true_pd_auc"] is not None:
            lines.append(f"- seed {r['seed']}, {r['subject']}: information "
                         f"{r['true_pd_auc'] - r['ceiling_auc']:+.3f}, estimation "
                         f"{r['ceiling_auc'] - r['auc']:+.3f}.")
    lines += ["", END]
    return "\n".join(lines)


def write(doc: Path, block: str) -> None:
    """Replace the block between the markers (appended under a heading the first time)."""
    text = doc.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Figures\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="42,7", help="generator seeds, comma-separated")
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--cooperatives", type=int, default=1_000)
    parser.add_argument("--doc", type=Path, default=DOC, help="the markdown file to write the figures to")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"coopscore-quality-{seed}-") as tmp:
            rows += one_seed(seed, args.members, args.cooperatives, Path(tmp))
    cpu, mem = cpu_and_memory()
    write(args.doc, figures(rows, f"{cpu}, {os.cpu_count()} cores, {mem}", time.perf_counter() - started,
                            args.members, args.cooperatives))
    say(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
