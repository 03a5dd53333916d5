"""Timing of the ranking at scale: `python -m ranking.bench [rows]` (default 10^6).

Tiles the snapshot's member matrix up to `rows` rows and times the vectorised steps of a ranking
run on it (scoring with reasons, percentiles), without writing anything. Advice follows each lever
in the members' RAW rows (ranking/follow.py) and recomputes their features on DuckDB, so it cannot
run on tiled matrix rows: it is timed on the home's real members (`advice_measured_s` for
`advice_measured_rows`) and extrapolated linearly to `rows` (`advice_s`; one engine run per lever
over all members, linear in the rows it reads). The snapshot's DuckDB history stage is timed by
`rank_members` itself (timings["history"]).
"""
from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from settings import get_paths
from ranking import advice, rank


def main(rows: int = 1_000_000) -> dict[str, float]:
    paths = get_paths()
    scorer = rank.get_scorer(paths)
    base = scorer.matrix[rank.SUBJECT]
    base = base[scorer.enough_history(base)]
    history = np.ascontiguousarray(np.tile(base, (int(np.ceil(rows / len(base))), 1))[:rows])
    out: dict[str, float] = {"rows": rows}
    t = time.perf_counter()
    d = scorer.decide(rank.SUBJECT, history, np.full(rows, float(rank.REFERENCE_AMOUNT_VND)),
                      np.full(rows, float(rank.REFERENCE_TERM_MONTHS)))
    out["score_with_reasons_s"] = time.perf_counter() - t
    matrix = scorer.matrix[rank.SUBJECT]
    ok = scorer.enough_history(matrix)
    t = time.perf_counter()
    advice.advise_all(scorer, paths.clean, scorer.ids[rank.SUBJECT].to_numpy()[ok],
                      scorer.snapshot_date, matrix[ok], k=rank.N_ACTIONS)
    out["advice_measured_s"] = time.perf_counter() - t
    out["advice_measured_rows"] = int(ok.sum())
    out["advice_s"] = out["advice_measured_s"] * rows / max(int(ok.sum()), 1)
    t = time.perf_counter()
    rng = np.random.default_rng(0)
    score = pd.Series(np.round(d.score, 1))
    for groups in (35_000, 34, 10):  # cooperatives, provinces, sectors
        rank.percentile_within(score, pd.Series(rng.integers(0, groups, rows)))
    out["percentiles_s"] = time.perf_counter() - t
    return out


if __name__ == "__main__":
    print(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
