"""What a run records about its environment (library versions) and how a method failure is reported."""

import numpy as np
import pytest

from mema.evaluation import environment
from mema.evaluation.environment import NOT_INSTALLED, library_versions
from mema.methods import MethodError, MethodFailure


def test_library_versions_name_every_model_library():
    import sklearn
    import torch

    v = library_versions()
    for lib in ("onnxruntime", "mediapipe", "dlib", "nnunetv2", "opencv", "torch", "numpy", "scikit-learn", "python"):
        assert lib in v and v[lib], lib
    assert v["numpy"] == np.__version__ and v["torch"] == torch.__version__ and v["scikit-learn"] == sklearn.__version__
    assert list(v) == sorted(v) and all(isinstance(x, str) for x in v.values())


def test_a_missing_library_is_named_not_dropped(monkeypatch):
    monkeypatch.setattr(environment, "LIBRARIES", {"numpy": ("numpy",), "ghost": ("no-such-dist-mema",),
                                                   "alt": ("no-such-dist-mema", "numpy")})
    v = library_versions()
    assert v["ghost"] == NOT_INSTALLED and v["alt"] == f"{np.__version__} (numpy)"


def test_a_method_failure_is_one_line_naming_method_stage_and_sample():
    e = MethodFailure("rofi", "anonymize", "mini-00012", RuntimeError("out of memory\nwhile allocating 2 GB"))
    assert str(e) == "method 'rofi' failed in anonymize on sample mini-00012: RuntimeError: out of memory"
    assert isinstance(e, MethodError) and isinstance(e.__cause__, RuntimeError) and "\n" not in str(e)
    batch = MethodFailure("blur", "restore", ["a1", "a2", "a3"], KeyError("k"))
    assert str(batch) == "method 'blur' failed in restore on the batch of 3 samples a1 .. a3: KeyError: 'k'"
    assert str(MethodFailure("m", "anonymize", None, ValueError())) == "method 'm' failed in anonymize on an unnamed sample: ValueError"


def test_wrap_turns_exceptions_into_failures_but_keeps_protocol_errors_and_interrupts():
    with pytest.raises(MethodFailure, match=r"^method 'm' failed in anonymize on sample s1: ZeroDivisionError"):
        MethodFailure.wrap("m", "anonymize", "s1", lambda: 1 / 0)
    with pytest.raises(MethodError, match="^wrong shape$"):
        MethodFailure.wrap("m", "anonymize", "s1", lambda: (_ for _ in ()).throw(MethodError("wrong shape")))

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        MethodFailure.wrap("m", "anonymize", "s1", interrupted)
    assert MethodFailure.wrap("m", "anonymize", "s1", lambda x: x + 1, 1) == 2
