"""Belfry: a highly available, language-agnostic distributed cron."""

__version__ = "0.1.0"
__all__ = ["__version__"]
