# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The receiving side of off-host backup copies: a store of backup sets in one directory.

Standard library only: the same file runs as the forced command of a
dedicated SSH key on a backup host (``command="python3 offsite_store.py
/srv/nl-biomero",restrict`` in ``authorized_keys``; the client's command line
arrives in ``SSH_ORIGINAL_COMMAND``), and as a local process for a directory
target (an NFS or SMB mount). The sender (offsite.py) speaks to both the same
way.

A set arrives file by file into ``.partial-<set>/`` (``put``: stdin to EOF,
sha256 and size computed while writing). ``commit`` reads every file back
from disk, compares it with what the sender says it sent, and only then
renames the folder to ``<set>``: a set that is listed is whole and verified;
a failed or interrupted copy is only ever a ``.partial-`` folder, removed by
``abort`` or by the next copy of the same set. The key can do nothing but
these commands, inside the root, on names of the set stamp form.

Commands (one per invocation; the answer is one JSON line on stdout):
``put SET FILE`` (data on stdin), ``commit SET`` (the sender's list on stdin),
``abort SET``, ``list``, ``verify SET``, ``manifest SET``, ``get SET FILE``
(data on stdout), ``delete SET``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import shlex
import shutil
import sys

MANIFEST = "remote-manifest.json"
PARTIAL = ".partial-"
_SET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z$")
_CHUNK = 1 << 20


class StoreError(Exception):
    """A refused or failed store command (the message names the value)."""


def check_set_name(name):
    if not _SET.match(name or ""):
        raise StoreError("set name %r is not a backup set name (YYYY-MM-DDTHH-MM-SSZ)" % (name,))
    return name


def check_file_name(relative):
    parts = (relative or "").split("/")
    if not relative or relative.startswith("/") or any(part in ("", ".", "..") for part in parts) \
            or parts[0].startswith(PARTIAL) or relative == MANIFEST:
        raise StoreError("file name %r is not a relative path inside a set" % (relative,))
    return relative


def hash_file(path):
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Store:
    """Backup sets under ``root``: ``<root>/<set>/`` complete and verified, ``.partial-<set>/`` arriving."""

    def __init__(self, root):
        self.root = os.path.abspath(root)
        if not os.path.isdir(self.root):
            raise StoreError("store directory %s does not exist" % self.root)

    def _set_dir(self, name):
        return os.path.join(self.root, check_set_name(name))

    def _partial_dir(self, name):
        return os.path.join(self.root, PARTIAL + check_set_name(name))

    def put(self, name, relative, stream):
        """Write ``stream`` to the set's partial folder; returns its sha256 and size as written."""
        target = os.path.join(self._partial_dir(name), check_file_name(relative))
        if os.path.isdir(self._set_dir(name)):
            raise StoreError("set %s is already stored" % name)
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        temp = target + ".part"
        digest, size = hashlib.sha256(), 0
        with open(temp, "wb") as handle:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                handle.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
        return {"file": relative, "sha256": digest.hexdigest(), "bytes": size}

    def commit(self, name, sent):
        """Verify every file the sender sent (``{file: {sha256, bytes}}``) on disk, then publish the set."""
        partial = self._partial_dir(name)
        if not os.path.isdir(partial):
            raise StoreError("set %s has no files arriving (nothing was put)" % name)
        problems = []
        for relative, want in sorted(sent.items()):
            path = os.path.join(partial, check_file_name(relative))
            if not os.path.isfile(path):
                problems.append("%s is missing" % relative)
                continue
            sha256, size = hash_file(path)
            if (sha256, size) != (want.get("sha256"), want.get("bytes")):
                problems.append("%s: %d bytes sha256 %s stored, %s bytes sha256 %s sent"
                                % (relative, size, sha256, want.get("bytes"), want.get("sha256")))
        extra = sorted(set(self._files(partial)) - set(sent))
        problems += ["%s was not sent" % relative for relative in extra]
        if problems:
            raise StoreError("set %s failed verification: %s" % (name, "; ".join(problems)))
        record = {"set": name, "files": sent, "bytes": sum(item["bytes"] for item in sent.values())}
        with open(os.path.join(partial, MANIFEST), "w") as handle:
            json.dump(record, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(partial, self._set_dir(name))
        _fsync_dir(self.root)
        return {"set": name, "verified": True, "bytes": record["bytes"], "files": len(sent)}

    @staticmethod
    def _files(folder):
        for base, _dirs, files in os.walk(folder):
            for file_name in files:
                if file_name != MANIFEST:
                    yield os.path.relpath(os.path.join(base, file_name), folder)

    def abort(self, name):
        partial = self._partial_dir(name)
        shutil.rmtree(partial, ignore_errors=True)
        return {"set": name, "aborted": True}

    def _record(self, name):
        try:
            with open(os.path.join(self._set_dir(name), MANIFEST)) as handle:
                return json.load(handle)
        except (OSError, ValueError) as exc:
            raise StoreError("set %s has no readable %s: %s" % (name, MANIFEST, exc))

    def list(self):
        sets = []
        for entry in sorted(os.listdir(self.root)):
            if _SET.match(entry) and os.path.isdir(os.path.join(self.root, entry)):
                try:
                    record = self._record(entry)
                    sets.append({"set": entry, "bytes": record["bytes"], "files": len(record["files"])})
                except StoreError as exc:
                    sets.append({"set": entry, "error": str(exc)})
        partial = [entry[len(PARTIAL):] for entry in sorted(os.listdir(self.root)) if entry.startswith(PARTIAL)]
        return {"sets": sets, "partial": partial}

    def verify(self, name):
        """Read a stored set back and compare it with its record (a tampered copy fails, naming the file)."""
        record = self._record(name)
        folder = self._set_dir(name)
        problems = []
        for relative, want in sorted(record["files"].items()):
            path = os.path.join(folder, relative)
            try:
                sha256, size = hash_file(path)
            except OSError as exc:
                problems.append("%s: %s" % (relative, exc.strerror))
                continue
            if (sha256, size) != (want["sha256"], want["bytes"]):
                problems.append("%s differs from the copy that was verified" % relative)
        return {"set": name, "verified": not problems, "problems": problems}

    def manifest(self, name):
        """The record of a stored set: its files with their stored and plaintext checksums."""
        return self._record(name)

    def get(self, name, relative, out):
        path = os.path.join(self._set_dir(name), check_file_name(relative))
        with open(path, "rb") as handle:
            shutil.copyfileobj(handle, out, _CHUNK)

    def delete(self, name):
        folder = self._set_dir(name)
        if not os.path.isdir(folder):
            raise StoreError("set %s is not stored" % name)
        shutil.rmtree(folder)
        return {"set": name, "deleted": True}


def run_command(store, args, stdin, stdout):
    """Run one command; returns the JSON-able answer (``get`` writes its data to ``stdout`` instead)."""
    usage = {"put": 2, "commit": 1, "abort": 1, "list": 0, "verify": 1, "manifest": 1, "get": 2, "delete": 1}
    if not args or args[0] not in usage or len(args) - 1 != usage[args[0]]:
        raise StoreError("command %r is not one of: put SET FILE, commit SET, abort SET, list, verify SET, "
                         "manifest SET, get SET FILE, delete SET" % " ".join(args))
    command, rest = args[0], args[1:]
    if command == "put":
        return store.put(rest[0], rest[1], stdin)
    if command == "commit":
        return store.commit(rest[0], json.loads(stdin.read().decode("utf-8") or "{}"))
    if command == "get":
        store.get(rest[0], rest[1], stdout)
        return None
    return getattr(store, command)(*rest)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        sys.stderr.write("usage: offsite_store.py ROOT [COMMAND ...] (or the command in SSH_ORIGINAL_COMMAND)\n")
        return 2
    # Under a forced command the client's words arrive here, never as arguments of a shell.
    args = shlex.split(os.environ["SSH_ORIGINAL_COMMAND"]) if "SSH_ORIGINAL_COMMAND" in os.environ else argv[1:]
    stdout = sys.stdout.buffer
    try:
        answer = run_command(Store(argv[0]), args, sys.stdin.buffer, stdout)
    except (StoreError, OSError, ValueError) as exc:
        sys.stderr.write("offsite store: %s\n" % exc)
        return 1
    if answer is not None:
        stdout.write((json.dumps(answer, sort_keys=True) + "\n").encode("utf-8"))
    stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
