"""``mema``: anonymize and restore patient photos with a key, for clinics and data stewards.

    mema keygen KEYFILE                                          new key (mode 0600); prints its id
    mema anonymize IN OUT --key KEYFILE [--method rofi] [--batch-size 32] [--audit FILE]
    mema restore   IN OUT --key KEYFILE [--method rofi] [--audit FILE]

IN is a folder of PNG/JPEG face crops (searched recursively) or one image; OUT is a folder. Outputs
are PNG files with the inputs' relative names. Images must be square face crops; a method that
declares its crop size gets other sizes resized when anonymizing (with a note), never when restoring.
A run that was interrupted resumes: outputs already recorded in the audit log with the same method,
key and input are skipped.

Every image written adds one line to the append-only audit log (default: mema-audit.jsonl beside OUT):
UTC time, user, host, action, method and version, key id, sha256 of input and output, and the
output's relative name. No image content, key or input path is ever written to it.

Keep the key file secret and backed up: without it, anonymized photos cannot be restored.
Exit status: 0 done, 1 some images were refused (listed), 2 nothing done (a message says why), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mema import runtime


def _err(msg: str) -> None:
    print(f"mema: {msg}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mema", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    kg = sub.add_parser("keygen", help="write a new key file (mode 0600) and print its id")
    kg.add_argument("keyfile", type=Path)
    for name, what in (("anonymize", "anonymize a folder of face crops"), ("restore", "restore anonymized images with their key")):
        s = sub.add_parser(name, help=what)
        s.add_argument("input", type=Path, help="folder of PNG/JPEG images (recursive) or one image")
        s.add_argument("output", type=Path, help="output folder (created)")
        s.add_argument("--key", type=Path, help="key file (from 'mema keygen'); required by reversible methods")
        s.add_argument("--method", default="rofi", help="method name or package.module:Class (default rofi)")
        s.add_argument("--batch-size", type=int, default=32)
        s.add_argument("--audit", type=Path, help="audit log (default: mema-audit.jsonl beside OUTPUT)")
        s.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _keygen(path: Path) -> int:
    from mema.keys import generate_key, write_key

    key = generate_key()
    try:
        write_key(path, key)
    except FileExistsError:
        _err(f"{path} already exists; refusing to overwrite a key (an overwritten key cannot restore its images)")
        return 2
    except FileNotFoundError:
        _err(f"cannot create {path}: its folder does not exist")
        return 2
    except OSError as exc:
        _err(f"cannot create {path}: {exc.strerror}")
        return 2
    print(key.key_id)
    return 0


def _run(args) -> int:
    from mema.audit import AuditLog, default_audit_path
    from mema.clinic import ClinicError, process
    from mema.keys import KeyFileError, read_key
    from mema.methods import MethodError, get_method
    from mema.weights import WeightsError

    if args.batch_size < 1:
        _err("--batch-size must be at least 1")
        return 2
    try:
        try:
            method = get_method(args.method)
        except (MethodError, WeightsError):
            raise
        except Exception as exc:  # a method's constructor failing (weights, device): one line, not a traceback
            raise MethodError(f"cannot load method {args.method!r}: {type(exc).__name__}: {exc}") from None
        reversible = method.info.reversible
        if args.command == "restore" and not reversible:
            raise ClinicError(f"method {method.info.name!r} is not reversible: its outputs cannot be restored")
        if reversible and args.key is None:
            raise ClinicError(f"method {method.info.name!r} needs a key: give --key FILE (make one with 'mema keygen FILE')")
        key = read_key(args.key) if args.key is not None and reversible else None
        audit = AuditLog(args.audit or default_audit_path(args.output))
        try:
            audit.check_writable()
        except OSError as exc:
            raise ClinicError(f"cannot write the audit log {audit.path}: {exc.strerror}") from None
        runtime.set_torch_threads()
        summary = process(args.command, method, key, args.input, args.output, audit, batch_size=args.batch_size, progress=not args.quiet)
    except (ClinicError, MethodError, KeyFileError, WeightsError) as exc:
        _err(str(exc))
        return 2
    except OSError as exc:  # e.g. the output disk is full or read-only
        _err(f"{exc.strerror or exc}{f': {Path(exc.filename).name}' if exc.filename else ''}")
        return 2
    except KeyboardInterrupt:
        _err("interrupted; run the same command again to resume")
        return 130
    for rel, reason in summary.refused:
        _err(f"skipped {rel}: {reason}")
    if summary.resized:
        _err(f"note: {len(summary.resized)} image(s) resized to the method's crop size (first: {summary.resized[0][0]}, {summary.resized[0][1]})")
    if summary.not_opened:
        _err(f"warning: {len(summary.not_opened)} image(s) carried no original this key opens (first: {summary.not_opened[0]}); "
             "their outputs are the neural restoration, not the original photo")
    done = f"{args.command.rstrip('e')}ed {summary.written} image(s)"
    if summary.already_done:
        done += f", {summary.already_done} already done"
    if summary.refused:
        done += f", {len(summary.refused)} refused (listed above)"
    print(f"{done}; audit log: {audit.path}")
    return 1 if summary.refused else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "keygen":
        return _keygen(args.keyfile)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
