"""Off-host copies (offsite.py) into a directory target (offsite_store.py run as its own process).

Real files, the real store script and, for encryption, the real ``age`` (scripts/setup.sh installs it).
The SSH transport is tested against a real sshd in tests/integration/test_offsite.py.
"""
import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import offsite, offsite_store
from ansible_collections.nl_biomero.database.plugins.module_utils.offsite import OffsiteError, Target
from ansible_collections.nl_biomero.database.plugins.module_utils.offsite_store import Store, StoreError

SET = "2026-12-02T01-02-03Z"
needs_age = pytest.mark.skipif(shutil.which("age") is None, reason="age is not installed (scripts/setup.sh installs it)")


@pytest.fixture
def local_set(tmp_path):
    path = tmp_path / "backups" / SET
    (path / "omero").mkdir(parents=True)
    (path / "omero" / "omero.dump").write_bytes(os.urandom(3 << 20))
    (path / "omero" / "omero.dump.json").write_text('{"sha256": "x"}')
    (path / "set.manifest.json").write_text(json.dumps({"stamp": SET, "complete": True}))
    return str(path)


@pytest.fixture
def store_dir(tmp_path):
    path = tmp_path / "remote"
    path.mkdir()
    return str(path)


def flip_first_byte(path):
    """Tamper with a file: its first byte always changes (a fixed byte would, 1 time in 256, be the random one)."""
    with open(path, "r+b") as handle:
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 0xFF]))


def stored_files(store_dir, name=SET):
    folder = os.path.join(store_dir, name)
    return sorted(os.path.relpath(os.path.join(base, f), folder) for base, _d, files in os.walk(folder) for f in files)


def test_a_set_arrives_whole_verified_and_listed(local_set, store_dir):
    report = Target({"name": "nas", "directory": store_dir}).copy_set(local_set)
    assert report["verified"] and report["files"] == 3 and not report["encrypted"]
    assert stored_files(store_dir) == ["omero/omero.dump", "omero/omero.dump.json", offsite_store.MANIFEST,
                                       "set.manifest.json"]
    with open(os.path.join(local_set, "omero", "omero.dump"), "rb") as a, \
            open(os.path.join(store_dir, SET, "omero", "omero.dump"), "rb") as b:
        assert a.read() == b.read()
    listed = Target({"name": "nas", "directory": store_dir}).list_sets()
    assert listed == {"sets": [{"set": SET, "bytes": report["bytes"], "files": 3}], "partial": []}


@needs_age
def test_encrypted_copy_holds_no_plaintext_and_decrypts_with_the_identity(local_set, store_dir, tmp_path):
    identity = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True,
                               text=True).stdout.strip()
    report = Target({"name": "nas", "directory": store_dir, "recipients": [recipient]}).copy_set(local_set)
    assert report["encrypted"]
    stored = stored_files(store_dir)
    assert stored == ["omero/omero.dump.age", "omero/omero.dump.json.age", offsite_store.MANIFEST,
                      "set.manifest.json.age"]
    record = json.load(open(os.path.join(store_dir, SET, offsite_store.MANIFEST)))
    entry = record["files"]["omero/omero.dump.age"]
    plain = open(os.path.join(local_set, "omero", "omero.dump"), "rb").read()
    cipher = open(os.path.join(store_dir, SET, "omero", "omero.dump.age"), "rb").read()
    assert plain[:4096] not in cipher
    assert (entry["plain_sha256"], entry["plain_bytes"]) == offsite_store.hash_file(os.path.join(local_set, "omero", "omero.dump"))
    assert (entry["sha256"], entry["bytes"]) == offsite_store.hash_file(os.path.join(store_dir, SET, "omero", "omero.dump.age"))
    decrypted = subprocess.run(["age", "-d", "-i", str(identity), os.path.join(store_dir, SET, "omero", "omero.dump.age")],
                               check=True, capture_output=True).stdout
    assert decrypted == plain


@needs_age
def test_a_recipient_typo_fails_and_lists_nothing(local_set, store_dir):
    target = Target({"name": "nas", "directory": store_dir, "recipients": ["age1notarealrecipient"]})
    with pytest.raises(OffsiteError, match="target nas: age could not encrypt"):
        target.copy_set(local_set)
    assert os.listdir(store_dir) == []


def test_a_missing_store_directory_is_named(local_set, tmp_path):
    with pytest.raises(OffsiteError, match="target nas: abort %s: offsite store: store directory %s does not exist"
                       % (SET, tmp_path / "gone")):
        Target({"name": "nas", "directory": str(tmp_path / "gone")}).copy_set(local_set)


def test_a_file_changed_at_the_target_before_commit_fails_verification(local_set, store_dir):
    store = Store(store_dir)
    import io
    answer = store.put(SET, "omero/omero.dump", io.BytesIO(b"abc"))
    with open(os.path.join(store_dir, ".partial-" + SET, "omero", "omero.dump"), "ab") as handle:
        handle.write(b"d")
    with pytest.raises(StoreError, match="omero/omero.dump: 4 bytes sha256 .* stored, 3 bytes"):
        store.commit(SET, {"omero/omero.dump": {"sha256": answer["sha256"], "bytes": 3}})
    assert store.list() == {"sets": [], "partial": [SET]}


def test_a_tampered_stored_copy_is_found_by_verify(local_set, store_dir):
    target = Target({"name": "nas", "directory": store_dir})
    target.copy_set(local_set)
    assert target.verify(SET) == {"set": SET, "verified": True, "problems": []}
    flip_first_byte(os.path.join(store_dir, SET, "omero", "omero.dump"))
    assert target.verify(SET) == {"set": SET, "verified": False,
                                  "problems": ["omero/omero.dump differs from the copy that was verified"]}


def test_retention_keeps_the_newest_and_never_the_set_just_copied(local_set, store_dir, tmp_path):
    target = Target({"name": "nas", "directory": store_dir, "keep": 2})
    names = ["2026-11-30T01-00-00Z", "2026-12-01T01-00-00Z", SET]
    for name in names:
        copy = tmp_path / "sets" / name
        shutil.copytree(local_set, str(copy))
        target.copy_set(str(copy))
    assert target.apply_retention(SET) == ["2026-11-30T01-00-00Z"]
    assert [item["set"] for item in target.list_sets()["sets"]] == names[1:]


def test_an_interrupted_copy_is_aborted_by_the_next_one(local_set, store_dir):
    import io
    Store(store_dir).put(SET, "omero/omero.dump", io.BytesIO(b"half"))
    assert Store(store_dir).list()["partial"] == [SET]
    Target({"name": "nas", "directory": store_dir}).copy_set(local_set)
    assert Store(store_dir).list() == {"sets": [{"set": SET, "bytes": Store(store_dir).list()["sets"][0]["bytes"],
                                                 "files": 3}], "partial": []}


@pytest.mark.parametrize("args, message", [
    (["put", "../etc", "x"], "set name '../etc' is not a backup set name"),
    (["put", SET, "../../etc/passwd"], "file name '../../etc/passwd' is not a relative path inside a set"),
    (["put", SET, "/etc/passwd"], "file name '/etc/passwd' is not a relative path inside a set"),
    (["delete", "*"], "set name '\\*' is not a backup set name"),
    (["rm", "-rf", "/"], "command 'rm -rf /' is not one of"),
])
def test_the_store_refuses_names_and_commands_outside_its_protocol(store_dir, args, message):
    import io
    with pytest.raises(StoreError, match=message):
        offsite_store.run_command(Store(store_dir), args, io.BytesIO(b""), io.BytesIO())
    assert os.listdir(store_dir) == []


def test_forced_command_words_come_from_ssh_original_command(store_dir):
    env = dict(os.environ, SSH_ORIGINAL_COMMAND="list")
    out = subprocess.run(["python3", offsite_store.__file__, store_dir, "delete", SET], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {"sets": [], "partial": []}


def test_ssh_argv_quotes_the_words_for_the_remote_side():
    argv = offsite.store_argv({"ssh": {"host": "backup.example", "user": "nlb", "port": 2222,
                                       "identity_file": "/k/id", "known_hosts": "/k/known"}},
                              ["put", SET, "a b/c"])
    assert argv[-2:] == ["nlb@backup.example", "put %s 'a b/c'" % SET]
    assert ["-p", "2222"] == argv[argv.index("-p"):argv.index("-p") + 2]
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv


@needs_age
def test_fetch_brings_an_encrypted_set_back_checked_and_refuses_without_the_identity(local_set, store_dir, tmp_path):
    identity = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True,
                               text=True).stdout.strip()
    target = Target({"name": "nas", "directory": store_dir, "recipients": [recipient]})
    target.copy_set(local_set)
    restored = tmp_path / "restored"
    restored.mkdir()
    with pytest.raises(OffsiteError, match="set %s is encrypted \\(3 files\\): give the age identity file" % SET):
        target.fetch_set(SET, str(restored))
    other = tmp_path / "other.txt"
    subprocess.run(["age-keygen", "-o", str(other)], check=True, capture_output=True)
    with pytest.raises(OffsiteError, match="age could not decrypt"):
        target.fetch_set(SET, str(restored), identity_file=str(other))
    assert os.listdir(str(restored)) == []
    report = target.fetch_set(SET, str(restored), identity_file=str(identity))
    assert report == {"set": SET, "path": str(restored / SET), "files": 3, "encrypted": True}
    for relative in ("omero/omero.dump", "omero/omero.dump.json", "set.manifest.json"):
        assert (restored / SET / relative).read_bytes() == open(os.path.join(local_set, relative), "rb").read()
    with pytest.raises(OffsiteError, match="is already in"):
        target.fetch_set(SET, str(restored), identity_file=str(identity))


def test_fetch_of_a_tampered_copy_fails_naming_the_file_and_leaves_nothing(local_set, store_dir, tmp_path):
    target = Target({"name": "nas", "directory": store_dir})
    target.copy_set(local_set)
    flip_first_byte(os.path.join(store_dir, SET, "omero", "omero.dump"))
    restored = tmp_path / "restored"
    restored.mkdir()
    with pytest.raises(OffsiteError, match="omero/omero.dump arrived as .* stored as"):
        target.fetch_set(SET, str(restored))
    assert os.listdir(str(restored)) == []
