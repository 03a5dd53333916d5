"""Training and evaluating on a lender's own labelled loan book (training/own_table.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from training.own_table import TableError, infer_column_types, load_table, train_own_table

ROWS = 1500


def loan_book(rows: int = ROWS, seed: int = 3) -> pd.DataFrame:
    """A synthetic loan book with real signal in a numeric, a categorical and a date column."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(mean=2.0, sigma=0.5, size=rows)
    debt_ratio = rng.uniform(0, 1, size=rows)
    province = rng.choice(["Ha Noi", "Da Nang", "Can Tho", "Hue"], size=rows)
    start = pd.Timestamp("2019-01-01")
    disbursed = start + pd.to_timedelta(rng.integers(0, 4 * 365, size=rows), unit="D")
    age_days = (disbursed - start).days.to_numpy()
    logit = (-1.0 + 3.0 * debt_ratio - 0.4 * np.log(income)
             + np.select([province == "Can Tho", province == "Hue"], [1.5, -1.0], 0.0)
             + 1.2 * (age_days > 3 * 365))
    default = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({
        "loan_id": [f"L{i:06d}" for i in range(rows)],
        "income": income,
        "debt_ratio": debt_ratio,
        "n_loans": rng.integers(0, 4, size=rows),
        "province": province,
        "disbursed": disbursed.strftime("%Y-%m-%d"),
        "default": default,
    })


@pytest.fixture
def uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_trains_and_logs_to_mlflow(tmp_path, uri, suffix):
    frame = loan_book()
    path = tmp_path / f"book.{suffix}"
    if suffix == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.assign(disbursed=pd.to_datetime(frame["disbursed"])).to_parquet(path, index=False)

    result = train_own_table(path, "default", uri, folds=3, repeats=1, seed=0)

    assert result.rows == ROWS
    assert result.folds == 3
    assert result.auc_mean > 0.7
    assert result.num_leaves in (4, 15, 31, 63)
    assert result.features == {"income": "numeric", "debt_ratio": "numeric", "n_loans": "numeric",
                               "province": "categorical", "disbursed": "date"}
    assert "loan_id" in result.dropped
    for name in ("auc", "auc_std", "gini", "brier", "log_loss", "ks"):
        assert np.isfinite(result.metrics[name]), name
    assert result.metrics["gini"] == pytest.approx(2 * result.auc_mean - 1)
    assert 0 < result.metrics["ks"] <= 1 and 0 < result.metrics["brier"] < 0.25

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(result.run_id)
    assert run.data.metrics["auc"] == pytest.approx(result.auc_mean)
    assert {"gini", "brier", "log_loss", "ks", "auc_std"} <= run.data.metrics.keys()
    assert run.data.params["rows"] == str(ROWS)
    assert run.data.params["num_leaves"] == str(result.num_leaves)
    assert client.get_experiment(run.info.experiment_id).name == "coopscore-own-table"
    assert "column_types.json" in {a.path for a in client.list_artifacts(result.run_id)}
    assert client.search_registered_models() == []


def test_infer_column_types():
    frame = loan_book(rows=300)
    frame["flag"] = frame["n_loans"] > 1
    frame["when"] = pd.to_datetime(frame["disbursed"])
    frame.loc[:5, "disbursed"] = "not a date"  # 2% noise still counts as a date column
    frame["code"] = ["2020"] * 300  # four digits are not an ISO date
    types = infer_column_types(frame, "default")
    assert types == {"income": "numeric", "debt_ratio": "numeric", "n_loans": "numeric",
                     "province": "categorical", "disbursed": "date", "flag": "numeric",
                     "when": "date", "code": "categorical"}
    frame.loc[:30, "disbursed"] = "not a date"  # >5% noise: a categorical
    assert infer_column_types(frame, "default")["disbursed"] == "categorical"


def _write(tmp_path, frame: pd.DataFrame, name: str = "book.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_accepts_text_labels(tmp_path, uri):
    frame = loan_book(rows=600)
    frame["default"] = np.where(frame["default"] == 1, "yes", "no")
    result = train_own_table(_write(tmp_path, frame), "default", uri, folds=3, repeats=1)
    assert result.metrics["default_rate"] == pytest.approx((frame["default"] == "yes").mean())


@pytest.mark.parametrize("case, expected", [
    ("missing_file", "No such file"),
    ("bad_extension", "Unsupported file type"),
    ("no_target", "No target column 'default'. The columns are: loan_id, income"),
    ("not_binary", "not a binary label: found values [0, 1, 2]"),
    ("not_binary_text", "not a binary label: found values ['high', 'low']"),
    ("one_class", "one class only"),
    ("few_rows", "Too few rows"),
    ("few_minority", "10 in the smaller class"),
    ("missing_target", "3 missing value(s)"),
])
def test_bad_tables(tmp_path, uri, case, expected):
    frame = loan_book(rows=400)
    target = "default"
    if case == "missing_file":
        path = tmp_path / "nowhere.csv"
    elif case == "bad_extension":
        path = tmp_path / "book.xlsx"
        path.write_text("x")
    else:
        if case == "no_target":
            frame = frame.rename(columns={"default": "bad"})
        elif case == "not_binary":
            frame.loc[:9, "default"] = 2
        elif case == "not_binary_text":
            frame["default"] = np.where(frame["default"] == 1, "high", "low")
        elif case == "one_class":
            frame["default"] = 0
        elif case == "few_rows":
            frame = frame.head(150)
        elif case == "few_minority":
            frame["default"] = 0
            frame.loc[:9, "default"] = 1
        elif case == "missing_target":
            frame["default"] = frame["default"].astype(float)
            frame.loc[:2, "default"] = np.nan
        path = _write(tmp_path, frame)
    with pytest.raises(TableError) as err:
        train_own_table(path, target, uri, folds=3, repeats=1)
    assert expected in str(err.value)


def test_load_table_reads_both_formats(tmp_path):
    frame = loan_book(rows=50)
    frame.to_parquet(tmp_path / "b.parquet", index=False)
    assert load_table(_write(tmp_path, frame)).shape == frame.shape
    assert load_table(tmp_path / "b.parquet").shape == frame.shape
