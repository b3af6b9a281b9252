"""The clinic CLI ``mema``: it never loses, overwrites or falsifies a photo.

Photos are small composites of DCGAN faces (the generator the corpus uses) on a gradient. Every case of
the clinic's bad-input list runs with the default method, ROFI (shipped weights), loaded once per module;
a toy method is used only where a method must misbehave (a face that fails).
"""

from __future__ import annotations

import base64
import errno
import getpass
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mema.audit import AuditEntry
from mema.imageio import png_chunk, read_rgb
from mema.keys import generate_key, read_key, write_key
from mema.methods import MethodInfo

REPO = Path(__file__).resolve().parents[1]


# --- photos --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    from mema.generation.dcgan import FaceGenerator

    return FaceGenerator(128).generate(np.random.default_rng(7).standard_normal((8, 100)))


def _photo(faces, w, h, places, seed=0):
    """A w x h photo: a gradient with mild noise and faces pasted at (index, x, y, side)."""
    yy, xx = np.mgrid[:h, :w]
    bg = np.stack([80 + 60 * xx / w, 100 + 50 * yy / h, 120 + 0 * xx], -1)
    bg = np.clip(bg + np.random.default_rng(seed).normal(0, 2, bg.shape), 0, 255).astype(np.uint8)
    for i, x, y, s in places:
        bg[y : y + s, x : x + s] = cv2.resize(faces[i], (s, s), interpolation=cv2.INTER_AREA if s < 128 else cv2.INTER_CUBIC)
    return bg


def _one(faces, i=4, seed=0):
    return _photo(faces, 240, 180, [(i, 60, 30, 120)], seed)


def _group(faces):
    return _photo(faces, 360, 220, [(0, 10, 10, 90), (1, 120, 100, 100), (2, 240, 20, 96), (3, 250, 120, 95)])


def _save(path: Path, rgb: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, **kw)
    return path


def _folder(faces, root: Path) -> Path:
    """A crop, a photo (JPEG), a group photo (WebP), a TIFF, in sub-folders."""
    _save(root / "crop.png", faces[5])
    _save(root / "clinic a" / "photo.jpg", _one(faces), quality=92)
    _save(root / "clinic a" / "group.webp", _group(faces), lossless=True)
    _save(root / "scan.tif", _one(faces, i=6, seed=1))
    return root


# --- running the CLI -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rofi():
    from mema.methods import get_method

    return get_method("rofi")


@pytest.fixture
def mema(rofi, monkeypatch, capsys):
    """``mema(*argv) -> (code, out, err)``, in-process; ``--method rofi`` reuses the module's ROFI."""
    import mema.cli.clinic as cli

    real = cli._load_method
    monkeypatch.setattr(cli, "_load_method", lambda spec: rofi if spec == "rofi" else real(spec))

    def run(*argv):
        argv = [str(a) for a in argv]
        code = cli.main(argv + (["--quiet"] if argv[0] != "keygen" else []))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def keyfile(tmp_path):
    path = tmp_path / "clinic.key"
    write_key(path, generate_key())
    return path


def _audit(path):
    return [AuditEntry.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def _skipped(err):
    return {line.split(": ", 2)[1][len("skipped "):]: line.split(": ", 2)[2] for line in err.splitlines() if line.startswith("mema: skipped ")}


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the round trip ------------------------------------------------------------------------------------

def test_keygen_mode_0600_prints_only_the_id_and_refuses_to_overwrite(tmp_path, mema):
    path = tmp_path / "new.key"
    code, out, _ = mema("keygen", path)
    assert code == 0 and out.strip() == read_key(path).key_id
    assert os.stat(path).st_mode & 0o777 == 0o600
    before = path.read_bytes()
    code, out, err = mema("keygen", path)
    assert code == 2 and "refusing to overwrite" in err and out == "" and path.read_bytes() == before
    code, _, err = mema("keygen", tmp_path / "no" / "such" / "folder.key")
    assert code == 2 and "does not exist" in err


def test_whole_photos_round_trip_bit_exact_at_full_resolution(tmp_path, faces, keyfile, mema):
    src = _folder(faces, tmp_path / "in")
    big = _save(src / "big.png", _photo(faces, 1024, 768, [(7, 300, 150, 480)]))
    code, out, err = mema("anonymize", src, tmp_path / "anon", "--key", keyfile)
    assert code == 0, err
    assert "anonymized 5 image(s) (8 face(s))" in out
    names = sorted(_tree(tmp_path / "anon"))
    assert names == ["big.png", "clinic a/group.png", "clinic a/photo.png", "crop.png", "scan.png"]
    for rel in ("crop.png", "clinic a/photo.jpg", "clinic a/group.webp", "scan.tif", "big.png"):
        original = read_rgb(src / rel)[0]
        name = Path(rel).with_suffix(".png").as_posix()
        anon = read_rgb(tmp_path / "anon" / name)[0]
        assert anon.shape == original.shape  # the full-resolution frame, not a 128 px crop
        assert np.abs(anon.astype(int) - original).mean() > 3
    code, out, err = mema("restore", tmp_path / "anon", tmp_path / "back", "--key", keyfile)
    assert code == 0 and "restored 5 image(s)" in out, err
    for rel in ("crop.png", "clinic a/photo.jpg", "clinic a/group.webp", "scan.tif", "big.png"):
        name = Path(rel).with_suffix(".png").as_posix()
        assert np.array_equal(read_rgb(tmp_path / "back" / name)[0], read_rgb(src / rel)[0]), rel
    assert read_rgb(tmp_path / "back" / "big.png")[0].shape == read_rgb(big)[0].shape == (768, 1024, 3)


def test_every_face_of_a_group_photo_is_replaced_and_the_background_kept(tmp_path, faces, keyfile, mema, rofi):
    from mema.faces.detection import FaceDetector
    from mema.photo import read_container

    photo = _group(faces)
    src = _save(tmp_path / "in" / "group.png", photo)
    code, out, err = mema("anonymize", src, tmp_path / "anon", "--key", keyfile)
    assert code == 0 and "(4 face(s))" in out, err
    data = (tmp_path / "anon" / "group.png").read_bytes()
    anon = read_rgb(tmp_path / "anon" / "group.png")[0]
    boxes = [r.box for r in read_container(data).regions()]
    assert len(boxes) == 4
    changed = np.zeros(photo.shape[:2], bool)
    for y0, x0, y1, x1 in boxes:
        changed[y0:y1, x0:x1] = True
    for _, x, y, s in [(0, 10, 10, 90), (1, 120, 100, 100), (2, 240, 20, 96), (3, 250, 120, 95)]:
        core = (slice(y + s // 4, y + 3 * s // 4), slice(x + s // 4, x + 3 * s // 4))
        assert np.abs(anon[core].astype(int) - photo[core]).mean() > 10  # no face passes through
    assert np.array_equal(anon[~changed], photo[~changed])  # outside the faces' regions: untouched
    assert len(FaceDetector().detect(anon)) >= 3  # still faces (pasted at their place), just not the patients'


def test_the_detector_finds_frame_filling_and_small_faces_and_nothing_in_noise(faces):
    from mema.faces.detection import FaceDetector

    det = FaceDetector()
    assert [len(det.detect(f)) for f in faces] == [1] * len(faces)  # aligned crops: the face fills the frame
    small = _photo(faces, 400, 300, [(0, 20, 20, 24), (1, 200, 100, 24), (2, 300, 200, 24)])
    assert len(det.detect(small)) == 3
    large = _photo(faces, 1600, 1200, [(3, 100, 100, 1000), (4, 1300, 900, 120)])
    assert len(det.detect(large)) == 2
    assert det.detect(_photo(faces, 200, 150, [])) == []
    assert det.detect(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)) == []


# --- never overwrite -------------------------------------------------------------------------------------

def test_anonymize_a_photo_into_its_own_folder_is_refused(tmp_path, faces, keyfile, mema):
    src = _save(tmp_path / "in" / "patient.png", _one(faces))
    before = src.read_bytes()
    code, _, err = mema("anonymize", src, tmp_path / "in", "--key", keyfile)
    assert code == 2 and "the output folder is the folder that holds patient.png" in err
    code, _, err = mema("anonymize", tmp_path / "in", tmp_path / "in" / "anon", "--key", keyfile)
    assert code == 2 and "must not be the input folder or inside it" in err
    code, _, err = mema("anonymize", tmp_path / "in", tmp_path / "in", "--key", keyfile)
    assert code == 2 and "must not be the input folder or inside it" in err
    assert src.read_bytes() == before and sorted(_tree(tmp_path / "in")) == ["patient.png"]


def test_restore_into_a_folder_of_originals_is_refused(tmp_path, faces, keyfile, mema):
    photos = _folder(faces, tmp_path / "photos")
    before = _tree(photos)
    assert mema("anonymize", photos, tmp_path / "anon", "--key", keyfile)[0] == 0
    code, _, err = mema("restore", tmp_path / "anon", photos, "--key", keyfile)
    assert code == 2 and "holds 4 file(s) mema did not write" in err and "restore into a new or empty folder" in err
    assert _tree(photos) == before


def test_an_existing_output_that_mema_did_not_write_is_kept(tmp_path, faces, keyfile, mema):
    src = _save(tmp_path / "in" / "patient.png", _one(faces))
    foreign = _save(tmp_path / "anon" / "patient.png", _one(faces, i=2))
    before = foreign.read_bytes()
    code, _, err = mema("anonymize", tmp_path / "in", tmp_path / "anon", "--key", keyfile)
    assert code == 1 and "patient.png exists in the output folder and the audit log does not show mema wrote it" in _skipped(err)["patient.png"]
    assert foreign.read_bytes() == before
    code, _, err = mema("anonymize", tmp_path / "in", tmp_path / "anon", "--key", keyfile, "--overwrite")
    assert code == 0 and foreign.read_bytes() != before, err
    # what mema wrote (per the log) it may replace: a changed input is anonymized again without --overwrite
    _save(src, _one(faces, i=3))
    code, out, err = mema("anonymize", tmp_path / "in", tmp_path / "anon", "--key", keyfile)
    assert code == 0 and "anonymized 1 image(s)" in out, err


def test_name_clash_is_skipped_not_overwritten(tmp_path, faces, keyfile, mema):
    _save(tmp_path / "in" / "x.jpg", _one(faces))
    _save(tmp_path / "in" / "x.png", _one(faces, i=2))
    code, _, err = mema("anonymize", tmp_path / "in", tmp_path / "anon", "--key", keyfile)
    assert code == 1 and set(_skipped(err)) == {"x.jpg", "x.png"} and "would all be written as x.png" in err
    assert not (tmp_path / "anon" / "x.png").exists()


# --- restore writes only true restorations ------------------------------------------------------------------

def test_restore_refuses_everything_that_is_not_a_true_restoration(tmp_path, faces, keyfile, mema):
    from mema.photo import CHUNK

    src = _save(tmp_path / "in" / "a.png", _one(faces))
    assert mema("anonymize", src, tmp_path / "anon", "--key", keyfile)[0] == 0
    anon = tmp_path / "anon" / "a.png"
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "good.png").write_bytes(anon.read_bytes())
    _save(cases / "never.png", _one(faces, i=2))  # never anonymized
    Image.open(anon).save(cases / "reencoded.jpg", quality=98)  # a JPEG copy
    pixels = read_rgb(anon)[0]
    pixels[40, 100, 1] ^= 1  # one low bit
    Image.fromarray(pixels).save(cases / "flipped.png", pnginfo=_keep_chunk(anon))
    stripped = cases / "stripped.png"
    Image.fromarray(read_rgb(anon)[0]).save(stripped)  # the same pixels, metadata stripped
    other = tmp_path / "other.key"
    write_key(other, generate_key())
    # the right key, the audit log somewhere else entirely
    code, out, err = mema("restore", cases, tmp_path / "back", "--key", keyfile, "--audit", tmp_path / "elsewhere.jsonl")
    skipped = _skipped(err)
    assert code == 1 and "restored 1 image(s)" in out and sorted(_tree(tmp_path / "back")) == ["good.png"], err
    assert "carries no mema seal" in skipped["never.png"]
    assert "carries no mema seal" in skipped["reencoded.jpg"] and "carries no mema seal" in skipped["stripped.png"]
    assert "the file changed since it was anonymized" in skipped["flipped.png"]
    assert all(r.startswith("not restored, nothing written: ") for r in skipped.values())
    assert png_chunk((cases / "flipped.png").read_bytes(), CHUNK) is not None
    # a wrong key, wherever the audit log is: the file names the key id that sealed it
    code, out, err = mema("restore", anon, tmp_path / "wrong", "--key", other, "--audit", tmp_path / "elsewhere2.jsonl")
    assert code == 1 and f"sealed with key id {read_key(keyfile).key_id}; this key is {read_key(other).key_id}" in err
    assert _tree(tmp_path / "wrong") == {}
    # --allow-virtual: the learned restore under a separate name, never NAME.png
    code, out, err = mema("restore", anon, tmp_path / "virtual", "--key", other, "--allow-virtual", "--audit", tmp_path / "elsewhere2.jsonl")
    assert code == 1 and sorted(_tree(tmp_path / "virtual")) == ["a.virtual.png"], err
    assert "its virtual face was written as a.virtual.png (not the patient)" in err
    fake = read_rgb(tmp_path / "virtual" / "a.virtual.png")[0]
    assert fake.shape == read_rgb(src)[0].shape and not np.array_equal(fake, read_rgb(src)[0])
    entry = _audit(tmp_path / "elsewhere2.jsonl")[-1]
    assert entry.output == "a.virtual.png" and "not the patient" in entry.note


def _keep_chunk(png: Path):
    """PngInfo that copies the mema chunk of ``png`` (as a tool that edits pixels but keeps chunks would)."""
    from PIL.PngImagePlugin import PngInfo

    from mema.photo import CHUNK

    info = PngInfo()
    info.add(CHUNK, png_chunk(png.read_bytes(), CHUNK))
    return info


def test_irreversible_methods_restore_only_with_seal(tmp_path, faces, keyfile, mema):
    src = _save(tmp_path / "in" / "a.png", _one(faces))
    code, _, err = mema("anonymize", src, tmp_path / "blur", "--method", "blur")
    assert code == 0, err
    code, _, err = mema("restore", tmp_path / "blur", tmp_path / "back", "--key", keyfile)
    assert code == 1 and "which is not reversible, without --seal" in err
    code, _, err = mema("anonymize", src, tmp_path / "blur2", "--method", "blur", "--seal")
    assert code == 2 and "--seal needs a key" in err
    assert mema("anonymize", src, tmp_path / "blur2", "--method", "blur", "--seal", "--key", keyfile)[0] == 0
    assert mema("restore", tmp_path / "blur2", tmp_path / "back2", "--key", keyfile)[0] == 0
    assert np.array_equal(read_rgb(tmp_path / "back2" / "a.png")[0], read_rgb(src)[0])


def test_low_bit_sealed_crops_from_the_python_api_restore_too(tmp_path, faces, keyfile, mema, rofi):
    key = read_key(keyfile)
    from mema.imageio import write_png

    sealed = rofi.anonymize(faces[:1], key=key)
    write_png(tmp_path / "crops" / "c.png", sealed[0])
    code, _, err = mema("restore", tmp_path / "crops", tmp_path / "back", "--key", keyfile)
    assert code == 0 and "not bit-exact" in err  # ROFI's 128 px seal holds a JPEG copy
    back = read_rgb(tmp_path / "back" / "c.png")[0]
    assert np.abs(back.astype(int) - faces[0]).mean() < 4


# --- the audit log, the key --------------------------------------------------------------------------------

def test_audit_accepts_only_an_audit_log(tmp_path, faces, keyfile, mema):
    src = _save(tmp_path / "in" / "a.png", _one(faces))
    key_before = keyfile.read_bytes()
    code, _, err = mema("anonymize", src, tmp_path / "anon", "--key", keyfile, "--audit", keyfile)
    assert code == 2 and "is not a mema audit log" in err and keyfile.read_bytes() == key_before
    code, _, err = mema("anonymize", tmp_path / "in", tmp_path / "anon", "--key", keyfile, "--audit", src)
    assert code == 2 and "would be written into the input" in err
    img = _save(tmp_path / "img.png", faces[0])
    code, _, err = mema("anonymize", src, tmp_path / "anon", "--key", keyfile, "--audit", img)
    assert code == 2 and "is not a mema audit log" in err and not (tmp_path / "anon").exists()
    log = tmp_path / "log.jsonl"
    assert mema("anonymize", src, tmp_path / "anon", "--key", keyfile, "--audit", log)[0] == 0
    with open(log, "a") as fh:
        fh.write('{"time":"2026-01-01T00:00:00+00:00","user":"x","ho')  # torn by a kill
    code, _, err = mema("restore", tmp_path / "anon", tmp_path / "back", "--key", keyfile, "--audit", log)
    assert code == 0, err
    assert [e.action for e in _audit_lenient(log)] == ["anonymize", "restore"]


def _audit_lenient(path):
    from mema.audit import AuditLog

    return AuditLog(path).entries()


def test_audit_log_records_who_what_and_hashes_but_no_secret_or_input_path(tmp_path, faces, keyfile):
    src = _folder(faces, tmp_path / "Patient Jane Doe 1970-01-01")
    audit = tmp_path / "logs" / "audit.jsonl"
    audit.parent.mkdir()
    outputs = ""
    for cmd, a, b in (("anonymize", src, tmp_path / "anon"), ("restore", tmp_path / "anon", tmp_path / "back")):
        r = subprocess.run([sys.executable, "-m", "mema.cli.clinic", cmd, str(a), str(b), "--key", str(keyfile), "--method", "blur",
                            "--audit", str(audit), "--quiet"] + (["--seal"] if cmd == "anonymize" else []), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outputs += r.stdout + r.stderr
    entries = _audit(audit)
    key = read_key(keyfile)
    assert [e.action for e in entries] == ["anonymize"] * 4 + ["restore"] * 4
    assert {e.output for e in entries} == {"crop.png", "clinic a/photo.png", "clinic a/group.png", "scan.png"}
    assert all(e.key_id == key.key_id and e.user == getpass.getuser() and e.host and e.time.endswith("+00:00") for e in entries)
    restored = {e.output: e for e in entries if e.action == "restore"}
    for e in entries[:4]:
        assert restored[e.output].input_sha256 == e.output_sha256  # the chain from photo to restoration
    text = audit.read_text()
    assert "Patient Jane" not in text and str(tmp_path) not in text and "photo.jpg" not in text
    secret_b64 = json.loads(keyfile.read_text())["secret"]
    for haystack in (text, outputs):
        assert secret_b64 not in haystack and key.secret.hex() not in haystack and base64.b64encode(key.secret).decode() not in haystack
    assert os.stat(audit).st_mode & 0o777 == 0o600


def test_a_key_file_others_can_read_is_refused(tmp_path, faces, keyfile, mema):
    src = _save(tmp_path / "in" / "a.png", _one(faces))
    os.chmod(keyfile, 0o644)
    code, _, err = mema("anonymize", src, tmp_path / "anon", "--key", keyfile)
    assert code == 2 and f"run 'chmod 600 {keyfile}'" in err and "mode 0644" in err and not (tmp_path / "anon").exists()


# --- every input accounted for ---------------------------------------------------------------------------------

def test_bad_inputs_are_each_listed_with_a_reason(tmp_path, faces, keyfile, mema):
    src = tmp_path / "in"
    _save(src / "ok.png", _one(faces))
    (src / "empty.png").write_bytes(b"")
    full = src / "full.png"
    _save(full, _one(faces, i=2))
    (src / "truncated.png").write_bytes(full.read_bytes()[:2000])
    (src / "notes.txt").write_text("not an image")
    _save(src / "noface.png", _photo(faces, 200, 150, []))
    cv2.imwrite(str(src / "deep.png"), (_one(faces, i=3)[..., ::-1].astype(np.uint16) * 257))  # 16-bit RGB
    Image.fromarray(_one(faces, i=1)).convert("CMYK").save(src / "cmyk.jpg", quality=95)
    _save(src / "Ünïcødé 患者.png", _one(faces, i=0))
    _save(src / "group.png", _group(faces))
    Image.fromarray(faces[0]).save(src / "pages.tif", save_all=True, append_images=[Image.fromarray(faces[1])])
    (src / ".DS_Store").write_bytes(b"\x00\x01")
    code, out, err = mema("anonymize", src, tmp_path / "anon", "--key", keyfile)
    skipped = _skipped(err)
    assert code == 1
    assert set(skipped) == {"empty.png", "truncated.png", "notes.txt", "noface.png", "pages.tif"}
    assert "0 bytes" in skipped["empty.png"] and "truncated" in skipped["truncated.png"]
    assert "not an image Pillow can read" in skipped["notes.txt"] and "no face found" in skipped["noface.png"]
    assert "2 frames" in skipped["pages.tif"]
    assert sorted(_tree(tmp_path / "anon")) == sorted(["cmyk.png", "deep.png", "full.png", "group.png", "ok.png", "Ünïcødé 患者.png"])
    assert "1 hidden file(s) ignored" in out and "5 skipped" in out
    notes = {e.output: e.note for e in _audit(tmp_path / "mema-audit.jsonl")}
    assert "CMYK converted" in notes["cmyk.png"] and "16-bit RGB reduced to 8-bit" in notes["deep.png"] and "4 face(s)" in notes["group.png"]
    code, _, err = mema("restore", tmp_path / "anon", tmp_path / "back", "--key", keyfile)
    assert code == 0 and np.array_equal(read_rgb(tmp_path / "back" / "Ünïcødé 患者.png")[0], read_rgb(src / "Ünïcødé 患者.png")[0]), err


def test_symlinks_are_followed_without_loops(tmp_path, faces, keyfile, mema):
    outside = _save(tmp_path / "elsewhere" / "real.png", _one(faces))
    src = tmp_path / "in"
    _save(src / "sub" / "b.png", _one(faces, i=2))
    (src / "link.png").symlink_to(outside)
    (src / "sub" / "loop").symlink_to(src, target_is_directory=True)
    (src / "broken.png").symlink_to(tmp_path / "nothing.png")
    code, _, err = mema("anonymize", src, tmp_path / "anon", "--key", keyfile)
    skipped = _skipped(err)
    assert code == 1 and set(skipped) == {"broken.png", "sub/loop"}, err
    assert "broken symlink" in skipped["broken.png"] and "loop" in skipped["sub/loop"]
    assert sorted(_tree(tmp_path / "anon")) == ["link.png", "sub/b.png"]


def test_exif_orientation_is_applied(tmp_path, faces, keyfile, mema):
    upright = _one(faces)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # the camera's sensor order
    exif = stored.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise, i.e. upright
    path = tmp_path / "in" / "rotated.jpg"
    path.parent.mkdir()
    stored.save(path, quality=95, exif=exif)
    code, out, err = mema("anonymize", path, tmp_path / "anon", "--key", keyfile)
    assert code == 0 and "(1 face(s))" in out, err
    assert read_rgb(tmp_path / "anon" / "rotated.png")[0].shape == upright.shape
    assert "EXIF orientation 6 applied" in _audit(tmp_path / "mema-audit.jsonl")[0].note
    assert mema("restore", tmp_path / "anon", tmp_path / "back", "--key", keyfile)[0] == 0
    back = read_rgb(tmp_path / "back" / "rotated.png")[0]
    assert back.shape == upright.shape and np.abs(back.astype(int) - upright).mean() < 3


def test_a_photo_whose_face_fails_is_refused_whole(tmp_path, faces, keyfile, mema):
    _save(tmp_path / "in" / "group.png", _group(faces))
    _save(tmp_path / "in" / "one.png", _one(faces))
    code, _, err = mema("anonymize", tmp_path / "in", tmp_path / "anon", "--key", keyfile, "--method", "tests.test_clinic:FailsOnSecondFace")
    assert code == 1 and "not all 4 face(s) could be anonymized, so nothing was written" in _skipped(err)["group.png"]
    assert sorted(_tree(tmp_path / "anon")) == ["one.png"]


class FailsOnSecondFace:
    """Blur that fails whenever a call holds more than one face (a method's own failure)."""

    info = MethodInfo(name="fails-on-second-face", version="0", licence="Apache-2.0")

    def anonymize(self, images, key=None):
        if len(images) > 1:
            raise RuntimeError("face 2 has no landmarks")
        return np.stack([cv2.GaussianBlur(im, (0, 0), 6) for im in images])


# --- locking, disks, kills, resume ------------------------------------------------------------------------------

def test_a_second_run_on_one_output_is_locked_out(tmp_path, faces, keyfile, mema):
    from mema.clinic import OutputLock

    _save(tmp_path / "in" / "a.png", _one(faces))
    (tmp_path / "anon").mkdir()
    with OutputLock(tmp_path / "anon"):
        code, _, err = mema("anonymize", tmp_path / "in", tmp_path / "anon", "--key", keyfile)
    assert code == 2 and "another mema run is writing to" in err and not (tmp_path / "mema-audit.jsonl").exists()
    assert mema("anonymize", tmp_path / "in", tmp_path / "anon", "--key", keyfile)[0] == 0
    assert not (tmp_path / "anon" / ".mema.lock").exists()


@pytest.mark.parametrize("code_", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_stops_cleanly_and_resumes(tmp_path, faces, keyfile, mema, monkeypatch, code_):
    import mema.clinic as clinic

    src = tmp_path / "in"
    for i in range(3):
        _save(src / f"p{i}.png", _one(faces, i=i))
    real = clinic.atomic_write_bytes
    calls = []

    def failing(path, data, mode=None):  # the disk fills (or turns read-only) at the second file
        calls.append(path)
        if len(calls) == 2:
            raise OSError(code_, os.strerror(code_))
        return real(path, data, mode)

    monkeypatch.setattr(clinic, "atomic_write_bytes", failing)
    code, _, err = mema("anonymize", src, tmp_path / "anon", "--key", keyfile)
    assert code == 2 and f"stopped: cannot write p1.png" in err and os.strerror(code_) in err and "run the same command again" in err
    assert sorted(_tree(tmp_path / "anon")) == ["p0.png"]
    monkeypatch.setattr(clinic, "atomic_write_bytes", real)
    code, out, _ = mema("anonymize", src, tmp_path / "anon", "--key", keyfile)
    assert code == 0 and "anonymized 2 image(s) (2 face(s)), 1 already done" in out


def test_resume_skips_what_is_done_and_redoes_what_changed(tmp_path, faces, keyfile, mema):
    src = _folder(faces, tmp_path / "in")
    args = ("anonymize", src, tmp_path / "anon", "--key", keyfile)
    assert mema(*args)[0] == 0
    first = _tree(tmp_path / "anon")
    code, out, _ = mema(*args)
    assert code == 0 and "anonymized 0 image(s) (0 face(s)), 4 already done" in out and len(_audit(tmp_path / "mema-audit.jsonl")) == 4
    (tmp_path / "anon" / "crop.png").unlink()
    code, out, _ = mema(*args)
    assert code == 0 and "anonymized 1 image(s)" in out and _tree(tmp_path / "anon") == first


class _SlowNetworks:
    """ROFI's networks, slowed down per photo so that a kill lands mid-run (outputs unchanged)."""

    def __new__(cls):
        from mema.baselines.rofi.method import ROFINetworks

        class Slow(ROFINetworks):
            def anonymize(self, images, key=None):
                time.sleep(0.5)
                return super().anonymize(images, key)

        return Slow()


def SlowROFI():
    from mema.baselines.rofi.method import DESCRIPTION
    from mema.sealing import Sealed

    return Sealed(_SlowNetworks(), name="rofi", description=DESCRIPTION)


def test_kill_9_mid_run_then_resume_gives_identical_bytes(tmp_path, faces, keyfile, mema):
    src = tmp_path / "in"
    for i in range(6):
        _save(src / f"p{i}.png", _one(faces, i=i, seed=i))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "mema.cli.clinic", "anonymize", str(src), str(tmp_path / "killed"), "--key", str(keyfile),
           "--method", "tests.test_clinic:SlowROFI", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list((tmp_path / "killed").glob("p*.png")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = sorted(p.name for p in (tmp_path / "killed").glob("p*.png"))
    assert 1 <= len(written) < 6, written  # the kill landed mid-run
    code, out, err = mema("anonymize", src, tmp_path / "killed", "--key", keyfile)
    assert code == 0 and "already done" in out, err
    assert mema("anonymize", src, tmp_path / "clean", "--key", keyfile, "--audit", tmp_path / "clean.jsonl")[0] == 0
    killed = {k: v for k, v in _tree(tmp_path / "killed").items()}
    assert killed == _tree(tmp_path / "clean")  # byte-identical, no temporary or lock file left
    assert sorted(e.output for e in _audit(tmp_path / "mema-audit.jsonl")) == [f"p{i}.png" for i in range(6)]


# --- release -------------------------------------------------------------------------------------------------

def test_release_strips_the_seal(tmp_path, faces, keyfile, mema, rofi):
    from mema.imageio import write_png
    from mema.photo import read_container
    from mema.sealing import open_seal

    src = _save(tmp_path / "in" / "a.png", _one(faces))
    assert mema("anonymize", src, tmp_path / "anon", "--key", keyfile)[0] == 0
    write_png(tmp_path / "anon" / "crop.png", rofi.anonymize(faces[:1], key=read_key(keyfile))[0])  # a low-bit sealed crop
    code, out, err = mema("release", tmp_path / "anon", tmp_path / "shared")
    assert code == 0 and "released 2 image(s)" in out, err
    released = tmp_path / "shared" / "a.png"
    c = read_container(released.read_bytes())
    assert c.state == "released" and c.ciphertext == b"" and c.key_id is None and c.header.regions is None and b"regions" not in c.header_bytes
    assert np.array_equal(read_rgb(released)[0], read_rgb(tmp_path / "anon" / "a.png")[0])  # the same pixels
    crop = read_rgb(tmp_path / "shared" / "crop.png")[0]
    assert open_seal(crop, read_key(keyfile)).status == "no-seal"
    assert np.abs(crop.astype(int) - read_rgb(tmp_path / "anon" / "crop.png")[0]).max() <= 3
    code, _, err = mema("restore", tmp_path / "shared", tmp_path / "back", "--key", keyfile)
    assert code == 1 and "a released image: its seal was removed" in _skipped(err)["a.png"] and _tree(tmp_path / "back") == {}
    code, _, err = mema("release", tmp_path / "in", tmp_path / "shared2")
    assert code == 1 and "not an image mema anonymized" in _skipped(err)["a.png"] and _tree(tmp_path / "shared2") == {}


# --- messages ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "case,match",
    [
        ("missing key", "does not exist"),
        ("corrupt key", "is not a MeMa key"),
        ("missing input", "does not exist"),
        ("empty input folder", "no files under"),
        ("no key", "needs a key"),
        ("unknown method", "unknown method"),
        ("bad option", "unrecognized arguments"),
        ("output is a file", "is a file; give a folder"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(tmp_path, faces, keyfile, mema, case, match):
    src = tmp_path / "in"
    _save(src / "x.png", _one(faces))
    key, method, out, extra = keyfile, "rofi", tmp_path / "out", []
    if case == "missing key":
        key = tmp_path / "nope.key"
    elif case == "corrupt key":
        key = tmp_path / "bad.key"
        key.write_text('{"format": "mema-key-v1", "sec')
        os.chmod(key, 0o600)
    elif case == "missing input":
        src = tmp_path / "nothing"
    elif case == "empty input folder":
        src = tmp_path / "empty"
        (src / ".hidden").mkdir(parents=True)
    elif case == "unknown method":
        method = "no-such-method"
    elif case == "bad option":
        extra = ["--frobnicate"]
    elif case == "output is a file":
        out = _save(tmp_path / "out.png", faces[0])
    argv = ["anonymize", src, out, "--method", method] + ([] if case == "no key" else ["--key", key]) + extra
    code, _, err = mema(*argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and match in lines[0] and lines[0].startswith("mema: "), err


def test_console_script_error_has_no_traceback(tmp_path, faces):
    bad = tmp_path / "bad.key"
    bad.write_text("garbage")
    os.chmod(bad, 0o600)
    _save(tmp_path / "in" / "x.png", _one(faces))
    r = subprocess.run([sys.executable, "-m", "mema.cli.clinic", "anonymize", str(tmp_path / "in"), str(tmp_path / "out"), "--key", str(bad),
                        "--method", "blur", "--seal"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1 and "not a MeMa key" in r.stderr
