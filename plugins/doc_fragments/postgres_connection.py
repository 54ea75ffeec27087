# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Our options on top of community.postgresql.postgres (list this fragment first: its login_user wins)."""

    DOCUMENTATION = r"""
options:
  login_user:
    description:
      - PostgreSQL role to connect as.
      - Defaults to the container's E(POSTGRES_USER) when O(container) is set, else to E(PGUSER) or V(postgres).
    default: null
  login_db:
    description:
      - Database holding the BIOMERO.importer table C(imports).
      - Defaults to the container's E(POSTGRES_DB) when O(container) is set, else V(biomero).
    type: str
  connect_timeout:
    description:
      - Seconds to wait for the connection before failing. A C(connect_timeout) in O(connect_params) wins.
    type: int
    default: 10
  container:
    description:
      - Name or ID of a running database container on the managed host; the module connects to the
        container's IP address (found with the engine's C(inspect)), so a database that publishes no
        port is reachable.
      - Mutually exclusive with O(login_host) and O(login_unix_socket).
      - A container in the host network namespace is reached on C(127.0.0.1).
    type: str
  container_network:
    description:
      - Network whose address of O(container) to use, when it is attached to several.
      - Default is the first network (by name) on which the container has an address.
    type: str
notes:
  - The modules reach a container's address from the managed host, which works for the bridge networks of
    rootful Docker and Podman; with rootless Podman publish a port and use O(login_host).
  - O(login_host) and O(login_unix_socket) are mutually exclusive.
"""
