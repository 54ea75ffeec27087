# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test stacks on a host (module pg_stack): create, seed, hand over connection files, tear down, sweep.

Everything a stack makes carries the labels of stack_rules.stack_labels, and
a create that fails removes what it made (by those labels) before it reports.
Seeds go through restore.PgRestore, the verified restore path.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

from ansible_collections.nl_biomero.database.plugins.module_utils import archive, labels, stack_rules, tuning
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine, EngineError, stream
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_archive import inspect_archive
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import major_version
from ansible_collections.nl_biomero.database.plugins.module_utils.restore import PgRestore
from ansible_collections.nl_biomero.database.plugins.module_utils.stack_rules import ROLES, StackError

DEFAULT_FILES_DIR = "~/.cache/nl-biomero/stacks"
DEFAULT_CACHE_DIR = "~/.cache/nl-biomero/stack-seeds"
KINDS = ("container", "volume", "network")  # removal order: containers first, the network last


def _files(files_dir, stack):
    base = os.path.join(os.path.abspath(os.path.expanduser(files_dir)), stack)
    return {"json": base + ".json", "env": base + ".env"}


class Stack:
    """One call of the module: ``state`` present or absent for ``name``, and/or a ``max_age`` sweep."""

    def __init__(self, name=None, state="present", engine="auto", image="nl-biomero/postgres:17", ephemeral=True,
                 publish=True, publish_address="127.0.0.1", omero_port=0, biomero_port=0, omero_user="omero",
                 omero_database="omero", omero_password=None, biomero_user="biomero", biomero_database="biomero",
                 biomero_password=None, omero_seed=None, biomero_seed=None, files_dir=DEFAULT_FILES_DIR,
                 max_age=None, wait_timeout=120, tmpfs_size="1g", shm_size="256m", settings=None,
                 show_secrets=False, seed_cache=True, cache_dir=DEFAULT_CACHE_DIR):
        self.name = stack_rules.check_name(name) if name is not None else None
        if name is None and max_age is None:
            raise StackError("give a stack name, a max_age (hours) for a sweep, or both")
        if state not in ("present", "absent"):
            raise StackError("state %r is not valid: use present or absent" % (state,))
        if max_age is not None:
            stack_rules.stacks_to_sweep({}, 0, max_age)  # validates it
        self.state = state
        self.engine = ContainerEngine(engine, timeout=120)
        self.image = image
        self.ephemeral = bool(ephemeral)
        self.publish_address = publish_address
        self.ports = {"omero": stack_rules.check_port(omero_port if publish else None, "omero_port"),
                      "biomero": stack_rules.check_port(biomero_port if publish else None, "biomero_port")}
        self.accounts = {
            "omero": {"user": omero_user, "database": omero_database, "password": omero_password},
            "biomero": {"user": biomero_user, "database": biomero_database, "password": biomero_password},
        }
        self.seeds = {"omero": omero_seed, "biomero": biomero_seed}
        self.files_dir = files_dir or DEFAULT_FILES_DIR
        self.max_age = max_age
        self.wait_timeout = int(wait_timeout)
        self.tmpfs_size = tmpfs_size
        self.shm_size = shm_size
        self.settings = settings or {}
        self.show_secrets = bool(show_secrets)
        self.seed_cache = bool(seed_cache)
        self.cache_dir = os.path.abspath(os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR))
        self.cached = {}
        self.seed_formats = {}
        self.warnings = []

    # -- what exists ---------------------------------------------------------------

    def _resources(self, stack=None):
        """kind -> [(name, labels)] of one stack's resources (or of every stack's)."""
        label = labels.STACK if stack is None else "%s=%s" % (labels.STACK, stack)
        return dict((kind, self.engine.labelled(kind, label)) for kind in KINDS)

    def _remove(self, stack, check_mode=False):
        """Remove everything labelled with ``stack`` and its files; returns the names removed."""
        found = self._resources(stack)
        removed = []
        paths = [path for path in _files(self.files_dir, stack).values() if os.path.lexists(path)]
        if check_mode:
            return [name for kind in KINDS for name, _labels in found[kind]] + paths
        for name, _labels in found["container"]:
            self.engine.call("rm", "-f", "-v", name)
            removed.append(name)
        for name, _labels in found["volume"]:
            error = self.engine.volume_remove(name)
            if error and "no such" not in error.lower():
                raise StackError("removing volume %s of stack %s failed: %s" % (name, stack, error))
            removed.append(name)
        for name, _labels in found["network"]:
            rc, _out, err = self.engine.call("network", "rm", name)
            if rc != 0 and "not found" not in err.lower() and "no such" not in err.lower():
                raise StackError("removing network %s of stack %s failed: %s" % (name, stack, err.strip()))
            removed.append(name)
        for path in paths:
            os.unlink(path)
            removed.append(path)
        return removed

    def _sweep(self, check_mode):
        created = {}
        for kind, items in self._resources().items():
            for _name, item_labels in items:
                created.setdefault(item_labels.get(labels.STACK), []).append(item_labels.get(labels.STACK_CREATED))
        old = [stack for stack in stack_rules.stacks_to_sweep(created, time.time(), self.max_age) if stack != self.name]
        removed = {}
        for stack in old:
            removed[stack] = self._remove(stack, check_mode)
        return removed

    # -- create --------------------------------------------------------------------

    def _check_inputs(self):
        info = self.engine.image_inspect(self.image)
        if info is None:
            raise StackError("image %s is not on this host (%s); stacks never pull: load or build it first"
                             % (self.image, self.engine.binary))
        env = dict(item.split("=", 1) for item in (info.get("Config") or {}).get("Env") or [] if "=" in item)
        major = major_version(env.get("PG_MAJOR")) or major_version(self.image.rpartition(":")[2])
        for role in ROLES:
            seed = self.seeds[role]
            if not seed:
                continue
            if not os.path.exists(os.path.expanduser(seed)):
                raise StackError("%s_seed %s does not exist" % (role, seed))
            try:
                # The header only: a file that is no dump or script fails here, before anything is made.
                self.seed_formats[role] = inspect_archive(os.path.expanduser(seed))["format"]
            except NlbError as exc:
                raise StackError("%s_seed %s cannot be used: %s" % (role, seed, exc))
        self.cache_paths = {}
        for role in ROLES:
            seed = self.seeds[role]
            if seed and self.seed_cache:
                found = os.stat(os.path.realpath(os.path.expanduser(seed)))
                key = stack_rules.seed_cache_key(info.get("Id"), self.accounts[role]["user"],
                                                 self.accounts[role]["database"],
                                                 (os.path.realpath(os.path.expanduser(seed)), found.st_size,
                                                  found.st_mtime))
                self.cache_paths[role] = os.path.join(self.cache_dir, "%s-%s.tar" % (role, key))
                if os.path.isfile(self.cache_paths[role]):
                    self.cached[role] = self.cache_paths[role]
        return tuning.data_layout(major)[0]

    def _run_container(self, role, names, stack_labels, data_mount):
        account = self.accounts[role]
        args = ["run", "-d", "--pull", "never", "--name", names["containers"][role],
                "--network", names["network"], "--network-alias", stack_rules.ALIASES[role],
                "--label", "%s=%s" % (labels.INSTANCE_ROLE, role),
                "-e", "POSTGRES_USER=%s" % account["user"], "-e", "POSTGRES_DB=%s" % account["database"],
                "-e", "POSTGRES_PASSWORD", "--shm-size", self.shm_size]
        for key, value in sorted(stack_labels.items()):
            args += ["--label", "%s=%s" % (key, value)]
        if self.ephemeral:
            args += ["--tmpfs", "%s:rw,size=%s" % (data_mount, self.tmpfs_size)]
        else:
            args += ["-v", "%s:%s" % (names["volumes"][role], data_mount)]
        args += stack_rules.publish_args(self.publish_address, self.ports[role])
        command = stack_rules.server_command(self.ephemeral, self.settings)
        if role in self.cached:
            args += stack_rules.cached_start_args(self.cached[role], self.image, command)
        else:
            args += [self.image] + command
        # The password travels in the engine CLI's environment, never in argv.
        rc, _out, err = self.engine.call(*args, env={"POSTGRES_PASSWORD": account["password"]})
        if rc != 0:
            hint = ""
            if "allocated" in err or "address already in use" in err:
                hint = " (%s_port %s is taken: choose another, or 0 for a free one)" % (role, self.ports[role])
            raise StackError("starting %s of stack %s failed%s: %s" % (names["containers"][role], self.name, hint,
                                                                       err.strip()))

    def _wait_ready(self, names):
        """Until both servers answer over TCP (the entrypoint's init server listens on no TCP address)."""
        deadline = time.monotonic() + self.wait_timeout
        pending = list(ROLES)
        while pending:
            for role in list(pending):
                container = names["containers"][role]
                account = self.accounts[role]
                # A prepared cluster skips initdb: its socket answers only when the real server runs,
                # with the first stack's password until this one's is set.
                host = [] if role in self.cached else ["-h", "127.0.0.1"]
                probe = ["psql", "-X", "-q"] + host + ["-U", account["user"], "-d", account["database"], "-c", "SELECT 1"]
                rc, _out, _err = self.engine.exec_run(container, probe, env={"PGPASSWORD": account["password"]},
                                                      timeout=30)
                if rc == 0 and role in self.cached:
                    sql = stack_rules.alter_password_sql(account["user"], account["password"])
                    rc, _out, err = self.engine.exec_run(
                        container, ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", account["user"], "-d",
                                    account["database"]], input_bytes=sql.encode("utf-8"), timeout=30)
                    if rc != 0:
                        raise StackError("setting the password in %s failed: %s" % (container, err.strip()))
                if rc == 0:
                    pending.remove(role)
                    continue
                info = self.engine.inspect(container)
                if info is None or not (info.get("State") or {}).get("Running"):
                    raise StackError("%s of stack %s stopped while starting: %s"
                                     % (container, self.name, self.engine.logs(container)))
            if pending and time.monotonic() > deadline:
                raise StackError("%s of stack %s not ready after %d s: %s"
                                 % (", ".join(names["containers"][r] for r in pending), self.name, self.wait_timeout,
                                    self.engine.logs(names["containers"][pending[0]])))
            if pending:
                time.sleep(0.3)

    def _seed(self, role, names):
        seed = self.seeds[role]
        account = self.accounts[role]
        archive_seed = self.seed_formats.get(role) != "plain"
        try:
            result = PgRestore(container=names["containers"][role], database=account["database"],
                               src=seed, engine=self.engine.binary, login_user=account["user"],
                               # A plain script carries its owners in its SQL; archives get the stack's user.
                               owner=account["user"], no_owner=archive_seed, no_privileges=archive_seed,
                               if_exists="replace", analyze=True).run()
        except NlbError as exc:
            raise StackError("%s_seed %s could not be restored: %s" % (role, seed, exc))
        self.warnings.extend(result.get("warnings") or [])
        return {"src": result.get("src"), "format": result.get("format"), "rows": result.get("rows"),
                "checksum_verified": result.get("checksum_verified")}

    def _save_cluster(self, role, names):
        """Keep the seeded cluster (pg_basebackup tar) for the next stack of the same seed; None on failure
        (a warning: the stack itself is fine). Concurrent stacks each write their own file and rename."""
        path = self.cache_paths[role]
        tmp = None
        try:
            if not os.path.isdir(self.cache_dir):
                os.makedirs(self.cache_dir, 0o700)
            tmp = archive.temp_path_beside(path)
            argv = self.engine.exec_argv(names["containers"][role], [
                "pg_basebackup", "-D", "-", "-F", "t", "-X", "fetch", "-c", "fast", "-h", "/var/run/postgresql",
                "-U", self.accounts[role]["user"]])
            done = stream(argv, stdout=tmp, timeout=max(self.wait_timeout, 600), file_mode=0o600)
            if done.rc != 0:
                raise StackError("pg_basebackup failed: %s" % done.stderr.strip())
            archive.place(tmp, path, force=True)
            return path
        except (NlbError, OSError) as exc:
            self.warnings.append("the seeded cluster of %s was not kept for the next stack: %s" % (role, exc))
            return None
        finally:
            if tmp:
                archive.remove_path(tmp)

    def _host_port(self, role, names):
        container = names["containers"][role]
        if self.ports[role] is None:
            info = self.engine.inspect(container) or {}
            network = ((info.get("NetworkSettings") or {}).get("Networks") or {}).get(names["network"]) or {}
            return network.get("IPAddress") or stack_rules.ALIASES[role], stack_rules.PORT
        out = self.engine.checked("reading the port of %s" % container, "port", container,
                                  "%d/tcp" % stack_rules.PORT)
        port = stack_rules.parse_port(out)
        if port is None:
            raise StackError("%s publishes no port for %d/tcp: %s" % (container, stack_rules.PORT, out.strip()))
        return self.publish_address, port

    def _details(self, names, created):
        instances = {}
        for role in ROLES:
            host, port = self._host_port(role, names)
            instances[role] = dict(self.accounts[role], container=names["containers"][role], host=host, port=port)
        return stack_rules.connection_details(self.name, names["network"], self.ephemeral, created, instances)

    def _existing(self, names, found):
        """Details of a complete running stack from its containers (idempotent re-run), else StackError."""
        running = {}
        for role in ROLES:
            info = self.engine.inspect(names["containers"][role])
            if info and (info.get("State") or {}).get("Running"):
                running[role] = info
        if len(running) != len(ROLES):
            made = sorted(name for kind in KINDS for name, _labels in found[kind])
            raise StackError("stack %s exists but is incomplete or stopped (%s); remove it with state=absent and "
                             "create it again" % (self.name, ", ".join(made)))
        for role, info in running.items():
            env = dict(item.split("=", 1) for item in (info.get("Config") or {}).get("Env") or [] if "=" in item)
            self.accounts[role] = {"user": env.get("POSTGRES_USER"), "database": env.get("POSTGRES_DB"),
                                   "password": env.get("POSTGRES_PASSWORD")}
            ports = ((info.get("HostConfig") or {}).get("PortBindings") or {}).get("%d/tcp" % stack_rules.PORT)
            self.ports[role] = 0 if ports else None
            if ports:
                self.publish_address = ports[0].get("HostIp") or self.publish_address
            self.ephemeral = bool((info.get("HostConfig") or {}).get("Tmpfs"))
        created = (running["omero"].get("Config") or {}).get("Labels", {}).get(labels.STACK_CREATED) or 0
        return self._details(names, created)

    def _write_files(self, details, check_mode):
        paths = _files(self.files_dir, self.name)
        texts = {"json": json.dumps(details, indent=2, sort_keys=True) + "\n",
                 "env": stack_rules.dotenv_text(details)}
        changed = False
        for kind, path in paths.items():
            try:
                with open(path) as handle:
                    same = handle.read() == texts[kind] and (os.stat(path).st_mode & 0o777) == 0o600
            except (IOError, OSError):
                same = False
            if same:
                continue
            changed = True
            if not check_mode:
                directory = os.path.dirname(path)
                if not os.path.isdir(directory):
                    os.makedirs(directory, 0o700)
                archive.write_atomic(path, texts[kind], 0o600)
        return paths, changed

    def _create(self, names):
        data_mount = self._check_inputs()
        for role in ROLES:
            if not self.accounts[role]["password"]:
                self.accounts[role]["password"] = stack_rules.generate_password()
        created = int(time.time())
        stack_labels = stack_rules.stack_labels(self.name, created)
        label_args = []
        for key, value in sorted(stack_labels.items()):
            label_args += ["--label", "%s=%s" % (key, value)]
        clock = time.monotonic()
        try:
            network_args = label_args + [names["network"]]
            self.engine.checked("creating network %s" % names["network"], "network", "create", *network_args)
            if not self.ephemeral:
                for role in ROLES:
                    self.engine.checked("creating volume %s" % names["volumes"][role], "volume", "create",
                                        *(label_args + [names["volumes"][role]]))
            for role in ROLES:
                self._run_container(role, names, stack_labels, data_mount)
            self._wait_ready(names)
            ready = time.monotonic() - clock
            seeded = {}
            for role in ROLES:
                if role in self.cached:
                    seeded[role] = {"src": self.seeds[role], "format": self.seed_formats.get(role),
                                    "prepared_cluster": self.cached[role]}
                elif self.seeds[role]:
                    seeded[role] = self._seed(role, names)
                    if role in self.cache_paths:
                        seeded[role]["prepared_cluster"] = self._save_cluster(role, names)
            details = self._details(names, created)
            paths, _changed = self._write_files(details, False)
        except BaseException as exc:
            # Nothing left behind: remove what this call made (found by its labels), then report.
            try:
                self._remove(self.name)
            except Exception as cleanup:  # pragma: no cover - reported with the first error
                self.warnings.append("cleaning up stack %s failed: %s" % (self.name, cleanup))
            if isinstance(exc, (StackError, EngineError)) or not isinstance(exc, Exception):
                raise
            raise StackError("creating stack %s failed (removed what it made): %s" % (self.name, exc))
        return details, paths, {"ready_seconds": round(ready, 2), "seconds": round(time.monotonic() - clock, 2),
                                "seeded": seeded}

    # -- the call ------------------------------------------------------------------

    def run(self, check_mode=False):
        result = {"changed": False, "stack": self.name}
        if self.max_age is not None:
            swept = self._sweep(check_mode)
            result["swept"] = swept
            result["changed"] = bool(swept)
        if self.name is None:
            result["warnings"] = self.warnings
            return result
        names = stack_rules.resource_names(self.name)
        result.update(network=names["network"], containers=sorted(names["containers"].values()))
        if self.state == "absent":
            removed = self._remove(self.name, check_mode)
            result.update(removed=removed, changed=result["changed"] or bool(removed))
        else:
            found = self._resources(self.name)
            if any(found[kind] for kind in KINDS):
                details = self._existing(names, found)
                paths, changed = self._write_files(details, check_mode)
                result["changed"] = result["changed"] or changed
            elif check_mode:
                self._check_inputs()
                result.update(changed=True, msg="would create stack %s" % self.name)
                result["warnings"] = self.warnings
                return result
            else:
                details, paths, timing = self._create(names)
                result.update(changed=True, **timing)
            if details["ephemeral"]:
                self.warnings.append(stack_rules.EPHEMERAL_WARNING % self.name)
            result.update(files=paths, ephemeral=details["ephemeral"],
                          connection=details if self.show_secrets else _without_secrets(details))
        result["warnings"] = self.warnings
        return result


def _without_secrets(details):
    """The connection details with every password (and URL carrying one) left out."""
    shown = dict(details)
    for role in ROLES:
        entry = dict(details[role])
        entry.pop("password", None)
        entry.pop("sqlalchemy_url", None)
        entry.pop("network_sqlalchemy_url", None)
        if "omero_config" in entry:
            entry["omero_config"] = dict((k, v) for k, v in entry["omero_config"].items() if k != "omero.db.pass")
        shown[role] = entry
    return shown


def stack_result(check_mode=False, **params):
    return Stack(**params).run(check_mode=check_mode)
