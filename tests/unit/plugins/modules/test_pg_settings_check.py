# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import labels
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import major_version
from ansible_collections.nl_biomero.database.plugins.modules import pg_settings_check


def test_probe_never_pulls_and_has_no_network(monkeypatch):
    calls = []
    monkeypatch.setattr(pg_settings_check, "run", lambda argv, env=None: calls.append((argv, env)) or (0, "", ""))
    checker = pg_settings_check.SettingsChecker(ContainerEngine("docker"), docker_host="tcp://engine:2375")
    checker._probe(("postgres:16", "postgres", ["--describe-config"]))
    argv, env = calls[0]
    assert argv == ["docker", "run", "--pull", "never", "--label", labels.THROWAWAY + "=settings-check", "--rm",
                    "--network", "none", "--user", "postgres", "--entrypoint", "postgres", "--log-driver", "none",
                    "postgres:16", "--describe-config"]
    # The endpoint is for the engine CLI, not the container.
    assert env == {"DOCKER_HOST": "tcp://engine:2375"}


def test_podman_endpoint_is_container_host():
    assert pg_settings_check.SettingsChecker(ContainerEngine("podman"), "unix:///run/podman.sock").env == {
        "CONTAINER_HOST": "unix:///run/podman.sock"}


# What ``postgres -C server_version_num`` prints, read by the one version parser.
@pytest.mark.parametrize("num,major", [("170002", 17), (160004, 16), ("90624\n", 9), ("180000", 18)])
def test_server_version_num_major(num, major):
    assert major_version(num) == major
