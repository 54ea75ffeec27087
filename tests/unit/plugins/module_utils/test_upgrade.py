# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import labels
from ansible_collections.nl_biomero.database.plugins.module_utils import upgrade, write_fence
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine
from ansible_collections.nl_biomero.database.plugins.module_utils.upgrade_plan import UpgradeError

from ansible_collections.nl_biomero.database.tests.unit.plugins.module_utils.test_upgrade_plan import (
    OLD_CONTAINER, OLD_IMAGE)


def test_pipe_dump_argv_quotes_the_database():
    argv = upgrade.pipe_dump_argv("it's")
    assert argv[:3] == ["pg_dump", "--format=custom", "--compress=0"]
    assert argv[-1] == "--dbname=dbname='it\\'s'"


# ---- Preflight decisions with a scripted engine (no engine, no server).

class _Engine:
    """A scripted ContainerEngine: containers, images, volumes and what throwaway runs print."""
    binary = "docker"

    def __init__(self, containers, images, existing=(), extensions="pg_trgm.control plpgsql.control",
                 settings="work_mem\tx\n"):
        self.containers = containers
        self.images = images
        self.existing = existing
        self.extensions = extensions
        self.settings = settings
        self.throwaways = []
        self.elsewhere = ()

    def inspect(self, name):
        if name in self.existing:
            return {}
        return self.containers.get(name)

    def image_inspect(self, reference):
        return self.images.get(reference)

    missing = ContainerEngine.missing
    other_engine_refusal = ContainerEngine.other_engine_refusal

    def other_engine_having(self, container):
        return "podman" if container in self.elsewhere else None

    def volume_inspect(self, name):
        return {} if name in self.existing else None

    def image_of(self, info):
        return info["Config"]["Image"]

    def storage_root(self):
        return "/var/lib/docker"

    def run_throwaway(self, image, command=(), purpose=None, entrypoint=None, user=None):
        self.throwaways.append((image, entrypoint, list(command), purpose, user))
        if entrypoint == "ls":
            return 0, self.extensions, ""
        return 0, self.settings, ""


class _Pg:
    def __init__(self, extensions=("plpgsql", "pg_trgm"), tablespaces=()):
        self.extensions = extensions
        self.tablespaces = tablespaces

    def server_version_num(self):
        return 150010

    def server_version(self):
        return "15.10"

    def query(self, sql, database=None):
        if sql == upgrade.SQL_DATABASES:
            return [["omero", "1000", "omero"], ["postgres", "100", "omero"]]
        if sql == upgrade.SQL_EXTENSIONS:
            return [[e] for e in self.extensions] if database == "omero" else [["plpgsql"]]
        if sql == upgrade.SQL_TABLESPACES:
            return [[name] for name in self.tablespaces]
        raise AssertionError(sql)

    def scalar(self, sql, database=None):
        return "0" if database == "postgres" else "12"


class _Stat:
    f_bavail = 10 ** 9
    f_frsize = 4096
    st_dev = 1


def _preflight(images=None, existing=(), pg=None, change=None, **kwargs):
    info = json.loads(json.dumps(OLD_CONTAINER))
    info["State"] = {"Running": True}
    if change:
        change(info)
    containers = {"database": info, "omeroserver": {"State": {"Status": "running"}}}
    images = images if images is not None else {
        "postgres:17": {"Config": {"Env": ["PG_MAJOR=17"]}}, "sha256:old": OLD_IMAGE}
    checker = upgrade.Preflight(_Engine(containers, images, existing, **kwargs),
                                lambda: pg or _Pg(), lambda path: _Stat(), lambda path: _Stat())
    return checker


def test_preflight_plans_an_upgrade():
    result = _preflight().run_checks("database", "postgres:17", dump_dir="/tmp", clients=["omeroserver"])
    assert result["action"] == "upgrade" and result["problems"] == []
    assert (result["current_major"], result["target_major"]) == (15, 17)
    assert result["old_name"] == "database-pg15" and result["new_volume"] == "database-pg17"
    assert result["empty_databases"] == ["postgres"]
    assert result["spec"]["labels"][labels.UPGRADE_PREVIOUS_CONTAINER] == "database-pg15"
    assert result["spec"]["labels"][labels.INSTANCE_MAJOR] == "17"
    assert result["clients"] == {"omeroserver": "running"}
    # 15 -> 17: the new volume goes where the old one was.
    assert result["spec"]["mounts"][-1] == {"type": "volume", "source": "database-pg17",
                                            "target": "/var/lib/postgresql/data", "read_only": False}


def test_preflight_runs_the_target_image_in_labelled_throwaways():
    checker = _preflight()
    checker.run_checks("database", "postgres:17")
    assert [(entrypoint, purpose) for _image, entrypoint, _cmd, purpose, _user in checker.engine.throwaways] == [
        ("ls", "upgrade-preflight"), ("postgres", "upgrade-preflight")]


def test_preflight_reads_the_target_major_from_postgres_version():
    checker = _preflight(images={"postgres:17": {"Config": {"Env": []}}, "sha256:old": OLD_IMAGE},
                         settings="postgres (PostgreSQL) 17.6 (Debian 17.6-1.pgdg13+1)\n")
    result = checker.run_checks("database", "postgres:17", check_settings=False, check_extensions=False)
    assert result["target_major"] == 17 and result["action"] == "upgrade"


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
                     "client container 'gone' does not exist in docker"):
        assert expected in text


def test_preflight_names_the_other_engine_of_a_container_named_by_mistake():
    checker = _preflight()
    checker.engine.elsewhere = ("omero-server", "elsewhere")
    text = " | ".join(checker.run_checks("database", "postgres:17", clients=["omero-server"])["problems"])
    assert "client container 'omero-server' does not exist in docker; a container 'omero-server' exists in podman" in text
    with pytest.raises(UpgradeError, match="container 'elsewhere' does not exist in docker; a container 'elsewhere' "
                                           "exists in podman: the engine is docker.*nothing was changed"):
        checker.run_checks("elsewhere", "postgres:17")


def test_preflight_refuses_what_the_new_container_could_not_keep():
    def change(info):
        info["HostConfig"]["AutoRemove"] = True
        info["HostConfig"]["CpuRealtimeRuntime"] = 950000
    result = _preflight(pg=_Pg(tablespaces=("fast",)), change=change).run_checks("database", "postgres:17")
    text = " | ".join(result["problems"])
    assert result["action"] == "fail" and len(result["problems"]) == 3
    for expected in ("tablespace(s) fast", "removed when it stops", "HostConfig.CpuRealtimeRuntime=950000"):
        assert expected in text


def test_preflight_warns_that_the_new_instance_archives_where_the_old_did():
    def change(info):
        info["Config"]["Cmd"] += ["-c", "archive_mode=on", "-c", "archive_command=cp %p /archive/%f"]
    result = _preflight(change=change, settings="work_mem\tx\narchive_mode\tx\narchive_command\tx\n").run_checks(
        "database", "postgres:17")
    assert result["problems"] == [] and "archive" in " ".join(result["warnings"])
    assert result["spec"]["staging"]["command"] == ["postgres", "-c", "work_mem=16MB", "-c", "archive_mode=off"]


# ---- Pipe through engine.pipe, with local commands standing in for the two execs.

class _LocalEngine:
    def __init__(self, command):
        self.command = command
        self.seen = []

    def exec_argv(self, container, command, env_names=(), interactive=False):
        self.seen.append((container, command[0], list(env_names), interactive))
        return list(self.command)


class _PipePg:
    """A PgContainer whose exec'd tools are scripted: pg_dump prints the properties fixture."""

    def __init__(self, container, command, databases=("omero",), settings=()):
        self.container = container
        self.engine = _LocalEngine(command)
        self.queries = []
        self.tools = []
        self._databases = list(databases)
        self.settings = list(settings)

    def databases(self):
        return self._databases

    def env(self, database):
        return {"PGDATABASE": database}

    def query(self, sql, database=None):
        if sql.startswith(write_fence.SQL_DATABASES):  # the fence's read: one JSON row
            return [[self.scalar(sql, database)]]
        self.queries.append((sql, database))
        return []

    def scalar(self, sql, database=None):
        self.queries.append((sql, database))
        if "pg_stat_activity" in sql:
            return "[]"
        return json.dumps([{"name": "omero", "connectable": True, "settings": self.settings}])

    def exec_tool(self, command, database=None, input_bytes=None, timeout=None):
        self.tools.append((command, (input_bytes or b"").decode("utf-8")))
        if command[0] == "pg_dump":
            return 0, PROPERTIES_SQL.replace('"om ero"', "omero").replace("om ero", "omero"), ""
        return 0, "2026-12-01 02:00:00+00\n", ""


with open(os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "database_properties.sql")) as _handle:
    PROPERTIES_SQL = _handle.read()


def test_pipe_streams_one_database_and_counts_bytes():
    source = _PipePg("old", ["sh", "-c", "head -c 3000000 /dev/zero"])
    target = _PipePg("new", ["sh", "-c", 'test "$PGOPTIONS" && cat >/dev/null'])
    moved = upgrade.Pipe(source, target).copy_database("omero", maintenance_work_mem="64MB")
    assert moved["database"] == "omero" and moved["bytes"] == 3000000
    assert source.engine.seen == [("old", "pg_dump", ["PGDATABASE"], False)]
    assert target.engine.seen == [("new", "pg_restore", ["PGDATABASE", "PGOPTIONS"], True)]
    assert ("ANALYZE", "omero") in target.queries


def test_pipe_applies_the_database_properties_after_the_data_in_one_transaction():
    source = _PipePg("old", ["sh", "-c", "head -c 10 /dev/zero"])
    target = _PipePg("new", ["sh", "-c", "cat >/dev/null"])
    moved = upgrade.Pipe(source, target).copy_database("omero")
    dump = source.tools[0][0]
    assert dump[:4] == ["pg_dump", "--create", "--schema-only", "--exclude-schema=*"]
    assert dump[-1] == "--dbname=dbname='omero'"
    (psql, script), = target.tools
    assert "--single-transaction" in psql
    assert script.splitlines() == [
        "SET standard_conforming_strings = on;",
        'ALTER DATABASE "omero" OWNER TO omero;',
        "COMMENT ON DATABASE \"omero\" IS 'OMERO''s db';",
        'ALTER DATABASE "omero" CONNECTION LIMIT = 50;',
        "ALTER DATABASE \"omero\" SET work_mem TO '12MB';",
        "ALTER DATABASE \"omero\" SET search_path TO '$user', 'public', 'we''ird';",
        "ALTER ROLE reader IN DATABASE \"omero\" SET statement_timeout TO '5s';",
    ] + script.splitlines()[7:]
    assert moved["properties"] == len(script.splitlines()) - 1
    assert target.queries[0] == ("ANALYZE", "omero")


def test_pipe_creates_a_missing_database_with_the_source_locale_then_lifts_a_carried_fence():
    fenced = ["default_transaction_read_only=on", "nl_biomero.write_fence=" + json.dumps({"previous": None})]
    source = _PipePg("old", ["true"])
    target = _PipePg("new", ["true"], databases=["postgres"], settings=fenced)
    moved = upgrade.Pipe(source, target).copy_properties("omero", owner="omero")
    create, properties, lift = [tool[1] for tool in target.tools]
    assert create == ("CREATE DATABASE \"omero\" WITH TEMPLATE = template0 ENCODING = 'UTF8' "
                      "LOCALE_PROVIDER = libc LOCALE = 'C.UTF-8' OWNER = \"omero\";")
    assert "ALTER DATABASE \"omero\" SET work_mem TO '12MB';" in properties
    assert 'ALTER DATABASE "omero" RESET default_transaction_read_only;' in lift
    assert 'ALTER DATABASE "omero" RESET "nl_biomero.write_fence";' in lift
    assert moved["properties"] == len(properties.splitlines()) - 1


@pytest.mark.parametrize("dump, restore, message", [
    ("echo dump broke >&2; exit 3", "cat >/dev/null", "pg_dump of omero in old failed (exit 3): dump broke"),
    ("head -c 100000 /dev/zero", "echo restore broke >&2; exit 1",
     "pg_restore of omero into new failed (exit 1): restore broke"),
])
def test_pipe_failures_name_the_tool_and_its_error(dump, restore, message):
    source = _PipePg("old", ["sh", "-c", dump])
    target = _PipePg("new", ["sh", "-c", restore])
    with pytest.raises(UpgradeError) as err:
        upgrade.Pipe(source, target).copy_database("omero")
    assert str(err.value) == message


def _count_only(counts, asked):
    def count(tables):
        asked.append(list(tables))
        return dict((table, counts[table]) for table in tables)
    return count


def test_settled_row_counts_keeps_the_counts_of_unchanged_tables_and_counts_the_changed_ones_again():
    counted = {"public.big": [1000000, "16384:1000000:0"], "public.hot": [10, "16390:12:2"],
               "public.truncated": [5, "16400:5:0"]}
    signatures = {"public.big": "16384:1000000:0",      # unchanged: its count holds
                  "public.hot": "16390:13:2",           # a row inserted since
                  "public.truncated": "16500:5:0",      # TRUNCATE: a new file node, same insert/delete counts
                  "public.new": "16600:0:0"}            # not counted before
    asked = []
    now = {"public.hot": 11, "public.truncated": 0, "public.new": 0}
    counts, again = upgrade.settled_row_counts(counted, signatures, _count_only(now, asked))
    assert counts == {"public.big": 1000000, "public.hot": 11, "public.truncated": 0, "public.new": 0}
    assert again == ["public.hot", "public.new", "public.truncated"]
    assert asked == [again]


def test_settled_row_counts_counts_again_a_table_without_a_signature_and_asks_nothing_when_all_hold():
    # None: partitioned, with children, or a server before 15 (its statistics may drop changes)
    counted = {"public.parent": [7, None], "public.t": [3, "1:3:0"]}
    asked = []
    counts, again = upgrade.settled_row_counts(counted, {"public.parent": None, "public.t": "1:3:0"},
                                               _count_only({"public.parent": 8}, asked))
    assert (counts, again) == ({"public.parent": 8, "public.t": 3}, ["public.parent"])
    asked = []
    counts, again = upgrade.settled_row_counts({"public.t": [3, "1:3:0"]}, {"public.t": "1:3:0"},
                                               _count_only({}, asked))
    assert (counts, again, asked) == ({"public.t": 3}, [], [])


def test_settled_row_counts_leaves_out_a_table_that_is_gone():
    # a dropped table is missing from the counts, so the comparison with the other cluster names it
    counts, again = upgrade.settled_row_counts({"public.gone": [4, "1:4:0"]}, {}, _count_only({}, []))
    assert (counts, again) == ({}, [])
