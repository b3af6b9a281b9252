"""ROFI: reversible, key-protected face anonymization that keeps ophthalmic signs (seed paper 000)."""
