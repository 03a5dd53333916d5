"""What a bank sends and what it gets back: the request and response bodies of the scoring API."""
from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictInt

from data_contracts import vocabulary as v
from scoring.policy import EARLIEST_AS_OF, SUBJECT_ID_PATTERN, TERM_MONTHS  # noqa: F401 (re-exported)

SubjectType = Literal["member", "cooperative"]
Purpose = Literal[v.LOAN_PURPOSES]  # type: ignore[valid-type]


class Application(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Strict: a number is a JSON number. "80000000" (a string) or true (a boolean) is refused, not
    # coerced: a client that sends them has a bug we must not hide.
    amount_vnd: StrictInt = Field(..., gt=0, description="Requested amount in integer VND (dong), "
                                  "a JSON integer", examples=[80_000_000])
    term_months: StrictInt = Field(..., ge=TERM_MONTHS[0], le=TERM_MONTHS[1],
                                   description="Loan term in months, a JSON integer", examples=[12])
    purpose: Purpose = Field(..., description="What the loan is for", examples=["working_capital"])


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject_type: SubjectType = Field(..., description="member (household / household business) "
                                                       "or cooperative")
    subject_id: str = Field(..., pattern=SUBJECT_ID_PATTERN, examples=["TV0000001"])
    as_of_date: date | None = Field(None, ge=EARLIEST_AS_OF, description="Score as of this date "
                                    "(ISO), from data strictly before it. Default: the latest data.")
    application: Application


class Contribution(BaseModel):
    feature: str
    value: float | None
    contribution: float = Field(..., description="Share of the log-odds of default")
    points: float = Field(..., description="The same, in score points (negative = lowers score)")


class Explanation(BaseModel):
    log_odds: float = Field(..., description="The model's output: log-odds of default")
    base_value: float = Field(..., description="Log-odds before any feature is known")
    contributions: list[Contribution] = Field(
        ..., description="One per feature; base_value + sum(contribution) == log_odds")


class Reason(BaseModel):
    code: str = Field(..., description="Stable reason code (see GET /v1/reason-codes)")
    feature: str = Field(..., description="The feature that weighs most in this reason")
    value: float | None
    contribution: float = Field(..., description="Log-odds added by all features of this reason")
    points: float
    text_vi: str
    text_en: str


class Missing(BaseModel):
    code: str
    vi: str
    en: str


class ModelInfo(BaseModel):
    name: str
    version: str
    run_id: str


class RecommendedLimit(BaseModel):
    """The most the subject could borrow as of the date (scoring/limit.py, docs/api.md)."""
    amount_vnd: int = Field(..., ge=0, description="Integer VND; 0 when no amount passes "
                            "(binding none_affordable)")
    term_months: int | None = Field(None, description="The term it is recommended at (the requested "
                                    "term when the amount holds for it, else the shortest that does)")
    terms_months: list[int] = Field(default_factory=list, description="Every term of the grid at "
                                    "which the amount holds")
    binding: Literal["pd_target", "affordability", "legal_cap", "none_affordable"] = Field(
        ..., description="What stops a larger amount: the PD target, the instalment share of the "
                         "verified net monthly inflow, the Decree 156/2025 unsecured limit, or nothing "
                         "passes")
    reason: str = Field(..., description="Why, in English (reason_vi: in Vietnamese)")
    reason_vi: str
    target_pd: float = Field(..., description="The PD target the amount was held to")
    pd: float | None = Field(None, description="The PD at amount_vnd and term_months")
    instalment_share: float = Field(..., description="The largest share of the net monthly inflow "
                                    "the instalment may take")
    net_monthly_inflow_vnd: int = Field(..., description="Verified net inflow of an ordinary month "
                                        "(the lower of the median and the mean of the last 12 months)")
    instalment_vnd: int = Field(..., description="Monthly instalment at amount_vnd and term_months "
                                "(annuity at 1% a month)")
    legal_cap_vnd: int = Field(..., description="The Decree 156/2025 unsecured limit of the legal form")


class ScoreResponse(BaseModel):
    request_id: str
    subject_type: SubjectType
    subject_id: str
    as_of_date: date
    status: Literal["scored", "insufficient_history"]
    pd: float | None = Field(None, description="Probability of 90+ days past due within 12 months")
    score: float | None = None
    grade: str | None = None
    explanation: Explanation | None = None
    reasons: list[Reason] = Field(default_factory=list, description="At most four, most "
                                  "risk-raising first")
    missing: list[Missing] = Field(default_factory=list,
                                   description="With insufficient_history: what is missing")
    model: ModelInfo
    recommended_limit_vnd: int | None = Field(None, description="The recommended limit in integer "
                                              "VND (recommended_limit.amount_vnd); null when not scored")
    recommended_limit: RecommendedLimit | None = Field(None, description="The recommended limit and "
                                                       "what binds it; null when not scored")
    # feature values the score used (audit log), never serialised: see Scorer.features_used
    _features_used: dict[str, float | None] | None = PrivateAttr(default=None)


class ErrorBody(BaseModel):
    error: str
    message: str
    request_id: str
    fields: list[dict] = Field(default_factory=list)


# -- additions: what the audit log needs, and batch scoring ---------------------------------------
# ScoreResponse._features_used (above) carries the feature values a score was computed from, set by
# scoring.scorer.Scorer and read with Scorer.features_used(response): never in the JSON or OpenAPI.


class BatchScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    applications: list[ScoreRequest] = Field(
        ..., min_length=1, max_length=1000,
        description="1 to 1,000 applications, each scored as by POST /v1/scores; the results "
                    "come back in the same order")


class BatchItemError(BaseModel):
    """One application of a batch that could not be scored; the others still are."""
    index: int = Field(..., description="Position of the application in `applications` (from 0)")
    status: Literal["rejected"] = "rejected"
    http_status: int = Field(..., description="The status a single POST /v1/scores would have "
                                              "answered (404, 422, 503)")
    error: str
    message: str
    fields: list[dict] = Field(default_factory=list)


class BatchScoreResponse(BaseModel):
    request_id: str
    results: list[Annotated[ScoreResponse | BatchItemError, Field(discriminator="status")]] = Field(
        ..., description="One per application, in order: a score (status scored or "
                         "insufficient_history) or an item error (status rejected)")
