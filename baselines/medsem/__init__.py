"""MedSem-DeID (MeMa, AAAI 2025): reversible, password-protected, medical-semantics-preserving face de-identification."""
