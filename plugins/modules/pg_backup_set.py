#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_backup_set
short_description: Take one backup set of several PostgreSQL containers (and host folders)
version_added: 0.1.0
description:
  - Takes one backup set under O(backup_dir) on the managed host, the same
    run the C(nl_biomero.database.postgres_backup) role schedules there, a
    folder C(<backup_dir>/<UTC stamp>/) with a verified dump (and the globals)
    of each database in O(databases), a C(tar.gz) of each host folder in
    O(paths), and a set manifest.
  - Per-table row counts of each database are recorded at backup time (for
    the restore test, M(nl_biomero.database.pg_restore_test)), counted in the
    snapshot the dump reads (an exported snapshot held open, C(pg_dump --snapshot)),
    so they equal the archive's whatever writes meanwhile.
  - O(clients) (e.g. the OMERO server, the importer, the BIOMERO worker) are
    stopped (or paused) before the first dump and started again afterwards,
    also when the backup fails. Clients that were not running are left alone.
    Each is recorded in a state file beside the lock before it is stopped; a run
    killed meanwhile is recovered by the next run (clients started, its set
    finished as incomplete).
  - Every part has a timeout (O(timeouts)); SIGTERM, SIGINT, SIGHUP and the run's
    ceiling stop the run on its failure path (clients started again, the set
    finished as incomplete).
  - The set is marked complete only when every component succeeded; otherwise
    it stays as an incomplete set (never counted as a good backup) and the
    module fails.
  - Optionally applies O(retention), restore-tests the new set
    (O(restore_test)), writes Prometheus node_exporter textfile metrics
    (O(metrics_file), written atomically) and runs O(notify_command) on failure.
  - The job's lock (flock on O(lock_file), shared with upgrade, rollback, restore
    and M(nl_biomero.database.pg_backup_lock)) refuses a run while someone else
    holds it; the failure names the holder and nothing is touched.
  - The options are the backup job's configuration schema (C(plugins/module_utils/backup_config.py)), the
    same the role's scheduled job reads from its JSON file.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container.engine
options:
  backup_dir:
    description: Directory holding the backup sets (created 0700).
    type: path
    required: true
  databases:
    description: The databases to dump, each into the same set.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Component name in the set (unique); defaults to O(databases[].database).
        type: str
      container:
        description: The running PostgreSQL container.
        type: str
        required: true
      database:
        description: The database to dump.
        type: str
        required: true
      user:
        description: Login role (a superuser for the globals); default the container's C(POSTGRES_USER).
        type: str
      password:
        description: Password of O(databases[].user) (passed in the exec environment only).
        type: str
      password_file:
        description: File on the managed host holding the password.
        type: path
      password_env:
        description: Environment variable on the managed host holding the password.
        type: str
      format:
        description: pg_dump archive format.
        type: str
        choices: [custom, directory, tar, plain]
        default: custom
      compress:
        description: Compression (C(auto) is zstd on pg_dump 16+, else gzip), e.g. C(gzip:6), C(none).
        type: str
        default: auto
      globals:
        description: Also dump the roles and tablespaces (pg_dumpall --globals-only).
        type: bool
        default: true
      jobs:
        description: Parallel jobs (format directory only).
        type: int
      row_counts:
        description: Record exact per-table row counts at backup time (in the dump's snapshot).
        type: bool
        default: true
      exclude_table_data:
        description: Tables whose data is left out (pg_dump --exclude-table-data patterns).
        type: list
        elements: str
        default: []
      verify:
        description:
          - How the dump is read back before it counts (O(nl_biomero.database.pg_dump_container#module:verify)).
          - V(full) reads the whole archive in the container (a cut archive fails), V(toc) only its table of
            contents.
        type: str
        choices: [full, toc, none]
        default: full
  paths:
    description: Host folders (or files) archived into the set as C(<name>.tar.gz), e.g. the Metabase folder.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Component name (unique); default the folder's base name.
        type: str
      path:
        description: Absolute path on the managed host.
        type: path
        required: true
      kind:
        description: What it is.
        type: str
        choices: [omero_data, omero_config, metabase, other]
        default: other
      incremental:
        description:
          - Keep the folder as a hard-linked snapshot C(<name>/) (with its index C(<name>.files.json)) instead of
            a C(.tar.gz) - files unchanged since the previous set's snapshot (same size and modification time)
            are hard links to it, only new and changed files are copied and hashed. For OMERO's binary
            repository, in the same file system as the backup directory's sets.
        type: bool
        default: false
  container_paths:
    description:
      - Folders inside containers (e.g. the OMERO binary repository C(/OMERO) of the OMERO.server
        container) archived into the set as C(<name>.tar.gz), streamed with C(<engine> cp); taken while
        the clients are stopped (a stopped container can be copied from).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Component name (unique); default the folder's base name.
        type: str
      container:
        description: The container.
        type: str
        required: true
      path:
        description: Absolute path inside the container.
        type: str
        required: true
      kind:
        description: What it is.
        type: str
        choices: [omero_data, omero_config, metabase, other]
        default: omero_data
  container_commands:
    description:
      - Commands run in (running) containers before the clients are stopped, their output saved as
        C(<name>.txt) (0600), e.g. C(omero config get --show-password) in the OMERO.server container.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Component name (unique).
        type: str
        required: true
      container:
        description: The container.
        type: str
        required: true
      command:
        description: The command, as an argv list.
        type: list
        elements: str
        required: true
      kind:
        description: What it is.
        type: str
        choices: [omero_data, omero_config, metabase, other]
        default: omero_config
  clients:
    description: Client containers to stop (or pause) during the backup and start again afterwards.
    type: list
    elements: str
    default: []
  client_action:
    description: Stop the clients, or pause them (freezes their processes; no shutdown).
    type: str
    choices: [stop, pause]
    default: stop
  clients_held_for:
    description:
      - How long the clients stay stopped (or paused). V(run) - the whole run (every dump and folder).
        V(snapshot) - only while each database's snapshot is taken and the folders that are not the binary
        repository (kind other than V(omero_data)) are copied; the dumps then read those snapshots with the
        clients running, and the binary repository is copied last (OMERO writes a file before it records it,
        so every file the database references is in the copy). The time they were held is recorded in the
        set manifest (C(clients_held_s)).
    type: str
    choices: [run, snapshot]
    default: run
  client_stop_timeout:
    description: Seconds a stopping client gets before it is killed.
    type: int
    default: 60
  compose_command:
    description:
      - The docker-compose command as an argv list (V([docker-compose]), V([docker, compose]) for compose V2).
        When given, a client container docker-compose made (its labels name the project directory) is stopped
        and started with C(<compose_command> -p <project> stop|start|pause|unpause <service>) in the project
        directory, so that compose's view stays true; other clients with the engine. Empty - all with the
        engine.
    type: list
    elements: str
    default: []
  metrics_file:
    description: Prometheus textfile (e.g. in node_exporter's textfile directory) rewritten after the run.
    type: path
  lock_file:
    description: Lock file; default C(<backup_dir>/.nl-biomero-backup.lock).
    type: path
  notify_command:
    description:
      - Command (argv list, no shell) run when the run fails; it gets
        C(NLB_BACKUP_STATUS), C(NLB_BACKUP_SET) and C(NLB_BACKUP_ERROR) in its environment.
    type: list
    elements: str
  retention:
    description:
      - Retention applied after the set (keys C(keep_last), C(keep_daily),
        C(keep_weekly), C(keep_monthly), C(prune_incomplete)); see
        M(nl_biomero.database.pg_backup_retention).
    type: dict
  restore_test:
    description: Restore-test the new set when it is complete (a failed restore test fails the module).
    type: bool
    default: false
  restore_test_timeout:
    description: Seconds a throwaway container of the restore test gets to start.
    type: int
    default: 180
  offsite:
    description:
      - Off-host copies. After a complete set (that passed its restore test, when there is one) the run
        copies every file of it to each target, where the receiving side hashes what it writes and reads
        it all back before the set is listed there; a failed copy is removed at the target, recorded in
        the set manifest (C(offsite)), the metrics and the notification, and fails the run; the local set stays.
      - A target is a directory (an NFS or SMB mount) or a backup host over SSH whose dedicated key runs
        the collection's C(offsite_store.py) as its forced command (see the role README).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The target's name (metrics label, manifest key).
        type: str
        required: true
      directory:
        description: An absolute directory (a mounted share) to copy the sets into. Give this or O(offsite[].ssh).
        type: path
      ssh:
        description: A backup host, reached with C(ssh -o BatchMode=yes). Give this or O(offsite[].directory).
        type: dict
        suboptions:
          host:
            description: The backup host.
            type: str
            required: true
          user:
            description: The user whose C(authorized_keys) holds the forced-command key.
            type: str
            required: true
          port:
            description: The SSH port.
            type: int
            default: 22
          identity_file:
            description: The private key of the dedicated backup key.
            type: path
          known_hosts:
            description: A known_hosts file holding the backup host's key (then the host key is checked strictly).
            type: path
      keep:
        description: How many sets the target keeps (the oldest beyond are deleted there after a verified copy); unset keeps all.
        type: int
      recipients:
        description:
          - age public keys (C(age1...) or SSH public keys). With any, every file is encrypted with C(age) on
            its way (stored as C(<file>.age)); the private key is only needed to restore, never on this host.
        type: list
        elements: str
        default: []
  timeouts:
    description:
      - Seconds each part of the run may take; a part that takes longer is killed and fails, the
        clients are started again and the set is finished as incomplete.
    type: dict
    suboptions:
      engine_call:
        description: A short engine call (inspect, a container command, stopping or starting a client on top of its stop timeout).
        type: int
        default: 120
      dump:
        description: One database (row counts, pg_dump, globals, verification).
        type: int
        default: 43200
      copy:
        description: One host folder or container folder.
        type: int
        default: 43200
      restore_test:
        description: The restore test of the set.
        type: int
        default: 43200
      lock_wait:
        description: How long pg_dump and the row counts wait for a table lock (pg_dump C(--lock-wait-timeout)).
        type: int
        default: 600
      run:
        description: The whole run; past it the run stops as on SIGTERM.
        type: int
        default: 72000
notes:
  - Passwords never appear in argv, logs or the result.
attributes:
  check_mode:
    support: partial
    description: Can run in check_mode and return the planned run.
    details: In check mode only the configuration is validated and the plan returned; the containers are not contacted, nothing is stopped or written.
  diff_mode:
    support: none
    description: No diff is returned.
  idempotent:
    support: none
    description: Every run takes a new backup set.
seealso:
  - module: nl_biomero.database.pg_dump_container
  - module: nl_biomero.database.pg_backup_info
  - module: nl_biomero.database.pg_backup_retention
  - module: nl_biomero.database.pg_restore_test
"""

EXAMPLES = r"""
- name: Back up OMERO DB, BIOMERO DB and the Metabase folder with the OMERO server stopped
  nl_biomero.database.pg_backup_set:
    backup_dir: /var/backups/nl-biomero
    databases:
      - {container: database, database: omero, user: omero, password_file: /etc/nl-biomero/omero.pw}
      - {container: database-biomero, database: biomero, user: biomero, password_file: /etc/nl-biomero/biomero.pw}
    paths:
      - {name: metabase, path: /srv/nl-biomero/metabase, kind: metabase}
    container_commands:
      - {name: omero.config, container: omeroserver, command: [/opt/omero/server/venv3/bin/omero, config, get, --show-password]}
    container_paths:
      - {name: OMERO, container: omeroserver, path: /OMERO}
    clients: [omeroserver, biomero-worker, biomero-importer]
    metrics_file: /var/lib/prometheus/node-exporter/nl_biomero_backup.prom
    retention: {keep_daily: 7, keep_weekly: 5, keep_monthly: 12}
"""

RETURN = r"""
set:
  description: Path of the new backup set.
  returned: when a set was started
  type: str
  sample: /var/backups/nl-biomero/2026-03-14T02-00-00Z
complete:
  description: Whether every component succeeded.
  returned: when a set was started
  type: bool
components:
  description: The set manifest's components (name, kind, path, bytes, sha256, versions, outcome, error, row_counts).
  returned: when a set was started
  type: list
  elements: dict
clients:
  description: What happened to each client container (state, restarted).
  returned: when a set was started
  type: list
  elements: dict
retention:
  description: Sets kept and deleted by O(retention).
  returned: when a set was started
  type: dict
restore_test:
  description: The restore test result (restorable, per database outcome and row count differences).
  returned: when a set was started
  type: dict
metrics_file:
  description: The metrics file written, or null.
  returned: when a set was started
  type: str
plan:
  description: In check mode, what a run would do.
  returned: check mode
  type: dict
log:
  description: The run's log lines.
  returned: when a set was started
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_config import module_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_run import backup_set_module
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module


def main():
    module = AnsibleModule(argument_spec=module_argument_spec(), supports_check_mode=True)
    run_module(module, lambda: backup_set_module(module.params, check_mode=module.check_mode))


if __name__ == "__main__":
    main()
