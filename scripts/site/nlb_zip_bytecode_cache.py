"""Bytecode cache for code imported from zip files (the test machines' virtualenv).

Ansible runs every module task from a new AnsiballZ zip, and Python compiles
the zip's sources again each time (zipimport writes no .pyc): about 0.1 s of
CPU per task, a tenth of the test suite's CPU. scripts/setup.sh installs this
into the virtualenv with a .pth file; it acts only when NLB_ZIP_BYTECODE_CACHE
names a directory (scripts/env.sh sets it). The cache is keyed by the source's
hash and its path inside the zip, so what runs is what compile() makes of the
same source; only the file name in tracebacks is set to the new zip's path.
"""
import _imp
import hashlib
import marshal
import os
import sys
import zipimport

CACHE_DIR = os.environ.get("NLB_ZIP_BYTECODE_CACHE", "")
_compile_source = getattr(zipimport, "_compile_source", None)


def cache_path(pathname, source):
    inside = pathname.rsplit(".zip", 1)[-1]
    key = hashlib.sha256(inside.encode() + b"\0" + source).hexdigest()
    return os.path.join(CACHE_DIR, key[:2], "%s.%s" % (key, sys.implementation.cache_tag))


def cached_compile(pathname, source):
    path = cache_path(pathname, source)
    try:
        with open(path, "rb") as handle:
            code = marshal.loads(handle.read())
    except (OSError, ValueError, EOFError, TypeError):
        code = None
    if code is not None:
        _imp._fix_co_filename(code, pathname)
        return code
    code = _compile_source(pathname, source)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temp = "%s.%d.tmp" % (path, os.getpid())
        with open(temp, "wb") as handle:
            handle.write(marshal.dumps(code))
        os.replace(temp, path)
    except OSError:
        pass  # a cache that cannot be written only costs the compile
    return code


if CACHE_DIR and _compile_source is not None:
    zipimport._compile_source = cached_compile
