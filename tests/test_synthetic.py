"""The synthetic generator: conforms to the contracts, is coherent across tables, deterministic, and
carries the signal (latent, seasons, labels) and the dirt it promises."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from coopscore.synthetic import HARVEST_MONTHS, generate
from data_contracts import vocabulary as v
from data_contracts.contracts import CONTRACTS

MEMBERS = 1500
SEED = 7
START, MONTHS = date(2022, 1, 1), 48
END = pd.Timestamp(START) + pd.DateOffset(months=MONTHS)


def read(out: Path) -> dict[str, pd.DataFrame]:
    return {t: pd.read_parquet(out / f"{t}.parquet") for t in CONTRACTS}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    steps = []
    out = tmp_path_factory.mktemp("synthetic-clean")
    summary = generate(out, members=MEMBERS, seed=SEED, progress=lambda s, f: steps.append((s, f)))
    return summary, read(out), steps


@pytest.fixture(scope="module")
def clean(clean_run) -> dict[str, pd.DataFrame]:
    return clean_run[1]


@pytest.fixture(scope="module")
def dirty_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic-dirty")
    summary = generate(out, members=MEMBERS, seed=SEED, dirty=True)
    return summary, read(out)


# --- contracts and integrity ----------------------------------------------------------------
@pytest.mark.parametrize("table", list(CONTRACTS))
def test_every_table_validates_against_its_contract(clean, table):
    df = clean[table]
    assert len(df) > 0
    CONTRACTS[table].schema().validate(df, lazy=True)
    assert list(df.columns) == CONTRACTS[table].columns


def test_summary_counts_rows_and_reports_no_dirt(clean_run):
    summary, tables, steps = clean_run
    assert summary.rows == {t: len(df) for t, df in tables.items()}
    assert summary.dirt == {}
    assert summary.rows["members"] == MEMBERS
    assert summary.rows["cooperatives"] == max(5, MEMBERS // 250)
    fractions = [f for _, f in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(steps) >= 5


def test_keys_are_unique(clean):
    for table, contract in CONTRACTS.items():
        assert not clean[table].duplicated(list(contract.key)).any(), table


def test_every_reference_points_to_an_existing_row(clean):
    members = set(clean["members"].member_id)
    coops = set(clean["cooperatives"].cooperative_id)
    assert set(clean["members"].cooperative_id) <= coops
    for table in ("transactions", "e_invoices", "loan_applications", "loans"):
        df = clean[table]
        is_member = df.entity_type == "member"
        assert df.entity_id[is_member].isin(members).all(), table
        assert df.entity_id[~is_member].isin(coops).all(), table
    apps = set(clean["loan_applications"].application_id)
    assert set(clean["loans"].application_id) == apps  # every application is disbursed, once
    labelled = clean["loan_applications"].default_12m.notna()
    assert set(clean["true_pd"].application_id) == set(clean["loan_applications"].application_id[labelled])
    assert set(clean["repayments"].loan_id) <= set(clean["loans"].loan_id)


def test_every_application_is_addressed_to_a_lender_the_demo_bank_about_a_third(clean):
    apps = clean["loan_applications"]
    assert apps.lender_id.isin(list(v.LENDERS)).all()
    assert set(apps.lender_id) == set(v.LENDERS)  # every fund has a queue
    share = (apps.lender_id == "demo-bank").mean()
    assert 0.28 < share < 0.40, share  # `make demo` signs in to the console as demo-bank
    # members' applications too (the console lists those), not just the cooperatives'
    members_apps = apps[apps.entity_type == "member"]
    assert 0.28 < (members_apps.lender_id == "demo-bank").mean() < 0.40
    assert apps.application_id.str.fullmatch(r"HS[0-9]{8}").all()  # the contract's form, exactly


def test_time_stays_inside_the_data_period(clean):
    for table, column in (("transactions", "ts"), ("e_invoices", "issued_at"),
                          ("loan_applications", "application_date"), ("loans", "disbursal_date"),
                          ("repayments", "month")):
        assert clean[table][column].max() < END, table
        inside = clean[table][column] >= pd.Timestamp(START)
        if table in ("loan_applications", "loans"):  # the legacy book is older, and unlabelled
            legacy = _legacy_application_ids(clean)
            assert (inside != clean[table].application_id.isin(legacy)).all(), table
        else:
            assert inside.all(), table
    founding = clean["cooperatives"].founding_date
    assert (founding < pd.Timestamp(START) + pd.DateOffset(months=12)).all()


def test_new_cooperatives_are_founded_during_the_data_and_members_join_after(clean):
    """Without new cooperatives the population only ages and tenure drifts between periods."""
    coops = clean["cooperatives"].set_index("cooperative_id")
    new = coops.founding_date >= pd.Timestamp(START)
    assert 0.05 < new.mean() < 0.2
    members = clean["members"]
    founded = members.cooperative_id.map(coops.founding_date)
    assert (members.join_date > founded).all()
    tx = clean["transactions"]
    first = tx[tx.entity_type == "cooperative"].groupby("entity_id").ts.min()
    young = coops.index[new]
    assert (first.reindex(young).dropna() >= coops.founding_date[young].reindex(young)).all()
    for table, column in (("cooperatives", "founding_date"), ("members", "join_date"),
                          ("loan_applications", "application_date"), ("loans", "disbursal_date")):
        assert (clean[table][column] == clean[table][column].dt.normalize()).all(), table
    assert (clean["repayments"].month.dt.is_month_end).all()


def test_counterparty_is_null_exactly_for_cash(clean):
    tx = clean["transactions"]
    assert (tx.counterparty_hash.isna() == (tx.channel == "cash")).all()
    assert tx.counterparty_hash.dropna().str.fullmatch(r"[0-9a-f]{16}").all()


# --- the shape of the population --------------------------------------------------------------
def test_members_cooperatives_and_protected_attributes(clean):
    members, coops = clean["members"], clean["cooperatives"]
    same_province = members.merge(coops, on="cooperative_id", suffixes=("", "_coop"))
    assert (same_province.province == same_province.province_coop).mean() > 0.8
    assert set(members.member_type) == set(v.MEMBER_TYPES)
    region = members.province.map(v.REGION_OF_PROVINCE)
    hills = region.isin(["north_mountain", "highlands"])
    assert members.mountainous_commune[hills].mean() > 3 * members.mountainous_commune[~hills].mean()
    assert members.ethnic_minority[hills].mean() > 3 * members.ethnic_minority[~hills].mean()


def test_applications_have_history_before_and_an_outcome_window_after(clean):
    apps = clean["loan_applications"]
    apps = apps[apps.default_12m.notna()]  # the platform's own applications, not the legacy book
    members = clean["members"]
    assert apps.application_date.min() >= pd.Timestamp(START) + pd.DateOffset(months=12)
    assert (apps.application_date + pd.DateOffset(months=12)).max() < END
    m_apps = apps[apps.entity_type == "member"]
    assert 0.25 <= m_apps.entity_id.nunique() / len(members) <= 0.36
    assert (m_apps.groupby("entity_id").size() > 1).any()  # some borrowers come back
    per_coop = apps[apps.entity_type == "cooperative"].groupby("entity_id").size()
    assert per_coop.between(1, 3).all()
    joined = members.set_index("member_id").join_date
    first = m_apps.groupby("entity_id").application_date.min()
    history_from = joined[first.index].clip(lower=pd.Timestamp(START))
    assert (first >= history_from + pd.DateOffset(months=12)).all()
    apps = clean["loan_applications"]  # legacy book included
    limits = apps.entity_id.map(members.set_index("member_id").member_type).fillna("cooperative")
    assert (apps.requested_amount_vnd <= limits.map(v.UNSECURED_LIMIT_VND)).all()


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = generate(tmp_path / "a", members=300, seed=3)
    b = generate(tmp_path / "b", members=300, seed=3)
    c = generate(tmp_path / "c", members=300, seed=4)
    for table in CONTRACTS:
        pd.testing.assert_frame_equal(pd.read_parquet(a.out_dir / f"{table}.parquet"),
                                      pd.read_parquet(b.out_dir / f"{table}.parquet"))
    tx_a = pd.read_parquet(a.out_dir / "transactions.parquet")
    tx_c = pd.read_parquet(c.out_dir / "transactions.parquet")
    assert len(tx_a) != len(tx_c) or not tx_a.amount_vnd.equals(tx_c.amount_vnd)


# --- labels and the true PD -------------------------------------------------------------------
def test_label_agrees_with_repayments(clean):
    """default_12m == 1 iff some month-end within 12 months of the application is 91+ days late."""
    apps = clean["loan_applications"].dropna(subset=["default_12m"])
    apps = apps.merge(clean["loans"][["loan_id", "application_id"]])
    rep = clean["repayments"].merge(apps[["loan_id", "application_date", "default_12m"]])
    inside = (rep.month > rep.application_date) & (
        rep.month <= rep.application_date + pd.DateOffset(months=12))
    worst = rep[inside].groupby("loan_id").days_past_due.max()
    seen = apps.set_index("loan_id").default_12m
    assert worst.index.equals(worst.index.intersection(seen.index))
    assert ((worst.reindex(seen.index).fillna(0) >= v.DEFAULT_DAYS_PAST_DUE) == (seen == 1.0)).all()
    # non-defaulters are sometimes late, never 91 days
    good = rep[rep.default_12m == 0.0]
    assert good.days_past_due.between(1, 90).any()


def test_repayment_amounts_are_consistent(clean):
    loans = clean["loans"].set_index("loan_id")
    rep = clean["repayments"]
    first = rep.groupby("loan_id").month.min()
    expected_first = (loans.disbursal_date[first.index] + pd.offsets.MonthEnd(0)
                      + pd.offsets.MonthEnd(1))
    # a legacy loan's rows start at the first month end of the data
    expected_first = expected_first.clip(lower=pd.Timestamp(START) + pd.offsets.MonthEnd(0))
    assert (first == expected_first).all()
    months = rep.groupby("loan_id").size()
    label = loans.application_id.map(
        clean["loan_applications"].set_index("application_id").default_12m)
    repaying = months.index[label[months.index] == 0.0]
    assert len(repaying) > 0
    assert (months[repaying] <= loans.term_months[repaying]).all()  # no rows after the term ends
    on_time = rep[(rep.days_past_due == 0) & (rep.amount_due_vnd > 0)]
    assert (on_time.amount_paid_vnd >= on_time.amount_due_vnd).all()


def test_true_pd_separates_defaults_and_default_rate_is_realistic(clean):
    apps = clean["loan_applications"].merge(clean["true_pd"])
    auc = roc_auc_score(apps.default_12m, apps.true_pd)
    assert 0.75 <= auc <= 0.93
    members = apps[apps.entity_type == "member"]
    assert 0.03 <= members.default_12m.mean() <= 0.10
    assert abs(members.true_pd.mean() - members.default_12m.mean()) < 0.03


def test_protected_attributes_do_not_drive_the_true_pd(clean):
    apps = clean["loan_applications"].merge(clean["true_pd"])
    apps = apps.merge(clean["members"], left_on="entity_id", right_on="member_id")
    by_gender = apps.groupby("household_head_gender").true_pd.mean()
    assert 0.75 < by_gender["female"] / by_gender["male"] < 1.33


@pytest.fixture(scope="module")
def larger(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """Enough defaulters (about 300) that behavioural differences are not sampling noise."""
    out = tmp_path_factory.mktemp("synthetic-larger")
    generate(out, members=8000, seed=SEED)
    return read(out)


def test_latent_creditworthiness_shows_in_behaviour(larger):
    """Defaulters sold less, less of it on e-invoices or cash registers, and cancelled more invoices
    in the year before they applied."""
    clean = larger
    apps = clean["loan_applications"].dropna(subset=["default_12m"])
    apps = apps[["application_id", "entity_id", "application_date", "default_12m"]]
    tx = clean["transactions"]
    sales = apps.merge(tx[tx.category == "sales"][["entity_id", "ts", "amount_vnd", "channel"]])
    sales = sales[(sales.ts < sales.application_date)
                  & (sales.ts >= sales.application_date - pd.Timedelta(days=365))]
    sales["formal"] = sales.amount_vnd.where(sales.channel.isin(["e_invoice", "cash_register"]), 0)
    per_app = sales.groupby(["application_id", "default_12m"])[["amount_vnd", "formal"]].sum()
    per_app = per_app.reset_index()
    per_app["formal_share"] = per_app.formal / per_app.amount_vnd
    by_label = per_app.groupby("default_12m")
    assert by_label.amount_vnd.median()[1.0] < 0.9 * by_label.amount_vnd.median()[0.0]
    assert by_label.formal_share.mean()[1.0] < 0.75 * by_label.formal_share.mean()[0.0]
    invoices = apps.merge(clean["e_invoices"][["entity_id", "issued_at", "status"]])
    invoices = invoices[invoices.issued_at < invoices.application_date]
    # per application, so that a few defaulters with many invoices do not decide it
    invoices["cancelled"] = invoices.status.eq("cancelled")
    per_app = invoices.groupby(["application_id", "default_12m"]).cancelled.mean().reset_index()
    cancelled = per_app.groupby("default_12m").cancelled.mean()
    assert cancelled[1.0] > 1.2 * cancelled[0.0]


# --- the legacy book --------------------------------------------------------------------------
def _legacy_application_ids(clean) -> set:
    apps = clean["loan_applications"]
    return set(apps.application_id[apps.application_date < pd.Timestamp(START)])


def test_legacy_book_is_older_unlabelled_and_repays_from_the_data_start(clean):
    """Loans from before the platform: applied for and disbursed in the 24 months before the data,
    unlabelled (outcome unknown), no true PD, no disbursal transaction, repayment rows from the
    data start on, some of them late, some defaulted."""
    apps, loans, rep = clean["loan_applications"], clean["loans"], clean["repayments"]
    legacy = apps[apps.application_date < pd.Timestamp(START)]
    members = clean["members"]
    assert 0.2 <= legacy[legacy.entity_type == "member"].entity_id.nunique() / len(members) <= 0.4
    assert legacy[legacy.entity_type == "cooperative"].entity_id.nunique() > 0
    assert (legacy.application_date >= pd.Timestamp(START) - pd.DateOffset(months=24)).all()
    assert legacy.default_12m.isna().all()
    assert apps.default_12m[apps.application_date >= pd.Timestamp(START)].notna().all()
    assert not set(clean["true_pd"].application_id) & set(legacy.application_id)
    # ids in time order: the legacy book comes first
    assert apps.sort_values("application_id").application_date.is_monotonic_increasing
    old = loans[loans.application_id.isin(legacy.application_id)]
    assert (old.disbursal_date < pd.Timestamp(START)).all()
    assert (old.disbursal_date >= old.application_id.map(
        legacy.set_index("application_id").application_date)).all()
    old_rep = rep[rep.loan_id.isin(old.loan_id)]
    assert old_rep.month.min() == pd.Timestamp(START) + pd.offsets.MonthEnd(0)
    assert old_rep.loan_id.nunique() > 0.3 * len(old)  # many still run when the data starts
    worst = old_rep.groupby("loan_id").days_past_due.max()
    assert worst.between(1, 90).any() and (worst >= v.DEFAULT_DAYS_PAST_DUE).any()
    tx = clean["transactions"]
    disbursals = tx[tx.category == "loan_disbursal"]
    assert disbursals.ts.min() >= pd.Timestamp(START)
    assert len(disbursals) == (loans.disbursal_date >= pd.Timestamp(START)).sum()
    repaid = tx[(tx.category == "loan_repayment") & tx.entity_id.isin(old.entity_id)]
    assert repaid.ts.min() < pd.Timestamp(START) + pd.DateOffset(months=2)
    # a borrower whose legacy loan defaulted gets no later loan
    defaulted = old_rep[old_rep.days_past_due >= v.DEFAULT_DAYS_PAST_DUE]
    first_default = defaulted.merge(old[["loan_id", "entity_id"]]).groupby("entity_id").month.min()
    later = apps[apps.application_date >= pd.Timestamp(START)].set_index("entity_id").application_date
    later = later[later.index.isin(first_default.index)]
    assert (later <= first_default[later.index]).all()


# --- seasons and channels ---------------------------------------------------------------------
def _monthly_sales(clean, sectors) -> pd.DataFrame:
    tx = clean["transactions"]
    members = clean["members"][clean["members"].business_sector.isin(sectors)]
    sales = tx[(tx.category == "sales") & tx.entity_id.isin(members.member_id)]
    sales = sales.merge(members[["member_id", "province"]], left_on="entity_id", right_on="member_id")
    sales["region"] = sales.province.map(v.REGION_OF_PROVINCE)
    sales["month"] = sales.ts.dt.month
    return sales


def test_harvest_months_sell_more(clean):
    sales = _monthly_sales(clean, ["crop_farming", "aquaculture"])
    harvest = {(r, m) for r, months in HARVEST_MONTHS.items() for m in months}
    sales["harvest"] = [(r, m) in harvest for r, m in zip(sales.region, sales.month)]
    per_month = sales.groupby(["region", "month", "harvest"]).amount_vnd.sum().reset_index()
    mean = per_month.groupby("harvest").amount_vnd.mean()
    assert mean[True] > 1.4 * mean[False]


def test_tet_shopping_month_sells_more(clean):
    sales = _monthly_sales(clean, ["retail", "services", "handicraft", "livestock"])
    per_month = sales.groupby("month").amount_vnd.sum()
    assert per_month[1] > 1.3 * per_month.loc[3:11].mean()  # the weeks before Tet fall in January


def test_e_invoices_and_cash_registers_grow(clean):
    tx = clean["transactions"]
    sales = tx[(tx.category == "sales") & (tx.entity_type == "member")]
    formal = sales.channel.isin(["e_invoice", "cash_register"]).groupby(sales.ts.dt.year).mean()
    assert formal.is_monotonic_increasing and formal.iloc[-1] > formal.iloc[0] + 0.05
    invoices = clean["e_invoices"]
    assert set(invoices.status) == set(v.INVOICE_STATUSES)
    issued = invoices[invoices.status != "cancelled"]
    assert len(issued) == ((tx.channel == "e_invoice") & (tx.category == "sales")).sum()


# --- dirt -------------------------------------------------------------------------------------
def test_dirty_mode_injects_exactly_the_counted_dirt(dirty_run, clean):
    summary, dirty = dirty_run
    dirt = summary.dirt
    tx, counted = dirty["transactions"], dirt["transactions"]
    assert 0.005 < sum(counted.values()) / len(clean["transactions"]) < 0.02
    assert len(tx) == len(clean["transactions"]) + counted["duplicate"]
    assert tx.transaction_id.duplicated().sum() == counted["duplicate"]
    assert (tx.amount_vnd < 0).sum() == counted["negative_amount"]
    assert (tx.amount_vnd > v.ABSURD_AMOUNT_VND).sum() == counted["absurd_amount"]
    assert (tx.ts >= END).sum() == counted["future_ts"]
    known = set(dirty["members"].member_id.dropna()) | set(dirty["cooperatives"].cooperative_id)
    assert (tx.entity_id.notna() & ~tx.entity_id.isin(known)).sum() == counted["unknown_entity"]
    required = [f.name for f in CONTRACTS["transactions"].fields if not f.nullable]
    assert tx[required].isna().any(axis=1).sum() == counted["missing"]
    assert (tx.channel.notna() & ~tx.channel.isin(v.CHANNELS)).sum() == counted["invalid_channel"]


def test_dirty_mode_touches_every_table_but_the_true_pd(dirty_run, clean):
    summary, dirty = dirty_run
    assert set(summary.dirt) == set(CONTRACTS) - {"true_pd"}
    for table, kinds in summary.dirt.items():
        assert all(n > 0 for n in kinds.values()), table
        assert len(dirty[table]) == len(clean[table]) + kinds.get("duplicate", 0), table
        assert summary.rows[table] == len(dirty[table])
        with pytest.raises(Exception):
            CONTRACTS[table].schema().validate(dirty[table])
    members = dirty["members"]
    assert (members.province.notna() & ~members.province.isin(v.PROVINCES)).sum() == \
        summary.dirt["members"]["province_typo"]
    assert (~dirty["repayments"].loan_id.isin(set(dirty["loans"].loan_id))).sum() == \
        summary.dirt["repayments"]["unknown_loan"]
    apps = dirty["loan_applications"]
    assert (apps.requested_amount_vnd > v.UNSECURED_LIMIT_VND["cooperative"]).sum() == \
        summary.dirt["loan_applications"]["over_limit"]
    bad_ids = apps.application_id.notna() & ~apps.application_id.str.fullmatch(r"HS[0-9]{8}")
    assert bad_ids.sum() == summary.dirt["loan_applications"]["formula_id"] >= 2
    assert apps.application_id[bad_ids].str[0].isin(["=", "+"]).sum() >= 2  # live formulas
    unknown = apps.lender_id.notna() & ~apps.lender_id.isin(list(v.LENDERS))
    assert unknown.sum() == summary.dirt["loan_applications"]["unknown_lender"]


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="first day"):
        generate(tmp_path, members=100, start=date(2022, 1, 15))
    with pytest.raises(ValueError, match="months"):
        generate(tmp_path, members=100, months=12)
    with pytest.raises(ValueError, match="members"):
        generate(tmp_path, members=0)
