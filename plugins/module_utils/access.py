# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client authentication of an instance: pg_hba rules, listen addresses, TLS.

Pure rules (no I/O): the role ``postgres_container`` uses them through its
filter to validate an instance's ``hba``, ``listen_addresses`` and ``tls``
before anything changes, and to render the pg_hba.conf it writes.

The role owns the whole file: the instance's rules in their order (first match
wins), then the role's own lines. Those keep what the role needs: its tasks run
psql over the container's socket (``docker exec``) as the instance's
superuser, trusted like the image does; the loopback lines keep the container's
own TCP path. A ``local`` rule that would match the superuser's socket login
before them would lock the role out: it is refused, naming the rule.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

# In the container: the instance's access directory (a host directory, mounted read-only).
ACCESS_MOUNT = "/etc/nl-biomero/access"
HBA_FILE = "pg_hba.conf"
TLS_FILES = {"cert": "server.crt", "key": "server.key", "ca": "ca.crt"}
METHOD = "scram-sha-256"
TYPES = ("host", "hostssl", "local")
RULE_KEYS = ("type", "address", "database", "user", "method")
# The role's own lines, after the instance's rules.
OWN_LINES = (
    ("local", "all", "all", "", "trust"),
    ("local", "replication", "all", "", "trust"),
    ("host", "all", "all", "127.0.0.1/32", METHOD),
    ("host", "all", "all", "::1/128", METHOD),
)
# listen_addresses entries that include the container's loopback (the health check's pg_isready -h 127.0.0.1).
LOOPBACK_LISTEN = ("*", "0.0.0.0", "::", "127.0.0.1", "localhost", "::1")
# Settings the access options own while they are set.
TLS_SETTINGS = ("ssl", "ssl_cert_file", "ssl_key_file", "ssl_ca_file")

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]*$")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


class AccessError(NlbError, ValueError):
    """A rule, listen address or TLS setting the role refuses; nothing was changed."""


def _rule_name(index, rule):
    return "hba[%d] %s" % (index, dict((k, rule[k]) for k in RULE_KEYS if rule.get(k) not in (None, "")))


def _word(what, value, label):
    value = "all" if value in (None, "") else str(value)
    if value != "all" and not _NAME_RE.match(value):
        raise AccessError("%s: %s %r is not accepted: give one role/database name or 'all' (no lists, +groups, "
                          "@files or quotes)" % (label, what, value))
    return value


def normalize_rule(index, rule, tls):
    """One rule as (type, database, user, address, method); AccessError naming it when it is not accepted."""
    if not isinstance(rule, dict):
        raise AccessError("hba[%d]: each rule is a dict like {address: 10.0.0.0/24, database: omero, user: omero}"
                          % index)
    label = _rule_name(index, rule)
    unknown = sorted(set(rule) - set(RULE_KEYS))
    if unknown:
        raise AccessError("%s: unknown key(s) %s (accepted: %s)" % (label, ", ".join(unknown), ", ".join(RULE_KEYS)))
    kind = rule.get("type") or ("hostssl" if tls else "host")
    if kind not in TYPES:
        raise AccessError("%s: type %r is not accepted (accepted: %s)" % (label, kind, ", ".join(TYPES)))
    method = rule.get("method") or METHOD
    if method != METHOD:
        raise AccessError("%s: method %r is not accepted: only %s (md5 and password accept weaker secrets, trust "
                          "none)" % (label, method, METHOD))
    if kind == "hostssl" and not tls:
        raise AccessError("%s: a hostssl rule needs TLS on the instance (set tls: {cert: ..., key: ...})" % label)
    database = _word("database", rule.get("database"), label)
    user = _word("user", rule.get("user"), label)
    address = rule.get("address")
    if kind == "local":
        if address not in (None, ""):
            raise AccessError("%s: a local (socket) rule has no address" % label)
        return (kind, database, user, "", method)
    if address in (None, ""):
        raise AccessError("%s: address is required (an IP address or a network like 10.0.0.0/24)" % label)
    try:
        network = ipaddress.ip_network(str(address), strict=True)
    except ValueError as exc:
        raise AccessError("%s: address %r is not accepted (%s): give an IP address or a network like 10.0.0.0/24"
                          % (label, address, exc))
    return (kind, database, user, str(network), method)


def lockout(rules, superuser):
    """The first rule that would catch the role's own socket login (``local``, the superuser, any database)
    before the role's trust line; None when there is none."""
    for index, rule in enumerate(rules):
        if rule[0] == "local" and rule[2] in ("all", superuser):
            return index
    return None


def normalize_rules(rules, tls, superuser):
    """Normalized rules of an instance; refuses bad rules and a rule set that locks the role out."""
    if not isinstance(rules, list):
        raise AccessError("hba must be a list of rules like {address: 10.0.0.0/24, database: omero, user: omero}")
    result = [normalize_rule(index, rule, tls) for index, rule in enumerate(rules)]
    index = lockout(result, superuser)
    if index is not None:
        raise AccessError(
            "%s would lock out the role's own connection: its tasks log in as %s over the container's socket "
            "(docker exec psql) without a password; restrict the rule to other users; nothing was changed" % (
                _rule_name(index, rules[index]), superuser))
    return result


def listen_setting(value):
    """The listen_addresses text from a list (or comma-separated text); refuses one without loopback."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        raise AccessError("listen_addresses must be a list of addresses, e.g. ['*'] or ['127.0.0.1', '10.0.0.5']")
    addresses = [str(part).strip() for part in value]
    for address in addresses:
        if address == "*":
            continue
        try:
            ipaddress.ip_address(address)
        except ValueError:
            if not _HOST_RE.match(address):
                raise AccessError("listen_addresses: %r is not accepted (give '*', an IP address or a host name)"
                                  % address)
    if not any(address in LOOPBACK_LISTEN for address in addresses):
        raise AccessError(
            "listen_addresses %r would lock out the role's own connection: the health check connects to "
            "127.0.0.1 in the container; add 127.0.0.1 (or '*'); nothing was changed" % ",".join(addresses))
    return ",".join(addresses)


def tls_files(tls):
    """{cert, key[, ca]: host path} of a tls option; AccessError for a bad one."""
    if not isinstance(tls, dict):
        raise AccessError("tls must be a dict {cert: /path, key: /path, ca: /path (optional)}")
    unknown = sorted(set(tls) - set(TLS_FILES))
    if unknown:
        raise AccessError("tls: unknown key(s) %s (accepted: cert, key, ca)" % ", ".join(unknown))
    files = {}
    for key in TLS_FILES:
        path = tls.get(key)
        if path in (None, ""):
            if key != "ca":
                raise AccessError("tls: %s is required (an absolute host path)" % key)
            continue
        if not str(path).startswith("/"):
            raise AccessError("tls: %s %r must be an absolute host path" % (key, path))
        files[key] = str(path)
    return files


def render_hba(instance, rules):
    """The pg_hba.conf text: the instance's rules in order, then the role's own lines."""
    def line(row):
        return "%-8s %-12s %-12s %-20s %s" % row

    out = ["# Managed by nl_biomero.database.postgres_container for instance %s: edits are overwritten." % instance,
           "# The instance's rules (first match wins):"]
    out += [line(rule) for rule in rules] or ["# (none: only the lines below)"]
    out += ["# The role's own: its tasks use psql over the socket (docker exec); loopback inside the container."]
    out += [line(row) for row in OWN_LINES]
    return "\n".join(out) + "\n"


def access_plan(name, superuser, hba=None, listen_addresses=None, tls=None, settings=None):
    """What the access options of an instance add: None when none is set, else
    {hba (text or None), tls (host files), settings (for -c), mount target}."""
    if hba is None and listen_addresses in (None, "", []) and not tls:
        return None
    settings = settings or {}
    extra = {}
    files = tls_files(tls) if tls else {}
    if listen_addresses not in (None, "", []):
        if "listen_addresses" in settings:
            raise AccessError("set listen_addresses either as the instance option or in settings, not both")
        extra["listen_addresses"] = listen_setting(listen_addresses)
    if files:
        clash = sorted(set(settings) & set(TLS_SETTINGS))
        if clash:
            raise AccessError("settings %s: the tls option sets them; drop them from settings" % ", ".join(clash))
        extra.update({"ssl": "on", "ssl_cert_file": "%s/%s" % (ACCESS_MOUNT, TLS_FILES["cert"]),
                      "ssl_key_file": "%s/%s" % (ACCESS_MOUNT, TLS_FILES["key"])})
        if "ca" in files:
            extra["ssl_ca_file"] = "%s/%s" % (ACCESS_MOUNT, TLS_FILES["ca"])
    text = None
    if hba is not None:
        text = render_hba(name, normalize_rules(hba, bool(files), superuser))
        extra["hba_file"] = "%s/%s" % (ACCESS_MOUNT, HBA_FILE)
    return {"hba": text, "tls": files, "settings": extra, "mount": ACCESS_MOUNT,
            "files": bool(files) or text is not None}
