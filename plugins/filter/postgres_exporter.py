# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter of the role postgres_container: the metrics exporter containers
(rules in module_utils/exporter.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text
from ansible_collections.nl_biomero.database.plugins.module_utils import labels as label_names
from ansible_collections.nl_biomero.database.plugins.module_utils.exporter import ExporterError, exporter_spec


def postgres_container_exporters(specs, image, publish_address=None, sslmode="disable", labels=None):
    """The exporter container of every started instance spec with the exporter enabled."""
    try:
        return [exporter_spec(spec, image, publish_address, spec.get("restart_policy"), sslmode, labels)
                for spec in specs or [] if spec.get("state") == "started" and spec.get("exporter")]
    except ExporterError as exc:
        raise AnsibleFilterError("postgres_container: %s" % to_text(exc))


def postgres_container_stale_exporters(containers, specs, exporters):
    """Names of the exporter containers (docker_host_info list) that watch an
    instance of ``specs`` without an entry in ``exporters``: exporter off or
    instance absent. Exporters of instances this play does not manage stay."""
    planned = set(spec["name"] for spec in specs or [])
    wanted = set(exporter["instance"] for exporter in exporters or [])
    stale = []
    for container in containers or []:
        watched = (container.get("Labels") or {}).get(label_names.EXPORTER_OF)
        if watched in planned and watched not in wanted:
            stale.append(to_text((container.get("Names") or ["/"])[0]).lstrip("/"))
    return stale


class FilterModule(object):
    """Filters of the metrics exporter."""

    def filters(self):
        return {
            "postgres_container_exporters": postgres_container_exporters,
            "postgres_container_stale_exporters": postgres_container_stale_exporters,
        }
