# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Incremental copies of a big folder (OMERO's binary repository): hard-linked snapshots.

Each backup set gets a whole copy of the folder, but a file whose size and
modification time equal those in the previous set's snapshot is a hard link
to that copy instead of a new one (what ``rsync --link-dest`` does; chosen
over restic because a snapshot is then a plain folder: restorable with
``cp -a`` on any host, by retention simply deleted, with nothing to install).
Only new and changed files are read and written, and their sha256 is taken
while they are copied; a linked file keeps the sha256 recorded for it. The
index of every file (``<name>.files.json``: type, size, mtime, mode, owner,
sha256 or link target) is the snapshot's own verification record: ``verify``
reads a snapshot back against it.

The snapshot is built in ``.<name>.partial`` in the set and renamed when
whole. OMERO only ever adds files to its repository; a file changed in place
with the same size and mtime would be linked, not copied (the same rule as
rsync's quick check).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import json
import os
import shutil
import stat

from ansible_collections.nl_biomero.database.plugins.module_utils import archive

INDEX_SUFFIX = ".files.json"
_CHUNK = 1 << 20


class SnapshotError(Exception):
    """A snapshot cannot be made or does not match its index (the message names the file)."""


def _copy(source, dest):
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(dest, "xb") as out:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _attributes(dest, info):
    os.chown(dest, info.st_uid, info.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        os.chmod(dest, stat.S_IMODE(info.st_mode))
        os.utime(dest, ns=(info.st_atime_ns, info.st_mtime_ns))


def make_snapshot(source, dest, previous=None, previous_index=None):
    """Copy ``source`` to ``dest`` (which must not exist), linking unchanged files to ``previous``.

    ``previous`` is the previous snapshot's folder and ``previous_index`` its
    index (or None for a full copy). Returns ``(index, stats)``.
    """
    if not os.path.isdir(source):
        raise SnapshotError("%s is not a folder" % source)
    old = (previous_index or {}).get("files", {}) if previous and os.path.isdir(previous) else {}
    files = {}
    stats = {"files": 0, "copied_files": 0, "copied_bytes": 0, "linked_files": 0, "linked_bytes": 0}
    os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
    temp = os.path.join(os.path.dirname(dest), ".%s.partial" % os.path.basename(dest))
    shutil.rmtree(temp, ignore_errors=True)
    dirs = []
    try:
        for base, subdirs, names in os.walk(source):
            subdirs.sort()
            relative_base = os.path.relpath(base, source)
            target_base = temp if relative_base == "." else os.path.join(temp, relative_base)
            os.mkdir(target_base, 0o700)
            dirs.append((target_base, os.lstat(base)))
            for name in sorted(names) + [d for d in subdirs if os.path.islink(os.path.join(base, d))]:
                path = os.path.join(base, name)
                relative = os.path.normpath(os.path.join(relative_base, name))
                target = os.path.join(target_base, name)
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    link = os.readlink(path)
                    os.symlink(link, target)
                    _attributes(target, info)
                    files[relative] = {"type": "symlink", "link": link}
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue  # sockets, fifos, devices: not repository data
                entry = {"type": "file", "size": info.st_size, "mtime_ns": info.st_mtime_ns,
                         "mode": stat.S_IMODE(info.st_mode), "uid": info.st_uid, "gid": info.st_gid}
                before = old.get(relative)
                same = before and all(before.get(key) == entry[key] for key in entry)
                stats["files"] += 1
                if same:
                    try:
                        os.link(os.path.join(previous, relative), target)
                        entry["sha256"] = before["sha256"]
                        stats["linked_files"] += 1
                        stats["linked_bytes"] += info.st_size
                        files[relative] = entry
                        continue
                    except OSError as exc:
                        if exc.errno not in (errno.ENOENT, errno.EXDEV, errno.EMLINK):
                            raise
                entry["sha256"] = _copy(path, target)
                _attributes(target, info)
                stats["copied_files"] += 1
                stats["copied_bytes"] += info.st_size
                files[relative] = entry
            subdirs[:] = [d for d in subdirs if not os.path.islink(os.path.join(base, d))]
        for target_base, info in reversed(dirs):  # deepest first: setting a folder's mtime is the last change in it
            _attributes(target_base, info)
        os.rename(temp, dest)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return {"files": files}, stats


def index_sha256(index):
    """The snapshot's sha256 as archive.sha256_path computes it for the folder, from the index (nothing read)."""
    return archive.tree_digest([(path, entry.get("sha256"), entry.get("link")) for path, entry in index["files"].items()])


def index_bytes(index):
    return sum(entry.get("size", 0) for entry in index["files"].values())


def write_index(path, index):
    with open(path, "x") as handle:
        json.dump(index, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())


def read_index(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise SnapshotError("cannot read the snapshot index %s: %s" % (path, exc))


def verify(folder, index):
    """Read a snapshot back against its index; the list of problems (empty: whole)."""
    problems = []
    for relative, entry in sorted(index["files"].items()):
        path = os.path.join(folder, relative)
        try:
            if entry["type"] == "symlink":
                if os.readlink(path) != entry["link"]:
                    problems.append("%s links elsewhere" % relative)
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(_CHUNK), b""):
                    digest.update(chunk)
        except OSError as exc:
            problems.append("%s: %s" % (relative, exc.strerror))
            continue
        if digest.hexdigest() != entry["sha256"]:
            problems.append("%s differs from the copy that was made" % relative)
    known = set(index["files"])
    for base, _dirs, names in os.walk(folder):
        for name in names:
            relative = os.path.relpath(os.path.join(base, name), folder)
            if relative not in known:
                problems.append("%s is not in the index" % relative)
    return problems
