"""User mistakes at the command line give one clear line and a non-zero exit, not a traceback."""

import subprocess
import sys


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "mema.cli.data", *args], capture_output=True, text=True, env=env)


def test_verify_missing_folder(tmp_path):
    r = run("verify", str(tmp_path / "nope"), "--quiet")
    assert r.returncode == 1 and "not a folder" in r.stdout and "Traceback" not in r.stderr


def test_verify_a_folder_that_is_not_a_corpus(tmp_path):
    r = run("verify", str(tmp_path), "--quiet")
    assert r.returncode == 1 and "dataset.json: missing" in r.stdout and "Traceback" not in r.stderr


def test_verify_ok_and_json(tiny_corpus):
    r = run("verify", str(tiny_corpus), "--quiet", "--embedding-sample", "0", "--json")
    assert r.returncode == 0 and '"ok": true' in r.stdout


def test_build_into_foreign_folder(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    r = run("build", "tiny", "--out", str(tmp_path), "--quiet")
    assert r.returncode == 2 and "not a corpus build folder" in r.stderr and "Traceback" not in r.stderr


def test_export_nnunet_of_a_non_corpus(tmp_path):
    r = run("export-nnunet", str(tmp_path), "--out", str(tmp_path / "raw"))
    assert r.returncode == 2 and "dataset.json" in r.stderr


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in ("build", "verify", "export-nnunet", "weights"))


def test_weights_command():
    r = run("weights")
    assert r.returncode == 0 and "dcgan_digiface" in r.stdout and "research-only" in r.stdout
