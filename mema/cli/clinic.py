"""``mema``: anonymize, restore and release patient photos with a key, for clinics and data stewards.

    mema keygen KEYFILE                                  new key (mode 0600); prints its id
    mema anonymize IN OUT --key KEYFILE [--method rofi] [--seal] [--overwrite] [--audit FILE]
    mema restore   IN OUT --key KEYFILE [--allow-virtual [--method rofi]] [--overwrite] [--audit FILE]
    mema release   IN OUT [--overwrite] [--audit FILE]

IN is a folder (searched recursively; symlinks followed, hidden files ignored) or one file, in any format
Pillow reads (PNG, JPEG, WebP, TIFF, ...); EXIF orientation is applied. OUT is a folder; outputs are PNG
with the inputs' relative names. Each photo may hold several faces: every face found is anonymized at the
method's resolution and pasted back into the full-resolution photo; a photo with no face, or with a face
that could not be anonymized, is skipped whole. A reversible method (rofi) seals each photo's original
face regions into its PNG with the key (--seal does so for any method).

restore writes NAME.png only when the file's seal opens with this key: the original, bit-exact. A wrong
key, an edited or re-encoded file, or a photo never anonymized is listed and nothing is written for it
(--allow-virtual writes the method's learned restore as NAME.virtual.png: a face that is not the patient).
It writes only into a new folder or one holding nothing but mema's outputs.

release writes copies without the seal: pseudonymous (sealed, restorable with the key) images become
anonymized ones (nothing in them restores the original), for sharing outside the clinic.

Nothing is overwritten that the audit log does not show mema wrote (--overwrite allows it), nor ever an
input. One run at a time per output folder. A run that was interrupted resumes where it stopped.

Every file written adds one line to the append-only audit log (default: mema-audit.jsonl beside OUT):
UTC time, user, host, action, method and version, key id, sha256 of input and output, and the output's
relative name. No image content, key or input path is ever written to it. --audit accepts only a new
file or an existing audit log.

Keep the key file private (mode 0600; others are refused) and backed up: without it nothing restores.
Keep the original photos too: a seal lives only as long as its PNG is not edited or re-encoded.

Exit status: 0 every input done (or done before); 1 some inputs were skipped or not restored (each is
listed on stderr with its reason, the others were done); 2 nothing was done or the run stopped (a usage
error, a bad key or audit log, a locked or unwritable output; one line says why; a re-run resumes);
130 interrupted (a re-run resumes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mema import runtime

EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _err(msg: str) -> None:
    print(f"mema: {msg}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's own usage block is for --help)
        _err(f"{message} (see '{self.prog} --help')")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mema", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    kg = sub.add_parser("keygen", help="write a new key file (mode 0600) and print its id")
    kg.add_argument("keyfile", type=Path)
    common = dict(formatter_class=argparse.RawDescriptionHelpFormatter)
    an = sub.add_parser("anonymize", help="anonymize every face in a folder of photos", **common)
    rs = sub.add_parser("restore", help="restore sealed photos with their key", **common)
    rl = sub.add_parser("release", help="copies without the seal, for sharing outside the clinic", **common)
    for s in (an, rs, rl):
        s.add_argument("input", type=Path, help="folder of images (recursive) or one image")
        s.add_argument("output", type=Path, help="output folder (created)")
        s.add_argument("--audit", type=Path, help="audit log: a new file or an existing one (default: mema-audit.jsonl beside OUTPUT)")
        s.add_argument("--overwrite", action="store_true", help="replace output files the audit log does not show mema wrote (never inputs)")
        s.add_argument("--quiet", action="store_true", help="no progress bar")
    an.add_argument("--key", type=Path, help="key file (from 'mema keygen'); needed by reversible methods and --seal")
    an.add_argument("--method", default="rofi", help="method name or package.module:Class (default rofi)")
    an.add_argument("--seal", action="store_true", help="seal the originals with the key even if the method is not reversible")
    an.add_argument("--batch-size", type=int, default=32, help="faces per method call (default 32)")
    rs.add_argument("--key", type=Path, required=True, help="the key file the photos were anonymized with")
    rs.add_argument("--allow-virtual", action="store_true",
                    help="for photos whose seal does not open, write the method's learned restore as NAME.virtual.png (not the patient)")
    rs.add_argument("--method", default="rofi", help="method whose learned restore --allow-virtual uses (default rofi)")
    return p


def _keygen(path: Path) -> int:
    from mema.keys import generate_key, write_key

    key = generate_key()
    try:
        write_key(path, key)
    except FileExistsError:
        _err(f"{path} already exists; refusing to overwrite a key (an overwritten key cannot restore its images)")
        return EXIT_USAGE
    except FileNotFoundError:
        _err(f"cannot create {path}: its folder does not exist")
        return EXIT_USAGE
    except OSError as exc:
        _err(f"cannot create {path}: {exc.strerror}")
        return EXIT_USAGE
    print(key.key_id)
    return EXIT_OK


def _load_method(spec: str):
    from mema.methods import MethodError, get_method
    from mema.weights import WeightsError

    try:
        return get_method(spec)
    except (MethodError, WeightsError):
        raise
    except Exception as exc:  # a method's constructor failing (weights, device): one line, not a traceback
        raise MethodError(f"cannot load method {spec!r}: {type(exc).__name__}: {exc}") from None


def _report(command: str, summary, audit_path: Path, key_id: str | None = None) -> int:
    for rel, reason in summary.skipped:
        _err(f"skipped {rel}: {reason}")
    if summary.notes:
        first = summary.notes[0]
        _err(f"note: {len(summary.notes)} image(s) converted on reading (first: {first[0]}: {first[1]}); the audit log has each")
    if summary.lossy:
        _err(f"note: {len(summary.lossy)} image(s) restored from a JPEG copy sealed in the low bits, not bit-exact (first: {summary.lossy[0]})")
    past = {"anonymize": "anonymized", "restore": "restored", "release": "released"}[command]
    written = summary.written - len(summary.virtual)
    done = f"{past} {written} image(s)"
    if command == "anonymize":
        done += f" ({summary.faces} face(s))"
    if summary.virtual:
        done += f", {len(summary.virtual)} virtual face(s) written as NAME.virtual.png (not the patient)"
    if summary.already_done:
        done += f", {summary.already_done} already done"
    if summary.skipped:
        done += f", {len(summary.skipped)} skipped (listed above)"
    if summary.hidden:
        done += f", {summary.hidden} hidden file(s) ignored"
    print(f"{done}; audit log: {audit_path}")
    if command == "anonymize" and key_id and summary.written:
        print(f"sealed with key id {key_id}: keep the key and the original photos; an edited or re-encoded copy no longer restores")
    return EXIT_SKIPPED if summary.skipped else EXIT_OK


def _run(args) -> int:
    from mema import clinic
    from mema.audit import AuditLog, AuditLogError, default_audit_path
    from mema.keys import KeyFileError, read_key
    from mema.methods import MethodError
    from mema.photo import PhotoError
    from mema.weights import WeightsError

    audit = AuditLog(args.audit or default_audit_path(args.output))
    progress = not args.quiet
    key = None
    try:
        if args.command == "anonymize":
            if args.batch_size < 1:
                raise clinic.ClinicError("--batch-size must be at least 1")
            method = _load_method(args.method)
            needs_key = method.info.reversible or args.seal
            if needs_key and args.key is None:
                why = "--seal" if args.seal and not method.info.reversible else f"method {method.info.name!r}"
                raise clinic.ClinicError(f"{why} needs a key: give --key FILE (make one with 'mema keygen FILE')")
            key = read_key(args.key) if args.key is not None and needs_key else None
            if args.key is not None and not needs_key:
                _err(f"note: {method.info.name} is not reversible, so the key is not used (add --seal to make the outputs restorable)")
            runtime.set_torch_threads()
            summary = clinic.anonymize(method, key, args.input, args.output, audit, seal=needs_key, batch_size=args.batch_size,
                                       overwrite=args.overwrite, progress=progress)
        elif args.command == "restore":
            key = read_key(args.key)
            runtime.set_torch_threads()
            summary = clinic.restore(key, args.input, args.output, audit, method_factory=lambda: _load_method(args.method),
                                     allow_virtual=args.allow_virtual, overwrite=args.overwrite, progress=progress)
        else:
            summary = clinic.release(args.input, args.output, audit, overwrite=args.overwrite, progress=progress)
    except (clinic.ClinicError, MethodError, KeyFileError, WeightsError, AuditLogError, PhotoError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    except OSError as exc:  # e.g. the output disk is full or read-only
        _err(f"{exc.strerror or exc}{f': {Path(exc.filename).name}' if exc.filename else ''}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted; run the same command again to resume")
        return EXIT_INTERRUPTED
    return _report(args.command, summary, audit.path, key.key_id if args.command == "anonymize" and key is not None else None)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already reported in one line)
        return int(exc.code or 0)
    if args.command == "keygen":
        return _keygen(args.keyfile)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
