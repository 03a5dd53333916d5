"""Moved to scoring.scorer; this name is kept until every caller imports scoring."""
from scoring.scorer import *  # noqa: F401,F403
from scoring.scorer import (ApiError, Decisions, LoadedModel, Scorer, explain_matrix,  # noqa: F401
                            load_champion, load_version, top_reasons)
