"""The data contracts: for every table the platform sends us, each column's type, unit, allowed
values and meaning. Validation (pandera) and the docs are both built from these declarations.

Rules that need other tables or the clock (unknown ids, duplicates, future dates, lending limits)
live in `data_contracts.rules`, next to the ingest that applies them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandera.pandas as pa

from data_contracts import vocabulary as v


@dataclass(frozen=True)
class Field:
    name: str
    dtype: str  # one of: str, int64, float64, bool, date, timestamp
    meaning_vi: str
    meaning_en: str
    unit: str = ""
    allowed: tuple | None = None
    min: float | None = None
    max: float | None = None
    nullable: bool = False
    pattern: str | None = None
    protected: bool = False  # kept only for fairness evaluation; never a model input
    # A feed may leave the column out altogether (it is then empty): columns added after feeds
    # existed, which only some sources record (a lender's decisions, the generator's truth).
    optional: bool = False

    def checks(self) -> list[pa.Check]:
        checks: list[pa.Check] = []
        if self.allowed is not None:
            checks.append(pa.Check.isin(list(self.allowed)))
        if self.min is not None:
            checks.append(pa.Check.ge(self.min))
        if self.max is not None:
            checks.append(pa.Check.le(self.max))
        if self.pattern is not None:
            checks.append(pa.Check.str_matches(self.pattern))
        return checks

    def pandera_dtype(self) -> str:
        return {"str": "str", "int64": "int64", "float64": "float64", "bool": "bool",
                "date": "datetime64[ns]", "timestamp": "datetime64[ns]"}[self.dtype]


@dataclass(frozen=True)
class Contract:
    table: str
    key: tuple[str, ...]  # columns that identify a row: a second row with the same key is a duplicate
    meaning_vi: str
    meaning_en: str
    fields: tuple[Field, ...] = field(default_factory=tuple)

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def schema(self) -> pa.DataFrameSchema:
        return pa.DataFrameSchema(
            {f.name: pa.Column(f.pandera_dtype(), f.checks(), nullable=f.nullable, coerce=True,
                               description=f.meaning_en)
             for f in self.fields},
            strict="filter",  # extra columns are ignored, never stored
            name=self.table,
        )


VND = "VND (integer dong)"
# A lender's decision on an application (loan_applications.decision).
DECISIONS = ("funded", "declined", "random_accept")

COOPERATIVES = Contract(
    "cooperatives", ("cooperative_id",), "Hợp tác xã trên nền tảng", "Cooperatives on the platform",
    (
        Field("cooperative_id", "str", "Mã hợp tác xã", "Cooperative id", pattern=r"^HTX\d{6}$"),
        Field("province", "str", "Tỉnh/thành phố (34 đơn vị từ 2025)", "Province (34 since 2025)",
              allowed=v.PROVINCES),
        Field("sector", "str", "Lĩnh vực hoạt động", "Sector", allowed=v.COOPERATIVE_SECTORS),
        Field("founding_date", "date", "Ngày thành lập", "Founding date", unit="ISO date"),
        Field("member_count", "int64", "Số thành viên chính thức", "Official members", unit="people",
              min=5),  # Law on Cooperatives 2023: at least 5 official members
        Field("legal_capital_vnd", "int64", "Vốn điều lệ", "Charter capital", unit=VND, min=0),
    ),
)

MEMBERS = Contract(
    "members", ("member_id",), "Thành viên (hộ gia đình, hộ kinh doanh)",
    "Members (households and household businesses)",
    (
        Field("member_id", "str", "Mã thành viên", "Member id", pattern=r"^TV\d{7}$"),
        Field("cooperative_id", "str", "Hợp tác xã của thành viên", "Member's cooperative",
              pattern=r"^HTX\d{6}$"),
        Field("province", "str", "Tỉnh/thành phố", "Province", allowed=v.PROVINCES),
        Field("member_type", "str", "Loại hình: hộ gia đình hoặc hộ kinh doanh",
              "Legal form: household or household business", allowed=v.MEMBER_TYPES),
        Field("business_sector", "str", "Ngành nghề kinh doanh", "Business sector",
              allowed=v.MEMBER_SECTORS),
        Field("join_date", "date", "Ngày gia nhập hợp tác xã", "Date joined the cooperative",
              unit="ISO date"),
        Field("capital_contribution_vnd", "int64", "Vốn góp vào hợp tác xã",
              "Capital contributed to the cooperative", unit=VND, min=0),
        Field("household_head_gender", "str", "Giới tính chủ hộ", "Gender of the household head",
              allowed=v.GENDERS, protected=True),
        Field("ethnic_minority", "bool", "Hộ dân tộc thiểu số", "Ethnic-minority household",
              protected=True),
        Field("mountainous_commune", "bool", "Xã miền núi", "Lives in a mountainous commune",
              protected=True),
    ),
)

TRANSACTIONS = Contract(
    "transactions", ("transaction_id",), "Giao dịch thanh toán", "Payment transactions",
    (
        Field("transaction_id", "str", "Mã giao dịch", "Transaction id"),
        Field("entity_type", "str", "Chủ thể: thành viên hay hợp tác xã", "Member or cooperative",
              allowed=v.ENTITY_TYPES),
        Field("entity_id", "str", "Mã chủ thể", "Id of the member or cooperative"),
        Field("ts", "timestamp", "Thời điểm giao dịch", "Time of the transaction",
              unit="ISO timestamp, Asia/Ho_Chi_Minh"),
        Field("amount_vnd", "int64", "Số tiền", "Amount", unit=VND, min=1, max=v.ABSURD_AMOUNT_VND),
        Field("direction", "str", "Chiều: tiền vào hay tiền ra", "Money in or out",
              allowed=v.DIRECTIONS),
        Field("channel", "str", "Kênh thanh toán", "Payment channel", allowed=v.CHANNELS),
        Field("counterparty_hash", "str", "Mã băm đối tác (trống với tiền mặt)",
              "Hashed counterparty (empty for cash)", nullable=True),
        Field("category", "str", "Loại giao dịch", "Category", allowed=v.TRANSACTION_CATEGORIES),
    ),
)

E_INVOICES = Contract(
    "e_invoices", ("invoice_id",), "Hóa đơn điện tử đã lập", "E-invoices issued",
    (
        Field("invoice_id", "str", "Mã hóa đơn (ký hiệu + số)", "Invoice id (series + number)"),
        Field("entity_type", "str", "Người bán: thành viên hay hợp tác xã", "Seller type",
              allowed=v.ENTITY_TYPES),
        Field("entity_id", "str", "Mã người bán", "Seller id"),
        Field("issued_at", "timestamp", "Thời điểm lập", "Issue time", unit="ISO timestamp"),
        Field("status", "str", "Trạng thái: đã lập, đã hủy, điều chỉnh",
              "Status: issued, cancelled, adjusted", allowed=v.INVOICE_STATUSES),
        Field("total_vnd", "int64", "Tổng tiền thanh toán", "Invoice total", unit=VND, min=1,
              max=v.ABSURD_AMOUNT_VND),
        Field("vat_rate_percent", "int64", "Thuế suất GTGT", "VAT rate", unit="%",
              allowed=v.VAT_RATES_PERCENT),
        Field("buyer_tax_code_present", "bool", "Có mã số thuế người mua",
              "Buyer's tax code present"),
    ),
)

LOAN_APPLICATIONS = Contract(
    "loan_applications", ("application_id",), "Hồ sơ vay vốn", "Loan applications",
    (
        Field("application_id", "str", "Mã hồ sơ (HS + 8 chữ số)", "Application id (HS + 8 digits)",
              pattern=v.APPLICATION_ID_PATTERN),
        Field("entity_type", "str", "Người vay: thành viên hay hợp tác xã", "Borrower type",
              allowed=v.ENTITY_TYPES),
        Field("entity_id", "str", "Mã người vay", "Borrower id"),
        Field("lender_id", "str", "Tổ chức cho vay nhận hồ sơ (ngân hàng hoặc quỹ)",
              "Lender the application is addressed to (bank or fund)", allowed=tuple(v.LENDERS)),
        Field("application_date", "date", "Ngày nộp hồ sơ", "Application date", unit="ISO date"),
        Field("requested_amount_vnd", "int64", "Số tiền đề nghị vay", "Requested amount", unit=VND,
              min=1_000_000),
        Field("term_months", "int64", "Thời hạn vay", "Term", unit="months", min=1, max=120),
        Field("purpose", "str", "Mục đích vay", "Purpose", allowed=v.LOAN_PURPOSES),
        Field("default_12m", "float64",
              "Nợ quá hạn từ 91 ngày (nhóm 3 trở lên) trong 12 tháng; trống nếu chưa biết",
              "90+ days past due (group 3 or worse) within 12 months; empty while unknown",
              allowed=(0.0, 1.0), nullable=True),
        # A lender's decision and the score it decided on, when the feed records them (a declined
        # application has no loan, no repayments and no label); empty when the feed does not say.
        Field("decision", "str", "Quyết định của tổ chức cho vay: giải ngân, từ chối, "
              "giải ngân ngẫu nhiên (mẫu chấp nhận ngẫu nhiên); trống nếu không ghi nhận",
              "The lender's decision: funded, declined, random_accept (funded at random although "
              "the policy declined it); empty when not recorded", allowed=DECISIONS, nullable=True,
              optional=True),
        Field("policy_score", "float64", "Điểm của mô hình cũ mà tổ chức cho vay dùng để quyết định",
              "The lender's older score the decision was made on (higher is safer); empty when "
              "not recorded", unit="points", nullable=True, optional=True),
    ),
)

LOANS = Contract(
    "loans", ("loan_id",), "Khoản vay đã giải ngân", "Disbursed loans",
    (
        Field("loan_id", "str", "Mã khoản vay", "Loan id"),
        Field("application_id", "str", "Hồ sơ vay tương ứng", "Application it came from"),
        Field("entity_type", "str", "Người vay: thành viên hay hợp tác xã", "Borrower type",
              allowed=v.ENTITY_TYPES),
        Field("entity_id", "str", "Mã người vay", "Borrower id"),
        Field("disbursal_date", "date", "Ngày giải ngân", "Disbursal date", unit="ISO date"),
        Field("principal_vnd", "int64", "Số tiền gốc", "Principal", unit=VND, min=1),
        Field("term_months", "int64", "Thời hạn", "Term", unit="months", min=1, max=120),
    ),
)

REPAYMENTS = Contract(
    "repayments", ("loan_id", "month"), "Tình trạng trả nợ theo tháng", "Monthly repayment status",
    (
        Field("loan_id", "str", "Mã khoản vay", "Loan id"),
        Field("month", "date", "Tháng (ngày cuối tháng)", "Month (its last day)", unit="ISO date"),
        Field("days_past_due", "int64", "Số ngày quá hạn cuối tháng", "Days past due at month end",
              unit="days", min=0, max=3650),
        Field("amount_due_vnd", "int64", "Số tiền phải trả trong tháng", "Amount due", unit=VND,
              min=0),
        Field("amount_paid_vnd", "int64", "Số tiền đã trả trong tháng", "Amount paid", unit=VND,
              min=0),
    ),
)

# The true probability of default of every synthetic application. Evaluation only: never a feature.
TRUE_PD = Contract(
    "true_pd", ("application_id",), "Xác suất vỡ nợ thật (chỉ dữ liệu tổng hợp)",
    "True PD of synthetic applications (evaluation only)",
    (
        Field("application_id", "str", "Mã hồ sơ", "Application id"),
        Field("true_pd", "float64", "Xác suất vỡ nợ thật", "True probability of default",
              min=0.0, max=1.0),
        *(Field(f"driver_{name}", "float64", f"Phần log-odds thật do {vi}",
                f"Term of the true log-odds from {en}")
          for name, vi, en in (
              ("creditworthiness", "năng lực tín dụng ẩn", "latent creditworthiness"),
              ("cooperative_health", "sức khỏe hợp tác xã", "the cooperative's health"),
              ("revenue_shock", "cú sốc doanh thu tháng nộp hồ sơ", "a revenue shock in the application month"),
              ("leverage", "khoản vay so với doanh thu", "the loan against revenue"),
              ("burden", "gánh nặng trả nợ", "the repayment burden"),
              ("sector", "ngành kinh doanh", "the business sector"),
              ("existing_loan", "khoản vay đang có", "a loan already carried"),
              ("harvest", "mùa thu hoạch", "the harvest season"))),
        Field("outcome_if_funded", "float64",
              "Kết cục nếu được giải ngân (1 = vỡ nợ), cả với hồ sơ bị từ chối",
              "The outcome had the application been funded (1 = default), declined ones included",
              allowed=(0.0, 1.0), nullable=True, optional=True),
    ),
)

CONTRACTS: dict[str, Contract] = {c.table: c for c in (
    COOPERATIVES, MEMBERS, TRANSACTIONS, E_INVOICES, LOAN_APPLICATIONS, LOANS, REPAYMENTS, TRUE_PD)}

PROTECTED_ATTRIBUTES: frozenset[str] = frozenset(
    f.name for c in CONTRACTS.values() for f in c.fields if f.protected)
