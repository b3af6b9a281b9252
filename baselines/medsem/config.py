"""Typed configuration of the MedSem-DeID networks (architecture only; training flags live in train.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SemanticConfig(BaseModel):
    """The medical semantics encoder: the down path of a small pixel-space diffusion UNet.

    Levels run at H/4 (after a 4 x 4 pixel-unshuffle stem) and H/8; the UNet's bottom block sits at
    H/16. The encoder kept after training is the stem and the two levels: f_med is the H/8 level.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    widths: tuple[int, int] = (64, 160)  # H/4, H/8 (the last is f_med's channel count; the paper's is 320)
    bottom: int = Field(default=192, ge=8)  # H/16, used only while training the denoiser
    groups: int = Field(default=8, ge=1)  # GroupNorm groups (SD-style blocks)
    time_dim: int = Field(default=128, ge=8)
    timesteps: int = Field(default=1000, ge=10)
    # f_med is read at this (small) diffusion step, from the clean image scaled by sqrt(alpha_bar):
    # deterministic and differentiable, so L_med can pull the de-identified image's features.
    feature_timestep: int = Field(default=50, ge=0)

    @model_validator(mode="after")
    def _groups_divide(self) -> "SemanticConfig":
        if any(w % self.groups for w in (*self.widths, self.bottom)):
            raise ValueError(f"every width {self.widths + (self.bottom,)} must be a multiple of groups={self.groups}")
        if self.feature_timestep >= self.timesteps:
            raise ValueError("feature_timestep must be below timesteps")
        return self


class MedSemConfig(BaseModel):
    """Sizes of every MedSem-DeID part. The defaults are the MeMa-mini model (128 px faces, CPU-sized).

    The paper's f_face is 512 x H/32 x W/32 at 512 px: a 16 x 16 token grid. At 128 px the same grid is
    H/8 (H/32 would leave 4 x 4 tokens, each a whole eye, and an 8 x 8 grid at H/16 did not learn to
    draw more than a blur in a CPU schedule), so f_face is at H/8. f_med comes from the semantic
    encoder's H/8 level, on the token grid itself (the paper's f_med is at twice its token resolution
    and downscaled; the fusion pools it to the token grid whatever its size).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(default=128, ge=32)
    key_dim: int = Field(default=512, ge=1)  # the password P
    token_dim: int = Field(default=160, ge=8)  # channels of f_face and f (the paper: 512)
    heads: int = Field(default=4, ge=1)
    encryptor_depth: int = Field(default=4, ge=1)
    decryptor_depth: int = Field(default=4, ge=1)
    fusion_blocks: int = Field(default=3, ge=1)  # "three consecutive residual blocks"
    encoder_widths: tuple[int, int] = (32, 64)  # image encoder at H/2, H/4; then token_dim at H/8
    decoder_widths: tuple[int, int, int, int] = (128, 64, 32, 16)  # at H/8, H/4, H/2, H
    semantic: SemanticConfig = Field(default_factory=SemanticConfig)

    @model_validator(mode="after")
    def _sizes(self) -> "MedSemConfig":
        if self.image_size % 8:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 8")
        if self.token_dim % self.heads:
            raise ValueError(f"token_dim {self.token_dim} must be a multiple of heads {self.heads}")
        return self

    @property
    def grid(self) -> int:
        return self.image_size // 8
