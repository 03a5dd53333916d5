"""The ground floor: coopscore's settings, read once from COOPSCORE_* variables, and its paths.

Every other package may import this one; it imports none of them.
"""
from settings.config import RateLimit, Settings, SettingsError, get_settings, reset_settings
from settings.paths import Paths, get_paths

__all__ = ["Paths", "RateLimit", "Settings", "SettingsError", "get_paths", "get_settings",
           "reset_settings"]
