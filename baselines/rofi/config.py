"""Typed configuration of the ROFI networks (architecture only; training flags live in train.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mema.faces.eyecrop import EYE_WINDOW_128


class ROFIConfig(BaseModel):
    """Sizes of every ROFI part. The defaults are the MeMa-mini model (128 px faces, CPU-sized)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(default=128, ge=32)
    key_dim: int = Field(default=512, ge=1)
    # Tokens come from a stride-8 feature map, the same H/8 x W/8 grid as the sign detector's regions.
    token_dim: int = Field(default=96, ge=8)
    heads: int = Field(default=4, ge=1)
    translator_depth: int = Field(default=6, ge=1)
    daformer_depth: int = Field(default=2, ge=1)
    # Dec-Net widths: at H/8 (4 residual blocks), H/4 (2 blocks), H/2 (1 block), and at H.
    decoder_widths: tuple[int, int, int, int] = (64, 48, 32, 16)
    # The detector scores the eye window of the aligned face (top, bottom, left, right; multiples of 8)
    # at full resolution; regions outside it score 0. Ophthalmic signs are periocular, and on whole
    # faces (64 px, 600 steps) the weakly supervised detector stayed at chance (val AUROC 0.57).
    detector_window: tuple[int, int, int, int] = EYE_WINDOW_128
    # The key's virtual face is the generator at z = truncation x (first 100 key entries). A truncation
    # below 1 gives more typical, frontal faces but less distinct ones: with the eye openings kept,
    # 0.6 / 0.8 / 1.0 protected 96.0 / 97.0 / 98.5% (SFace, 199 test faces; docs/rofi.md).
    virtual_truncation: float = Field(default=1.0, gt=0, le=1)
    sign_threshold: float = Field(default=0.5, gt=0, lt=1)
    # Sign regions grow by this many cells so the seam falls outside the sign itself.
    sign_dilation: int = Field(default=1, ge=0)
    # Both eye openings with their lid margins are kept from the original (landmark ellipses of
    # eye_opening_axes eye widths, rim softened by eye_opening_feather px) whatever the detector says:
    # its 8 px regions keep only the surest cells, mostly one eye, and the generator's own eyes have
    # almost no iris or sclera, which the reference classifier reads as ptosis (docs/rofi.md, ablation).
    keep_eye_openings: bool = True
    eye_opening_axes: tuple[float, float] = (0.75, 0.45)
    eye_opening_feather: float = Field(default=1.5, ge=0)

    @model_validator(mode="after")
    def _window_on_grid(self) -> "ROFIConfig":
        t, b, l, r = self.detector_window
        if any(v % 8 for v in self.detector_window) or not (0 <= t < b <= self.image_size and 0 <= l < r <= self.image_size):
            raise ValueError(f"detector_window {self.detector_window} must lie in the image on multiples of 8")
        return self

    @property
    def grid(self) -> int:
        return self.image_size // 8
