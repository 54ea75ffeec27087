# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine_* actions' argument mapping (pure: no I/O).

The roles describe containers, volumes, networks and execs once, in the
argument shape of community.docker's modules. For ``engine: docker`` the
arguments go to community.docker unchanged (except the relabel of bind mounts,
which Docker only takes in ``volumes`` strings); for ``engine: podman`` they are
mapped here onto containers.podman's modules. An argument podman cannot honour
is an error naming it, raised before anything runs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import shlex
import signal

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

RELABELS = ("", "z", "Z")

DOCKER = {
    "container": "community.docker.docker_container",
    "volume": "community.docker.docker_volume",
    "network": "community.docker.docker_network",
    "exec": "community.docker.docker_container_exec",
    "image_pull": "community.docker.docker_image_pull",
}
PODMAN = {
    "container": "containers.podman.podman_container",
    "volume": "containers.podman.podman_volume",
    "network": "containers.podman.podman_network",
    "exec": "containers.podman.podman_container_exec",
    "image_pull": "containers.podman.podman_image",
}

# community.docker argument -> containers.podman argument, where only the name differs.
_CONTAINER_RENAMES = {
    "name": "name", "image": "image", "command": "command", "env": "env", "labels": "label",
    "published_ports": "publish", "shm_size": "shm_size", "memory": "memory", "restart_policy": "restart_policy",
    "stop_timeout": "stop_timeout", "runtime": "runtime", "user": "user", "entrypoint": "entrypoint",
    "detach": "detach", "working_dir": "workdir", "hostname": "hostname",
    # what the upgrade carries over from an inspected podman container (upgrade_plan's clone options)
    "capabilities": "cap_add", "cap_drop": "cap_drop", "security_opts": "security_opt", "ipc_mode": "ipc",
    "pid_mode": "pid", "uts": "uts", "log_driver": "log_driver", "memory_swappiness": "memory_swappiness",
    "privileged": "privileged", "read_only": "read_only", "init": "init", "sysctls": "sysctl",
    "dns_servers": "dns", "dns_search_domains": "dns_search", "groups": "group_add",
}
# Arguments that mean the same to both engines' modules and that the mapping handles itself.
_CONTAINER_HANDLED = ("state", "pids_limit", "mounts", "volumes", "networks", "network_mode", "healthcheck", "cpus",
                      "stop_signal", "ulimits", "auto_remove", "keep_volumes", "recreate", "pull", "comparisons",
                      "container_default_behavior", "force_kill", "networks_cli_compatible", "output_logs")
_STATES = {"started": "started", "stopped": "stopped", "present": "present", "absent": "absent"}


class EngineArgsError(NlbError):
    """Arguments that the chosen engine cannot honour."""


def _refuse(what, names, engine="podman"):
    if names:
        raise EngineArgsError("%s: argument(s) %s cannot be honoured with engine %s; accepted: %s"
                              % (what, ", ".join(sorted(names)), engine, ", ".join(sorted(_accepted(what)))))


def _accepted(what):
    if what == "engine_container":
        return set(_CONTAINER_RENAMES) | set(_CONTAINER_HANDLED)
    return set()


def relabel_of(mount):
    """A mount's SELinux relabel ('' | z | Z); anything else is an error naming it."""
    value = mount.get("relabel") or ""
    if value not in RELABELS:
        raise EngineArgsError("mount %s: relabel '%s' is not one of: '', z, Z" % (mount.get("target"), value))
    if value and mount.get("type", "volume") != "bind":
        raise EngineArgsError("mount %s: relabel applies to bind mounts only" % mount.get("target"))
    return value


def volume_string(mount):
    """``source:target[:options]`` of a mount (the -v form both engines read; carries ro and z/Z)."""
    options = [opt for opt in ("ro" if mount.get("read_only") else "", relabel_of(mount)) if opt]
    text = "%s:%s" % (mount["source"], mount["target"])
    return text + (":" + ",".join(options) if options else "")


def docker_container(args):
    """community.docker.docker_container arguments: the same, with relabelled binds moved to ``volumes``."""
    args = dict(args)
    mounts = args.pop("mounts", None)
    if mounts is not None:
        plain = [dict((k, v) for k, v in m.items() if k != "relabel") for m in mounts if not relabel_of(m)]
        labelled = [volume_string(m) for m in mounts if relabel_of(m)]
        args["mounts"] = plain
        if labelled:
            args["volumes"] = list(args.get("volumes") or []) + labelled
    return args


def _ulimit(text):
    """docker's ``nofile:soft:hard`` -> podman's ``nofile=soft:hard`` (podman's inspect says RLIMIT_NOFILE)."""
    name, _sep, values = str(text).partition(":")
    if not values:
        raise EngineArgsError("ulimit '%s' is not of the form name:soft[:hard]" % text)
    name = name.lower()
    return "%s=%s" % (name[len("rlimit_"):] if name.startswith("rlimit_") else name, values)


def _signal(value):
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    name = str(value).upper()
    number = getattr(signal, name if name.startswith("SIG") else "SIG" + name, None)
    if number is None:
        raise EngineArgsError("stop_signal '%s' is not a signal name or number" % value)
    return int(number)


def _healthcheck(health, out):
    test = health.get("test")
    if isinstance(test, (list, tuple)):
        if test[0] == "CMD":
            test = " ".join(shlex.quote(str(part)) for part in test[1:])
        elif test[0] == "CMD-SHELL":
            test = test[1]
        else:
            raise EngineArgsError("healthcheck test must start with CMD or CMD-SHELL, got '%s'" % test[0])
    # podman 4 reads a string (never an array) as the command, run by /bin/sh -c.
    out["healthcheck"] = test
    for key in ("interval", "timeout", "retries", "start_period"):
        if health.get(key) not in (None, ""):
            out["healthcheck_" + key] = str(health[key])


def podman_container(args):
    """containers.podman.podman_container arguments for docker_container ``args``."""
    args = dict((k, v) for k, v in args.items() if v is not None)
    _refuse("engine_container", [k for k in args if k not in _CONTAINER_RENAMES and k not in _CONTAINER_HANDLED])
    out = dict((_CONTAINER_RENAMES[k], v) for k, v in args.items() if k in _CONTAINER_RENAMES)
    state = args.get("state", "started")
    if state not in _STATES:
        raise EngineArgsError("state '%s' is not one of: %s" % (state, ", ".join(sorted(_STATES))))
    out["state"] = _STATES[state]
    if state == "absent":
        absent = {"name": out["name"], "state": "absent"}
        if "stop_timeout" in out:
            absent["stop_timeout"] = out["stop_timeout"]
        return absent
    volumes = [volume_string(m) for m in args.get("mounts") or []] + list(args.get("volumes") or [])
    if volumes:
        out["volume"] = volumes
    networks = [n["name"] for n in args.get("networks") or []]
    if args.get("network_mode") and args["network_mode"] not in networks:
        networks.insert(0, args["network_mode"])
    if networks:
        out["network"] = networks
    aliases = sorted(set(a for n in args.get("networks") or [] for a in n.get("aliases") or []))
    if aliases:
        out["network_aliases"] = aliases
    if args.get("healthcheck"):
        _healthcheck(args["healthcheck"], out)
    if args.get("cpus"):
        out["cpus"] = str(args["cpus"])
    if args.get("stop_signal") is not None:
        out["stop_signal"] = _signal(args["stop_signal"])
    if args.get("ulimits"):
        out["ulimit"] = [_ulimit(u) for u in args["ulimits"]]
    if args.get("recreate"):
        out["recreate"] = True
    if args.get("auto_remove"):
        out["rm"] = True
    if isinstance(out.get("entrypoint"), (list, tuple)):
        out["entrypoint"] = json.dumps(list(out["entrypoint"]))  # podman reads a JSON array as the exec form
    if out.get("runtime") == "oci":
        del out["runtime"]  # what podman's inspect says of any runtime: not a runtime's name
    if args.get("pids_limit"):
        out["pids_limit"] = str(args["pids_limit"])
    pull = args.get("pull")
    if pull not in (None, False, ""):
        out["pull"] = "always" if pull is True else str(pull)
    return out


def podman_volume(args):
    """containers.podman.podman_volume arguments for docker_volume ``args`` (name, state, labels)."""
    _refuse_other("engine_volume", args, ("name", "state", "labels", "volume_name"))
    out = {"name": args.get("name") or args.get("volume_name"), "state": args.get("state") or "present"}
    if args.get("labels"):
        out["label"] = dict(args["labels"])
    return out


NETWORK_ARGS = ("name", "state", "labels", "connected", "appends", "force")


def podman_network(args):
    """containers.podman.podman_network arguments for docker_network ``args`` (name, state only; the
    action runs podman_network_plan's CLI steps instead, which honour all of NETWORK_ARGS)."""
    _refuse_other("engine_network", args, ("name", "state"))
    return {"name": args["name"], "state": args.get("state") or "present"}


def podman_network_plan(args, exists, connected_now):
    """The ``podman network`` commands (argv lists) that bring a network to docker_network ``args``.

    ``exists``: whether the network exists; ``connected_now``: the names of the containers on it.
    containers.podman's module has no labels, no connect, and its ``force`` REMOVES the containers on
    the network: so podman gets the CLI. docker's semantics: ``connected`` joins running containers
    (``appends: false`` also disconnects the others), ``force`` with ``state: absent`` disconnects the
    containers (they keep running) before the removal; labels are set when the network is made.
    """
    _refuse_other("engine_network", args, NETWORK_ARGS)
    name = args["name"]
    state = args.get("state") or "present"
    if state not in ("present", "absent"):
        raise EngineArgsError("engine_network: state '%s' is not one of: absent, present" % state)
    connected_now = list(connected_now or [])
    steps = []
    if state == "absent":
        if not exists:
            return steps
        if connected_now and not args.get("force"):
            raise EngineArgsError("engine_network: network %s is used by %s; set force to disconnect them"
                                  % (name, ", ".join(sorted(connected_now))))
        steps += [["podman", "network", "disconnect", "--force", name, c] for c in sorted(connected_now)]
        return steps + [["podman", "network", "rm", name]]
    if not exists:
        create = ["podman", "network", "create"]
        for key, value in sorted((args.get("labels") or {}).items()):
            create += ["--label", "%s=%s" % (key, value)]
        steps.append(create + [name])
        connected_now = []
    wanted = [str(c) for c in args.get("connected") or []]
    steps += [["podman", "network", "connect", name, c] for c in wanted if c not in connected_now]
    if args.get("connected") is not None and not args.get("appends"):
        steps += [["podman", "network", "disconnect", name, c] for c in sorted(connected_now) if c not in wanted]
    return steps


def podman_exec(args):
    """containers.podman.podman_container_exec arguments for docker_container_exec ``args``."""
    _refuse_other("engine_exec", args, ("container", "argv", "command", "env", "user", "chdir", "stdin",
                                        "stdin_add_newline", "strip_empty_ends"))
    out = {"name": args["container"]}
    for theirs, ours in (("argv", "argv"), ("command", "command"), ("env", "env"), ("user", "user"),
                         ("chdir", "workdir")):
        if args.get(theirs) is not None:
            out[ours] = args[theirs]
    return out


def podman_exec_stdin(args):
    """ansible.builtin.command arguments running ``podman exec -i`` for a docker_container_exec with stdin
    (containers.podman's exec module takes no stdin)."""
    podman_exec(args)
    if args.get("argv") is None:
        raise EngineArgsError("engine_exec: stdin needs argv with engine podman")
    argv = ["podman", "exec", "-i"]
    for name, value in sorted((args.get("env") or {}).items()):
        argv += ["--env", "%s=%s" % (name, value)]
    if args.get("user"):
        argv += ["--user", str(args["user"])]
    if args.get("chdir"):
        argv += ["--workdir", args["chdir"]]
    out = {"argv": argv + [args["container"]] + [str(a) for a in args["argv"]], "stdin": args["stdin"]}
    for key in ("stdin_add_newline", "strip_empty_ends"):
        if args.get(key) is not None:
            out[key] = args[key]
    return out


def podman_image_pull(args):
    """containers.podman.podman_image arguments for docker_image_pull ``args`` (pull only when missing)."""
    _refuse_other("engine_image_pull", args, ("name", "pull", "tag"))
    if (args.get("pull") or "not_present") != "not_present":
        raise EngineArgsError("engine_image_pull: pull '%s' cannot be honoured with engine podman; accepted: "
                              "not_present" % args["pull"])
    name = args["name"] + (":" + args["tag"] if args.get("tag") else "")
    return {"name": name, "state": "present"}


def _refuse_other(what, args, accepted):
    unknown = sorted(k for k, v in args.items() if k not in accepted and v is not None)
    if unknown:
        raise EngineArgsError("%s: argument(s) %s cannot be honoured with engine podman; accepted: %s"
                              % (what, ", ".join(unknown), ", ".join(sorted(accepted))))


_PODMAN_MAPPERS = {
    "container": podman_container, "volume": podman_volume, "network": podman_network, "exec": podman_exec,
    "image_pull": podman_image_pull,
}


def module_for(engine, kind, args):
    """(module name, arguments) of the ``kind`` action (container, volume, ...) on ``engine``."""
    if engine not in ("docker", "podman"):
        raise EngineArgsError("engine '%s' is not supported; use one of: auto, docker, podman" % engine)
    if kind not in _PODMAN_MAPPERS:
        raise EngineArgsError("unknown engine action '%s'" % kind)
    if engine == "docker":
        return DOCKER[kind], (docker_container(args) if kind == "container" else dict(args))
    if kind == "exec" and args.get("stdin") is not None:
        return "ansible.builtin.command", podman_exec_stdin(args)
    return PODMAN[kind], _PODMAN_MAPPERS[kind](args)


# ---- engine_host_info: podman's inspect output in docker_host_info's list shape -------------------

_PODMAN_STATES = {"configured": "created", "stopped": "exited", "stopping": "running"}


def podman_listed(inspected):
    """docker_host_info ``containers`` (verbose) entries for ``podman container inspect`` dicts.

    Only the keys the roles read: Id, Names, Image, State, Status (with docker's
    "(healthy)" suffix), Labels.
    """
    listed = []
    for item in inspected or []:
        state_info = item.get("State") or {}
        state = state_info.get("Status") or ""
        state = _PODMAN_STATES.get(state, state)
        health = ((state_info.get("Health") or state_info.get("Healthcheck") or {}).get("Status") or "")
        status = {"running": "Up", "created": "Created", "exited": "Exited (%s)" % state_info.get("ExitCode", 0),
                  "paused": "Up (Paused)"}.get(state, state.capitalize())
        if health and state == "running":
            status += " (%s)" % ("health: starting" if health == "starting" else health)
        config = item.get("Config") or {}
        listed.append({
            "Id": item.get("Id") or "",
            "Names": ["/" + (item.get("Name") or "").lstrip("/")],
            "Image": item.get("ImageName") or config.get("Image") or "",
            "State": state,
            "Status": status,
            "Labels": dict(config.get("Labels") or {}),
        })
    return listed


def filter_listed(listed, filters):
    """docker's container filters ``name`` (regular expressions) and ``label`` (key or key=value)."""
    filters = filters or {}
    names = _as_list(filters.get("name"))
    labels = _as_list(filters.get("label"))
    kept = []
    for container in listed:
        name = container["Names"][0]
        if names and not any(re.search(pattern, name) or re.search(pattern, name.lstrip("/")) for pattern in names):
            continue
        if not all(_label_matches(container["Labels"], wanted) for wanted in labels):
            continue
        kept.append(container)
    return kept


def _label_matches(have, wanted):
    key, sep, value = str(wanted).partition("=")
    return key in have and (not sep or have[key] == value)


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def elsewhere_probe(engine, wanted, listed):
    """(other engine, shell command) that prints the names of ``wanted`` containers missing from ``listed``
    (docker_host_info entries) but present in the other engine; (other, None) when none is missing."""
    other = "docker" if engine == "podman" else "podman"
    have = set(c["Names"][0].lstrip("/") for c in listed or [])
    missing = [str(name) for name in wanted or [] if str(name) not in have]
    if not missing:
        return other, None
    quoted = " ".join(shlex.quote(name) for name in missing)
    return other, ("command -v %s >/dev/null 2>&1 && %s container inspect --format '{{.Name}}' %s 2>/dev/null; true"
                   % (other, other, quoted))


def elsewhere_found(other, stdout):
    """{name: other engine} of what :func:`elsewhere_probe`'s command printed."""
    return dict((line.strip().lstrip("/"), other) for line in (stdout or "").splitlines() if line.strip())


def unknown_filters(filters):
    """The container filters podman's mapping does not know (an error names them)."""
    return sorted(k for k in (filters or {}) if k not in ("name", "label"))
