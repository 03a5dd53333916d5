"""What a bank sends and what it gets back: the request and response bodies of the scoring API."""
from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from data_contracts import vocabulary as v

SubjectType = Literal["member", "cooperative"]
Purpose = Literal[v.LOAN_PURPOSES]  # type: ignore[valid-type]


class Application(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_vnd: int = Field(..., gt=0, description="Requested amount in integer VND (dong)",
                            examples=[80_000_000])
    term_months: int = Field(..., ge=1, le=120, description="Loan term in months", examples=[12])
    purpose: Purpose = Field(..., description="What the loan is for", examples=["working_capital"])


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject_type: SubjectType = Field(..., description="member (household / household business) "
                                                       "or cooperative")
    subject_id: str = Field(..., min_length=1, max_length=32, examples=["TV0000001"])
    as_of_date: date | None = Field(None, description="Score as of this date (ISO), from data "
                                    "strictly before it. Default: the latest data.")
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


class ErrorBody(BaseModel):
    error: str
    message: str
    request_id: str
    fields: list[dict] = Field(default_factory=list)
