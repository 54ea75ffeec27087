"""Pure rules of a test stack: names, ports, settings, connection files, the sweep."""

import random
import subprocess

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import labels
from ansible_collections.nl_biomero.database.plugins.module_utils import stack_rules as rules
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError


@pytest.mark.parametrize("name", ["pr-1234", "a", "nlbtest-stk-1a2b", "Build_7.main", "x" * 48])
def test_valid_names(name):
    assert rules.check_name(name) == name


@pytest.mark.parametrize("name", ["", "-pr", ".x", "pr 1", "pr/1", "pr:1", "é", "x" * 49, None, 12, "a;rm -rf"])
def test_invalid_names_say_value_and_rule(name):
    with pytest.raises(rules.StackError) as err:
        rules.check_name(name)
    assert repr(name) in str(err.value)
    assert "letters, digits" in str(err.value)
    assert isinstance(err.value, NlbError)


def test_resource_names_are_prefixed():
    names = rules.resource_names("pr-1")
    assert names == {"network": "pr-1-net",
                     "containers": {"omero": "pr-1-omero-db", "biomero": "pr-1-biomero-db"},
                     "volumes": {"omero": "pr-1-omero-data", "biomero": "pr-1-biomero-data"}}


def test_labels():
    assert rules.stack_labels("pr-1", 1700000000.7) == {labels.STACK: "pr-1", labels.STACK_CREATED: "1700000000"}
    assert labels.STACK == "nl-biomero.database.stack"


@pytest.mark.parametrize("value,expected", [(None, None), (0, 0), ("5433", 5433), (65535, 65535)])
def test_ports(value, expected):
    assert rules.check_port(value, "omero_port") == expected


@pytest.mark.parametrize("value", [-1, 65536, "abc", True, 1.5e9])
def test_bad_ports(value):
    with pytest.raises(rules.StackError) as err:
        rules.check_port(value, "omero_port")
    assert "omero_port %r" % (value,) in str(err.value)


def test_publish_args():
    assert rules.publish_args("127.0.0.1", None) == []
    assert rules.publish_args("127.0.0.1", 0) == ["-p", "127.0.0.1::5432"]
    assert rules.publish_args("0.0.0.0", 15432) == ["-p", "0.0.0.0:15432:5432"]


def test_parse_port():
    assert rules.parse_port("127.0.0.1:49153\n") == 49153
    assert rules.parse_port("0.0.0.0:5433\n[::]:5433\n") == 5433
    assert rules.parse_port("") is None


def test_server_command():
    assert rules.server_command(True) == ["postgres", "-c", "fsync=off", "-c", "full_page_writes=off",
                                          "-c", "synchronous_commit=off"]
    assert rules.server_command(False) == ["postgres"]
    # Explicit settings win over the ephemeral ones.
    assert rules.server_command(True, {"fsync": "on", "max_connections": 50}) == [
        "postgres", "-c", "fsync=on", "-c", "full_page_writes=off", "-c", "max_connections=50",
        "-c", "synchronous_commit=off"]


def test_generated_passwords():
    first = rules.generate_password(rng=random.Random(1))
    assert len(first) == 24 and first.isalnum()
    assert rules.generate_password() != rules.generate_password()


def _details(password="p@ss w'rd"):
    instances = {
        "omero": dict(container="s-omero-db", user="omero", database="omero", password=password,
                      host="127.0.0.1", port=32768),
        "biomero": dict(container="s-biomero-db", user="biomero", database="biomero", password=password,
                        host="127.0.0.1", port=32769),
    }
    return rules.connection_details("s", "s-net", True, 1700000000, instances)


def test_connection_details():
    details = _details("secret")
    assert details["omero"]["omero_config"] == {
        "omero.db.host": "127.0.0.1", "omero.db.port": "32768", "omero.db.name": "omero",
        "omero.db.user": "omero", "omero.db.pass": "secret"}
    assert details["biomero"]["sqlalchemy_url"] == "postgresql+psycopg2://biomero:secret@127.0.0.1:32769/biomero"
    assert details["biomero"]["network_sqlalchemy_url"] == (
        "postgresql+psycopg2://biomero:secret@database-biomero:5432/biomero")
    assert details["omero"]["network_host"] == "database"


def test_url_quotes_password():
    url = _details("p@ss w/rd:%")["biomero"]["sqlalchemy_url"]
    assert url == "postgresql+psycopg2://biomero:p%40ss%20w%2Frd%3A%25@127.0.0.1:32769/biomero"


def test_dotenv_is_sourced_by_sh_exactly():
    hostile = "p@ss w'rd \"$HOME\" `id` $(id) \\"
    text = rules.dotenv_text(_details(hostile))
    out = subprocess.run(["sh", "-c", 'set -a; . /dev/stdin; printf "%s|%s|%s" "$OMERO_DB_PASSWORD" '
                          '"$CONFIG_omero_db_pass" "$BIOMERO_DB_PORT"'],
                         input=text, capture_output=True, text=True, check=True).stdout
    assert out == "%s|%s|32769" % (hostile, hostile)
    keys = [line.split("=", 1)[0] for line in text.splitlines()]
    assert len(keys) == len(set(keys))
    assert "INGEST_TRACKING_DB_URL" in keys and "BIOMERO_DB_URL" in keys


NOW = 1700000000


@pytest.mark.parametrize("stamps,hours,expected", [
    ({"old": [str(NOW - 7 * 3600)], "new": [str(NOW - 3600)]}, 6, ["old"]),
    ({"old": [str(NOW - 7 * 3600), str(NOW)]}, 6, ["old"]),            # earliest label counts
    ({"b": [str(NOW - 9 * 3600)], "a": [str(NOW - 8 * 3600)]}, 1, ["b", "a"]),  # oldest first
    ({"nolabel": [None, "garbage"]}, 0, []),                               # unreadable: left alone
    ({"bad name": [str(NOW - 99 * 3600)]}, 1, []),                         # not one of ours
    ({"x": [str(NOW)]}, 0, ["x"]),
])
def test_sweep_selection(stamps, hours, expected):
    assert rules.stacks_to_sweep(stamps, NOW, hours) == expected


@pytest.mark.parametrize("hours", [-1, None])
def test_sweep_bad_max_age(hours):
    with pytest.raises(rules.StackError) as err:
        rules.stacks_to_sweep({}, NOW, hours)
    assert "max_age %r" % (hours,) in str(err.value)


def test_seed_cache_key_changes_with_every_input():
    base = ("sha256:aa", "omero", "omero", ("/x.pg_dump", 10, 1.5))
    key = rules.seed_cache_key(*base)
    assert key == rules.seed_cache_key(*base) and len(key) == 32
    for index, other in enumerate(["sha256:bb", "u2", "db2", ("/x.pg_dump", 11, 1.5)]):
        changed = list(base)
        changed[index] = other
        assert rules.seed_cache_key(*changed) != key


def test_cached_start_args():
    args = rules.cached_start_args("/c/omero-k.tar", "img:17", ["postgres", "-c", "fsync=off"])
    assert args[:4] == ["-v", "/c/omero-k.tar:/nlb-seed.tar:ro", "--entrypoint", "sh"]
    assert args[4:6] == ["img:17", "-c"] and args[7:] == ["sh", "postgres", "-c", "fsync=off"]
    assert "exec docker-entrypoint.sh \"$@\"" in args[6]


def test_alter_password_sql_quotes():
    assert rules.alter_password_sql('a"b', "it's") == 'ALTER ROLE "a""b" PASSWORD \'it\'\'s\';\n'
