"""Every COOPSCORE_* environment variable, typed and documented, read once.

    from settings import get_settings
    get_settings().workers        # 2 unless COOPSCORE_WORKERS says otherwise

`get_settings()` reads the environment on its first call and keeps the result; `reset_settings()`
forgets it so the next call reads again (the tests point COOPSCORE_HOME at a new world each).
A value that does not parse raises SettingsError naming the variable, the value and what to write.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "COOPSCORE_"
RATE_EXAMPLE = "for example 300/1200"
SECRET_FIELDS = {"web_secret"}  # never repeated in an error message


class SettingsError(ValueError):
    """A COOPSCORE_* variable holds a value that cannot be used; the message names it and the fix."""


class RateLimit(BaseModel, frozen=True):
    """A token bucket's terms: `rate` requests a second, bursts of up to `burst`."""

    rate: float
    burst: float


def parse_rate_limit(text: str) -> RateLimit:
    """"rate[/burst]" -> RateLimit; without a burst it is twice the rate ("300" -> 300/600)."""
    rate, _, burst = text.strip().partition("/")
    try:
        rate_f = float(rate)
        burst_f = float(burst) if burst else rate_f * 2
    except ValueError:
        raise ValueError(f"{text!r} is not a rate: write requests a second per bank, optionally "
                         f"/burst, {RATE_EXAMPLE}") from None
    if not rate_f > 0 or not burst_f >= 1:  # `not` so that NaN is refused too
        raise ValueError(f"{text!r}: the rate must be > 0 and the burst >= 1, {RATE_EXAMPLE}")
    return RateLimit(rate=rate_f, burst=burst_f)


class Settings(BaseSettings):
    """coopscore's settings; each field is read from COOPSCORE_<FIELD NAME IN CAPITALS>."""

    # An empty variable counts as unset, as `os.environ.get(...) or default` did before.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True,
                                      extra="ignore")

    home: Path = Field(Path("var"), description=(
        "the folder everything generated lives under: data, features, the MLflow store, the "
        "service's records (relative paths are taken from the working directory)"))
    tracking_uri: str | None = Field(None, description=(
        "the MLflow tracking store and registry, e.g. postgresql+psycopg://user@host/mlflow; "
        "unset: a SQLite file under <home>/mlflow"))
    database_url: str | None = Field(None, description=(
        "the service's records (banks, keys, consents, audit log), e.g. "
        "postgresql+psycopg://user@host/db; unset: a SQLite file under <home>/service"))
    web_secret: SecretStr | None = Field(None, description=(
        "the key that signs member links and console sessions; unset: a random one generated once "
        "in <home>/service/web-secret. Set the same value on every replica"))
    workers: int = Field(2, ge=1, description=(
        "the service's worker processes (one per core; the rate limit is split between them)"))
    access_log: bool = Field(False, description=(
        "1 turns BentoML's per-request access log on (off: the audit log records every decision)"))
    json_logs: bool = Field(False, description=(
        "1 writes the service's log as one JSON line per event (time, level, logger, event, request_id, "
        "and for each /v1 request its endpoint template, status, outcome and duration_ms), without "
        "personal data"))
    tracing: bool = Field(False, description=(
        "1 keeps BentoML's OpenTelemetry span per request, for a deployment that exports traces"))
    rate_limit: Annotated[RateLimit, NoDecode] = Field(RateLimit(rate=300, burst=1200), description=(
        "every bank's limit per replica as rate[/burst] (requests a second, burst; a batch costs "
        "one token per application), e.g. 300/1200"))
    rate_limits: Annotated[dict[str, RateLimit], NoDecode] = Field(default_factory=dict, description=(
        "banks with their own terms: bank=rate/burst,... e.g. slow-bank=1/5,big-bank=1000/2000"))
    reload_seconds: float = Field(5.0, description=(
        "how often the service asks the registry for a new champion; 0 switches reloading off"))
    consent_max_days: int = Field(365, ge=1, description="the longest a consent may run, in days")
    member_link_days: int = Field(30, ge=1, description="how long a member's page link stays valid, in days")
    batch_max_as_of_dates: int = Field(31, ge=1, description=(
        "the most distinct as_of_date values one batch request may ask for"))
    batch_deadline_seconds: float = Field(50.0, ge=0, description=(
        "a batch still computing after this long is cancelled (503), under BentoML's 60 s timeout"))
    shadow: bool = Field(True, description=(
        "1 scores the registry's `challenger` version beside the champion on live traffic, off the "
        "answer's critical path, and records both (serving/shadow.py); 0 switches it off"))
    shadow_queue: int = Field(10_000, ge=1, description=(
        "shadow items a worker may hold before it skips new ones (counted) rather than slow answers"))
    limit_target_pd: float = Field(0.08, gt=0, lt=1, description=(
        "the recommended limit's PD target: the largest amount whose PD stays at or under it "
        "(default 0.08, the grade-D operating cut-off; scoring/limit.py)"))
    limit_instalment_share: float = Field(0.40, gt=0, le=1, description=(
        "the recommended limit's affordability test: the monthly instalment stays within this share "
        "of the verified net monthly inflow (default 0.40; scoring/limit.py)"))
    engine: Literal["duckdb", "spark"] = Field("duckdb", description=(
        "the engine that computes history features (snapshot, training set): duckdb on one machine, "
        "spark nationwide (its master from Spark's usual settings: spark-submit --master, "
        "SPARK_MASTER, spark-defaults.conf; local[*] otherwise); a command's --engine overrides it"))

    ingest_batch_rows: int = Field(500_000, ge=1, description=(
        "rows ingest reads, checks and writes at a time; its memory grows with this, not with the "
        "size of a table (about 1.5 GB at the default on the generator's transactions; "
        "docs/scaling.md)"))
    ingest_memory_mb: int = Field(1024, ge=64, description=(
        "memory in MB that ingest's search for duplicate keys (DuckDB, over a whole table) may use "
        "before it spills to disk in the quarantine folder"))

    @field_validator("tracking_uri", "database_url", mode="before")
    @classmethod
    def _strip(cls, value):
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _rate_limit(cls, value):
        return parse_rate_limit(value) if isinstance(value, str) else value

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _rate_limits(cls, value):
        if not isinstance(value, str):
            return value
        limits = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            bank, sep, limit = part.partition("=")
            if not sep or not bank.strip():
                raise ValueError(f"{part!r} is not bank=rate/burst, for example slow-bank=1/5")
            limits[bank.strip()] = parse_rate_limit(limit)
        return limits


def _explain(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = ENV_PREFIX + field.upper()
        shown = "(hidden)" if field in SECRET_FIELDS else repr(error.get("input"))
        message = error["msg"].removeprefix("Value error, ")
        about = Settings.model_fields[field].description if field in Settings.model_fields else ""
        lines.append(f"{name}={shown} cannot be used: {message}. {name} is {about}; "
                     "correct it, or unset it for the default")
    return "\n".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment, read on the first call and kept (see reset_settings)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None


def reset_settings() -> None:
    """Forget the settings read so far; the next get_settings() reads the environment again."""
    get_settings.cache_clear()
