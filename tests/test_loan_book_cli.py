"""A lender's own loan book through the CLI, as a fund's analyst would run it: an awkward export
(semicolons, decimal commas, a BOM, Vietnamese column names, a row-number id, a `?`, a 1/2 label)
trained with `coopscore train --table`, then a new file scored with `coopscore score --model`."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.test_cli import run_cli

ROWS = 1600


def awkward_book(rows: int = ROWS, seed: int = 11) -> pd.DataFrame:
    """A loan book with signal in a ratio, an amount and a province, dated over six years, as a
    Vietnamese spreadsheet would export it (1 = repaid, 2 = default)."""
    rng = np.random.default_rng(seed)
    ratio = rng.uniform(0, 1, rows)
    revenue = rng.lognormal(3.0, 0.6, rows)
    province = rng.choice(["Hà Nội", "Cần Thơ", "Huế", "Đắk Lắk"], rows)
    disbursed = pd.Timestamp("2018-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 6 * 365, rows)), "D")
    logit = -2.0 + 3.0 * ratio - 0.5 * np.log(revenue) + np.where(province == "Cần Thơ", 1.0, 0.0)
    bad = rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))
    book = pd.DataFrame({
        "STT": np.arange(1, rows + 1),  # the spreadsheet's row number: follows export order
        "Tỉnh": province,
        "Tỷ lệ nợ": ratio.round(4),
        "Doanh thu (triệu)": revenue.round(2),
        "Ngày giải ngân": disbursed.strftime("%Y-%m-%d"),
        "Kết quả": np.where(bad, 2, 1),
    })
    book["Doanh thu (triệu)"] = book["Doanh thu (triệu)"].astype(object)
    book.loc[5, "Doanh thu (triệu)"] = "?"
    return book


def write_vietnamese_csv(frame: pd.DataFrame, path) -> None:
    """Semicolons, decimal commas and a UTF-8 BOM: what Excel in a Vietnamese locale writes."""
    text = frame.to_csv(sep=";", index=False, decimal=",")
    path.write_bytes("\ufeff".encode() + text.encode("utf-8"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("loan-book-home")
    book = awkward_book()
    write_vietnamese_csv(book, home / "so_vay.csv")
    refused = run_cli(home, "train", "--table", str(home / "so_vay.csv"), "--target", "Kết quả")
    done = run_cli(home, "train", "--table", str(home / "so_vay.csv"), "--target", "Kết quả",
                   "--bad-value", "2", "--folds", "3", "--name", "quy-thu-nghiem", timeout=900)
    return home, book, refused, done


def test_an_ambiguous_label_is_refused_with_the_values_and_the_option(trained):
    _, _, refused, _ = trained
    assert refused.returncode == 1
    out = refused.stdout
    assert "--bad-value" in out and "Traceback" not in out + refused.stderr
    assert "1" in out and "2" in out


def test_training_shows_roles_and_validates_out_of_time(trained):
    home, book, _, done = trained
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    roles = {line.split("│")[1].strip(): line.split("│")[2].strip()
             for line in out.splitlines() if line.count("│") >= 4}
    assert roles.get("STT") == "id", roles  # the row number is never a feature
    assert roles.get("Ngày giải ngân") == "date", roles
    assert roles.get("Doanh thu (triệu)") == "numeric", roles  # one '?' does not make it a category
    assert roles.get("Tỉnh") == "category", roles
    assert "out of time" in out
    rate = (book["Kết quả"] == 2).mean()
    assert f"{rate:.1%}" in out  # the default rate, so a reversed coding shows at once
    assert "loan-book-quy-thu-nghiem" in out


def test_a_new_file_is_scored_with_reasons_and_every_row_accounted_for(trained):
    home, _, _, done = trained
    assert done.returncode == 0, done.stdout + done.stderr
    fresh = awkward_book(rows=40, seed=99).drop(columns=["Kết quả"])
    fresh["Tỷ lệ nợ"] = fresh["Tỷ lệ nợ"].astype(object)
    fresh.loc[3, "Tỷ lệ nợ"] = "abc"  # not a number: that row is rejected, the rest scored
    write_vietnamese_csv(fresh, home / "moi.csv")
    scored = run_cli(home, "score", "--model", "quy-thu-nghiem", "--input", str(home / "moi.csv"),
                     "--output", str(home / "moi_scores.csv"))
    assert scored.returncode == 0, scored.stdout + scored.stderr
    out = pd.read_csv(home / "moi_scores.csv", encoding="utf-8-sig")
    assert len(out) == len(fresh)
    assert (out["status"] == "scored").sum() == len(fresh) - 1
    rejected = out[out["status"] == "rejected"]
    assert len(rejected) == 1 and "Tỷ lệ nợ" in str(rejected.iloc[0].to_dict())
    ok = out[out["status"] == "scored"]
    assert ok["pd"].between(0, 1).all()
    # the riskier half has reasons in both languages; a row with none says why (nothing in it
    # raised the risk above the book's average borrower), never an empty cell alone
    risky = ok[ok["log_odds"] >= ok["log_odds"].median()]
    assert risky[["reason_1_vi", "reason_1_en"]].notna().all().all()
    quiet = ok[ok["reason_1"].isna()]
    assert quiet["notes"].fillna("").str.contains("average").all(), quiet["notes"].tolist()


def test_scoring_with_an_unknown_model_names_the_ones_that_exist(trained):
    home, _, _, done = trained
    assert done.returncode == 0
    missing = run_cli(home, "score", "--model", "no-such-book", "--input", str(home / "so_vay.csv"),
                      "--output", str(home / "x.csv"))
    assert missing.returncode == 1
    assert "quy-thu-nghiem" in missing.stdout and "Traceback" not in missing.stdout + missing.stderr


def test_a_coding_the_wrong_way_round_is_flagged_before_fitting(tmp_path):
    # 1 means repaid here: naming it the bad value makes most rows "defaults", which must be said
    book = awkward_book(rows=600, seed=5)
    write_vietnamese_csv(book, tmp_path / "nguoc.csv")
    done = run_cli(tmp_path, "train", "--table", str(tmp_path / "nguoc.csv"), "--target", "Kết quả",
                   "--bad-value", "1", "--cv", "random", "--folds", "2", timeout=900)
    out = " ".join(done.stdout.split())  # rich wraps long lines
    assert "rows are defaults" in out and "--bad-value 2" in out, done.stdout + done.stderr
