"""The reason-code catalogue: one stable list of the reasons a score can give.

Several correlated features speak for one reason (inflows over 30, 90, 180 and 365 days all say
"revenue is low"), so a decision never lists the same reason four times. Codes are stable: banks
store them; texts may be reworded, codes never reused.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    code: str
    vi: str
    en: str


REASONS: dict[str, Reason] = {r.code: r for r in (
    Reason("REVENUE_LOW", "Doanh thu qua nền tảng còn thấp",
           "Revenue through the platform is low"),
    Reason("ACTIVITY_LOW", "Ít giao dịch hoặc lâu không giao dịch",
           "Few transactions, or none recently"),
    Reason("CASHFLOW_TIGHT", "Dòng tiền ra lớn so với tiền vào",
           "Outflows are large compared with inflows"),
    Reason("REVENUE_IRREGULAR", "Doanh thu không đều giữa các tháng",
           "Revenue is irregular from month to month"),
    Reason("REVENUE_DECLINE", "Doanh thu đang giảm so với trước hoặc cùng kỳ năm trước",
           "Revenue is falling, or below the same season last year"),
    Reason("FORMALITY_LOW", "Phần lớn doanh thu bằng tiền mặt, ít hóa đơn điện tử",
           "Most revenue is in cash, little is on e-invoices"),
    Reason("CUSTOMERS_CONCENTRATED", "Doanh thu phụ thuộc vào ít khách hàng",
           "Revenue depends on few customers"),
    Reason("INVOICES_CANCELLED", "Nhiều hóa đơn điện tử bị hủy",
           "Many e-invoices were cancelled"),
    Reason("REPAYMENT_HISTORY", "Lịch sử trả nợ có chậm trễ",
           "Past repayments were late"),
    Reason("TENURE_SHORT", "Thời gian hoạt động hoặc gắn bó với hợp tác xã còn ngắn",
           "Short time in business or in the cooperative"),
    Reason("CAPITAL_LOW", "Vốn góp hoặc vốn điều lệ thấp", "Low capital contribution or charter capital"),
    Reason("COOPERATIVE_WEAK", "Tình hình hoạt động của hợp tác xã chưa tốt",
           "The cooperative itself is not doing well"),
    Reason("BUSINESS_PROFILE", "Loại hình và ngành kinh doanh",
           "The kind of business and its sector"),
    Reason("SEASON", "Thời điểm vay so với mùa thu hoạch",
           "When the loan falls in the harvest season"),
    Reason("REVENUE_SHOCK", "Doanh thu mấy tuần gần đây giảm so với thường lệ",
           "Revenue in recent weeks is below the usual level"),
    Reason("LOAN_LARGE", "Số tiền vay lớn so với quy mô kinh doanh",
           "The loan is large for the size of the business"),
    Reason("INSTALMENT_BURDEN", "Tiền trả nợ hằng tháng cao so với dòng tiền",
           "The monthly instalment is high for the cash flow"),
)}
