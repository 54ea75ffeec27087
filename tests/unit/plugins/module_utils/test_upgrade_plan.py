# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest
import yaml

from ansible_collections.nl_biomero.database.plugins.module_utils import labels
from ansible_collections.nl_biomero.database.plugins.module_utils import upgrade_plan as plan
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import major_version
from ansible_collections.nl_biomero.database.plugins.module_utils.tuning import unknown_settings
from ansible_collections.nl_biomero.database.plugins.module_utils.upgrade_plan import UpgradeError


# The versions the upgrade reads (server_version_num, PG_MAJOR, postgres --version) go through the one parser.
@pytest.mark.parametrize("version, major", [
    ("15.10", 15), ("17", 17), ("17.6 (Debian 17.6-1)", 17), ("9.6.24", 9), ("150010", 15), ("170006", 17),
    ("90624", 9), (170006, 17), ("postgres (PostgreSQL) 17.6 (Debian 17.6-1.pgdg13+1)", 17),
])
def test_versions_the_upgrade_reads(version, major):
    assert major_version(version) == major


def test_garbage_is_no_version():
    assert major_version("latest") is None


@pytest.mark.parametrize("env, major", [
    (["PATH=/usr/bin", "PG_MAJOR=17"], 17), (["PG_MAJOR=9.6"], 9), (["PATH=/usr/bin"], None), (None, None),
])
def test_image_major(env, major):
    assert plan.image_major({"Config": {"Env": env}}) == major


@pytest.mark.parametrize("current, target, same, action", [
    (15, 17, False, "upgrade"), (16, 17, True, "upgrade"), (17, 17, False, "noop"), (17, 17, True, "upgrade"),
])
def test_decide(current, target, same, action):
    assert plan.decide(current, target, same) == action


def test_decide_refuses_downgrade():
    with pytest.raises(UpgradeError, match="downgrade"):
        plan.decide(17, 15)


@pytest.mark.parametrize("volume, name, target, expected", [
    ("database", "database", 17, "database-pg17"),
    ("database-biomero", "database-biomero", 17, "database-biomero-pg17"),
    ("omero-data-pg15", "omero", 17, "omero-data-pg17"),
    ("a" * 64, "omero", 17, "omero-data-pg17"),  # anonymous volume
    (None, "omero", 18, "omero-data-pg18"),       # bind mount
])
def test_new_volume_name(volume, name, target, expected):
    assert plan.new_volume_name(volume, name, target) == expected


def test_old_container_name():
    assert plan.old_container_name("database", 15) == "database-pg15"


@pytest.mark.parametrize("strategy, dump", [("dump_restore", 750), ("pipe", 0)])
def test_disk_estimate(strategy, dump):
    est = plan.disk_estimate([600, 400], strategy, 1.5)
    assert est == {"volume": 1500, "dump": dump, "data": 1000}


def test_disk_estimate_unknown_strategy():
    with pytest.raises(UpgradeError):
        plan.disk_estimate([1], "pg_upgrade")


@pytest.mark.parametrize("free_volume, free_dump, same_fs, problems", [
    (3000, 3000, False, 0),
    (1000, 3000, False, 1),
    (3000, 100, False, 1),
    (2000, 2000, True, 1),   # 1500 + 750 do not fit in one file system of 2000
    (2300, 2300, True, 0),
    (None, None, False, 0),  # unknown: not a problem (a warning elsewhere)
])
def test_disk_problems(free_volume, free_dump, same_fs, problems):
    est = plan.disk_estimate([1000], "dump_restore", 1.5)
    assert len(plan.disk_problems(est, free_volume, free_dump, same_fs)) == problems


@pytest.mark.parametrize("command, settings", [
    (["postgres", "-c", "work_mem=16MB", "-c", "max_connections=50"], {"work_mem": "16MB", "max_connections": "50"}),
    (["postgres", "-cshared_buffers=1GB"], {"shared_buffers": "1GB"}),
    (["postgres", "--max-wal-size=2GB"], {"max_wal_size": "2GB"}),
    (["postgres", "-c", "search_path=a,b=c"], {"search_path": "a,b=c"}),
    (["postgres"], {}),
    (None, {}),
])
def test_command_settings(command, settings):
    assert plan.command_settings(command) == settings


def test_unknown_settings_ignores_custom_placeholders():
    # The preflight checks the old command line with tuning's rule.
    settings = {"work_mem": "1MB", "vacuum_defer_cleanup_age": "0", "omero.x": "1", "Work_Mem": "2MB"}
    assert unknown_settings(settings, ["work_mem"]) == ["vacuum_defer_cleanup_age"]


def test_extension_names():
    assert plan.extension_names("pg_trgm--1.6.sql\npg_trgm.control\nplpgsql.control\n") == ["pg_trgm", "plpgsql"]


def test_missing_extensions():
    used = {"omero": ["plpgsql", "pg_trgm", "postgis"], "postgres": ["plpgsql"]}
    assert plan.missing_extensions(used, ["plpgsql", "pg_trgm"]) == {"omero": ["postgis"]}


def test_healthcheck_spec():
    spec = plan.healthcheck_spec({"Test": ["CMD", "pg_isready"], "Interval": 1000000000, "Timeout": 500000000,
                                  "Retries": 10, "StartPeriod": 60000000000})
    assert spec == {"test": ["CMD", "pg_isready"], "interval": "1s", "timeout": "500ms", "retries": 10,
                    "start_period": "60s"}
    assert plan.healthcheck_spec({"Test": ["NONE"]}) is None
    assert plan.healthcheck_spec(None) is None


def test_published_ports():
    bindings = {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5433"}, {"HostIp": "", "HostPort": "6432"}]}
    assert plan.published_ports(bindings) == ["127.0.0.1:5433:5432/tcp", "6432:5432/tcp"]


OLD_IMAGE = {"Config": {"Env": ["PATH=/usr/lib/postgresql/15/bin:/usr/bin", "PG_MAJOR=15",
                                "PGDATA=/var/lib/postgresql/data"],
                        "Cmd": ["postgres"], "Entrypoint": ["/usr/local/bin/docker-entrypoint.sh"],
                        "Labels": {"org.opencontainers.image.title": "pg15"}, "StopSignal": "SIGINT"}}

DATA = "/var/lib/postgresql/data"

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
                   "ShmSize": 67108864, "NetworkMode": "omero",
                   "Mounts": [{"Type": "volume", "Source": "database", "Target": "/var/lib/postgresql/data"},
                              {"Type": "bind", "Source": "/srv/initdb", "Target": "/docker-entrypoint-initdb.d",
                               "ReadOnly": True},
                              {"Type": "bind", "Source": "/srv/secrets", "Target": "/run/secrets", "ReadOnly": True},
                              {"Type": "volume", "Target": "/scratch"}]},
    "Mounts": [
        {"Type": "volume", "Name": "database", "Destination": "/var/lib/postgresql/data", "RW": True},
        {"Type": "bind", "Source": "/srv/initdb", "Destination": "/docker-entrypoint-initdb.d", "RW": False},
        {"Type": "bind", "Source": "/srv/secrets", "Destination": "/run/secrets", "RW": False},
        {"Type": "volume", "Name": "f" * 64, "Destination": "/scratch", "RW": True},
    ],
    "NetworkSettings": {"Networks": {"omero": {"Aliases": ["database", "db", "0123456789ab"]}}},
}


def test_clone_spec_takes_over_the_instance():
    spec = plan.clone_spec(OLD_CONTAINER, OLD_IMAGE, "postgres:17", "database-pg17", DATA, DATA)
    assert spec["name"] == "database"
    assert spec["image"] == "postgres:17"
    # Only what the container set, by name: the image's PATH/PG_MAJOR (of 15!) must not follow.
    assert spec["env_names"] == ["POSTGRES_USER", "POSTGRES_PASSWORD"]
    assert "se=cret" not in json.dumps(spec)
    assert spec["command"] == ["postgres", "-c", "work_mem=16MB"]
    assert "entrypoint" not in spec
    # The init scripts stay (they never run on an existing cluster); the data mount is the new volume.
    assert spec["mounts"] == [
        {"type": "bind", "source": "/srv/initdb", "target": "/docker-entrypoint-initdb.d", "read_only": True},
        {"type": "bind", "source": "/srv/secrets", "target": "/run/secrets", "read_only": True},
        {"type": "volume", "source": "database-pg17", "target": "/var/lib/postgresql/data", "read_only": False},
    ]
    assert spec["staging"]["mounts"] == [spec["mounts"][-1]]
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
    assert "command" not in plan.clone_spec(info, OLD_IMAGE, "postgres:17", "v", DATA, DATA)


# HostConfig and Config of a container run with `docker run --cap-add SYS_PTRACE --cap-drop MKNOD
# --security-opt no-new-privileges --read-only --tmpfs /run/postgresql:rw,size=16m --tmpfs /tmp
# --ulimit nofile=4096:8192 --log-opt max-size=5m --add-host db.example:10.1.2.3 --pids-limit 300
# --device /dev/null:/dev/nulldev:rwm --shm-size 128m --sysctl ... --dns ... --memory 512m
# --memory-reservation 256m --cpus 1.5 --cpu-shares 512 --restart on-failure:3 --stop-timeout 45
# --workdir /tmp --hostname pgdb --mount type=tmpfs,... --oom-score-adj 100 --init --group-add 44
# --device-read-bps /dev/sda:1mb --expose 7000 -v vol:/var/lib/postgresql/data -v /tmp:/hosttmp:ro`
# (Docker 20.10 inspect, trimmed to the fields such a run sets).
RICH_HOST = {
    "Binds": ["rich-data:/var/lib/postgresql/data", "/tmp:/hosttmp:ro"],
    "LogConfig": {"Type": "json-file", "Config": {"max-size": "5m"}}, "NetworkMode": "default",
    "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}, "CapAdd": ["CAP_SYS_PTRACE"],
    "CapDrop": ["CAP_MKNOD"], "CgroupnsMode": "host", "Dns": ["10.0.0.53"], "DnsOptions": ["ndots:2"],
    "DnsSearch": ["example.org"], "ExtraHosts": ["db.example:10.1.2.3", "v6.example:fd00::1"], "GroupAdd": ["44"],
    "IpcMode": "private", "OomScoreAdj": 100, "ReadonlyRootfs": True, "SecurityOpt": ["no-new-privileges"],
    "Tmpfs": {"/run/postgresql": "rw,size=16m", "/tmp": ""}, "ShmSize": 134217728,
    "Sysctls": {"net.ipv4.tcp_keepalive_time": "600"}, "Runtime": "runc", "ConsoleSize": [0, 0], "CpuShares": 512,
    "Memory": 536870912, "NanoCpus": 1500000000, "BlkioDeviceReadBps": [{"Path": "/dev/sda", "Rate": 1048576}],
    "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/nulldev", "CgroupPermissions": "rwm"}],
    "MemoryReservation": 268435456, "MemorySwap": 1073741824, "MemorySwappiness": None, "PidsLimit": 300,
    "Ulimits": [{"Name": "nofile", "Hard": 8192, "Soft": 4096}],
    "Mounts": [{"Type": "tmpfs", "Target": "/scratch", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 1016}}],
    "MaskedPaths": ["/proc/asound"], "ReadonlyPaths": ["/proc/bus"], "Init": True, "KernelMemoryTCP": 0,
    "CpuRealtimePeriod": 0,
}
RICH_CONFIG = {
    "Hostname": "pgdb", "Domainname": "", "User": "", "ExposedPorts": {"5432/tcp": {}, "7000/tcp": {}},
    "Tty": False, "OpenStdin": False, "Cmd": ["postgres", "-c", "work_mem=8MB"],
    "Env": OLD_IMAGE["Config"]["Env"] + ["POSTGRES_PASSWORD=x"],
    "Healthcheck": {"Test": ["CMD-SHELL", "pg_isready"], "Interval": 2000000000}, "Image": "postgres:15",
    "WorkingDir": "/tmp", "Entrypoint": ["/usr/local/bin/docker-entrypoint.sh"],
    "Labels": {"app": "omero", "org.opencontainers.image.title": "pg15"}, "StopSignal": "SIGINT", "StopTimeout": 45,
}
RICH = {"Id": "2d39bae62" + "0" * 55, "Name": "/rich", "Config": RICH_CONFIG, "HostConfig": RICH_HOST,
        "Mounts": [{"Type": "volume", "Name": "rich-data", "Destination": DATA, "RW": True}],
        "NetworkSettings": {"Networks": {"bridge": {"Aliases": None}}}}
IMAGE_WITH_PORT = {"Config": dict(OLD_IMAGE["Config"], ExposedPorts={"5432/tcp": {}})}


def test_clone_spec_carries_every_setting_of_a_rich_container():
    spec = plan.clone_spec(RICH, IMAGE_WITH_PORT, "postgres:17", "rich-data-pg17", DATA, DATA)
    staging = spec.pop("staging")
    assert spec == {
        "name": "rich", "image": "postgres:17", "env_names": ["POSTGRES_PASSWORD"], "networks": [],
        "published_ports": [], "exposed_ports": ["7000/tcp"], "command": ["postgres", "-c", "work_mem=8MB"],
        "working_dir": "/tmp", "hostname": "pgdb", "stop_signal": "SIGINT", "stop_timeout": 45,
        "healthcheck": {"test": ["CMD-SHELL", "pg_isready"], "interval": "2s"},
        "capabilities": ["CAP_SYS_PTRACE"], "cap_drop": ["CAP_MKNOD"], "security_opts": ["no-new-privileges"],
        "read_only": True, "init": True, "dns_servers": ["10.0.0.53"], "dns_search_domains": ["example.org"],
        "dns_opts": ["ndots:2"], "sysctls": {"net.ipv4.tcp_keepalive_time": "600"}, "groups": ["44"],
        "pids_limit": 300, "cpu_shares": 512, "oom_score_adj": 100, "ipc_mode": "private", "runtime": "runc",
        "memory": "536870912b", "memory_reservation": "268435456b", "memory_swap": "1073741824b",
        "shm_size": "134217728b", "cpus": 1.5, "cgroupns_mode": "host",
        "tmpfs": ["/run/postgresql:rw,size=16m", "/tmp"], "ulimits": ["nofile:4096:8192"],
        "etc_hosts": {"db.example": "10.1.2.3", "v6.example": "fd00::1"},
        "devices": ["/dev/null:/dev/nulldev:rwm"], "device_read_bps": [{"path": "/dev/sda", "rate": "1048576"}],
        "log_driver": "json-file", "log_options": {"max-size": "5m"},
        "restart_policy": "on-failure", "restart_retries": 3,
        "volumes": ["/tmp:/hosttmp:ro"],
        "mounts": [{"type": "tmpfs", "target": "/scratch", "read_only": False, "tmpfs_size": "1048576b",
                    "tmpfs_mode": "1770"},
                   {"type": "volume", "source": "rich-data-pg17", "target": DATA, "read_only": False}],
        "labels": {"app": "omero"},
    }
    # The staging container: the new volume only, archiving off.
    assert staging == {"command": ["postgres", "-c", "work_mem=8MB", "-c", "archive_mode=off"],
                       "mounts": [{"type": "volume", "source": "rich-data-pg17", "target": DATA, "read_only": False}],
                       "file_env": []}
    assert plan.clone_problems(RICH, DATA, DATA) == []


def test_clone_spec_leaves_the_engine_hostname_and_an_outside_pgdata():
    info = json.loads(json.dumps(RICH))
    info["Config"]["Hostname"] = info["Id"][:12]
    info["Config"]["Env"].append("PGDATA=/var/lib/postgresql/data/pgdata")
    spec = plan.clone_spec(info, IMAGE_WITH_PORT, "postgres:17", "v", DATA, DATA)
    assert "hostname" not in spec and "PGDATA" in spec["env_names"]
    # From 18 on the volume is mounted at /var/lib/postgresql: a PGDATA elsewhere must not follow.
    info["Config"]["Env"][-1] = "PGDATA=/srv/pg"
    spec = plan.clone_spec(info, IMAGE_WITH_PORT, "postgres:18", "v", "/srv", "/var/lib/postgresql")
    assert "PGDATA" not in spec["env_names"]


@pytest.mark.parametrize("settings, command", [
    ({}, ["postgres", "-c", "archive_mode=off"]),
    ({"archive_mode": "on", "archive_command": "cp %p /archive/%f", "work_mem": "16MB", "archive_timeout": "60"},
     ["postgres", "-c", "work_mem=16MB", "-c", "archive_mode=off"]),
    ({"config_file": "/etc/pg.conf", "hba_file": "x", "log_directory": "log", "ssl_cert_file": "c",
      "shared_preload_libraries": "pg_stat_statements", "restore_command": "cp", "dynamic_library_path": "/opt/lib"},
     ["postgres", "-c", "shared_preload_libraries=pg_stat_statements", "-c", "archive_mode=off"]),
])
def test_staging_command_never_archives_nor_names_files(settings, command):
    assert plan.staging_command(settings) == command


def test_staging_takes_password_files_over_by_value():
    spec = plan.clone_spec(OLD_CONTAINER, OLD_IMAGE, "postgres:17", "database-pg17", DATA, DATA)
    assert spec["staging"]["file_env"] == []
    info = json.loads(json.dumps(OLD_CONTAINER))
    info["Config"]["Env"] += ["POSTGRES_PASSWORD_FILE=/run/secrets/pw", "OTHER_FILE=/x"]
    staging = plan.clone_spec(info, OLD_IMAGE, "postgres:17", "database-pg17", DATA, DATA)["staging"]
    assert staging["file_env"] == ["POSTGRES_PASSWORD_FILE"]
    assert [mount["target"] for mount in staging["mounts"]] == [DATA]


@pytest.mark.parametrize("change, problem", [
    (lambda c: c["HostConfig"].update(AutoRemove=True), "is removed when it stops"),
    (lambda c: c["HostConfig"].update(CpuRealtimeRuntime=950000), "HostConfig.CpuRealtimeRuntime=950000"),
    (lambda c: c["HostConfig"].update(BlkioWeightDevice=[{"Path": "/dev/sda", "Weight": 10}]),
     "HostConfig.BlkioWeightDevice"),
    (lambda c: c["Mounts"].append({"Type": "bind", "Destination": DATA + "/pg_wal"}),
     "mount /var/lib/postgresql/data/pg_wal of container rich lies inside its data mount"),
    (lambda c: c["Config"]["Env"].append("POSTGRES_INITDB_WALDIR=/wal"), "POSTGRES_INITDB_WALDIR=/wal outside"),
])
def test_clone_problems(change, problem):
    info = json.loads(json.dumps(RICH))
    change(info)
    problems = plan.clone_problems(info, DATA, DATA)
    assert len(problems) == 1 and problem in problems[0]


def test_clone_problems_accept_a_wal_dir_inside_the_data_mount():
    info = json.loads(json.dumps(RICH))
    info["Config"]["Env"].append("POSTGRES_INITDB_WALDIR=%s/wal" % DATA)
    assert plan.clone_problems(info, DATA, DATA) == []


def test_network_specs_keep_fixed_addresses_and_links():
    networks = {"omero": {"Aliases": ["database", "db", "0123456789ab"], "Links": ["web:www"],
                          "IPAMConfig": {"IPv4Address": "172.30.0.5"}, "IPAddress": "172.30.0.5"},
                "other": {"Aliases": None, "IPAMConfig": None, "IPAddress": "172.31.0.9"}}
    assert plan.network_specs(networks, "0123456789abcdef", "database") == [
        {"name": "omero", "aliases": ["db"], "ipv4_address": "172.30.0.5", "links": ["web:www"]},
        {"name": "other"}]


@pytest.mark.parametrize("mounts, pgdata, found", [
    ([{"Destination": "/var/lib/postgresql/data"}], "/var/lib/postgresql/data", "/var/lib/postgresql/data"),
    ([{"Destination": "/var/lib/postgresql/data"}], "/var/lib/postgresql/data/pgdata", "/var/lib/postgresql/data"),
    ([{"Destination": "/var/lib/postgresql"}, {"Destination": "/var/lib/postgresql/18/docker/x"}],
     "/var/lib/postgresql/18/docker", "/var/lib/postgresql"),
    ([{"Destination": "/var/lib/postgresql"}, {"Destination": "/var/lib/postgresql/data/"}],
     "/var/lib/postgresql/data", "/var/lib/postgresql/data/"),
    ([{"Destination": "/var/lib/postgresql/database"}], "/var/lib/postgresql/data", None),
    (None, "/var/lib/postgresql/data", None),
])
def test_data_mount_holds_pgdata(mounts, pgdata, found):
    mount = plan.data_mount(mounts, pgdata)
    assert (mount or {}).get("Destination") == found


@pytest.mark.parametrize("pgdata, current, target, data_dir, old, new", [
    # 15 -> 17 as before: both at /var/lib/postgresql/data.
    ("/var/lib/postgresql/data", 15, 17, None, "/var/lib/postgresql/data", "/var/lib/postgresql/data"),
    (None, 15, 17, None, "/var/lib/postgresql/data", "/var/lib/postgresql/data"),
    # From 18 on the official image mounts /var/lib/postgresql.
    ("/var/lib/postgresql/data", 17, 18, None, "/var/lib/postgresql/data", "/var/lib/postgresql"),
    ("/var/lib/postgresql/18/docker", 18, 19, None, "/var/lib/postgresql", "/var/lib/postgresql"),
    # data_dir sets both.
    ("/var/lib/postgresql/data", 15, 17, "/pg", "/pg", "/pg"),
])
def test_data_mounts(pgdata, current, target, data_dir, old, new):
    mounts = [{"Destination": "/var/lib/postgresql/data"}, {"Destination": "/var/lib/postgresql"},
              {"Destination": "/pg"}, {"Destination": "/run/secrets"}]
    mount, new_mount = plan.data_mounts(mounts, pgdata, current, target, data_dir)
    assert (mount["Destination"], new_mount) == (old, new)


@pytest.mark.parametrize("pgdata, old_mount, new_mount, kept", [
    # A site's own PGDATA in a data mount that stays where it was: kept.
    ("/var/lib/postgresql/data/pgdata", DATA, DATA, True),
    ("/pg/cluster", "/pg", "/pg", True),
    # A major's layout (the provisioning role sets it explicitly): the target image's own PGDATA applies.
    (DATA, DATA, DATA, False),
    (DATA, DATA, "/var/lib/postgresql", False),
    ("/var/lib/postgresql/18/docker", "/var/lib/postgresql", "/var/lib/postgresql", False),
    # 17 -> 18: the data mount moved, a PGDATA below the old one means nothing in the new one.
    ("/var/lib/postgresql/data/pgdata", DATA, "/var/lib/postgresql", False),
    ("/srv/pg", "/srv", "/var/lib/postgresql", False),
])
def test_clone_spec_keeps_only_a_site_pgdata_in_an_unmoved_mount(pgdata, old_mount, new_mount, kept):
    info = json.loads(json.dumps(RICH))
    info["Config"]["Env"].append("PGDATA=" + pgdata)
    spec = plan.clone_spec(info, IMAGE_WITH_PORT, "postgres:18", "v", old_mount, new_mount)
    assert ("PGDATA" in spec["env_names"]) is kept


def test_clone_spec_moves_the_data_mount_to_the_target_layout():
    spec = plan.clone_spec(OLD_CONTAINER, OLD_IMAGE, "postgres:18", "database-pg18", DATA, "/var/lib/postgresql")
    assert spec["mounts"][-1] == {"type": "volume", "source": "database-pg18", "target": "/var/lib/postgresql",
                                  "read_only": False}
    assert DATA not in [mount["target"] for mount in spec["mounts"]]


def test_upgrade_labels():
    made = plan.upgrade_labels("database-pg15", "database", "postgres:15", 15, "database-pg17", 17)
    assert made[labels.UPGRADE_PREVIOUS_CONTAINER] == "database-pg15"
    assert made[labels.UPGRADE_FROM_MAJOR] == "15"
    # The major provisioning reads: the new one.
    assert made[labels.INSTANCE_MAJOR] == "17"


BEFORE = {"databases": {"omero": {"tables": {"public.job": 3, "public.image": 2},
                                  "sequences": {"public.job_id_seq": 3}, "smoke": {"job": 3}}},
          "roles": ["omero", "omero_ro"]}


def test_compare_equal_fingerprints_ignores_new_roles():
    after = json.loads(json.dumps(BEFORE))
    after["roles"].append("pg17_only")
    assert plan.compare_fingerprints(BEFORE, after) == []


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
    differences = plan.compare_fingerprints(BEFORE, after)
    assert len(differences) == 1 and expected in differences[0]


@pytest.mark.parametrize("kind, tables", [
    ("omero", ["job"]), ("biomero", ["imports", "workflowtracker_events"]), ("none", []),
    ("auto", ["imports", "job", "workflowtracker_events"]),
])
def test_smoke_tables(kind, tables):
    assert plan.smoke_tables(kind) == tables


def test_role_label_names_are_the_collections():
    """roles/postgres_upgrade/vars/main.yml names the labels pg_upgrade_preflight puts on the new container."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles", "postgres_upgrade", "vars", "main.yml")
    with open(path) as handle:
        names = yaml.safe_load(handle)
    assert names["postgres_upgrade__label_previous_container"] == labels.UPGRADE_PREVIOUS_CONTAINER
    assert names["postgres_upgrade__label_previous_volume"] == labels.UPGRADE_PREVIOUS_VOLUME
    assert names["postgres_upgrade__label_volume"] == labels.UPGRADE_VOLUME
    assert all(value.startswith(labels.UPGRADE_PREFIX) for key, value in names.items() if "__label_" in key)


# ---- Recovery after an interrupted upgrade (or rollback of a finished one).

def _container(running=True, made_from=None, volume=None):
    found = {labels.UPGRADE_PREVIOUS_CONTAINER: made_from, labels.UPGRADE_VOLUME: volume} if made_from else {}
    return {"Config": {"Labels": found}, "State": {"Running": running}}


JOURNAL = {"old_name": "db-pg15", "new_volume": "db-data-pg17", "clients": ["web"]}
OLD = _container(running=False)
NEW = _container(made_from="db-pg15", volume="db-data-pg17")


@pytest.mark.parametrize("current, aside, staging, volumes, journal, rollback, expected", [
    # No upgrade under way: nothing to do (a leftover volume alone is preflight's to report).
    (_container(), {}, [], {"db-data-pg17": []}, None, False, dict(state="clean", remove=[], volumes=[])),
    # Killed with the staging container up (clients not stopped yet).
    (_container(), {}, ["db-pg17-staging"], {"db-data-pg17": ["db-pg17-staging"]},
     dict(JOURNAL, clients=[]), False,
     dict(state="interrupted", step="before_swap", remove=["db-pg17-staging"], start=False, rename=False,
          volumes=["db-data-pg17"], clients=[])),
    # Killed after the old container was stopped (staging gone).
    (_container(running=False), {}, [], {"db-data-pg17": []}, JOURNAL, False,
     dict(state="interrupted", step="before_swap", remove=[], start=True, rename=False, volumes=["db-data-pg17"],
          clients=["web"])),
    # Killed after the old container was renamed, before the new one was created.
    (None, {"db-pg15": OLD}, [], {"db-data-pg17": []}, JOURNAL, False,
     dict(state="interrupted", step="set_aside", remove=[], rename=True, start=True, volumes=["db-data-pg17"])),
    # Found without a journal too (the only set-aside container).
    (None, {"db-pg15": OLD}, [], {}, None, False, dict(state="interrupted", step="set_aside", rename=True)),
    # Killed with the new container created, or started but not verified.
    (_container(running=False, made_from="db-pg15", volume="db-data-pg17"), {"db-pg15": OLD}, [],
     {"db-data-pg17": ["db"], "db-data": ["db-pg15"]}, JOURNAL, False,
     dict(state="interrupted", step="new_created", remove=["db"], rename=True, start=True, volumes=["db-data-pg17"])),
    (NEW, {"db-pg15": OLD}, [], {"db-data-pg17": ["db"]}, JOURNAL, False,
     dict(state="interrupted", step="new_started", remove=["db"], rename=True)),
    # A finished upgrade: left alone by a re-run of upgrade.yml, rolled back by rollback.yml.
    (NEW, {"db-pg15": OLD}, [], {"db-data-pg17": ["db"]}, None, False,
     dict(state="finished", step="finished", remove=[], rename=False, start=False, volumes=[])),
    (NEW, {"db-pg15": OLD}, [], {"db-data-pg17": ["db"]}, None, True,
     dict(state="finished", remove=["db"], rename=True, start=True, volumes=["db-data-pg17"])),
    # 17 -> 18 of an instance upgraded before: the label of the first upgrade does not fool it.
    (_container(made_from="db-pg15"), {"db-pg15": OLD}, ["db-pg18-staging"],
     {"db-data-pg18": ["db-pg18-staging"], "db-data-pg17": ["db"]},
     {"old_name": "db-pg17", "new_volume": "db-data-pg18", "clients": []}, False,
     dict(state="interrupted", step="before_swap", old_name="db-pg17", remove=["db-pg18-staging"],
          rename=False, volumes=["db-data-pg18"])),
])
def test_recovery_plan(current, aside, staging, volumes, journal, rollback, expected):
    made = plan.recovery_plan("db", current, aside, staging, volumes, journal, rollback)
    assert made["problems"] == []
    assert dict((key, made[key]) for key in expected) == expected


@pytest.mark.parametrize("current, aside, journal, rollback, problem", [
    (None, {}, JOURNAL, False, "neither db nor db-pg15 exists"),
    (NEW, {}, None, True, "made by an upgrade from db-pg15, which no longer exists"),
    (NEW, {}, JOURNAL, False, "which no longer exists"),
])
def test_recovery_plan_without_an_old_instance(current, aside, journal, rollback, problem):
    made = plan.recovery_plan("db", current, aside, [], {}, journal, rollback)
    assert len(made["problems"]) == 1 and problem in made["problems"][0]
    assert not made["rename"] and not made["start"] and made["volumes"] == []


def test_recovery_leaves_a_finished_and_cleaned_upgrade_alone():
    made = plan.recovery_plan("db", NEW, {}, [], {"db-data-pg17": ["db"]})
    assert made["state"] == "finished" and made["problems"] == [] and made["volumes"] == []


def test_aside_names():
    names = ["db", "db-pg15", "db-pg17-staging", "db-pgx", "other-pg15", "db-biomero-pg15", "db-pg9"]
    assert plan.aside_names("db", names) == ["db-pg15", "db-pg9"]
    assert plan.aside_names("a.b", ["a.b-pg15", "axb-pg15"]) == ["a.b-pg15"]
