"""Allowed values shared by the contracts, the generator, the features and the service.

One list each, so that a value means the same thing everywhere.
"""

# The 34 provinces and centrally-run cities since 2025-07-01 (Resolution 202/2025/QH15).
PROVINCES: tuple[str, ...] = (
    "Hà Nội", "Huế", "Hải Phòng", "Đà Nẵng", "TP. Hồ Chí Minh", "Cần Thơ",
    "Cao Bằng", "Điện Biên", "Hà Tĩnh", "Lai Châu", "Lạng Sơn", "Nghệ An", "Quảng Ninh",
    "Thanh Hóa", "Sơn La", "Tuyên Quang", "Lào Cai", "Thái Nguyên", "Phú Thọ", "Bắc Ninh",
    "Hưng Yên", "Ninh Bình", "Quảng Trị", "Quảng Ngãi", "Gia Lai", "Khánh Hòa", "Lâm Đồng",
    "Đắk Lắk", "Đồng Nai", "Tây Ninh", "Đồng Tháp", "Vĩnh Long", "An Giang", "Cà Mau",
)

# Region of each province: drives harvest seasons in the generator and fairness groups later.
REGION_OF_PROVINCE: dict[str, str] = {
    **{p: "north_mountain" for p in ("Cao Bằng", "Điện Biên", "Lai Châu", "Lạng Sơn", "Sơn La",
                                     "Tuyên Quang", "Lào Cai", "Thái Nguyên", "Phú Thọ")},
    **{p: "red_river_delta" for p in ("Hà Nội", "Hải Phòng", "Quảng Ninh", "Bắc Ninh", "Hưng Yên",
                                      "Ninh Bình")},
    **{p: "central" for p in ("Thanh Hóa", "Nghệ An", "Hà Tĩnh", "Huế", "Quảng Trị", "Đà Nẵng",
                              "Quảng Ngãi", "Khánh Hòa")},
    **{p: "highlands" for p in ("Gia Lai", "Đắk Lắk", "Lâm Đồng")},
    **{p: "south_east" for p in ("TP. Hồ Chí Minh", "Đồng Nai", "Tây Ninh")},
    **{p: "mekong_delta" for p in ("Cần Thơ", "Đồng Tháp", "Vĩnh Long", "An Giang", "Cà Mau")},
}

COOPERATIVE_SECTORS: tuple[str, ...] = (
    "agriculture", "aquaculture", "forestry", "handicraft", "trade_services", "transport",
)
AGRICULTURAL_SECTORS: frozenset[str] = frozenset({"agriculture", "aquaculture", "forestry"})

MEMBER_SECTORS: tuple[str, ...] = (
    "crop_farming", "livestock", "aquaculture", "food_processing", "handicraft", "retail", "services",
)

# Legal form of a member: decides the unsecured lending limit (Decree 156/2025).
MEMBER_TYPES: tuple[str, ...] = ("household", "household_business")

ENTITY_TYPES: tuple[str, ...] = ("member", "cooperative")

DIRECTIONS: tuple[str, ...] = ("inflow", "outflow")

CHANNELS: tuple[str, ...] = ("e_invoice", "e_wallet", "vietqr", "cash_register", "cash")

TRANSACTION_CATEGORIES: tuple[str, ...] = (
    "sales", "inputs", "wages", "utilities", "transfer", "loan_disbursal", "loan_repayment", "other",
)

INVOICE_STATUSES: tuple[str, ...] = ("issued", "cancelled", "adjusted")
VAT_RATES_PERCENT: tuple[int, ...] = (0, 5, 8, 10)

# Who an application is addressed to: the lenders on the platform (bank ids of the service's
# records). A fund's console shows only the applications addressed to it. "demo-bank" is the id
# `make demo` registers and signs in to the console with.
LENDERS: dict[str, str] = {
    "demo-bank": "Ngân hàng demo / Demo bank",
    "quy-htx-trung-uong": "Quỹ hỗ trợ phát triển hợp tác xã Trung ương / Central cooperative development fund",
    "quy-htx-ha-noi": "Quỹ hỗ trợ phát triển hợp tác xã Hà Nội / Ha Noi cooperative development fund",
    "quy-htx-tp-hcm": "Quỹ hỗ trợ phát triển hợp tác xã TP. Hồ Chí Minh / Ho Chi Minh City cooperative development fund",
    "quy-htx-can-tho": "Quỹ hỗ trợ phát triển hợp tác xã Cần Thơ / Can Tho cooperative development fund",
}

# The form of an application id as the platform issues it ("HS" + 8 digits). Anything else, a
# spreadsheet formula such as =HYPERLINK(...) included, is quarantined at ingest.
APPLICATION_ID_PATTERN = r"^HS[0-9]{8}$"

LOAN_PURPOSES: tuple[str, ...] = (
    "working_capital", "inputs", "equipment", "livestock", "expansion", "other",
)

GENDERS: tuple[str, ...] = ("female", "male")

# Unsecured agricultural and rural lending limits, Decree 156/2025/ND-CP (VND).
UNSECURED_LIMIT_VND: dict[str, int] = {
    "household": 300_000_000,
    "household_business": 500_000_000,
    "cooperative": 5_000_000_000,
}

# Loan classification by days past due (Circular 11/2021/TT-NHNN, kept by Circular 31/2024/TT-NHNN):
# group 3 ("substandard") starts at 91 days past due; the label is "90+ days past due".
DEFAULT_DAYS_PAST_DUE = 91
DEFAULT_HORIZON_MONTHS = 12

# A single platform transaction above this is not a household or cooperative payment: quarantined.
ABSURD_AMOUNT_VND = 50_000_000_000

# Harvest calendar: the months (1-12) of each region's main harvests, when the sales of farming
# businesses peak (rice in the Mekong delta in Mar/Jul/Nov, the north in Jun/Oct, coffee in the
# highlands Nov-Jan). The synthetic generator's seasons follow the same calendar
# (tests/test_new_features.py checks that they agree).
HARVEST_MONTHS: dict[str, tuple[int, ...]] = {
    "north_mountain": (6, 10), "red_river_delta": (6, 10), "central": (4, 8),
    "highlands": (11, 12, 1), "south_east": (4, 12), "mekong_delta": (3, 7, 11),
}
# A month next to a harvest month is the shoulder of the season: part of the crop comes in.
HARVEST_SHOULDER_INTENSITY = 0.35
# Whose sales follow the harvest: farming members, and agricultural cooperatives.
HARVEST_MEMBER_SECTORS: frozenset[str] = frozenset({"crop_farming", "aquaculture"})
HARVEST_COOPERATIVE_SECTORS: frozenset[str] = AGRICULTURAL_SECTORS


def _harvest_intensity(months: tuple[int, ...]) -> tuple[float, ...]:
    """12 values (January first): 1 in a harvest month, the shoulder next to one, else 0."""
    out = [0.0] * 12
    for m in months:
        out[m - 1] = 1.0
        for j in ((m - 2) % 12, m % 12):
            out[j] = max(out[j], HARVEST_SHOULDER_INTENSITY)
    return tuple(out)


# Harvest intensity by region and calendar month (index 0 = January).
HARVEST_INTENSITY: dict[str, tuple[float, ...]] = {
    region: _harvest_intensity(months) for region, months in HARVEST_MONTHS.items()}
