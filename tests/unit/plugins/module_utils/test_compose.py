import os

import pytest
import yaml

from ansible_collections.nl_biomero.database.plugins.module_utils import compose
from ansible_collections.nl_biomero.database.plugins.module_utils.compose import ComposeError

# The platform's two database services, as its docker-compose.yml has them (BIOMERO maps its own variables).
PLATFORM = """version: "3.8"
services:
  database:
    image: "postgres:16"
    environment:
      POSTGRES_USER: ${POSTGRES_USER:-omero}
      POSTGRES_DB: ${POSTGRES_DB:-omero}
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
    networks: [omero]
    volumes:
      - "database:/var/lib/postgresql/data"
  database-biomero:
    image: "postgres:16"
    environment:
      - POSTGRES_USER=${BIOMERO_POSTGRES_USER}
      - POSTGRES_DB=${BIOMERO_POSTGRES_DB}
      - POSTGRES_PASSWORD=${BIOMERO_POSTGRES_PASSWORD}
    networks: [omero]
    volumes:
      - "database-biomero:/var/lib/postgresql/data"
  omeroserver:
    image: "openmicroscopy/omero-server:5"
networks:
  omero:
volumes:
  database:
  database-biomero:
"""
ENV = """# NL-BIOMERO settings
POSTGRES_PASSWORD='s3cr$t "x"'
BIOMERO_POSTGRES_USER=biomero
export BIOMERO_POSTGRES_DB="${BIOMERO_POSTGRES_USER}_db"
BIOMERO_POSTGRES_PASSWORD=pa ss # a comment
"""


def project(tmp_path, files=None, env=ENV):
    for name, text in (files or {"docker-compose.yml": PLATFORM}).items():
        (tmp_path / name).write_text(text)
    if env is not None:
        (tmp_path / ".env").write_text(env)
    return str(tmp_path)


# ---- labels and names


def test_compose_labels_v1_and_v2():
    labels = {compose.PROJECT: "nl-biomero", compose.SERVICE: "database", compose.WORKING_DIR: "/opt/NL-BIOMERO",
              compose.CONFIG_FILES: "/opt/NL-BIOMERO/docker-compose.yml,/opt/NL-BIOMERO/x.yml",
              compose.NUMBER: "1"}
    assert compose.compose_labels(labels) == {
        "project": "nl-biomero", "service": "database", "working_dir": "/opt/NL-BIOMERO",
        "config_files": ["/opt/NL-BIOMERO/docker-compose.yml", "/opt/NL-BIOMERO/x.yml"], "number": 1}
    assert compose.compose_labels({"nl-biomero.database.role": "omero"}) is None
    assert compose.compose_labels(None) is None
    assert compose.container_names("nl-biomero", "database") == ["nl-biomero_database_1", "nl-biomero-database-1"]


def test_project_name_like_compose():
    assert compose.project_name("/opt/NL-BIOMERO", {}) == "nl-biomero"
    assert compose.project_name("/opt/x", {"COMPOSE_PROJECT_NAME": "My.Site 2"}) == "mysite2"


def _labels(project, service, working_dir):
    return {compose.PROJECT: project, compose.SERVICE: service, compose.WORKING_DIR: working_dir}


def test_service_container_finds_v1_or_v2_name():
    containers = {"nl-biomero_database_1": _labels("nl-biomero", "database", "/opt/a"),
                  "nl-biomero_database-biomero_1": _labels("nl-biomero", "database-biomero", "/opt/a"),
                  "other": {}}
    assert compose.service_container(containers, "nl-biomero", "database", "/opt/a") == "nl-biomero_database_1"
    v2 = {"nl-biomero-database-1": _labels("nl-biomero", "database", "/opt/a")}
    assert compose.service_container(v2, "nl-biomero", "database") == "nl-biomero-database-1"
    assert compose.service_container(containers, "nl-biomero", "metabase") is None


def test_two_projects_claiming_a_container_is_an_error():
    containers = {"nl-biomero_database_1": _labels("nl-biomero", "database", "/opt/a"),
                  "nl-biomero-database-1": _labels("nl-biomero", "database", "/srv/b")}
    with pytest.raises(ComposeError, match="two compose projects claim service database.*/opt/a and /srv/b"):
        compose.service_container(containers, "nl-biomero", "database")
    with pytest.raises(ComposeError, match="made by the compose project in /opt/a, not by /opt/c"):
        compose.service_container({"x": _labels("p", "database", "/opt/a")}, "p", "database", "/opt/c")


# ---- .env


def test_parse_env_like_python_dotenv():
    env = compose.parse_env(ENV + "EMPTY=\nNOVALUE\nLIT='${BIOMERO_POSTGRES_USER}'\n"
                            "DEF=${UNSET:-fallback}\nESC=\"a\\nb\\\\c\"\nHASH=a#b\n")
    assert env["POSTGRES_PASSWORD"] == 's3cr$t "x"'
    assert env["BIOMERO_POSTGRES_DB"] == "biomero_db"
    assert env["BIOMERO_POSTGRES_PASSWORD"] == "pa ss"
    assert env["EMPTY"] == ""
    assert env["NOVALUE"] is None
    assert env["LIT"] == "${BIOMERO_POSTGRES_USER}"
    assert env["DEF"] == "fallback"
    assert env["ESC"] == "a\nb\\c"
    assert env["HASH"] == "a#b"


def test_parse_env_bad_line_names_it_not_the_value():
    with pytest.raises(ComposeError, match=r"\.env line 2 cannot be read.*QUOTED") as err:
        compose.parse_env("A=1\nQUOTED='secret\n")
    assert "secret" not in str(err.value)
    with pytest.raises(ComposeError, match="line 1"):
        compose.parse_env("this is not an assignment\n")


# ---- interpolation


@pytest.mark.parametrize("value, expected", [
    ("${A}", "a"), ("$A-x", "a-x"), ("${E:-d}", "d"), ("${E-d}", ""), ("${U:-d}", "d"), ("${U-d}", "d"),
    ("$${A}", "${A}"), ("pre${A}post", "preapost"), (5, 5),
])
def test_interpolate(value, expected):
    assert compose.interpolate(value, {"A": "a", "E": ""}, "here") == expected


def test_interpolate_missing_variable_names_it():
    with pytest.raises(ComposeError, match=r"environment X uses \$\{NOPE\}, which the project's .env does not set"):
        compose.interpolate("${NOPE}", {}, "environment X")
    with pytest.raises(ComposeError, match="set it please"):
        compose.interpolate("${NOPE:?set it please}", {}, "w")
    with pytest.raises(ComposeError, match="invalid interpolation"):
        compose.interpolate("${bad name}", {}, "w")


# ---- files compose loads


def test_config_files_default_override_and_compose_file(tmp_path):
    d = "/p"
    assert compose.config_files(d, {}, {"docker-compose.yml", "compose.yaml"}) == ["/p/docker-compose.yml"]
    assert compose.config_files(d, {}, {"compose.yaml", "compose.override.yml", "docker-compose.override.yml"}) == [
        "/p/compose.yaml", "/p/docker-compose.override.yml"]
    assert compose.config_files(d, {"COMPOSE_FILE": "a.yml:sub/b.yml:/abs/c.yml"}, set()) == [
        "/p/a.yml", "/p/sub/b.yml", "/abs/c.yml"]
    assert compose.config_files(d, {"COMPOSE_FILE": "a.yml;b.yml", "COMPOSE_PATH_SEPARATOR": ";"}, set()) == [
        "/p/a.yml", "/p/b.yml"]
    with pytest.raises(ComposeError, match="/p has no compose file"):
        compose.config_files(d, {}, {"README"})


def test_merge_services_later_files_win():
    merged = compose.merge_services([
        ("/p/a.yml", yaml.safe_load(PLATFORM)),
        ("/p/b.yml", {"services": {"database": {"image": "postgres:17", "environment": ["POSTGRES_DB=x"],
                                                "volumes": ["v2:/var/lib/postgresql/data"], "env_file": "db.env"}}}),
    ])
    db = merged["database"]
    assert db["image"] == "postgres:17"
    assert db["environment"]["POSTGRES_DB"] == "x"
    assert db["environment"]["POSTGRES_USER"] == "${POSTGRES_USER:-omero}"
    assert db["volumes"] == ["v2:/var/lib/postgresql/data"]
    assert db["env_file"] == ["/p/db.env"]
    assert compose.volume_target({"type": "volume", "source": "v", "target": "/d"}) == "/d"
    assert compose.volume_target("/only") == "/only"


# ---- credentials


def test_service_credentials_of_the_platform(tmp_path):
    proj = compose.read_project(project(tmp_path))
    assert proj["version"] == "3.8"
    assert proj["name"] == compose.project_name(str(tmp_path), {})
    assert compose.service_credentials(proj, "database") == {
        "user": "omero", "database": "omero", "password": 's3cr$t "x"'}
    assert compose.service_credentials(proj, "database-biomero") == {
        "user": "biomero", "database": "biomero_db", "password": "pa ss"}
    # the image's own defaults when the service sets nothing
    assert compose.service_credentials(proj, "omeroserver") == {
        "user": "postgres", "database": "postgres", "password": None}


def test_env_file_then_environment(tmp_path):
    text = "services:\n  db:\n    image: p\n    env_file: [db.env]\n    environment:\n      POSTGRES_DB: $${X}\n"
    (tmp_path / "db.env").write_text("POSTGRES_USER=fromfile\nPOSTGRES_DB=overridden\n")
    proj = compose.read_project(project(tmp_path, {"compose.yaml": text}, env=None))
    assert compose.service_credentials(proj, "db") == {"user": "fromfile", "database": "${X}", "password": None}


def test_bad_projects_name_what_is_missing(tmp_path):
    with pytest.raises(ComposeError, match="has no compose file"):
        compose.read_project(project(tmp_path, {"README": "x"}))
    with pytest.raises(ComposeError, match="does not exist"):
        compose.read_project(str(tmp_path / "nope"))
    proj = compose.read_project(project(tmp_path))
    with pytest.raises(ComposeError, match="has no service databse .it has database, database-biomero, omeroserver"):
        compose.service_credentials(proj, "databse")
    (tmp_path / ".env").write_text("BIOMERO_POSTGRES_USER=b\nBIOMERO_POSTGRES_DB=b\n")
    proj = compose.read_project(str(tmp_path))
    with pytest.raises(ComposeError, match=r"POSTGRES_PASSWORD of service database-biomero uses "
                                           r"\$\{BIOMERO_POSTGRES_PASSWORD\}"):
        compose.service_credentials(proj, "database-biomero")
    (tmp_path / "docker-compose.yml").write_text("database:\n  image: x\n")
    with pytest.raises(ComposeError, match="compose file format 1"):
        compose.read_project(str(tmp_path))


# ---- the override (pure)


CHANGE = {"image": "nl-biomero/postgres:17", "volume": "p_database-pg17", "target": "/var/lib/postgresql/data"}
ARGS = {"image": CHANGE["image"], "volume": CHANGE["volume"], "data_dir": CHANGE["target"]}


def test_override_data_adds_and_removes_per_service():
    one = compose.override_data({}, "3.8", "database", CHANGE)
    assert one == {"version": "3.8",
                   "services": {"database": {"image": "nl-biomero/postgres:17",
                                             "volumes": ["p_database-pg17:/var/lib/postgresql/data"]}},
                   "volumes": {"p_database-pg17": {"external": True}}}
    two = compose.override_data(one, "3.8", "database-biomero",
                                dict(CHANGE, volume="p_database-biomero-pg17"))
    assert sorted(two["services"]) == ["database", "database-biomero"]
    assert sorted(two["volumes"]) == ["p_database-biomero-pg17", "p_database-pg17"]
    back = compose.override_data(two, "3.8", "database-biomero", None)
    assert back == one
    assert compose.override_data(back, "3.8", "database", None) == {}
    assert "version" not in compose.override_data({}, None, "db", {"image": "x"})


def test_override_text_is_marked_and_remembers_compose_file():
    data = compose.override_data({}, "3.8", "database", CHANGE)
    text = compose.override_text(data, "a.yml:b.yml")
    assert text.startswith(compose.MARKER)
    assert compose.read_own(text) == (data, "a.yml:b.yml", {})
    assert compose.read_own(compose.override_text(data, None, {"database": "p_database"})) == (
        data, None, {"database": "p_database"})
    with pytest.raises(ComposeError):
        compose.read_own("services: {}\n")


def test_env_value_and_compose_file_lists():
    text = "# c\nA=1\nCOMPOSE_FILE=x.yml\nB=2\n"
    assert compose.set_env_value(text, "COMPOSE_FILE", "x.yml:o.yml") == "# c\nA=1\nCOMPOSE_FILE=x.yml:o.yml\nB=2\n"
    assert compose.set_env_value(text, "COMPOSE_FILE", None) == "# c\nA=1\nB=2\n"
    assert compose.set_env_value("A=1", "C", "3") == "A=1\nC=3\n"
    assert compose.set_env_value("", "C", "3") == "C=3\n"
    assert compose.compose_file_with(None, ["/p/docker-compose.yml", "/p/docker-compose.override.yml"], "o.yml") == \
        "docker-compose.yml:docker-compose.override.yml:o.yml"
    assert compose.compose_file_with("a.yml;b.yml", [], "o.yml", ";") == "a.yml;b.yml;o.yml"
    assert compose.compose_file_without("a.yml:o.yml", "o.yml") == "a.yml"
    assert compose.compose_file_without("o.yml", "o.yml") is None
    assert compose.own_file({"docker-compose.yml"}, False) == "docker-compose.override.yml"
    assert compose.own_file({"docker-compose.yml"}, True) == "docker-compose.nl-biomero.yml"
    assert compose.own_file({"docker-compose.yml", "compose.override.yaml"}, False) == "docker-compose.nl-biomero.yml"


# ---- the hand-back on a project directory


def _files(path):
    return sorted(name for name in os.listdir(path))


def test_handback_writes_the_default_override_and_removes_it(tmp_path):
    d = project(tmp_path)
    check = compose.Handback(d, "database", **ARGS).run(check_mode=True)
    assert check["changed"] and _files(d) == [".env", "docker-compose.yml"]
    assert check["compose_files"] == [d + "/docker-compose.yml", d + "/docker-compose.override.yml"]
    done = compose.Handback(d, "database", **ARGS).run()
    assert done["changed"] and done["backups"] == [] and done["file"] == d + "/docker-compose.override.yml"
    text = (tmp_path / "docker-compose.override.yml").read_text()
    assert text == check["diff"][0]["after"]
    assert yaml.safe_load(text)["services"]["database"]["image"] == "nl-biomero/postgres:17"
    assert (tmp_path / ".env").read_text() == ENV
    assert not compose.Handback(d, "database", **ARGS).run()["changed"]
    # the volume the project's own files give the service is remembered (a rollback checks it is there)
    assert compose.Handback(d, "database", previous_volume="p_database", **ARGS).run()["changed"]
    assert not compose.Handback(d, "database", **ARGS).run()["changed"]
    assert compose.Handback(d, "database", state="absent").run(check_mode=True)["previous_volume"] == "p_database"
    # a second upgrade keeps the volume of the project's own files
    compose.Handback(d, "database", image=ARGS["image"], volume="p_database-pg18", data_dir=ARGS["data_dir"],
                     previous_volume="p_database-pg17").run()
    assert compose.Handback(d, "database", state="absent").run(check_mode=True)["previous_volume"] == "p_database"
    gone = compose.Handback(d, "database", state="absent").run()
    assert gone["changed"] and len(gone["backups"]) == 1 and gone["backups"][0].startswith(
        d + "/docker-compose.override.yml.nlb-backup-")
    assert [n for n in _files(d) if "backup" not in n] == [".env", "docker-compose.yml"]
    assert not compose.Handback(d, "database", state="absent").run()["changed"]


def test_handback_beside_a_users_override_uses_compose_file(tmp_path):
    user = "services:\n  omeroserver:\n    restart: always\n"
    d = project(tmp_path, {"docker-compose.yml": PLATFORM, "docker-compose.override.yml": user})
    done = compose.Handback(d, "database", **ARGS).run()
    assert done["file"] == d + "/docker-compose.nl-biomero.yml"
    assert (tmp_path / "docker-compose.override.yml").read_text() == user
    env = compose.parse_env((tmp_path / ".env").read_text())
    assert env["COMPOSE_FILE"] == "docker-compose.yml:docker-compose.override.yml:docker-compose.nl-biomero.yml"
    assert done["compose_files"] == [d + "/docker-compose.yml", d + "/docker-compose.override.yml",
                                     d + "/docker-compose.nl-biomero.yml"]
    assert [b.split("/")[-1].split(".nlb-backup-")[0] for b in done["backups"]] == [".env"]
    compose.Handback(d, "database-biomero", image="nl-biomero/postgres:17", volume="p_b-pg17").run()
    assert compose.Handback(d, "database", state="absent").run()["changed"]
    assert "COMPOSE_FILE" in (tmp_path / ".env").read_text()
    compose.Handback(d, "database-biomero", state="absent").run()
    assert (tmp_path / ".env").read_text() == ENV
    assert not (tmp_path / "docker-compose.nl-biomero.yml").exists()


def test_handback_keeps_a_compose_file_set_before(tmp_path):
    env = ENV + "COMPOSE_FILE=docker-compose.yml:extra.yml\n"
    d = project(tmp_path, {"docker-compose.yml": PLATFORM, "extra.yml": "version: '3.8'\nservices: {}\n"}, env=env)
    compose.Handback(d, "database", **ARGS).run()
    assert compose.parse_env((tmp_path / ".env").read_text())["COMPOSE_FILE"] == \
        "docker-compose.yml:extra.yml:docker-compose.nl-biomero.yml"
    assert not (tmp_path / "docker-compose.override.yml").exists()
    compose.Handback(d, "database", state="absent").run()
    assert (tmp_path / ".env").read_text() == env


def test_handback_refuses_what_it_cannot_do_and_changes_nothing(tmp_path):
    d = project(tmp_path)
    with pytest.raises(ComposeError, match="has no service nope"):
        compose.Handback(d, "nope", **ARGS).run()
    with pytest.raises(ComposeError, match="needs an image or a volume"):
        compose.Handback(d, "database")
    with pytest.raises(ComposeError, match=r"mounts database:/var/lib/postgresql/data, "
                                           r"logs:/var/lib/postgresql/data/logs inside the new data directory"):
        (tmp_path / "docker-compose.yml").write_text(PLATFORM.replace(
            '- "database:/var/lib/postgresql/data"',
            '- "database:/var/lib/postgresql/data"\n      - "logs:/var/lib/postgresql/data/logs"'))
        compose.Handback(d, "database", image=ARGS["image"], volume=ARGS["volume"], data_dir="/var/lib/postgresql").run()
    assert _files(d) == [".env", "docker-compose.yml"]
    # the page's log directory inside the data directory stays when the data mount is replaced in place
    assert compose.Handback(d, "database", **ARGS).run(check_mode=True)["changed"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_handback_refuses_a_read_only_project(tmp_path):
    d = project(tmp_path)
    os.chmod(d, 0o555)
    try:
        with pytest.raises(ComposeError, match="not writable"):
            compose.Handback(d, "database", **ARGS).run(check_mode=True)
    finally:
        os.chmod(d, 0o755)


# ---- what an upgrade of a compose-made container checks first


def _made_by(d, project="p", files=None):
    return {compose.PROJECT: project, compose.SERVICE: "database", compose.WORKING_DIR: d,
            compose.CONFIG_FILES: ",".join(files or [d + "/docker-compose.yml"])}


def test_upgrade_problems_pass_and_name_what_is_missing(tmp_path):
    d = project(tmp_path, env=ENV + "COMPOSE_PROJECT_NAME=p\n")
    assert compose.upgrade_problems({}, "x", "v", "/d") == (None, [])
    seen, problems = compose.upgrade_problems(_made_by(d), "nl-biomero/postgres:17", "p_database-pg17",
                                              "/var/lib/postgresql/data")
    assert problems == [] and seen["service"] == "database" and seen["data_dir"] == "/var/lib/postgresql/data"
    assert _files(d) == [".env", "docker-compose.yml"]
    _found, problems = compose.upgrade_problems(_made_by(d, project="q"), "i", "v", "/var/lib/postgresql/data")
    assert problems == ["compose project q (service database): %s is project p for docker-compose "
                        "(COMPOSE_PROJECT_NAME or its name), not q (docker-compose -p?); set "
                        "COMPOSE_PROJECT_NAME=q in its .env" % d]
    _found, problems = compose.upgrade_problems(_made_by(d, files=[d + "/other.yml"]), "i", "v", "/var/lib/postgresql/data")
    assert "made with compose file(s) %s/other.yml" % d in problems[0]
    _found, problems = compose.upgrade_problems(_made_by(str(tmp_path / "gone")), "i", "v", "/d")
    assert problems == ["compose project p (service database): compose project directory %s/gone does not exist"
                        % tmp_path]
    labels = _made_by(d)
    del labels[compose.WORKING_DIR]
    assert "do not name the project directory" in compose.upgrade_problems(labels, "i", "v", "/d")[1][0]


def test_handed_back(tmp_path):
    d = project(tmp_path)
    assert not compose.handed_back(d, "database")
    compose.Handback(d, "database", **ARGS).run()
    assert compose.handed_back(d, "database") and not compose.handed_back(d, "database-biomero")
    (tmp_path / "docker-compose.override.yml").write_text("services: {database: {image: mine}}\n")
    assert not compose.handed_back(d, "database")
