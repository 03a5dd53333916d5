"""A lender's own model, ready to serve (issue 13, point 5): registered in MLflow, loaded back by
name, a new file scored with reasons in Vietnamese and English, every input row accounted for.

Real parts only: a synthetic loan book written as CSV, the package's own reading, roles, label
coding, candidates and nested selection, and a real MLflow SQLite store in a temporary directory.
"""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from evaluation.metrics import Estimate
from evaluation.model_card import format_estimate
from loan_book import candidates
from loan_book.card import build_card
from loan_book.errors import TableError
from loan_book.labels import encode_label
from loan_book.model import (MIN_REASON_POINTS, LoanBookModel, ModelNotFound, feature_importance,
                             load, register)
from loan_book.reading import read_table
from loan_book.reasons import ReasonTexts
from loan_book.roles import TableRoles, dates_of, infer_roles, prepare
from loan_book.scoring import score_file
from loan_book.selection import select
from loan_book.validation import random_splits
from training import scaling

TARGET = "vỡ_nợ"
NAME = "htx-demo"


def _book(rows: int, seed: int) -> pd.DataFrame:
    """Loans with an id, a date, two amounts (one with `?` for unknown), a trade and the outcome."""
    rng = np.random.default_rng(seed)
    age = rng.integers(20, 70, rows)
    income = rng.lognormal(2.5, 0.5, rows).round(2)
    trade = rng.choice(["nông nghiệp", "buôn bán", "thợ may", "chăn nuôi"], rows)
    risk = 1.5 - 0.04 * age - 0.08 * income + np.where(trade == "buôn bán", 0.9, 0.0)
    default = rng.random(rows) < 1 / (1 + np.exp(-risk))
    frame = pd.DataFrame({
        "so_hop_dong": [f"HD{seed}-{i:05d}" for i in range(rows)],
        "ngay_giai_ngan": pd.date_range("2019-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
        "tuổi": age.astype(str), "thu_nhap": income.astype(str), "nghề": trade,
        TARGET: default.astype(int).astype(str)})
    frame.loc[::37, "thu_nhap"] = "?"
    return frame


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One book trained (nested selection on a one-setting grid), refitted, carded, registered."""
    home = tmp_path_factory.mktemp("loan_book_serving")
    book = home / "so_vay.csv"
    _book(700, seed=1).to_csv(book, index=False)
    frame = read_table(book)
    y, coding = encode_label(frame, TARGET)
    roles = infer_roles(frame, TARGET)
    X, _ = prepare(frame, roles)
    dates = dates_of(frame, roles)
    # One setting per candidate and no worker processes keep this under 15 s on two CPUs; the
    # search itself is tested in test_loan_book_models.py.
    grids = {"gbm": candidates.GRIDS["gbm"][:1], "scorecard": candidates.GRIDS["scorecard"][1:2]}
    selection = select(X, y, dates, random_splits(y, folds=3, repeats=1, seed=0), seed=0,
                       grids=grids, n_jobs=1)
    candidate = candidates.make(selection.chosen, **selection.chosen_params).fit(X, y, dates)
    model = LoanBookModel(name=NAME, roles=roles, coding=coding, candidate=candidate,
                          selection_summary={"chosen": selection.chosen},
                          reasons=ReasonTexts.derived(roles.features),
                          importance=feature_importance(candidate, X))
    card = build_card(model, selection, coding, roles, home / "card" / "model_card.html")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("loan-book-test", artifact_location=(home / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        version = register(model, uri, run.info.run_id, card=card)
    new = home / "new_loans.csv"
    _book(40, seed=2).drop(columns=TARGET).to_csv(new, index=False)
    return {"home": home, "uri": uri, "model": model, "version": version, "card": card,
            "selection": selection, "new": new, "roles": roles}


def test_registered_model_scores_a_new_file_with_reasons_that_add_up(served, tmp_path):
    out = tmp_path / "scores.csv"
    report = score_file(NAME, served["new"], out, served["uri"])
    assert (report.rows, report.scored, report.rejected) == (40, 40, 0)
    assert report.model == f"loan-book-{NAME}" and report.version == served["version"]
    scores = pd.read_csv(out, encoding="utf-8-sig", keep_default_na=False)
    assert list(scores["row"]) == list(range(1, 41))
    assert list(scores["so_hop_dong"]) == [f"HD2-{i:05d}" for i in range(40)]  # the id travels along

    model = load(NAME, served["uri"])
    raw = read_table(served["new"])
    contributions = model.explain(raw)
    log_odds = scores["log_odds"].astype(float).to_numpy()
    np.testing.assert_allclose(contributions.sum(axis=1).to_numpy(), log_odds, atol=1e-6)
    np.testing.assert_allclose(scores["pd"].astype(float), scaling.pd_from_log_odds(log_odds), rtol=1e-6)
    np.testing.assert_allclose(scores["score"].astype(float),
                               scaling.score_from_log_odds(log_odds), atol=0.051)
    features = contributions.drop(columns="base")
    for i, row in scores.iterrows():
        costs = features.iloc[i] * scaling.FACTOR  # points each feature takes off the score
        raising = costs[costs >= MIN_REASON_POINTS].sort_values(ascending=False, kind="stable")
        expected = list(raising.index[:3]) + [""] * (3 - min(3, len(raising)))
        assert [row["reason_1"], row["reason_2"], row["reason_3"]] == expected
        for k, code in enumerate(expected, start=1):
            vi, en = (f"«{code}» làm tăng rủi ro", f"'{code}' raises the risk") if code else ("", "")
            assert (row[f"reason_{k}_vi"], row[f"reason_{k}_en"]) == (vi, en)
            if code:  # the points a reason costs are its contribution on the score scale
                assert float(row[f"reason_{k}_points"]) == pytest.approx(-costs[code], abs=0.051)
    assert (scores["reason_1"] != "").sum() > 0
    quiet = scores["reason_1"] == ""  # a row without a reason says why
    assert scores.loc[quiet, "notes"].str.contains("average borrower").all()
    assert not scores.loc[~quiet, "notes"].str.contains("average borrower").any()

    # the same through MLflow's own pyfunc interface, as any MLflow server would serve it
    served_by_mlflow = mlflow.pyfunc.load_model(f"models:/loan-book-{NAME}/{report.version}")
    pd.testing.assert_frame_equal(served_by_mlflow.predict(raw), model.score(raw))


def test_latest_version_is_loaded_unless_one_is_named(served):
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("loan-book-test").experiment_id) as run:
        newer = register(served["model"], served["uri"], run.info.run_id)
    assert int(newer) == int(served["version"]) + 1
    assert load(NAME, served["uri"]).version == newer
    assert load(NAME, served["uri"], version=served["version"]).version == served["version"]
    with pytest.raises(ModelNotFound, match="versions are"):
        load(NAME, served["uri"], version="99")
    with pytest.raises(ModelNotFound, match=NAME):  # the error lists the models there are
        load("no-such-book", served["uri"])


def test_registered_model_carries_its_roles_card_and_explanation(served, tmp_path):
    mlflow.set_tracking_uri(served["uri"])
    local = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/loan-book-{NAME}/{served['version']}", dst_path=str(tmp_path)))
    files = {p.name: p for p in local.rglob("*") if p.is_file()}
    roles = TableRoles.from_dict(json.loads(files["roles.json"].read_text(encoding="utf-8")))
    assert roles.features == served["roles"].features == ["tuổi", "thu_nhap", "nghề"]
    assert files["model_card.html"].read_text(encoding="utf-8") == served["card"].read_text(encoding="utf-8")
    explanation = pd.read_csv(files["explanation.csv"])
    meta = json.loads(files["model.json"].read_text(encoding="utf-8"))
    assert meta["label"]["bad"] == "1" and meta["registered_name"] == f"loan-book-{NAME}"
    if hasattr(served["model"].candidate, "points_table"):
        assert {"feature", "bin", "points"} <= set(explanation.columns)
    else:
        assert sorted(explanation["feature"]) == sorted(roles.features)


def test_lender_reasons_file_overrides_the_derived_texts(served, tmp_path):
    roles = served["roles"]
    reasons_file = tmp_path / "ly_do.csv"
    reasons_file.write_text("column;text_vi;text_en\nnghề;Ngành nghề rủi ro cao;A risky trade\n"
                            "tuổi;Tuổi;\n", encoding="utf-8-sig")
    texts = ReasonTexts.from_file(reasons_file, roles.features)
    assert texts.texts["nghề"] == ("Ngành nghề rủi ro cao", "A risky trade")
    assert texts.texts["tuổi"] == ("Tuổi", "'tuổi' raises the risk")  # empty cell: derived, and said
    assert texts.sources["thu_nhap"] == "column name" and "vi only" in texts.sources["tuổi"]

    model = served["model"]
    lender = LoanBookModel(model.name, model.roles, model.coding, model.candidate,
                           model.selection_summary, texts)
    scored = lender.score(read_table(served["new"]))
    codes = scored[["reason_1", "reason_2", "reason_3"]].to_numpy().ravel()
    texts_en = scored[["reason_1_en", "reason_2_en", "reason_3_en"]].to_numpy().ravel()
    assert (codes == "nghề").any()
    assert set(texts_en[codes == "nghề"]) == {"A risky trade"}

    reasons_file.write_text("column,text_vi,text_en\nnghe_nghiep,Nghề,Trade\n", encoding="utf-8")
    with pytest.raises(TableError, match="nghe_nghiep"):  # a typo is refused, not ignored
        ReasonTexts.from_file(reasons_file, roles.features)


def test_unreadable_number_rejects_its_row_and_the_others_score(served, tmp_path):
    new = read_table(served["new"])
    new.loc[4, "tuổi"] = "ba mươi"
    new.loc[9, "thu_nhap"] = "NA"  # a missing-value token is not an error
    path = tmp_path / "with_text.csv"
    new.to_csv(path, index=False)
    out = tmp_path / "scores.parquet"
    report = score_file(NAME, path, out, served["uri"])
    assert (report.rows, report.scored, report.rejected) == (40, 39, 1)
    scores = pd.read_parquet(out)
    assert len(scores) == 40
    rejected = scores[scores["status"] == "rejected"]
    assert list(rejected["row"]) == [5]
    assert "tuổi" in rejected["reason"].iloc[0] and "ba mươi" in rejected["reason"].iloc[0]
    assert rejected["pd"].isna().all()
    assert scores.loc[scores["row"] == 10, "status"].item() == "scored"
    assert scores.loc[scores["status"] == "scored", "pd"].between(0, 1).all()


def test_unseen_category_level_is_scored_and_reported(served, tmp_path):
    new = read_table(served["new"])
    new.loc[0, "nghề"] = "giáo viên"
    new.to_csv(tmp_path / "new_trade.csv", index=False)
    report = score_file(NAME, tmp_path / "new_trade.csv", tmp_path / "out.csv", served["uri"])
    assert (report.scored, report.unseen_rows) == (40, 1)
    scored = served["model"].score(new)
    assert scored.loc[0, "status"] == "scored"
    assert "nghề" in scored.loc[0, "notes"] and "giáo viên" in scored.loc[0, "notes"]
    assert not scored.loc[1:, "notes"].str.contains("giáo viên|never seen").any()


def test_missing_column_is_refused_naming_it(served, tmp_path):
    path = tmp_path / "no_income.csv"
    read_table(served["new"]).drop(columns="thu_nhap").to_csv(path, index=False)
    with pytest.raises(TableError, match="thu_nhap"):
        score_file(NAME, path, tmp_path / "out.csv", served["uri"])
    with pytest.raises(TableError, match=r"\.csv or \.parquet"):
        score_file(NAME, served["new"], tmp_path / "out.xlsx", served["uri"])


def test_card_shows_every_candidate_against_the_baseline(served):
    card = served["card"]
    text = card.read_text(encoding="utf-8")
    selection = served["selection"]
    assert {"gbm", "scorecard", "blend", "logistic"} <= set(selection.candidates)
    for name, r in selection.candidates.items():
        assert format_estimate(Estimate(r.auc, r.auc_low, r.auc_high)) in text, name
    for section in ("Intended use", "Not for", "Label", "Column roles", "Validation", "Calibration",
                    "Reason texts"):
        assert f"<h2>{section}" in text
    assert "<td>so_hop_dong</td><td>id</td>" in text  # every column's role, the id's included
    assert "data:image/png;base64," in text  # self-contained: nothing fetched
    assert "<script" not in text and "http://" not in text and "https://" not in text
    if hasattr(served["model"].candidate, "points_table"):
        assert "Points table" in text
    else:
        assert "mean |contribution|" in text
