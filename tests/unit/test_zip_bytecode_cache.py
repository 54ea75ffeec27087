"""The zip bytecode cache of the test machines' virtualenv (scripts/site/nlb_zip_bytecode_cache.py).

Each case runs a fresh interpreter that imports a module from a zip, the way an
AnsiballZ payload is imported, with the cache switched on.
"""
import json
import os
import subprocess
import sys
import zipfile

SITE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scripts", "site")

IMPORT_FROM_ZIP = """
import json, sys, traceback, zipimport
sys.path.insert(0, %(site)r)
import nlb_zip_bytecode_cache
compiled = []
original = nlb_zip_bytecode_cache._compile_source
nlb_zip_bytecode_cache._compile_source = lambda *a: compiled.append(a[0]) or original(*a)
sys.path.insert(0, %(zip)r)
import payload
try:
    payload.fail()
except ValueError:
    where = traceback.extract_tb(sys.exc_info()[2])[-1].filename
print(json.dumps({"value": payload.VALUE, "compiled": compiled, "traceback_file": where,
                  "patched": zipimport._compile_source is nlb_zip_bytecode_cache.cached_compile}))
"""


def make_zip(path, value):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("payload.py", "VALUE = %r\n\ndef fail():\n    raise ValueError('x')\n" % value)
    return str(path)


def import_from(zip_path, cache_dir):
    env = dict(os.environ, NLB_ZIP_BYTECODE_CACHE=str(cache_dir) if cache_dir else "")
    out = subprocess.run([sys.executable, "-c", IMPORT_FROM_ZIP % {"site": SITE, "zip": zip_path}],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def test_second_import_from_a_new_zip_uses_the_cache_and_names_the_new_zip(tmp_path):
    cache = tmp_path / "cache"
    first = import_from(make_zip(tmp_path / "a.zip", "one"), cache)
    assert first["patched"] and first["value"] == "one" and len(first["compiled"]) == 1
    second = import_from(make_zip(tmp_path / "b.zip", "one"), cache)
    assert second["value"] == "one" and second["compiled"] == []
    assert second["traceback_file"] == str(tmp_path / "b.zip" / "payload.py")


def test_changed_source_is_compiled_again(tmp_path):
    cache = tmp_path / "cache"
    import_from(make_zip(tmp_path / "a.zip", "one"), cache)
    changed = import_from(make_zip(tmp_path / "b.zip", "two"), cache)
    assert changed["value"] == "two" and len(changed["compiled"]) == 1


def test_without_the_variable_nothing_is_patched_or_written(tmp_path):
    result = import_from(make_zip(tmp_path / "a.zip", "one"), None)
    assert not result["patched"] and result["value"] == "one"
    assert sorted(os.listdir(tmp_path)) == ["a.zip"]


def test_an_unwritable_cache_only_costs_the_compile(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the directory should be")
    result = import_from(make_zip(tmp_path / "a.zip", "one"), blocker)
    # zipimport compiles a module twice (for its spec's file name, then to run it): both compile here
    assert result["value"] == "one" and len(result["compiled"]) == 2
