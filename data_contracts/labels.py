"""Words for the vocabulary's codes, Vietnamese first, English second: what a page shows for a code.

A code (`crop_farming`, `e_invoice`, `quy-htx-ha-noi`) is for machines: the data, the API, the CSV
export. A person reads its label in the page's language, `label("member_sector", "crop_farming",
"vi")` -> "Trồng trọt". Labels are kept per vocabulary, because one code can mean two things: a
member's `handicraft` is *thủ công mỹ nghệ*, a cooperative's is *tiểu thủ công nghiệp*.

Every code of every vocabulary below has both labels; importing this module checks it, so a code
added to `data_contracts.vocabulary` without its words fails at once (tests/test_page_language.py
names the missing ones).
"""
from __future__ import annotations

from data_contracts import vocabulary as v

# vocabulary name -> the codes it allows (data_contracts.vocabulary)
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "member_sector": v.MEMBER_SECTORS,
    "cooperative_sector": v.COOPERATIVE_SECTORS,
    "member_type": v.MEMBER_TYPES,
    "entity_type": v.ENTITY_TYPES,
    "direction": v.DIRECTIONS,
    "channel": v.CHANNELS,
    "transaction_category": v.TRANSACTION_CATEGORIES,
    "invoice_status": v.INVOICE_STATUSES,
    "loan_purpose": v.LOAN_PURPOSES,
    "gender": v.GENDERS,
    "region": tuple(dict.fromkeys(v.REGION_OF_PROVINCE.values())),
    "lender": tuple(v.LENDERS),
}

# vocabulary name -> code -> (Vietnamese, English)
LABELS: dict[str, dict[str, tuple[str, str]]] = {
    "member_sector": {
        "crop_farming": ("Trồng trọt", "Crop farming"),
        "livestock": ("Chăn nuôi", "Livestock"),
        "aquaculture": ("Nuôi trồng thủy sản", "Aquaculture"),
        "food_processing": ("Chế biến thực phẩm", "Food processing"),
        "handicraft": ("Thủ công mỹ nghệ", "Handicrafts"),
        "retail": ("Bán lẻ", "Retail"),
        "services": ("Dịch vụ", "Services"),
    },
    "cooperative_sector": {
        "agriculture": ("Nông nghiệp", "Agriculture"),
        "aquaculture": ("Thủy sản", "Aquaculture"),
        "forestry": ("Lâm nghiệp", "Forestry"),
        "handicraft": ("Tiểu thủ công nghiệp", "Small industry and handicrafts"),
        "trade_services": ("Thương mại, dịch vụ", "Trade and services"),
        "transport": ("Vận tải", "Transport"),
    },
    # the legal form decides the unsecured lending limit (Decree 156/2025)
    "member_type": {
        "household": ("Hộ gia đình", "Household"),
        "household_business": ("Hộ kinh doanh", "Household business"),
    },
    "entity_type": {
        "member": ("Thành viên", "Member"),
        "cooperative": ("Hợp tác xã", "Cooperative"),
    },
    "direction": {
        "inflow": ("Tiền vào", "Money in"),
        "outflow": ("Tiền ra", "Money out"),
    },
    "channel": {
        "e_invoice": ("Hóa đơn điện tử", "E-invoice"),
        "e_wallet": ("Ví điện tử", "E-wallet"),
        "vietqr": ("VietQR, chuyển khoản ngân hàng", "VietQR, bank transfer"),
        "cash_register": ("Máy tính tiền", "Cash register"),
        "cash": ("Tiền mặt", "Cash"),
    },
    "transaction_category": {
        "sales": ("Bán hàng", "Sales"),
        "inputs": ("Vật tư đầu vào", "Inputs"),
        "wages": ("Tiền công", "Wages"),
        "utilities": ("Điện, nước, viễn thông", "Utilities"),
        "transfer": ("Chuyển tiền", "Transfer"),
        "loan_disbursal": ("Giải ngân khoản vay", "Loan disbursal"),
        "loan_repayment": ("Trả nợ vay", "Loan repayment"),
        "other": ("Khác", "Other"),
    },
    "invoice_status": {
        "issued": ("Đã xuất", "Issued"),
        "cancelled": ("Đã hủy", "Cancelled"),
        "adjusted": ("Đã điều chỉnh", "Adjusted"),
    },
    "loan_purpose": {
        "working_capital": ("Vốn lưu động", "Working capital"),
        "inputs": ("Mua vật tư đầu vào", "Buying inputs"),
        "equipment": ("Mua máy móc, thiết bị", "Equipment"),
        "livestock": ("Mua con giống", "Buying livestock"),
        "expansion": ("Mở rộng sản xuất, kinh doanh", "Expanding the business"),
        "other": ("Mục đích khác", "Other purpose"),
    },
    "gender": {
        "female": ("Nữ", "Female"),
        "male": ("Nam", "Male"),
    },
    "region": {
        "north_mountain": ("Trung du và miền núi phía Bắc", "Northern midlands and mountains"),
        "red_river_delta": ("Đồng bằng sông Hồng", "Red River Delta"),
        "central": ("Bắc Trung Bộ và duyên hải miền Trung", "North Central and Central Coast"),
        "highlands": ("Tây Nguyên", "Central Highlands"),
        "south_east": ("Đông Nam Bộ", "South East"),
        "mekong_delta": ("Đồng bằng sông Cửu Long", "Mekong Delta"),
    },
    # a lender's name is written once, "Vietnamese / English", in vocabulary.LENDERS
    "lender": {code: tuple(name.split(" / ", 1)) for code, name in v.LENDERS.items()},
}


def missing_labels() -> list[str]:
    """'vocabulary: code' for every code without both a Vietnamese and an English label."""
    out = []
    for name, codes in VOCABULARIES.items():
        words = LABELS.get(name, {})
        for code in codes:
            pair = words.get(code)
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(w, str) and w.strip()
                                                                     for w in pair)):
                out.append(f"{name}: {code}")
    return out


_missing = missing_labels()
if _missing:
    raise ImportError(f"codes without a Vietnamese and an English label in data_contracts/labels.py: "
                      f"{', '.join(_missing)}")


def label(vocabulary: str, code, lang: str) -> str:
    """The words for `code` of `vocabulary` in `lang` ("vi", else English). An empty value (None,
    NaN, "") reads as ""; a code the vocabulary does not know (it cannot pass ingest) is shown as
    it is rather than hidden behind a guess. An unknown vocabulary name is a KeyError."""
    if code is None or code != code or code == "":  # None, NaN
        return ""
    pair = LABELS[vocabulary].get(str(code))
    if pair is None:
        return str(code)
    return pair[1] if lang == "en" else pair[0]
