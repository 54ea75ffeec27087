# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup sets: one folder per backup run, its components and a set manifest.

Layout of a set::

    <backup_dir>/<YYYY-MM-DDTHH-MM-SSZ>/            mode 0700
        set.manifest.json                         the set manifest (0600)
        omero.<stamp>.dump                        components ...
        omero.<stamp>.dump.manifest.json          ... with their own per-dump manifests (archive.py)
        omero.config
        OMERO.tar.gz

Set manifest (``format_version`` 1)::

    {"format_version": 1, "stamp": "2026-03-14T02-00-00Z",
     "started": "2026-03-14T02:00:00Z", "finished": "2026-03-14T02:03:10Z" | null,
     "duration_s": 190.2 | null, "complete": true | false, "error": null | "text",
     "components": [{"name": "omero", "kind": "database", "path": "omero.<stamp>.dump",
                     "bytes": 123, "sha256": "...", "versions": {...}, "duration_s": 4.1,
                     "outcome": "ok" | "failed", "error": null | "text", ...extra keys}],
     "restore_test": {...}   (optional, added later by a restore test)}

The manifest is written atomically when the set starts and again after every
recorded component, so a run that dies leaves a manifest saying how far it got
(``finished: null``, ``complete: false``). ``complete`` is true only when the
set was finished, every component succeeded and every expected component was
recorded.

The catalogue (``list_backups``) also lists loose dumps (files with only a
per-dump manifest, as pg_dump_container writes them) and stamp-named folders
without a readable set manifest (status ``unknown``, never complete).

Pure Python without Ansible: the scheduled backup job on a host imports it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import re
import shutil
import uuid

from ansible_collections.nl_biomero.database.plugins.module_utils.archive import (
    MANIFEST_SUFFIX,
    GLOBALS_SUFFIX,
    read_manifest,
    sha256_path,
    size_of,
    utc_iso,
    utc_stamp,
    write_json_atomic,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.retention import select, validate_policy
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

SET_MANIFEST = "set.manifest.json"
FORMAT_VERSION = 1
KINDS = ("database", "globals", "omero_data", "omero_config", "metabase", "other")
OUTCOMES = ("ok", "failed")
# What a catalogue entry can be: only "complete" counts as a good backup.
STATUSES = ("complete", "incomplete", "unfinished", "damaged", "unknown")

_STAMP = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z"
STAMP_RE = re.compile(r"^%s$" % _STAMP)
_STAMP_IN_NAME = re.compile(r"\.(%s)(?:\.|$)" % _STAMP)
_CORE_KEYS = ("name", "kind", "path", "bytes", "sha256", "versions", "duration_s", "outcome", "error")
# Keys a per-dump manifest may use for its start time (the file name's stamp wins).
_DUMP_START_KEYS = ("start", "started", "start_utc", "started_utc", "start_time")
_DUMP_GLOBALS_KEYS = ("globals_file", "globals", "globals_path")


class BackupSetError(NlbError):
    """A backup set cannot be created, read, recorded or removed."""


def parse_stamp(text):
    """The aware UTC datetime of a stamp like 2026-03-14T02-00-00Z, or None."""
    if not isinstance(text, str) or not STAMP_RE.match(text):
        return None
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H-%M-%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def parse_time(text):
    """An aware UTC datetime from a stamp or an ISO 8601 text (Z or offset), or None."""
    when = parse_stamp(text)
    if when is not None or not isinstance(text, str):
        return when
    candidate = text.strip()
    if candidate.endswith("Z"):
        candidate = candidate[:-1] + "+00:00"
    try:
        when = datetime.datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc)


def _iso(when):
    return utc_iso(when) if when is not None else None


def _inside(base, relative):
    """Absolute path of ``relative`` under ``base``; BackupSetError when it would leave ``base``."""
    if not relative or os.path.isabs(relative):
        raise BackupSetError("component path '%s' must be relative to the set folder" % relative)
    base = os.path.abspath(base)
    full = os.path.normpath(os.path.join(base, relative))
    if full == base or not full.startswith(base + os.sep):
        raise BackupSetError("component path '%s' leaves the set folder" % relative)
    return full


class BackupSet:
    """One backup run's folder and its manifest. Create with ``start``, load with ``open``."""

    def __init__(self, path, manifest):
        self.path = os.path.abspath(path)
        self.manifest = manifest

    @property
    def name(self):
        return os.path.basename(self.path)

    @property
    def manifest_path(self):
        return os.path.join(self.path, SET_MANIFEST)

    @classmethod
    def start(cls, backup_dir, now=None):
        """Create ``<backup_dir>/<UTC stamp>/`` (0700) and write its first manifest."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        stamp = utc_stamp(now)
        os.makedirs(backup_dir, mode=0o700, exist_ok=True)
        path = os.path.join(backup_dir, stamp)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            raise BackupSetError("a backup set named %s already exists in %s" % (stamp, backup_dir))
        os.chmod(path, 0o700)
        manifest = {
            "format_version": FORMAT_VERSION,
            "stamp": stamp,
            "started": utc_iso(now),
            "finished": None,
            "duration_s": None,
            "complete": False,
            "error": None,
            "components": [],
        }
        backup_set = cls(path, manifest)
        backup_set.save()
        return backup_set

    @classmethod
    def open(cls, path):
        manifest = read_set_manifest(path)
        if manifest is None:
            raise BackupSetError("%s has no set manifest (%s)" % (path, SET_MANIFEST))
        return cls(path, manifest)

    def save(self):
        write_json_atomic(self.manifest_path, self.manifest)

    def file_path(self, relative):
        """Absolute path of a component file inside the set (refuses paths leaving it)."""
        return _inside(self.path, relative)

    def _relative(self, path):
        if os.path.isabs(path):
            full = os.path.normpath(path)
            if not full.startswith(self.path + os.sep):
                raise BackupSetError("component file %s is not inside the set folder %s" % (path, self.path))
            path = os.path.relpath(full, self.path)
        _inside(self.path, path)
        return path

    def component(self, name):
        for item in self.manifest["components"]:
            if item["name"] == name:
                return item
        return None

    def record_component(self, name, kind, path=None, outcome="ok", error=None, versions=None,
                         duration_s=None, size=None, sha256=None, **extra):
        """Record one component and rewrite the manifest atomically; returns the entry.

        For ``outcome='ok'`` the file (or directory) must exist; its size and
        sha256 are computed unless given (pass them when already known, e.g.
        from a per-dump manifest, to avoid reading a big file twice).
        Recording a name again replaces the earlier entry (a retried component).
        """
        if not name or not isinstance(name, str):
            raise BackupSetError("a component needs a name")
        if kind not in KINDS:
            raise BackupSetError("component %s: kind '%s' is not one of %s" % (name, kind, ", ".join(KINDS)))
        if outcome not in OUTCOMES:
            raise BackupSetError("component %s: outcome '%s' is not one of %s" % (name, outcome, ", ".join(OUTCOMES)))
        clash = [key for key in extra if key in _CORE_KEYS]
        if clash:
            raise BackupSetError("component %s: extra keys %s clash with the manifest's own" % (name, clash))
        relative = self._relative(path) if path else None
        if outcome == "ok":
            if relative is None:
                raise BackupSetError("component %s succeeded but names no file" % name)
            full = self.file_path(relative)
            if not os.path.exists(full):
                raise BackupSetError("component %s: %s does not exist" % (name, full))
            size = size_of(full) if size is None else size
            sha256 = sha256_path(full) if sha256 is None else sha256
            error = None
        elif not error:
            error = "failed"
        entry = dict(extra)
        entry.update({
            "name": name,
            "kind": kind,
            "path": relative,
            "bytes": size,
            "sha256": sha256,
            "versions": dict(versions or {}),
            "duration_s": duration_s,
            "outcome": outcome,
            "error": error,
        })
        components = [item for item in self.manifest["components"] if item["name"] != name]
        components.append(entry)
        self.manifest["components"] = components
        self.save()
        return entry

    def record_failure(self, name, kind, error, duration_s=None, **extra):
        return self.record_component(name, kind, outcome="failed", error=error or "failed",
                                     duration_s=duration_s, **extra)

    def record_dump(self, dump_path, name=None, duration_s=None, **extra):
        """Record a dump written into the set by pg_dump_container, from its per-dump manifest.

        Adds a ``database`` component (size and sha256 taken from the dump's
        manifest, which were verified when it was written) and, when the
        manifest names a globals file inside the set, a ``globals`` component.
        Returns the database component.
        """
        manifest = read_manifest(dump_path)
        if manifest is None:
            raise BackupSetError("%s has no manifest (%s)" % (dump_path, os.path.basename(dump_path) + MANIFEST_SUFFIX))
        database = manifest.get("database")
        name = name or database or os.path.basename(dump_path)
        versions = dict((key, manifest[source]) for key, source in
                        (("server", "server_version"), ("pg_dump", "pg_dump_version"), ("image", "image"))
                        if manifest.get(source) is not None)
        details = dict((key, manifest[key]) for key in ("database", "container", "format", "compression")
                       if manifest.get(key) is not None)
        details.update(extra)
        entry = self.record_component(
            name, "database", path=dump_path, versions=versions, size=manifest.get("bytes"),
            sha256=manifest.get("sha256"), duration_s=duration_s if duration_s is not None else manifest.get("duration_s"),
            **details)
        globals_file = _dump_globals(dump_path, manifest)
        if globals_file and os.path.exists(globals_file):
            self.record_component(name + ".globals", "globals", path=globals_file, versions=versions,
                                  size=manifest.get("globals_bytes"), sha256=manifest.get("globals_sha256"),
                                  database=database)
        return entry

    def finish(self, expected=None, error=None, now=None):
        """Close the set: complete only when every component (and every expected name) succeeded.

        ``error`` records a run-level failure (e.g. a client container that
        could not be stopped), which also makes the set incomplete.
        """
        now = now or datetime.datetime.now(datetime.timezone.utc)
        components = self.manifest["components"]
        problems = ["%s: %s" % (item["name"], item.get("error") or "failed")
                    for item in components if item.get("outcome") != "ok"]
        recorded = set(item["name"] for item in components)
        problems.extend("%s: not recorded" % name for name in (expected or ()) if name not in recorded)
        if not components:
            problems.append("no components")
        if error:
            problems.insert(0, str(error))
        started = parse_time(self.manifest.get("started"))
        self.manifest["finished"] = utc_iso(now)
        self.manifest["duration_s"] = round((now - started).total_seconds(), 3) if started else None
        self.manifest["complete"] = not problems
        self.manifest["error"] = "; ".join(problems) if problems else None
        self.save()
        return self.manifest

    def set_restore_test(self, result):
        """Record the outcome of a restore test of this set (a dict) in the manifest."""
        self.manifest["restore_test"] = dict(result)
        self.save()

    def set_offsite(self, results):
        """Record the off-host copies of this set ({target: {verified, bytes, error, ...}}) in the manifest."""
        self.manifest["offsite"] = dict(self.manifest.get("offsite") or {}, **results)
        self.save()


def start_set(backup_dir, now=None):
    """Start a new backup set under ``backup_dir``; returns a BackupSet."""
    return BackupSet.start(backup_dir, now=now)


def read_set_manifest(set_dir):
    """The set manifest dict of ``set_dir``, or None when there is none. Raises ValueError if unreadable."""
    path = os.path.join(set_dir, SET_MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _dump_globals(dump_path, manifest):
    """The globals file of a dump when it sits beside the dump, else None."""
    directory = os.path.dirname(os.path.abspath(dump_path))
    for key in _DUMP_GLOBALS_KEYS:
        value = manifest.get(key)
        if isinstance(value, str) and value:
            full = value if os.path.isabs(value) else os.path.join(directory, value)
            full = os.path.normpath(full)
            if os.path.dirname(full) == directory:
                return full
            return None
    candidate = os.path.abspath(dump_path) + GLOBALS_SUFFIX
    return candidate if os.path.exists(candidate) else None


def _check_file(full, size, sha256, verify_checksums):
    """Problem text for one recorded file, or None. Returns (problem, checksum_checked)."""
    if not os.path.exists(full):
        return "missing", False
    if size is not None and size_of(full) != size:
        return "size %d differs from the recorded %d bytes" % (size_of(full), size), False
    if verify_checksums:
        if not sha256:
            return "no checksum recorded", False
        if sha256_path(full) != sha256:
            return "sha256 differs from the recorded one", True
        return None, True
    return None, False


def _set_entry(path, verify_checksums):
    name = os.path.basename(path)
    entry = {
        "type": "set",
        "name": name,
        "path": path,
        "time": _iso(parse_stamp(name)),
        "started": None,
        "finished": None,
        "duration_s": None,
        "status": "unknown",
        "complete": False,
        "databases": [],
        "bytes": 0,
        "versions": {},
        "components": [],
        "checksums": "not_checked",
        "problems": [],
        "error": None,
        "restore_test": None,
        "offsite": None,
        "clients_held_s": None,
        "format_version": None,
    }
    try:
        manifest = read_set_manifest(path)
    except (OSError, ValueError) as exc:
        entry["problems"].append("set manifest unreadable: %s" % exc)
        return entry
    if manifest is None:
        entry["problems"].append("no set manifest")
        return entry
    version = manifest.get("format_version")
    entry["format_version"] = version
    if not isinstance(version, int) or version > FORMAT_VERSION or not isinstance(manifest.get("components"), list):
        entry["problems"].append("set manifest format %r is not understood (this collection reads up to %d)"
                                 % (version, FORMAT_VERSION))
        return entry
    when = parse_time(manifest.get("started")) or parse_stamp(manifest.get("stamp")) or parse_stamp(name)
    entry.update({
        "time": _iso(when),
        "started": manifest.get("started"),
        "finished": manifest.get("finished"),
        "duration_s": manifest.get("duration_s"),
        "error": manifest.get("error"),
        "restore_test": manifest.get("restore_test"),
        "offsite": manifest.get("offsite"),
        "clients_held_s": manifest.get("clients_held_s"),
    })
    problems = entry["problems"]
    checked = failed_check = False
    total = 0
    for item in manifest["components"]:
        if not isinstance(item, dict) or not item.get("name"):
            problems.append("a component entry is malformed")
            continue
        component = dict(item)
        component["problem"] = None
        if component.get("outcome") == "ok":
            try:
                full = _inside(path, component.get("path") or "")
            except BackupSetError as exc:
                component["problem"] = str(exc)
            else:
                component["problem"], did_check = _check_file(
                    full, component.get("bytes"), component.get("sha256"), verify_checksums)
                checked = checked or did_check
            if component["problem"]:
                failed_check = True
                problems.append("component %s: %s" % (component["name"], component["problem"]))
            total += component.get("bytes") or 0
        if component.get("kind") == "database":
            entry["databases"].append(component.get("database") or component["name"])
        if component.get("versions"):
            entry["versions"][component["name"]] = component["versions"]
        entry["components"].append(component)
    entry["bytes"] = total
    if verify_checksums:
        entry["checksums"] = "mismatch" if failed_check else ("ok" if checked else "not_checked")
    if not manifest.get("finished"):
        entry["status"] = "unfinished"
    elif manifest.get("complete") is not True:
        entry["status"] = "incomplete"
    elif failed_check:
        entry["status"] = "damaged"
    else:
        entry["status"] = "complete"
        entry["complete"] = True
    return entry


def _dump_entry(dump_path, manifest_file, verify_checksums):
    name = os.path.basename(dump_path)
    entry = {
        "type": "dump",
        "name": name,
        "path": dump_path,
        "manifest": manifest_file,
        "time": None,
        "status": "unknown",
        "complete": False,
        "database": None,
        "databases": [],
        "bytes": 0,
        "versions": {},
        "format": None,
        "compression": None,
        "sha256": None,
        "globals_file": None,
        "checksums": "not_checked",
        "problems": [],
    }
    try:
        manifest = read_manifest(dump_path)
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        entry["problems"].append("manifest unreadable: %s" % exc)
        match = _STAMP_IN_NAME.search(name)
        entry["time"] = _iso(parse_stamp(match.group(1)) if match else None)
        return entry
    match = _STAMP_IN_NAME.search(name)
    when = parse_stamp(match.group(1)) if match else None
    for key in _DUMP_START_KEYS:
        if when is None:
            when = parse_time(manifest.get(key))
    if when is None:
        when = datetime.datetime.fromtimestamp(os.path.getmtime(manifest_file), datetime.timezone.utc)
    database = manifest.get("database")
    entry.update({
        "time": _iso(when),
        "database": database,
        "databases": [database] if database else [],
        "bytes": manifest.get("bytes") or 0,
        "versions": dict((key, manifest[source]) for key, source in
                         (("server", "server_version"), ("pg_dump", "pg_dump_version"), ("image", "image"))
                         if manifest.get(source) is not None),
        "format": manifest.get("format"),
        "compression": manifest.get("compression"),
        "sha256": manifest.get("sha256"),
        "globals_file": _dump_globals(dump_path, manifest),
    })
    problem, checked = _check_file(dump_path, manifest.get("bytes"), manifest.get("sha256"), verify_checksums)
    if problem:
        entry["problems"].append("dump %s" % problem)
    if entry["globals_file"] and (manifest.get("globals_sha256") or manifest.get("globals_bytes") is not None):
        globals_problem, _checked = _check_file(entry["globals_file"], manifest.get("globals_bytes"),
                                                manifest.get("globals_sha256"), verify_checksums)
        if globals_problem:
            entry["problems"].append("globals file %s" % globals_problem)
    if entry["problems"]:
        entry["status"] = "damaged"
    else:
        entry["status"] = "complete"
        entry["complete"] = True
    if verify_checksums:
        entry["checksums"] = "mismatch" if entry["problems"] else ("ok" if checked else "not_checked")
    return entry


def _newest_first(entries):
    return sorted(entries, key=lambda item: (item["time"] or "", item["name"]), reverse=True)


def list_backups(directory, verify_checksums=False):
    """Catalogue of ``directory``: {'sets': [...], 'dumps': [...]}, each newest first.

    Sets are sub-folders holding a set manifest, or named like a UTC stamp
    (those without a readable manifest are listed with status ``unknown``).
    Dumps are files or folders with a per-dump manifest beside them. Hidden
    names (temporary files), symbolic links and anything else are ignored.
    Component files are always checked for presence and size (cheap); their
    sha256 only with ``verify_checksums``.
    """
    if not os.path.exists(directory):
        raise BackupSetError("%s does not exist" % directory)
    if not os.path.isdir(directory):
        raise BackupSetError("%s is not a directory" % directory)
    directory = os.path.abspath(directory)
    names = sorted(os.listdir(directory))
    present = set(names)
    dump_names = set()
    dumps = []
    for name in names:
        if name.startswith(".") or not name.endswith(MANIFEST_SUFFIX) or name == SET_MANIFEST:
            continue
        manifest_file = os.path.join(directory, name)
        if os.path.islink(manifest_file) or not os.path.isfile(manifest_file):
            continue
        dump_name = name[:-len(MANIFEST_SUFFIX)]
        if not dump_name or (dump_name in present and os.path.islink(os.path.join(directory, dump_name))):
            continue
        dump_names.add(dump_name)
        dumps.append(_dump_entry(os.path.join(directory, dump_name), manifest_file, verify_checksums))
    sets = []
    for name in names:
        full = os.path.join(directory, name)
        if name.startswith(".") or name in dump_names or os.path.islink(full) or not os.path.isdir(full):
            continue
        if STAMP_RE.match(name) or os.path.exists(os.path.join(full, SET_MANIFEST)):
            sets.append(_set_entry(full, verify_checksums))
    return {"sets": _newest_first(sets), "dumps": _newest_first(dumps)}


def newest_complete(entries):
    """The newest complete entry of a list, or None."""
    good = [item for item in entries if item.get("complete")]
    return _newest_first(good)[0] if good else None


def delete_entry(entry):
    """Remove a catalogue entry (a set folder, or a loose dump with its globals file and manifest).

    A set folder is first renamed to a hidden name, so a removal that fails
    half-way never leaves something that looks like a set.
    """
    path = entry["path"]
    if entry["type"] == "set":
        if os.path.islink(path) or not os.path.isdir(path):
            raise BackupSetError("%s is not a set folder" % path)
        parent, base = os.path.split(path)
        aside = os.path.join(parent, ".%s.deleting-%s" % (base, uuid.uuid4().hex[:12]))
        os.rename(path, aside)
        try:
            shutil.rmtree(aside)
        except OSError as exc:
            raise BackupSetError("set %s was moved to %s but could not be removed: %s" % (path, aside, exc))
        return
    if entry["type"] != "dump":
        raise BackupSetError("cannot delete an entry of type %s" % entry["type"])
    for target in (path, entry.get("globals_file"), entry.get("manifest") or path + MANIFEST_SUFFIX):
        if not target:
            continue
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.unlink(target)


def _summary(entry):
    return dict((key, entry.get(key)) for key in ("type", "name", "path", "time", "status", "complete", "databases"))


def plan_retention(catalogue, policy, prune_incomplete=False, include_dumps=False, keep_incomplete=None, now=None):
    """What retention keeps and deletes in a catalogue from ``list_backups``.

    Sets form one series; with ``include_dumps`` the loose dumps form one
    series per database, each under the same ``policy`` (a dict of keep_*
    counts, optionally with ``keep_incomplete``; see retention.select). The
    newest set, when unfinished, counts as in progress and is kept. Entries
    without a usable time, and loose dumps unless ``include_dumps``, are left
    alone and listed under ``ignored``. Returns {'keep': [...], 'delete': [...],
    'ignored': [...], 'warnings': [...]}, summaries with ``reasons`` (kept) or
    ``reason`` (deleted / ignored); ``warnings`` names entries dated in the future.
    """
    policy = dict(policy)
    keep_incomplete = policy.pop("keep_incomplete", keep_incomplete)
    policy = validate_policy(**policy)
    series = [list(catalogue["sets"])]
    ignored = []
    if include_dumps:
        by_database = {}
        for entry in catalogue["dumps"]:
            by_database.setdefault(entry.get("database") or "", []).append(entry)
        series.extend(by_database[key] for key in sorted(by_database))
    else:
        ignored.extend(dict(_summary(entry), reason="loose dump (include_dumps is off)")
                       for entry in catalogue["dumps"])
    keep, delete, warnings = [], [], []
    for entries in series:
        usable = [entry for entry in entries if entry.get("time")]
        ignored.extend(dict(_summary(entry), reason="no usable time") for entry in entries if not entry.get("time"))
        if not usable:
            continue
        by_path = dict((entry["path"], entry) for entry in usable)
        items = [{"id": entry["path"], "time": entry["time"], "complete": entry["complete"],
                  "unfinished": entry["status"] == "unfinished"} for entry in usable]
        chosen = select(items, prune_incomplete=prune_incomplete, keep_incomplete=keep_incomplete, now=now, **policy)
        for item in chosen["keep"]:
            keep.append(dict(_summary(by_path[item["id"]]), reasons=item["reasons"]))
            if item.get("future"):
                keep[-1]["future"] = True
                warnings.append("%s is dated %s, in the future: made with a wrong clock? It is kept and not "
                                "counted by retention; check the clock and remove it by hand"
                                % (by_path[item["id"]]["name"], by_path[item["id"]]["time"]))
        delete.extend(dict(_summary(by_path[item["id"]]), reason=item["reason"]) for item in chosen["delete"])
    return {"keep": _newest_first(keep), "delete": _newest_first(delete), "ignored": ignored, "warnings": warnings}


def apply_retention(directory, policy, prune_incomplete=False, include_dumps=False, dry_run=False,
                    keep_incomplete=None, now=None):
    """List ``directory``, plan retention (see plan_retention) and, unless ``dry_run``, delete.

    Returns the plan plus ``deleted`` (what was removed; empty on a dry run).
    When a removal fails, raises BackupSetError whose ``deleted`` attribute
    lists what had been removed before.
    """
    catalogue = list_backups(directory)
    plan = plan_retention(catalogue, policy, prune_incomplete=prune_incomplete, include_dumps=include_dumps,
                          keep_incomplete=keep_incomplete, now=now)
    full = dict((entry["path"], entry) for entry in catalogue["sets"] + catalogue["dumps"])
    deleted = []
    if not dry_run:
        for item in plan["delete"]:
            try:
                delete_entry(full[item["path"]])
            except (BackupSetError, OSError) as exc:
                error = BackupSetError("removing %s failed: %s" % (item["path"], exc))
                error.deleted = deleted
                raise error
            deleted.append(item)
    plan["deleted"] = deleted
    return plan
