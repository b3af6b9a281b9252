"""Built-in de-identification methods (classic baselines and ROFI)."""
