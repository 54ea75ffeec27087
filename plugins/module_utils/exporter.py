# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rules of the metrics exporter beside a PostgreSQL instance (no I/O).

An instance of the role postgres_container may set ``exporter: {enabled: true,
port: 9187, password: ...}``: a container ``<instance>-exporter`` runs
prometheus-postgres-exporter on the instance's network and logs in as a
``pg_monitor`` member (``user``, default ``nlb_monitor``). ``port`` publishes its
/metrics on the host (on the role's publish address); none keeps it on the
network. The password never enters a plan or a spec.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nl_biomero.database.plugins.module_utils import labels as label_names

EXPORTER_KEYS = ("enabled", "port", "password", "user")
EXPORTER_PORT = 9187
PG_PORT = 5432


class ExporterError(ValueError):
    """Bad exporter settings of an instance."""


def _enabled(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", "", "none"):
        return False
    raise ExporterError("exporter.enabled must be a boolean (got %r)" % (value,))


def _port(value):
    """A host port 1-65535, or None (not published)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    if isinstance(value, bool) or not str(value).strip().isdigit() or not 1 <= int(value) <= 65535:
        raise ExporterError("exporter.port must be a host port from 1 to 65535, or none to publish "
                            "nothing (got %r)" % (value,))
    return int(value)


def exporter_plan(value, default_user):
    """The exporter settings of an instance without the password: None when
    disabled, else {"port", "user"}. Raises ExporterError naming the bad value."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ExporterError("exporter must be a mapping such as {enabled: true, port: 9187, password: ...} "
                            "(got %r)" % (type(value).__name__,))
    unknown = sorted(set(value) - set(EXPORTER_KEYS))
    if unknown:
        raise ExporterError("exporter: unknown key(s) %s (accepted: %s)" % (", ".join(unknown), ", ".join(EXPORTER_KEYS)))
    if not _enabled(value.get("enabled", True)):
        return None
    port = _port(value.get("port"))
    password = value.get("password")
    if password is None or not str(password).strip():
        raise ExporterError("exporter.password is required: the password of the monitoring role (from the "
                            "inventory or a vault)")
    user = str(value.get("user") or default_user or "").strip()
    if not user:
        raise ExporterError("exporter.user is empty")
    return {"port": port, "user": user}


def _dsn(host, db, user, sslmode):
    """libpq key=value DSN without a password; values single-quoted."""
    for what, value in (("instance", host), ("db", db), ("exporter.user", user)):
        if "'" in value or "\\" in value:
            raise ExporterError("%s %r has a quote or backslash, which the exporter cannot read in its DSN"
                                % (what, value))
    return "host='%s' port=%d dbname='%s' user='%s' sslmode=%s" % (host, PG_PORT, db, user, sslmode or "disable")


def exporter_name(instance):
    return "%s-exporter" % instance


def exporter_spec(spec, image, publish_address, restart_policy, sslmode, extra_labels=None):
    """The exporter container of a started instance spec (whose ``exporter`` is a plan)."""
    plan = spec["exporter"]
    network = spec.get("network")
    if not network:
        raise ExporterError("instance '%s': the exporter needs the instance on a network (set network)" % spec["name"])
    labels = dict((str(k), str(v)) for k, v in (extra_labels or {}).items())
    labels.update({
        label_names.EXPORTER_OF: spec["name"],
        label_names.INSTANCE_ROLE: spec.get("role") or spec["name"],
        label_names.INSTANCE_PREFIX + "managed-by": "nl_biomero.database.postgres_container",
    })
    ports = []
    if plan.get("port"):
        ports = ["%s:%d:%d" % (publish_address or "127.0.0.1", plan["port"], EXPORTER_PORT)]
    return {
        "name": exporter_name(spec["name"]),
        "instance": spec["name"],
        "image": image,
        "user": plan["user"],
        # No secret here: the role adds PGPASSWORD (no_log), which lib/pq reads. A
        # password inside the DSN would be printed by the exporter when it cannot
        # parse it, and 0.11 cannot parse one with a quote.
        "env": {"DATA_SOURCE_NAME": _dsn(spec["name"], spec["db"], plan["user"], sslmode)},
        "command": ["--web.listen-address=:%d" % EXPORTER_PORT],
        "labels": labels,
        "networks": [{"name": network}],
        "network": network,
        "published_ports": ports,
        "restart_policy": restart_policy or "unless-stopped",
    }
