# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Options of modules that connect to PostgreSQL with psycopg2 (community.postgresql names)."""

    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the database server.
      - Mutually exclusive with O(container) and O(login_unix_socket).
      - Without O(login_host), O(login_unix_socket) and O(container), libpq's default (the local socket) is used.
    type: str
  login_port:
    description:
      - Database port to connect to.
    type: int
    default: 5432
  login_user:
    description:
      - PostgreSQL role to connect as.
      - Defaults to the container's E(POSTGRES_USER) when O(container) is set, else V(postgres).
    type: str
  login_password:
    description:
      - Password of O(login_user). Never logged or returned.
    type: str
    default: ''
  login_db:
    description:
      - Database holding the BIOMERO.importer table C(imports).
      - Defaults to the container's E(POSTGRES_DB) when O(container) is set, else V(biomero).
    type: str
  login_unix_socket:
    description:
      - Directory of the server's Unix domain socket, for local connections.
    type: str
  ssl_mode:
    description:
      - Whether or with what priority an SSL connection is negotiated, see
        U(https://www.postgresql.org/docs/current/libpq-ssl.html).
    type: str
    default: prefer
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - File with the certificate authority (CA) certificate(s) to verify the server with.
    type: path
  ssl_cert:
    description:
      - File with the client SSL certificate.
    type: path
  ssl_key:
    description:
      - File with the secret key of O(ssl_cert).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for the connection before failing.
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
  engine:
    description:
      - Container engine CLI used to inspect O(container).
      - V(auto) uses C(docker) when it is on E(PATH), else C(podman).
    type: str
    choices: [auto, docker, podman]
    default: auto
requirements:
  - psycopg2 (C(psycopg2-binary) or C(python3-psycopg2)) on the managed host.
notes:
  - The modules reach a container's address from the managed host, which works for the bridge networks of
    rootful Docker and Podman; with rootless Podman publish a port and use O(login_host).
"""
