"""The corpus format end to end on a freshly built tiny corpus."""

import json
import shutil

import numpy as np
import pytest

from mema.corpus.schema import DISEASES, LESION_DISEASES
from mema.corpus.store import CorpusError, load_corpus, manifest_sha256
from mema.corpus.verify import verify_corpus


def _lines(path):
    return path.read_text().splitlines()


def test_round_trip_and_counts(tiny_corpus):
    corpus = load_corpus(tiny_corpus)
    assert corpus.info.manifest_sha256 == manifest_sha256(corpus.records)
    assert corpus.info.n_images == len(corpus.records) == 120
    train = corpus.split("train")
    assert {r.disease for r in train} == set(DISEASES)
    for rec in corpus.records[:10]:
        img = corpus.load_image(rec)
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    lesion = [r for r in corpus.records if r.disease in LESION_DISEASES]
    assert lesion and all(r.mask_file for r in lesion)
    assert all(corpus.load_mask(r).sum() >= 4 for r in lesion)
    assert not any(r.mask_file for r in corpus.records if r.disease not in LESION_DISEASES)
    assert all(r.age is not None and r.gender in ("female", "male") for r in corpus.records)


def test_splits_are_identity_disjoint_and_gallery_covers_eval(tiny_corpus):
    corpus = load_corpus(tiny_corpus)
    ids = {s: {r.identity for r in corpus.split(s)} for s in ("train", "dev", "val", "test", "gallery")}
    main = ("train", "dev", "val", "test")
    assert all(not ids[a] & ids[b] for i, a in enumerate(main) for b in main[i + 1:])
    assert ids["gallery"] == ids["dev"] | ids["val"] | ids["test"]
    photos = {r.id for r in corpus.split("gallery")}
    assert not photos & {r.id for r in corpus.split("test")}


def test_loads_with_hugging_face_datasets(tiny_corpus, tmp_path):
    import datasets

    # A private cache: a shared one can hold a table built from an earlier corpus at a reused tmp path.
    ds = datasets.load_dataset(str(tiny_corpus), cache_dir=str(tmp_path / "hf"))
    assert set(ds) == {"train", "dev", "val", "test", "gallery"}
    assert ds["train"].num_rows == 48
    row = ds["train"][0]
    assert row["image"].size == (128, 128) and row["disease"] in DISEASES and len(row["sha256"]) == 64


def test_verify_passes_on_a_fresh_build(tiny_corpus):
    report = verify_corpus(tiny_corpus, embedding_sample=-1, progress=False)
    assert report.ok, report.errors
    emb = report.summary["embedding_check"]
    assert emb["near_duplicates"] == [] and emb["min_l2"] > 0.5


def _rewrite(path, fn):
    lines = _lines(path)
    path.write_text("\n".join(fn(lines)) + "\n")


DAMAGE = {
    "missing file": (lambda root: (root / "train" / "id00000-p0.png").unlink(), "does not exist"),
    "zero-byte file": (lambda root: (root / "train" / "id00000-p0.png").write_bytes(b""), "0 bytes"),
    "hash mismatch": (
        lambda root: (root / "train" / "id00000-p1.png").write_bytes((root / "train" / "id00001-p0.png").read_bytes()),
        "does not match record",
    ),
    "malformed line": (lambda root: _rewrite(root / "train" / "metadata.jsonl", lambda l: [l[0][:-5]] + l[1:]), "metadata.jsonl:1: not valid JSON"),
    "unknown field": (
        lambda root: _rewrite(root / "val" / "metadata.jsonl", lambda l: [json.dumps({**json.loads(l[0]), "colour": 1})] + l[1:]),
        "metadata.jsonl:1: colour",
    ),
    "bad disease": (
        lambda root: _rewrite(root / "val" / "metadata.jsonl", lambda l: l[:1] + [l[1].replace('"disease":"', '"disease":"X')] + l[2:]),
        "metadata.jsonl:2: disease",
    ),
    "identity in two splits": (
        lambda root: _rewrite(
            root / "test" / "metadata.jsonl",
            lambda l: [json.dumps({**json.loads(l[0]), "identity": "id00000"})] + l[1:],
        ),
        "identity id00000 appears in several splits",
    ),
    "duplicate id": (
        lambda root: _rewrite(root / "train" / "metadata.jsonl", lambda l: l + [l[0]]),
        "duplicate id 'id00000-p0'",
    ),
    "missing mask": (lambda root: next((root / "masks" / "train").glob("*.png")).unlink(), "mask of"),
    "manifest tampered": (
        lambda root: (root / "dataset.json").write_text(json.dumps({**json.loads((root / "dataset.json").read_text()), "manifest_sha256": "0" * 64})),
        "manifest hash",
    ),
    "missing dataset.json": (lambda root: (root / "dataset.json").unlink(), "dataset.json: missing"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_verify_reports_each_kind_of_damage(corpus_copy, kind):
    damage, expected = DAMAGE[kind]
    damage(corpus_copy)
    report = verify_corpus(corpus_copy, embedding_sample=0, progress=False)
    assert not report.ok
    assert any(expected in e for e in report.errors), report.errors


def test_load_corpus_raises_a_clear_error_on_a_bad_line(corpus_copy):
    _rewrite(corpus_copy / "train" / "metadata.jsonl", lambda l: l[:2] + ["{oops"] + l[3:])
    with pytest.raises(CorpusError, match=r"metadata.jsonl:3: not valid JSON"):
        load_corpus(corpus_copy)


def test_embedding_check_flags_a_face_reused_across_splits(corpus_copy):
    # The same face under two identities in two splits is a leak the id check cannot see.
    test_first = sorted(corpus_copy.joinpath("test").glob("*-p0.png"))[0]
    train_first = sorted(corpus_copy.joinpath("train").glob("*-p0.png"))[0]
    shutil.copy(train_first, test_first)
    from mema.corpus.verify import _embedding_check
    from mema.corpus.store import load_corpus as lc

    records = lc(corpus_copy).records
    result = _embedding_check(corpus_copy, records, sample=-1, seed=0, progress=False)
    assert result["near_duplicates"] and result["min_l2"] < 0.05


def test_export_nnunet(tiny_corpus, tmp_path):
    from PIL import Image

    from mema.corpus.nnunet import export_nnunet

    folder = export_nnunet(load_corpus(tiny_corpus), tmp_path, dataset_id=7, name="Tiny")
    info = json.loads((folder / "dataset.json").read_text())
    assert folder.name == "Dataset007_Tiny" and info["numTraining"] == 12 and info["file_ending"] == ".png"
    images = sorted((folder / "imagesTr").glob("*_0000.png"))
    labels = sorted((folder / "labelsTr").glob("*.png"))
    assert len(images) == len(labels) == 12
    img, lab = np.asarray(Image.open(images[0])), np.asarray(Image.open(labels[0]))
    assert img.shape == (128, 128, 3) and lab.shape == (128, 128) and set(np.unique(lab)) == {0, 1}
    meta = json.loads((folder / "cases.json").read_text())
    assert all(c["disease"] in LESION_DISEASES for c in meta["cases"].values())
    assert meta["crop"] is None and meta["lesion_pixels_in_crop"] == 1.0
    assert len(list((folder / "imagesTs").glob("*.png"))) == 12  # dev, val and test lesion images
    cropped = export_nnunet(load_corpus(tiny_corpus), tmp_path / "c", dataset_id=8, name="TinyEyes", crop=(24, 88, 16, 112))
    assert np.asarray(Image.open(sorted((cropped / "imagesTr").glob("*.png"))[0])).shape == (64, 96, 3)
    assert json.loads((cropped / "cases.json").read_text())["lesion_pixels_in_crop"] > 0.99
