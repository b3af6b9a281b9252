"""The benchmark harness behind ``mema-eval``."""
