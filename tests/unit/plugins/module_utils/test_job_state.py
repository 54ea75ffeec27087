import os

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils.host_files import UnsafePathError
from ansible_collections.nl_biomero.database.plugins.module_utils.job_state import RunState, read_state, state_path


@pytest.fixture
def lock_dir(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    return tmp_path


def test_state_written_as_the_run_goes_and_removed_at_its_end(lock_dir):
    path = state_path(str(lock_dir / ".nl-biomero-backup.lock"))
    assert path.endswith(".nl-biomero-backup.lock.state")
    assert read_state(path) is None
    state = RunState(path)
    state.begin("/b/2026-03-14T02-00-00Z", "stop")
    state.update(clients=["omero"], dumping={"name": "omero", "since": "2026-03-14T02:00:01.000000Z"})
    data = read_state(path)
    assert data["pid"] == os.getpid() and data["set"] == "/b/2026-03-14T02-00-00Z" and data["action"] == "stop"
    assert data["clients"] == ["omero"] and data["dumping"]["name"] == "omero"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(str(lock_dir))) == [".nl-biomero-backup.lock.state"]
    state.clear()
    assert read_state(path) is None and os.listdir(str(lock_dir)) == []


def test_a_planted_symlink_is_refused_when_read_and_replaced_never_followed_when_written(lock_dir, tmp_path_factory):
    victim = tmp_path_factory.mktemp("elsewhere") / "passwd"
    victim.write_text("root:x:0:0\n")
    path = str(lock_dir / "lock.state")
    os.symlink(str(victim), path)
    with pytest.raises(UnsafePathError, match="a symlink is refused"):
        read_state(path)
    RunState(path).begin("/b/s", "stop")
    assert victim.read_text() == "root:x:0:0\n"
    assert not os.path.islink(path) and read_state(path)["set"] == "/b/s"


def test_unsafe_directory_and_garbage_are_refused(lock_dir, tmp_path_factory):
    shared = tmp_path_factory.mktemp("shared")
    os.chmod(str(shared), 0o1777)
    with pytest.raises(UnsafePathError, match="writable by others"):
        read_state(str(shared / "lock.state"))
    with pytest.raises(UnsafePathError, match="writable by others"):
        RunState(str(shared / "lock.state")).begin("/b/s", "stop")
    assert os.listdir(str(shared)) == []
    (lock_dir / "lock.state").write_text("[1, 2]")
    with pytest.raises(UnsafePathError, match="not a JSON object"):
        read_state(str(lock_dir / "lock.state"))
