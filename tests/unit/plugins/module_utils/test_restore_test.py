import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import restore_test as rt


@pytest.mark.parametrize("recorded, restored, expect", [
    ({"public.a": 1}, {"public.a": 1}, []),
    ({"public.a": 1}, {"public.a": 2}, ["public.a: 2 rows restored, 1 recorded"]),
    ({"public.a": 1}, {}, ["public.a: missing after restore (recorded 1 rows)"]),
    ({}, {"public.b": 0}, ["public.b: not recorded at backup time (0 rows restored)"]),
])
def test_compare_counts(recorded, restored, expect):
    assert rt.compare_counts(recorded, restored) == expect


class FakeEngine:
    """Stands in for ContainerEngine: answers image_inspect and records what the restore test asks for."""

    binary = "docker"

    def __init__(self, image=None, start_rc=1):
        self.image = image
        self.start_rc = start_rc
        self.calls = []

    def image_inspect(self, reference):
        self.calls.append(("image_inspect", reference))
        return self.image

    def volume_create(self, name, label=None):
        self.calls.append(("volume_create", name, label))

    def run_throwaway(self, image, command=(), env=None, timeout=None, **options):
        self.calls.append(("run_throwaway", image, sorted(env), options))
        return self.start_rc, "", "no such image"

    def remove(self, container):
        self.calls.append(("remove", container))

    def volume_remove(self, name):
        self.calls.append(("volume_remove", name))
        return None


@pytest.mark.parametrize("image, server, mount", [
    ({"Config": {"Volumes": {"/var/lib/postgresql/data": {}}}}, "17.2", "/var/lib/postgresql/data"),
    ({"Config": {"Volumes": {"/srv/pg": {}, "/var/lib/postgresql": {}}}}, "15.1", "/var/lib/postgresql"),
    ({"Config": {"Volumes": None}}, "18.1", "/var/lib/postgresql"),
    ({"Config": {}}, "17.6 (Debian 17.6-1)", "/var/lib/postgresql/data"),
    (None, "9.6.24", "/var/lib/postgresql/data"),
])
def test_data_mount_declared_volume_else_the_data_layout_rule(image, server, mount):
    assert rt._data_mount(FakeEngine(image), "postgres:x", server) == mount


class FakeSet:
    def file_path(self, relative):
        return "/b/s/" + relative

    def component(self, name):
        return None


def test_restore_component_uses_a_labelled_throwaway_and_cleans_up():
    engine = FakeEngine({"Config": {"Volumes": {"/var/lib/postgresql/data": {}}}})
    lines = []
    component = {"name": "omero", "path": "omero.dump", "row_counts": {"public.a": 1}, "login_user": "omero",
                 "versions": {"image": "postgres:17", "server": "17.2"}}
    outcome = rt._restore_component(engine, FakeSet(), component, 5, lambda text, error=False: lines.append(text))
    assert outcome["ok"] is False and "cannot start a throwaway container of postgres:17" in outcome["error"]
    container = outcome["container"]
    assert container.startswith(rt.NAME_PREFIX)
    kinds = [call[0] for call in engine.calls]
    assert kinds == ["image_inspect", "volume_create", "run_throwaway", "remove", "volume_remove"]
    assert engine.calls[1] == ("volume_create", container + "-data", "nl-biomero.database.throwaway=restore-test")
    _kind, image, env_names, options = engine.calls[2]
    assert image == "postgres:17" and env_names == ["POSTGRES_DB", "POSTGRES_PASSWORD", "POSTGRES_USER"]
    assert options == {"purpose": "restore-test", "name": container, "detach": True,
                       "volumes": ["%s-data:/var/lib/postgresql/data" % container]}
    assert lines == ["restore test omero FAILED: " + outcome["error"]]


def test_restore_component_without_image_touches_nothing():
    engine = FakeEngine()
    outcome = rt._restore_component(engine, FakeSet(), {"name": "omero", "row_counts": {}}, 5, lambda *a, **k: None)
    assert "does not record the image" in outcome["error"]
    assert [call[0] for call in engine.calls] == ["remove"]  # a container that never existed: rm -f is harmless
