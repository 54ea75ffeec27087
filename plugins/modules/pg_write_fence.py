#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_write_fence
short_description: Refuse new writes to databases of a PostgreSQL container and end the other sessions, or lift that
version_added: 0.2.0
description:
  - The write fence of an upgrade or an overwriting restore. With O(state=on), for each database, in one
    transaction, C(ALTER DATABASE ... SET default_transaction_read_only = on) and a record of the value that
    setting had (the custom setting C(nl_biomero.write_fence) on the same database); then every other client
    session on those databases is ended, and the module waits until the sessions that started before the
    fence are gone. Clients that reconnect get read-only sessions (a superuser such as OMERO's owner role too)
    and see errors on every write.
  - With O(state=off), C(default_transaction_read_only) is put back as the record says (reset, or the value it
    had before) and the record removed; the sessions that started under the fence are ended so that they
    reconnect writable.
  - The record lives in the database, so a rollback run later or from elsewhere finds it, and a dump of a
    fenced database carries it; O(state=off) on the restored copy lifts it there too.
  - Putting the fence up again on a fenced database keeps the first record (the value from before the first
    fence).
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container
  - nl_biomero.database.container.engine
options:
  state:
    description: V(on) puts the fence up; V(off) lifts it.
    type: str
    choices: ["on", "off"]
    default: "on"
  databases:
    description:
      - Databases to fence or unfence. Databases that do not exist are skipped and listed in RV(missing).
      - Default with O(state=on) every database that accepts connections except templates; with O(state=off)
        every database that carries the fence's record.
    type: list
    elements: str
  terminate:
    description: End the other client sessions on the databases (those that could still write, or, when lifting,
      that are read-only until they reconnect).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for ended sessions to go; the task fails naming those still there.
    type: int
    default: 30
  system_identifier:
    description:
      - Change nothing and fail unless the server's system identifier (C(pg_control_system())) is this one, e.g. to
        lift the fence only from the cluster that was verified (the upgrade, on the instance it swapped in). Read
        in the same query as the databases.
    type: str
attributes:
  check_mode:
    support: full
    description: Reports the databases it would fence or lift, the previous settings and the sessions it would end.
  diff_mode:
    support: none
    description: Not implemented.
  idempotent:
    support: full
    description: Fencing a fenced database or lifting an unfenced one changes no setting (sessions found are still
      ended and reported).
notes:
  - A client that sets C(default_transaction_read_only=off) itself (or runs C(BEGIN READ WRITE)) still writes, and
    so do roles whose own settings (C(ALTER ROLE ... SET default_transaction_read_only)) override the database's;
    the module warns about such roles. The upgrade's verification still catches their writes.
  - Needs a superuser (or a member of C(pg_signal_backend) for sessions of non-superusers) as O(login_user).
seealso:
  - module: nl_biomero.database.pg_fingerprint
  - module: nl_biomero.database.pg_upgrade_pipe
"""

EXAMPLES = r"""
- name: Refuse writes to the OMERO database before it is dumped
  nl_biomero.database.pg_write_fence:
    container: database
    databases: [omero]
  register: fence

- name: Let it be written again
  nl_biomero.database.pg_write_fence:
    container: database
    state: "off"
"""

RETURN = r"""
databases:
  description: The databases the call was about.
  returned: always
  type: list
  elements: str
fenced:
  description: Databases the fence was put up on by this call (O(state=on)).
  returned: when O(state=on)
  type: list
  elements: str
already_fenced:
  description: Databases that were fenced already; their first record is kept (O(state=on)).
  returned: when O(state=on)
  type: list
  elements: str
previous:
  description: Per database, C(default_transaction_read_only) before the fence (null when not set on it).
  returned: when O(state=on)
  type: dict
lifted:
  description: Databases the fence was lifted from (O(state=off)).
  returned: when O(state=off)
  type: list
  elements: str
not_fenced:
  description: Listed databases that carried no fence (O(state=off)).
  returned: when O(state=off)
  type: list
  elements: str
restored:
  description: Per lifted database, the C(default_transaction_read_only) value put back (null means reset).
  returned: when O(state=off)
  type: dict
missing:
  description: Listed databases that do not exist.
  returned: always
  type: list
  elements: str
sessions:
  description: The other client sessions found on the databases before the change (what check mode would end).
  returned: always
  type: list
  elements: dict
sessions_ended:
  description: The sessions ended (pid, database, user, application_name, client_addr, backend_start, state).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import container_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.write_fence import fence_result


def main():
    module = AnsibleModule(
        argument_spec=container_argument_spec(
            state=dict(type="str", default="on", choices=["on", "off"]),
            databases=dict(type="list", elements="str"),
            terminate=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=30),
            system_identifier=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    run_module(module, lambda: fence_result(check_mode=module.check_mode, **module.params))


if __name__ == "__main__":
    main()
