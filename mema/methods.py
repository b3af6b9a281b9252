"""The method protocol and registry.

A method turns a batch of face images into de-identified images of the same shape::

    class MyMethod:
        info = MethodInfo(name="my-method", version="1.0", reversible=False, licence="MIT")
        def anonymize(self, images: np.ndarray, key: bytes | None = None) -> np.ndarray: ...
        def restore(self, images: np.ndarray, key: bytes) -> np.ndarray: ...   # reversible only

``images`` is (N, H, W, 3) uint8 RGB, pre-aligned face crops; the output must be the same shape and
dtype. Built-ins register with :func:`register`; other packages expose a ``mema.methods`` entry point,
or are named directly as ``package.module:Class``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Callable, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class MethodInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: str
    reversible: bool = False
    key_scheme: Literal["none", "mema-key-v1", "other"] = "none"
    licence: str
    trained_on: str | None = None
    # Which split its choices (thresholds, regions, checkpoints) were tuned on: "dev", never "test"; None if untuned.
    tuned_on: Literal["dev", "train", "none"] | None = None
    description: str = ""
    paper: str | None = None
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)


@runtime_checkable
class Method(Protocol):
    info: MethodInfo

    def anonymize(self, images: np.ndarray, key: bytes | None = None) -> np.ndarray: ...


class MethodError(ValueError):
    """A method that cannot be found or that broke the protocol."""


class MethodFailure(MethodError):
    """A method that raised while processing samples: one line naming the method, stage and sample.

    ``sample_id`` is one id or the ids of the failing batch (a batch is named by its first and last id
    and size). The original exception stays available as ``exc`` and as ``__cause__``.
    """

    def __init__(self, method: str, stage: str, sample_id: str | list[str] | tuple[str, ...] | None, exc: BaseException):
        self.method, self.stage, self.exc = method, stage, exc
        self.sample_ids = [sample_id] if isinstance(sample_id, str) else list(sample_id or [])
        super().__init__(str(self))
        self.__cause__ = exc

    def __str__(self) -> str:
        ids = self.sample_ids
        where = (f"sample {ids[0]}" if len(ids) == 1 else f"the batch of {len(ids)} samples {ids[0]} .. {ids[-1]}" if ids
                 else "an unnamed sample")
        lines = str(self.exc).strip().splitlines()
        detail = f"{type(self.exc).__name__}: {lines[0]}" if lines else type(self.exc).__name__
        return f"method {self.method!r} failed in {self.stage} on {where}: {detail[:300]}"

    @classmethod
    def wrap(cls, method: str, stage: str, sample_id, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)``, with any exception but a protocol error (already one line) or an
        interrupt turned into a :class:`MethodFailure`."""
        try:
            return fn(*args, **kwargs)
        except MethodError:
            raise
        except Exception as exc:  # noqa: BLE001  (a third-party method may raise anything)
            raise cls(method, stage, sample_id, exc) from exc


_REGISTRY: dict[str, Callable[[], Method]] = {}
_BUILTINS_LOADED = False


def register(name: str) -> Callable:
    """Class decorator for built-in methods."""

    def deco(factory):
        _REGISTRY[name] = factory
        return factory

    return deco


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        importlib.import_module("mema.baselines.classic")
        importlib.import_module("mema.baselines.rofi.method")
        importlib.import_module("mema.baselines.digital_mask")
        importlib.import_module("mema.baselines.facedefender")
        importlib.import_module("mema.baselines.medsem.method")
        _BUILTINS_LOADED = True


def available() -> dict[str, str]:
    """name -> origin ('built-in' or the entry point's value)."""
    _load_builtins()
    out = {name: "built-in" for name in _REGISTRY}
    for ep in entry_points(group="mema.methods"):
        out.setdefault(ep.name, ep.value)
    return dict(sorted(out.items()))


def get_method(spec: str) -> Method:
    """A method by registered name, entry-point name, or ``package.module:Class``."""
    _load_builtins()
    if spec in _REGISTRY:
        method = _REGISTRY[spec]()
    elif ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise MethodError(f"cannot load method {spec!r}: {exc}") from None
        method = factory()
    else:
        eps = [ep for ep in entry_points(group="mema.methods") if ep.name == spec]
        if not eps:
            raise MethodError(f"unknown method {spec!r}; known: {', '.join(available())} (or give package.module:Class)")
        method = eps[0].load()()
    if not isinstance(getattr(method, "info", None), MethodInfo) or not callable(getattr(method, "anonymize", None)):
        raise MethodError(f"{spec!r} does not follow the method protocol (needs .info: MethodInfo and .anonymize)")
    if method.info.reversible and not callable(getattr(method, "restore", None)):
        raise MethodError(f"method {method.info.name!r} says it is reversible but has no restore()")
    return method


def check_output(method_name: str, inputs: np.ndarray, outputs, ids: list[str], stage: str = "anonymize") -> np.ndarray:
    """Validate a method's output against its input batch; errors name the method and sample."""
    if not isinstance(outputs, np.ndarray):
        raise MethodError(f"{method_name}.{stage} returned {type(outputs).__name__}, expected a numpy array")
    if outputs.ndim != 4 or len(outputs) != len(inputs):
        raise MethodError(
            f"{method_name}.{stage} returned shape {outputs.shape} for {len(inputs)} images of shape {inputs.shape[1:]}"
            + (f" (fewer images than given; first missing: {ids[len(outputs)]})" if outputs.ndim == 4 and len(outputs) < len(inputs) else "")
        )
    if outputs.shape[1:] != inputs.shape[1:]:
        raise MethodError(f"{method_name}.{stage} returned images of shape {outputs.shape[1:]}, expected {inputs.shape[1:]} (sample {ids[0]})")
    if outputs.dtype != np.uint8:
        if np.issubdtype(outputs.dtype, np.floating):
            bad = ~np.isfinite(outputs).reshape(len(outputs), -1).all(1)
            if bad.any():
                raise MethodError(f"{method_name}.{stage} returned NaN/inf for sample {ids[int(np.argmax(bad))]}")
        raise MethodError(f"{method_name}.{stage} returned dtype {outputs.dtype}, expected uint8 (sample {ids[0]})")
    return outputs
