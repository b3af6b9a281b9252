"""Corpus generation: sampling plan, backends (procedural; diffusion), leakage filter, data cards."""
