# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docker-compose projects: recognise their containers, read them the way compose 1.29 does, hand changes back.

Pure rules first (labels, container names, the project's ``.env``, compose's
``${VAR}`` interpolation, which files compose loads, the override file the
collection writes), the host actions last (:func:`read_project`,
:func:`service_credentials`, :class:`Handback`). The shell environment of
whoever runs ``docker-compose up`` is not known here: only the project's
``.env`` (and a service's ``env_file``) count, so a variable set only in a
shell is reported as missing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

from ansible_collections.nl_biomero.database.plugins.module_utils import archive
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

# The labels compose (v1 and v2) puts on every container it makes.
PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"
NUMBER = "com.docker.compose.container-number"
ONEOFF = "com.docker.compose.oneoff"

# compose 1.29 (compose/config/config.py): the first existing of these, plus the first existing override.
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml")
OVERRIDE_FILES = ("docker-compose.override.yml", "docker-compose.override.yaml",
                  "compose.override.yml", "compose.override.yaml")
DEFAULT_OVERRIDE = "docker-compose.override.yml"
OWN_FILE = "docker-compose.nl-biomero.yml"
# First line of every file the collection writes; a file without it belongs to the user.
MARKER = "# Written by nl_biomero.database: hand-back of the changes it made to this compose project."
_BEFORE = "# nl-biomero-compose-file-before: "
_REPLACED = "# nl-biomero-replaced-volumes: "
SEPARATOR = ":"


class ComposeError(NlbError):
    """A compose project cannot be read or changed as asked; nothing was changed."""


# ---- containers ---------------------------------------------------------------------------------------------

def compose_labels(labels):
    """What compose says about a container (its ``Config.Labels``), or None when compose did not make it.

    Returns project, service, working_dir, config_files (list, in load order) and number.
    """
    labels = labels or {}
    if not labels.get(PROJECT) or not labels.get(SERVICE):
        return None
    files = [item for item in (labels.get(CONFIG_FILES) or "").split(",") if item]
    return {"project": labels[PROJECT], "service": labels[SERVICE], "working_dir": labels.get(WORKING_DIR) or None,
            "config_files": files, "number": int(labels.get(NUMBER) or 1)}


def container_names(project, service, number=1):
    """The names compose gives a service's container: v1 '<project>_<service>_1', v2 '<project>-<service>-1'."""
    return ["%s_%s_%d" % (project, service, number), "%s-%s-%d" % (project, service, number)]


def project_name(project_dir, env):
    """compose 1.29's project name: COMPOSE_PROJECT_NAME, else the directory's name, normalised."""
    name = env.get("COMPOSE_PROJECT_NAME") or os.path.basename(os.path.abspath(project_dir)) or "default"
    return re.sub(r"[^-_a-z0-9]", "", name.lower())


def service_container(containers, project, service, working_dir=None):
    """The one container of ``service`` of compose project ``project`` among ``containers`` ({name: labels}).

    None when there is none; ComposeError when two project directories claim it (the same project name
    used in two places) or its labels name another directory than ``working_dir``.
    """
    found = {}
    for name, labels in sorted(containers.items()):
        seen = compose_labels(labels)
        if seen and seen["project"] == project and seen["service"] == service and labels.get(ONEOFF) != "True":
            found[name] = seen
    dirs = sorted(set(seen["working_dir"] for seen in found.values() if seen["working_dir"]))
    if len(dirs) > 1:
        raise ComposeError("two compose projects claim service %s of project %s: %s (containers %s)"
                           % (service, project, " and ".join(dirs), ", ".join(sorted(found))))
    if working_dir and dirs and os.path.normpath(dirs[0]) != os.path.normpath(working_dir):
        raise ComposeError("container %s was made by the compose project in %s, not by %s"
                           % (", ".join(sorted(found)), dirs[0], working_dir))
    names = [name for name in container_names(project, service) if name in found] or sorted(found)
    return names[0] if names else None


# ---- .env (python-dotenv, as compose 1.29 reads it) ---------------------------------------------------------

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:=\s*(.*))?$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "$": "$"}


def _unquote(raw):
    """(value, expand) of the right side of KEY=...: quotes, escapes, a trailing comment."""
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        out, i = [], 1
        while i < len(raw) and raw[i] != quote:
            if quote == '"' and raw[i] == "\\" and i + 1 < len(raw):
                out.append(_ESCAPES.get(raw[i + 1], "\\" + raw[i + 1]))
                i += 2
                continue
            out.append(raw[i])
            i += 1
        if i >= len(raw):
            raise ValueError("unterminated quote")
        return "".join(out), quote == '"'
    return re.sub(r"\s+#.*$", "", raw).strip(), True


def parse_env(text, where=".env"):
    """KEY=VALUE lines of a compose ``.env`` (python-dotenv rules) -> {key: value}.

    Comments and blank lines are skipped, ``export`` is allowed, single quotes are literal, double
    quotes take backslash escapes, ``#`` after a space ends an unquoted value, and ``${VAR}`` /
    ``${VAR:-default}`` refer to keys above (single-quoted values are not expanded). A key without
    ``=`` has no value (None). A line that is none of these is an error naming it.
    """
    env = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        try:
            if not match:
                raise ValueError("not KEY=VALUE")
            key, raw = match.group(1), match.group(2)
            if raw is None:
                env[key] = None
                continue
            value, expand = _unquote(raw)
        except ValueError as exc:
            raise ComposeError("%s line %d cannot be read (%s): %s" % (where, number, exc, line.split("=")[0]))
        env[key] = _expand_dotenv(value, env) if expand else value
    return env


def _expand_dotenv(value, env):
    def one(match):
        name, default = match.group(1), match.group(3)
        current = env.get(name)
        return current if current else (default or "")
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", one, value)


# ---- the compose file's interpolation (compose/config/interpolation.py) --------------------------------------

_TEMPLATE = re.compile(r"\$(?:(\$)|([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|(\{[^}]*\}?))")


def interpolate(value, env, where):
    """``value`` of a compose file with ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?msg}``, ``${VAR?msg}`` and ``$$`` resolved from ``env``.

    A variable ``env`` lacks (with no default) is a ComposeError naming it and ``where`` (compose would
    put an empty string there and the database would get a user or password nobody meant).
    """
    if not isinstance(value, str):
        return value

    def one(match):
        dollar, plain, braced, op, arg, bad = match.groups()
        if dollar:
            return "$"
        if bad is not None:
            raise ComposeError("%s: invalid interpolation %r" % (where, "$" + bad))
        name = plain or braced
        current = env.get(name)
        if op in (":-", ":?"):
            present = bool(current)
        else:
            present = current is not None
        if present:
            return current
        if op in (":-", "-"):
            return arg
        raise ComposeError("%s uses ${%s}, which the project's .env does not set%s"
                           % (where, name, (": " + arg) if op in (":?", "?") and arg else ""))
    return _TEMPLATE.sub(one, value)


# ---- which files compose loads, and the services they define ------------------------------------------------

def config_files(project_dir, env, present):
    """The compose files compose 1.29 loads for ``project_dir`` (absolute, in order).

    ``present``: the names of the files in the directory. COMPOSE_FILE (split on
    COMPOSE_PATH_SEPARATOR, default ':') wins; else the first of docker-compose.yml, .yaml,
    compose.yml, compose.yaml plus the first existing override. ComposeError when there is none.
    """
    listed = env.get("COMPOSE_FILE")
    if listed:
        sep = env.get("COMPOSE_PATH_SEPARATOR") or SEPARATOR
        return [os.path.normpath(os.path.join(project_dir, item)) for item in listed.split(sep) if item]
    main = [name for name in COMPOSE_FILES if name in present]
    if not main:
        raise ComposeError("%s has no compose file (looked for %s and COMPOSE_FILE in its .env)"
                           % (project_dir, ", ".join(COMPOSE_FILES)))
    override = [name for name in OVERRIDE_FILES if name in present]
    return [os.path.join(project_dir, name) for name in main[:1] + override[:1]]


def _as_dict(value, where):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ComposeError("%s is not a mapping" % where)
    return value


def _environment(value):
    """A service's ``environment:`` (list of KEY=VALUE / KEY, or mapping) -> {key: value or None}."""
    if isinstance(value, dict):
        return dict((key, None if item is None else str(item)) for key, item in value.items())
    result = {}
    for item in value or []:
        key, sep, rest = str(item).partition("=")
        result[key] = rest if sep else None
    return result


def _list(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def merge_services(documents):
    """{service: {image, environment, env_file, volumes}} of compose ``documents`` [(path, data)], merged the
    way compose merges files (later files win per key; environment per variable; volumes per target)."""
    services = {}
    for path, data in documents:
        data = _as_dict(data, path)
        for name, service in _as_dict(data.get("services"), "%s: services" % path).items():
            service = _as_dict(service, "%s: service %s" % (path, name))
            merged = services.setdefault(name, {"image": None, "environment": {}, "env_file": [],
                                                "volumes": [], "file": path})
            if service.get("image"):
                merged["image"] = service["image"]
            merged["environment"].update(_environment(service.get("environment")))
            base = os.path.dirname(path)
            for item in _list(service.get("env_file")):
                item = item.get("path") if isinstance(item, dict) else item
                merged["env_file"].append(os.path.join(base, item))
            for item in _list(service.get("volumes")):
                target = volume_target(item)
                merged["volumes"] = [old for old in merged["volumes"] if volume_target(old) != target] + [item]
    return services


def volume_target(item):
    """The path inside the container of a service's volume entry ('src:/path[:mode]', '/path' or long form)."""
    if isinstance(item, dict):
        return item.get("target")
    parts = str(item).split(":")
    if len(parts) == 1:
        return parts[0]
    return parts[1]


def resolve_environment(service, name, env, env_files):
    """A service's environment as the container gets it: ``env_file``s ({path: {k: v}}) first, then the
    interpolated ``environment:`` (a KEY without value takes it from .env, as from compose's shell)."""
    result = {}
    for path in service["env_file"]:
        result.update(dict((k, v) for k, v in env_files[path].items() if v is not None))
    for key, value in service["environment"].items():
        where = "environment %s of service %s" % (key, name)
        if value is None:
            if env.get(key) is None:
                raise ComposeError("%s takes %s from the shell of whoever runs docker-compose; "
                                   "set it in the project's .env" % (where, key))
            result[key] = env[key]
        else:
            result[key] = interpolate(value, env, where)
    return result


def postgres_credentials(environment):
    """user, database, password of the official image's contract (POSTGRES_USER default postgres,
    POSTGRES_DB default the user); password None when the service sets none."""
    user = environment.get("POSTGRES_USER") or "postgres"
    return {"user": user, "database": environment.get("POSTGRES_DB") or user,
            "password": environment.get("POSTGRES_PASSWORD")}


# ---- the hand-back: the override file the collection owns ---------------------------------------------------

def own_file(present, compose_file_set):
    """Which file carries a new hand-back: ``docker-compose.override.yml`` when compose loads it by default
    and the project has no override file, else ``docker-compose.nl-biomero.yml`` (added to COMPOSE_FILE)."""
    if compose_file_set or any(name in present for name in OVERRIDE_FILES):
        return OWN_FILE
    return DEFAULT_OVERRIDE


def read_own(text):
    """(data, compose_file_before, replaced) of a file the collection wrote ({service: the data volume the
    project's own files give it}); ComposeError when it is not ours."""
    import yaml
    if not text.startswith(MARKER):
        raise ComposeError("not a file written by nl_biomero.database")
    before, replaced = False, {}
    for line in text.splitlines():
        if line.startswith(_BEFORE):
            before = json.loads(line[len(_BEFORE):])
        elif line.startswith(_REPLACED):
            replaced = json.loads(line[len(_REPLACED):])
    return yaml.safe_load(text) or {}, before, replaced


def override_data(current, version, service, change):
    """The override's data after handing back ``change`` of ``service`` (None: remove what was handed back).

    ``current``: the data of our file so far ({} for none). ``change``: {image, volume, target}: the
    service runs ``image`` with ``volume`` (created outside compose: ``external: true``, its real name
    as the key) mounted at ``target``. Other services in the file stay; a volume no service uses goes.
    Returns {} when nothing is left.
    """
    data = {"services": dict(current.get("services") or {}), "volumes": dict(current.get("volumes") or {})}
    old = dict(data["services"].pop(service, None) or {})
    # What provisioning wrote for the service (command, healthcheck, restart, bind mounts) stays.
    mounts = [item for item in old.get("volumes") or [] if _volume_source(item) not in data["volumes"]]
    entry = {}
    if change:
        if change.get("image"):
            entry["image"] = change["image"]
        if change.get("volume"):
            target = change.get("target") or "/var/lib/postgresql/data"
            mounts = ["%s:%s" % (change["volume"], target)] + [
                item for item in mounts if volume_target(item) != target]
            data["volumes"][change["volume"]] = {"external": True}
    if mounts:
        entry["volumes"] = mounts
    entry.update((key, value) for key, value in old.items() if key not in ("image", "volumes"))
    if entry:
        data["services"][service] = entry
    return _finish(data, version)


def _finish(data, version):
    """The override's data: volumes no service uses dropped, ``version`` first; {} when no service is left."""
    used = set(_volume_source(item) for svc in data["services"].values() for item in svc.get("volumes", []))
    data["volumes"] = dict((key, value) for key, value in data["volumes"].items() if key in used)
    if not data["services"]:
        return {}
    result = {}
    if version:
        result["version"] = version
    result["services"] = data["services"]
    if data["volumes"]:
        result["volumes"] = data["volumes"]
    return result


def _volume_source(item):
    return str(item).split(":", 1)[0]


def override_text(data, compose_file_before, replaced=None):
    """The file's text: the marker, what COMPOSE_FILE was before (false: we did not touch it), the volumes
    the project's own files give the services (a rollback checks they still exist), the YAML."""
    import yaml
    lines = [MARKER,
             "# Do not edit: nl_biomero.database rewrites this file (provisioning, upgrade) and removes what it added (rollback);",
             "# put your own settings in a file of yours.",
             _BEFORE + json.dumps(compose_file_before),
             _REPLACED + json.dumps(replaced or {}, sort_keys=True)]
    return "\n".join(lines) + "\n" + yaml.safe_dump(data, default_flow_style=False, sort_keys=False)


def set_env_value(text, key, value):
    """``text`` of a .env with ``key`` set to ``value`` (None: its line removed); other lines untouched."""
    lines = text.splitlines()
    out, done = [], False
    for line in lines:
        match = _ENV_LINE.match(line)
        if match and match.group(1) == key and not line.lstrip().startswith("#"):
            if value is not None and not done:
                out.append("%s=%s" % (key, value))
            done = True
            continue
        out.append(line)
    if value is not None and not done:
        out.append("%s=%s" % (key, value))
    return "\n".join(out) + ("\n" if out else "")


def compose_file_with(listed, loaded, own, sep=SEPARATOR):
    """COMPOSE_FILE with ``own`` last: the value set before (``listed``) kept as it is, else the names of
    the files compose loaded by default (``loaded``), in order."""
    if listed:
        return listed + sep + own
    return sep.join([os.path.basename(path) for path in loaded] + [own])


def compose_file_without(value, own, sep=SEPARATOR):
    """COMPOSE_FILE ``value`` without ``own`` (None when nothing is left)."""
    items = [item for item in (value or "").split(sep) if item and os.path.basename(item) != own]
    return sep.join(items) or None


# ---- host actions -------------------------------------------------------------------------------------------

def _read(path):
    with open(path, encoding="utf-8-sig") as handle:
        return handle.read()


def read_project(project_dir):
    """A compose project on this host: dir, name, env (.env), env_text, files (loaded, in order), version
    (the first file's), services (merged). ComposeError naming what is missing."""
    import yaml
    project_dir = os.path.abspath(project_dir)
    if not os.path.isdir(project_dir):
        raise ComposeError("compose project directory %s does not exist" % project_dir)
    env_path = os.path.join(project_dir, ".env")
    env_text = _read(env_path) if os.path.exists(env_path) else ""
    env = parse_env(env_text, env_path)
    files = config_files(project_dir, env, set(os.listdir(project_dir)))
    documents = []
    for path in files:
        if not os.path.isfile(path):
            raise ComposeError("compose file %s (of %s) does not exist" % (path, project_dir))
        try:
            documents.append((path, yaml.safe_load(_read(path)) or {}))
        except yaml.YAMLError as exc:
            raise ComposeError("compose file %s cannot be read: %s" % (path, str(exc).splitlines()[0]))
    version = documents[0][1].get("version") if isinstance(documents[0][1], dict) else None
    if isinstance(documents[0][1], dict) and "services" not in documents[0][1]:
        raise ComposeError("compose file %s has no services: section (compose file format 1 is not supported)"
                           % files[0])
    return {"dir": project_dir, "name": project_name(project_dir, env), "env": env, "env_text": env_text,
            "env_path": env_path, "files": files, "version": None if version is None else str(version),
            "services": merge_services(documents)}


def service_of(project, service):
    if service not in project["services"]:
        raise ComposeError("compose project %s has no service %s (it has %s)"
                           % (project["dir"], service, ", ".join(sorted(project["services"])) or "none"))
    return project["services"][service]


def service_credentials(project, service):
    """The POSTGRES_USER/DB/PASSWORD the container of ``service`` gets (never log the password)."""
    spec = service_of(project, service)
    env_files = {}
    for path in spec["env_file"]:
        if not os.path.isfile(path):
            raise ComposeError("env_file %s of service %s does not exist" % (path, service))
        env_files[path] = parse_env(_read(path), path)
    return postgres_credentials(resolve_environment(spec, service, project["env"], env_files))


def _backup(path, stamp):
    """Keep a copy of ``path`` as '<path>.nlb-backup-<stamp>' before it is changed or removed."""
    backup = "%s.nlb-backup-%s" % (path, stamp)
    archive.write_atomic(backup, open(path, "rb").read(), os.stat(path).st_mode & 0o777)
    return backup


class Handback(object):
    """Write (state present) or remove (absent) the hand-back of ``service`` in the compose project."""

    def __init__(self, project_dir, service, image=None, volume=None, data_dir="/var/lib/postgresql/data",
                 state="present", previous_volume=None, **_ignored):
        self.project_dir = project_dir
        self.service = service
        self.previous_volume = previous_volume
        self.change = {"image": image, "volume": volume, "target": data_dir} if state == "present" else None
        if state == "present" and not (image or volume):
            raise ComposeError("a hand-back of service %s needs an image or a volume" % service)

    def _plan(self):
        project = read_project(self.project_dir)
        service_of(project, self.service)
        present = set(os.listdir(project["dir"]))
        marked = {}
        for name in (DEFAULT_OVERRIDE, OWN_FILE):
            path = os.path.join(project["dir"], name)
            if name in present and _read(path).startswith(MARKER):
                marked[name] = read_own(_read(path))
        listed = project["env"].get("COMPOSE_FILE")
        own = [name for name in (DEFAULT_OVERRIDE, OWN_FILE) if name in marked]
        own = own[0] if own else own_file(present, bool(listed))
        # before: what COMPOSE_FILE was when we added our file to it (None: unset); False: we did not touch it.
        current, before, replaced = marked.get(own, ({}, False, {}))
        self.replaced = replaced.get(self.service)
        replaced = dict((key, value) for key, value in replaced.items() if key != self.service)
        data = self._data(current, project, replaced)
        env_text = project["env_text"]
        sep = project["env"].get("COMPOSE_PATH_SEPARATOR") or SEPARATOR
        if own == OWN_FILE and data and own not in marked:
            before = listed or None
            env_text = set_env_value(env_text, "COMPOSE_FILE", compose_file_with(listed, project["files"], own, sep))
        elif own == OWN_FILE and not data and own in marked and before is not False:
            rest = compose_file_without(listed, own, sep)
            # as it was, unless someone changed it since: then only our file leaves the list
            env_text = set_env_value(env_text, "COMPOSE_FILE", before if before is None or rest == before else rest)
        path = os.path.join(project["dir"], own)
        old_text = _read(path) if own in marked else ""
        new_text = override_text(data, before, replaced) if data else ""
        return project, path, old_text, new_text, env_text

    def _data(self, current, project, replaced):
        """The override's data with this change; ``replaced`` ({service: volume}) updated to match."""
        if self.change and (self.previous_volume or self.replaced):
            # the first upgrade's: the project's own files still give the service that volume
            replaced[self.service] = self.replaced or self.previous_volume
        if self.change and self.change.get("volume") and self.change.get("target"):
            self._check_target(project)
        return override_data(current, project["version"], self.service, self.change)

    def _check_target(self, project):
        # The new volume replaces the mount at the same target; one of the old layout (the data directory
        # moved, PostgreSQL 18) would stay mounted inside the new one.
        target = self.change["target"].rstrip("/")
        targets = [(volume_target(item) or "").rstrip("/") for item in project["services"][self.service]["volumes"]]
        mounts = [str(item) for item, path in zip(project["services"][self.service]["volumes"], targets)
                  if path.startswith(target + "/")]
        if mounts and target not in targets:
            raise ComposeError("service %s mounts %s inside the new data directory %s: the override cannot "
                               "remove a mount; change the compose file by hand"
                               % (self.service, ", ".join(mounts), self.change["target"]))

    def run(self, check_mode=False):
        project, path, old_text, new_text, env_text = self._plan()
        changed = old_text != new_text or env_text != project["env_text"]
        result = {"changed": changed, "file": path if (new_text or old_text) else None, "backups": [],
                  "previous_volume": self.replaced,
                  "compose_files": [], "diff": [
                      {"before_header": path, "after_header": path, "before": old_text, "after": new_text}]}
        if env_text != project["env_text"]:
            result["diff"].append({"before_header": project["env_path"], "after_header": project["env_path"],
                                   "before": project["env_text"], "after": env_text})
        problems = [item for item in ([project["dir"]] + ([project["env_path"]] if os.path.exists(
            project["env_path"]) else [])) if not os.access(item, os.W_OK)]
        if changed and problems:
            raise ComposeError("cannot hand the change of service %s back to compose: %s not writable by %s"
                               % (self.service, " and ".join(problems), _user()))
        if changed and not check_mode:
            stamp = archive.utc_stamp()
            if old_text:
                result["backups"].append(_backup(path, stamp))
            if new_text:
                archive.write_atomic(path, new_text, 0o644)
            elif old_text:
                os.remove(path)
            if env_text != project["env_text"]:
                if os.path.exists(project["env_path"]):
                    result["backups"].append(_backup(project["env_path"], stamp))
                mode = os.stat(project["env_path"]).st_mode & 0o777 if os.path.exists(project["env_path"]) else 0o600
                archive.write_atomic(project["env_path"], env_text, mode)
        after = parse_env(env_text, project["env_path"])
        result["compose_files"] = config_files(project["dir"], after, _after_listing(project["dir"], path, new_text))
        return result


def _after_listing(project_dir, path, new_text):
    present = set(os.listdir(project_dir))
    name = os.path.basename(path)
    return (present | {name}) if new_text else (present - {name})


def _user():
    try:
        import pwd
        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return "uid %d" % os.geteuid()


def handed_back(project_dir, service):
    """Whether a file the collection wrote in ``project_dir`` holds a hand-back of ``service``."""
    for name in (DEFAULT_OVERRIDE, OWN_FILE):
        path = os.path.join(project_dir, name)
        try:
            text = _read(path)
        except (IOError, OSError):
            continue
        if not text.startswith(MARKER):
            continue
        data = read_own(text)[0] or {}
        entry = (data.get("services") or {}).get(service) or {}
        # an image or a volume of ours is a hand-back; provisioning's command, healthcheck, ... are not
        if entry.get("image") or [item for item in entry.get("volumes") or []
                                  if _volume_source(item) in (data.get("volumes") or {})]:
            return True
    return False


def upgrade_problems(labels, target_image, new_volume, data_dir):
    """(compose, problems) for an upgrade of a container with ``labels``: compose None when compose did not
    make it; else what the hand-back needs (working_dir, service, data_dir, ...) and why it cannot be
    written (the project's directory, files, service, write access), checked without changing anything."""
    seen = compose_labels(labels)
    if seen is None:
        return None, []
    seen["data_dir"] = data_dir
    where = "compose project %s (service %s)" % (seen["project"], seen["service"])
    if not seen["working_dir"]:
        return seen, ["%s: the container's labels do not name the project directory (%s)" % (where, WORKING_DIR)]
    try:
        project = read_project(seen["working_dir"])
        loaded = set(os.path.normpath(path) for path in project["files"])
        others = [path for path in seen["config_files"] if os.path.normpath(
            os.path.join(seen["working_dir"], path)) not in loaded]
        if others:
            return seen, ["%s: the container was made with compose file(s) %s, which %s does not load by "
                          "itself (docker-compose -f?); list them in COMPOSE_FILE in its .env so that the "
                          "hand-back is loaded with them" % (where, ", ".join(others), seen["working_dir"])]
        if project["name"] != seen["project"]:
            return seen, ["%s: %s is project %s for docker-compose (COMPOSE_PROJECT_NAME or its name), not %s "
                          "(docker-compose -p?); set COMPOSE_PROJECT_NAME=%s in its .env"
                          % (where, seen["working_dir"], project["name"], seen["project"], seen["project"])]
        Handback(seen["working_dir"], seen["service"], image=target_image, volume=new_volume,
                 data_dir=data_dir).run(check_mode=True)
    except ComposeError as exc:
        return seen, ["%s: %s" % (where, exc)]
    return seen, []


# ---- provisioning: the role postgres_container takes over a service of the project ---------------------------

# The keys of a service provisioning owns in the override (besides its bind mounts under ``volumes``).
PROVISION_KEYS = ("command", "healthcheck", "restart", "stop_grace_period")
HEALTHCHECK_KEYS = ("test", "interval", "timeout", "retries", "start_period")
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")


def compose_escape(value):
    """``value`` as compose must read it literally: ``$`` doubled (compose interpolates every string)."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [compose_escape(item) for item in value]
    if isinstance(value, dict):
        return dict((key, compose_escape(item)) for key, item in value.items())
    return value


def provision_settings(command, healthcheck, restart, mounts, stop_timeout=None):
    """What provisioning writes for a service: {command, healthcheck, restart, stop_grace_period, mounts},
    checked and escaped.

    ``command``: argv (``postgres -N .. -c k=v``); ``healthcheck``: {test, interval, timeout, retries,
    start_period}; ``restart``: a restart policy; ``mounts``: bind mounts 'host path:container path';
    ``stop_timeout``: seconds compose gives the server's clean shutdown (compose's default is 10).
    """
    if not command or not all(isinstance(item, str) for item in command):
        raise ComposeError("command must be a non-empty list of strings")
    unknown = sorted(set(healthcheck or {}) - set(HEALTHCHECK_KEYS))
    if unknown:
        raise ComposeError("healthcheck: unknown key(s) %s (accepted: %s)"
                           % (", ".join(unknown), ", ".join(HEALTHCHECK_KEYS)))
    if restart not in RESTART_POLICIES:
        raise ComposeError("restart must be one of %s, not %r" % (", ".join(RESTART_POLICIES), restart))
    for item in mounts or []:
        parts = str(item).split(":")
        if len(parts) != 2 or not parts[0].startswith("/") or not parts[1].startswith("/"):
            raise ComposeError("mount %r is not '/host/path:/container/path'" % (item,))
    health = dict((key, healthcheck[key]) for key in HEALTHCHECK_KEYS
                  if (healthcheck or {}).get(key) not in (None, ""))
    return {"command": compose_escape(list(command)), "healthcheck": compose_escape(health), "restart": restart,
            "stop_grace_period": "%ds" % int(stop_timeout) if stop_timeout else None,
            "mounts": compose_escape(list(mounts or []))}


def provision_data(current, version, service, settings):
    """The override's data with provisioning's ``settings`` (from :func:`provision_settings`; None: removed)
    for ``service``. The hand-back's image and external volumes and the other services stay as they are."""
    data = {"services": dict(current.get("services") or {}), "volumes": dict(current.get("volumes") or {})}
    old = dict(data["services"].pop(service, None) or {})
    handed = [item for item in old.get("volumes") or [] if _volume_source(item) in data["volumes"]]
    entry = {}
    if old.get("image"):
        entry["image"] = old["image"]
    taken = set(volume_target(item) for item in handed)
    mounts = handed + [item for item in (settings or {}).get("mounts") or [] if volume_target(item) not in taken]
    if mounts:
        entry["volumes"] = mounts
    entry.update((key, value) for key, value in old.items()
                 if key not in ("image", "volumes") and key not in PROVISION_KEYS)
    if settings:
        entry.update((key, settings[key]) for key in PROVISION_KEYS if settings.get(key))
    # the service keeps its place in the file (a re-run writes the same text)
    services = list((current.get("services") or {}).items())
    if service not in dict(services):
        services.append((service, None))
    data["services"] = dict((name, entry if name == service else value) for name, value in services
                            if name != service or entry)
    return _finish(data, version)


def start_period_allowed(version):
    """Whether compose file format ``version`` (None: the compose specification) knows healthcheck start_period."""
    if version is None:
        return True
    major, _dot, minor = str(version).partition(".")
    try:
        major, minor = int(major), int(minor or 0)
    except ValueError:
        return True  # not a format number compose knows; compose itself will say
    return (major == 2 and minor >= 3) or (major == 3 and minor >= 4) or major > 3


def container_differs(info, command, test, restart, mounts, stop_timeout=None):
    """Why the container (inspect data, None: missing) does not run ``command`` with health check ``test``,
    restart policy ``restart``, bind ``mounts`` (as given, not escaped) and ``stop_timeout``; [] when it does."""
    if info is None:
        return ["no container"]
    config, host = info.get("Config") or {}, info.get("HostConfig") or {}
    reasons = []
    if not (info.get("State") or {}).get("Running"):
        reasons.append("not running")
    if list(config.get("Cmd") or []) != list(command):
        reasons.append("command")
    if list((config.get("Healthcheck") or {}).get("Test") or []) != list(test or []):
        reasons.append("healthcheck")
    if ((host.get("RestartPolicy") or {}).get("Name") or "no") != restart:
        reasons.append("restart")
    bound = set("%s:%s" % (m.get("Source"), m.get("Destination")) for m in info.get("Mounts") or []
                if m.get("Type") == "bind")
    if [item for item in mounts or [] if item not in bound]:
        reasons.append("mounts")
    if stop_timeout and config.get("StopTimeout") != int(stop_timeout):
        reasons.append("stop timeout")
    return reasons


class ServiceSettings(Handback):
    """Write (state present) or remove (absent) provisioning's settings of ``service`` in the override the
    hand-back uses (same file choice, COMPOSE_FILE handling, marker and backups)."""

    def __init__(self, project_dir, service, command=None, healthcheck=None, restart="unless-stopped",
                 mounts=None, state="present", stop_timeout=None):
        self.project_dir = project_dir
        self.service = service
        self.previous_volume = None
        self.change = None
        self.settings = (provision_settings(command, healthcheck, restart, mounts, stop_timeout)
                         if state == "present" else None)

    def _data(self, current, project, replaced):
        if self.settings and self.settings["healthcheck"].get("start_period") and not start_period_allowed(
                project["version"]):
            raise ComposeError("compose file format %s (version: of %s) has no healthcheck start_period (it needs "
                               "2.3+ or 3.4+): raise the version, or leave start_period out of the health check"
                               % (project["version"], project["files"][0]))
        if self.replaced:
            replaced[self.service] = self.replaced  # the hand-back's record stays
        return provision_data(current, project["version"], self.service, self.settings)


def service_facts(project, service, containers):
    """What the role needs of ``service``: project (name), container (the service's container among
    ``containers`` {name: labels}, else compose v1's name for it), exists, image, user, database."""
    spec = service_of(project, service)
    if not spec.get("image"):
        raise ComposeError("service %s of compose project %s has no image: (a build: service cannot be taken "
                           "over)" % (service, project["dir"]))
    found = service_container(containers, project["name"], service, project["dir"])
    credentials = service_credentials(project, service)
    return {"project": project["name"], "dir": project["dir"], "service": service,
            "container": found or container_names(project["name"], service)[0], "exists": found is not None,
            "image": interpolate(spec["image"], project["env"], "image of service %s" % service),
            "user": credentials["user"], "database": credentials["database"]}


# ---- a project named by its directory: database containers, credentials, clients ----------------------------

# The platform's services (NL-BIOMERO's docker-compose.yml): the two databases, keyed by the component
# name a backup set gives them, and the clients that write to them.
DATABASE_SERVICES = {"omero": "database", "biomero": "database-biomero"}
CLIENT_SERVICES = ("omeroserver", "omeroworker-1", "biomeroworker", "omeroweb", "metabase", "biomero-importer")


def project_view(project, containers, services=None, clients=None, require_containers=True):
    """What the collection needs of ``project`` (:func:`read_project`) and its ``containers``
    ({name: labels} of the containers labelled with its project name): per database component
    {service, container}, the client containers and services.

    ``services``: {component: service} (default :data:`DATABASE_SERVICES`); ``clients``: service names
    (None: those of :data:`CLIENT_SERVICES` the project defines; a named one it lacks is an error).
    A database service without a container is an error (``require_containers``) or container None.
    """
    services = DATABASE_SERVICES if services is None else services
    instances = {}
    for component, service in services.items():
        if not service:
            continue
        service_of(project, service)
        container = service_container(containers, project["name"], service, project["dir"])
        if container is None and require_containers:
            raise ComposeError("service %s of compose project %s (%s) has no container: run docker-compose up -d "
                               "there first" % (service, project["name"], project["dir"]))
        instances[component] = {"service": service, "container": container}
    if clients is None:
        client_services = [name for name in CLIENT_SERVICES if name in project["services"]]
    else:
        for name in clients:
            service_of(project, name)
        client_services = list(clients)
    client_containers = []
    for service in client_services:
        container = service_container(containers, project["name"], service, project["dir"])
        if container:
            client_containers.append(container)
    return {"project": project["name"], "project_dir": project["dir"], "files": project["files"],
            "instances": instances, "clients": client_containers, "client_services": client_services}


def project_info(project_dir, engine, services=None, clients=None, require_containers=True, passwords=False):
    """:func:`project_view` of the compose project in ``project_dir`` on this host, with the user and
    database (and with ``passwords`` the password) each database service's container gets."""
    project = read_project(project_dir)
    containers = dict(engine.labelled("container", "%s=%s" % (PROJECT, project["name"])))
    view = project_view(project, containers, services, clients, require_containers)
    for entry in view["instances"].values():
        credentials = service_credentials(project, entry["service"])
        entry.update(user=credentials["user"], database=credentials["database"])
        if passwords:
            entry["password"] = credentials["password"]
    return view


def client_argv(name, labels, action, compose_command, engine_argv, timeout=None):
    """(argv, cwd) that stops / starts / pauses / unpauses client container ``name``: the compose way
    (``<compose_command> -p <project> <action> <service>`` in the project directory, so compose's view stays
    true) when compose made it and ``compose_command`` is given, else ``engine_argv(action, name)``."""
    seen = compose_labels(labels)
    extra = ["-t", str(int(timeout))] if action == "stop" and timeout is not None else []
    if compose_command and seen and seen["working_dir"]:
        return list(compose_command) + ["-p", seen["project"], action] + extra + [seen["service"]], seen["working_dir"]
    return engine_argv(*([action] + extra + [name])), None


class ClientControl(object):
    """Stops and starts client containers: the compose way (:func:`client_argv`) when compose made them and
    ``compose_command`` is given and installed, else with the engine. ``notes`` says where it fell back."""

    def __init__(self, engine, compose_command=None, timeout=None):
        import shutil
        self.engine = engine
        self.timeout = timeout
        self.notes = []
        self.compose_command = list(compose_command or [])
        if self.compose_command and not shutil.which(self.compose_command[0]):
            self.notes.append("%s is not installed: client containers made by compose are stopped and started "
                              "with %s" % (self.compose_command[0], engine.binary))
            self.compose_command = []

    def how(self, name, labels):
        """'compose' or 'engine': how ``name`` is stopped and started."""
        return "compose" if client_argv(name, labels, "start", self.compose_command, self.engine.argv)[1] else "engine"

    def act(self, name, labels, action, timeout=None):
        """(rc, stderr) of ``action`` (stop, start, pause, unpause) on client container ``name``."""
        from ansible_collections.nl_biomero.database.plugins.module_utils.engine import EngineError, run
        argv, cwd = client_argv(name, labels, action, self.compose_command, self.engine.argv, timeout)
        # the engine's call timeout on top of the stop timeout; none when the engine has none (a module)
        limit = None if self.engine.timeout is None else (timeout or 0) + self.engine.timeout
        try:
            rc, _out, err = run(argv, timeout=limit, cwd=cwd)
        except EngineError as exc:
            return 1, str(exc)
        return rc, err.strip()


def clients_to(engine, names, state, compose_command=None, timeout=None, check_mode=False):
    """Bring client containers ``names`` to ``state`` (stopped: the running ones, in order; started: the
    stopped ones, in reverse order) with :class:`ClientControl`. Returns the result of module pg_clients;
    ComposeError (with that result) at the first container that cannot be stopped, or after trying every
    one when some cannot be started."""
    control = ClientControl(engine, compose_command, timeout)
    action = "stop" if state == "stopped" else "start"
    result = {"changed": False, "clients": [], "changed_clients": [], "warnings": list(control.notes)}
    errors = []
    infos = dict((name, engine.inspect(name)) for name in names)
    # A client of the other engine named by mistake would keep writing: refused before anything stops.
    elsewhere = [text for text in (engine.other_engine_refusal(name, "client container") for name in names
                                   if infos[name] is None) if text]
    if elsewhere:
        raise ComposeError("; ".join(elsewhere), result)
    for name in (names if action == "stop" else list(reversed(names))):
        info = infos[name]
        if info is None:
            if action == "start":
                errors.append("client container %s does not exist" % name)
            result["clients"].append({"name": name, "state": "missing", "how": None})
            continue
        labels = (info.get("Config") or {}).get("Labels") or {}
        running = bool((info.get("State") or {}).get("Running"))
        entry = {"name": name, "state": "running" if running else "stopped", "how": control.how(name, labels)}
        result["clients"].append(entry)
        if running == (action == "start"):
            continue
        if not check_mode:
            rc, err = control.act(name, labels, action, timeout)
            if rc != 0:
                errors.append("could not %s client container %s (%s): %s" % (action, name, entry["how"], err))
                if action == "stop":
                    break
                continue
        entry["state"] = "stopped" if action == "stop" else "running"
        result["changed"] = True
        result["changed_clients"].append(name)
    if errors:
        raise ComposeError("; ".join(errors), result)
    return result
