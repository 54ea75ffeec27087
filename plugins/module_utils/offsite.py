# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copies of complete backup sets off the host: verified at the target, optionally encrypted.

A target is a directory (an NFS or SMB mount) or a backup host over SSH whose
dedicated key runs offsite_store.py as its forced command. Both are spoken to
the same way: one store command per process (the local store script, or ssh),
files streamed to its stdin. With ``recipients`` every file goes through
``age`` on its way (public keys only: the private key is never needed on the
database host, and no plaintext copy is written anywhere). The store hashes
what it writes, and ``commit`` reads it all back from its disk before the set
is listed there: a half-copied set is never listed as good.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import inspect
import json
import os
import shlex
import shutil
import subprocess
import sys

from ansible_collections.nl_biomero.database.plugins.module_utils.backup_set import SET_MANIFEST
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils import offsite_store
from ansible_collections.nl_biomero.database.plugins.module_utils.offsite_store import hash_file

_CHUNK = 1 << 20
ENCRYPTED_SUFFIX = ".age"


class OffsiteError(NlbError):
    """A copy to a target failed (the message names the target and the file)."""


def store_argv(target, words):
    """The command line that runs one store command (``words``) at ``target``."""
    if target.get("directory"):
        # the store's own source, run by this python: the same code as on a backup host, also when this
        # module runs from an Ansible payload zip (where offsite_store.py is no file to run)
        return [sys.executable, "-c", _store_source(), target["directory"]] + list(words)
    ssh = target["ssh"]
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=%d" % ssh.get("connect_timeout", 20),
            "-p", str(ssh.get("port") or 22)]
    if ssh.get("identity_file"):
        argv += ["-o", "IdentitiesOnly=yes", "-i", ssh["identity_file"]]
    if ssh.get("known_hosts"):
        argv += ["-o", "UserKnownHostsFile=%s" % ssh["known_hosts"], "-o", "StrictHostKeyChecking=yes"]
    # The receiving key's forced command reads these words from SSH_ORIGINAL_COMMAND.
    return argv + ["%s@%s" % (ssh["user"], ssh["host"]), " ".join(shlex.quote(word) for word in words)]


def _store_source():
    return inspect.getsource(offsite_store)


def set_files(set_path):
    """The set's files, relative and sorted, its manifest last (a copy cut short has no manifest)."""
    found = []
    for base, dirs, files in os.walk(set_path):
        dirs.sort()
        for name in sorted(files):
            found.append(os.path.relpath(os.path.join(base, name), set_path))
    return sorted(found, key=lambda relative: (relative == SET_MANIFEST, relative))


class Target:
    """One target of the configuration (``name``, ``directory`` or ``ssh``, ``keep``, ``recipients``)."""

    def __init__(self, spec, timeout=43200):
        self.spec = spec
        self.name = spec["name"]
        self.timeout = timeout

    def _fail(self, what, stderr):
        text = (stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise OffsiteError("target %s: %s: %s" % (self.name, what, text[-1] if text else "no answer"))

    def call(self, words, data=b""):
        """Run one store command; its JSON answer."""
        try:
            proc = subprocess.run(store_argv(self.spec, words), input=data, capture_output=True,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise OffsiteError("target %s: %s took longer than %s s" % (self.name, words[0], self.timeout))
        except OSError as exc:
            raise OffsiteError("target %s: cannot run %s: %s" % (self.name, words[0], exc))
        if proc.returncode != 0:
            self._fail(" ".join(words[:2]), proc.stderr)
        try:
            return json.loads(proc.stdout.decode("utf-8"))
        except ValueError:
            self._fail("%s gave no answer" % words[0], proc.stderr)

    def put(self, set_name, relative, path):
        """Stream one file (through age when encrypting); what was sent and what the store wrote."""
        recipients = self.spec.get("recipients") or []
        stored = relative + ENCRYPTED_SUFFIX if recipients else relative
        producer = None
        consumer = subprocess.Popen(store_argv(self.spec, ["put", set_name, stored]), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        digest, size = hashlib.sha256(), 0
        try:
            if recipients:
                argv = ["age"] + [word for recipient in recipients for word in ("-r", recipient)] + [path]
                producer = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                source = producer.stdout
            else:
                source = open(path, "rb")
            with source:
                for chunk in iter(lambda: source.read(_CHUNK), b""):
                    digest.update(chunk)
                    size += len(chunk)
                    consumer.stdin.write(chunk)
            consumer.stdin.close()
            consumer.stdin = None  # closed: communicate() now only reads the answer
            if producer is not None and producer.wait(timeout=self.timeout) != 0:
                raise OffsiteError("target %s: age could not encrypt %s: %s" % (
                    self.name, relative, producer.stderr.read().decode("utf-8", "replace").strip()))
            out, err = consumer.communicate(timeout=self.timeout)
        except BrokenPipeError:  # the store stopped reading (a full disk, a refused name): its answer says why
            consumer.stdin = None
            out, err = consumer.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise OffsiteError("target %s: copying %s took longer than %s s" % (self.name, relative, self.timeout))
        finally:
            for proc in (producer, consumer):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if consumer.returncode != 0:
            self._fail("copying %s" % relative, err)
        answer = json.loads(out.decode("utf-8"))
        sent = {"sha256": digest.hexdigest(), "bytes": size}
        if (answer["sha256"], answer["bytes"]) != (sent["sha256"], sent["bytes"]):
            raise OffsiteError("target %s: %s arrived as %s bytes sha256 %s, %s bytes sha256 %s were sent"
                               % (self.name, relative, answer["bytes"], answer["sha256"], size, sent["sha256"]))
        plain_sha256, plain_bytes = hash_file(path) if recipients else (sent["sha256"], size)
        return stored, dict(sent, plain_sha256=plain_sha256, plain_bytes=plain_bytes, encrypted=bool(recipients))

    def copy_set(self, set_path):
        """Copy a set and have the target verify it; removes what arrived when anything fails."""
        set_name = os.path.basename(os.path.normpath(set_path))
        self.call(["abort", set_name])  # what an earlier, interrupted copy left
        sent = {}
        try:
            for relative in set_files(set_path):
                stored, entry = self.put(set_name, relative, os.path.join(set_path, relative))
                sent[stored] = entry
            answer = self.call(["commit", set_name], json.dumps(sent).encode("utf-8"))
        except BaseException:
            try:
                self.call(["abort", set_name])
            except OffsiteError:
                pass  # the target is gone: its .partial- folder is never listed, the next copy removes it
            raise
        return dict(answer, encrypted=bool(self.spec.get("recipients")))

    def apply_retention(self, keep_set):
        """Keep the target's ``keep`` newest sets (never ``keep_set``); returns the deleted names."""
        keep = self.spec.get("keep")
        if not keep:
            return []
        names = sorted(item["set"] for item in self.call(["list"])["sets"])
        doomed = [name for name in names[:-keep] if name != keep_set]
        for name in doomed:
            self.call(["delete", name])
        return doomed

    def list_sets(self):
        return self.call(["list"])

    def verify(self, set_name):
        return self.call(["verify", set_name])

    def fetch_set(self, set_name, backup_dir, identity_file=None):
        """Bring a stored set back into ``backup_dir`` (decrypted with ``identity_file``), checked file by file.

        Each file must arrive with the stored sha256 and decrypt to the
        plaintext sha256 recorded when it was copied; the set appears under
        its name only when every file did (``.fetch-<set>`` until then,
        removed on failure). A set that is already there is refused.
        """
        record = self.call(["manifest", set_name])
        dest = os.path.join(backup_dir, set_name)
        if os.path.lexists(dest):
            raise OffsiteError("set %s is already in %s: nothing fetched" % (set_name, backup_dir))
        encrypted = [stored for stored, entry in record["files"].items() if entry.get("encrypted")]
        if encrypted and not identity_file:
            raise OffsiteError("target %s: set %s is encrypted (%d files): give the age identity file to decrypt it"
                               % (self.name, set_name, len(encrypted)))
        temp = os.path.join(backup_dir, ".fetch-" + set_name)
        shutil.rmtree(temp, ignore_errors=True)
        os.makedirs(temp, mode=0o700)
        try:
            for stored, entry in sorted(record["files"].items()):
                relative = stored[:-len(ENCRYPTED_SUFFIX)] if entry.get("encrypted") else stored
                path = os.path.join(temp, relative)
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
                self._get(set_name, stored, entry, path, identity_file if entry.get("encrypted") else None)
            os.rename(temp, dest)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return {"set": set_name, "path": dest, "files": len(record["files"]), "encrypted": bool(encrypted)}

    def _get(self, set_name, stored, entry, path, identity_file):
        getter = subprocess.Popen(store_argv(self.spec, ["get", set_name, stored]), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        decrypter = None
        digest, size = hashlib.sha256(), 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                if identity_file:
                    decrypter = subprocess.Popen(["age", "-d", "-i", identity_file], stdin=subprocess.PIPE,
                                                 stdout=out, stderr=subprocess.PIPE)
                sink = decrypter.stdin if decrypter else out
                try:
                    for chunk in iter(lambda: getter.stdout.read(_CHUNK), b""):
                        digest.update(chunk)
                        size += len(chunk)
                        sink.write(chunk)
                except BrokenPipeError:
                    pass  # age stopped reading (a wrong identity): its exit status and message say why
                if decrypter:
                    try:
                        decrypter.stdin.close()
                    except BrokenPipeError:
                        pass
                    if decrypter.wait(timeout=self.timeout) != 0:
                        raise OffsiteError("target %s: age could not decrypt %s: %s" % (
                            self.name, stored, decrypter.stderr.read().decode("utf-8", "replace").strip()))
            if getter.wait(timeout=self.timeout) != 0:
                self._fail("fetching %s" % stored, getter.stderr.read())
        finally:
            for proc in (getter, decrypter):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if (digest.hexdigest(), size) != (entry["sha256"], entry["bytes"]):
            raise OffsiteError("target %s: %s arrived as %d bytes sha256 %s, stored as %s bytes sha256 %s"
                               % (self.name, stored, size, digest.hexdigest(), entry["bytes"], entry["sha256"]))
        plain = hash_file(path)
        if plain != (entry["plain_sha256"], entry["plain_bytes"]):
            raise OffsiteError("target %s: %s decrypted to sha256 %s, the set held sha256 %s"
                               % (self.name, stored, plain[0], entry["plain_sha256"]))


def fetch_module(params, targets, check_mode=False):
    """The result of ``pg_backup_fetch``: ``params`` are its options, ``targets`` the validated ``offsite``."""
    spec = next((target for target in targets if target["name"] == params["target"]), None)
    if spec is None:
        raise OffsiteError("target %r is not in offsite (targets: %s)"
                           % (params["target"], ", ".join(target["name"] for target in targets) or "none"))
    target = Target(spec, timeout=params["timeout"])
    name = params["set"]
    if not name:
        stored = [item["set"] for item in target.list_sets()["sets"]]
        if not stored:
            raise OffsiteError("target %s holds no set" % target.name)
        name = max(stored)
    path = os.path.join(params["backup_dir"], name)
    if os.path.lexists(path):
        return {"changed": False, "fetched": False, "set": name, "path": path}
    if check_mode:
        record = target.call(["manifest", name])
        return {"changed": True, "fetched": False, "set": name, "path": path, "files": len(record["files"]),
                "encrypted": any(entry.get("encrypted") for entry in record["files"].values())}
    if not os.path.isdir(params["backup_dir"]):
        os.makedirs(params["backup_dir"], mode=0o700)
    report = target.fetch_set(name, params["backup_dir"], identity_file=params["identity_file"])
    return dict(report, changed=True, fetched=True)


def list_targets(targets, verify_checksums=False):
    """What each target stores (re-read there with ``verify_checksums``); an unreachable one is an error entry."""
    remote = {}
    for spec in targets:
        target = Target(spec, timeout=600)
        try:
            listed = target.list_sets()
            if verify_checksums:
                for item in listed["sets"]:
                    item.update(target.verify(item["set"]))
            remote[target.name] = dict(listed, error=None)
        except OffsiteError as exc:
            remote[target.name] = {"sets": [], "partial": [], "error": str(exc)}
    return remote
