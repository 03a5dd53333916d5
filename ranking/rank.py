"""Rank every member as of a date: score, tier, percentiles, reasons, actions; keep the history.

Ranking is about the member, not a loan, but the champion scores applications, so every member is
scored for one REFERENCE APPLICATION: 50,000,000 VND over 12 months for working capital (a typical
small working-capital loan, well under the Decree 156/2025 unsecured limits; the purpose is not a
model input). The same reference for everyone makes scores comparable between members and dates.

Vectorised: one history matrix (the snapshot's, or computed on DuckDB for an earlier date), one
`Scorer.decide` call for all members with enough history, percentiles by a grouped rank, advice by
`ranking.advice.advise_all` (each lever followed in every member's raw rows: one feature-engine run
and one model call per lever). No Python loop per member.

History: one Parquet file per as-of date under `<home>/ranking/rankings/as_of=<date>/`; a rerun
for the same date replaces that partition (idempotent), another date adds one, so each member has
a trend. Files are sorted by member_id with small row groups, so a page reading one member skips
most of the file.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from settings import Paths
from features import engine, snapshot
from features.reasons import REASONS
from features.sufficiency import what_is_missing
from ranking import advice, tiers

SUBJECT = "member"
REFERENCE_AMOUNT_VND = 50_000_000
REFERENCE_TERM_MONTHS = 12
REFERENCE_PURPOSE = "working_capital"
REFERENCE_APPLICATION = {"amount_vnd": REFERENCE_AMOUNT_VND, "term_months": REFERENCE_TERM_MONTHS,
                         "purpose": REFERENCE_PURPOSE}
N_REASONS = 3
N_ACTIONS = 3
ROW_GROUP = 50_000
# Members ranked at once on one machine (rank_members): bounds the memory of following the levers.
BATCH_MEMBERS = 100_000
# Percentiles within each group of members (percentile_within), column by column.
GROUPS = ("cooperative_id", "province", "business_sector")
PERCENTILES = ("pct_cooperative", "pct_province", "pct_sector")
# The columns of the ranking history, as written on one machine and on Spark (ranking.spark_rank).
RANKING_SCHEMA = pa.schema(
    [("member_id", pa.string()), ("as_of_date", pa.date32()), ("status", pa.string()),
     ("score", pa.float64()), ("pd", pa.float64()), ("tier", pa.string()), ("tier_vi", pa.string()),
     ("tier_en", pa.string())]
    + [(g, pa.string()) for g in GROUPS] + [(p, pa.float64()) for p in PERCENTILES]
    + [(f"reason_{j + 1}", pa.string()) for j in range(N_REASONS)]
    + [field for j in range(N_ACTIONS) for field in (
        (f"action_{j + 1}", pa.string()), (f"action_{j + 1}_score_after", pa.float64()),
        (f"action_{j + 1}_gain", pa.float64()), (f"action_{j + 1}_target", pa.float64()))]
    + [("history_days", pa.int64()), ("transactions_365d", pa.int64()), ("missing", pa.string()),
       ("model_version", pa.string())])

_SCORERS: dict[tuple, object] = {}


def get_scorer(paths: Paths):
    """One Scorer per home (loading costs seconds), rebuilt when the snapshot or champion changes."""
    from scoring.scorer import Scorer
    from training import registry
    registry.use_store(paths)
    meta = paths.features / snapshot.META_FILE
    champion = registry.champion_version(SUBJECT)
    key = (str(paths.home), meta.stat().st_mtime_ns if meta.exists() else 0,
           str(champion.version) if champion else None)
    scorer = _SCORERS.get(key)
    if scorer is None:
        for old in [k for k in _SCORERS if k[0] == key[0]]:
            del _SCORERS[old]
        scorer = _SCORERS[key] = Scorer(paths)
    return scorer


def rankings_dir(paths: Paths) -> Path:
    return paths.home / "ranking" / "rankings"


def _partition(paths: Paths, as_of: date) -> Path:
    return rankings_dir(paths) / f"as_of={as_of.isoformat()}"


@dataclass
class RankingRun:
    as_of: date
    model_version: str
    frame: pd.DataFrame  # one row per member, the columns written to the history
    path: Path
    reference_application: dict = field(default_factory=lambda: dict(REFERENCE_APPLICATION))
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ranked(self) -> int:
        return int((self.frame["status"] == "ranked").sum())

    @property
    def not_enough_data(self) -> int:
        return int((self.frame["status"] == "not_enough_data").sum())


# -- steps ------------------------------------------------------------------------------------
def member_history(scorer, paths: Paths, as_of: date) -> tuple[np.ndarray, np.ndarray]:
    """(member ids, history matrix in `scorer.columns`) for every member of the snapshot as of
    `as_of`: the snapshot itself on its date, else the same catalogue on DuckDB (point in time)."""
    ids = scorer.ids[SUBJECT].to_numpy()
    if as_of == scorer.snapshot_date:
        return ids, scorer.matrix[SUBJECT]
    spine = pd.DataFrame({"spine_id": [f"{SUBJECT}:{i}" for i in ids], "entity_type": SUBJECT,
                          "entity_id": ids, "as_of": pd.Timestamp(as_of)})
    frame = engine.history_features(engine.connect(paths.clean), spine).set_index("entity_id")
    return ids, np.ascontiguousarray(frame.loc[ids, scorer.columns].to_numpy(dtype=np.float64))


def percentile_within(score: pd.Series, group: pd.Series) -> pd.Series:
    """Mid-rank percentile of each score within its group, 0-100, higher = better: the share of
    the group's ranked members scoring lower, ties counting half. NaN scores are left out."""
    ok = score.notna() & group.notna()
    s, g = score[ok], group[ok]
    rank = s.groupby(g, sort=False).rank(method="average")
    size = g.map(g.value_counts())
    out = pd.Series(np.nan, index=score.index)
    out[ok] = 100.0 * (rank - 0.5) / size
    return out


def _missing_json(days: np.ndarray, tx: np.ndarray) -> np.ndarray:
    """features.sufficiency texts as JSON, per row; cached by (days, transactions): few distinct."""
    cache: dict[tuple[int, int], str] = {}
    out = np.empty(len(days), dtype=object)
    for i, key in enumerate(zip(days.astype(int).tolist(), tx.astype(int).tolist())):
        text = cache.get(key)
        if text is None:
            text = cache[key] = json.dumps(what_is_missing(*key), ensure_ascii=False)
        out[i] = text
    return out


def rank_rows(scorer, clean_dir: Path, ids: np.ndarray, history: np.ndarray, groups: pd.DataFrame,
              as_of: date, say: Callable[[str], None] = lambda message: None,
              timings: dict[str, float] | None = None, scoped_advice: bool = False) -> pd.DataFrame:
    """Every column of the ranking but the percentiles, one row per member `ids` (their `history`
    rows in scorer.columns as of `as_of`; `groups` aligned with them: cooperative_id, province,
    business_sector): status, score, PD, tier, reasons, actions followed in the raw data of
    `clean_dir` (with `scoped_advice`, on a DuckDB holding only what these members' features read:
    a Spark partition's members), history counts, what is missing. `scorer`: a Scorer or
    scoring.scorer.Champions."""
    timings = {} if timings is None else timings
    plan = scorer.plans[SUBJECT]
    t = time.perf_counter()
    n = len(ids)
    col = {c: i for i, c in enumerate(scorer.columns)}
    enough = scorer.enough_history(history)
    ok = np.flatnonzero(enough)
    say(f"scoring {len(ok):,} of {n:,} members with enough history")
    score = np.full(n, np.nan)
    pd_values = np.full(n, np.nan)
    reasons = np.full((n, N_REASONS), None, dtype=object)
    if len(ok):
        d = scorer.decide(SUBJECT, history[ok], np.full(len(ok), float(REFERENCE_AMOUNT_VND)),
                          np.full(len(ok), float(REFERENCE_TERM_MONTHS)))
        score[ok] = np.round(d.score, 1)  # as the API answers; percentiles use this
        pd_values[ok] = d.pd
        names = np.array(list(d.reason_codes) + [None], dtype=object)
        reasons[ok] = names[d.reason_idx[:, :N_REASONS]]  # -1 (fewer reasons) -> None
        raw_score = d.score
    timings["score"] = time.perf_counter() - t

    t = time.perf_counter()
    say("advice: following every lever in the raw data (one engine run per lever)")
    actions = {"code": np.full((n, N_ACTIONS), None, dtype=object),
               **{k: np.full((n, N_ACTIONS), np.nan) for k in ("score_after", "gain", "target")}}
    if len(ok):
        steps: dict[str, float] = {}
        got = advice.advise_all(scorer, clean_dir, ids[ok], as_of, history[ok], raw_score,
                                k=N_ACTIONS, timings=steps, scoped=scoped_advice)
        for key in actions:
            actions[key][ok] = got[key]
        say("advice steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))
    timings["advice"] = time.perf_counter() - t

    t = time.perf_counter()
    tier_idx = tiers.tier_index_from_pd(pd_values)  # the PD the grade comes from, unrounded
    tier_table = pd.DataFrame(tiers.TIERS)
    frame = pd.DataFrame({
        "member_id": ids,
        "as_of_date": pd.Series([as_of] * n, dtype="object"),
        "status": np.where(enough, "ranked", "not_enough_data"),
        "score": score, "pd": pd_values,
        "tier": np.where(enough, tier_table["code"].to_numpy()[tier_idx], None),
        "tier_vi": np.where(enough, tier_table["vi"].to_numpy()[tier_idx], None),
        "tier_en": np.where(enough, tier_table["en"].to_numpy()[tier_idx], None),
        **{group: groups[group].to_numpy() for group in GROUPS},
    })
    for j in range(N_REASONS):
        frame[f"reason_{j + 1}"] = reasons[:, j]
    for j in range(N_ACTIONS):
        frame[f"action_{j + 1}"] = actions["code"][:, j]
        frame[f"action_{j + 1}_score_after"] = np.round(actions["score_after"][:, j], 1)
        # unrounded, for the member page (ranking.advice.advise reads them back when current)
        frame[f"action_{j + 1}_gain"] = actions["gain"][:, j]
        frame[f"action_{j + 1}_target"] = actions["target"][:, j]
    frame["history_days"] = history[:, col["history_days"]].astype(int)
    frame["transactions_365d"] = history[:, col["transactions_365d"]].astype(int)
    missing = np.full(n, None, dtype=object)
    short = np.flatnonzero(~enough)
    missing[short] = _missing_json(frame["history_days"].to_numpy()[short],
                                   frame["transactions_365d"].to_numpy()[short])
    frame["missing"] = missing
    frame["model_version"] = plan.loaded.info.version
    timings["assemble"] = time.perf_counter() - t

    return frame


def cooperative_batches(cooperative_id: pd.Series, batch_members: int) -> list[np.ndarray]:
    """Row positions in batches of whole cooperatives: a batch starts at every `batch_members`-th
    member in cooperative order, so it holds about that many, at most that many plus one
    cooperative's members. Members without a cooperative go with the last batch. Every row is in
    exactly one batch, in the original order within it."""
    if batch_members < 1:
        raise ValueError(f"batch_members must be at least 1, got {batch_members}")
    sizes = cooperative_id.value_counts(sort=False).sort_index()
    batch_of_coop = pd.Series((sizes.cumsum() - sizes).to_numpy() // batch_members, index=sizes.index)
    batch = cooperative_id.map(batch_of_coop).fillna(batch_of_coop.max() if len(sizes) else 0)
    return [np.flatnonzero(batch.to_numpy() == b) for b in np.unique(batch.to_numpy())]


def ranking_plan(plans, snapshot_date: date, as_of: date | None):
    """What every door that ranks checks first (here and ranking.spark_rank): the member
    champion's plan among `plans` and the ranking's date (default: the snapshot's). RuntimeError
    without a member champion, ValueError for a date after the snapshot's."""
    plan = plans.get(SUBJECT)
    if plan is None:
        raise RuntimeError("no champion member model: run `coopscore train` first")
    as_of = as_of or snapshot_date
    if as_of > snapshot_date:
        raise ValueError(f"as_of {as_of} is after the latest data ({snapshot_date})")
    return plan, as_of


def rank_members(paths: Paths, as_of: date | None = None,
                 progress: Callable[[str], None] | None = None, scorer=None,
                 batch_members: int = BATCH_MEMBERS) -> RankingRun:
    """Rank every member of the snapshot as of `as_of` (default: the snapshot date) and write the
    run to the history, replacing an earlier run for the same date. Members are ranked in batches
    of whole cooperatives of about `batch_members` (the actions follow each lever in the raw
    data, whose copy grows with the members at once: 10^6 at once exceed 24 GiB); the
    percentiles are taken over every batch together."""
    say = progress or (lambda message: None)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    scorer = scorer or get_scorer(paths)
    plan, as_of = ranking_plan(scorer.plans, scorer.snapshot_date, as_of)
    timings["load"] = time.perf_counter() - t

    t = time.perf_counter()
    say(f"history of every member as of {as_of}")
    ids, history = member_history(scorer, paths, as_of)
    timings["history"] = time.perf_counter() - t

    members = pd.read_parquet(paths.clean / "members.parquet", columns=["member_id", *GROUPS])
    groups = members.set_index("member_id").reindex(ids)
    batches = cooperative_batches(groups["cooperative_id"], batch_members)
    parts = []
    for number, rows in enumerate(batches, start=1):
        if len(batches) > 1:
            say(f"batch {number} of {len(batches)}: {len(rows):,} members of whole cooperatives")
        steps: dict[str, float] = {}
        # one batch: the whole data, as always; several: each on a DuckDB holding only its
        # cooperatives' rows (the Spark partition's scope, tested equal), so memory stays bounded
        parts.append(rank_rows(scorer, paths.clean, ids[rows], history[rows], groups.iloc[rows],
                               as_of, say, steps, scoped_advice=len(batches) > 1))
        for key, seconds in steps.items():
            timings[key] = timings.get(key, 0.0) + seconds
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    t = time.perf_counter()
    for column, group in zip(PERCENTILES, GROUPS):
        frame[column] = percentile_within(frame["score"], frame[group]).to_numpy()
    frame = frame[RANKING_SCHEMA.names]
    timings["percentiles"] = time.perf_counter() - t

    t = time.perf_counter()
    path = _write(paths, as_of, frame)
    timings["write"] = time.perf_counter() - t
    say(f"wrote {len(frame):,} members to {path}")
    return RankingRun(as_of=as_of, model_version=plan.loaded.info.version, frame=frame, path=path,
                      timings=timings)


def _write(paths: Paths, as_of: date, frame: pd.DataFrame) -> Path:
    """Write the partition of `as_of` atomically: to a temporary folder, then swapped in."""
    table = pa.Table.from_pandas(frame.sort_values("member_id", kind="stable"), schema=RANKING_SCHEMA,
                                 preserve_index=False)
    return write_sorted(paths, as_of, [table])


def write_sorted(paths: Paths, as_of: date, tables: Iterable[pa.Table]) -> Path:
    """Write the partition of `as_of` from `tables` (RANKING_SCHEMA, in member_id order)
    atomically: to a temporary folder, then swapped in."""
    root = rankings_dir(paths)
    root.mkdir(parents=True, exist_ok=True)
    final = _partition(paths, as_of)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        with pq.ParquetWriter(tmp / "part-0.parquet", RANKING_SCHEMA) as writer:
            for table in tables:
                writer.write_table(table.cast(RANKING_SCHEMA), row_group_size=ROW_GROUP)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = root / f".old-{uuid.uuid4().hex}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old)
    return final / "part-0.parquet"


# -- reading, for the member's page -----------------------------------------------------------
def ranking_dates(paths: Paths) -> list[date]:
    root = rankings_dir(paths)
    if not root.exists():
        return []
    return sorted(date.fromisoformat(p.name.split("=", 1)[1]) for p in root.glob("as_of=*")
                  if (p / "part-0.parquet").exists())


def _read_member(paths: Paths, as_of: date, member_id: str, columns=None) -> pd.DataFrame:
    return pq.read_table(_partition(paths, as_of) / "part-0.parquet", columns=columns,
                         filters=[("member_id", "==", member_id)]).to_pandas()


def _none(value):
    if value is None:
        return None
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _none(value.item())
    return value


def _iso(value) -> str:
    return pd.Timestamp(value).date().isoformat()


def latest_ranking(paths: Paths, member_id: str) -> dict | None:
    """The member's ranking on the latest as-of date ranked, or None (never ranked / unknown)."""
    dates = ranking_dates(paths)
    if not dates:
        return None
    rows = _read_member(paths, dates[-1], member_id)
    if rows.empty:
        return None
    r = {k: _none(v) for k, v in rows.iloc[0].to_dict().items()}
    reasons = [{"code": c, "text_vi": REASONS[c].vi, "text_en": REASONS[c].en}
               for c in (r[f"reason_{j + 1}"] for j in range(N_REASONS)) if c]
    actions = [{"code": c, "text_vi": advice.LEVERS_BY_CODE[c].text_vi,
                "text_en": advice.LEVERS_BY_CODE[c].text_en,
                "score_after": r[f"action_{j + 1}_score_after"]}
               for j, c in enumerate(r[f"action_{j + 1}"] for j in range(N_ACTIONS)) if c]
    return {
        "member_id": r["member_id"], "as_of_date": _iso(r["as_of_date"]), "status": r["status"],
        "score": r["score"], "pd": r["pd"], "tier": r["tier"], "tier_vi": r["tier_vi"],
        "tier_en": r["tier_en"], "pct_cooperative": r["pct_cooperative"],
        "pct_province": r["pct_province"], "pct_sector": r["pct_sector"],
        "reasons": reasons, "missing": json.loads(r["missing"]) if r["missing"] else [],
        "model_version": r["model_version"],
        # extras for the page (not part of the agreed minimum)
        "cooperative_id": r["cooperative_id"], "province": r["province"],
        "business_sector": r["business_sector"], "actions": actions,
        "reference_application": dict(REFERENCE_APPLICATION),
    }


HISTORY_COLUMNS = ["as_of_date", "status", "score", "tier", "tier_vi", "tier_en",
                   "pct_cooperative", "pct_province", "pct_sector", "model_version"]


def rank_history(paths: Paths, member_id: str) -> list[dict]:
    """The member's trend: one dict per as-of date ranked, oldest first (as_of_date ISO, status,
    score, tier, tier_vi, tier_en, pct_cooperative, pct_province, pct_sector, model_version)."""
    out = []
    for d in ranking_dates(paths):
        rows = _read_member(paths, d, member_id, ["member_id", *HISTORY_COLUMNS])
        for r in rows.to_dict("records"):
            item = {c: _none(r[c]) for c in HISTORY_COLUMNS}
            item["as_of_date"] = _iso(r["as_of_date"])
            out.append(item)
    return out


def rank_history_frame(paths: Paths, member_id: str) -> pd.DataFrame:
    """rank_history as a DataFrame (for notebooks and the CLI)."""
    return pd.DataFrame(rank_history(paths, member_id), columns=HISTORY_COLUMNS)


def month_starts(end: date, count: int) -> list[date]:
    """The last `count` first-of-month dates on or before `end`, oldest first (for --as-of runs)."""
    last = pd.Timestamp(end).to_period("M").to_timestamp()
    return [(last - pd.DateOffset(months=i)).date() for i in reversed(range(count))]
