"""torswitch: a Hadoop-aware top-of-rack caching switch.

The package is split by concern (see README "Layout"); importing it has no side effects.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
