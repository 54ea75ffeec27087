# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup files on the host: names, checksums, manifests, atomic placement.

A dump only gets its final name once it is complete, fsynced and verified;
until then it lives under a hidden temporary name beside the destination.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import json
import os
import re
import shutil
import uuid

MANIFEST_SUFFIX = ".manifest.json"
GLOBALS_SUFFIX = ".globals.sql"
CHUNK = 1024 * 1024


def utc_stamp(now=None):
    """UTC timestamp used in file names: 2026-11-26T02-35-50Z (no ':' for portability)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")


def utc_iso(now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def safe_name(text):
    """A database name made safe as a file name part (anything unusual becomes '_')."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")
    return cleaned or "_"


def default_dump_name(database, extension, stamp):
    return "%s.%s.%s" % (safe_name(database), stamp, extension)


def manifest_path(dest):
    return dest + MANIFEST_SUFFIX


def globals_path(dest):
    return dest + GLOBALS_SUFFIX


def temp_path_beside(dest):
    """Hidden temporary name in the destination's directory (same file system: rename is atomic)."""
    directory, base = os.path.split(os.path.abspath(dest))
    return os.path.join(directory, ".%s.tmp-%s" % (base, uuid.uuid4().hex[:12]))


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(entries):
    """sha256 of a directory from ``(relative path, file sha256 or None, symlink target or None)`` entries."""
    lines = ["%s -> %s\n" % (relative, link) if link is not None else "%s  %s\n" % (relative, digest)
             for relative, digest, link in entries]
    return hashlib.sha256("".join(sorted(lines)).encode("utf-8")).hexdigest()


def sha256_path(path):
    """sha256 of a file, or of a directory: hash over sorted 'relative path  file sha256' lines (a symlink by its
    target, never followed)."""
    if not os.path.isdir(path):
        return sha256_file(path)
    entries = []
    for root, dirs, files in os.walk(path):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            full = os.path.join(root, name)
            relative = os.path.relpath(full, path)
            if os.path.islink(full):
                entries.append((relative, None, os.readlink(full)))
            else:
                entries.append((relative, sha256_file(full), None))
    return tree_digest(entries)


def size_of(path):
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.lstat(os.path.join(root, name)).st_size for root, _dirs, files in os.walk(path) for name in files
               if not os.path.islink(os.path.join(root, name)))


def fsync_path(path):
    """fsync a file, or every file of a directory tree and the directories themselves."""
    if os.path.isdir(path):
        for root, _dirs, files in os.walk(path):
            for name in files:
                _fsync_one(os.path.join(root, name))
            _fsync_one(root)
    else:
        _fsync_one(path)


def _fsync_one(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_mode(path, mode, dir_mode=0o700):
    """File mode on a file, or dir_mode on directories and mode on files of a tree."""
    if os.path.isdir(path):
        for root, _dirs, files in os.walk(path):
            os.chmod(root, dir_mode)
            for name in files:
                os.chmod(os.path.join(root, name), mode)
    else:
        os.chmod(path, mode)


def remove_path(path):
    """Remove a file or directory tree if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def place(tmp, dest, force=False):
    """Move a complete temporary file/directory to its final name atomically.

    A file replaces ``dest`` in one rename. A directory cannot replace a
    non-empty one in one rename, so the old one is first moved aside and only
    removed once the new one is in place.
    """
    aside = None
    if os.path.lexists(dest):
        if not force:
            raise FileExistsError("destination %s exists (use force to overwrite)" % dest)
        if os.path.isdir(dest) or os.path.isdir(tmp):
            aside = temp_path_beside(dest)
            os.rename(dest, aside)
    try:
        os.replace(tmp, dest)
    except OSError:
        if aside:
            os.rename(aside, dest)
        raise
    if aside:
        remove_path(aside)
    _fsync_one(os.path.dirname(os.path.abspath(dest)))


def write_atomic(path, data, mode=0o600):
    """The one atomic small-file writer: ``data`` (text or bytes) to a new file beside ``path``, fsync, rename.

    Readers (node_exporter, a restore) never see half a file; the directory
    must exist. The file has ``mode`` whatever the umask.
    """
    tmp = temp_path_beside(path)
    payload = data.encode("utf-8") if not isinstance(data, bytes) else data
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        place(tmp, path, force=True)
    finally:
        remove_path(tmp)


def write_json_atomic(path, data, mode=0o600):
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def read_manifest(dump_path):
    """The manifest dict written beside a dump, or None when there is none."""
    path = manifest_path(dump_path)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)
