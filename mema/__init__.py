"""MeMa: medical-aware face de-identification toolkit (corpus, benchmark, ROFI baseline)."""

from mema import runtime as _runtime  # noqa: F401  (sets hub-offline variables before anything else)

__version__ = "0.1.0"
