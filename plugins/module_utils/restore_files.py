# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore of a backup set's non-database components (the core of ``pg_restore_files``).

A set (backup_set.py) holds folders as ``<name>.tar.gz`` (one top entry: the
folder's own name, as ``tar`` of a host folder and ``<engine> cp`` of a folder
in a container write it) and command outputs as ``<name>.txt`` (the OMERO
configuration, ``omero config get --show-password``). Each is restored to a
target:

- ``path`` only: a host folder (or file). Extracted into a hidden staging
  folder beside the target, then swapped in with renames (the old one moved
  aside first and removed only once the new one is in place).
- ``container`` + ``path``: a folder or file in a volume of the container
  (running or stopped), e.g. the OMERO server's ``/OMERO``. A throwaway
  container of the same image with ``--volumes-from`` extracts into a staging
  folder inside the target folder (same file system), then swaps every entry by
  rename; a file is written beside its target and renamed over it. The target
  of a volume is often its mount point, which cannot itself be renamed, so the
  swap is by its entries; the volume and the container stay the ones the
  site's compose file names.

Before anything is touched (``check``): every chosen component is in the set
and succeeded there, its size and sha256 equal the set manifest's, its archive
holds one top entry and no member leaving it, and each target is empty (or
missing) unless ``overwrite``. A target inside a target restored earlier in the
same call (the configuration in ``/OMERO/backup/`` after ``/OMERO``) counts as
new. A failure removes the staging copy and leaves the target as it was.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import os
import posixpath
import tarfile
import time
import uuid

from ansible_collections.nl_biomero.database.plugins.module_utils import archive, file_snapshot
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_set import BackupSet, BackupSetError
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine, stream
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

FILE_KINDS = ("omero_data", "omero_config", "metabase", "other")
TREE_SUFFIX = ".tar.gz"
STAGE = ".nlb-restore-"
PURPOSE = "restore-files"


class RestoreFilesError(NlbError):
    """A component cannot be restored; nothing of it was changed."""


# --------------------------------------------------------------------------
# Pure rules
# --------------------------------------------------------------------------

def archive_top(members):
    """The one top entry of an archive's members ``[(name, type, linkname)]`` (type 'dir', 'file', 'symlink',
    'hardlink', 'other'); RestoreFilesError for a member that is absolute, climbs out with '..', lies
    outside the top entry, passes through a symbolic link, or a hard link to outside the top entry."""
    top = None
    links = set()
    for name, kind, linkname in members:
        clean = posixpath.normpath(name.rstrip("/")) if name.rstrip("/") else ""
        parts = clean.split("/")
        if not clean or name.startswith("/") or ".." in name.split("/") or clean == ".":
            raise RestoreFilesError("archive member %r is not a relative path inside the archive" % name)
        if top is None:
            top = parts[0]
        if parts[0] != top:
            raise RestoreFilesError("archive member %r is outside its top entry %r" % (name, top))
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in links:
                raise RestoreFilesError("archive member %r lies under a symbolic link" % name)
        if kind == "symlink":
            links.add(clean)
        if kind == "hardlink":
            target = posixpath.normpath(linkname or "")
            if target.startswith("/") or target.split("/")[0] != top or ".." in target.split("/"):
                raise RestoreFilesError("archive member %r is a hard link to %r, outside the archive" % (name, linkname))
    if top is None:
        raise RestoreFilesError("the archive is empty")
    return top


def on_mount(path, mounts):
    """True when ``path`` (absolute, normalized) is a mount point of ``mounts`` or lies under one."""
    return any(path == mount or path.startswith(mount.rstrip("/") + "/") for mount in mounts if mount)


def plan(components, restores, overwrite_all=False):
    """Pair each wanted restore ``{name, path, container?, overwrite?}`` with its set component.

    ``components``: the set manifest's list. Returns a list of dicts with
    name, kind, src (relative), format ('tree' or 'file'), sha256, bytes,
    container (or None), path, overwrite, nested (inside an earlier target).
    Folders come before files (a file target may lie in a restored folder).
    """
    by_name = dict((item.get("name"), item) for item in components if isinstance(item, dict))
    planned = []
    for index, wanted in enumerate(restores):
        name = wanted.get("name")
        item = by_name.get(name)
        if item is None:
            raise RestoreFilesError("restores[%d]: the set has no component %r (it has: %s)"
                                    % (index, name, ", ".join(sorted(str(key) for key in by_name)) or "none"))
        if item.get("kind") not in FILE_KINDS:
            raise RestoreFilesError("component %s is of kind %r; this restores the kinds %s (databases: "
                                    "pg_restore_container)" % (name, item.get("kind"), ", ".join(FILE_KINDS)))
        if item.get("outcome") != "ok" or not item.get("path"):
            raise RestoreFilesError("component %s failed in this set (%s): nothing to restore"
                                    % (name, item.get("error") or "no file"))
        path = wanted.get("path")
        container = wanted.get("container") or None
        if not path or not posixpath.isabs(path) or posixpath.normpath(path) == "/":
            raise RestoreFilesError("component %s: target path %r must be an absolute path other than /"
                                    % (name, path))
        path = posixpath.normpath(path)
        planned.append({
            "name": name, "kind": item["kind"], "src": item["path"], "sha256": item.get("sha256"),
            "bytes": item.get("bytes"), "index": item.get("index"),
            "format": "snapshot" if item.get("format") == "snapshot"
                      else "tree" if item["path"].endswith(TREE_SUFFIX) else "file",
            "container": container, "path": path,
            "overwrite": bool(wanted.get("overwrite", overwrite_all)),
        })
    for item in planned:
        item["nested"] = any(other is not item and other["container"] == item["container"] and other["format"] != "file"
                             and item["path"].startswith(other["path"].rstrip("/") + "/") for other in planned)
    return [item for item in planned if item["format"] != "file"] + [
        item for item in planned if item["format"] == "file"]


# The restore inside a throwaway container: $1 target, $2 run id, $3 tree|file, $4 yes|no (overwrite),
# $5 yes = check only; the archive (tree) or file comes on stdin. Exit 4: refused (target not empty).
_SCRIPT = r'''
set -eu
target=$1 id=$2 format=$3 overwrite=$4 check=$5
stage="$target/.nlb-restore-$id" old="$target/.nlb-old-$id"
for tool in tar find chown chmod stat mv; do
    command -v $tool >/dev/null || { echo "the restore image lacks $tool: give another image (option image)" >&2; exit 4; }
done
if [ "$format" = file ]; then
    dir=$(dirname "$target")
    if [ -e "$target" ] || [ -L "$target" ]; then
        [ -f "$target" ] && [ ! -L "$target" ] || { echo "$target exists and is not a regular file" >&2; exit 4; }
        [ "$overwrite" = yes ] || { echo "$target exists" >&2; exit 4; }
    fi
    [ "$check" = yes ] && exit 0
    mkdir -p "$dir"
    tmp="$dir/.nlb-restore-$id"
    trap 'rm -f "$tmp"' EXIT
    cat > "$tmp"
    chown "$(stat -c %u:%g "$dir")" "$tmp"
    chmod 600 "$tmp"
    mv -f "$tmp" "$target"
    trap - EXIT
    exit 0
fi
if [ -e "$target" ] || [ -L "$target" ]; then
    [ -d "$target" ] && [ ! -L "$target" ] || { echo "$target is not a folder" >&2; exit 4; }
    if [ "$overwrite" != yes ] && [ -n "$(find "$target" -mindepth 1 -maxdepth 1 ! -name '.nlb-restore-*' | head -n 1)" ]; then
        echo "$target is not empty" >&2; exit 4
    fi
fi
[ "$check" = yes ] && exit 0
mkdir -p "$target"
mkdir -m 700 "$stage"
trap 'rm -rf "$stage"' EXIT
tar -xzpf - --numeric-owner -C "$stage"
top=$(ls -A "$stage")
[ -d "$stage/$top" ] || { echo "the archive's top entry is not a folder" >&2; exit 3; }
mkdir -m 700 "$old"
undo() {
    find "$target" -mindepth 1 -maxdepth 1 ! -name ".nlb-restore-$id" ! -name ".nlb-old-$id" -exec rm -rf {} +
    find "$old" -mindepth 1 -maxdepth 1 -exec mv {} "$target"/ \;
    rmdir "$old"; rm -rf "$stage"
}
trap undo EXIT
find "$target" -mindepth 1 -maxdepth 1 ! -name ".nlb-restore-$id" ! -name ".nlb-old-$id" -exec mv {} "$old"/ \;
find "$stage/$top" -mindepth 1 -maxdepth 1 -exec mv {} "$target"/ \;
chown --reference="$stage/$top" "$target"
chmod --reference="$stage/$top" "$target"
trap - EXIT
rm -rf "$old" "$stage"
'''


# --------------------------------------------------------------------------
# Host actions
# --------------------------------------------------------------------------

def _members(path):
    kinds = ((tarfile.TarInfo.isdir, "dir"), (tarfile.TarInfo.isreg, "file"), (tarfile.TarInfo.issym, "symlink"),
             (tarfile.TarInfo.islnk, "hardlink"))
    with tarfile.open(path, "r|gz") as tar:
        for info in tar:
            kind = next((label for test, label in kinds if test(info)), "other")
            yield info.name, kind, info.linkname


def verify(set_path, item):
    """Size, sha256 and (for a tree) the archive's members of one planned component; returns its top entry."""
    backup_set = BackupSet(set_path, {})
    try:
        full = backup_set.file_path(item["src"])
    except BackupSetError as exc:
        raise RestoreFilesError("component %s: %s" % (item["name"], exc))
    if item["format"] == "snapshot":
        return _verify_snapshot(backup_set, item, full)
    if not os.path.isfile(full):
        raise RestoreFilesError("component %s: %s is missing from the set" % (item["name"], full))
    if item["bytes"] is not None and os.path.getsize(full) != item["bytes"]:
        raise RestoreFilesError("component %s: %s has %d bytes, the set manifest recorded %d"
                                % (item["name"], full, os.path.getsize(full), item["bytes"]))
    if not item["sha256"] or archive.sha256_file(full) != item["sha256"]:
        raise RestoreFilesError("component %s: the sha256 of %s differs from the set manifest's: the set is "
                                "damaged or was changed" % (item["name"], full))
    if item["format"] != "tree":
        return None
    try:
        return archive_top(_members(full))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise RestoreFilesError("component %s: %s is not a readable tar.gz: %s" % (item["name"], full, exc))


def _verify_snapshot(backup_set, item, full):
    """Every file of a hard-linked snapshot read back against its index, the index against the manifest."""
    try:
        index = file_snapshot.read_index(backup_set.file_path(item["index"] or ""))
    except (file_snapshot.SnapshotError, BackupSetError) as exc:
        raise RestoreFilesError("component %s: %s" % (item["name"], exc))
    if not os.path.isdir(full) or file_snapshot.index_sha256(index) != item["sha256"]:
        raise RestoreFilesError("component %s: the snapshot %s or its index differs from the set manifest's: the "
                                "set is damaged or was changed" % (item["name"], full))
    problems = file_snapshot.verify(full, index)
    if problems:
        raise RestoreFilesError("component %s: the snapshot %s is damaged: %s"
                                % (item["name"], full, "; ".join(problems[:5])))
    return os.path.basename(full)


def _tar_writer(folder):
    """Writes ``folder`` as a gzip tar (top entry: its name) into a pipe: a snapshot streamed to a container."""
    def write(pipe):
        # gzip level 1: the container side reads gzip; the data (images) hardly compresses
        with gzip.GzipFile(fileobj=pipe, mode="wb", compresslevel=1) as packed:
            with tarfile.open(fileobj=packed, mode="w|") as tar:
                tar.add(folder, arcname=os.path.basename(folder))
    return write


def _host_check(item):
    path = item["path"]
    if not os.path.lexists(path) or item["overwrite"] or item["nested"]:
        return
    if item["format"] == "file" or not os.path.isdir(path) or os.path.islink(path):
        raise RestoreFilesError("component %s: %s exists" % (item["name"], path))
    if os.listdir(path):
        raise RestoreFilesError("component %s: %s is not empty" % (item["name"], path))


def _host_restore(src, item, top):
    """Extract (or copy) beside the target, then swap it in by rename; the staging copy goes on failure."""
    path = item["path"]
    parent = os.path.dirname(path)
    os.makedirs(parent, 0o755, exist_ok=True)
    if item["format"] == "file":
        _host_check(item)
        with open(src, "rb") as handle:
            archive.write_atomic(path, handle.read(), 0o600)
        return
    stage = os.path.join(parent, "%s%s-%s" % (STAGE, os.path.basename(path), uuid.uuid4().hex[:12]))
    os.mkdir(stage, 0o700)
    try:
        if item["format"] == "snapshot":  # a plain copy with owners, modes and times
            file_snapshot.make_snapshot(src, os.path.join(stage, top))
        else:
            with tarfile.open(src, "r:gz") as tar:
                options = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
                tar.extractall(stage, numeric_owner=True, **options)  # members checked by archive_top
        _host_check(item)
        archive.fsync_path(os.path.join(stage, top))
        archive.place(os.path.join(stage, top), path, force=True)
    finally:
        archive.remove_path(stage)


def _container_call(engine, item, image, run_id, check, src=None, timeout=None):
    name = "nlb-restorefiles-%s" % run_id
    argv = engine.throwaway_argv(image, ["-c", _SCRIPT, "sh", item["path"], run_id,
                                         "file" if item["format"] == "file" else "tree",
                                         "yes" if item["overwrite"] or item["nested"] else "no",
                                         "yes" if check else "no"],
                                 purpose=PURPOSE, name=name, user="0", entrypoint="sh",
                                 extra=["-i", "--volumes-from", item["container"]])
    try:
        done = stream(argv, stdin=src, timeout=timeout or 120)
    finally:
        engine.remove(name)  # a killed client can leave the container running
    if done.rc == 4:
        raise RestoreFilesError("component %s: %s in container %s: %s"
                                % (item["name"], item["path"], item["container"], done.stderr.strip()))
    if done.rc != 0:
        raise RestoreFilesError("component %s: restoring into %s of container %s failed (exit %d): %s; the "
                                "target is as it was" % (item["name"], item["path"], item["container"], done.rc,
                                                         done.stderr.strip()[-500:]))


class RestoreFiles:
    """Restore chosen non-database components of one set (see the module docstring)."""

    def __init__(self, set_path, restores, overwrite=False, engine="auto", image=None, timeout=3600):
        self.set_path = os.path.abspath(set_path)
        self.restores = restores
        self.overwrite = overwrite
        self.engine_name = engine
        self.image = image
        self.timeout = timeout

    def _images(self, engine, planned):
        """The throwaway image per target container; every target path must lie on one of its mounts."""
        images = {}
        for item in planned:
            name = item["container"]
            if not name:
                continue
            if name not in images:
                info = engine.inspect(name)
                if info is None:
                    raise RestoreFilesError("component %s: container %s does not exist" % (item["name"], name))
                image = self.image or engine.image_of(info)
                if engine.image_inspect(image) is None:
                    raise RestoreFilesError("image %s (for the restore into container %s) is not on this host"
                                            % (image, name))
                images[name] = (image, [mount.get("Destination") or "" for mount in info.get("Mounts") or []])
            mounts = images[name][1]
            if not on_mount(item["path"], mounts):
                raise RestoreFilesError("component %s: %s is on no volume or bind mount of container %s (mounts: "
                                        "%s); a restore there would be lost with the container"
                                        % (item["name"], item["path"], name, ", ".join(mounts) or "none"))
        return dict((name, value[0]) for name, value in images.items())

    def run(self, check_mode=False):
        try:
            manifest = BackupSet.open(self.set_path).manifest
        except (BackupSetError, OSError, ValueError) as exc:
            raise RestoreFilesError("cannot read the set %s: %s" % (self.set_path, exc))
        planned = plan(manifest.get("components") or [], self.restores, self.overwrite)
        needs_engine = any(item["container"] for item in planned)
        engine = ContainerEngine(self.engine_name, timeout=120) if needs_engine else None
        images = self._images(engine, planned) if engine else {}
        # everything is verified and every target checked before the first one is touched
        tops = {}
        refusals = []
        for item in planned:
            try:
                tops[item["name"]] = verify(self.set_path, item)
                if item["container"]:
                    _container_call(engine, item, images[item["container"]], uuid.uuid4().hex[:12], True)
                else:
                    _host_check(item)
            except RestoreFilesError as exc:
                refusals.append(str(exc))
        if refusals:
            raise RestoreFilesError("; ".join(refusals))
        results = []
        for item in planned:
            result = dict((key, item[key]) for key in ("name", "kind", "container", "path", "bytes", "sha256"))
            results.append(result)
            if check_mode:
                continue
            started = time.monotonic()
            src = os.path.join(self.set_path, item["src"])
            if item["container"]:
                _container_call(engine, item, images[item["container"]], uuid.uuid4().hex[:12], False,
                                src=_tar_writer(src) if item["format"] == "snapshot" else src, timeout=self.timeout)
            else:
                _host_restore(src, item, tops[item["name"]])
            result["duration_s"] = round(time.monotonic() - started, 3)
        names = ", ".join(item["name"] for item in planned)
        return {"changed": bool(planned), "set": self.set_path, "restored": results,
                "msg": "%s %s from %s" % ("would restore" if check_mode else "restored", names or "nothing",
                                          os.path.basename(self.set_path))}
