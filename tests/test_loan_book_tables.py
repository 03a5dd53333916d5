"""A lender's table read, labelled and given column roles (loan_book.reading, labels, roles).

Each awkward table of issue 13 is built here, small, and each test fails on what the old
training/own_table.py did with it: a row number used as a feature, a string id with one missing
cell turned into a 1,999-level category, one `?` turning a number column into text, a 1/2 label
refused with no way out, Excel and semicolon files unreadable.
"""
from __future__ import annotations

import json
import pickle
import unicodedata
import zipfile

import numpy as np
import pandas as pd
import pytest

from loan_book.errors import LeakError, TableError
from loan_book.labels import LabelCoding, encode_label, label_warnings
from loan_book.reading import MISSING_TOKENS as READ_TOKENS
from loan_book.reading import read_table, sniff_delimiter
from loan_book.roles import (MISSING_TOKENS, ROLES, ColumnRole, RoleOverrides, TableRoles,
                             check_leaks, dates_of, infer_roles, looks_like_id, prepare)

ROWS = 1200


def book(rows: int = ROWS, seed: int = 5) -> pd.DataFrame:
    """A loan book as a CSV export gives it (every cell text), sorted by disbursement date, with
    real signal in income, debt ratio and province, and a default rate that drifts over time."""
    rng = np.random.default_rng(seed)
    disbursed = np.sort(pd.Timestamp("2018-01-01").to_datetime64()
                        + rng.integers(0, 5 * 365, size=rows).astype("timedelta64[D]"))
    years = (disbursed - disbursed[0]).astype("timedelta64[D]").astype(int) / 365
    income = rng.lognormal(2.0, 0.5, size=rows)
    debt_ratio = rng.uniform(0, 1, size=rows)
    province = rng.choice(["Hà Nội", "Đà Nẵng", "Cần Thơ", "Huế"], size=rows)
    logit = (-2.0 + 2.5 * debt_ratio - 0.4 * np.log(income) + 0.5 * years
             + np.where(province == "Cần Thơ", 1.0, 0.0))
    default = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({
        "loan_id": [f"HD{i:06d}" for i in rng.permutation(rows)],
        "income": income.round(3).astype(str),
        "debt_ratio": debt_ratio.round(4).astype(str),
        "province": province,
        "disbursed": pd.DatetimeIndex(disbursed).strftime("%Y-%m-%d"),
        "default": default.astype(str),
    })


def roles_by_column(roles: TableRoles) -> dict[str, str]:
    return {r.column: r.role for r in roles.roles}


# --- reading -----------------------------------------------------------------------------------

def test_reads_a_comma_csv_as_text(tmp_path):
    path = tmp_path / "book.csv"
    book().to_csv(path, index=False)
    frame = read_table(path)
    assert list(frame.columns) == list(book().columns)
    assert len(frame) == ROWS
    assert all(frame[c].map(type).eq(str).all() for c in frame.columns)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_an_empty_file_is_refused(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(TableError, match="empty|blank lines"):
        read_table(path)


def test_a_header_without_rows_is_refused(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("loan_id,amount,default\n", encoding="utf-8")
    with pytest.raises(TableError, match="header .*no rows"):
        read_table(path)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(TableError, match="No such file"):
        read_table(tmp_path / "nowhere.csv")


def _xlsx_bytes(path):
    """The start of a real .xlsx: a zip holding the workbook parts."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")


def test_an_excel_workbook_is_refused_with_advice(tmp_path):
    path = tmp_path / "book.xlsx"
    _xlsx_bytes(path)
    with pytest.raises(TableError, match="CSV UTF-8"):
        read_table(path)


@pytest.mark.parametrize("kind", ["xlsx", "xls"])
def test_an_excel_workbook_renamed_csv_is_recognised_by_its_bytes(tmp_path, kind):
    path = tmp_path / "book.csv"
    if kind == "xlsx":
        _xlsx_bytes(path)
    else:  # an OLE compound file, as old .xls workbooks are
        path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    with pytest.raises(TableError, match=r"Excel workbook.*CSV UTF-8") as error:
        read_table(path)
    assert "renaming" in str(error.value)


def test_a_semicolon_csv_with_decimal_commas_reads_numbers(tmp_path):
    path = tmp_path / "vn.csv"
    path.write_text("ma_hd;so_tien;lai_suat;tinh;default\n"
                    "HD1;12.345.678,5;0,12;Hà Nội;0\n"
                    "HD2;999,25;1,5;Huế;1\n"
                    "HD3;1.000;0,08;Huế;0\n"
                    "HD4;?;2;Hà Nội;0\n"
                    "HD5;-3,5;0,1;Huế;1\n", encoding="utf-8")
    frame = read_table(path)
    assert list(frame.columns) == ["ma_hd", "so_tien", "lai_suat", "tinh", "default"]
    roles = infer_roles(frame, "default")
    assert roles.role("so_tien").role == "numeric" and roles.role("so_tien").missing == 1
    X, unseen = prepare(frame, roles)
    assert X["so_tien"].tolist()[:3] == [12345678.5, 999.25, 1000.0]
    assert np.isnan(X["so_tien"][3]) and X["so_tien"][4] == -3.5
    assert X["lai_suat"].tolist() == [0.12, 1.5, 0.08, 2.0, 0.1]
    assert unseen == {}


def test_a_semicolon_csv_with_thousands_dots_and_one_with_decimal_points(tmp_path):
    path = tmp_path / "dots.csv"
    path.write_text("a;b;rate\n1.234;12.500;0.125\n0.5;150;1.250\n", encoding="utf-8")
    frame = read_table(path)
    assert frame["a"].tolist() == ["1.234", "0.5"]  # 0.5 cannot be thousands: points kept
    assert frame["rate"].tolist() == ["0.125", "1.250"]  # a group never starts with 0
    assert frame["b"].tolist() == ["12500", "150"]
    assert frame.attrs["reading"] == {"format": "csv", "delimiter": ";", "numbers_rewritten": ["b"]}


def test_a_file_of_another_kind_is_refused(tmp_path):
    path = tmp_path / "book.json"
    path.write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(TableError, match="CSV UTF-8"):
        read_table(path)


def test_thousands_commas_in_a_comma_csv(tmp_path):
    path = tmp_path / "en.csv"
    path.write_text('id,amount\n1,"1,234,567.5"\n2,"950"\n3,"12,000"\n', encoding="utf-8")
    assert read_table(path)["amount"].tolist() == ["1234567.5", "950", "12000"]


def test_utf8_with_bom_gives_a_clean_first_column(tmp_path):
    path = tmp_path / "bom.csv"
    book().to_csv(path, index=False, encoding="utf-8-sig")
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    frame = read_table(path)
    assert frame.columns[0] == "loan_id"
    assert infer_roles(frame, "default").role("loan_id").role == "id"


def test_vietnamese_column_names_are_kept_nfc(tmp_path):
    names = ["Mã hợp đồng", "Số tiền vay", "Tỉnh", "Nợ xấu"]
    decomposed = [unicodedata.normalize("NFD", n) for n in names]  # as typed on a Mac
    assert decomposed != names
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({decomposed[0]: [f"HD{i}" for i in range(300)],
                          " " + decomposed[1] + " ": rng.integers(1, 100, 300) * 1_000_000,
                          decomposed[2]: rng.choice(["Huế", "Hà Nội"], 300),
                          decomposed[3]: rng.choice(["0", "1"], 300)})
    path = tmp_path / "vn.csv"
    frame.to_csv(path, index=False)
    read = read_table(path)
    assert list(read.columns) == names
    roles = infer_roles(read, "Nợ xấu")
    assert roles_by_column(roles) == {"Mã hợp đồng": "id", "Số tiền vay": "numeric",
                                      "Tỉnh": "category", "Nợ xấu": "target"}
    assert roles.categories["Tỉnh"] == sorted(["Huế", "Hà Nội"])


def test_a_file_that_is_not_utf8_gets_advice(tmp_path):
    path = tmp_path / "cp1258.csv"
    path.write_bytes("tinh,default\nHà Nam,0\nCà Mau,1\n".encode("cp1258"))  # Excel's plain "CSV"
    with pytest.raises(TableError, match="not UTF-8.*CSV UTF-8"):
        read_table(path)


def test_duplicate_column_names_are_refused(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("id,amount, amount,default\n1,2,3,0\n", encoding="utf-8")
    with pytest.raises(TableError, match="duplicate column names: 'amount'"):
        read_table(path)


@pytest.mark.parametrize("sep", ["\t", "|", ";"])
def test_other_delimiters(tmp_path, sep):
    path = tmp_path / "book.txt"
    book().to_csv(path, index=False, sep=sep)
    frame = read_table(path)
    assert list(frame.columns) == list(book().columns) and len(frame) == ROWS


def test_a_quoted_delimiter_inside_a_value_does_not_fool_the_sniffer():
    text = 'name,address,default\n"Lê, Văn A","12; Lê Lợi; Huế",0\n"B","3; Trần Phú",1\n'
    assert sniff_delimiter(text) == ","


def test_a_row_with_too_many_fields_is_refused(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3,4,5\n", encoding="utf-8")
    with pytest.raises(TableError, match="more fields than the header"):
        read_table(path)


def test_parquet_keeps_its_types(tmp_path):
    frame = book().assign(income=lambda f: f["income"].astype(float),
                          disbursed=lambda f: pd.to_datetime(f["disbursed"]),
                          default=lambda f: f["default"].astype(int),
                          row=np.arange(ROWS), has_car=lambda f: f["income"].astype(float) > 7)
    path = tmp_path / "book.parquet"
    frame.to_parquet(path, index=False)
    read = read_table(path)
    assert read["income"].dtype == float and pd.api.types.is_datetime64_any_dtype(read["disbursed"])
    roles = infer_roles(read, "default")
    assert roles_by_column(roles) == {"loan_id": "id", "income": "numeric", "debt_ratio": "numeric",
                                      "province": "category", "disbursed": "date",
                                      "default": "target", "row": "id", "has_car": "numeric"}
    X, _ = prepare(read, roles)
    assert X["has_car"].dtype == "float64" and set(X["has_car"]) == {0.0, 1.0}
    assert dates_of(read, roles).equals(read["disbursed"].rename("disbursed"))


# --- labels ------------------------------------------------------------------------------------

def labelled(values: list, counts: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(sum(counts)), "y": np.repeat(values, counts)})


def test_a_zero_one_label_is_accepted_with_its_coding_and_rate():
    y, coding = encode_label(labelled(["0", "1"], [700, 300]), "y")
    assert y.sum() == 300 and y.dtype.kind == "i" and set(np.unique(y)) == {0, 1}
    assert coding.bad == "1" and coding.good == "0"
    assert coding.how == "unambiguous coding 0/1 (1 = default)"
    assert coding.default_rate == pytest.approx(0.3)
    assert "30.0%" in coding.describe()
    assert label_warnings(coding) == []


@pytest.mark.parametrize("values,bad", [(["1", "2"], "2"), (["Y", "N"], "Y"),
                                        (["positive", "negative"], "positive"),
                                        (["yes", "no"], "yes")])
def test_an_ambiguous_label_needs_bad_value(values, bad):
    frame = labelled(values, [640, 360])
    with pytest.raises(TableError) as error:
        encode_label(frame, "y")
    message = str(error.value)
    assert "--bad-value" in message
    assert f"{values[0]!r} (640 rows)" in message and f"{values[1]!r} (360 rows)" in message

    y, coding = encode_label(frame, "y", bad_value=bad)
    assert y.sum() == (640 if bad == values[0] else 360)
    assert coding.bad == bad and coding.how == f"--bad-value {bad}"


def test_bad_value_may_say_the_zero_of_a_zero_one_label_means_default():
    y, coding = encode_label(labelled(["0", "1"], [200, 800]), "y", bad_value="0")
    assert y.sum() == 200 and coding.bad == "0"


def test_matching_ignores_case_spaces_and_the_point_zero():
    y, coding = encode_label(labelled([" Bad", "GOOD "], [100, 500]), "y")
    assert y.sum() == 100 and coding.bad == "Bad"
    y, coding = encode_label(labelled(["1.0", "0.0"], [100, 500]), "y")
    assert y.sum() == 100
    frame = pd.DataFrame({"y": np.repeat([2.0, 1.0], [100, 500])})  # a Parquet float label
    y, coding = encode_label(frame, "y", bad_value="2")
    assert y.sum() == 100 and coding.bad == 2.0


@pytest.mark.parametrize("values", [["true", "false"], ["default", "non-default"],
                                    ["Default", "No default"], ["defaulted", "repaid"]])
def test_unambiguous_words(values):
    y, coding = encode_label(labelled(values, [120, 480]), "y")
    assert y.sum() == 120 and "unambiguous" in coding.how


def test_a_bad_value_not_in_the_table_is_refused():
    with pytest.raises(TableError, match=r"--bad-value 3 is not a value.*'1' \(500 rows\)"):
        encode_label(labelled(["1", "2"], [500, 500]), "y", bad_value="3")


def test_missing_target_values_are_refused_with_their_count():
    frame = labelled(["0", "1"], [500, 500])
    frame.loc[[3, 7, 9], "y"] = ["", "NA", "?"]
    with pytest.raises(TableError, match="3 missing value.*drop unlabelled rows"):
        encode_label(frame, "y")


def test_one_class_only_is_refused():
    with pytest.raises(TableError, match="one value only"):
        encode_label(labelled(["0"], [500]), "y")


def test_more_than_two_values_are_refused_with_counts():
    with pytest.raises(TableError, match=r"3 values.*'current' \(100 rows\)"):
        encode_label(labelled(["paid", "default", "current"], [400, 100, 100]), "y")


def test_no_such_target_lists_the_columns():
    with pytest.raises(TableError, match=r"No target column 'Y'.*Did you mean 'y'.*'x', 'y'"):
        encode_label(labelled(["0", "1"], [100, 100]), "Y")


def test_fewer_than_fifty_defaults_is_refused_and_fewer_than_two_hundred_warned():
    with pytest.raises(TableError, match="Only 49 defaults.*add more history"):
        encode_label(labelled(["0", "1"], [1000, 49]), "y")
    with pytest.raises(TableError, match="Only 40 non-defaults"):
        encode_label(labelled(["0", "1"], [40, 1000]), "y")
    _, coding = encode_label(labelled(["0", "1"], [1000, 60]), "y")
    warned = label_warnings(coding)
    assert len(warned) == 1 and "Only 60 defaults" in warned[0]
    _, coding = encode_label(labelled(["0", "1"], [1000, 200]), "y")
    assert label_warnings(coding) == []


def test_a_default_rate_above_half_is_warned_as_maybe_the_wrong_way_round():
    _, coding = encode_label(labelled(["0", "1"], [300, 700]), "y")
    assert any("--bad-value 0" in w for w in label_warnings(coding))


def test_label_coding_round_trips_through_json():
    _, coding = encode_label(labelled(["N", "Y"], [400, 100]), "y", bad_value="y")
    assert LabelCoding.from_dict(json.loads(json.dumps(coding.to_dict()))) == coding


# --- roles -------------------------------------------------------------------------------------

def test_roles_of_an_ordinary_book():
    roles = infer_roles(book(), "default")
    assert roles_by_column(roles) == {"loan_id": "id", "income": "numeric", "debt_ratio": "numeric",
                                      "province": "category", "disbursed": "date",
                                      "default": "target"}
    assert roles.features == ["income", "debt_ratio", "province"]
    assert roles.numeric == ["income", "debt_ratio"] and roles.category == ["province"]
    assert roles.date == "disbursed"
    assert not any(r.overridden for r in roles.roles)
    assert set(ROLES) >= {r.role for r in roles.roles}
    assert MISSING_TOKENS == READ_TOKENS and "?" in MISSING_TOKENS


def test_a_row_number_in_export_order_is_an_id_not_a_feature():
    frame = book()
    frame.insert(0, "row", np.arange(1, ROWS + 1).astype(str))  # the export's sort is by date
    y = frame["default"].astype(int).to_numpy()
    # The row number does predict default here (the rate drifts over time): that is the danger.
    assert abs(pd.Series(np.arange(ROWS)).corr(pd.Series(y))) > 0.1
    roles = infer_roles(frame, "default")
    assert roles.role("row").role == "id"
    assert "row number" in roles.role("row").reason
    assert "row" not in roles.features
    assert "row" not in prepare(frame, roles)[0].columns


def test_a_string_id_with_one_missing_cell_is_still_an_id():
    frame = book(rows=2000)
    frame.loc[17, "loan_id"] = ""
    roles = infer_roles(frame, "default")
    assert roles.role("loan_id").role == "id"
    assert roles.role("loan_id").missing == 1
    assert "loan_id" not in roles.categories


def test_one_question_mark_keeps_a_column_numeric_and_counts_it_missing():
    frame = book()
    frame.loc[5, "income"] = "?"
    frame.loc[9, "debt_ratio"] = "NA"
    frame.loc[10, "debt_ratio"] = " - "
    roles = infer_roles(frame, "default")
    assert roles.role("income").role == "numeric" and roles.role("income").missing == 1
    assert "'?' x1" in roles.role("income").reason
    assert roles.role("debt_ratio").role == "numeric" and roles.role("debt_ratio").missing == 2
    X, unseen = prepare(frame, roles)
    assert X["income"].dtype == "float64" and X["income"].isna().sum() == 1 and np.isnan(X["income"][5])
    assert X["income"][4] == float(frame["income"][4])
    assert unseen == {}


def test_german_credit_amount_stays_numeric():
    """~920 distinct integers in 1,000 rows, in no order, not named like an id: an amount."""
    rng = np.random.default_rng(1)
    amount = np.round(rng.lognormal(7.8, 0.75, size=1000) / 2) * 2 + rng.integers(0, 2, 1000)
    amount = np.clip(amount, 250, 18424)
    frame = pd.DataFrame({"credit.amount": amount.astype(int).astype(str),
                          "duration": rng.integers(4, 72, 1000).astype(str),
                          "class": rng.choice(["good", "bad"], 1000, p=[0.7, 0.3])})
    distinct = frame["credit.amount"].nunique()
    assert 850 <= distinct < 950
    roles = infer_roles(frame, "class")
    assert roles.role("credit.amount").role == "numeric"
    assert roles.features == ["credit.amount", "duration"]
    # Even an amount distinct on every row stays numeric when it is in no order.
    frame["amount"] = rng.permutation(np.arange(1000) * 37 + 1000).astype(str)
    assert infer_roles(frame, "class").role("amount").role == "numeric"


def test_a_column_named_like_an_id_is_an_id():
    rng = np.random.default_rng(2)
    frame = book()
    frame["Mã KH"] = rng.permutation(ROWS).astype(str)
    frame["customer_id"] = rng.integers(0, 2 * ROWS, ROWS).astype(str)  # some repeat
    frame["so_lan_vay"] = rng.integers(0, 5, ROWS).astype(str)
    roles = infer_roles(frame, "default")
    assert roles.role("Mã KH").role == "id" and roles.role("customer_id").role == "id"
    assert roles.role("so_lan_vay").role == "numeric"
    assert [looks_like_id(n) for n in ("loanId", "CCCD", "Số hợp đồng", "stt", "amount", "paid",
                                       "valid_to", "max_dpd")] == [True] * 4 + [False] * 4


def test_a_column_of_one_value_and_an_empty_column_are_ignored_with_a_reason():
    frame = book()
    frame["country"] = "VN"
    frame["notes"] = ""
    frame["branch"] = "1"
    roles = infer_roles(frame, "default")
    assert roles.role("country").role == "ignored" and "one value" in roles.role("country").reason
    assert roles.role("branch").role == "ignored" and "one value" in roles.role("branch").reason
    assert roles.role("notes").role == "ignored" and "empty" in roles.role("notes").reason
    assert roles.role("notes").missing == ROWS
    assert roles.features == ["income", "debt_ratio", "province"]


def test_duplicated_rows_are_warned_with_their_count_and_kept():
    frame = book()
    frame = pd.concat([frame, frame.iloc[:7]], ignore_index=True)
    roles = infer_roles(frame, "default")
    assert any(w.startswith("7 row(s) repeat another row") for w in roles.warnings)
    assert any("loan_id" in w and "repeats 7" in w for w in roles.warnings)
    assert len(prepare(frame, roles)[0]) == ROWS + 7


def test_a_second_date_is_ignored_and_local_dates_get_advice():
    frame = book()
    frame["first_due"] = (pd.to_datetime(frame["disbursed"]) + pd.Timedelta(days=30)).dt.strftime("%Y-%m-%d")
    frame["approved"] = pd.to_datetime(frame["disbursed"]).dt.strftime("%d/%m/%Y")
    roles = infer_roles(frame, "default")
    assert roles.date == "disbursed"
    assert roles.role("first_due").role == "ignored" and "'disbursed'" in roles.role("first_due").reason
    assert roles.role("approved").role == "ignored" and "yyyy-mm-dd" in roles.role("approved").reason
    assert not {"first_due", "approved", "disbursed"} & set(roles.features)
    chosen = infer_roles(frame, "default", RoleOverrides(date=("first_due",)))
    assert chosen.date == "first_due" and chosen.role("disbursed").role == "ignored"


def test_dates_of_parses_iso_with_missing_cells_as_nat():
    frame = book()
    frame.loc[3, "disbursed"] = ""
    frame.loc[4, "disbursed"] = "2020-02-03T10:00:00+07:00"
    roles = infer_roles(frame, "default")
    assert roles.role("disbursed").role == "date" and roles.role("disbursed").missing == 1
    when = dates_of(frame, roles)
    assert when.dtype == "datetime64[ns]" and when.dt.tz is None
    assert pd.isna(when[3]) and when[4] == pd.Timestamp("2020-02-03 03:00")
    assert when[0] == pd.Timestamp(frame["disbursed"][0])
    assert dates_of(frame.drop(columns="disbursed"), infer_roles(frame.drop(columns="disbursed"),
                                                                  "default")) is None


def test_codes_with_leading_zeros_are_categories_and_tokens_stay_levels():
    rng = np.random.default_rng(3)
    frame = book()
    frame["branch"] = rng.choice(["001", "002", "010"], ROWS)
    frame["guarantor"] = rng.choice(["none", "co-applicant", "guarantor"], ROWS)
    roles = infer_roles(frame, "default")
    assert roles.role("branch").role == "category" and roles.categories["branch"] == ["001", "002", "010"]
    assert roles.role("guarantor").role == "category"
    assert "none" in roles.categories["guarantor"]


def test_prepare_keeps_training_levels_and_counts_unseen_ones():
    frame = book()
    roles = infer_roles(frame, "default")
    new = frame.head(10).copy()
    new.loc[[0, 1], "province"] = "Sài Gòn"
    new.loc[2, "income"] = "abc"
    X, unseen = prepare(new, roles)
    assert list(X.columns) == roles.features
    assert list(X["province"].cat.categories) == roles.categories["province"]
    assert X["province"].isna().sum() == 2 and np.isnan(X["income"][2])
    assert unseen == {"province": 2, "income": 1}
    with pytest.raises(TableError, match="lacks the column.*'debt_ratio'"):
        prepare(new.drop(columns="debt_ratio"), roles)


def test_roles_table_and_json_round_trip():
    roles = infer_roles(book(), "default", RoleOverrides(allow_leak=("income",)))
    table = roles.table()
    assert list(table.columns) == ["column", "role", "reason", "missing"]
    assert table["column"].tolist() == list(book().columns)
    again = TableRoles.from_dict(json.loads(json.dumps(roles.to_dict())))
    assert again == roles and again.features == roles.features
    assert pickle.loads(pickle.dumps(roles)) == roles


# --- overrides ---------------------------------------------------------------------------------

def test_overrides_win_and_are_marked():
    frame = book()
    frame["score_band"] = np.random.default_rng(4).integers(1, 6, ROWS).astype(str)
    frame["d2"] = frame["disbursed"]
    overrides = RoleOverrides(id=["province"], category=["score_band"], ignore=["income"],
                              numeric=("debt_ratio",), date=("d2",))
    roles = infer_roles(frame, "default", overrides)
    assert roles_by_column(roles) == {"loan_id": "id", "income": "ignored", "debt_ratio": "numeric",
                                      "province": "id", "disbursed": "ignored", "default": "target",
                                      "score_band": "category", "d2": "date"}
    marked = {r.column for r in roles.roles if r.overridden}
    assert marked == {"province", "score_band", "income", "debt_ratio", "d2"}
    assert "--category" in roles.role("score_band").reason
    assert roles.categories["score_band"] == ["1", "2", "3", "4", "5"]
    assert roles.features == ["debt_ratio", "score_band"]


def test_an_override_on_a_missing_column_lists_the_columns():
    with pytest.raises(TableError, match=r"'incme'.*'incme' -> 'income'.*columns are: 'loan_id'"):
        infer_roles(book(), "default", RoleOverrides(ignore=("incme",)))


def test_the_target_cannot_take_another_role_nor_a_column_two():
    with pytest.raises(TableError, match="is the target"):
        infer_roles(book(), "default", RoleOverrides(numeric=("default",)))
    with pytest.raises(TableError, match="two roles"):
        infer_roles(book(), "default", RoleOverrides(numeric=("income",), ignore=("income",)))


def test_numeric_override_counts_text_cells_as_missing():
    frame = book()
    frame.loc[:4, "income"] = "n.a."
    roles = infer_roles(frame, "default")
    # Neither a number (five cells are not) nor a category with a level per income: not used.
    assert roles.role("income").role == "ignored" and "--numeric income" in roles.role("income").reason
    assert any("'income' is not used" in w for w in roles.warnings)
    roles = infer_roles(frame, "default", RoleOverrides(numeric=("income",)))
    assert roles.role("income").role == "numeric" and roles.role("income").missing == 5
    assert "'n.a.' x5" in roles.role("income").reason


@pytest.mark.parametrize("suffix", ["csv", "json"])
def test_a_roles_file(tmp_path, suffix):
    path = tmp_path / f"roles.{suffix}"
    if suffix == "csv":
        path.write_text("column,role\nprovince,ignore\ndebt_ratio,category\nincome,allow_leak\n",
                        encoding="utf-8")
    else:
        path.write_text(json.dumps({"province": "ignore", "debt_ratio": "category",
                                    "income": ["allow_leak"]}), encoding="utf-8")
    overrides = RoleOverrides.from_file(path)
    assert overrides == RoleOverrides(ignore=("province",), category=("debt_ratio",),
                                      allow_leak=("income",))
    roles = infer_roles(book(), "default", overrides.merge(RoleOverrides(id=("income",))))
    assert roles_by_column(roles)["province"] == "ignored"
    assert roles.role("debt_ratio") == ColumnRole("debt_ratio", "category", roles.role("debt_ratio").reason,
                                                  0, True)
    assert roles.allow_leak == ("income",) and roles.role("income").role == "id"


def test_a_roles_file_with_an_unknown_role_is_refused(tmp_path):
    path = tmp_path / "roles.csv"
    path.write_text("income,money\n", encoding="utf-8")
    with pytest.raises(TableError, match="role 'money'.*id, date, category, numeric, ignore"):
        RoleOverrides.from_file(path)


# --- leaks -------------------------------------------------------------------------------------

def prepared(frame: pd.DataFrame, overrides: RoleOverrides = RoleOverrides()):
    roles = infer_roles(frame, "default", overrides)
    X, _ = prepare(frame, roles)
    y, _ = encode_label(frame, "default")
    return X, y, roles


def test_an_ordinary_book_has_no_leak():
    rng = np.random.default_rng(6)
    frame = book()
    frame["free_text"] = [f"t{i}" for i in rng.integers(0, ROWS // 2, ROWS)]  # many rare levels
    X, y, roles = prepared(frame, RoleOverrides(category=("free_text",)))
    assert check_leaks(X, y, roles) == []


def test_a_numeric_column_separating_the_classes_is_a_leak():
    frame = book()
    y = frame["default"].astype(int).to_numpy()
    rng = np.random.default_rng(7)
    frame["days_past_due"] = (y * 90 + rng.integers(0, 30, ROWS)).astype(str)
    X, y, roles = prepared(frame)
    with pytest.raises(LeakError, match="--allow-leak days_past_due") as error:
        check_leaks(X, y, roles)
    assert error.value.column == "days_past_due" and error.value.auc > 0.98
    assert isinstance(error.value, TableError)
    X, y, roles = prepared(frame, RoleOverrides(allow_leak=("days_past_due",)))
    assert check_leaks(X, y, roles) == ["days_past_due"]


def test_a_column_filled_only_after_default_leaks_through_its_missingness():
    frame = book()
    y = frame["default"].astype(int).to_numpy()
    frame["recovered"] = np.where(y == 1, np.random.default_rng(8).uniform(0, 1e6, ROWS).round(), np.nan)
    frame["recovered"] = frame["recovered"].map(lambda v: "" if np.isnan(v) else str(v))
    X, y, roles = prepared(frame)
    with pytest.raises(LeakError) as error:
        check_leaks(X, y, roles)
    assert error.value.column == "recovered"


def test_a_category_separating_the_classes_is_a_leak():
    frame = book()
    y = frame["default"].astype(int).to_numpy()
    rng = np.random.default_rng(9)
    frame["status"] = np.where(y == 1, rng.choice(["written off", "in court"], ROWS),
                               rng.choice(["closed", "early repaid"], ROWS))
    X, y, roles = prepared(frame)
    with pytest.raises(LeakError, match="'status'") as error:
        check_leaks(X, y, roles)
    assert error.value.column == "status"
    assert pickle.loads(pickle.dumps(error.value)).column == "status"
