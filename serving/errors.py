"""Moved to scoring.errors; this name is kept until every caller imports scoring."""
from scoring.errors import *  # noqa: F401,F403
