"""The clinic CLI ``mema``: keys, anonymize/restore round trip, resume, audit log, and bad input.

Uses the reversible toy ``tests.toy_methods:KeyedShuffle`` on small synthetic images.
"""

import base64
import getpass
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mema.audit import AuditEntry
from mema.cli.clinic import main
from mema.imageio import read_rgb
from mema.keys import generate_key, read_key, write_key
from mema.methods import MethodInfo
from tests.toy_methods import KeyedShuffle

SHUFFLE = "tests.toy_methods:KeyedShuffle"


class SizedShuffle(KeyedShuffle):
    """KeyedShuffle that declares a 32-px crop size."""

    info = MethodInfo(name="sized-shuffle", version="0", reversible=True, key_scheme="mema-key-v1", licence="Apache-2.0", params={"image_size": 32})


class SealedShuffle(KeyedShuffle):
    """KeyedShuffle that, like ROFI, reports whether a sealed original opens: here only for the first image."""

    def opened(self, images, key):
        return [images[0]] + [None] * (len(images) - 1)


def _faces(folder, names=("sub/a.png", "b.jpg", "sub/deeper/c.png"), size=64, seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, quality=95)
    return folder


@pytest.fixture
def keyfile(tmp_path):
    path = tmp_path / "clinic.key"
    write_key(path, generate_key())
    return path


def _run(capsys, *argv):
    code = main([str(a) for a in argv] + ["--quiet"] * (argv[0] != "keygen"))
    out, err = capsys.readouterr()
    return code, out, err


def _audit(path):
    return [AuditEntry.model_validate_json(line) for line in path.read_text().splitlines()]


def test_keygen_mode_0600_prints_only_the_id_and_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "new.key"
    code, out, _ = _run(capsys, "keygen", path)
    assert code == 0 and out.strip() == read_key(path).key_id
    assert os.stat(path).st_mode & 0o777 == 0o600
    before = path.read_bytes()
    code, out, err = _run(capsys, "keygen", path)
    assert code == 2 and "refusing to overwrite" in err and out == "" and path.read_bytes() == before
    code, _, err = _run(capsys, "keygen", tmp_path / "no" / "such" / "folder.key")
    assert code == 2 and "does not exist" in err


def test_round_trip_is_exact_and_keeps_relative_names(tmp_path, keyfile, capsys):
    src = _faces(tmp_path / "in")
    code, out, err = _run(capsys, "anonymize", src, tmp_path / "anon", "--key", keyfile, "--method", SHUFFLE, "--batch-size", 2)
    assert code == 0, err
    assert sorted(p.relative_to(tmp_path / "anon").as_posix() for p in (tmp_path / "anon").rglob("*.png")) == ["b.png", "sub/a.png", "sub/deeper/c.png"]
    assert "anonymized 3 image(s)" in out
    code, out, err = _run(capsys, "restore", tmp_path / "anon", tmp_path / "back", "--key", keyfile, "--method", SHUFFLE)
    assert code == 0, err
    for name in ("sub/a.png", "b.jpg", "sub/deeper/c.png"):
        original = read_rgb(src / name)[0]
        out_name = name.replace(".jpg", ".png")
        assert not np.array_equal(read_rgb(tmp_path / "anon" / out_name)[0], original)
        assert np.array_equal(read_rgb(tmp_path / "back" / out_name)[0], original)


def test_resume_skips_logged_outputs_and_redoes_missing_or_altered_ones(tmp_path, keyfile, capsys):
    src = _faces(tmp_path / "in")
    args = ("anonymize", src, tmp_path / "anon", "--key", keyfile, "--method", SHUFFLE)
    assert _run(capsys, *args)[0] == 0
    log = tmp_path / "mema-audit.jsonl"
    assert len(_audit(log)) == 3
    code, out, _ = _run(capsys, *args)
    assert code == 0 and "anonymized 0 image(s), 3 already done" in out and len(_audit(log)) == 3
    (tmp_path / "anon" / "b.png").unlink()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "anon" / "sub" / "a.png")
    code, out, _ = _run(capsys, *args)
    assert code == 0 and "anonymized 2 image(s), 1 already done" in out
    assert [e.output for e in _audit(log)][3:] == ["b.png", "sub/a.png"]
    _run(capsys, "restore", tmp_path / "anon", tmp_path / "back", "--key", keyfile, "--method", SHUFFLE)
    assert np.array_equal(read_rgb(tmp_path / "back" / "sub" / "a.png")[0], read_rgb(src / "sub" / "a.png")[0])


def test_audit_log_records_who_what_and_hashes_but_no_secret_or_input_path(tmp_path, keyfile):
    src = _faces(tmp_path / "Patient Jane Doe 1970-01-01")
    audit = tmp_path / "logs" / "audit.jsonl"
    audit.parent.mkdir()
    outputs = ""
    for cmd, a, b in (("anonymize", src, tmp_path / "anon"), ("restore", tmp_path / "anon", tmp_path / "back")):
        r = subprocess.run([sys.executable, "-m", "mema.cli.clinic", cmd, str(a), str(b), "--key", str(keyfile), "--method", SHUFFLE,
                            "--audit", str(audit)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outputs += r.stdout + r.stderr
    entries = _audit(audit)
    key = read_key(keyfile)
    assert [e.action for e in entries] == ["anonymize"] * 3 + ["restore"] * 3
    assert {e.output for e in entries} == {"b.png", "sub/a.png", "sub/deeper/c.png"}
    assert all(e.key_id == key.key_id and e.method == "keyed-shuffle" and e.user == getpass.getuser() and e.host for e in entries)
    assert all(e.time.endswith("+00:00") for e in entries)
    restored = {e.output: e for e in entries if e.action == "restore"}
    for e in entries[:3]:
        assert restored[e.output].input_sha256 == e.output_sha256  # the chain from photo to restoration
    text = audit.read_text()
    assert "Patient Jane" not in text and str(tmp_path) not in text and "b.jpg" not in text
    secret_b64 = json.loads(keyfile.read_text())["secret"]
    for haystack in (text, outputs):
        assert secret_b64 not in haystack and key.secret.hex() not in haystack and base64.b64encode(key.secret).decode() not in haystack
    assert os.stat(audit).st_mode & 0o777 == 0o600


def test_a_wrong_key_does_not_restore(tmp_path, keyfile, capsys):
    src = _faces(tmp_path / "in", names=("a.png",))
    _run(capsys, "anonymize", src, tmp_path / "anon", "--key", keyfile, "--method", SHUFFLE)
    other = tmp_path / "other.key"
    write_key(other, generate_key())
    # the audit log knows which key anonymized the image: refused with the key ids
    code, _, err = _run(capsys, "restore", tmp_path / "anon", tmp_path / "back", "--key", other, "--method", SHUFFLE)
    assert code == 1 and "anonymized with key id" in err and not (tmp_path / "back" / "a.png").exists()
    # without that log, the wrong key runs and yields a wrong image
    code, _, err = _run(capsys, "restore", tmp_path / "anon", tmp_path / "back", "--key", other, "--method", SHUFFLE, "--audit", tmp_path / "elsewhere.jsonl")
    assert code == 0, err
    assert not np.array_equal(read_rgb(tmp_path / "back" / "a.png")[0], read_rgb(src / "a.png")[0])


def test_sizes_non_square_refused_other_sizes_resized_with_a_note(tmp_path, keyfile, capsys):
    src = _faces(tmp_path / "in", names=("big.png",), size=64)
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(src / "wide.png")
    method = "tests.test_clinic:SizedShuffle"
    code, out, err = _run(capsys, "anonymize", src, tmp_path / "anon", "--key", keyfile, "--method", method)
    assert code == 1 and "skipped wide.png: image is 64x40, not square" in err and "resized" in err
    assert read_rgb(tmp_path / "anon" / "big.png")[0].shape == (32, 32, 3)
    assert "resized from 64x64 to 32x32" in _audit(tmp_path / "mema-audit.jsonl")[0].note
    code, _, err = _run(capsys, "restore", src / "big.png", tmp_path / "back", "--key", keyfile, "--method", method)
    assert code == 1 and "restore the file as written" in err


@pytest.mark.parametrize(
    "case,match",
    [
        ("missing key", "does not exist"),
        ("corrupt key", "is not a MeMa key"),
        ("empty folder", "no PNG or JPEG images"),
        ("unreadable image", "skipped broken.png: "),
        ("no key", "needs a key"),
        ("restore irreversible", "is not reversible"),
        ("unknown method", "unknown method"),
        ("output inside input", "must not be the input folder or inside it"),
        ("name clash", "would both be written as x.png"),
    ],
)
def test_bad_input_gives_a_one_line_message(tmp_path, keyfile, capsys, case, match):
    src = tmp_path / "in"
    src.mkdir()
    key = keyfile
    action, method, out = "anonymize", SHUFFLE, tmp_path / "out"
    if case != "empty folder":
        _faces(src, names=("x.png",))
    if case == "missing key":
        key = tmp_path / "nope.key"
    elif case == "corrupt key":
        key = tmp_path / "bad.key"
        key.write_text('{"format": "mema-key-v1", "sec')
    elif case == "unreadable image":
        (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    elif case == "restore irreversible":
        action, method = "restore", "blur"
    elif case == "unknown method":
        method = "no-such-method"
    elif case == "output inside input":
        out = src / "out"
    elif case == "name clash":
        _faces(src, names=("x.jpg",))
    argv = [action, src, out, "--method", method] + ([] if case == "no key" else ["--key", key])
    code, _, err = _run(capsys, *argv)
    lines = [l for l in err.splitlines() if l.strip()]
    assert code != 0 and len(lines) == 1 and match in lines[0] and lines[0].startswith("mema: "), err
    if case == "unreadable image":
        assert code == 1 and (out / "x.png").exists()  # the readable image was still done


def test_console_script_error_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_text("garbage")
    _faces(tmp_path / "in", names=("x.png",))
    r = subprocess.run([sys.executable, "-m", "mema.cli.clinic", "anonymize", str(tmp_path / "in"), str(tmp_path / "out"), "--key", str(bad),
                        "--method", SHUFFLE], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1 and "not a MeMa key" in r.stderr


def test_restore_warns_for_images_whose_sealed_original_does_not_open(tmp_path, keyfile, capsys):
    src = _faces(tmp_path / "in", names=("a.png", "b.png"))
    method = "tests.test_clinic:SealedShuffle"
    _run(capsys, "anonymize", src, tmp_path / "anon", "--key", keyfile, "--method", method)
    code, _, err = _run(capsys, "restore", tmp_path / "anon", tmp_path / "back", "--key", keyfile, "--method", method)
    assert code == 0 and "1 image(s) carried no original this key opens (first: b.png)" in err
    notes = {e.output: e.note for e in _audit(tmp_path / "mema-audit.jsonl") if e.action == "restore"}
    assert "no sealed original" in notes["b.png"] and "no sealed original" not in notes["a.png"]
