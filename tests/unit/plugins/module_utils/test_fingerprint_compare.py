# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""compare_fingerprints on database properties, roles and the write fence (the upgrade's verification)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import upgrade_plan as plan

PROPERTIES = {"owner": "omero", "encoding": "UTF8", "locale_provider": "c", "collate": "C.UTF-8", "ctype": "C.UTF-8",
              "locale": None, "icu_rules": None, "connection_limit": -1, "comment": "OMERO's db",
              "acl": ["omero=CONNECT/omero", "omero=CREATE/omero", "reader=CONNECT/omero"],
              "settings": ["work_mem=12MB"], "role_settings": {"reader": ["statement_timeout=5s"]}}
ROLE = {"attributes": {"superuser": False, "login": True, "connection_limit": -1, "valid_until": None},
        "settings": [], "member_of": [["pg_monitor", False]], "comment": None, "bootstrap": False,
        "password": "a" * 64}
BEFORE = {"databases": {"omero": {"tables": {"public.job": 3}, "sequences": {}, "smoke": {"job": 3},
                                  "write_fence": True, "properties": PROPERTIES}},
          "roles": ["omero", "reader"],
          "role_properties": {"omero": dict(ROLE, bootstrap=True, password="b" * 64), "reader": ROLE},
          "passwords_compared": True, "password_salt": "0123456789abcdef"}


def _after(change=None):
    after = copy.deepcopy(BEFORE)
    if change:
        change(after)
    return after


def test_equal_properties_make_no_difference():
    assert plan.compare_fingerprints(BEFORE, _after()) == []


def _prop(key, value):
    return lambda fp: fp["databases"]["omero"]["properties"].update({key: value})


def _role(key, value, role="reader"):
    return lambda fp: fp["role_properties"][role].update({key: value})


@pytest.mark.parametrize("change, expected", [
    (_prop("settings", []), "omero: database property settings: ['work_mem=12MB'] before, [] after"),
    (_prop("comment", None), "omero: database property comment: OMERO's db before, None after"),
    (_prop("acl", ["PUBLIC=CONNECT/omero"]), "omero: database property acl"),
    (_prop("role_settings", {}), "omero: database property role_settings"),
    (_prop("owner", "postgres"), "omero: database property owner: omero before, postgres after"),
    (_prop("collate", "en_US.UTF-8"), "omero: database property collate"),
    (_prop("connection_limit", 5), "omero: database property connection_limit: -1 before, 5 after"),
    (lambda fp: fp["databases"]["omero"].update(write_fence=False),
     "omero: the write fence (nl_biomero.write_fence) is up before, down after"),
    (_role("attributes", dict(ROLE["attributes"], superuser=True)), "role reader: attributes"),
    (_role("member_of", []), "role reader: member_of: [['pg_monitor', False]] before, [] after"),
    (_role("settings", ["search_path=x"]), "role reader: settings"),
    (_role("password", "c" * 64), "role reader: the password hash differs"),
    (_role("password", None), "role reader: the password hash is missing after"),
])
def test_each_lost_property_is_a_difference(change, expected):
    differences = plan.compare_fingerprints(BEFORE, _after(change))
    assert len(differences) == 1 and differences[0].startswith(expected), differences


def test_a_fence_left_up_is_a_difference():
    before = copy.deepcopy(BEFORE)
    before["databases"]["omero"]["write_fence"] = False
    assert plan.compare_fingerprints(before, BEFORE) == [
        "omero: the write fence (nl_biomero.write_fence) is down before, up after"]


def test_password_digests_are_never_shown():
    differences = plan.compare_fingerprints(BEFORE, _after(_role("password", "c" * 64)))
    assert "a" * 16 not in differences[0] and "c" * 16 not in differences[0]


@pytest.mark.parametrize("change", [
    _role("password", "d" * 64, role="omero"),                      # the image set the bootstrap role's password
    lambda fp: fp.update(password_salt="fedcba9876543210"),        # digests of another salt cannot be compared
    lambda fp: fp.update(passwords_compared=False),                 # not read as a superuser
])
def test_passwords_not_compared_when_they_cannot_be(change):
    assert plan.compare_fingerprints(BEFORE, _after(change)) == []


def test_older_fingerprints_without_properties_compare_as_before():
    before = copy.deepcopy(BEFORE)
    del before["databases"]["omero"]["properties"]
    del before["role_properties"]
    assert plan.compare_fingerprints(before, _after(_prop("settings", []))) == []


def test_row_counts_compared_when_both_have_them_and_skipped_when_one_was_taken_without():
    more_rows = _after(lambda after: after["databases"]["omero"]["tables"].update({"public.job": 4}))
    assert plan.compare_fingerprints(BEFORE, more_rows) == ["omero: rows of public.job: 3 before, 4 after"]
    uncounted = _after(lambda after: after["databases"]["omero"].pop("tables"))
    assert plan.compare_fingerprints(BEFORE, uncounted) == []
    # the rest is still compared without the rows
    uncounted["databases"]["omero"]["smoke"]["job"] = 4
    assert plan.compare_fingerprints(BEFORE, uncounted) == ["omero: smoke query on job: 3 before, 4 after"]
