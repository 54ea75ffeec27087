# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup job's configuration, defined once (pure, no I/O but reading a file).

:data:`SCHEMA` is the one definition, in Ansible argument-spec form. From it
come the ``pg_backup_set`` module's argument spec (:func:`module_argument_spec`)
and the validation and defaults of the JSON file the scheduled job reads
(:func:`normalize_config`); a unit test checks the ``postgres_backup`` role's
``meta/argument_specs.yml``, ``defaults/main.yml`` and ``vars/main.yml``
against it. Rules a spec cannot say (unique component names, absolute paths,
one password source) follow the spec in :func:`normalize_config`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import os
import re

from ansible_collections.nl_biomero.database.plugins.module_utils.engine import engine_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.retention import (
    POLICY_KEYS,
    RetentionError,
    validate_keep_incomplete,
    validate_policy,
)

LOCK_NAME = ".nl-biomero-backup.lock"
# age recipients: an X25519 key (bech32, 58 characters after age1) or an SSH public key.
AGE_RECIPIENT = re.compile(r"^(age1[02-9ac-hj-np-z]{58}|ssh-(ed25519|rsa) [A-Za-z0-9+/=]+( .*)?)$")
_KINDS = ["omero_data", "omero_config", "metabase", "other"]

SCHEMA = dict(
    backup_dir=dict(type="path", required=True),
    databases=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str"),
        container=dict(type="str", required=True),
        database=dict(type="str", required=True),
        user=dict(type="str"),
        password=dict(type="str", no_log=True),
        password_file=dict(type="path", no_log=False),
        password_env=dict(type="str", no_log=False),
        format=dict(type="str", default="custom", choices=["custom", "directory", "tar", "plain"]),
        compress=dict(type="str", default="auto"),
        globals=dict(type="bool", default=True),
        jobs=dict(type="int"),
        row_counts=dict(type="bool", default=True),
        exclude_table_data=dict(type="list", elements="str", default=[]),
        verify=dict(type="str", default="full", choices=["full", "toc", "none"]),
    )),
    paths=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str"),
        path=dict(type="path", required=True),
        kind=dict(type="str", default="other", choices=_KINDS),
        incremental=dict(type="bool", default=False),
    )),
    container_paths=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str"),
        container=dict(type="str", required=True),
        path=dict(type="str", required=True),
        kind=dict(type="str", default="omero_data", choices=_KINDS),
    )),
    container_commands=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str", required=True),
        container=dict(type="str", required=True),
        command=dict(type="list", elements="str", required=True),
        kind=dict(type="str", default="omero_config", choices=_KINDS),
    )),
    clients=dict(type="list", elements="str", default=[]),
    client_action=dict(type="str", default="stop", choices=["stop", "pause"]),
    clients_held_for=dict(type="str", default="run", choices=["run", "snapshot"]),
    client_stop_timeout=dict(type="int", default=60),
    compose_command=dict(type="list", elements="str", default=[]),
    metrics_file=dict(type="path"),
    lock_file=dict(type="path"),
    notify_command=dict(type="list", elements="str"),
    retention=dict(type="dict"),
    restore_test=dict(type="bool", default=False),
    restore_test_timeout=dict(type="int", default=180),
    syslog=dict(type="bool", default=False),
    offsite=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str", required=True),
        directory=dict(type="path"),
        ssh=dict(type="dict", options=dict(
            host=dict(type="str", required=True),
            user=dict(type="str", required=True),
            port=dict(type="int", default=22),
            identity_file=dict(type="path"),
            known_hosts=dict(type="path"),
        )),
        keep=dict(type="int"),
        recipients=dict(type="list", elements="str", default=[]),
    )),
    **engine_argument_spec()
)
# Seconds each part of a run may take; a part that takes longer is killed and fails (see backup_run.py).
SCHEMA["timeouts"] = dict(type="dict", options=dict(
    engine_call=dict(type="int", default=120),
    dump=dict(type="int", default=43200),
    copy=dict(type="int", default=43200),
    restore_test=dict(type="int", default=43200),
    lock_wait=dict(type="int", default=600),
    run=dict(type="int", default=72000),
))
# Options of the scheduled job only: the module reports in its result, not to syslog.
JOB_ONLY = ("syslog",)
# Lists of strings that are command lines: a shell string there is the usual mistake.
_ARGV_KEYS = ("command", "notify_command")


class BackupRunError(NlbError):
    """Bad configuration, or the run cannot start (no lock, no backup directory)."""


def module_argument_spec():
    """The ``pg_backup_set`` module's argument spec: the schema without the job-only options."""
    return dict((key, copy.deepcopy(spec)) for key, spec in SCHEMA.items() if key not in JOB_ONLY)


# --------------------------------------------------------------------------
# Validation by the schema
# --------------------------------------------------------------------------

def _bool(value, what):
    """A boolean from a bool or its usual text forms (configurations written by templates)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise BackupRunError("%s must be true or false, got %r" % (what, value))


def _convert(value, spec, key, where):
    """``value`` of option ``key`` (in ``where``: '' or e.g. 'databases[0]') as the spec's type."""
    what = "%s.%s" % (where, key) if where else "configuration: " + key
    kind = spec.get("type", "str")
    if kind == "bool":
        return _bool(value, what)
    if kind == "int":
        if isinstance(value, bool):
            raise BackupRunError("%s must be an integer, got %r" % (what, value))
        try:
            return int(value)
        except (TypeError, ValueError):
            raise BackupRunError("%s must be an integer, got %r" % (what, value))
    if kind in ("str", "path"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise BackupRunError("%s must be a string, got %r" % (what, value))
        return os.path.expanduser(value) if kind == "path" else value
    if kind == "dict":
        if not isinstance(value, dict):
            raise BackupRunError("%s must be a mapping, got %r" % (what, type(value).__name__))
        return value
    if kind == "list":
        if not isinstance(value, list):
            hint = " (an argv list, no shell string)" if key in _ARGV_KEYS else ""
            raise BackupRunError("%s must be a list%s, got %r" % (what, hint, value))
        if spec.get("elements") == "dict":
            label = "%s.%s" % (where, key) if where else key
            return [_fill(item, spec["options"], "%s[%d]" % (label, index)) for index, item in enumerate(value)]
        if spec.get("elements") == "str" and not all(isinstance(item, str) and item for item in value):
            raise BackupRunError("%s must be a list of non-empty strings, got %r" % (what, value))
        return list(value)
    raise BackupRunError("%s: unsupported type %s in the schema" % (what, kind))  # pragma: no cover


def _empty(value):
    return value is None or value in ("", [], {})


def _fill(entry, options, where=""):
    """Validate a mapping by ``options`` (argument-spec form) and fill in the defaults.

    ``where`` names the mapping in messages ('' for the configuration itself).
    An option without a default that is given empty ('', [], {}) counts as
    not given: the role writes empty values for "none".
    """
    what = where or "configuration"
    if not isinstance(entry, dict):
        raise BackupRunError("%s must be a mapping, got %r" % (what, type(entry).__name__))
    unknown = sorted(set(entry) - set(options))
    if unknown:
        raise BackupRunError("%s: unknown key(s) %s (known: %s)"
                             % (what, ", ".join(unknown), ", ".join(sorted(options))))
    full = {}
    for key, spec in options.items():
        value = entry.get(key)
        if value is None or ("default" not in spec and _empty(value)):
            if spec.get("required"):
                raise BackupRunError("%s: %s is required" % (what, key))
            full[key] = copy.deepcopy(spec.get("default"))
            continue
        full[key] = _convert(value, spec, key, where)
        if spec.get("choices") and full[key] not in spec["choices"]:
            raise BackupRunError("%s: %s '%s' is not one of %s"
                                 % (what, key, full[key], ", ".join(spec["choices"])))
    return full


# --------------------------------------------------------------------------
# Rules beyond the schema
# --------------------------------------------------------------------------

def _name(entry, default):
    """The entry's component name, ``default`` when none is given."""
    entry["name"] = entry["name"] or default
    return entry["name"]


def normalize_config(raw):
    """Validate a configuration dict by :data:`SCHEMA` and the rules beyond it; BackupRunError naming the problem."""
    config = _fill(raw, SCHEMA)
    config["backup_dir"] = os.path.abspath(config["backup_dir"])
    if not any(config[key] for key in ("databases", "paths", "container_paths")):
        raise BackupRunError("configuration: nothing to back up (no databases and no paths)")
    names = []
    for index, entry in enumerate(config["databases"]):
        names.append(_name(entry, entry["database"]))
        if sum(1 for key in ("password", "password_file", "password_env") if entry[key]) > 1:
            raise BackupRunError("databases[%d] (%s): give at most one of password, password_file, password_env"
                                 % (index, entry["name"]))
    for index, entry in enumerate(config["paths"]):
        if not os.path.isabs(entry["path"]):
            raise BackupRunError("paths[%d]: path must be an absolute host path" % index)
        names.append(_name(entry, os.path.basename(entry["path"].rstrip("/")) or "root"))
    for index, entry in enumerate(config["container_paths"]):
        if not entry["path"].startswith("/"):
            raise BackupRunError("container_paths[%d]: path must be an absolute path in the container" % index)
        names.append(_name(entry, entry["path"].rstrip("/").rsplit("/", 1)[-1] or "root"))
    names.extend(entry["name"] for entry in config["container_commands"])
    for name in names:
        if not name or "/" in name or name.startswith(".") or name.endswith(".globals"):
            raise BackupRunError("component name '%s' is not usable (no '/', no leading '.', no '.globals' suffix)"
                                 % name)
    duplicates = sorted(set(name for name in names if names.count(name) > 1))
    if duplicates:
        raise BackupRunError("component names must be unique; repeated: %s (set name: on the entries)"
                             % ", ".join(duplicates))
    if config["retention"]:
        retention = dict(config["retention"])
        prune = _bool(retention.pop("prune_incomplete", False), "retention.prune_incomplete")
        try:
            keep_incomplete = validate_keep_incomplete(retention.pop("keep_incomplete", None))
            policy = validate_policy(**retention)
        except (RetentionError, TypeError) as exc:
            raise BackupRunError("configuration: retention: %s (keys: %s, keep_incomplete, prune_incomplete)"
                                 % (exc, ", ".join(POLICY_KEYS)))
        config["retention"] = dict(policy, prune_incomplete=prune, keep_incomplete=keep_incomplete)
    _check_offsite(config["offsite"])
    config["lock_file"] = config["lock_file"] or os.path.join(config["backup_dir"], LOCK_NAME)
    config["timeouts"] = _fill(config["timeouts"] or {}, SCHEMA["timeouts"]["options"], "timeouts")
    for key, value in sorted(config["timeouts"].items()):
        if value < 1:
            raise BackupRunError("timeouts.%s must be at least 1 second, got %d" % (key, value))
    return config


def offsite_targets(raw):
    """A list of off-host targets (option ``offsite``) validated and with their defaults, as a run reads them."""
    targets = _convert(raw, SCHEMA["offsite"], "offsite", "")
    _check_offsite(targets)
    return targets


def _check_offsite(targets):
    """One of directory or ssh per target, unique names, age recipients by their form."""
    names = [target["name"] for target in targets]
    for index, target in enumerate(targets):
        where = "offsite[%d] (%s)" % (index, target["name"])
        if bool(target["directory"]) == bool(target["ssh"]):
            raise BackupRunError("%s: give exactly one of directory (a mount) or ssh (a backup host)" % where)
        if target["directory"] and not os.path.isabs(target["directory"]):
            raise BackupRunError("%s: directory must be an absolute path, got %r" % (where, target["directory"]))
        if target["ssh"]:
            target["ssh"] = _fill(target["ssh"], SCHEMA["offsite"]["options"]["ssh"]["options"], where + ".ssh")
        if target["keep"] is not None and target["keep"] < 1:
            raise BackupRunError("%s: keep must be at least 1 (or unset: the target keeps every set), got %d"
                                 % (where, target["keep"]))
        for recipient in target["recipients"]:
            if not AGE_RECIPIENT.match(recipient):
                raise BackupRunError("%s: recipient %r is not an age public key (age1... or ssh-ed25519/ssh-rsa ...)"
                                     % (where, recipient))
    repeated = sorted(set(name for name in names if names.count(name) > 1))
    if repeated:
        raise BackupRunError("offsite target names must be unique; repeated: %s" % ", ".join(repeated))


def load_config(path):
    """Read and validate a JSON configuration file."""
    try:
        with open(path) as handle:
            raw = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BackupRunError("cannot read the configuration %s: %s" % (path, exc))
    return normalize_config(raw)


def resolve_password(entry, environ=None):
    """The password of a database entry (inline, from a file, or from an environment variable), or None."""
    environ = os.environ if environ is None else environ
    if entry.get("password"):
        return entry["password"]
    if entry.get("password_file"):
        try:
            with open(entry["password_file"]) as handle:
                return handle.read().rstrip("\r\n")
        except OSError as exc:
            raise BackupRunError("database %s: cannot read password_file %s: %s"
                                 % (entry["name"], entry["password_file"], exc.strerror or exc))
    if entry.get("password_env"):
        value = environ.get(entry["password_env"])
        if value is None:
            raise BackupRunError("database %s: environment variable %s is not set"
                                 % (entry["name"], entry["password_env"]))
        return value
    return None


def public_config(config):
    """The configuration without secrets (for results and logs)."""
    shown = dict(config)
    shown["databases"] = [dict((key, value) for key, value in entry.items() if key != "password")
                          for entry in config.get("databases", [])]
    return shown


def expected_components(config):
    """Component names a complete set holds, in the order the run makes them."""
    names = []
    for entry in config["databases"]:
        names.append(entry["name"])
        if entry["globals"]:
            names.append(entry["name"] + ".globals")
    for key in ("container_commands", "paths", "container_paths"):
        names.extend(entry["name"] for entry in config.get(key, []))
    return names
