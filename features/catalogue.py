"""The feature catalogue: every feature coopscore computes, declared once.

Each feature has a name, its meaning in Vietnamese and English, its direction of risk and the SQL
that computes it from the point-in-time aggregates built by `features.engine` (all of them from
data strictly before the as-of date); the few features of the loan application are on-demand
numpy functions instead (features/on_demand.py, `Feature.on_demand`). The SQL is plain ANSI (CASE, NULLIF, LN, arithmetic): the
same declarations run on DuckDB today and on Spark SQL when the pipeline outgrows one machine.

Direction of risk: +1 when a higher value means a higher risk, -1 when a higher value means a lower
risk, 0 when it is not one-sided. Training turns +1/-1 into LightGBM monotone constraints, so the
model can never say "more on-time repayments, more risk".
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from data_contracts.vocabulary import COOPERATIVE_SECTORS, MEMBER_SECTORS
from features import on_demand

MEMBER = "member"
COOPERATIVE = "cooperative"
BOTH = (MEMBER, COOPERATIVE)


@dataclass(frozen=True)
class Feature:
    name: str
    sql: str
    vi: str
    en: str
    risk: int  # +1, -1 or 0: see module docstring
    reason: str  # the reason code (features.reasons) this feature speaks for
    subjects: tuple[str, ...] = BOTH
    unit: str = ""
    # Application features are not SQL: they are on-demand numpy functions (features.on_demand),
    # computed per request by the service and by features.engine for training; `sql` is "" then.
    on_demand: Callable | None = None


def _window_features() -> list[Feature]:
    """Inflow and outflow sums and counts over 30/90/180/365 days."""
    out = []
    for days in (30, 90, 180, 365):
        out += [
            Feature(f"inflow_sum_{days}d", f"inflow_sum_{days}d",
                    f"Tổng tiền vào {days} ngày qua", f"Total inflows, last {days} days", -1,
                    "REVENUE_LOW", unit="VND"),
            Feature(f"inflow_count_{days}d", f"inflow_count_{days}d",
                    f"Số giao dịch tiền vào {days} ngày qua", f"Number of inflows, last {days} days",
                    -1, "ACTIVITY_LOW"),
            Feature(f"outflow_sum_{days}d", f"outflow_sum_{days}d",
                    f"Tổng tiền ra {days} ngày qua", f"Total outflows, last {days} days", 0,
                    "CASHFLOW_TIGHT", unit="VND"),
            Feature(f"outflow_count_{days}d", f"outflow_count_{days}d",
                    f"Số giao dịch tiền ra {days} ngày qua", f"Number of outflows, last {days} days",
                    0, "ACTIVITY_LOW"),
        ]
    return out


def _sector_features() -> list[Feature]:
    """One 0/1 indicator per sector of the vocabulary: a member's business sector, a cooperative's
    sector. Indicators rather than one code: a tree splits them, a WoE scorecard bins them, and
    neither reads an order into sector codes that has no meaning."""
    out = [Feature(f"sector_{s}", f"CAST(business_sector = '{s}' AS INTEGER)",
                   f"Ngành kinh doanh: {vi}", f"Business sector: {s.replace('_', ' ')}", 0,
                   "BUSINESS_PROFILE", subjects=(MEMBER,))
           for s, vi in MEMBER_SECTOR_VI.items()]
    out += [Feature(f"coop_sector_{s}", f"CAST(coop_sector = '{s}' AS INTEGER)",
                    f"Lĩnh vực của hợp tác xã: {vi}", f"Cooperative's sector: {s.replace('_', ' ')}",
                    0, "BUSINESS_PROFILE", subjects=(COOPERATIVE,))
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
            "(inflow_sum_365d - outflow_sum_365d) / NULLIF(inflow_sum_365d, 0)",
            "Tỷ lệ dòng tiền ròng trên doanh thu 12 tháng", "Net cash flow over revenue, 12 months",
            -1, "CASHFLOW_TIGHT"),
    Feature("active_months_12m", "active_months_12m",
            "Số tháng có doanh thu trong 12 tháng qua", "Months with revenue in the last 12", -1,
            "REVENUE_IRREGULAR", unit="months"),
    Feature("revenue_volatility_12m",
            "CASE WHEN monthly_sum > 0 THEN SQRT(GREATEST(monthly_sumsq / 12.0 - "
            "(monthly_sum / 12.0) * (monthly_sum / 12.0), 0)) / (monthly_sum / 12.0) END",
            "Độ biến động doanh thu tháng (hệ số biến thiên)",
            "Volatility of monthly revenue (coefficient of variation)", +1, "REVENUE_IRREGULAR"),
    Feature("revenue_trend_12m",
            # least-squares slope of monthly revenue on month number, relative to the mean month
            "CASE WHEN monthly_sum > 0 THEN ((monthly_xy - 5.5 * monthly_sum) / 143.0) "
            "/ (monthly_sum / 12.0) END",
            "Xu hướng doanh thu 12 tháng (độ dốc so với trung bình tháng)",
            "Revenue trend over 12 months (slope relative to the mean month)", -1, "REVENUE_DECLINE"),
    Feature("revenue_change_vs_last_year_90d",
            "CASE WHEN inflow_sum_prev_year_90d > 0 THEN "
            "inflow_sum_90d / inflow_sum_prev_year_90d - 1 END",
            "Doanh thu 90 ngày qua so với cùng kỳ năm trước",
            "Revenue of the last 90 days against the same season last year", -1, "REVENUE_DECLINE"),
    Feature("days_since_last_activity", "days_since_last_activity",
            "Số ngày từ giao dịch gần nhất", "Days since the last transaction", +1, "ACTIVITY_LOW",
            unit="days"),
    # --- formality and customers ---------------------------------------------------------------
    Feature("einvoice_share_365d", "einvoice_inflow_365d / NULLIF(inflow_sum_365d, 0)",
            "Tỷ trọng doanh thu có hóa đơn điện tử (kể cả máy tính tiền)",
            "Share of revenue on e-invoices (cash registers included)", -1,
            "FORMALITY_LOW"),
    Feature("cash_share_365d", "cash_inflow_365d / NULLIF(inflow_sum_365d, 0)",
            "Tỷ trọng doanh thu bằng tiền mặt", "Share of revenue in cash", +1, "FORMALITY_LOW"),
    Feature("customer_concentration_365d", "customer_hhi_365d",
            "Mức tập trung khách hàng (chỉ số HHI)", "Customer concentration (HHI)", +1,
            "CUSTOMERS_CONCENTRATED"),
    Feature("distinct_customers_365d", "distinct_customers_365d",
            "Số khách hàng khác nhau trong 12 tháng", "Distinct customers in 12 months", -1,
            "CUSTOMERS_CONCENTRATED"),
    Feature("cancelled_invoice_rate_365d",
            "invoices_cancelled_365d * 1.0 / NULLIF(invoices_total_365d, 0)",
            "Tỷ lệ hóa đơn bị hủy", "Share of e-invoices cancelled", +1, "INVOICES_CANCELLED"),
    # --- repayment history ---------------------------------------------------------------------
    Feature("prior_loans", "prior_loans", "Số khoản vay trước đây trên nền tảng",
            "Earlier loans on the platform", 0, "REPAYMENT_HISTORY"),
    Feature("repayment_on_time_rate",
            "CASE WHEN repayment_months > 0 THEN on_time_months * 1.0 / repayment_months END",
            "Tỷ lệ tháng trả nợ đúng hạn", "Share of months repaid on time", -1,
            "REPAYMENT_HISTORY"),
    Feature("worst_days_past_due", "worst_days_past_due", "Số ngày quá hạn cao nhất",
            "Worst days past due", +1, "REPAYMENT_HISTORY", unit="days"),
    # --- the subject itself --------------------------------------------------------------------
    Feature("tenure_years", "tenure_days / 365.25",
            "Thời gian gắn bó (năm, từ ngày vào HTX hoặc thành lập)",
            "Tenure in years (since joining, or since founding)", -1, "TENURE_SHORT", unit="years"),
    Feature("capital_contribution_vnd", "capital_contribution_vnd", "Vốn góp vào hợp tác xã",
            "Capital contributed to the cooperative", -1, "CAPITAL_LOW", subjects=(MEMBER,),
            unit="VND"),
    Feature("legal_capital_vnd", "legal_capital_vnd", "Vốn điều lệ của hợp tác xã",
            "Cooperative's charter capital", -1, "CAPITAL_LOW", subjects=(COOPERATIVE,), unit="VND"),
    Feature("member_count", "member_count", "Số thành viên của hợp tác xã",
            "Cooperative's member count", -1, "COOPERATIVE_WEAK", subjects=(COOPERATIVE,)),
    # --- what kind of business, and its season ---------------------------------------------------
    Feature("household_business", "CAST(member_type = 'household_business' AS INTEGER)",
            "Là hộ kinh doanh (1) hay hộ gia đình (0)",
            "A household business (1) rather than a household (0)", 0, "BUSINESS_PROFILE",
            subjects=(MEMBER,)),
    *_sector_features(),
    Feature("harvest_season", "harvest_intensity",
            "Mùa thu hoạch của tháng xét theo ngành và vùng (1 chính vụ, 0,35 giáp vụ, 0 ngoài vụ)",
            "Harvest season of the as-of month by sector and region (1 harvest, 0.35 next to one, "
            "0 none)", -1, "SEASON"),
    # --- recent shocks: the last weeks against the subject's own usual month -----------------------
    # Not one-sided (risk 0): a month far above the usual one is as much a sign of irregular revenue
    # as one far below it is of a shock; on the synthetic data the default rate is U-shaped in both
    # ratios and in the change of customers, and a monotone constraint would flatten one arm.
    Feature("inflow_30d_vs_usual_month", "inflow_sum_30d / NULLIF(inflow_median_month, 0)",
            "Tiền vào 30 ngày qua so với tháng thường lệ (trung vị tháng, ngày 61-360 trước)",
            "Inflows of the last 30 days against the usual month (median month, days 61-360 before)",
            0, "REVENUE_SHOCK"),
    Feature("inflow_60d_vs_usual_month", "inflow_sum_60d / NULLIF(2 * inflow_median_month, 0)",
            "Tiền vào 60 ngày qua so với hai tháng thường lệ",
            "Inflows of the last 60 days against two usual months", 0, "REVENUE_SHOCK"),
    Feature("weeks_without_inflow_13w", "13 - weeks_with_inflow_13w",
            "Số tuần không có tiền vào trong 13 tuần qua", "Weeks without inflows in the last 13",
            +1, "REVENUE_SHOCK", unit="weeks"),
    Feature("customers_change_90d",
            "(customers_90d - customers_prev_90d) * 1.0 / NULLIF(customers_prev_90d, 0)",
            "Thay đổi số khách hàng: 90 ngày qua so với 90 ngày trước đó",
            "Change in distinct customers: the last 90 days against the 90 before", 0,
            "REVENUE_SHOCK"),
    # --- the cooperative's own health (for members) --------------------------------------------
    Feature("coop_revenue_12m", "coop_revenue_12m", "Doanh thu của hợp tác xã, 12 tháng trọn trước tháng xét",
            "Cooperative's revenue, the 12 whole months before the as-of month", -1, "COOPERATIVE_WEAK", subjects=(MEMBER,),
            unit="VND"),
    Feature("coop_revenue_trend_12m", "coop_revenue_trend_12m",
            "Xu hướng doanh thu của hợp tác xã (12 tháng trọn)",
            "Cooperative's revenue trend (12 whole months)", -1,
            "COOPERATIVE_WEAK", subjects=(MEMBER,)),
    Feature("coop_members_in_arrears_rate", "coop_members_in_arrears_rate",
            "Tỷ lệ tháng nợ quá hạn từ 30 ngày của thành viên HTX (12 tháng trọn)",
            "Share of member loan-months 30+ days past due in the cooperative (12 whole months)", +1,
            "COOPERATIVE_WEAK", subjects=(MEMBER,)),
    Feature("coop_arrears_rate_among_members", "coop_members_in_arrears_rate",
            "Tỷ lệ tháng nợ quá hạn từ 30 ngày của các thành viên (12 tháng trọn)",
            "Share of its members' loan-months 30+ days past due (12 whole months)", +1,
            "COOPERATIVE_WEAK", subjects=(COOPERATIVE,)),
    # --- the application -----------------------------------------------------------------------
    # On-demand Python, not SQL (see features/on_demand.py): they need the application, so they
    # are computed per request, by one vectorised definition shared by training and serving.
    Feature("requested_amount_vnd", "", "Số tiền đề nghị vay",
            "Requested amount", +1, "LOAN_LARGE", unit="VND",
            on_demand=on_demand.requested_amount_vnd),
    Feature("term_months", "", "Thời hạn vay", "Loan term", 0, "LOAN_LARGE",
            unit="months", on_demand=on_demand.term_months),
    Feature("loan_to_revenue", "", "Số tiền vay so với doanh thu 12 tháng",
            "Requested amount against 12-month revenue", +1, "LOAN_LARGE",
            on_demand=on_demand.loan_to_revenue),
    Feature("instalment_to_net_inflow", "",
            "Tiền trả nợ hằng tháng so với dòng tiền ròng hằng tháng",
            "Monthly instalment against monthly net inflow", +1, "INSTALMENT_BURDEN",
            on_demand=on_demand.instalment_to_net_inflow),
)

FEATURES_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}


def features_for(subject: str) -> list[Feature]:
    """The model inputs for one kind of subject, in a fixed order."""
    return [f for f in FEATURES if subject in f.subjects]


def feature_names(subject: str) -> list[str]:
    """The names of `features_for(subject)`, in the same order."""
    return [f.name for f in features_for(subject)]
