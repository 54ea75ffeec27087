#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_restore_container
short_description: Restore a pg_dump archive into a database in a running PostgreSQL container
version_added: 0.1.0
description:
  - Restores a dump made by M(nl_biomero.database.pg_dump_container), or any C(pg_dump) archive (for example
    the C(.pg_dump) file of an existing OMERO install), into a database of a running PostgreSQL container,
    with the container's own C(pg_restore) (or C(psql) for a plain SQL script) run through C(docker exec)
    or C(podman exec).
  - Before the target is touched it checks the archive header (format, and the versions of the server it
    was dumped from and of C(pg_dump)) and that the target is not an older major version (a dump from a
    newer major version fails with a message naming both versions), the state of the target database
    (see O(if_exists)), the archive's sha256 against the manifest C(<src>.manifest.json) (see
    O(verify_checksum)), that the target container's C(pg_restore) reads the archive's table of contents,
    and that the roles owning the archive's objects exist in the target (or are created by O(globals)).
    Check mode stops there and reports what would happen.
  - A database the module creates is first restored under a temporary name (C(nlb_restore_<hex>)) and only
    renamed to O(database) once C(pg_restore --exit-on-error) and C(ANALYZE) succeeded. If anything fails,
    the temporary database is dropped, so no half-restored database ever carries the final name and an
    existing database (O(if_exists=replace)) is untouched.
  - A database the module creates (a new one, or the copy that O(if_exists=replace) swaps in) gets the
    database-level properties the archive records for its database. C(pg_restore --create) of the archive's
    own database entries prints them; a quote-aware reader keeps only statements about that database. It is
    created with the source's encoding and locale options (C(ENCODING), C(LOCALE_PROVIDER), C(LOCALE),
    C(LC_COLLATE), C(LC_CTYPE), C(ICU_LOCALE), C(ICU_RULES), C(BUILTIN_LOCALE)), and once restored and
    analyzed, still under its temporary name, it gets the owner, connection limit, C(ALTER DATABASE ... SET)
    settings, C(ALTER ROLE ... IN DATABASE ... SET) settings, C(GRANT)/C(REVOKE) on the database and its
    comment, in one transaction. They belong to the database object, so the rename carries them; a failure
    there drops the temporary database like any other and leaves an existing one untouched.
  - Property statements that name a role the target lacks (and O(globals) does not create) are left out,
    reported in RV(database_properties.left_out) and as a warning; the restore goes on. A plain SQL script,
    or an archive without a C(DATABASE) entry (a data-only dump), records no properties; the database is then
    created with the target's defaults as before, and RV(database_properties.note) says so. An existing
    database restored in place (empty, or O(if_exists=clean)) keeps its own properties.
  - custom, tar and plain archives are streamed from the file on the managed host into the exec's standard
    input; nothing is written inside the container and memory use does not grow with the archive.
    C(pg_restore) reads a directory archive only from a directory, and a parallel restore (O(jobs) > 1)
    needs a file it can seek in, so those are first copied into a private C(mktemp -d) directory under
    O(staging_dir) inside the container with C(<engine> cp) (a tar stream built on the fly) and always
    removed afterwards. This needs free space in the container of the size of the archive.
  - The restoring sessions run with C(synchronous_commit=off) (and O(maintenance_work_mem) if set); the
    final rename commits synchronously, which makes everything before it durable.
  - Afterwards it runs C(ANALYZE) (O(analyze)) and returns the tables of the database with their row counts.
  - Stop the clients of the database (OMERO.server, BIOMERO workers, importer) before restoring over an
    existing database; O(if_exists=replace) terminates the sessions still connected when it swaps.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container
  - nl_biomero.database.container.engine
options:
  database:
    description:
      - Name of the database to restore into. Any name works (it reaches SQL as a quoted identifier and the
        tools as a quoted connection string; it is never parsed by a shell).
    type: str
    required: true
  src:
    description:
      - The archive on the managed host. A file (custom or tar format, or a plain SQL script, optionally
        gzip-compressed) or a directory (directory format, with its C(toc.dat)).
      - The format is read from the archive itself, not from its name.
    type: path
    required: true
  jobs:
    description:
      - Number of parallel C(pg_restore) jobs (one connection each).
      - More than 1 needs a custom or directory archive and is incompatible with O(single_transaction). A custom
        archive restored with more than 1 job is staged in the container (see the description).
      - Default is 1 for custom, tar and plain archives (streamed, nothing written in the container) and the
        number of CPUs of the container (at most 8) for directory archives.
    type: int
  owner:
    description:
      - Owner of a database the module creates. Default is the owner the archive records for its database
        (when that role exists in the target), else the owner of the database being replaced, or O(login_user).
      - With O(no_owner=true), C(pg_restore) also runs as this role (C(--role)), so every restored object,
        large objects included, belongs to it. This is how a dump from another cluster (whose roles do not
        exist here) is adopted by the application role of this one.
      - The role must exist (or be created by O(globals)).
    type: str
  no_owner:
    description:
      - Do not restore the archive's object ownership (C(pg_restore --no-owner)); objects belong to the
        role that restores them (O(owner) if set, else O(login_user)).
      - Not possible for a plain SQL script.
    type: bool
    default: false
  no_privileges:
    description:
      - Do not restore the archive's access privileges (C(GRANT)/C(REVOKE), C(pg_restore --no-privileges)).
      - Not possible for a plain SQL script.
    type: bool
    default: false
  globals:
    description:
      - Before the database, restore the roles and tablespaces from the globals file that
        M(nl_biomero.database.pg_dump_container) wrote beside the archive (C(globals_file) of the manifest,
        else C(<src>.globals.sql); the output of C(pg_dumpall --globals-only)). Its sha256 is checked
        against the manifest when O(verify_checksum) applies.
      - The file comes from the source cluster, where any login role can put text of its choosing into it
        (its own settings, comments). So it is never rewritten line by line; a quote-aware reader splits it
        into statements, and only statements of known shapes are kept, verbatim, and only about roles and
        tablespaces the target lacks (C(CREATE ROLE), C(ALTER ROLE ... WITH|SET|RESET), C(COMMENT ON ROLE),
        memberships and parameter grants whose grantee is a role created here, C(CREATE|ALTER|COMMENT ON
        TABLESPACE), and the session C(SET)s of C(pg_dumpall)). Everything else (other statements, psql
        meta-commands such as C(\restrict)) is left out and counted in RV(globals.statements_left_out).
      - Roles and tablespaces that already exist in the target are left exactly as they are and gain no
        membership. Running their statements would fail with C(role already exists) for the cluster
        superuser, or worse, reset its password and attributes to those of the source cluster. Missing
        roles are created with their attributes and password hashes. The script runs with
        C(ON_ERROR_STOP), so any error fails the task (roles created before the error remain; roles are
        cluster-wide).
      - The result's RV(globals) lists the roles created and left alone.
    type: bool
    default: false
  carry_login_role:
    description:
      - With O(globals), also apply what the file says of the O(login_user) role itself (its attributes,
        password hash, settings and comment; never a membership), although it exists in the target.
      - For an upgrade into a new cluster of the same instance, where the image created that role anew
        with the container's C(POSTGRES_PASSWORD); the role then keeps the password and settings it had.
        Leave it off when restoring into another installation.
    type: bool
    default: false
  if_exists:
    description:
      - What to do when O(database) exists.
      - A database that does not exist is created (O(owner), from C(template0)) under a temporary name,
        restored and renamed.
      - V(fail) (default) restores into an existing database only when it has no user relations and no large
        objects (for example the empty database the image created from E(POSTGRES_DB); it keeps its owner,
        settings and grants), and fails otherwise, changing nothing.
      - V(skip) leaves a non-empty database alone and reports no change (an empty one is restored into).
      - V(replace) restores into a new database under a temporary name and, only when that succeeded,
        refuses new connections to the existing one, terminates its sessions, renames it aside, gives the
        new one its name and drops the old one. Until the swap the old database is untouched; a failed
        restore leaves it as it was. Needs room for both copies. The new database has the archive's
        database-level properties (see the description), not those of the database it replaces.
      - V(clean) restores in place with C(pg_restore --clean --if-exists), dropping the archive's objects
        before re-creating them; objects that are not in the archive stay. A failed restore leaves the
        database partly restored unless O(single_transaction=true). Not possible for a plain SQL script.
    type: str
    choices: [fail, skip, replace, clean]
    default: fail
  single_transaction:
    description:
      - Restore in one transaction (C(pg_restore --single-transaction) or C(psql --single-transaction)), so an
        in-place restore is all or nothing. Incompatible with O(jobs) > 1.
    type: bool
    default: false
  analyze:
    description:
      - Run C(ANALYZE) on the restored database before it gets its final name (a restore leaves no planner
        statistics).
    type: bool
    default: true
  verify_checksum:
    description:
      - Compare the archive's sha256 (for a directory, the manifest's directory scheme) with the manifest
        C(<src>.manifest.json) before restoring.
      - Default is to verify when a manifest exists. V(true) fails when there is no manifest; V(false) never
        verifies (the target's C(pg_restore) still has to read the table of contents).
    type: bool
  staging_dir:
    description:
      - Absolute directory inside the container under which a private staging directory is created when the
        archive has to be copied in (directory format, or O(jobs) > 1). It needs free space of the size of the
        archive. Do not use a C(tmpfs) mount (C(<engine> cp) writes below it).
    type: str
    default: /tmp
  maintenance_work_mem:
    description:
      - C(maintenance_work_mem) for the restoring sessions (for example V(512MB)); speeds up index builds.
        Each parallel job may use this much memory.
    type: str
  count_rows:
    description:
      - How the returned per-table row counts (RV(row_counts)) are obtained after the restore.
      - V(exact) counts every table (C(count(*)); a full scan of each table).
      - V(estimate) reads the planner's estimates (exact enough after O(analyze); instant on large databases).
    type: str
    choices: [exact, estimate]
    default: exact
attributes:
  check_mode:
    support: full
    description: Can run in check_mode and return changed status prediction without modifying target.
    details:
      - Runs every check (checksum, archive header and versions, C(pg_restore --list) in the target
        container, roles, target state) and returns the RV(actions) it would take, with the database-level
        properties it would apply and leave out (RV(database_properties)).
      - For a directory archive only its C(toc.dat) is copied into a temporary directory in the container
        to be listed there, and removed again. The database is not touched.
      - The checks are read-only, so check mode gives the same answer each time it runs.
  diff_mode:
    support: none
    description: There is no before/after to show; RV(actions) lists what was done.
  idempotent:
    support: partial
    description: Whether a second run with the same arguments reports no change.
    details:
      - A restore always changes the target. With O(if_exists=skip) a re-run leaves the restored database
        alone (C(changed=false)); with the default O(if_exists=fail) a re-run fails because the database is
        no longer empty.
notes:
  - Passwords travel to the tools in the exec environment (E(PGPASSWORD)), never on a command line, and
    are not returned.
  - A dump can only be restored into the same or a newer PostgreSQL major version; restoring into a newer
    one is how NL-BIOMERO's databases move to a new major version.
  - Objects owned by or granted to roles that the target does not have make C(pg_restore) fail; use
    O(globals), create the roles first, or adopt the objects with O(no_owner) and O(no_privileges).
  - Directory and custom archives written by M(nl_biomero.database.pg_dump_container) with zstd or lz4
    compression need a target C(pg_restore) built with that method (PostgreSQL 16 and later on Debian).
seealso:
  - module: nl_biomero.database.pg_dump_container
  - name: pg_restore
    description: The PostgreSQL tool this module drives.
    link: https://www.postgresql.org/docs/current/app-pgrestore.html
"""

EXAMPLES = r"""
- name: Restore the newest OMERO dump into a fresh PostgreSQL 17 container
  nl_biomero.database.pg_restore_container:
    container: omero-db-17
    database: omero
    src: /backups/omero/omero.2026-11-26T02-00-00Z.dump
    globals: true

- name: Replace the BIOMERO database with last night's directory dump, 4 jobs
  nl_biomero.database.pg_restore_container:
    container: database-biomero
    database: biomero
    src: /backups/biomero/biomero.2026-11-26T02-00-00Z.dir
    jobs: 4
    if_exists: replace
    maintenance_work_mem: 512MB

- name: Adopt an existing OMERO install's dump (no manifest, roles of another cluster)
  nl_biomero.database.pg_restore_container:
    container: omero-db
    database: omero
    src: /srv/old-server/omero.pg_dump
    owner: omero
    no_owner: true
    no_privileges: true

- name: What would a restore do? (runs all checks, changes nothing)
  nl_biomero.database.pg_restore_container:
    container: omero-db
    database: omero
    src: /backups/omero/omero.2026-11-26T02-00-00Z.dump
    if_exists: replace
  check_mode: true
  register: restore_plan
"""

RETURN = r"""
msg:
  description: What was done (or would be done in check mode).
  returned: always
  type: str
database:
  description: The target database.
  returned: success
  type: str
  sample: omero
container:
  description: The target container.
  returned: success
  type: str
engine:
  description: The container engine CLI used.
  returned: success
  type: str
  sample: docker
src:
  description: Absolute path of the archive.
  returned: success
  type: str
format:
  description: Format of the archive, read from the archive.
  returned: success
  type: str
  sample: custom
archive_version:
  description: Archive format version from the archive header (C(null) for plain scripts).
  returned: success
  type: str
  sample: 1.16-0
compression:
  description: Compression recorded in the archive header.
  returned: success
  type: str
  sample: zstd
dump_server_version:
  description: Version of the server the archive was dumped from (header, else manifest; C(null) if unknown).
  returned: success
  type: str
  sample: "15.14"
dump_version:
  description: Version of the C(pg_dump) that wrote the archive (C(null) if unknown).
  returned: success
  type: str
  sample: "15.14"
target_server_version:
  description: Version of the target server.
  returned: success
  type: str
  sample: "17.6"
restore_tool_version:
  description: Version of the target container's C(pg_restore) (C(psql) for a plain script).
  returned: success
  type: str
  sample: "17.6"
checksum_verified:
  description: Whether the archive's sha256 was checked against its manifest.
  returned: success
  type: bool
plan:
  description:
    - V(create) (new database), V(in_place) (existing empty database), V(replace), V(clean) or V(skip).
  returned: success
  type: str
  sample: create
jobs:
  description: Parallel jobs used (or planned).
  returned: success
  type: int
staged:
  description: Whether the archive is copied into the container (directory format or O(jobs) > 1).
  returned: success
  type: bool
toc_entries:
  description: Entries in the archive's table of contents (C(null) for plain scripts).
  returned: success
  type: int
tables_restored:
  description: Tables restored with their data (C(TABLE DATA) entries of the archive; C(null) for plain scripts).
  returned: success
  type: int
  sample: 12
globals:
  description: What O(globals) did or would do (C(null) without O(globals)).
  returned: success
  type: dict
  contains:
    path:
      description: The globals file.
      type: str
    roles_created:
      description: Roles created from the file.
      type: list
      elements: str
    roles_skipped:
      description: Roles of the file that existed in the target and were not created.
      type: list
      elements: str
    roles_carried:
      description: Existing roles whose attributes, password and settings were applied (O(carry_login_role)).
      type: list
      elements: str
    tablespaces_created:
      description: Tablespaces created.
      type: list
      elements: str
    tablespaces_skipped:
      description: Tablespaces that existed and were left untouched.
      type: list
      elements: str
    statements_left_out:
      description:
        - Statements of the file that were not run because they are not one of the kept shapes, named by
          their first keywords (never their text), for example C(psql meta-command) or C(SELECT).
      type: list
      elements: str
database_properties:
  description:
    - The archive's database-level properties for a database the module creates (V(create) and V(replace)
      plans; C(null) for the others). In check mode, what would be applied.
  returned: success
  type: dict
  contains:
    source:
      description: V(archive), or V(none) when the archive records no properties (see RV(database_properties.note)).
      type: str
    create_options:
      description: The encoding and locale options the database is created with, as SQL values.
      type: dict
      sample: {ENCODING: "'UTF8'", LOCALE_PROVIDER: libc, LOCALE: "'en_US.utf8'"}
    applied:
      description: The statements applied (owner, connection limit, settings, grants, comment), with the final name.
      type: list
      elements: str
      sample: ["ALTER DATABASE \"omero\" SET work_mem TO '12MB';"]
    left_out:
      description: Statements not applied because they name roles the target lacks, with those roles.
      type: list
      elements: dict
    note:
      description: Why the database got the target's defaults, or null.
      type: str
actions:
  description: The steps taken, or in check mode the steps that would be taken.
  returned: success
  type: list
  elements: str
tables:
  description: The user tables of the restored database (C(schema.table)); empty in check mode.
  returned: success
  type: list
  elements: str
  sample: [public.experimenter, public.image]
row_counts:
  description: Rows per table of the restored data, counted before it is put in place (see O(count_rows)); empty in check mode.
  returned: success
  type: dict
  sample: {public.image: 120345, public.experimenter: 12}
rows_total:
  description: Sum of RV(row_counts).
  returned: success
  type: int
duration_s:
  description: Wall time of the task in seconds.
  returned: success
  type: float
restore_duration_s:
  description: Wall time of C(pg_restore)/C(psql) alone in seconds.
  returned: changed
  type: float
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import container_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.restore import PgRestore


def main():
    module = AnsibleModule(
        argument_spec=container_argument_spec(
            database=dict(type="str", required=True),
            src=dict(type="path", required=True),
            jobs=dict(type="int"),
            owner=dict(type="str"),
            no_owner=dict(type="bool", default=False),
            no_privileges=dict(type="bool", default=False),
            globals=dict(type="bool", default=False),
            carry_login_role=dict(type="bool", default=False),
            if_exists=dict(type="str", default="fail", choices=["fail", "skip", "replace", "clean"]),
            single_transaction=dict(type="bool", default=False),
            analyze=dict(type="bool", default=True),
            verify_checksum=dict(type="bool"),
            staging_dir=dict(type="str", default="/tmp"),
            maintenance_work_mem=dict(type="str"),
            count_rows=dict(type="str", default="exact", choices=["exact", "estimate"]),
        ),
        supports_check_mode=True,
    )
    run_module(module, lambda: PgRestore(**module.params).run(check_mode=module.check_mode))


if __name__ == "__main__":
    main()
