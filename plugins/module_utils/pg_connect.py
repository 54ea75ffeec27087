# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The importer modules' database connection, built on community.postgresql.

Its connection options (doc fragment community.postgresql.postgres) and
connect code are used as they are. Ours on top: ``login_db``,
``connect_timeout`` and ``container`` (with ``container_network`` and
``engine``), a container on the managed host whose address is looked up with
the engine's ``inspect``: the NL-BIOMERO database containers publish no
ports, but the host reaches them on their bridge network address. With
``container`` the login user and database default to the container's
POSTGRES_USER and POSTGRES_DB.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.community.postgresql.plugins.module_utils import postgres
from ansible_collections.community.postgresql.plugins.module_utils.version import LooseVersion
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import (
    ContainerEngine, EngineError, detect_engine, engine_argument_spec)
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import container_env

DEFAULT_DB = "biomero"
# The driver's error base (psycopg2 or psycopg 3, whichever community.postgresql loaded).
DRIVER_ERRORS = (postgres.psycopg.Error,) if postgres.HAS_PSYCOPG else ()

MUTUALLY_EXCLUSIVE = [
    ("container", "login_host"),
    ("container", "login_unix_socket"),
    ("login_host", "login_unix_socket"),
]


class PgConnectError(NlbError):
    """The database could not be reached or refused the login; the message says where and why."""


def argument_spec():
    """community.postgresql's connection options plus ours (doc fragment postgres_connection)."""
    spec = postgres.postgres_common_argument_spec()
    # Unset means: the container's POSTGRES_USER, else community.postgresql's default (PGUSER or postgres).
    spec["login_user"]["default"] = None
    spec.update(
        login_db=dict(type="str"),
        connect_timeout=dict(type="int", default=10),
        container=dict(type="str"),
        container_network=dict(type="str"),
    )
    spec.update(engine_argument_spec())
    return spec


def container_address(info, network=None):
    """IP address of a container from its inspect data.

    ``network`` picks one network by name; otherwise the first network (by
    name) with an address. A container in the host's network namespace is
    reached on 127.0.0.1.
    """
    name = (info.get("Name") or "").lstrip("/") or info.get("Id", "")[:12]
    settings = info.get("NetworkSettings") or {}
    networks = settings.get("Networks") or {}
    mode = (info.get("HostConfig") or {}).get("NetworkMode", "")
    if network:
        if network not in networks:
            raise PgConnectError("container '%s' is not attached to network '%s'; its networks: %s"
                                 % (name, network, ", ".join(sorted(networks)) or "none"))
        address = (networks[network] or {}).get("IPAddress")
        if not address:
            raise PgConnectError("container '%s' has no IP address on network '%s'" % (name, network))
        return address
    for net_name in sorted(networks):
        address = (networks[net_name] or {}).get("IPAddress")
        if address:
            return address
    if settings.get("IPAddress"):
        return settings["IPAddress"]
    if mode == "host":
        return "127.0.0.1"
    raise PgConnectError("container '%s' has no IP address (network mode '%s'); publish a port and use login_host instead"
                         % (name, mode or "unknown"))


def _resolve_container(params, engine_factory):
    """(host, user default, db default) for ``params['container']`` on this host."""
    try:
        engine = engine_factory(detect_engine(params.get("engine") or "auto"))
        info = engine.require_running(params["container"])
    except EngineError as exc:
        raise PgConnectError(str(exc))
    host = container_address(info, params.get("container_network"))
    return host, container_env(info, "POSTGRES_USER"), container_env(info, "POSTGRES_DB")


def conn_params(module, engine_factory=ContainerEngine):
    """Keyword arguments for the driver: community.postgresql's get_conn_params over our defaults.

    Its ``connect_params`` win over ``connect_timeout`` and the application name.
    """
    params = dict(module.params)
    if params.get("connect_timeout") is not None and params["connect_timeout"] < 1:
        raise PgConnectError("connect_timeout must be at least 1 second, got %s" % params["connect_timeout"])
    user = db = None
    if params.get("container"):
        params["login_host"], user, db = _resolve_container(params, engine_factory)
    default_user = postgres.postgres_common_argument_spec()["login_user"]["default"]
    params["login_user"] = params.get("login_user") or user or default_user
    params["login_db"] = params.get("login_db") or db or DEFAULT_DB
    kwargs = postgres.get_conn_params(module, params, warn_db_default=False)
    kwargs.setdefault("connect_timeout", params.get("connect_timeout"))
    kwargs.setdefault("application_name", "nl_biomero.database")
    return dict((key, value) for key, value in kwargs.items() if value not in (None, ""))


def describe(kwargs):
    """Where a connection goes, for messages (never the password)."""
    host = kwargs.get("host") or "local socket"
    return "database '%s' as user '%s' at %s:%s" % (
        kwargs.get("dbname") or kwargs.get("database"), kwargs.get("user"), host, kwargs.get("port", 5432))


def connect(module, engine_factory=ContainerEngine):
    """A connection with autocommit off, through community.postgresql; PgConnectError naming where otherwise."""
    postgres.ensure_required_libs(module)
    kwargs = conn_params(module, engine_factory)
    # fail_on_conn=False: the failure becomes our error, which says which database, user and address.
    conn, error = postgres.connect_to_db(module, dict(kwargs), autocommit=False, fail_on_conn=False)
    if conn is None:
        raise PgConnectError("cannot connect to %s: %s" % (describe(kwargs), " ".join(("%s" % error).split())))
    if postgres.PSYCOPG_VERSION >= LooseVersion("3"):
        # community.postgresql sets dict rows under psycopg 3; the importer reads tuples.
        conn.row_factory = postgres.psycopg.rows.tuple_row
    # Under psycopg 3 connect_to_db leaves the transaction of its SET datestyle open: end it, so our
    # transactions start with their own SET TRANSACTION.
    conn.commit()
    return conn
