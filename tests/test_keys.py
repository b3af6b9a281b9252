import json
import stat

import numpy as np
import pytest

from mema.keys import KeyFileError, generate_key, hkdf_sha256, key_from_seed, key_vector, read_key, write_key


def test_round_trip_mode_and_no_overwrite(tmp_path):
    k = generate_key()
    path = tmp_path / "k.key"
    write_key(path, k)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key(path) == k
    with pytest.raises(FileExistsError):
        write_key(path, generate_key())


def test_secret_never_in_repr_or_errors(tmp_path):
    k = generate_key()
    assert k.secret.hex() not in repr(k) and k.key_id in repr(k)
    path = tmp_path / "k.key"
    write_key(path, k)
    data = json.loads(path.read_text())
    data["key_id"] = "0" * 16
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    with pytest.raises(KeyFileError) as info:
        read_key(path)
    assert data["secret"] not in str(info.value)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "not a MeMa key"),
        (b'{"format": "mema-key-v1", "key_id": "ab", "secr', "not a MeMa key"),
        (b'{"format": "other-v9", "secret": "AAAA"}', "another method"),
        (b'{"format": "mema-key-v1", "key_id": "x", "secret": "AAAA"}', "wrong length"),
        (b"\xff\xfe\x00garbage", "not a MeMa key"),
    ],
)
def test_bad_key_files(tmp_path, content, match):
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=match):
        read_key(path)


def test_missing_key_file(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist"):
        read_key(tmp_path / "none.key")


def test_key_vector_is_deterministic_and_key_specific():
    a, b = key_from_seed(1), key_from_seed(2)
    assert np.array_equal(key_vector(a), key_vector(a))
    assert key_vector(a).shape == (512,)
    assert abs(np.corrcoef(key_vector(a), key_vector(b))[0, 1]) < 0.2


def test_hkdf_rfc5869_case_1():
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = hkdf_sha256(ikm, info, 42, salt=salt)
    assert okm.hex() == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_key_readable_by_group_or_others_is_refused_with_the_fix(tmp_path, mode):
    path = tmp_path / "k.key"
    write_key(path, generate_key())
    path.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        read_key(path)
    assert f"mode {mode:04o}" in str(info.value) and f"chmod 600 {path}" in str(info.value)
    path.chmod(0o600)
    assert read_key(path).key_id
    path.chmod(0o400)  # read-only for the owner is fine too
    assert read_key(path).key_id


def test_a_folder_is_not_a_key(tmp_path):
    with pytest.raises(KeyFileError, match="is a folder"):
        read_key(tmp_path)
