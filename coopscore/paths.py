"""Moved to `settings.paths`; kept until the last importers switch, then deleted."""
from settings.paths import Paths, get_paths  # noqa: F401
