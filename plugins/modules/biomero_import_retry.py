#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: biomero_import_retry
short_description: Retry failed BIOMERO.importer orders so the running importer picks them up
version_added: 0.1.0
description:
  - Retries orders of BIOMERO.importer recorded in the table C(imports) of the BIOMERO database.
  - The table is an append-only event log (one row per stage change, the order's state is the stage of its
    latest row). The importer polls for C(Import Pending) rows with an id above the highest id it has seen
    and skips uuids it has processed, so the platform's documented
    C(UPDATE imports SET stage = 'Import Pending') is ignored by current importers and rewrites history.
  - The default strategy V(new_order) appends one C(Import Pending) row per order, copying the order as it
    was submitted (all columns of its first C(Import Pending) row except C(id), C(uuid), C(stage),
    C(timestamp)), with the current time as C(timestamp) and a fresh uuid. Rows of the failed order are never changed.
    Where the column C(description) exists, the new row's description starts with C([retry of <old uuid>]).
  - Idempotent. An order counts as already retried when a later C(Import Pending) row with another uuid
    copies the same order columns (compared without C(description), so this also works on databases
    without that column); it is not retried again, whatever became of that retry. If the retry failed too,
    retry the retry (it is a failed order itself), so a chain never forks into two imports of the same files.
    An identical order submitted again by hand after the failure counts as a retry as well.
  - One transaction. Writing runs take C(LOCK TABLE imports IN SHARE ROW EXCLUSIVE MODE) for its
    (sub-second) duration; reads go on, other writers (a second retry, the importer, the web front end) wait.
    So two retries started at the same moment insert one new order per failed order, and ids are committed in
    order, so the importer's id watermark cannot pass over a retry row.
  - Retries are picked up by a RUNNING importer. While the importer is stopped a retry cannot succeed
    (the importer's start-up marks pending orders without a result as C(Import Failed)); retry after it runs.
notes:
  - The login role needs C(SELECT) and C(INSERT) on C(imports), and a privilege that allows C(LOCK TABLE) in
    C(SHARE ROW EXCLUSIVE) mode (C(UPDATE), C(DELETE) or C(TRUNCATE)); the importer's own role owns the table.
  - Orders are named by uuid exactly as stored (case-sensitive).
  - O(since) and O(until) compare with the timestamp of an order's latest row; rows without a timestamp
    (written by raw SQL without one) never match them.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.postgres_connection
  - community.postgresql.postgres
  - nl_biomero.database.container.engine
options:
  uuids:
    description:
      - Orders to retry, by uuid (form C(8-4-4-4-12) hex digits). A malformed or unknown uuid fails the run.
      - Named orders that are not eligible (latest stage not in O(stages), not matching the filters, already
        retried) are returned in RV(not_retried) with the reason.
      - Mutually exclusive with O(all_failed).
    type: list
    elements: str
  all_failed:
    description:
      - Retry every eligible order matched by the filters O(group_name), O(user_name), O(since), O(until).
      - Required (V(true)) when O(uuids) is not given; the module refuses to run without a selection.
    type: bool
    default: false
  stages:
    description:
      - Latest stages that make an order eligible.
      - Known stages are C(Import Pending), C(Import Started), C(Import Preprocessing), C(Import Completed),
        C(Import Failed).
      - Orders already C(Import Pending) are never retried by V(same_uuid) or V(reset_stage).
    type: list
    elements: str
    default: ['Import Failed']
  group_name:
    description:
      - Only orders of this OMERO group.
    type: str
  user_name:
    description:
      - Only orders of this OMERO user.
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
      - Most orders one run may retry. When more are eligible the module fails, reports the count and writes
        nothing. Raise it deliberately for a mass retry.
    type: int
    default: 100
  strategy:
    description:
      - V(new_order) appends an C(Import Pending) row with a fresh uuid (works with a running importer).
      - V(same_uuid) appends an C(Import Pending) row with the old uuid. Only an importer restarted since the
        failure (and not restarted after the insert) picks it up; the module warns.
      - V(reset_stage) runs the platform's documented C(UPDATE) on every row of the order (history lost).
        Kept for old importers; current BIOMERO.importer ignores it; the module warns.
    type: str
    choices: [new_order, same_uuid, reset_stage]
    default: new_order
  lock_timeout:
    description:
      - Seconds to wait for the table lock before failing with nothing written.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    description: Reads the orders in a read-only transaction and reports what would be retried; nothing is written.
  diff_mode:
    support: full
    description: Shows the rows that are (or would be) appended, or for V(reset_stage) the rows whose stage changes.
  idempotent:
    support: full
    description: A retried order is not retried again; a second run reports C(changed=false).
seealso:
  - module: nl_biomero.database.biomero_import_info
"""

EXAMPLES = r"""
- name: Retry two failed orders in the BIOMERO database container
  nl_biomero.database.biomero_import_retry:
    container: nl-biomero_database-biomero_1
    login_user: biomero
    login_password: "{{ biomero_db_password }}"
    uuids:
      - 550e8400-e29b-41d4-a716-446655440000
      - 9b2f6c1e-3f7a-4d7e-9a57-0f0a3c6e1b22

- name: Retry everything of one group that failed in the last day
  nl_biomero.database.biomero_import_retry:
    login_host: db.example.org
    login_user: biomero
    login_password: "{{ biomero_db_password }}"
    login_db: biomero
    all_failed: true
    group_name: Imaging Core
    since: 24h
  register: retry

- name: A mass retry must be allowed explicitly
  nl_biomero.database.biomero_import_retry:
    container: nl-biomero_database-biomero_1
    login_password: "{{ biomero_db_password }}"
    all_failed: true
    limit: 5000
"""

RETURN = r"""
retried:
  description: Orders retried (or, in check mode, that would be), oldest latest row first.
  returned: always
  type: list
  elements: dict
  contains:
    uuid:
      description: The retried (old) order.
      type: str
      sample: 550e8400-e29b-41d4-a716-446655440000
    new_uuid:
      description: Uuid of the new order (V(new_order)), the old uuid (V(same_uuid), V(reset_stage)), null in check mode for V(new_order).
      type: str
      sample: 0b8e3d4c-8a1f-4f7e-b3c9-2d1e5f6a7b8c
    new_id:
      description: Id of the appended row; null in check mode and for V(reset_stage).
      type: int
      sample: 4711
    stage:
      description: Latest stage of the old order before the retry.
      type: str
      sample: Import Failed
    last_at:
      description: Time of the old order's latest row (ISO 8601).
      type: str
      sample: "2025-06-01T12:00:00+00:00"
    group_name:
      description: OMERO group.
      type: str
      sample: Imaging Core
    user_name:
      description: OMERO user.
      type: str
      sample: jdoe
    destination_type:
      description: OMERO destination type.
      type: str
      sample: Dataset
    destination_id:
      description: OMERO destination id.
      type: str
      sample: "51"
    files:
      description: Files of the order.
      type: list
      elements: str
      sample: ["/data/core/plate1.tif"]
    file_count:
      description: Number of files.
      type: int
      sample: 1
not_retried:
  description: Selected orders that were not retried, with the reason.
  returned: always
  type: list
  elements: dict
  contains:
    uuid:
      description: The order.
      type: str
      sample: 550e8400-e29b-41d4-a716-446655440000
    stage:
      description: Its latest stage.
      type: str
      sample: Import Failed
    reason:
      description: Why it was skipped.
      type: str
      sample: already retried as 0b8e3d4c-8a1f-4f7e-b3c9-2d1e5f6a7b8c
    retried_as:
      description: Uuid of an existing retry of this order, if any.
      type: str
      sample: 0b8e3d4c-8a1f-4f7e-b3c9-2d1e5f6a7b8c
selected:
  description: Number of orders the selection matched (before eligibility).
  returned: always
  type: int
  sample: 3
updated_rows:
  description: Rows whose stage was (or would be) changed by V(reset_stage).
  returned: when O(strategy=reset_stage)
  type: int
  sample: 9
strategy:
  description: The strategy used.
  returned: always
  type: str
  sample: new_order
table:
  description: The table, schema-qualified.
  returned: always
  type: str
  sample: public.imports
lineage_column:
  description: Column recording the lineage (C(description)), or null when the table has none.
  returned: always
  type: str
  sample: description
filters:
  description: The selection filters in use (relative times resolved to UTC timestamps).
  returned: always
  type: dict
  sample: {"stages": ["Import Failed"], "since": "2025-06-01T12:00:00+00:00"}
queries:
  description: SQL statements run (in check mode including the write it would run), with placeholders, never values.
  returned: always
  type: list
  elements: str
  sample: ["LOCK TABLE \"public\".\"imports\" IN SHARE ROW EXCLUSIVE MODE"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils import importer, pg_connect
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module


def _retry(module):
    """Validate the request, connect, retry in one transaction, shape the result."""
    params = module.params
    strategy, limit = importer.validate_retry_request(params)
    selection = importer.selection_from_params(params, default_stages=[importer.STAGE_FAILED])
    if params["lock_timeout"] < 1:
        raise importer.ImporterError("lock_timeout must be at least 1 second, got %s" % params["lock_timeout"])
    conn = pg_connect.connect(module)
    try:
        result = importer.retry_orders(conn, selection, strategy=strategy, limit=limit,
                                       check_mode=module.check_mode, lock_timeout=params["lock_timeout"])
    except pg_connect.DRIVER_ERRORS as exc:  # the transaction was rolled back
        raise importer.ImporterError("retry failed, nothing was written: %s" % " ".join(str(exc).split()))
    finally:
        conn.close()
    if not module._diff:
        result.pop("diff")
    result["filters"] = selection.filters()
    return result


def main():
    spec = pg_connect.argument_spec()
    spec.update(importer.selection_argument_spec(default_stages=[importer.STAGE_FAILED]))
    spec.update(
        all_failed=dict(type="bool", default=False),
        strategy=dict(type="str", default="new_order", choices=list(importer.STRATEGIES)),
        lock_timeout=dict(type="int", default=30),
    )
    module = AnsibleModule(argument_spec=spec, mutually_exclusive=pg_connect.MUTUALLY_EXCLUSIVE,
                           supports_check_mode=True)
    run_module(module, lambda: _retry(module))


if __name__ == "__main__":
    main()
