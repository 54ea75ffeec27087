# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Talking to a container engine (docker or podman) through its CLI.

The core is shared by the modules and by the scheduled backup job that runs
without Ansible, so it runs commands with ``subprocess`` rather than
``AnsibleModule.run_command``. Commands are argv lists, never shell strings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess

ENGINES = ("docker", "podman")
# podman 4.3 (Debian 12) loses all output of ``exec -i`` (stdout and stderr; the
# exit status survives) about every other time when the process exits before it
# has read its whole stdin, e.g. ``pg_restore --list`` reading an archive's table
# of contents only. Under podman an interactive command therefore runs in this
# wrapper: it reads what is left of stdin afterwards and keeps the exit status.
PODMAN_STDIN_DRAIN = '"$@"; rc=$?; cat >/dev/null; exit $rc'


class EngineError(Exception):
    """A container engine call failed or the engine/container is unusable."""


def detect_engine(preferred="auto", which=shutil.which):
    """Return the engine binary name to use for ``preferred`` (docker, podman or auto)."""
    if preferred not in ENGINES + ("auto",):
        raise EngineError("engine '%s' is not supported; use one of: auto, %s" % (preferred, ", ".join(ENGINES)))
    candidates = ENGINES if preferred == "auto" else (preferred,)
    for name in candidates:
        if which(name):
            return name
    raise EngineError("no container engine found on PATH (looked for: %s)" % ", ".join(candidates))


def full_env(env=None):
    """os.environ plus ``env``: what a child of an engine CLI call gets."""
    merged = dict(os.environ)
    merged.update(env or {})
    return merged


def wait_child(proc):
    """Wait for a child process; if we are interrupted, the child does not outlive us."""
    try:
        return proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def stderr_tail(handle, limit=64 * 1024):
    """The last ``limit`` bytes of a binary temporary file holding a child's stderr, as text."""
    handle.flush()
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    handle.seek(max(0, end - limit))
    return handle.read().decode("utf-8", "replace").strip()


def run(argv, env=None, input_bytes=None, timeout=None):
    """Run argv and return (rc, stdout, stderr) as text. ``env`` adds to os.environ."""
    try:
        proc = subprocess.run(argv, input=input_bytes, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=full_env(env), timeout=timeout, check=False)
    except OSError as exc:
        raise EngineError("cannot run %s: %s" % (argv[0], exc))
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


class ContainerEngine:
    """Builds and runs engine commands; docker and podman agree on exec, cp and inspect."""

    def __init__(self, binary):
        self.binary = binary

    def exec_argv(self, container, command, env_names=(), user=None, interactive=False):
        """argv for running ``command`` (a list) in ``container``.

        ``env_names`` are passed as ``-e NAME`` without a value, so the engine
        copies the value from its own environment: secrets never reach argv.
        No ``-t``: a TTY would corrupt binary output.
        """
        argv = [self.binary, "exec"]
        if interactive:
            argv.append("-i")
        if user:
            argv += ["-u", user]
        for name in env_names:
            argv += ["-e", name]
        argv.append(container)
        if interactive and self.binary == "podman":
            argv += ["sh", "-c", PODMAN_STDIN_DRAIN, "sh"]
        argv += list(command)
        return argv

    def inspect(self, container):
        """Inspect data of the container, or None when it does not exist."""
        rc, out, err = run([self.binary, "container", "inspect", container])
        if rc != 0:
            if "no such" in err.lower() or "not found" in err.lower():
                return None
            raise EngineError("%s container inspect %s failed: %s" % (self.binary, container, err.strip()))
        data = json.loads(out)
        return data[0] if data else None

    def require_running(self, container):
        """Inspect data of a running container; EngineError naming the state otherwise."""
        info = self.inspect(container)
        if info is None:
            raise EngineError("container '%s' does not exist (%s)" % (container, self.binary))
        state = info.get("State", {})
        if not state.get("Running"):
            raise EngineError("container '%s' is not running (status: %s)" % (container, state.get("Status", "unknown")))
        return info

    def exec_run(self, container, command, env=None, input_bytes=None, user=None, timeout=None):
        """Run ``command`` in the container; ``env`` values travel via the engine's environment."""
        env = env or {}
        argv = self.exec_argv(container, command, env_names=sorted(env), user=user,
                              interactive=input_bytes is not None)
        return run(argv, env=env, input_bytes=input_bytes, timeout=timeout)

    def image_of(self, info):
        """Image reference a container was created from (as the user named it)."""
        return info.get("Config", {}).get("Image") or info.get("Image", "")
