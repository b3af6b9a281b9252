"""The captions and prompts of MeMa's generation steps (seed 003, "Generating MeMa from Real Data").

Training captions: "A face, eye with {disease name}". Sampling prompts add the severity:
"A face, eye with {disease name}, {slight|mid|heavy}-level". Normal faces use "no disease" as the
disease name and no severity (the paper does not say; this keeps one template for every class).
"""

from __future__ import annotations

from mema.corpus.schema import DISEASE_NAMES, DISEASES

SAMPLING_SEVERITIES: tuple[str, ...] = ("slight", "mid", "heavy")


def disease_phrase(disease: str) -> str:
    if disease not in DISEASES:
        raise ValueError(f"unknown disease {disease!r}; known: {', '.join(DISEASES)}")
    return "no disease" if disease == "Normal" else DISEASE_NAMES[disease]


def caption(disease: str) -> str:
    return f"A face, eye with {disease_phrase(disease)}"


def prompt(disease: str, severity: str) -> str:
    if disease == "Normal":
        return caption(disease)
    if severity not in SAMPLING_SEVERITIES:
        raise ValueError(f"severity {severity!r} for {disease}; expected one of {SAMPLING_SEVERITIES}")
    return f"{caption(disease)}, {severity}-level"
