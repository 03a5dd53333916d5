"""The recommended limit on the pages: the member's own page and the console's applicant page.

The numbers and the reason come from `scoring.limit` (the same function the API answer uses); this
module only finds the scorer and puts them into words, Vietnamese first. Templates:
`_limit.html` (the member page's block) and the facts list of `applicant.html`.
"""
from __future__ import annotations

import logging

from scoring import limit as limits

log = logging.getLogger("coopscore.web")

TEXTS: dict[str, tuple[str, str]] = {
    "limit_title": ("Số tiền bạn có thể vay", "How much you could borrow"),
    "limit_headline": ("Bạn có thể vay tới {amount} đồng", "You could borrow up to {amount} VND"),
    "limit_term": ("trả góp trong {term} tháng, khoảng {instalment} đồng mỗi tháng",
                   "repaid over {term} months, about {instalment} VND a month"),
    "limit_none": ("Hiện chưa thể đề xuất số tiền vay", "No loan amount can be suggested yet"),
    "limit_why": ("Vì sao là số này", "Why this amount"),
    "limit_note": ("Đây là gợi ý từ dữ liệu giao dịch của bạn, không phải quyết định cho vay.",
                   "This is a suggestion from your transaction data, not a lending decision."),
    "recommended_limit": ("Hạn mức đề xuất (VND)", "Recommended limit (VND)"),
    "limit_at_term": ("{amount} · {term} tháng", "{amount} · {term} months"),
    "limit_binding_pd_target": ("giới hạn bởi mục tiêu PD", "bound by the PD target"),
    "limit_binding_affordability": ("giới hạn bởi khả năng trả nợ", "bound by affordability"),
    "limit_binding_legal_cap": ("giới hạn bởi Nghị định 156/2025", "bound by Decree 156/2025"),
    "limit_binding_none_affordable": ("không có số tiền nào đạt", "no amount passes"),
}


def words(key: str, lang: str, **values) -> str:
    vi, en = TEXTS[key]
    chosen = en if lang == "en" else vi
    return chosen.format(**values) if values else chosen


def _scorer(state, paths):
    """The service's scorer; without one (the web app served alone), the ranking's cached one."""
    scorer = getattr(state, "scorer", None)
    if scorer is not None:
        return scorer
    try:
        from ranking.rank import get_scorer  # noqa: PLC0415 (only when the app runs without the service)
    except ImportError:
        return None
    return get_scorer(paths)


def view(state, paths, subject_id: str, lang: str, requested_term: int | None = None) -> dict | None:
    """What the pages show of a member's recommended limit, in `lang`; None when there is none to
    show (not enough history, no model, no data): the page then shows nothing rather than a guess."""
    try:
        scorer = _scorer(state, paths)
        if scorer is None:
            return None
        found = limits.recommend_limit(scorer, "member", subject_id, requested_term=requested_term)
    except (FileNotFoundError, LookupError, RuntimeError, ValueError) as exc:
        log.info("no recommended limit for this member: %s", type(exc).__name__)  # no id in the logs
        return None
    if found is None:
        return None
    amount = limits.vnd(found.amount_vnd, lang)
    none = found.binding == "none_affordable"
    return {
        "amount_vnd": found.amount_vnd,
        "term_months": found.term_months,
        "binding": found.binding,
        "headline": words("limit_none" if none else "limit_headline", lang, amount=amount),
        "term_line": None if none else words("limit_term", lang, term=found.term_months,
                                              instalment=limits.vnd(found.instalment_vnd, lang)),
        "short": ("0" if none else
                  words("limit_at_term", lang, amount=amount, term=found.term_months)),
        "binding_words": words(f"limit_binding_{found.binding}", lang),
        "reason": found.reason_en if lang == "en" else found.reason_vi,
        "title": words("limit_title", lang),
        "why": words("limit_why", lang),
        "note": words("limit_note", lang),
        "label": words("recommended_limit", lang),
    }
