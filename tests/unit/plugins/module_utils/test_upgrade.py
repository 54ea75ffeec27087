# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import upgrade
from ansible_collections.nl_biomero.database.plugins.module_utils.upgrade import UpgradeError


@pytest.mark.parametrize("version, major", [
    ("15.10", 15), ("17", 17), ("17.6 (Debian 17.6-1)", 17), ("9.6.24", 96), ("150010", 15), ("170006", 17),
    ("90624", 96), (170006, 17),
])
def test_major_of(version, major):
    assert upgrade.major_of(version) == major


def test_major_of_rejects_garbage():
    with pytest.raises(UpgradeError):
        upgrade.major_of("latest")


@pytest.mark.parametrize("current, target, same, action", [
    (15, 17, False, "upgrade"), (16, 17, True, "upgrade"), (17, 17, False, "noop"), (17, 17, True, "upgrade"),
])
def test_decide(current, target, same, action):
    assert upgrade.decide(current, target, same) == action


def test_decide_refuses_downgrade():
    with pytest.raises(UpgradeError, match="downgrade"):
        upgrade.decide(17, 15)


@pytest.mark.parametrize("volume, name, target, expected", [
    ("database", "database", 17, "database-pg17"),
    ("database-biomero", "database-biomero", 17, "database-biomero-pg17"),
    ("omero-data-pg15", "omero", 17, "omero-data-pg17"),
    ("a" * 64, "omero", 17, "omero-data-pg17"),  # anonymous volume
    (None, "omero", 18, "omero-data-pg18"),       # bind mount
])
def test_new_volume_name(volume, name, target, expected):
    assert upgrade.new_volume_name(volume, name, target) == expected


def test_old_container_name():
    assert upgrade.old_container_name("database", 15) == "database-pg15"


@pytest.mark.parametrize("strategy, dump", [("dump_restore", 750), ("pipe", 0)])
def test_disk_estimate(strategy, dump):
    est = upgrade.disk_estimate([600, 400], strategy, 1.5)
    assert est == {"volume": 1500, "dump": dump, "data": 1000}


def test_disk_estimate_unknown_strategy():
    with pytest.raises(UpgradeError):
        upgrade.disk_estimate([1], "pg_upgrade")


@pytest.mark.parametrize("free_volume, free_dump, same_fs, problems", [
    (3000, 3000, False, 0),
    (1000, 3000, False, 1),
    (3000, 100, False, 1),
    (2000, 2000, True, 1),   # 1500 + 750 do not fit in one file system of 2000
    (2300, 2300, True, 0),
    (None, None, False, 0),  # unknown: not a problem (a warning elsewhere)
])
def test_disk_problems(free_volume, free_dump, same_fs, problems):
    est = upgrade.disk_estimate([1000], "dump_restore", 1.5)
    assert len(upgrade.disk_problems(est, free_volume, free_dump, same_fs)) == problems


@pytest.mark.parametrize("command, settings", [
    (["postgres", "-c", "work_mem=16MB", "-c", "max_connections=50"], {"work_mem": "16MB", "max_connections": "50"}),
    (["postgres", "-cshared_buffers=1GB"], {"shared_buffers": "1GB"}),
    (["postgres", "--max-wal-size=2GB"], {"max_wal_size": "2GB"}),
    (["postgres", "-c", "search_path=a,b=c"], {"search_path": "a,b=c"}),
    (["postgres"], {}),
    (None, {}),
])
def test_command_settings(command, settings):
    assert upgrade.command_settings(command) == settings


def test_unknown_settings_ignores_custom_placeholders():
    settings = {"work_mem": "1MB", "vacuum_defer_cleanup_age": "0", "omero.x": "1", "Work_Mem": "2MB"}
    assert upgrade.unknown_settings(settings, ["work_mem"]) == ["vacuum_defer_cleanup_age"]


def test_missing_extensions():
    used = {"omero": ["plpgsql", "pg_trgm", "postgis"], "postgres": ["plpgsql"]}
    assert upgrade.missing_extensions(used, ["plpgsql", "pg_trgm"]) == {"omero": ["postgis"]}


def test_healthcheck_spec():
    spec = upgrade.healthcheck_spec({"Test": ["CMD", "pg_isready"], "Interval": 1000000000, "Timeout": 500000000,
                                     "Retries": 10, "StartPeriod": 60000000000})
    assert spec == {"test": ["CMD", "pg_isready"], "interval": "1s", "timeout": "500ms", "retries": 10,
                    "start_period": "60s"}
    assert upgrade.healthcheck_spec({"Test": ["NONE"]}) is None
    assert upgrade.healthcheck_spec(None) is None


def test_published_ports():
    bindings = {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5433"}, {"HostIp": "", "HostPort": "6432"}]}
    assert upgrade.published_ports(bindings) == ["127.0.0.1:5433:5432/tcp", "6432:5432/tcp"]


OLD_IMAGE = {"Config": {"Env": ["PATH=/usr/lib/postgresql/15/bin:/usr/bin", "PG_MAJOR=15",
                                "PGDATA=/var/lib/postgresql/data"],
                        "Cmd": ["postgres"], "Entrypoint": ["/usr/local/bin/docker-entrypoint.sh"],
                        "Labels": {"org.opencontainers.image.title": "pg15"}, "StopSignal": "SIGINT"}}

OLD_CONTAINER = {
    "Id": "0123456789abcdef" * 4,
    "Name": "/database",
    "Image": "sha256:old",
    "Config": {
        "Env": OLD_IMAGE["Config"]["Env"] + ["POSTGRES_USER=omero", "POSTGRES_PASSWORD=se=cret"],
        "Cmd": ["postgres", "-c", "work_mem=16MB"],
        "Entrypoint": ["/usr/local/bin/docker-entrypoint.sh"],
        "Image": "postgres:15",
        "Labels": {"org.opencontainers.image.title": "pg15", "app": "omero",
                   "org.nl-biomero.upgrade.previous-container": "database-pg14"},
        "Healthcheck": {"Test": ["CMD", "pg_isready"], "Interval": 2000000000, "Retries": 5},
    },
    "HostConfig": {"PortBindings": {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5432"}]},
                   "RestartPolicy": {"Name": "unless-stopped"}, "Memory": 1073741824, "NanoCpus": 1500000000,
                   "ShmSize": 67108864, "NetworkMode": "omero"},
    "Mounts": [
        {"Type": "volume", "Name": "database", "Destination": "/var/lib/postgresql/data", "RW": True},
        {"Type": "bind", "Source": "/srv/initdb", "Destination": "/docker-entrypoint-initdb.d", "RW": False},
        {"Type": "bind", "Source": "/srv/secrets", "Destination": "/run/secrets", "RW": False},
        {"Type": "volume", "Name": "f" * 64, "Destination": "/scratch", "RW": True},
    ],
    "NetworkSettings": {"Networks": {"omero": {"Aliases": ["database", "db", "0123456789ab"]}}},
}


def test_clone_spec_takes_over_the_instance():
    spec = upgrade.clone_spec(OLD_CONTAINER, OLD_IMAGE, "postgres:17", "database-pg17")
    assert spec["name"] == "database"
    assert spec["image"] == "postgres:17"
    # Only what the container set, by name: the image's PATH/PG_MAJOR (of 15!) must not follow.
    assert spec["env_names"] == ["POSTGRES_USER", "POSTGRES_PASSWORD"]
    assert "se=cret" not in json.dumps(spec)
    assert spec["command"] == ["postgres", "-c", "work_mem=16MB"]
    assert "entrypoint" not in spec
    assert spec["mounts"] == [
        {"type": "bind", "source": "/srv/secrets", "target": "/run/secrets", "read_only": True},
        {"type": "volume", "source": "database-pg17", "target": "/var/lib/postgresql/data", "read_only": False},
    ]
    assert spec["networks"] == [{"name": "omero", "aliases": ["db"]}]
    assert spec["network_mode"] == "omero"
    assert spec["published_ports"] == ["127.0.0.1:5432:5432/tcp"]
    assert spec["labels"] == {"app": "omero"}
    assert spec["restart_policy"] == "unless-stopped"
    assert spec["healthcheck"] == {"test": ["CMD", "pg_isready"], "interval": "2s", "retries": 5}
    assert spec["memory"] == "1073741824b"
    assert spec["cpus"] == 1.5
    assert spec["stop_signal"] == "SIGINT"


def test_clone_spec_default_command_is_left_to_the_new_image():
    info = json.loads(json.dumps(OLD_CONTAINER))
    info["Config"]["Cmd"] = ["postgres"]
    assert "command" not in upgrade.clone_spec(info, OLD_IMAGE, "postgres:17", "v")


def test_upgrade_labels():
    labels = upgrade.upgrade_labels("database-pg15", "database", "postgres:15", 15, "database-pg17")
    assert labels[upgrade.LABEL_PREVIOUS_CONTAINER] == "database-pg15"
    assert labels[upgrade.LABEL_FROM_MAJOR] == "15"


BEFORE = {"databases": {"omero": {"tables": {"public.job": 3, "public.image": 2},
                                  "sequences": {"public.job_id_seq": 3}, "smoke": {"job": 3}}},
          "roles": ["omero", "omero_ro"]}


def test_compare_equal_fingerprints_ignores_new_roles():
    after = json.loads(json.dumps(BEFORE))
    after["roles"].append("pg17_only")
    assert upgrade.compare_fingerprints(BEFORE, after) == []


@pytest.mark.parametrize("change, expected", [
    (lambda fp: fp["databases"]["omero"]["tables"].update({"public.job": 4}), "rows of public.job: 3 before, 4 after"),
    (lambda fp: fp["databases"]["omero"]["tables"].pop("public.image"), "public.image: missing after"),
    (lambda fp: fp["databases"]["omero"]["sequences"].update({"public.job_id_seq": None}), "sequence public.job_id_seq"),
    (lambda fp: fp["databases"]["omero"]["smoke"].update({"job": 0}), "smoke query on job"),
    (lambda fp: fp["roles"].remove("omero_ro"), "roles missing: omero_ro"),
    (lambda fp: fp["databases"].pop("omero"), "database omero is missing"),
])
def test_compare_finds_differences(change, expected):
    after = json.loads(json.dumps(BEFORE))
    change(after)
    differences = upgrade.compare_fingerprints(BEFORE, after)
    assert len(differences) == 1 and expected in differences[0]


@pytest.mark.parametrize("kind, tables", [
    ("omero", ["job"]), ("biomero", ["imports", "workflowtracker_events"]), ("none", []),
    ("auto", ["imports", "job", "workflowtracker_events"]),
])
def test_smoke_tables(kind, tables):
    assert upgrade.smoke_tables(kind) == tables


def test_pipe_dump_argv_quotes_the_database():
    argv = upgrade.pipe_dump_argv("it's")
    assert argv[:3] == ["pg_dump", "--format=custom", "--compress=0"]
    assert argv[-1] == "--dbname=dbname='it\\'s'"


# ---- Preflight decisions with a scripted engine (no engine, no server).

class _Engine:
    binary = "docker"

    def __init__(self, containers):
        self.containers = containers

    def inspect(self, name):
        return self.containers.get(name)

    def image_of(self, info):
        return info["Config"]["Image"]


class _Pg:
    def __init__(self, extensions=("plpgsql", "pg_trgm")):
        self.extensions = extensions

    def server_version_num(self):
        return 150010

    def server_version(self):
        return "15.10"

    def query(self, sql, database=None):
        if sql == upgrade.SQL_DATABASES:
            return [["omero", "1000", "omero"], ["postgres", "100", "omero"]]
        if sql == upgrade.SQL_EXTENSIONS:
            return [[e] for e in self.extensions] if database == "omero" else [["plpgsql"]]
        raise AssertionError(sql)

    def scalar(self, sql, database=None):
        return "0" if database == "postgres" else "12"


class _Stat:
    f_bavail = 10 ** 9
    f_frsize = 4096
    st_dev = 1


def _run_factory(images, existing=(), extensions="pg_trgm.control plpgsql.control", settings="work_mem\tx\n"):
    def run(argv):
        if argv[1:3] == ["image", "inspect"]:
            image = images.get(argv[3])
            return (0, json.dumps([image]), "") if image else (1, "", "No such image")
        if argv[1] in ("container", "volume") and argv[2] == "inspect":
            return (0, "[{}]", "") if argv[3] in existing else (1, "", "no such")
        if argv[1] == "info":
            return 0, "/var/lib/docker\n", ""
        if argv[1] == "run":
            if "ls" in argv:
                return 0, extensions, ""
            return 0, settings, ""
        raise AssertionError(argv)
    return run


def _preflight(images=None, existing=(), pg=None, **kwargs):
    info = json.loads(json.dumps(OLD_CONTAINER))
    info["State"] = {"Running": True}
    containers = {"database": info, "omeroserver": {"State": {"Status": "running"}}}
    images = images if images is not None else {
        "postgres:17": {"Config": {"Env": ["PG_MAJOR=17"]}}, "sha256:old": OLD_IMAGE}
    checker = upgrade.Preflight(_Engine(containers), _run_factory(images, existing, **kwargs),
                                lambda: pg or _Pg(), lambda path: _Stat(), lambda path: _Stat())
    return checker


def test_preflight_plans_an_upgrade():
    result = _preflight().run_checks("database", "postgres:17", dump_dir="/tmp", clients=["omeroserver"])
    assert result["action"] == "upgrade" and result["problems"] == []
    assert (result["current_major"], result["target_major"]) == (15, 17)
    assert result["old_name"] == "database-pg15" and result["new_volume"] == "database-pg17"
    assert result["empty_databases"] == ["postgres"]
    assert result["spec"]["labels"][upgrade.LABEL_PREVIOUS_CONTAINER] == "database-pg15"
    assert result["clients"] == {"omeroserver": "running"}


def test_preflight_missing_target_image():
    result = _preflight(images={}).run_checks("database", "postgres:17")
    assert result["action"] == "fail"
    assert "not available" in result["problems"][0]


def test_preflight_already_at_target_is_a_noop():
    result = _preflight(images={"postgres:15": {"Config": {"Env": ["PG_MAJOR=15"]}}}).run_checks(
        "database", "postgres:15")
    assert result["action"] == "noop" and result["problems"] == []


def test_preflight_collects_every_problem():
    result = _preflight(existing=("database-pg15", "database-pg17"), extensions="plpgsql.control",
                        settings="shared_buffers\tx\n").run_checks("database", "postgres:17", clients=["gone"])
    text = " | ".join(result["problems"])
    assert result["action"] == "fail"
    for expected in ("pg_trgm", "work_mem", "database-pg15 already exists", "volume database-pg17 already exists",
                     "client container gone does not exist"):
        assert expected in text
