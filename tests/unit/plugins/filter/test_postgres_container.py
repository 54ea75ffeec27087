import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.nl_biomero.database.plugins.filter.postgres_container import (
    FilterModule,
    postgres_container_plan,
    postgres_container_spec,
)

COMMON = {
    "state": "started", "image": "postgres:16", "network": "omero", "max_connections": 100, "tuning": "auto",
    "tuning_memory_mb": 0, "tuning_cpus": 0, "settings": {}, "logging": False,
    "log_root": "/var/log/nl-biomero/postgres", "log_mount": "/var/log/postgresql",
    "log_filename": "postgresql-%Y-%m-%d.log", "log_rotation_age": "1d", "log_rotation_size": "100MB",
    "log_statement": "ddl", "initdb_dir": "", "shm_size": "256m", "memory": "", "cpus": 0,
    "restart_policy": "unless-stopped", "stop_timeout": 120, "publish_address": "127.0.0.1", "labels": {},
    "healthcheck": {"interval": "10s", "timeout": "5s", "retries": 5, "start_period": "60s"},
}
DEFAULT_INSTANCES = [
    {"name": "database", "role": "omero", "user": "omero", "db": "omero", "password": "s3cret'"},
    {"name": "database-biomero", "role": "biomero", "user": "biomero", "db": "biomero", "password": "x"},
]


def plan(instances=None, common=None, memory_mb=24576, cpus=2):
    merged = dict(COMMON)
    merged.update(common or {})
    return postgres_container_plan(instances or DEFAULT_INSTANCES, merged, memory_mb, cpus)


def check_result(plans, major=16):
    return {"instances": [{"name": p["name"], "image": p["image"], "major": major, "uid": 999, "gid": 999}
                          for p in plans if p["state"] == "started"]}


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"postgres_container_plan", "postgres_container_spec",
                                             "postgres_container_listed", "postgres_container_name_filter",
                                             "postgres_container_compose_services"}


def test_defaults_share_the_host_memory_between_the_two_instances():
    plans = plan()
    assert [p["name"] for p in plans] == ["database", "database-biomero"]
    omero = plans[0]
    assert omero["tuning_inputs"] == {"memory_mb": 12288, "memory_source": "host memory / 2 instance(s)",
                                      "cpus": 2, "max_connections": 100}
    assert omero["settings"]["shared_buffers"] == "3072MB"
    assert omero["volume"] == "database" and omero["data_path"] is None
    assert omero["check"] == {"name": "database", "image": "postgres:16", "max_connections": 100,
                              "settings": omero["settings"]}
    assert "password" not in omero["check"]


def test_settings_override_tuning_and_logging_and_none_removes():
    plans = plan([dict(DEFAULT_INSTANCES[0], logging=True, max_connections=500,
                       settings={"shared_buffers": "1GB", "work_mem": None, "log_statement": "all"})],
                 common={"settings": {"jit": False, "shared_buffers": "2GB"}})
    settings = plans[0]["settings"]
    assert settings["shared_buffers"] == "1GB"
    assert "work_mem" not in settings
    assert settings["jit"] == "off"
    assert settings["log_statement"] == "all"
    assert settings["logging_collector"] == "on"
    assert settings["log_directory"] == "/var/log/postgresql"
    assert plans[0]["log_dir"] == "/var/log/nl-biomero/postgres/database"
    # one instance: the whole host
    assert plans[0]["tuning_inputs"]["memory_mb"] == 24576


def test_memory_limit_drives_tuning():
    plans = plan([dict(DEFAULT_INSTANCES[0], memory="2g", cpus=1.5)])
    assert plans[0]["tuning_inputs"] == {"memory_mb": 2048, "memory_source": "memory limit", "cpus": 2,
                                         "max_connections": 100}
    assert plans[0]["settings"]["shared_buffers"] == "512MB"


def test_tuning_none():
    plans = plan(common={"tuning": "none"})
    assert plans[0]["settings"] == {} and plans[0]["tuning_inputs"] is None


@pytest.mark.parametrize("instances,message", [
    ([dict(DEFAULT_INSTANCES[0], password="")], "instance 'database': no password"),
    ([{k: v for k, v in DEFAULT_INSTANCES[0].items() if k != "password"}], "no password"),
    ([dict(DEFAULT_INSTANCES[0], password_file="/run/pw")], "not both"),
    ([dict(DEFAULT_INSTANCES[0], password=None, password_file="pw")], "absolute path"),
    ([dict(DEFAULT_INSTANCES[0], pasword="typo")], "unknown key\\(s\\): pasword"),
    ([DEFAULT_INSTANCES[0], DEFAULT_INSTANCES[0]], "unique: database"),
    ([dict(DEFAULT_INSTANCES[0], settings={"max_connections": 5})], "use the max_connections option"),
    ([dict(DEFAULT_INSTANCES[0], settings={"shared buffers": 5})], "not a valid PostgreSQL setting name"),
    ([dict(DEFAULT_INSTANCES[0], tuning="fast")], "tuning must be one of"),
    ([dict(DEFAULT_INSTANCES[0], state="running")], "state must be one of"),
    ([dict(DEFAULT_INSTANCES[0], env={"PGDATA": "/x"})], "env must not set PGDATA"),
    ([dict(DEFAULT_INSTANCES[0], memory="lots")], "cannot read size"),
    ([{"user": "x"}], "every instance needs a name"),
])
def test_plan_errors_name_the_instance_and_never_the_password(instances, message):
    with pytest.raises(AnsibleFilterError, match=message) as err:
        plan(instances)
    assert "s3cret" not in str(err.value)


def test_absent_instances_need_no_password_and_do_not_share_memory():
    plans = plan([{"name": "old", "state": "absent"}, DEFAULT_INSTANCES[0]])
    assert plans[0]["state"] == "absent"
    assert plans[1]["tuning_inputs"]["memory_mb"] == 24576


def test_spec_for_pg16_volume_and_password():
    plans = plan()
    specs = postgres_container_spec(plans, COMMON, check_result(plans, 16))
    omero = specs[0]
    assert omero["data_mount"] == "/var/lib/postgresql/data" and omero["pgdata"] == "/var/lib/postgresql/data"
    assert omero["mounts"] == [{"type": "volume", "source": "database", "target": "/var/lib/postgresql/data"}]
    assert omero["env"] == {"POSTGRES_USER": "omero", "POSTGRES_DB": "omero", "PGDATA": "/var/lib/postgresql/data"}
    assert "POSTGRES_PASSWORD" not in omero["env"]  # added by the no_log task only
    assert omero["labels"] == {
        "nl-biomero.database.instance": "database", "nl-biomero.database.role": "omero",
        "nl-biomero.database.major": "16", "nl-biomero.database.managed-by": "nl_biomero.database.postgres_container"}
    assert omero["networks"] == [{"name": "omero", "aliases": []}]
    assert omero["command"][:3] == ["postgres", "-N", "100"]
    assert "-c" in omero["command"] and "shared_buffers=3072MB" in omero["command"]
    assert omero["healthcheck"]["test"] == ["CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432",
                                            "-U", "omero", "-d", "omero"]
    assert omero["healthcheck"]["interval"] == "10s"
    assert omero["published_ports"] == [] and omero["host_files"] == []


def test_spec_for_pg18_layout_bind_mounts_and_port():
    instances = [dict(DEFAULT_INSTANCES[0], image="postgres:18", password=None, password_file="/etc/nlb/omero.pw",
                      data_path="/srv/pg/omero", initdb_dir="/srv/initdb", logging=True,
                      log_dir="/srv/logs/omero", published_port=5433, aliases=["omero-db"],
                      labels={"team": "x"})]
    plans = plan(instances)
    specs = postgres_container_spec(plans, COMMON, check_result(plans, 18))
    spec = specs[0]
    assert (spec["data_mount"], spec["pgdata"]) == ("/var/lib/postgresql", "/var/lib/postgresql/18/docker")
    assert spec["env"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres-password"
    assert spec["mounts"] == [
        {"type": "bind", "source": "/srv/pg/omero", "target": "/var/lib/postgresql"},
        {"type": "bind", "source": "/etc/nlb/omero.pw", "target": "/run/secrets/postgres-password",
         "read_only": True},
        {"type": "bind", "source": "/srv/initdb", "target": "/docker-entrypoint-initdb.d", "read_only": True},
        {"type": "bind", "source": "/srv/logs/omero", "target": "/var/log/postgresql"},
    ]
    assert spec["host_files"] == [{"what": "password_file", "path": "/etc/nlb/omero.pw"},
                                  {"what": "initdb_dir", "path": "/srv/initdb"}]
    assert spec["published_ports"] == ["127.0.0.1:5433:5432"]
    assert spec["networks"] == [{"name": "omero", "aliases": ["omero-db"]}]
    assert spec["labels"]["team"] == "x" and spec["labels"]["nl-biomero.database.major"] == "18"
    assert spec["uid"] == 999


def test_spec_prefers_the_probed_major_over_the_tag():
    plans = plan([dict(DEFAULT_INSTANCES[0], image="myrepo/pg:latest")])
    assert plans[0]["tag_major"] is None
    spec = postgres_container_spec(plans, COMMON, check_result(plans, 18))[0]
    assert spec["pgdata"] == "/var/lib/postgresql/18/docker"


def test_spec_explicit_mount_override():
    plans = plan([dict(DEFAULT_INSTANCES[0], image="postgres:18", data_mount="/var/lib/postgresql/data")])
    spec = postgres_container_spec(plans, COMMON, check_result(plans, 18))[0]
    assert (spec["data_mount"], spec["pgdata"]) == ("/var/lib/postgresql/data", "/var/lib/postgresql/data")


def test_spec_requires_a_check_result():
    with pytest.raises(AnsibleFilterError, match="pg_settings_check returned nothing"):
        postgres_container_spec(plan(), COMMON, {"instances": []})


def test_listed_summarises_the_container_list():
    from ansible_collections.nl_biomero.database.plugins.filter.postgres_container import (
        postgres_container_listed, postgres_container_name_filter)
    containers = [
        {"Names": ["/database"], "Id": "abc", "Image": "postgres:16", "State": "running",
         "Status": "Up 3 minutes (healthy)", "Labels": {}},
        {"Names": ["/database-biomero"], "Id": "def", "Image": "sha256:0123", "State": "running",
         "Status": "Up 2 seconds (health: starting)", "Labels": {"nl-biomero.database.major": "17"}},
        {"Names": ["/crashy"], "State": "restarting", "Status": "Restarting (1) 2 seconds ago"},
    ]
    specs = [{"name": "database", "image": "postgres:17", "major": 17}, {"name": "database-biomero", "major": 17},
             {"name": "crashy"}, {"name": "new"}]
    listed = postgres_container_listed(containers, specs)
    assert [(x["name"], x["health"], x["settled"], x["running_major"]) for x in listed] == [
        ("database", "healthy", True, "16"),
        ("database-biomero", "starting", False, "17"),
        ("crashy", "none", True, ""),
        ("new", "none", True, ""),
    ]
    assert listed[3]["exists"] is False and listed[3]["state"] == "missing"
    assert postgres_container_name_filter([{"name": "database"}, {"name": "db.x"}]) == ["^/database$", "^/db\\.x$"]


def test_logging_block_rotates_by_weekday_and_truncates():
    """Without log_filename set, the role's block writes seven weekday files that are truncated on reuse."""
    common = dict(COMMON, log_filename=None, log_rotation_size=None, log_keep_days=14)
    settings = plan([dict(DEFAULT_INSTANCES[0], logging=True)], common)[0]["settings"]
    assert settings["log_filename"] == "postgresql-%a.log"
    assert settings["log_truncate_on_rotation"] == "on"
    assert settings["log_rotation_age"] == "1d"
    assert settings["log_rotation_size"] == "0"


@pytest.mark.parametrize("value, expected", [(None, 0), (0, 0), (7, 7), ("30", 30)])
def test_log_keep_days(value, expected):
    planned = plan([dict(DEFAULT_INSTANCES[0], logging=True, log_keep_days=value)])[0]
    assert planned["log_keep_days"] == expected


@pytest.mark.parametrize("value", [-1, "1w", 1.5, True])
def test_log_keep_days_refused(value):
    with pytest.raises(AnsibleFilterError, match=r"instance 'database': log_keep_days must be a whole number"):
        plan([dict(DEFAULT_INSTANCES[0], logging=True, log_keep_days=value)])


def test_truncate_can_be_switched_off_and_must_be_a_boolean():
    planned = plan([dict(DEFAULT_INSTANCES[0], logging=True, log_truncate_on_rotation=False)])[0]
    assert planned["settings"]["log_truncate_on_rotation"] == "off"
    with pytest.raises(AnsibleFilterError, match="log_truncate_on_rotation must be a boolean"):
        plan([dict(DEFAULT_INSTANCES[0], logging=True, log_truncate_on_rotation="sometimes")])


def test_clients_is_an_instance_key():
    planned = plan([dict(DEFAULT_INSTANCES[0], clients=["OMERO.server (CONFIG_omero_db_pass)"])])[0]
    assert planned["clients"] == ["OMERO.server (CONFIG_omero_db_pass)"]


def test_readers_are_planned_by_name_only():
    planned = plan([dict(DEFAULT_INSTANCES[0], readers=[{"name": "metabase", "password": "ro-pw"}])])[0]
    assert planned["readers"] == ["metabase"]
    assert "ro-pw" not in repr(planned)


@pytest.mark.parametrize("readers, message", [
    ([{"name": "metabase"}], "needs a name and a password"),
    ([{"name": "m", "password": "p", "superuser": True}], "unknown key"),
    ([{"name": "m", "password": "p"}, {"name": "m", "password": "q"}], "unique"),
])
def test_readers_refused(readers, message):
    with pytest.raises(AnsibleFilterError, match=message):
        plan([dict(DEFAULT_INSTANCES[0], readers=readers)])


def test_access_options_mount_the_access_directory_and_set_the_command_line():
    from ansible_collections.nl_biomero.database.plugins.filter.postgres_access import (
        postgres_container_access_checks, postgres_container_access_files)
    instance = dict(DEFAULT_INSTANCES[0], hba=[{"address": "10.0.0.0/24", "user": "omero"}],
                    tls={"cert": "/etc/ssl/db.crt", "key": "/etc/ssl/db.key"}, listen_addresses=["*"])
    plans = plan([instance], common={"access_root": "/srv/access/"})
    assert "hba_file" not in plans[0]["check"]["settings"]  # the settings check never sees the role's own
    spec = postgres_container_spec(plans, COMMON, check_result(plans))[0]
    assert {"type": "bind", "source": "/srv/access/database", "target": "/etc/nl-biomero/access",
            "read_only": True} in spec["mounts"]
    command = " ".join(spec["command"])
    for setting in ("hba_file=/etc/nl-biomero/access/pg_hba.conf", "ssl=on", "listen_addresses=*",
                    "ssl_key_file=/etc/nl-biomero/access/server.key"):
        assert "-c " + setting in command
    assert postgres_container_access_checks([spec]) == [
        {"name": "database", "image": "postgres:16", "tls": {"cert": "/etc/ssl/db.crt", "key": "/etc/ssl/db.key"}}]
    owners = {"instances": [{"name": "database", "uid": 999, "gid": 998}]}
    tls = postgres_container_access_files([spec], owners, "tls")
    assert [(f["dest"], f["src"], f["mode"], f["owner"]) for f in tls] == [
        ("/srv/access/database/server.crt", "/etc/ssl/db.crt", "0644", 999),
        ("/srv/access/database/server.key", "/etc/ssl/db.key", "0600", 999)]
    hba = postgres_container_access_files([spec], owners, "hba")[0]
    assert hba["dest"] == "/srv/access/database/pg_hba.conf" and "hostssl  all          omero" in hba["content"]


def test_without_access_options_nothing_changes():
    plans = plan()
    spec = postgres_container_spec(plans, COMMON, check_result(plans))[0]
    assert plans[0]["access"] is None
    assert not [m for m in spec["mounts"] if m["target"] == "/etc/nl-biomero/access"]
    assert "hba_file" not in " ".join(spec["command"])


@pytest.mark.parametrize("extra, words", [
    ({"hba": [{"address": "10.0.0.0/24", "method": "md5"}]}, ["instance 'database'", "method 'md5'"]),
    ({"hba": [{"type": "local"}]}, ["would lock out"]),
    ({"listen_addresses": ["10.0.0.5"]}, ["listen_addresses", "lock out"]),
    ({"hba": [], "access_dir": "relative"}, ["absolute host path"]),
])
def test_access_options_refused_in_the_plan(extra, words):
    with pytest.raises(AnsibleFilterError) as err:
        plan([dict(DEFAULT_INSTANCES[0], **extra)])
    for word in words:
        assert word in str(err.value)


# ---- instances taken over from a compose project (postgres_container_compose_project)

def _read(name, service, image="nl-biomero/postgres:17", user="omero", database="omero"):
    """What pg_compose_service returns for an instance's service (a loop result)."""
    return {"item": {"name": name, "service": service}, "changed": False, "project": "nlb", "dir": "/srv/nlb",
            "service": service, "container": "nlb_%s_1" % service, "exists": True, "image": image, "user": user,
            "database": database}


COMPOSED = [_read("database", "database"), _read("database-biomero", "database-biomero", user="bio", database="bio")]


def test_compose_services_default_to_the_instance_names_without_passwords():
    from ansible_collections.nl_biomero.database.plugins.filter.postgres_container import (
        postgres_container_compose_services)
    assert postgres_container_compose_services(DEFAULT_INSTANCES + [{"name": "x", "compose_service": "db2"}]) == [
        {"name": "database", "service": "database"}, {"name": "database-biomero", "service": "database-biomero"},
        {"name": "x", "service": "db2"}]


def test_compose_instances_take_image_and_credentials_from_the_project():
    instances = [dict(DEFAULT_INSTANCES[0], max_connections=500, logging=True, password=""), DEFAULT_INSTANCES[1]]
    plans = postgres_container_plan(instances, COMMON, 24576, 2, COMPOSED)
    omero, biomero = plans
    assert (omero["image"], omero["user"], omero["db"], omero["volume"]) == (
        "nl-biomero/postgres:17", "omero", "omero", None)
    assert (biomero["user"], biomero["db"]) == ("bio", "bio")
    assert omero["check"]["image"] == "nl-biomero/postgres:17" and omero["settings"]["logging_collector"] == "on"
    specs = postgres_container_spec(plans, COMMON, check_result(plans, major=17))
    assert [s["name"] for s in specs] == ["nlb_database_1", "nlb_database-biomero_1"]
    assert specs[0]["instance"] == "database" and specs[0]["networks"] == [] and specs[0]["env"] == {}
    assert specs[0]["compose_mounts"] == ["/var/log/nl-biomero/postgres/database:/var/log/postgresql"]
    assert specs[0]["command"][:3] == ["postgres", "-N", "500"]
    assert specs[1]["healthcheck"]["test"][-4:] == ["-U", "bio", "-d", "bio"]
    assert specs[1]["compose_mounts"] == []


@pytest.mark.parametrize("instance, message", [
    ({"name": "database", "image": "postgres:16"}, "image: the compose project /srv/nlb sets these for service "
                                                   "database; change them there"),
    ({"name": "database", "volume": "v", "published_port": 5432}, "published_port, volume: the compose project"),
    ({"name": "database", "state": "absent"}, "state must be started for a service of the compose project"),
    ({"name": "database", "settings": {"work_mem": "x\n"}}, "single line"),
])
def test_compose_instances_refuse_what_the_project_owns(instance, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(")):
        postgres_container_plan([instance], COMMON, 24576, 2, COMPOSED[:1])


def test_two_instances_cannot_take_over_one_service():
    with pytest.raises(AnsibleFilterError, match="two instances take over compose service.s. database"):
        postgres_container_plan([{"name": "a"}, {"name": "b"}], COMMON, 24576, 2,
                                [_read("a", "database"), _read("b", "database")])


def test_compose_instances_take_listen_addresses_but_refuse_hba_and_tls():
    plans = postgres_container_plan([{"name": "database", "listen_addresses": ["*"]}], COMMON, 24576, 2, COMPOSED[:1])
    spec = postgres_container_spec(plans, COMMON, check_result(plans, major=17))[0]
    assert "listen_addresses=*" in spec["command"]
    with pytest.raises(AnsibleFilterError, match="not supported for a service taken over from a compose project"):
        postgres_container_plan([{"name": "database", "hba": []}], COMMON, 24576, 2, COMPOSED[:1])
