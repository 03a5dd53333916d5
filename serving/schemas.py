"""Moved to scoring.schemas; this name is kept until every caller imports scoring."""
from scoring.schemas import *  # noqa: F401,F403
