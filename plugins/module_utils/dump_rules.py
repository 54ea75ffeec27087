# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rules of a dump without a container: options, names, and checks of what pg_dump wrote.

No engine and no child process here (the I/O is :mod:`dump`): file modes,
compression choice, destination names, reading ``ls``/``nproc`` output, and
the host-side checks of a dump file or of the tar stream a directory-format
dump is copied out in (they read or write local files only).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import os
import posixpath
import signal
import tarfile

from ansible_collections.nl_biomero.database.plugins.module_utils import archive
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import (
    FORMATS,
    PgToolError,
    compression_args,
    parse_compression,
)

# Default parallelism of a directory-format dump or a staged restore: the
# container's CPUs, at most this. More workers than CPUs is not faster, and
# each one is a connection (and load) on a server that may be serving users.
JOBS_CAP = 8

# The last comment pg_dump / pg_dumpall write into a plain script. (17.6+ and
# 15.14+ add a "\unrestrict" line after it, hence "near the end".)
PLAIN_COMPLETE = b"-- PostgreSQL database dump complete"
GLOBALS_COMPLETE = b"-- PostgreSQL database cluster dump complete"
TAIL_BYTES = 64 * 1024
COMPRESSED_PLAIN_EXT = {"gzip": "gz", "lz4": "lz4", "zstd": "zst"}


class DumpError(NlbError):
    """The dump cannot be taken or failed; the message says why (with the tool's stderr)."""


def parse_mode(mode):
    """File mode from '0600' / '600' / 0o600 (an int is taken as is); DumpError otherwise."""
    if isinstance(mode, bool):
        raise DumpError("mode %r is not a file mode; use an octal string such as '0600'" % (mode,))
    if isinstance(mode, int):
        value = mode
    else:
        text = str(mode).strip()
        if text.startswith("0o"):
            text = text[2:]
        try:
            value = int(text, 8)
        except ValueError:
            raise DumpError("mode '%s' is not an octal file mode such as '0600'" % mode)
    if not 0 <= value <= 0o777:
        raise DumpError("mode %s is out of range (0000 to 0777; no setuid/setgid/sticky bits)" % oct(value))
    if not value & 0o600 == 0o600:
        raise DumpError("mode %s would not let the owner read and write the backup" % format(value, "04o"))
    return value


def dir_mode_for(mode):
    """Directory mode matching a file mode: x wherever r is set (0600 -> 0700, 0640 -> 0750)."""
    return mode | ((mode & 0o444) >> 2)


def choose_compression(spec, major, fmt, verify=True):
    """(pg_dump args, described, method) for a compression spec and the container's pg_dump major.

    'auto' means zstd on 16+ and gzip below for custom and directory; tar
    cannot be compressed by pg_dump and plain stays readable text unless asked.
    A plain dump compressed with lz4/zstd cannot be verified here (pg_restore
    does not read plain dumps and Python has no zstd/lz4 decoder), so that
    combination needs verify off.
    """
    if spec in (None, "", "auto") and fmt in ("plain", "tar"):
        spec = "none"
    try:
        args, described = compression_args(spec, major, fmt)
    except PgToolError as exc:
        raise DumpError(str(exc))
    method = parse_compression(described)[0]
    if fmt == "plain" and method in ("lz4", "zstd") and verify:
        raise DumpError("format 'plain' compressed with %s cannot be verified (pg_restore does not read plain dumps); "
                        "use compress: gzip or none, format custom or directory, or verify: false" % method)
    return args, described, method


def extension_for(fmt, method):
    """File extension of a dump: dump, dir, tar, sql (sql.gz, sql.zst, sql.lz4 for compressed plain)."""
    ext = FORMATS[fmt][1]
    if fmt == "plain" and method in COMPRESSED_PLAIN_EXT:
        ext += "." + COMPRESSED_PLAIN_EXT[method]
    return ext


def resolve_dest(dest, dest_dir, database, ext, stamp):
    """Absolute destination path: ``dest`` as given, or ``<dest_dir>/<database>.<stamp>.<ext>``."""
    if bool(dest) == bool(dest_dir):
        raise DumpError("exactly one of dest and dest_dir is needed")
    if dest:
        return os.path.abspath(os.path.expanduser(dest))
    return os.path.join(os.path.abspath(os.path.expanduser(dest_dir)), archive.default_dump_name(database, ext, stamp))


def default_jobs(nproc_output, cap=JOBS_CAP):
    """Parallel jobs from ``nproc`` output in the container: its CPU count, at least 1, at most ``cap``."""
    try:
        cpus = int(str(nproc_output).strip().split()[0])
    except (ValueError, IndexError):
        return 1
    return max(1, min(cpus, cap))


def describe_exit(rc):
    """Human description of a return code from subprocess (negative: signal) or an engine exec (128+N)."""
    if rc < 0:
        return "killed by signal %s" % _signal_name(-rc)
    if rc > 128 and rc - 128 < 65:
        return "exit status %d (killed by signal %s?)" % (rc, _signal_name(rc - 128))
    return "exit status %d" % rc


def _signal_name(number):
    try:
        return "%s (%d)" % (signal.Signals(number).name, number)
    except ValueError:
        return str(number)


def parse_ls_sizes(output):
    """{name: size} of the regular files in ``ls -ln DIR`` output (GNU and busybox agree on the columns)."""
    sizes = {}
    for line in output.splitlines():
        fields = line.split()
        if not fields or fields[0] == "total":
            continue
        if not line.startswith("-") or len(fields) < 9:
            raise DumpError("unexpected entry in the staged dump directory: %s" % line.strip())
        sizes[fields[-1]] = int(fields[4])
    return sizes


def safe_member_path(name, root):
    """Relative path for a tar member of ``<engine> cp CONTAINER:/x/<root> -``.

    Returns '' for the root directory itself. Anything outside ``root``
    (absolute names, '..', other top-level names) raises DumpError: the
    stream comes from inside a container and is not trusted.
    """
    if name.startswith("/") or "\\" in name:
        raise DumpError("refusing unsafe path in the copied dump: %r" % name)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or parts[0] != root:
        raise DumpError("unexpected path in the copied dump: %r (expected it under %s/)" % (name, root))
    rest = parts[1:]
    if any(part == ".." for part in rest):
        raise DumpError("refusing unsafe path in the copied dump: %r" % name)
    return posixpath.join(*rest) if rest else ""


def extract_tar_stream(fileobj, target, root, file_mode=0o600, dir_mode=0o700):
    """Extract a tar stream (read once, in order: ``r|``) of directory ``root`` into ``target``.

    Only regular files and directories are accepted (no links, devices or
    paths outside ``root``). ``target`` must exist. Returns {relative path: size}.
    """
    sizes = {}
    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as stream:
            for member in stream:
                rel = safe_member_path(member.name, root)
                full = os.path.join(target, *rel.split("/")) if rel else target
                if member.isdir():
                    if rel and not os.path.isdir(full):
                        os.mkdir(full, dir_mode)
                    continue
                if not member.isreg():
                    raise DumpError("refusing %s in the copied dump: %r is not a regular file or directory"
                                    % (_tar_type(member), member.name))
                if not rel:
                    raise DumpError("the copied dump is a file, not a directory")
                parent = os.path.dirname(full)
                if not os.path.isdir(parent):
                    os.makedirs(parent, dir_mode)
                source = stream.extractfile(member)
                written = 0
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode)
                with os.fdopen(fd, "wb") as out:
                    while True:
                        chunk = source.read(archive.CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        written += len(chunk)
                if written != member.size:
                    raise DumpError("the copied dump is truncated: %s has %d of %d bytes" % (rel, written, member.size))
                sizes[rel] = written
    except tarfile.TarError as exc:
        raise DumpError("cannot read the copied dump as a tar stream: %s" % exc)
    return sizes


def _tar_type(member):
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hard link"
    return "special file"


def tail_bytes(path, size=TAIL_BYTES):
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        handle.seek(max(0, end - size))
        return handle.read()


def gzip_tail(path, size=TAIL_BYTES):
    """Last ``size`` bytes of a gzip file's content (reads it all, streaming; raises on a bad stream)."""
    tail = b""
    with gzip.open(path, "rb") as handle:
        while True:
            chunk = handle.read(archive.CHUNK)
            if not chunk:
                break
            tail = (tail + chunk)[-size:]
    return tail


def check_plain_complete(path, method="none", marker=PLAIN_COMPLETE):
    """DumpError unless a plain script (optionally gzip) ends with pg_dump's completion comment."""
    try:
        tail = gzip_tail(path) if method == "gzip" else tail_bytes(path)
    except (OSError, EOFError) as exc:
        raise DumpError("the plain dump cannot be read back: %s" % exc)
    if marker not in tail:
        raise DumpError("the plain dump is incomplete: it does not end with %r" % marker.decode("ascii"))


def check_tar_archive(path):
    """Walk a tar archive's headers: every member complete and the end-of-archive blocks present.

    Returns the member count. (Cheap: only headers are read, data is seeked over.)
    """
    size = os.path.getsize(path)
    count = 0
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if member.offset_data + member.size > size:
                    raise DumpError("the tar dump is truncated: member %s is incomplete" % member.name)
                count += 1
            end = tar.offset
    except tarfile.TarError as exc:
        raise DumpError("the tar dump cannot be read: %s" % exc)
    if count == 0:
        raise DumpError("the tar dump is empty")
    with open(path, "rb") as handle:
        handle.seek(end)
        trailer = handle.read(1024)
    if len(trailer) < 1024 or trailer.strip(b"\0"):
        raise DumpError("the tar dump is truncated: the end-of-archive marker is missing")
    return count

