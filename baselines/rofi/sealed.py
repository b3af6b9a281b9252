"""Moved to :mod:`mema.sealing` (a capability of every method); kept so old imports still work."""

from mema.sealing import BITS, HEADER_BYTES, MAGIC, QUALITIES, TAG_BYTES, SealError, capacity_bytes, open_seal, seal, unseal

__all__ = ["BITS", "HEADER_BYTES", "MAGIC", "QUALITIES", "TAG_BYTES", "SealError", "capacity_bytes", "open_seal", "seal", "unseal"]
