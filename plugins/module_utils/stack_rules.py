# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure rules of a test stack (no I/O): names, ports, ephemeral settings, connection files, the sweep.

A stack is an OMERO DB and a BIOMERO DB on a network of its own, every
resource named ``<stack>-...`` and labelled with the stack name and its
creation time, so that a teardown or a sweep finds exactly what was made.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import random
import re
import string

from ansible_collections.nl_biomero.database.plugins.module_utils import labels
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

# A container/network/volume name part; short enough for '<stack>-biomero-data' and a host name label.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,47}$")
NAME_RULE = "1 to 48 characters: letters, digits, '_', '.' or '-', starting with a letter or a digit"
ROLES = ("omero", "biomero")
# The names NL-BIOMERO's clients use for the two databases (docker-compose services): network aliases.
ALIASES = {"omero": "database", "biomero": "database-biomero"}
PORT = 5432
# Ephemeral mode: a crash may lose or corrupt everything. Test data only.
EPHEMERAL_SETTINGS = (("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off"))
EPHEMERAL_WARNING = ("stack '%s' is EPHEMERAL: data on tmpfs, fsync=off, synchronous_commit=off, "
                     "full_page_writes=off - for tests only, NEVER for real data (it is gone when the stack stops)")


class StackError(NlbError):
    """Bad input for a stack, or a stack that cannot be made or removed."""


def check_name(name):
    """The stack name, or StackError naming the value and what is accepted."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise StackError("stack name %r is not valid: use %s" % (name, NAME_RULE))
    return name


def resource_names(stack):
    """Names of a stack's network, containers and (persistent mode) volumes."""
    check_name(stack)
    return {
        "network": "%s-net" % stack,
        "containers": dict((role, "%s-%s-db" % (stack, role)) for role in ROLES),
        "volumes": dict((role, "%s-%s-data" % (stack, role)) for role in ROLES),
    }


def stack_labels(stack, created):
    """Labels every resource of the stack carries (``created``: epoch seconds)."""
    return {labels.STACK: stack, labels.STACK_CREATED: str(int(created))}


def check_port(value, what):
    """None (publish nothing), 0 (a free port the engine picks) or 1..65535; StackError otherwise."""
    if value is None:
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = -1
    if isinstance(value, bool) or port < 0 or port > 65535:
        raise StackError("%s %r is not valid: use 0 (a free port), 1 to 65535, or nothing (no published port)"
                         % (what, value))
    return port


def publish_args(address, port):
    """``-p`` arguments for the server port: none, a free one (0: the engine picks it atomically) or a given one."""
    if port is None:
        return []
    return ["-p", "%s:%s:%d" % (address, port or "", PORT)]


def parse_port(output):
    """Host port from ``<engine> port <container> 5432/tcp`` output ('127.0.0.1:49153' lines); None if none."""
    for line in output.splitlines():
        host, sep, port = line.strip().rpartition(":")
        if sep and port.isdigit():
            return int(port)
    return None


def server_command(ephemeral, settings=None):
    """The ``postgres -c ...`` command of a stack instance."""
    merged = dict(EPHEMERAL_SETTINGS) if ephemeral else {}
    merged.update(settings or {})
    command = ["postgres"]
    for name, value in sorted(merged.items()):
        command += ["-c", "%s=%s" % (name, value)]
    return command


def generate_password(length=24, rng=None):
    """A password of letters and digits (safe in URLs, dotenv files and OMERO's config)."""
    rng = rng or random.SystemRandom()
    alphabet = string.ascii_letters + string.digits
    return "".join(rng.choice(alphabet) for _index in range(length))


def _url_quote(text):
    # urllib.parse.quote, spelled out for py2.7-compatible module_utils.
    safe = string.ascii_letters + string.digits + "-._~"
    return "".join(ch if ch in safe else "".join("%%%02X" % b for b in bytearray(ch.encode("utf-8")))
                   for ch in text)


def sqlalchemy_url(user, password, host, port, database):
    quoted = (_url_quote(user), _url_quote(password), host, int(port), _url_quote(database))
    return "postgresql+psycopg2://%s:%s@%s:%d/%s" % quoted


def connection_details(stack, network, ephemeral, created, instances):
    """The connection file's content.

    ``instances``: role -> dict(container, user, database, password, host, port) where host/port are
    what the host (the pipeline) connects to: the published port on the publish address, or the
    container's address on the stack network with 5432 when nothing is published. Clients inside the
    network use ``network_host`` (NL-BIOMERO's service names) and 5432.
    """
    details = {"stack": stack, "network": network, "ephemeral": bool(ephemeral), "created": int(created)}
    for role in ROLES:
        item = instances[role]
        entry = {
            "container": item["container"], "host": item["host"], "port": int(item["port"]),
            "network_host": ALIASES[role], "network_port": PORT,
            "user": item["user"], "database": item["database"], "password": item["password"],
        }
        if role == "omero":
            entry["omero_config"] = {
                "omero.db.host": item["host"], "omero.db.port": str(item["port"]),
                "omero.db.name": item["database"], "omero.db.user": item["user"], "omero.db.pass": item["password"],
            }
        else:
            entry["sqlalchemy_url"] = sqlalchemy_url(item["user"], item["password"], item["host"], item["port"],
                                                     item["database"])
            entry["network_sqlalchemy_url"] = sqlalchemy_url(item["user"], item["password"], ALIASES[role], PORT,
                                                             item["database"])
        details[role] = entry
    return details


def _sh_quote(value):
    text = str(value)
    if re.match(r"^[A-Za-z0-9_@%+=:,./-]+$", text):
        return text
    return "'" + text.replace("'", "'\"'\"'") + "'"


def dotenv_text(details):
    """The dotenv file: KEY=value lines a POSIX shell can source (``set -a; . ./stack.env; set +a``)."""
    omero, biomero = details["omero"], details["biomero"]
    pairs = [("NLB_STACK", details["stack"]), ("NLB_STACK_NETWORK", details["network"])]
    for prefix, item in (("OMERO_DB", omero), ("BIOMERO_DB", biomero)):
        pairs += [(prefix + "_CONTAINER", item["container"]), (prefix + "_HOST", item["host"]),
                  (prefix + "_PORT", item["port"]), (prefix + "_USER", item["user"]),
                  (prefix + "_NAME", item["database"]), (prefix + "_PASSWORD", item["password"]),
                  (prefix + "_NETWORK_HOST", item["network_host"])]
    pairs += [("BIOMERO_DB_URL", biomero["sqlalchemy_url"]),
              ("BIOMERO_DB_NETWORK_URL", biomero["network_sqlalchemy_url"]),
              # BIOMERO.importer's own variable (same database).
              ("INGEST_TRACKING_DB_URL", biomero["sqlalchemy_url"])]
    # The OMERO.server image's convention: CONFIG_omero_db_host=... becomes omero.db.host.
    for key, value in sorted(omero["omero_config"].items()):
        pairs.append(("CONFIG_" + key.replace(".", "_"), value))
    return "".join("%s=%s\n" % (key, _sh_quote(value)) for key, value in pairs)


def stacks_to_sweep(created_by_stack, now, max_age_hours):
    """Names of the stacks older than ``max_age_hours``, oldest first.

    ``created_by_stack``: stack name -> creation times (epoch seconds, as label texts) found on its
    resources. A stack counts from its earliest creation label; resources without a readable creation
    label are left alone (they may be another tool's).
    """
    if max_age_hours is None or float(max_age_hours) < 0:
        raise StackError("max_age %r is not valid: use a number of hours, 0 or more" % (max_age_hours,))
    limit = float(now) - float(max_age_hours) * 3600.0
    found = []
    for stack, times in created_by_stack.items():
        stamps = []
        for value in times:
            try:
                stamps.append(float(value))
            except (TypeError, ValueError):
                continue
        if stamps and min(stamps) <= limit and NAME_RE.match(stack or ""):
            found.append((min(stamps), stack))
    return [stack for _stamp, stack in sorted(found)]


# A prepared cluster of a seed (pg_basebackup tar) is extracted into PGDATA before the entrypoint
# runs; the entrypoint then finds a cluster and starts it instead of running initdb.
SEED_TAR_MOUNT = "/nlb-seed.tar"
SEED_EXTRACT = ('tar -xf %s -C "$PGDATA" && chown -R postgres:postgres "$PGDATA" && chmod 700 "$PGDATA" '
                '&& exec docker-entrypoint.sh "$@"' % SEED_TAR_MOUNT)


def seed_cache_key(image_id, user, database, seed_identity):
    """Name of the prepared cluster of a seed: the same image, user, database and seed file (path, size,
    modification time) give the same key; any change gives another."""
    text = json.dumps([image_id, user, database, list(seed_identity)], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def cached_start_args(tar_path, image, command):
    """``run`` arguments from the image on: extract the prepared cluster, then the image's entrypoint."""
    return (["-v", "%s:%s:ro" % (tar_path, SEED_TAR_MOUNT), "--entrypoint", "sh", image, "-c", SEED_EXTRACT, "sh"]
            + list(command))


def alter_password_sql(user, password):
    """SQL (fed on stdin, never argv) giving ``user`` ``password``; both quoted."""
    return "ALTER ROLE \"%s\" PASSWORD '%s';\n" % (user.replace('"', '""'), password.replace("'", "''"))
