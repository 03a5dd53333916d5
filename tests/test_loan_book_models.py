"""loan_book validation, candidates and nested selection, on small synthetic loan books.

The books are built so that the answer is known: the risk depends on a number through a U shape
and on the product of two numbers (which a linear model cannot see), on a category, and a date
column spreads the loans over four years.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from loan_book.candidates import CANDIDATES, GRIDS, make
from loan_book.errors import TableError
from loan_book.selection import select
from loan_book.validation import inner_splits, random_splits, time_splits
from training import scaling

# Small grids keep the nested runs fast; the procedure is the same as with candidates.GRIDS.
FAST = {"gbm": [{"num_leaves": 4, "min_child_samples": 20, "learning_rate": 0.1}],
        "scorecard": [{"C": 0.05}, {"C": 1.0}]}


def book(rows: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
    """A synthetic loan book: X (float64 + category, with missing cells), y, and loan dates."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=(3, rows))
    region = rng.choice(["north", "centre", "south", "highlands"], rows)
    logit = -1.0 + 1.2 * (a ** 2 - 1) + 1.5 * b * c + 0.8 * (region == "highlands")
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    X = pd.DataFrame({"a": a, "b": b, "c": c, "noise": rng.normal(size=rows),
                      "region": pd.Categorical(region, categories=sorted(set(region)))})
    X.loc[rng.choice(rows, 40, replace=False), "a"] = np.nan
    X.loc[rng.choice(rows, 30, replace=False), "region"] = np.nan
    dates = pd.Series(pd.to_datetime("2019-01-01")
                      + pd.to_timedelta(np.sort(rng.integers(0, 4 * 365, rows)), unit="D"))
    return X, y, dates


def months(dates: pd.Series) -> np.ndarray:
    return (dates.dt.year * 12 + dates.dt.month - 1).to_numpy()


# --------------------------------------------------------------------------- validation


def test_time_splits_train_only_on_loans_a_label_window_before_the_test_period():
    _, y, dates = book()
    m = months(dates)
    splits = time_splits(dates, y, folds=4, gap_months=12)
    assert len(splits) == 4
    previous_test_end = -1
    for split in splits:
        test_start = m[split.test].min()
        # Every training loan is dated at least 12 months before the test period: ignoring the gap
        # would put loans from the 12 months just before the period in the training rows.
        assert m[split.train].max() <= test_start - 13
        assert not np.isin(m, np.arange(test_start - 12, test_start))[split.train].any()
        assert np.intersect1d(split.train, split.test).size == 0
        assert test_start > previous_test_end  # consecutive periods, oldest first
        previous_test_end = m[split.test].max()
        assert y[split.train].sum() >= 20
    # Expanding window: each fold trains on everything the previous fold trained on, and more.
    for earlier, later in zip(splits, splits[1:]):
        assert set(earlier.train) < set(later.train)
    assert previous_test_end == m.max()  # the test periods reach the latest loans
    assert splits[0].name.startswith("test ") and splits[0].gap_months == 12


def test_time_splits_refuse_a_date_range_too_short_with_advice():
    _, y, dates = book()
    short = pd.Series(pd.to_datetime("2020-01-01")
                      + pd.to_timedelta(np.arange(len(y)) % 420, unit="D"))  # ~14 months
    with pytest.raises(TableError) as error:
        time_splits(short, y, folds=4, gap_months=12)
    message = str(error.value)
    assert "month" in message and "--folds" in message and "--cv random" in message
    assert "--label-months" in message
    # The same dates with a shorter label window do give folds.
    assert len(time_splits(short, y, folds=2, gap_months=3)) == 2


def test_time_splits_refuse_rows_without_a_date():
    _, y, dates = book()
    dates = dates.copy()
    dates.iloc[[3, 7]] = pd.NaT
    with pytest.raises(TableError, match="2 of 1,500 rows have no date"):
        time_splits(dates, y)


def test_random_splits_are_stratified_and_test_every_row_once_per_repeat():
    _, y, _ = book()
    splits = random_splits(y, folds=5, repeats=2, seed=3)
    assert len(splits) == 10
    rate = y.mean()
    for split in splits:
        assert abs(y[split.test].mean() - rate) < 2 / len(split.test) + 1e-12
        assert np.intersect1d(split.train, split.test).size == 0
        assert split.gap_months is None
    for repeat in (0, 1):
        tested = np.concatenate([s.test for s in splits if s.repeat == repeat])
        assert np.array_equal(np.sort(tested), np.arange(len(y)))


def test_inner_splits_are_out_of_time_when_the_dates_allow_it_else_random():
    _, y, dates = book()
    inner = inner_splits(dates, y, folds=3, gap_months=6)
    assert all(s.gap_months == 6 for s in inner)
    m = months(dates)
    assert all(m[s.train].max() <= m[s.test].min() - 7 for s in inner)
    short = dates.iloc[:200].reset_index(drop=True)  # about six months of loans
    assert all(s.gap_months is None for s in inner_splits(short, y[:200], folds=3, gap_months=12))


# --------------------------------------------------------------------------- candidates


@pytest.fixture(scope="module")
def fitted():
    X, y, _ = book(2000, seed=1)
    train, test = np.arange(1400), np.arange(1400, 2000)
    models = {name: make(name, **params).fit(X.iloc[train], y[train]) for name, params in
              [("gbm", {"learning_rate": 0.05}), ("scorecard", {}),
               ("blend", {"gbm": {"learning_rate": 0.05}}), ("logistic", {})]}
    return X.iloc[test], y[test], models


def test_candidates_recover_a_signal_the_logistic_baseline_cannot_see(fitted):
    X, y, models = fitted
    auc = {name: roc_auc_score(y, model.pd(X)) for name, model in models.items()}
    # The U shape and the product of b and c are invisible to a linear logistic regression.
    assert auc["gbm"] > 0.75
    assert auc["gbm"] > auc["logistic"] + 0.08
    assert auc["scorecard"] > auc["logistic"] + 0.03  # binning sees the U shape, not the product
    assert auc["blend"] > auc["logistic"] + 0.05


@pytest.mark.parametrize("name", [*CANDIDATES, "logistic"])
def test_contributions_sum_exactly_to_the_log_odds(fitted, name):
    X, _, models = fitted
    model = models[name]
    contributions = model.contributions(X)
    assert list(contributions.columns) == [*X.columns, "base"]
    assert np.abs(contributions.sum(axis=1).to_numpy() - model.log_odds(X)).max() < 1e-9
    assert np.allclose(model.pd(X), 1 / (1 + np.exp(-model.log_odds(X))))
    # A missing value still has its own contribution (no row silently dropped).
    assert contributions.notna().all().all()


def test_gbm_is_calibrated_on_average(fitted):
    X, y, models = fitted
    assert abs(models["gbm"].pd(X).mean() - y.mean()) < 0.05


def test_scorecard_points_table_adds_up_to_the_score(fitted):
    X, _, models = fitted
    card = models["scorecard"]
    table = card.points_table()
    assert set(table["feature"]) == {*X.columns, "base"}
    row = X.iloc[[0]]
    bins = card.contributions(row).iloc[0]
    # Each feature's contribution is the log-odds of one of its bins in the table.
    for feature in X.columns:
        assert np.isclose(table.loc[table["feature"] == feature, "log_odds"], bins[feature]).any()
    points = scaling.points_from_log_odds(bins.drop("base")).sum() + \
        table.loc[table["feature"] == "base", "points"].iloc[0]
    assert np.isclose(points, scaling.score_from_log_odds(card.log_odds(row))[0])


def test_make_refuses_an_unknown_candidate():
    with pytest.raises(ValueError, match="unknown candidate"):
        make("forest")
    assert set(GRIDS) >= {*CANDIDATES, "logistic"}


# --------------------------------------------------------------------------- nested selection


@pytest.fixture(scope="module")
def out_of_time():
    X, y, dates = book(1500, seed=2)
    splits = time_splits(dates, y, folds=3, gap_months=6)
    return X, y, dates, splits, select(X, y, dates, splits, grids=FAST, n_jobs=1)


def test_selection_reports_every_candidate_with_an_interval(out_of_time):
    X, y, _, splits, selection = out_of_time
    assert set(selection.candidates) == {"gbm", "scorecard", "blend", "logistic", "nested"}
    for result in selection.candidates.values():
        assert result.auc_low <= result.auc <= result.auc_high
        assert len(result.fold_aucs) == len(splits) == len(result.params_chosen)
    blend = selection.candidates["blend"]
    assert blend.auc > 0.7 and blend.auc_high - blend.auc_low < 0.15
    assert selection.candidates["gbm"].auc > selection.candidates["logistic"].auc + 0.05
    assert selection.validation == "out of time: 3 expanding folds, 6-month gap"
    assert selection.chosen in CANDIDATES
    model = make(selection.chosen, **selection.chosen_params).fit(X, y)  # the refit works as given
    assert model.pd(X).shape == (len(X),)
    # Out-of-fold rows: each tested row once, with its own outcome.
    oof = selection.oof
    assert len(oof) == sum(len(s.test) for s in splits) == oof["position"].nunique()
    assert np.array_equal(oof["y"].to_numpy(), y[oof["position"].to_numpy()])
    pooled = roc_auc_score(oof["y"], oof["blend"])
    assert np.isclose(pooled, blend.auc)


def test_inner_splits_only_ever_use_the_outer_training_rows(out_of_time):
    _, _, dates, splits, selection = out_of_time
    m = months(dates)
    assert len(selection.inner) == len(splits)
    for outer, inner in zip(splits, selection.inner):
        for split in inner:
            assert set(split.train) <= set(outer.train)
            assert set(split.test) <= set(outer.train)
            if split.gap_months is not None:  # out-of-time inner folds keep the gap too
                assert m[split.train].max() <= m[split.test].min() - 7


def test_a_test_row_never_influences_the_hyper_parameters_of_its_fold():
    X, y, _ = book(600, seed=4)
    splits = random_splits(y, folds=3, repeats=1, seed=0)
    before = select(X, y, None, splits, grids=FAST, n_jobs=1)
    # Turn the outcomes of fold 0's test rows upside down: fold 0 must choose exactly as before
    # (same parameters, same inner AUCs), while the folds that train on those rows see the change.
    flipped = y.copy()
    flipped[splits[0].test] = 1 - flipped[splits[0].test]
    after = select(X, flipped, None, splits, grids=FAST, n_jobs=1)
    for name in ("gbm", "scorecard", "blend", "nested"):
        assert after.candidates[name].params_chosen[0] == before.candidates[name].params_chosen[0]
        assert after.candidates[name].inner_aucs[0] == before.candidates[name].inner_aucs[0]
        assert after.candidates[name].inner_aucs[1] != before.candidates[name].inner_aucs[1]
    assert before.validation == "random: 3 folds x 1"
