"""Metric definitions (docs/metrics.md). Each is defined once here and tested against a reference."""
