"""Reject inference measured against the truth: `make benchmark-reject-inference` runs it.

    python -m benchmarks.reject_inference [--seeds 42,7,2027] [--members 80000] [--decline-share 0.3]

For each seed: generate a world whose lender declined a share of the applications by an older score
plus noise (and funded 2 % of those would-be declines at random), ingest it, fit every method of
training.reject_inference on the member applications of every month but the latest six, and
measure each on every applicant of those six months, declined ones included, against the outcome
they would have had and their true PD (evaluation.through_the_door). Writes docs/reject-inference.md
between its markers, and training/reject_inference_choice.json: the method that measured best on
every seed, which `coopscore train` uses by default when the data records declined applications.
Seed 42 is the one the generator's policy was tuned on; the others were not.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.machine import cpu_and_memory
from training.reject_inference import CHOICE_FILE

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reject-inference.md"
BEGIN = "<!-- figures: begin (written by benchmarks/reject_inference.py) -->"
END = "<!-- figures: end -->"
TUNED_SEED = 42


def say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def one_seed(seed: int, members: int, cooperatives: int, decline_share: float, home: Path, n_boot: int):
    """The comparison of every method for one generator seed, in a fresh home."""
    from coopscore.synthetic import generate
    from data_contracts.ingest import ingest
    from evaluation.through_the_door import compare

    started = time.perf_counter()
    generate(home / "raw", members=members, cooperatives=cooperatives, seed=seed,
             past_policy_decline_share=decline_share)
    ingest(home / "raw", home / "clean", home / "quarantine")
    say(f"seed {seed}: data in {time.perf_counter() - started:.0f} s")
    result = compare(home / "clean", "member", n_boot=n_boot, progress=lambda m: say(f"  seed {seed}: {m}"))
    say(f"seed {seed}: done in {time.perf_counter() - started:.0f} s; best {result.best}")
    return result


def _est(e, fmt=".3f") -> str:
    return f"{format(e.value, fmt)} [{format(e.low, fmt)}, {format(e.high, fmt)}]"


def figures(runs: dict[int, object], machine: str, took: float, members: int, cooperatives: int,
            decline_share: float, n_boot: int) -> str:
    """The markdown written between the markers of docs/reject-inference.md."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    first = next(iter(runs.values()))
    bad_rate = next(iter(first.results.values())).bad_rate
    lines = [BEGIN, "",
             f"Written by `make benchmark-reject-inference` (`python -m benchmarks.reject_inference`) "
             f"on {when}, in {took / 60:.0f} min. Machine: {machine}.", "",
             f"{members:,} members and {cooperatives:,} cooperatives per seed; the lender's past "
             f"policy declined {decline_share:.0%} of the applications and funded 2 % of those at "
             f"random. Member applications; trained on every month but the latest six, measured on "
             f"every applicant of those six (through the door), against the generator's truth. "
             f"95 % bootstrap intervals ({n_boot} resamples of the test applicants). Seed "
             f"{TUNED_SEED} is the seed the policy's parameters were chosen on; the others were not "
             "looked at before this run.", "",
             "| seed | train: funded / declined / random accepts | test applicants (from - to) | "
             "would-be bad rate |", "| --- | --- | --- | --- |"]
    for seed, r in runs.items():
        rate = next(iter(r.results.values())).would_be_bad_rate
        lines.append(f"| {seed}{' (tuned)' if seed == TUNED_SEED else ''} | {r.train_funded:,} / "
                     f"{r.train_declined:,} / {r.train_random_accepts:,} | {r.test_rows:,} "
                     f"({r.test_from} - {r.test_to}) | {rate:.4f} |")
    lines += ["", "Through the door: AUC against the would-be outcomes; calibration in the large "
              "(mean PD minus the would-be default rate, and minus the mean true PD); approval rate "
              f"at a bad rate of {bad_rate:.0%} among the approved; |CITL| / |CITL of funded-only| on "
              "the same resamples (below 0.5 at the top of its interval: at least halved); the "
              "AUC on the funded test applicants alone, what a lender can measure.", "",
              "| seed | method | AUC | CITL vs outcomes | CITL vs true PD | approval rate at "
              f"{bad_rate:.0%} bad | CITL ratio vs true PD | CITL ratio vs outcomes | AUC, funded only |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for seed, r in runs.items():
        for name, m in r.results.items():
            star = " **(best)**" if name == r.best else ""
            lines.append(
                f"| {seed} | {name}{star} | {_est(m.auc)} | {_est(m.calibration_in_the_large, '+.4f')} | "
                f"{_est(m.calibration_vs_true_pd, '+.4f')} | {_est(m.approval_rate)} | "
                f"{_est(r.halving_vs_true_pd[name], '.2f')} | {_est(r.halving_vs_outcome[name], '.2f')} | "
                f"{_est(r.funded_test[name])} |")
    lines += ["", END]
    return "\n".join(lines)


def choice(runs: dict[int, object]) -> dict:
    """The record training.reject_inference.measured_choice reads: the method whose through-the-door
    calibration error against the true PD is smallest at the far end of its interval on its worst
    seed (the rule of Comparison.best, applied across seeds), with every seed's evidence."""
    def far_end(e) -> float:
        return max(abs(e.low), abs(e.high))

    names = list(next(iter(runs.values())).results)
    best = min(names, key=lambda n: max(far_end(r.results[n].calibration_vs_true_pd) for r in runs.values()))

    def est(e) -> dict:
        return {"value": round(e.value, 6), "low": round(e.low, 6), "high": round(e.high, 6)}

    return {"method": best, "seeds": list(runs),
            "written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "rule": "smallest |CITL vs true PD| at the far end of its 95% interval, on the worst seed",
            "evidence": {str(seed): {n: {"citl_vs_true_pd": est(r.results[n].calibration_vs_true_pd),
                                         "ratio_vs_funded_only": est(r.halving_vs_true_pd[n]),
                                         "auc": est(r.results[n].auc)} for n in names}
                         for seed, r in runs.items()}}


def write(doc: Path, block: str) -> None:
    """Replace the block between the markers (appended under a heading the first time)."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Reject inference\n"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Figures\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="42,7,2027", help="generator seeds, comma-separated")
    parser.add_argument("--members", type=int, default=80_000)
    parser.add_argument("--cooperatives", type=int, default=4_000)
    parser.add_argument("--decline-share", type=float, default=0.3)
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--doc", type=Path, default=DOC, help="the markdown file to write the figures to")
    parser.add_argument("--choice", type=Path, default=CHOICE_FILE,
                        help="where to write the measured choice that `coopscore train` reads")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    runs = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"coopscore-reject-{seed}-") as tmp:
            runs[seed] = one_seed(seed, args.members, args.cooperatives, args.decline_share, Path(tmp),
                                  args.n_boot)
    cpu, mem = cpu_and_memory()
    write(args.doc, figures(runs, f"{cpu}, {os.cpu_count()} cores, {mem}", time.perf_counter() - started,
                            args.members, args.cooperatives, args.decline_share, args.n_boot))
    record = choice(runs)
    args.choice.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    say(f"wrote {args.doc} and {args.choice} (measured best: {record['method']})")


if __name__ == "__main__":
    main()
