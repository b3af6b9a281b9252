import pytest
from pydantic import ValidationError

from mema.corpus.schema import DatasetInfo, ImageRecord, Provenance, record_line

GOOD = dict(
    file_name="a.png", id="a", sha256="0" * 64, split="train", identity="i1", disease="Ptosis", severity="mid",
    age=30, gender="female", width=128, height=128, provenance=Provenance(backend="procedural", generator="g", seed=1),
)


def test_good_record_and_canonical_line():
    rec = ImageRecord(**GOOD)
    assert ImageRecord.model_validate_json(record_line(rec)) == rec
    assert record_line(rec) == record_line(ImageRecord.model_validate_json(record_line(rec)))


@pytest.mark.parametrize(
    "change",
    [
        {"colour": "blue"},  # unknown field
        {"disease": "Glaucoma"},
        {"severity": "none"},  # Ptosis needs a severity
        {"split": "holdout"},
        {"sha256": "xyz"},
        {"file_name": "../escape.png"},
        {"file_name": "/abs.png"},
        {"age": -3},
        {"mask_file": "masks/train/a.png"},  # without its hash
    ],
)
def test_bad_records_refused(change):
    with pytest.raises(ValidationError):
        ImageRecord(**{**GOOD, **change})


def test_normal_needs_no_severity():
    with pytest.raises(ValidationError):
        ImageRecord(**{**GOOD, "disease": "Normal"})
    assert ImageRecord(**{**GOOD, "disease": "Normal", "severity": "none"}).severity == "none"


def test_provenance_refuses_unknown_fields():
    with pytest.raises(ValidationError):
        Provenance(backend="procedural", generator="g", seed=1, patient_path="/x")


def test_dataset_info_refuses_unknown_fields():
    with pytest.raises(ValidationError):
        DatasetInfo.model_validate({"name": "x", "surprise": 1})
