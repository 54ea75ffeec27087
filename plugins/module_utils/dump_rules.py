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


# How a dump is read back before it gets its final name (option ``verify``):
# toc = pg_restore --list (header and table of contents), full = also every
# entry and data block (pg_restore -f /dev/null), none = not read back.
VERIFY_LEVELS = ("toc", "full", "none")
_VERIFY_TRUE = ("true", "yes", "on", "1")
_VERIFY_FALSE = ("false", "no", "off", "0")


class DumpError(NlbError):
    """The dump cannot be taken or failed; the message says why (with the tool's stderr)."""


def verify_level(value):
    """toc, full or none from the ``verify`` option; the old boolean still works (true: toc, false: none)."""
    if value is None:
        return "toc"
    if isinstance(value, bool):
        return "toc" if value else "none"
    text = str(value).strip().lower()
    if text in VERIFY_LEVELS:
        return text
    if text in _VERIFY_TRUE:
        return "toc"
    if text in _VERIFY_FALSE:
        return "none"
    raise DumpError("verify '%s' is not accepted; use toc (pg_restore reads the table of contents), full (pg_restore "
                    "reads the whole archive) or none (true means toc, false means none)" % (value,))


def verify_argv(level, path=None):
    """pg_restore argv of one verification pass: 'toc' lists the table of contents, 'full' reads everything.

    ``path`` None reads the archive from stdin. A full read restores to
    /dev/null: every entry and data block is read and decompressed, as a
    restore would, and nothing is written.
    """
    argv = ["pg_restore", "--list"] if level == "toc" else ["pg_restore", "--file=/dev/null"]
    return argv + ([path] if path else [])


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
                        "use compress: gzip or none, format custom or directory, or verify: none" % method)
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


# --------------------------------------------------------------------------
# zstd and lz4 frames of a directory archive's data files
# --------------------------------------------------------------------------
# pg_restore (16, 17) reads a zstd or lz4 data file of a directory archive to
# its end without checking that the last frame is complete: a file cut short
# restores a part of the table with exit status 0. Walking the frames (block
# headers only, the data is seeked over) catches that.

_ZSTD_MAGIC = 0xFD2FB528
_LZ4_MAGIC = 0x184D2204
FRAMED_EXTENSIONS = (".zst", ".lz4")


def _skippable(magic):
    return magic & 0xFFFFFFF0 == 0x184D2A50


def check_frames(path):
    """DumpError unless the zstd (.zst) or lz4 (.lz4) file ``path`` is a sequence of complete frames.

    Returns the number of frames. Follows the frame formats (RFC 8878 for
    zstd, the LZ4 frame format): headers, every block header, checksums.
    """
    kind = "zstd" if path.endswith(".zst") else "lz4"
    size = os.path.getsize(path)
    frames = 0
    with open(path, "rb") as handle:
        def take(count, what):
            data = handle.read(count)
            if len(data) != count:
                raise DumpError("%s is cut short: the %s data ends inside %s (frame %d, byte %d of %d)"
                                % (path, kind, what, frames + 1, handle.tell(), size))
            return data

        def skip(count, what):
            if handle.tell() + count > size:
                raise DumpError("%s is cut short: the %s data ends inside %s (frame %d, %d bytes missing)"
                                % (path, kind, what, frames + 1, handle.tell() + count - size))
            handle.seek(count, os.SEEK_CUR)

        while handle.tell() < size:
            magic = int.from_bytes(take(4, "a frame header"), "little")
            if _skippable(magic):
                skip(int.from_bytes(take(4, "a frame header"), "little"), "a skippable frame")
            elif kind == "zstd" and magic == _ZSTD_MAGIC:
                _zstd_frame(take, skip)
            elif kind == "lz4" and magic == _LZ4_MAGIC:
                _lz4_frame(take, skip)
            else:
                raise DumpError("%s is not %s data (frame %d starts with 0x%08x)" % (path, kind, frames + 1, magic))
            frames += 1
    if not frames:
        raise DumpError("%s is empty: pg_dump writes at least the end-of-data marker of a table" % path)
    return frames


def check_directory_frames(directory):
    """check_frames of every zstd/lz4 data file of a directory archive; returns how many were checked."""
    checked = 0
    for name in sorted(os.listdir(directory)):
        if name.endswith(FRAMED_EXTENSIONS):
            check_frames(os.path.join(directory, name))
            checked += 1
    return checked


def _zstd_frame(take, skip):
    descriptor = take(1, "a frame header")[0]
    single_segment = descriptor & 0x20
    fcs_size = {0: 1 if single_segment else 0, 1: 2, 2: 4, 3: 8}[descriptor >> 6]
    header = (0 if single_segment else 1) + {0: 0, 1: 1, 2: 2, 3: 4}[descriptor & 3] + fcs_size
    take(header, "a frame header")
    while True:
        block = int.from_bytes(take(3, "a block header"), "little")
        block_type, block_size = (block >> 1) & 3, block >> 3
        if block_type == 3:
            raise DumpError("reserved zstd block type: the data is damaged")
        skip(1 if block_type == 1 else block_size, "a block")
        if block & 1:
            break
    if descriptor & 0x04:
        take(4, "the frame checksum")


def _lz4_frame(take, skip):
    flags = take(2, "a frame header")[0]
    take((8 if flags & 0x08 else 0) + (4 if flags & 0x01 else 0) + 1, "a frame header")
    while True:
        block = int.from_bytes(take(4, "a block header"), "little")
        if block == 0:
            break
        skip((block & 0x7FFFFFFF) + (4 if flags & 0x10 else 0), "a block")
    if flags & 0x04:
        take(4, "the content checksum")
