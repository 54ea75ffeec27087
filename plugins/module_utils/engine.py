# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The only way to a container engine (docker or podman): every engine command line is built here.

The core is shared by the modules and by the scheduled backup job that runs
without Ansible, so it runs commands with ``subprocess`` rather than
``AnsibleModule.run_command`` (which holds a child's whole output in memory;
a dump is as large as the database). Commands are argv lists, never shell
strings. Engine quirks (podman's ``exec -i``) live here, once.

- :func:`run`: a short command, output as text, with a timeout.
- :func:`stream`: a long command whose stdin/stdout are files or Python
  readers/writers, memory bounded, sha256 of what it writes, its child killed
  on any interruption or timeout.
- :func:`pipe`: one command's stdout into another's stdin (pg_dump into pg_restore).
- :class:`ContainerEngine`: exec, inspect, cp, logs, volumes and throwaway runs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading

from ansible_collections.nl_biomero.database.plugins.module_utils import labels
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

ENGINES = ("docker", "podman")
CHUNK = 1024 * 1024
STDERR_KEEP = 64 * 1024
# podman 4.3 (Debian 12) loses all output of ``exec -i`` (stdout and stderr; the
# exit status survives) about every other time when the process exits before it
# has read its whole stdin, e.g. ``pg_restore --list`` reading an archive's table
# of contents only. Under podman an interactive command therefore runs in this
# wrapper: it reads what is left of stdin afterwards and keeps the exit status.
PODMAN_STDIN_DRAIN = '"$@"; rc=$?; cat >/dev/null; exit $rc'

# What stream() returns: exit status, stderr tail (text), bytes and sha256 of
# what went to stdout (when it was written to a path, else None), and the
# return value of a stdout reader.
Streamed = collections.namedtuple("Streamed", "rc stderr bytes sha256 output")


class EngineError(NlbError):
    """A container engine call failed, timed out, or the engine/container is unusable."""


def detect_engine(preferred="auto", which=shutil.which):
    """Return the engine binary name to use for ``preferred`` (docker, podman or auto)."""
    if preferred not in ENGINES + ("auto",):
        raise EngineError("engine '%s' is not supported; use one of: auto, %s" % (preferred, ", ".join(ENGINES)))
    candidates = ENGINES if preferred == "auto" else (preferred,)
    for name in candidates:
        if which(name):
            return name
    raise EngineError("no container engine found on PATH (looked for: %s)" % ", ".join(candidates))


def engine_argument_spec():
    """Argument spec of the doc fragment nl_biomero.database.container.engine (the one definition of ``engine``)."""
    return dict(engine=dict(type="str", default="auto", choices=["auto"] + list(ENGINES)))


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
        _kill(proc)
        raise


def _kill(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def stderr_tail(handle, limit=STDERR_KEEP):
    """The last ``limit`` bytes of a binary temporary file holding a child's stderr, as text."""
    handle.flush()
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    handle.seek(max(0, end - limit))
    return handle.read().decode("utf-8", "replace").strip()


def _what(argv):
    """Short name of a command for messages: 'docker exec', 'podman cp', 'pg_dump'."""
    return " ".join(argv[:2]) if argv and os.path.basename(argv[0]) in ENGINES else (argv[0] if argv else "?")


def run(argv, env=None, input_bytes=None, timeout=None, cwd=None):
    """Run argv and return (rc, stdout, stderr) as text. ``env`` adds to os.environ; ``cwd``: the directory
    it runs in (docker-compose reads the project's .env and compose files from there).

    EngineError when it cannot start or runs longer than ``timeout`` seconds
    (the child is killed then).
    """
    try:
        proc = subprocess.run(argv, input=input_bytes, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=full_env(env), timeout=timeout, check=False, cwd=cwd)
    except OSError as exc:
        raise EngineError("cannot run %s%s: %s" % (argv[0], " in %s" % cwd if cwd else "", exc))
    except subprocess.TimeoutExpired:
        raise EngineError("%s did not finish within %s s and was killed" % (_what(argv), timeout))
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


class _Watchdog:
    """Kills the given children when ``timeout`` seconds pass; ``fired`` tells afterwards."""

    def __init__(self, procs, timeout):
        self.procs = procs
        self.fired = False
        self._timer = threading.Timer(timeout, self._fire) if timeout else None
        if self._timer:
            self._timer.daemon = True
            self._timer.start()

    def _fire(self):
        self.fired = True
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()

    def cancel(self):
        if self._timer:
            self._timer.cancel()


def _write_hashed(reader, path, file_mode):
    """Copy ``reader`` into the new file ``path`` (O_EXCL), hashing as it passes; returns (bytes, sha256)."""
    digest = hashlib.sha256()
    count = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode)
    with os.fdopen(fd, "wb") as out:
        while True:
            chunk = reader.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            count += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return count, digest.hexdigest()


class _Feeder:
    """Runs a stdin writer in a thread (so that stdout can be read meanwhile); a broken pipe is not an error."""

    def __init__(self, writer, proc):
        self.error = None
        self._thread = threading.Thread(target=self._run, args=(writer, proc))
        self._thread.daemon = True
        self._thread.start()

    def _run(self, writer, proc):
        sink = proc.stdin
        try:
            writer(sink)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the child stopped reading: its exit status and stderr say why
        except BaseException as exc:  # re-raised in the caller's thread
            self.error = exc
            # killed before its stdin closes: EOF would tell the child that its
            # input is complete (psql would run, even commit, a cut script)
            proc.kill()
        finally:
            try:
                sink.close()
            except OSError:
                pass

    def join(self, reraise=True):
        self._thread.join()
        if reraise and self.error is not None:
            raise self.error


def stream(argv, env=None, stdin=None, stdout=None, timeout=None, file_mode=0o600):
    """Run ``argv`` with streamed input and output; returns :data:`Streamed`.

    ``stdin``: None (nothing), a file path, or ``writer(pipe)`` called in a
    thread. ``stdout``: None (discarded), a path (a NEW file, hashed as it is
    written, fsynced), or ``reader(pipe)`` whose return value is ``output``.
    stderr goes to an anonymous temporary file (bounded).

    The child never outlives the call: any exception (a signal turned into
    one, a reader's error) or ``timeout`` kills it. A timeout raises
    EngineError; a non-zero exit status does not (the caller decides).
    """
    source = open(stdin, "rb") if isinstance(stdin, str) else None
    stdin_arg = source or (subprocess.PIPE if callable(stdin) else subprocess.DEVNULL)
    stdout_arg = subprocess.DEVNULL if stdout is None else subprocess.PIPE
    try:
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(argv, stdin=stdin_arg, stdout=stdout_arg, stderr=err, env=full_env(env))
            except OSError as exc:
                raise EngineError("cannot run %s: %s" % (argv[0], exc))
            watchdog = _Watchdog([proc], timeout)
            feeder = None
            try:
                feeder = _Feeder(stdin, proc) if callable(stdin) else None
                count = checksum = output = None
                try:
                    if isinstance(stdout, str):
                        count, checksum = _write_hashed(proc.stdout, stdout, file_mode)
                    elif stdout is not None:
                        output = stdout(proc.stdout)
                        while proc.stdout.read(CHUNK):  # drain what the reader left
                            pass
                finally:
                    if proc.stdout:
                        proc.stdout.close()
                if feeder:
                    feeder.join()
                rc = proc.wait()
            except BaseException:
                _kill(proc)
                if feeder:
                    feeder.join(reraise=False)
                if watchdog.fired:  # what failed was a reader cut short by the timeout
                    raise EngineError("%s did not finish within %s s and was killed" % (_what(argv), timeout))
                raise
            finally:
                watchdog.cancel()
            if watchdog.fired:
                raise EngineError("%s did not finish within %s s and was killed" % (_what(argv), timeout))
            return Streamed(rc, stderr_tail(err), count, checksum, output)
    finally:
        if source:
            source.close()


def pipe(first_argv, second_argv, first_env=None, second_env=None, timeout=None):
    """``first``'s stdout into ``second``'s stdin, relayed and counted; returns (Streamed, Streamed).

    The first Streamed's ``bytes`` is what passed. Both children are killed
    on any interruption or on ``timeout`` (EngineError).
    """
    with tempfile.TemporaryFile() as err:
        try:
            first = subprocess.Popen(first_argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                     env=full_env(first_env))
        except OSError as exc:
            raise EngineError("cannot run %s: %s" % (first_argv[0], exc))
        watchdog = _Watchdog([first], timeout)
        passed = [0]

        def relay(sink):
            while True:
                chunk = first.stdout.read(CHUNK)
                if not chunk:
                    break
                passed[0] += len(chunk)
                sink.write(chunk)

        try:
            try:
                second = stream(second_argv, env=second_env, stdin=relay, timeout=timeout)
            finally:
                first.stdout.close()  # a second that stopped early: the first gets SIGPIPE
            rc = first.wait()
        except BaseException:
            _kill(first)
            raise
        finally:
            watchdog.cancel()
        if watchdog.fired:
            raise EngineError("%s did not finish within %s s and was killed" % (_what(first_argv), timeout))
        return Streamed(rc, stderr_tail(err), passed[0], None, None), second


class ContainerEngine:
    """Builds and runs engine commands; docker and podman agree on exec, cp, inspect, run and volume.

    ``timeout`` (seconds, None for none) is the default for every short call.
    """

    def __init__(self, binary, timeout=None):
        if binary not in ENGINES:
            binary = detect_engine(binary)
        self.binary = binary
        self.timeout = timeout

    # -- command lines -----------------------------------------------------------

    def argv(self, *args):
        """``[engine, *args]``: the one place an engine command line starts."""
        return [self.binary] + [str(arg) for arg in args]

    def exec_argv(self, container, command, env_names=(), user=None, interactive=False):
        """argv for running ``command`` (a list) in ``container``.

        ``env_names`` are passed as ``-e NAME`` without a value, so the engine
        copies the value from its own environment: secrets never reach argv.
        No ``-t``: a TTY would corrupt binary output.
        """
        argv = self.argv("exec")
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

    def cp_out_argv(self, container, path):
        """argv writing ``path`` of the container to stdout as a tar stream."""
        return self.argv("cp", "%s:%s" % (container, path), "-")

    def cp_in_argv(self, container, directory):
        """argv extracting a tar stream from stdin into ``directory`` of the container."""
        return self.argv("cp", "-", "%s:%s" % (container, directory))

    def throwaway_argv(self, image, command=(), purpose="throwaway", name=None, detach=False, network="none",
                       env_names=(), volumes=(), entrypoint=None, user=None, extra=()):
        """argv of a container the collection starts for a while and removes.

        Never pulls (``--pull never``: an image that is not there is an error,
        not a download), labelled with its ``purpose`` so a sweep can find it,
        ``--rm`` unless detached (then remove it with :meth:`remove`). Values
        of ``env_names`` come from the engine CLI's environment.
        """
        argv = self.argv("run", "--pull", "never", "--label", "%s=%s" % (labels.THROWAWAY, purpose))
        argv += ["-d"] if detach else ["--rm"]
        if name:
            argv += ["--name", name]
        if network:
            argv += ["--network", network]
        if user:
            argv += ["--user", user]
        for env_name in env_names:
            argv += ["-e", env_name]
        for volume in volumes:
            argv += ["-v", volume]
        if entrypoint:
            argv += ["--entrypoint", entrypoint]
        return argv + list(extra) + [image] + list(command)

    # -- calls -------------------------------------------------------------------

    def call(self, *args, **kwargs):
        """Run ``engine *args``; returns (rc, stdout, stderr). Keywords: env, input_bytes, timeout."""
        timeout = kwargs.pop("timeout", self.timeout)
        return run(self.argv(*args), timeout=timeout, **kwargs)

    def checked(self, what, *args, **kwargs):
        """Like :meth:`call` but EngineError naming ``what`` on a non-zero exit; returns stdout."""
        rc, out, err = self.call(*args, **kwargs)
        if rc != 0:
            detail = err.strip() or out.strip() or "exit %d" % rc
            raise EngineError("%s failed (%s %s): %s" % (what, self.binary, args[0] if args else "", detail))
        return out

    def exec_run(self, container, command, env=None, input_bytes=None, user=None, timeout=None):
        """Run ``command`` in the container; ``env`` values travel via the engine's environment."""
        env = env or {}
        argv = self.exec_argv(container, command, env_names=sorted(env), user=user,
                              interactive=input_bytes is not None)
        return run(argv, env=env, input_bytes=input_bytes, timeout=timeout or self.timeout)

    def run_throwaway(self, image, command=(), env=None, timeout=None, **options):
        """Run a throwaway container (see :meth:`throwaway_argv`); returns (rc, stdout, stderr)."""
        env = env or {}
        argv = self.throwaway_argv(image, command, env_names=sorted(env), **options)
        return run(argv, env=env, timeout=timeout or self.timeout)

    def _inspect(self, kind, name):
        rc, out, err = self.call(kind, "inspect", name)
        if rc != 0:
            lowered = err.lower()
            # docker: "No such container/image/volume"; podman: "no such ...", "... not known"
            if "no such" in lowered or "not found" in lowered or "not known" in lowered or "no container" in lowered:
                return None
            raise EngineError("%s %s inspect %s failed: %s" % (self.binary, kind, name, err.strip()))
        data = json.loads(out)
        return data[0] if data else None

    def inspect(self, container):
        """Inspect data of the container, or None when it does not exist."""
        return self._inspect("container", container)

    def image_inspect(self, reference):
        """Inspect data of a local image, or None when it is not there."""
        return self._inspect("image", reference)

    def volume_inspect(self, name):
        """Inspect data of a volume, or None when it does not exist."""
        return self._inspect("volume", name)

    def other_engine_having(self, container, which=shutil.which):
        """The other engine's name when ``container`` is missing here but exists there (a container of the
        other engine named by mistake), else None. A read-only probe: never an error of its own."""
        other = "docker" if self.binary == "podman" else "podman"
        if not which(other):
            return None
        try:
            rc, _out, _err = run([other, "container", "inspect", "--format", "{{.Id}}", container], timeout=15)
        except EngineError:
            return None
        return other if rc == 0 else None

    def other_engine_refusal(self, container, what="container"):
        """The refusal text when ``container`` (missing here) exists in the other engine, else None."""
        other = self.other_engine_having(container)
        if not other:
            return None
        return ("%s '%s' does not exist in %s; a container '%s' exists in %s: the engine is %s (set it to %s if that "
                "container is the one meant); nothing was changed"
                % (what, container, self.binary, container, other, self.binary, other))

    def missing(self, container, what="container"):
        """The text of a missing container, naming the other engine when the container is there."""
        return self.other_engine_refusal(container, what) or "%s '%s' does not exist in %s" % (what, container, self.binary)

    def require_running(self, container):
        """Inspect data of a running container; EngineError naming the state otherwise."""
        info = self.inspect(container)
        if info is None:
            raise EngineError(self.missing(container))
        state = info.get("State", {})
        if not state.get("Running"):
            raise EngineError("container '%s' is not running (status: %s)" % (container, state.get("Status", "unknown")))
        return info

    def image_of(self, info):
        """Image reference a container was created from (as the user named it)."""
        return info.get("Config", {}).get("Image") or info.get("Image", "")

    def storage_root(self):
        """Directory the engine keeps its data in (docker root dir, podman graph root), or None."""
        fmt = "{{.DockerRootDir}}" if self.binary == "docker" else "{{.Store.GraphRoot}}"
        rc, out, _err = self.call("info", "--format", fmt)
        return out.strip() if rc == 0 and out.strip() else None

    def logs(self, container, tail=20):
        """The container's last ``tail`` log lines (stdout and stderr), '' when unreadable."""
        rc, out, err = self.call("logs", "--tail", str(tail), container)
        return (out + err).strip()

    def volume_create(self, name, label=None):
        """Create a named volume (``label``: 'key=value'); EngineError on failure."""
        args = ["volume", "create"] + (["--label", label] if label else []) + [name]
        self.checked("creating volume %s" % name, *args)

    def volume_remove(self, name):
        """Remove a volume if it exists; returns an error text or None."""
        rc, _out, err = self.call("volume", "rm", "-f", name)
        return None if rc == 0 else err.strip() or "exit %d" % rc

    def remove(self, container):
        """Remove a container (running or not) with its anonymous volumes; a missing one is fine."""
        self.call("rm", "-f", "-v", container)

    def remove_network(self, name, containers):
        """Disconnect ``containers`` from network ``name`` (they keep running), then remove it; True when it was
        there. (The same commands on both engines; podman's ``rm --force`` would remove the containers.)"""
        if self.call("network", "inspect", name)[0] != 0:
            return False
        for container in containers:
            self.call("network", "disconnect", "--force", name, container)
        self.checked("removing network %s" % name, "network", "rm", name)
        return True

    def names(self, kind, *filters):
        """Names of the containers (``kind`` 'container', stopped ones too) or volumes ('volume') that match
        every filter ('key=value', as ``--filter`` takes it)."""
        args = ["ps", "-a", "--format", "{{.Names}}"] if kind == "container" else ["volume", "ls", "--format",
                                                                                   "{{.Name}}"]
        for item in filters:
            args += ["--filter", item]
        return self.checked("listing %ss" % kind, *args).split()

    def labelled(self, kind, label):
        """(name, labels dict) of every container (stopped too), volume or network carrying ``label``
        ('key' or 'key=value'); docker and podman both inspect to JSON with Name(s) and Labels."""
        if kind == "network":
            listed = self.checked("listing networks", "network", "ls", "--format", "{{.Name}}",
                                  "--filter", "label=%s" % label).split()
        else:
            listed = self.names(kind, "label=%s" % label)
        if not listed:
            return []
        rc, out, err = self.call(kind, "inspect", *listed)
        found = []
        # A resource removed between ls and inspect makes inspect fail for it; the others still print.
        for item in json.loads(out or "[]") if out.strip() else []:
            name = (item.get("Name") or item.get("name") or "").lstrip("/")
            item_labels = item.get("Labels") or item.get("labels") or (item.get("Config") or {}).get("Labels") or {}
            found.append((name, item_labels))
        if rc != 0 and not found and "no such" not in err.lower() and "not found" not in err.lower():
            raise EngineError("%s %s inspect failed: %s" % (self.binary, kind, err.strip()))
        return found


class Session:
    """A long-lived child (e.g. ``exec -i psql``) fed lines and read up to a marker line.

    For work that must happen inside one open transaction while other
    commands run (an exported snapshot held open over a pg_dump). The child
    is killed on close() after any failure, and on timeout of one exchange.
    """

    def __init__(self, argv, env=None):
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                         env=full_env(env))
        except OSError as exc:
            self._err.close()
            raise EngineError("cannot run %s: %s" % (argv[0], exc))
        self.argv = argv
        self.stderr = None

    def exchange(self, text, marker, timeout=None):
        """Write ``text``, then read stdout lines until the line ``marker``; returns the lines before it."""
        watchdog = _Watchdog([self.proc], timeout)
        try:
            self.proc.stdin.write(text.encode("utf-8"))
            self.proc.stdin.flush()
            lines = []
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line == marker:
                    return lines
                lines.append(line)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except BaseException:
            self.close(kill=True)
            raise
        finally:
            watchdog.cancel()
        self.close(kill=True)
        if watchdog.fired:
            raise EngineError("%s did not answer within %s s and was killed" % (_what(self.argv), timeout))
        raise EngineError("%s ended early: %s" % (_what(self.argv), self.stderr or "no error output"))

    def close(self, kill=False, timeout=30):
        """End the child: closing its stdin lets it finish; ``kill`` (or a hang past ``timeout``) kills it."""
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
        self.proc.wait()
        for handle in (self.proc.stdin, self.proc.stdout):
            try:
                handle.close()
            except OSError:
                pass
        rc = self.proc.returncode
        if not self._err.closed:
            self.stderr = stderr_tail(self._err)
            self._err.close()
        return rc
