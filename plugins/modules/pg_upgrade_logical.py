#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_upgrade_logical
short_description: One step of the logical copy of an upgrade (publications, subscriptions, switchover, cleanup)
version_added: 0.1.0
description:
  - The C(logical) strategy of the C(postgres_upgrade) role. The old server (O(container)) publishes every table of
    each database (publication C(nlb_upgrade)); the staging container of the new major (O(target_container)), whose
    schema was copied first, subscribes (subscription and slot C(nlb_upgrade_<database>)) through a private network.
  - O(step=prepare) does what the preflight (M(nl_biomero.database.pg_upgrade_preflight)) planned on the old server
    - C(ALTER SYSTEM SET wal_level = logical) with O(wal_level) (the caller restarts the server) and
    C(ALTER TABLE ... REPLICA IDENTITY FULL) on the tables O(identity_full) names.
  - O(step=begin) reads the catalog of the old server (relations, columns, constraints, indexes, types; the DDL
    check compares against it) and the staging cluster's system identifier; changes nothing.
  - O(step=subscribe) creates the publications and the subscriptions (the copy starts).
  - O(step=synced) waits until every table is copied and each slot is within O(max_lag_bytes); fails at once when
    the schema of the old server changed (naming the objects). Then, while the clients still work, it counts the
    rows of every table of O(fingerprint_databases) in both clusters side by side (RV(counted)); the verification of
    the switchover counts again only the tables changed since.
  - O(step=switchover), with writes stopped, checks for DDL, waits until every slot confirmed the old server's current
    WAL position, sets every sequence from the old values, copies the large objects (logical replication carries
    neither), then drops the subscriptions, slots and publications.
  - O(step=absent) drops what the replication made (subscriptions in O(target_container) when it runs; slots,
    terminating their walsenders first, and publications on O(container)); used on every failure path.
  - The password of the subscriptions is O(login_password), else the old container's E(POSTGRES_PASSWORD); it is
    never returned or put in a message.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container
  - nl_biomero.database.container.engine
options:
  step:
    description: What to do (see the description).
    type: str
    required: true
    choices: [prepare, begin, subscribe, synced, switchover, absent]
  target_container:
    description: The staging container of the new cluster (same O(login_user)). Required except for O(step=absent).
    type: str
  databases:
    description: The databases to copy (one publication and subscription each).
    type: list
    elements: str
    default: []
  host:
    description: Name of the old server on the private network (default O(container)).
    type: str
  catalog:
    description: The RV(catalog) of O(step=begin) (O(step=synced) and O(step=switchover) compare against it).
    type: dict
  sysid:
    description: The RV(sysid) of O(step=begin); lets O(step=absent) drop the tablesync slots once staging is gone.
    type: str
  timeout:
    description: Seconds to wait for the copy (O(step=synced)) or the final catch-up (O(step=switchover)).
    type: int
    default: 3600
  max_lag_bytes:
    description: O(step=synced) returns once each slot is at most this many bytes of WAL behind.
    type: int
    default: 16777216
  wal_level:
    description: O(step=prepare) sets C(wal_level=logical) with C(ALTER SYSTEM).
    type: bool
    default: false
  identity_full:
    description: O(step=prepare) sets C(REPLICA IDENTITY FULL) on these tables, named as the preflight's
      C(logical.replica_identity_full) names them (the database, a colon and a space, the quoted table).
    type: list
    elements: str
    default: []
  verify:
    description:
      - O(step=switchover) then fingerprints both clusters side by side (rows, sequences, roles, database properties,
        smoke counts; as M(nl_biomero.database.pg_fingerprint)), fails on any difference (naming them), and puts the
        write fence (M(nl_biomero.database.pg_write_fence)) on the new cluster.
    type: bool
    default: false
  kind:
    description: The smoke counts of the verification (as M(nl_biomero.database.pg_fingerprint)'s O(kind)).
    type: str
    default: auto
    choices: [auto, omero, biomero, none]
  fingerprint_databases:
    description: The databases the verification fingerprints (default O(databases)); the empty ones too.
    type: list
    elements: str
  network:
    description: O(step=switchover) then removes this network (the private one between both servers), disconnecting
      O(container) and O(target_container), which keep running.
    type: str
  counted:
    description:
      - The RV(counted) of O(step=synced). O(step=switchover) with O(verify) then takes a table's earlier count as
        it is when the table's file node and its cumulative counts of inserted and deleted rows (the server's
        statistics) are the same in that cluster, and counts every other table again (partitioned tables, tables
        with children and every table of a server before 15 always). Without it every table is counted.
    type: dict
attributes:
  check_mode:
    support: none
    description: The role only calls it outside check mode.
  diff_mode:
    support: none
    description: Not applicable.
  idempotent:
    support: partial
    description: O(step=absent) is idempotent; O(step=subscribe) fails when the publications exist.
seealso:
  - module: nl_biomero.database.pg_upgrade_pipe
  - module: nl_biomero.database.pg_write_fence
"""

EXAMPLES = r"""
- name: Drop whatever an interrupted logical upgrade left on the old server
  nl_biomero.database.pg_upgrade_logical:
    container: database
    step: absent
"""

RETURN = r"""
wal_level:
  description: Whether O(step=prepare) set C(wal_level) (a restart makes it count).
  returned: step prepare
  type: bool
replica_identity_full:
  description: Tables O(step=prepare) set to C(REPLICA IDENTITY FULL).
  returned: step prepare
  type: list
  elements: str
catalog:
  description: O(step=begin), per database a digest per object.
  returned: step begin
  type: dict
sysid:
  description: System identifier of the staging cluster.
  returned: step begin
  type: str
subscriptions:
  description: Subscription (and slot) name per database.
  returned: steps subscribe, synced
  type: dict
copy_s:
  description: Seconds O(step=synced) waited.
  returned: step synced
  type: float
counted:
  description: C(old) and C(new), per database per table its exact row count and change signature.
  returned: step synced
  type: dict
counted_s:
  description: Seconds the counting of O(step=synced) took (outside the downtime).
  returned: step synced
  type: float
tables_recounted:
  description: C(old) and C(new), the tables the verification counted again (changed since RV(counted)), each as
    the database, a colon and a space, and the table.
  returned: step switchover with O(verify)
  type: dict
catch_up_s:
  description: Seconds the final catch-up took.
  returned: step switchover
  type: float
wal_position:
  description: The old server's WAL position the slots caught up with.
  returned: step switchover
  type: str
sequences:
  description: Number of sequences set.
  returned: step switchover
  type: int
large_objects:
  description: C(count) and C(bytes) of the large objects copied.
  returned: step switchover
  type: dict
fingerprint:
  description: With O(verify), the old cluster's fingerprint (as M(nl_biomero.database.pg_fingerprint) returns it).
  returned: step switchover with O(verify)
  type: dict
network_removed:
  description: Whether O(network) was there and is removed.
  returned: step switchover with O(network)
  type: bool
new_system_identifier:
  description: With O(verify), the system identifier of the verified new cluster.
  returned: step switchover with O(verify)
  type: str
verify_s:
  description: Seconds the verification took.
  returned: step switchover with O(verify)
  type: float
dropped:
  description: C(subscriptions), C(slots) and C(publications) (databases) dropped.
  returned: steps switchover, absent
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.logical import logical_result
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import container_argument_spec


def main():
    module = AnsibleModule(
        argument_spec=container_argument_spec(
            step=dict(type="str", required=True, choices=["prepare", "begin", "subscribe", "synced", "switchover", "absent"]),
            target_container=dict(type="str"),
            databases=dict(type="list", elements="str", default=[]),
            host=dict(type="str"),
            catalog=dict(type="dict"),
            sysid=dict(type="str"),
            timeout=dict(type="int", default=3600),
            max_lag_bytes=dict(type="int", default=16777216),
            wal_level=dict(type="bool", default=False),
            identity_full=dict(type="list", elements="str", default=[]),
            verify=dict(type="bool", default=False),
            kind=dict(type="str", default="auto", choices=["auto", "omero", "biomero", "none"]),
            fingerprint_databases=dict(type="list", elements="str"),
            counted=dict(type="dict"),
            network=dict(type="str"),
        ),
        required_if=[("step", "begin", ["target_container"]), ("step", "subscribe", ["target_container"]),
                     ("step", "synced", ["target_container"]), ("step", "switchover", ["target_container"])],
        supports_check_mode=False,
    )
    run_module(module, lambda: logical_result(**module.params))


if __name__ == "__main__":
    main()
