#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: biomero_import_info
short_description: List BIOMERO.importer orders and their latest stage
version_added: 0.1.0
description:
  - Read-only view of the orders of BIOMERO.importer in the table C(imports) of the BIOMERO database.
  - The table is an event log with one row per stage change; this module returns one entry per order
    (its uuid), with the stage of its latest row (highest C(id)), the order's files and destination,
    first and last timestamps and number of rows, and counts of orders per latest stage.
  - Runs in a read-only transaction.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.postgres_connection
  - community.postgresql.postgres
  - nl_biomero.database.container.engine
options:
  uuids:
    description:
      - Only these orders (form C(8-4-4-4-12) hex digits; a malformed uuid fails the run).
    type: list
    elements: str
  stages:
    description:
      - Only orders whose latest stage is one of these.
      - Known stages are C(Import Pending), C(Import Started), C(Import Preprocessing), C(Import Completed),
        C(Import Failed).
    type: list
    elements: str
  group_name:
    description:
      - Only orders of this OMERO group (of the latest row).
    type: str
  user_name:
    description:
      - Only orders of this OMERO user (of the latest row).
    type: str
  since:
    description:
      - Only orders whose latest row is at or after this time.
      - An ISO 8601 timestamp (without a zone it is UTC), or an age such as V(90s), V(30m), V(24h), V(7d), V(2w).
    type: str
  until:
    description:
      - Only orders whose latest row is before this time; same forms as O(since).
    type: str
  limit:
    description:
      - Most orders returned in RV(orders), most recent activity first. RV(counts) and RV(total) cover all
        matching orders.
    type: int
    default: 100
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  idempotent:
    support: full
    description: Only reads.
seealso:
  - module: nl_biomero.database.biomero_import_retry
"""

EXAMPLES = r"""
- name: Failed imports of the last week
  nl_biomero.database.biomero_import_info:
    container: nl-biomero_database-biomero_1
    login_user: biomero
    login_password: "{{ biomero_db_password }}"
    stages: [Import Failed]
    since: 7d
  register: failed

- name: Show them
  ansible.builtin.debug:
    msg: "{{ failed.orders | map(attribute='uuid') | list }}"

- name: The state of two orders
  nl_biomero.database.biomero_import_info:
    login_host: 127.0.0.1
    login_port: 55432
    login_user: biomero
    login_password: "{{ biomero_db_password }}"
    uuids:
      - 550e8400-e29b-41d4-a716-446655440000
      - 9b2f6c1e-3f7a-4d7e-9a57-0f0a3c6e1b22
"""

RETURN = r"""
orders:
  description: One entry per matching order, most recent activity first, at most O(limit).
  returned: always
  type: list
  elements: dict
  contains:
    uuid:
      description: The order's uuid.
      type: str
      sample: 550e8400-e29b-41d4-a716-446655440000
    stage:
      description: Stage of the order's latest row.
      type: str
      sample: Import Failed
    group_name:
      description: OMERO group (latest row).
      type: str
      sample: Imaging Core
    user_name:
      description: OMERO user (latest row).
      type: str
      sample: jdoe
    destination_type:
      description: OMERO destination type (latest row).
      type: str
      sample: Dataset
    destination_id:
      description: OMERO destination id (latest row).
      type: str
      sample: "51"
    files:
      description: Files of the order (from its first row).
      type: list
      elements: str
      sample: ["/data/core/plate1.tif"]
    file_count:
      description: Number of files.
      type: int
      sample: 1
    first_at:
      description: Earliest timestamp of the order's rows (ISO 8601).
      type: str
      sample: "2025-06-01T11:58:02+00:00"
    last_at:
      description: Latest timestamp of the order's rows (ISO 8601).
      type: str
      sample: "2025-06-01T12:00:00+00:00"
    rows:
      description: Number of rows (stage changes) of the order.
      type: int
      sample: 3
    description:
      description: C(description) of the latest row (for failed orders the importer's error text); null without the column.
      type: str
      sample: "Import failed for data package ..."
    retry_of:
      description: Uuid of the order this one retries (from the lineage marker written by biomero_import_retry), or null.
      type: str
      sample: 9b2f6c1e-3f7a-4d7e-9a57-0f0a3c6e1b22
counts:
  description: Number of matching orders per latest stage (all matching orders, not only those returned).
  returned: always
  type: dict
  sample: {"Import Completed": 120, "Import Failed": 3}
total:
  description: Number of matching orders.
  returned: always
  type: int
  sample: 123
truncated:
  description: Whether O(limit) left orders out of RV(orders).
  returned: always
  type: bool
  sample: true
table:
  description: The table, schema-qualified.
  returned: always
  type: str
  sample: public.imports
columns:
  description: Columns of the table in this database (they differ between importer versions).
  returned: always
  type: list
  elements: str
  sample: [id, group_name, user_name, destination_id, destination_type, stage, uuid, timestamp, files]
filters:
  description: The selection filters in use (relative times resolved to UTC timestamps).
  returned: always
  type: dict
  sample: {"stages": ["Import Failed"], "since": "2025-06-01T12:00:00+00:00"}
queries:
  description: SQL statements run, with placeholders, never values.
  returned: always
  type: list
  elements: str
  sample: ["SELECT stage, count(*) FROM matched GROUP BY stage ORDER BY stage"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils import importer, pg_connect
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module


def _info(module):
    """Validate the filters, connect, read the orders."""
    params = module.params
    selection = importer.selection_from_params(params)
    if params["limit"] < 1:
        raise importer.ImporterError("limit must be at least 1, got %s" % params["limit"])
    conn = pg_connect.connect(module)
    try:
        result = importer.list_orders(conn, selection, params["limit"])
    except pg_connect.DRIVER_ERRORS as exc:
        raise importer.ImporterError("reading the orders failed: %s" % " ".join(str(exc).split()))
    finally:
        conn.close()
    result.update(changed=False, filters=selection.filters())
    return result


def main():
    spec = pg_connect.argument_spec()
    spec.update(importer.selection_argument_spec())
    module = AnsibleModule(argument_spec=spec, mutually_exclusive=pg_connect.MUTUALLY_EXCLUSIVE,
                           supports_check_mode=True)
    run_module(module, lambda: _info(module))


if __name__ == "__main__":
    main()
