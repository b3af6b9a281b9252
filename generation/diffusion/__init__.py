"""Diffusion backend: LoRA finetuning of Stable Diffusion 1.5, IP-Adapter face injection, sampling."""
