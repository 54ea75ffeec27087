# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure rules of the logical upgrade strategy (module_utils/logical.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import logical


def test_subscription_names_are_slot_names_and_unique():
    names = logical.subscription_names(["omero", "OMERO", "my-db ü", "x" * 80, ""])
    assert names["omero"] == "nlb_upgrade_omero"
    assert names["OMERO"] == "nlb_upgrade_omero_2"
    assert names["my-db ü"] == "nlb_upgrade_my_db__"
    assert names[""] == "nlb_upgrade_db"
    for name in names.values():
        assert len(name) <= 63 and all(c.isdigit() or c == "_" or "a" <= c <= "z" for c in name)
    assert len(set(names.values())) == 5


def test_conninfo_quotes_every_value_and_names_itself():
    info = logical.conninfo("db-old", "5432", "it's", "omero", "p'w\\ x")
    assert info == ("host='db-old' port='5432' dbname='it\\'s' user='omero' application_name='nlb_upgrade' "
                    "password='p\\'w\\\\ x'")
    assert "password" not in logical.conninfo("h", 5432, "d", "u")


def test_lsn_orders_like_the_server():
    assert logical.lsn_int("0/1D045B0") < logical.lsn_int("0/1D045B1") < logical.lsn_int("1/0")
    assert logical.lsn_int("16/B374D848") == (0x16 << 32) + 0xB374D848


def test_catalog_changes_name_the_objects():
    before = {"omero": {"table public.image": "a", "index public.i": "b", "table public.gone": "c"}}
    after = {"omero": {"table public.image": "A", "index public.i": "b", "table public.new": "d"}}
    assert logical.catalog_changes(before, after) == [
        "omero: dropped table public.gone", "omero: changed table public.image", "omero: new table public.new"]
    assert logical.catalog_changes(before, before) == []


def test_setval_script_keeps_is_called():
    script = logical.setval_script([["public.\"we'ird\"", 4242, True], ["s.never", 7, False]])
    assert script == ("SELECT setval('public.\"we''ird\"'::regclass, 4242, true);\n"
                      "SELECT setval('s.never'::regclass, 7, false);\n")


def test_large_objects_dump_selects_no_schema():
    argv = logical.large_objects_dump_argv("omero")
    assert "-b" in argv and "--schema=pg_catalog" in argv and "--exclude-schema=pg_catalog" in argv


def test_scrub_hides_the_password():
    assert logical.scrub("password='s3cret' failed", "s3cret") == "password='********' failed"
    assert logical.scrub("text", None) == "text"


def test_sync_slot_pattern_needs_the_subscriber():
    assert logical.sync_slot_pattern("7412345") == "^pg_[0-9]+_sync_[0-9]+_7412345$"
    assert logical.sync_slot_pattern(None) == "^pg_[0-9]+_sync_[0-9]+_nlb_none$"
    with pytest.raises(ValueError):
        logical.sync_slot_pattern("1; DROP")


FOUND = {"wal_level": "logical", "max_replication_slots": 10, "max_wal_senders": 10, "slots_in_use": 0,
         "senders_in_use": 0, "databases": ["omero"], "unfit": [], "large_objects": {"count": 2, "bytes": 9}}


def test_preflight_passes_a_ready_server():
    problems, plan = logical.preflight_problems(FOUND, {})
    assert problems == []
    assert plan == {"prepare_restart": False, "replica_identity_full": [], "large_objects": {"count": 2, "bytes": 9}}


def test_preflight_wal_level():
    found = dict(FOUND, wal_level="replica")
    problems, plan = logical.preflight_problems(found, {})
    assert len(problems) == 1 and "wal_level is replica" in problems[0]
    assert "postgres_upgrade_logical_prepare" in problems[0]
    problems, plan = logical.preflight_problems(found, {}, prepare=True)
    assert problems == [] and plan["prepare_restart"] is True
    # set on the command line: ALTER SYSTEM cannot win, even with prepare
    problems, plan = logical.preflight_problems(found, {"wal_level": "replica"}, prepare=True)
    assert len(problems) == 1 and "-c wal_level=replica" in problems[0] and not plan["prepare_restart"]


def test_preflight_slots_and_senders():
    found = dict(FOUND, databases=["omero", "postgres"], max_replication_slots=6, slots_in_use=1, max_wal_senders=5)
    problems, _plan = logical.preflight_problems(found, {})
    assert problems == [
        "max_replication_slots is 6 with 5 free; the logical copy of 2 database(s) needs 6 (one per database and 2 "
        "for its table copies)",
        "max_wal_senders is 5 with 5 free; the logical copy of 2 database(s) needs 6 (one per database and 2 for "
        "its table copies)"]


def test_preflight_tables_without_identity_and_unlogged():
    found = dict(FOUND, unfit=[("omero: public.nopk", "no_identity"), ("omero: public.scratch", "unlogged")])
    problems, plan = logical.preflight_problems(found, {})
    assert len(problems) == 2
    assert "unlogged table(s) omero: public.scratch" in problems[0]
    assert "without a primary key or replica identity omero: public.nopk" in problems[1]
    problems, plan = logical.preflight_problems(found, {}, identity_full=True)
    assert len(problems) == 1 and "unlogged" in problems[0]
    assert plan["replica_identity_full"] == ["omero: public.nopk"]
