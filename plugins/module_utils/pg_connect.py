# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A psycopg2 connection from community.postgresql-style options.

Besides the usual ``login_*`` and ``ssl_*`` options, ``container`` names a
container on the managed host whose address is looked up with the engine's
``inspect``: the NL-BIOMERO database containers publish no ports, but the host
reaches them on their bridge network address.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine, EngineError, detect_engine
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import container_env
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

PSYCOPG2_IMPORT_ERROR = None
try:
    import psycopg2
    HAS_PSYCOPG2 = True
except ImportError:  # pragma: no cover - depends on the managed host
    psycopg2 = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

SSL_MODES = ("allow", "disable", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_USER = "postgres"
DEFAULT_DB = "biomero"


class PgConnectError(NlbError):
    """The database could not be reached or refused the login; the message says where and why."""


def connection_argument_spec():
    """Argument spec of the connection options (documented in doc fragment postgres_connection)."""
    return dict(
        login_host=dict(type="str"),
        login_port=dict(type="int", default=5432),
        login_user=dict(type="str"),
        login_password=dict(type="str", default="", no_log=True),
        login_db=dict(type="str"),
        login_unix_socket=dict(type="str"),
        ssl_mode=dict(type="str", default="prefer", choices=list(SSL_MODES)),
        ca_cert=dict(type="path"),
        ssl_cert=dict(type="path"),
        ssl_key=dict(type="path", no_log=False),
        connect_timeout=dict(type="int", default=10),
        container=dict(type="str"),
        engine=dict(type="str", default="auto", choices=["auto", "docker", "podman"]),
        container_network=dict(type="str"),
    )


CONNECTION_MUTUALLY_EXCLUSIVE = [
    ("container", "login_host"),
    ("container", "login_unix_socket"),
    ("login_host", "login_unix_socket"),
]


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


def resolve_container(params, engine_factory=None):
    """(host, user default, db default) for ``params['container']`` on this host."""
    try:
        binary = detect_engine(params.get("engine") or "auto")
        engine = (engine_factory or ContainerEngine)(binary)
        info = engine.require_running(params["container"])
    except EngineError as exc:
        raise PgConnectError(str(exc))
    host = container_address(info, params.get("container_network"))
    return host, container_env(info, "POSTGRES_USER"), container_env(info, "POSTGRES_DB")


def connect_kwargs(params, container_host=None, container_user=None, container_db=None):
    """Keyword arguments for psycopg2.connect.

    Empty or unset values are left out so libpq applies its own defaults
    (and its environment, e.g. PGSSLMODE is overridden only by ssl_mode).
    """
    if params.get("container") and (params.get("login_host") or params.get("login_unix_socket")):
        raise PgConnectError("container cannot be combined with login_host or login_unix_socket: "
                             "the container's address is the host to connect to")
    if params.get("login_host") and params.get("login_unix_socket"):
        raise PgConnectError("login_host and login_unix_socket are mutually exclusive")
    ssl_mode = params.get("ssl_mode") or "prefer"
    if ssl_mode not in SSL_MODES:
        raise PgConnectError("ssl_mode '%s' is not supported; use one of: %s" % (ssl_mode, ", ".join(SSL_MODES)))
    timeout = params.get("connect_timeout")
    if timeout is not None and timeout < 1:
        raise PgConnectError("connect_timeout must be at least 1 second, got %s" % timeout)
    host = container_host or params.get("login_host") or params.get("login_unix_socket") or None
    kwargs = {
        "host": host,
        "port": params.get("login_port") or 5432,
        "user": params.get("login_user") or container_user or DEFAULT_USER,
        "password": params.get("login_password") or None,
        "dbname": params.get("login_db") or container_db or DEFAULT_DB,
        "sslmode": ssl_mode,
        "sslrootcert": params.get("ca_cert"),
        "sslcert": params.get("ssl_cert"),
        "sslkey": params.get("ssl_key"),
        "connect_timeout": timeout,
        "application_name": "nl_biomero.database",
    }
    return dict((key, value) for key, value in kwargs.items() if value not in (None, ""))


def describe(kwargs):
    """Where a connection goes, for messages (never the password)."""
    host = kwargs.get("host") or "local socket"
    return "database '%s' as user '%s' at %s:%s" % (kwargs.get("dbname"), kwargs.get("user"), host, kwargs.get("port"))


def connect(params, engine_factory=None, connect_fn=None):
    """Open a psycopg2 connection (autocommit off); PgConnectError with a clear message otherwise."""
    if not HAS_PSYCOPG2 and connect_fn is None:
        raise PgConnectError("the Python library psycopg2 is required on the managed host")
    host = user = db = None
    if params.get("container"):
        host, user, db = resolve_container(params, engine_factory)
    kwargs = connect_kwargs(params, host, user, db)
    try:
        conn = (connect_fn or psycopg2.connect)(**kwargs)
    except Exception as exc:  # psycopg2.OperationalError and friends; the password is never in the text
        text = " ".join(str(exc).split())
        raise PgConnectError("cannot connect to %s: %s" % (describe(kwargs), text))
    return conn, describe(kwargs)
