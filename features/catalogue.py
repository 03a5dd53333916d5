"""The feature catalogue: every feature coopscore computes, declared once.

Each feature has a name, its meaning in Vietnamese and English, its direction of risk, its reason
code, and how it is computed. A history feature declares it (features.declarations): its inputs,
each an aggregation of a source (features.sources) over the rows that pass a filter within a
window, and an expression over them. The engine compiles the declarations to SQL
(features.compiler); no feature's SQL is written anywhere else, so adding a feature is adding one
declaration here. The few features of the loan application are on-demand numpy functions instead
(features/on_demand.py, `Feature.on_demand`).

Direction of risk: +1 when a higher value means a higher risk, -1 when a higher value means a lower
risk, 0 when it is not one-sided. Training turns +1/-1 into LightGBM monotone constraints, so the
model can never say "more on-time repayments, more risk".
"""
from __future__ import annotations

from data_contracts.vocabulary import (COOPERATIVE_SECTORS, HARVEST_COOPERATIVE_SECTORS,
                                       HARVEST_MEMBER_SECTORS, MEMBER_SECTORS)
from features import on_demand
from features.declarations import (BOTH, COOPERATIVE, MEMBER, Aggregate, Attribute, Feature,
                                   Measure, Series, SeriesStat, Trend, UsualBucket, days, months)
from features.sources import (COOPERATIVE_MONTHLY_FLOWS, COOPERATIVE_MONTHLY_REPAYMENTS, E_INVOICES,
                              LOANS, REPAYMENTS, SUBJECT_ROW, TRANSACTIONS)

__all__ = ["BOTH", "COOPERATIVE", "MEMBER", "Feature", "FEATURES", "FEATURES_BY_NAME", "MEASURES",
           "features_for", "feature_names"]

# --- the building blocks: filters, windows, series ------------------------------------------------
INFLOW = "direction = 'inflow'"  # money in, a loan disbursal excepted (features.sources)
OUTFLOW = "direction = 'outflow'"
WINDOWS = (30, 90, 180, 365)  # days: the windows of the inflow and outflow sums and counts


def tx_sum(where: str, window) -> Aggregate:
    """The amount of the transactions that pass `where` within `window`."""
    return Aggregate(TRANSACTIONS, "sum", "amount", where, window)


def tx_count(where: str, window) -> Aggregate:
    """The number of transactions that pass `where` within `window`."""
    return Aggregate(TRANSACTIONS, "count", "*", where, window)


# Monthly revenue: 12 buckets of 30 days, bucket 0 the most recent (days 1-30 before the as-of date).
MONTHLY_INFLOWS = Series("monthly_inflows", TRANSACTIONS, by="FLOOR((age_days - 1) / 30)",
                         of="amount", where=INFLOW, window=days(360))
# Inflows per customer over the last year (cash has no counterparty: left out).
CUSTOMER_INFLOWS = Series("customer_inflows", TRANSACTIONS, by="counterparty_hash", of="amount",
                          where=f"{INFLOW} AND counterparty_hash IS NOT NULL", window=days(365))
# The cooperative's revenue per whole calendar month, the 12 before the as-of month (bucket 0 the
# month just before it).
COOPERATIVE_MONTHLY_REVENUE = Series("cooperative_monthly_revenue", COOPERATIVE_MONTHLY_FLOWS,
                                     by="months_ago - 1", of="amount", where=INFLOW,
                                     window=months(12))
# The subject's usual month: the median 30-day bucket of days 61-360 (before the windows a shock is
# looked for in), an empty month as 0, at least 3 months wholly inside the subject's history.
USUAL_MONTH = UsualBucket(MONTHLY_INFLOWS, first=2, last=11, bucket_days=30, at_least=3)
# Loan-months of the cooperative's members over the 12 whole months before the as-of month.
COOPERATIVE_LOAN_MONTHS = Aggregate(COOPERATIVE_MONTHLY_REPAYMENTS, "sum", "loan_months",
                                    window=months(12))
COOPERATIVE_LATE_MONTHS = Aggregate(COOPERATIVE_MONTHLY_REPAYMENTS, "sum", "loan_months",
                                    "days_past_due >= 30", months(12))
# The cooperative's arrears rate, read by members and by the cooperative itself.
COOPERATIVE_ARREARS_RATE = dict(
    inputs={"late": COOPERATIVE_LATE_MONTHS, "all": COOPERATIVE_LOAN_MONTHS},
    expression="CAST({late} AS DOUBLE) / NULLIF({all}, 0)")


def _in(values) -> str:
    return "(" + ", ".join(f"'{v}'" for v in sorted(values)) + ")"


def _window_features() -> list[Feature]:
    """Inflow and outflow sums and counts over each of WINDOWS."""
    out = []
    for n in WINDOWS:
        out += [
            Feature(f"inflow_sum_{n}d",
                    f"Tổng tiền vào {n} ngày qua", f"Total inflows, last {n} days", -1,
                    "REVENUE_LOW", unit="VND", inputs=tx_sum(INFLOW, days(n))),
            Feature(f"inflow_count_{n}d",
                    f"Số giao dịch tiền vào {n} ngày qua", f"Number of inflows, last {n} days",
                    -1, "ACTIVITY_LOW", inputs=tx_count(INFLOW, days(n))),
            Feature(f"outflow_sum_{n}d",
                    f"Tổng tiền ra {n} ngày qua", f"Total outflows, last {n} days", 0,
                    "CASHFLOW_TIGHT", unit="VND", inputs=tx_sum(OUTFLOW, days(n))),
            Feature(f"outflow_count_{n}d",
                    f"Số giao dịch tiền ra {n} ngày qua", f"Number of outflows, last {n} days",
                    0, "ACTIVITY_LOW", inputs=tx_count(OUTFLOW, days(n))),
        ]
    return out


def _sector_features() -> list[Feature]:
    """One 0/1 indicator per sector of the vocabulary: a member's business sector, a cooperative's
    sector. Indicators rather than one code: a tree splits them, a WoE scorecard bins them, and
    neither reads an order into sector codes that has no meaning."""
    out = [Feature(f"sector_{s}",
                   f"Ngành kinh doanh: {vi}", f"Business sector: {s.replace('_', ' ')}", 0,
                   "BUSINESS_PROFILE", subjects=(MEMBER,),
                   inputs=Attribute(SUBJECT_ROW, "business_sector"),
                   expression=f"CAST({{value}} = '{s}' AS INTEGER)")
           for s, vi in MEMBER_SECTOR_VI.items()]
    out += [Feature(f"coop_sector_{s}",
                    f"Lĩnh vực của hợp tác xã: {vi}", f"Cooperative's sector: {s.replace('_', ' ')}",
                    0, "BUSINESS_PROFILE", subjects=(COOPERATIVE,),
                    inputs=Attribute(SUBJECT_ROW, "coop_sector"),
                    expression=f"CAST({{value}} = '{s}' AS INTEGER)")
            for s, vi in COOPERATIVE_SECTOR_VI.items()]
    return out


# Vietnamese names of the sectors (data_contracts.vocabulary holds the codes).
MEMBER_SECTOR_VI = {
    "crop_farming": "trồng trọt", "livestock": "chăn nuôi", "aquaculture": "nuôi trồng thủy sản",
    "food_processing": "chế biến thực phẩm", "handicraft": "thủ công mỹ nghệ",
    "retail": "bán lẻ", "services": "dịch vụ",
}
COOPERATIVE_SECTOR_VI = {
    "agriculture": "nông nghiệp", "aquaculture": "thủy sản", "forestry": "lâm nghiệp",
    "handicraft": "tiểu thủ công nghiệp", "trade_services": "thương mại, dịch vụ",
    "transport": "vận tải",
}
assert tuple(MEMBER_SECTOR_VI) == MEMBER_SECTORS and tuple(COOPERATIVE_SECTOR_VI) == COOPERATIVE_SECTORS


FEATURES: tuple[Feature, ...] = (
    *_window_features(),
    # --- cash flow shape --------------------------------------------------------------------
    Feature("net_inflow_ratio_365d",
            "Tỷ lệ dòng tiền ròng trên doanh thu 12 tháng", "Net cash flow over revenue, 12 months",
            -1, "CASHFLOW_TIGHT",
            inputs={"inflow": tx_sum(INFLOW, days(365)), "outflow": tx_sum(OUTFLOW, days(365))},
            expression="({inflow} - {outflow}) / NULLIF({inflow}, 0)"),
    Feature("active_months_12m",
            "Số tháng có doanh thu trong 12 tháng qua", "Months with revenue in the last 12", -1,
            "REVENUE_IRREGULAR", unit="months", inputs=SeriesStat(MONTHLY_INFLOWS, "count")),
    Feature("revenue_volatility_12m",
            "Độ biến động doanh thu tháng (hệ số biến thiên)",
            "Volatility of monthly revenue (coefficient of variation)", +1, "REVENUE_IRREGULAR",
            # over the 12 months, an empty month counting as 0
            inputs={"s": SeriesStat(MONTHLY_INFLOWS, "sum"),
                    "ss": SeriesStat(MONTHLY_INFLOWS, "sum_squares")},
            expression="CASE WHEN {s} > 0 THEN SQRT(GREATEST({ss} / 12.0 - "
                       "({s} / 12.0) * ({s} / 12.0), 0)) / ({s} / 12.0) END"),
    Feature("revenue_trend_12m",
            "Xu hướng doanh thu 12 tháng (độ dốc so với trung bình tháng)",
            "Revenue trend over 12 months (slope relative to the mean month)", -1, "REVENUE_DECLINE",
            inputs=Trend(MONTHLY_INFLOWS, buckets=12)),
    Feature("revenue_change_vs_last_year_90d",
            "Doanh thu 90 ngày qua so với cùng kỳ năm trước",
            "Revenue of the last 90 days against the same season last year", -1, "REVENUE_DECLINE",
            inputs={"now": tx_sum(INFLOW, days(90)), "last_year": tx_sum(INFLOW, days(455, 366))},
            expression="CASE WHEN {last_year} > 0 THEN {now} / {last_year} - 1 END"),
    Feature("days_since_last_activity",
            "Số ngày từ giao dịch gần nhất", "Days since the last transaction", +1, "ACTIVITY_LOW",
            unit="days", inputs=Aggregate(TRANSACTIONS, "min", "age_days")),
    # --- formality and customers ---------------------------------------------------------------
    Feature("einvoice_share_365d",
            "Tỷ trọng doanh thu có hóa đơn điện tử (kể cả máy tính tiền)",
            "Share of revenue on e-invoices (cash registers included)", -1,
            "FORMALITY_LOW",
            inputs={"invoiced": tx_sum(f"{INFLOW} AND channel IN ('e_invoice', 'cash_register')",
                                       days(365)),
                    "inflow": tx_sum(INFLOW, days(365))},
            expression="{invoiced} / NULLIF({inflow}, 0)"),
    Feature("cash_share_365d",
            "Tỷ trọng doanh thu bằng tiền mặt", "Share of revenue in cash", +1, "FORMALITY_LOW",
            inputs={"cash": tx_sum(f"{INFLOW} AND channel = 'cash'", days(365)),
                    "inflow": tx_sum(INFLOW, days(365))},
            expression="{cash} / NULLIF({inflow}, 0)"),
    Feature("customer_concentration_365d",
            "Mức tập trung khách hàng (chỉ số HHI)", "Customer concentration (HHI)", +1,
            "CUSTOMERS_CONCENTRATED", inputs=SeriesStat(CUSTOMER_INFLOWS, "hhi")),
    Feature("distinct_customers_365d",
            "Số khách hàng khác nhau trong 12 tháng", "Distinct customers in 12 months", -1,
            "CUSTOMERS_CONCENTRATED", inputs=SeriesStat(CUSTOMER_INFLOWS, "count")),
    Feature("cancelled_invoice_rate_365d",
            "Tỷ lệ hóa đơn bị hủy", "Share of e-invoices cancelled", +1, "INVOICES_CANCELLED",
            inputs={"cancelled": Aggregate(E_INVOICES, "count", where="status = 'cancelled'",
                                           window=days(365)),
                    "issued": Aggregate(E_INVOICES, "count", window=days(365))},
            expression="CAST({cancelled} AS DOUBLE) / NULLIF({issued}, 0)"),
    # --- repayment history ---------------------------------------------------------------------
    Feature("prior_loans", "Số khoản vay trước đây trên nền tảng",
            "Earlier loans on the platform", 0, "REPAYMENT_HISTORY",
            inputs=Aggregate(LOANS, "count_distinct", "loan_id")),
    Feature("repayment_on_time_rate",
            "Tỷ lệ tháng trả nợ đúng hạn", "Share of months repaid on time", -1,
            "REPAYMENT_HISTORY",
            inputs={"on_time": Aggregate(REPAYMENTS, "count", where="days_past_due = 0"),
                    "months": Aggregate(REPAYMENTS, "count")},
            expression="CASE WHEN {months} > 0 THEN CAST({on_time} AS DOUBLE) / {months} END"),
    Feature("worst_days_past_due", "Số ngày quá hạn cao nhất",
            "Worst days past due", +1, "REPAYMENT_HISTORY", unit="days",
            inputs=Aggregate(REPAYMENTS, "max", "days_past_due")),
    # --- the subject itself --------------------------------------------------------------------
    Feature("tenure_years",
            "Thời gian gắn bó (năm, từ ngày vào HTX hoặc thành lập)",
            "Tenure in years (since joining, or since founding)", -1, "TENURE_SHORT", unit="years",
            inputs={"joined": Attribute(SUBJECT_ROW, "days_since_joining"),
                    "founded": Attribute(SUBJECT_ROW, "days_since_founding")},
            expression="CAST(COALESCE({joined}, {founded}) AS DOUBLE) / 365.25"),
    Feature("capital_contribution_vnd", "Vốn góp vào hợp tác xã",
            "Capital contributed to the cooperative", -1, "CAPITAL_LOW", subjects=(MEMBER,),
            unit="VND", inputs=Attribute(SUBJECT_ROW, "capital_contribution_vnd")),
    Feature("legal_capital_vnd", "Vốn điều lệ của hợp tác xã",
            "Cooperative's charter capital", -1, "CAPITAL_LOW", subjects=(COOPERATIVE,), unit="VND",
            inputs=Attribute(SUBJECT_ROW, "legal_capital_vnd")),
    Feature("member_count", "Số thành viên của hợp tác xã",
            "Cooperative's member count", -1, "COOPERATIVE_WEAK", subjects=(COOPERATIVE,),
            inputs=Attribute(SUBJECT_ROW, "member_count")),
    # --- what kind of business, and its season ---------------------------------------------------
    Feature("household_business",
            "Là hộ kinh doanh (1) hay hộ gia đình (0)",
            "A household business (1) rather than a household (0)", 0, "BUSINESS_PROFILE",
            subjects=(MEMBER,), inputs=Attribute(SUBJECT_ROW, "member_type"),
            expression="CAST({value} = 'household_business' AS INTEGER)"),
    *_sector_features(),
    Feature("harvest_season",
            "Mùa thu hoạch của tháng xét theo ngành và vùng (1 chính vụ, 0,35 giáp vụ, 0 ngoài vụ)",
            "Harvest season of the as-of month by sector and region (1 harvest, 0.35 next to one, "
            "0 none)", -1, "SEASON",
            # only for those whose sales follow the harvest
            inputs={"sector": Attribute(SUBJECT_ROW, "business_sector"),
                    "coop_sector": Attribute(SUBJECT_ROW, "coop_sector"),
                    "intensity": Attribute(SUBJECT_ROW, "harvest_intensity")},
            expression=f"CASE WHEN {{sector}} IN {_in(HARVEST_MEMBER_SECTORS)} "
                       f"OR {{coop_sector}} IN {_in(HARVEST_COOPERATIVE_SECTORS)} "
                       "THEN COALESCE({intensity}, 0) ELSE 0 END"),
    # --- recent shocks: the last weeks against the subject's own usual month -----------------------
    # Not one-sided (risk 0): a month far above the usual one is as much a sign of irregular revenue
    # as one far below it is of a shock; on the synthetic data the default rate is U-shaped in both
    # ratios and in the change of customers, and a monotone constraint would flatten one arm.
    Feature("inflow_30d_vs_usual_month",
            "Tiền vào 30 ngày qua so với tháng thường lệ (trung vị tháng, ngày 61-360 trước)",
            "Inflows of the last 30 days against the usual month (median month, days 61-360 before)",
            0, "REVENUE_SHOCK",
            inputs={"recent": tx_sum(INFLOW, days(30)), "usual": USUAL_MONTH},
            expression="{recent} / NULLIF({usual}, 0)"),
    Feature("inflow_60d_vs_usual_month",
            "Tiền vào 60 ngày qua so với hai tháng thường lệ",
            "Inflows of the last 60 days against two usual months", 0, "REVENUE_SHOCK",
            inputs={"recent": tx_sum(INFLOW, days(60)), "usual": USUAL_MONTH},
            expression="{recent} / NULLIF(2 * {usual}, 0)"),
    Feature("weeks_without_inflow_13w",
            "Số tuần không có tiền vào trong 13 tuần qua", "Weeks without inflows in the last 13",
            +1, "REVENUE_SHOCK", unit="weeks",
            # the 13 weeks (91 days) before as_of: week 0 is the most recent
            inputs=Aggregate(TRANSACTIONS, "count_distinct", "FLOOR((age_days - 1) / 7)", INFLOW,
                             days(91)),
            expression="13 - {value}"),
    Feature("customers_change_90d",
            "Thay đổi số khách hàng: 90 ngày qua so với 90 ngày trước đó",
            "Change in distinct customers: the last 90 days against the 90 before", 0,
            "REVENUE_SHOCK",
            inputs={"now": Aggregate(TRANSACTIONS, "count_distinct", "counterparty_hash", INFLOW,
                                     days(90)),
                    "before": Aggregate(TRANSACTIONS, "count_distinct", "counterparty_hash", INFLOW,
                                        days(180, 91))},
            expression="CAST({now} - {before} AS DOUBLE) / NULLIF({before}, 0)"),
    # --- the cooperative's own health (for members) --------------------------------------------
    Feature("coop_revenue_12m", "Doanh thu của hợp tác xã, 12 tháng trọn trước tháng xét",
            "Cooperative's revenue, the 12 whole months before the as-of month", -1,
            "COOPERATIVE_WEAK", subjects=(MEMBER,), unit="VND",
            inputs=SeriesStat(COOPERATIVE_MONTHLY_REVENUE, "sum")),
    Feature("coop_revenue_trend_12m",
            "Xu hướng doanh thu của hợp tác xã (12 tháng trọn)",
            "Cooperative's revenue trend (12 whole months)", -1,
            "COOPERATIVE_WEAK", subjects=(MEMBER,),
            inputs=Trend(COOPERATIVE_MONTHLY_REVENUE, buckets=12)),
    Feature("coop_members_in_arrears_rate",
            "Tỷ lệ tháng nợ quá hạn từ 30 ngày của thành viên HTX (12 tháng trọn)",
            "Share of member loan-months 30+ days past due in the cooperative (12 whole months)", +1,
            "COOPERATIVE_WEAK", subjects=(MEMBER,), **COOPERATIVE_ARREARS_RATE),
    Feature("coop_arrears_rate_among_members",
            "Tỷ lệ tháng nợ quá hạn từ 30 ngày của các thành viên (12 tháng trọn)",
            "Share of its members' loan-months 30+ days past due (12 whole months)", +1,
            "COOPERATIVE_WEAK", subjects=(COOPERATIVE,), **COOPERATIVE_ARREARS_RATE),
    # --- the application -----------------------------------------------------------------------
    # On-demand Python, not SQL (see features/on_demand.py): they need the application, so they
    # are computed per request, by one vectorised definition shared by training and serving.
    Feature("requested_amount_vnd", "Số tiền đề nghị vay",
            "Requested amount", +1, "LOAN_LARGE", unit="VND",
            on_demand=on_demand.requested_amount_vnd),
    Feature("term_months", "Thời hạn vay", "Loan term", 0, "LOAN_LARGE",
            unit="months", on_demand=on_demand.term_months),
    Feature("loan_to_revenue", "Số tiền vay so với doanh thu 12 tháng",
            "Requested amount against 12-month revenue", +1, "LOAN_LARGE",
            on_demand=on_demand.loan_to_revenue),
    Feature("instalment_to_net_inflow",
            "Tiền trả nợ hằng tháng so với dòng tiền ròng hằng tháng",
            "Monthly instalment against monthly net inflow", +1, "INSTALMENT_BURDEN",
            on_demand=on_demand.instalment_to_net_inflow),
)

FEATURES_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}

# What stage 1 returns besides the features, not model inputs: how long the record behind the
# features is (features.sufficiency: history_days, transactions_365d; the on-time rate: the
# loan-months repaid so far).
MEASURES: tuple[Measure, ...] = (
    Measure("history_days", Aggregate(TRANSACTIONS, "max", "age_days"), "COALESCE({value}, 0)"),
    Measure("transactions_365d", tx_count("", days(365))),
    Measure("repayment_months", Aggregate(REPAYMENTS, "count")),
)


def features_for(subject: str) -> list[Feature]:
    """The model inputs for one kind of subject, in a fixed order."""
    return [f for f in FEATURES if subject in f.subjects]


def feature_names(subject: str) -> list[str]:
    """The names of `features_for(subject)`, in the same order."""
    return [f.name for f in features_for(subject)]
