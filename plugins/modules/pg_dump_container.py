#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_dump_container
short_description: Verified logical backup of a database in a running PostgreSQL container
version_added: 0.1.0
description:
  - Runs C(pg_dump) of the container itself through C(docker exec) or C(podman exec) and streams its
    output straight into a hidden temporary file beside the destination on the managed host. Nothing is
    written inside the container (except for O(format=directory), see below), the dump is written once,
    and memory use does not grow with the database.
  - The file only gets its final name when C(pg_dump) exited successfully, the file is fsynced, verified
    (O(verify)) and its sha256 computed (for a file, from the stream as it is written; the dump is not
    read a second time). Then it is renamed atomically and a JSON manifest
    C(<dest>.manifest.json) is written beside it (database, container, image, server and C(pg_dump)
    versions, format, compression, bytes, sha256, start and end time in UTC, duration, globals file and
    its sha256).
  - On any failure (including C(pg_dump) being killed half-way) the task fails with the tool's error
    output, no file is left under the final name and all temporaries (on the host and in the container)
    are removed. The database is only read.
  - O(format=directory) cannot be written to a pipe, so C(pg_dump -Fd) runs with O(jobs) workers into a
    private C(mktemp -d) directory under C(/tmp) inside the container, which is then streamed out with
    C(<engine> cp CONTAINER:PATH -) (a tar stream, extracted on the fly, links and paths outside the
    dump refused) and always removed afterwards. This needs free space in the container of the size of
    the dump.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container
  - nl_biomero.database.container.engine
options:
  database:
    description:
      - Name of the database to dump. Any name works (it is passed in the environment, never parsed by a shell).
    type: str
    required: true
  dest:
    description:
      - Path of the dump on the managed host (a file, or for O(format=directory) a directory).
      - Its parent directory must exist and be writable.
      - An existing O(dest) (or its manifest or globals file) is an error unless O(force=true).
      - Mutually exclusive with O(dest_dir); one of them is required.
    type: path
  dest_dir:
    description:
      - Existing directory to write the dump to under the default name
        C(<database>.<YYYY-MM-DDTHH-MM-SSZ>.<ext>) (UTC time of the start; characters other than
        letters, digits, C(.), C(_) and C(-) in the database name become C(_)).
      - The extension is C(dump) (custom), C(dir) (directory), C(tar), C(sql) (plain; C(sql.gz) with gzip).
    type: path
  format:
    description:
      - pg_dump archive format. V(custom) and V(directory) can be restored selectively and in parallel
        by pg_restore; V(plain) is an SQL script for psql.
    type: str
    choices: [custom, directory, tar, plain]
    default: custom
  jobs:
    description:
      - Parallel pg_dump workers; only with O(format=directory) (each is a connection to the server).
      - Defaults to the container's CPU count (C(nproc) inside it), at most 8.
    type: int
  compress:
    description:
      - Compression as C(METHOD[:LEVEL]) (V(gzip), V(gzip:9), V(zstd:3), V(lz4), V(none)) or a bare
        gzip level (V(0) to V(9)).
      - V(auto) is V(zstd) when the container's pg_dump is 16 or newer (several times faster than gzip
        at a similar size), V(gzip) below; V(none) for V(tar) (pg_dump cannot compress it) and V(plain)
        (kept readable).
      - Methods the container's pg_dump lacks are refused (lz4 and zstd need pg_dump 16 or newer).
      - V(plain) compressed with lz4 or zstd needs O(verify=none) (it cannot be read back here).
    type: str
    default: auto
  globals:
    description:
      - Also dump roles and tablespaces with C(pg_dumpall --globals-only) to the sidecar file
        C(<dest>.globals.sql), placed atomically and listed in the manifest.
      - Needs O(login_user) to be a superuser (pg_dumpall reads the role passwords).
    type: bool
    default: false
  exclude_table_data:
    description:
      - Table name patterns (pg_dump C(--exclude-table-data)) whose definitions are dumped but not their rows.
    type: list
    elements: str
    default: []
  verify:
    description:
      - How the dump is read back before it gets its final name; the manifest records which
        (C(verification_level)) and what was read (C(verification)).
      - V(toc) reads the table of contents. V(custom) and V(tar) are piped into C(pg_restore --list) in the
        same container (a tar archive must also be complete); V(directory) runs C(pg_restore --list) on the
        staged copy in the container and checks the copied files and sizes. The table of contents sits at the
        start of the archive, so a dump cut short after it still passes.
      - V(full) also reads the whole archive with the container's C(pg_restore -f /dev/null) (streamed into
        the exec for V(custom) and V(tar), on the staged copy for V(directory)); every entry and data block is
        read and decompressed as a restore would, so a dump cut short or with a damaged block fails. It costs
        a second read of the archive and the CPU of decompressing it. For V(directory) the zstd and lz4 data
        files of the copy on the host are also walked frame by frame (C(pg_restore) 16 and 17 read such a
        file cut short without an error).
      - V(plain) must end with pg_dump's completion comment at either level (a gzip script is decompressed
        whole for that).
      - V(none) does not read the dump back. The boolean values of earlier versions still work (V(true) is
        V(toc), V(false) is V(none)).
      - In every case the exit status of C(pg_dump) is checked and the sha256 computed.
    type: raw
    default: toc
  mode:
    description:
      - Permissions of the dump, its manifest and globals file, as an octal string (quote it in YAML).
      - Directories (V(directory) format) get the matching mode with search bits (V('0600') gives C(0700)).
    type: raw
    default: '0600'
  force:
    description:
      - Replace an existing O(dest) (and its manifest and globals file).
      - The old dump is replaced only once the new one is complete and verified.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description:
      - Checks the engine, that the container runs, the connection and that the database exists, the
        compression, O(globals) privileges and the destination (directory writable, O(dest) absent unless
        O(force=true)); reports the path, format and compression it would write. Writes nothing.
  diff_mode:
    support: none
    description: There is no before/after to show; the result names the files written.
  idempotent:
    support: none
    description:
      - Every run takes a new dump and reports C(changed=true).
notes:
  - The password travels as E(PGPASSWORD) in the environment of the engine CLI (C(exec -e PGPASSWORD)),
    never on a command line. Client tools connect over the container's local socket.
  - Compression is what costs time on a big database; zstd (the default on 16+) is about three times
    faster than gzip.
  - Stop the applications that write to the database if the backup must be consistent with other
    data (for OMERO, with the binary repository); pg_dump itself is always consistent within the database.
seealso:
  - module: nl_biomero.database.pg_restore_container
"""

EXAMPLES = r"""
- name: Back up the OMERO database into /backups/omero (default name, custom format, zstd on 16+), read it all back
  nl_biomero.database.pg_dump_container:
    container: database
    database: omero
    dest_dir: /backups/omero
    globals: true
    verify: full
  register: omero_dump

- name: Parallel directory-format dump of the BIOMERO database
  nl_biomero.database.pg_dump_container:
    container: database-biomero
    database: biomero
    login_user: biomero
    login_password: "{{ biomero_db_password }}"
    format: directory
    jobs: 2
    dest: /backups/biomero/biomero.latest.dir
    force: true

- name: Plain SQL, gzip, without the rows of a big log table
  nl_biomero.database.pg_dump_container:
    container: database
    database: omero
    format: plain
    compress: gzip
    exclude_table_data:
      - public.eventlog
    dest_dir: /backups/omero
"""

RETURN = r"""
path:
  description: Path of the dump (in check mode, the path it would write).
  returned: always
  type: str
  sample: /backups/omero/omero.2026-11-26T02-35-50Z.dump
manifest:
  description: Path of the JSON manifest beside the dump.
  returned: always
  type: str
  sample: /backups/omero/omero.2026-11-26T02-35-50Z.dump.manifest.json
globals_path:
  description: Path of the globals sidecar file, or null without O(globals).
  returned: always
  type: str
  sample: /backups/omero/omero.2026-11-26T02-35-50Z.dump.globals.sql
globals_sha256:
  description: sha256 of the globals sidecar file, or null without O(globals).
  returned: success and not check mode
  type: str
bytes:
  description: Size of the dump (sum of the file sizes for V(directory) format).
  returned: success and not check mode
  type: int
  sample: 30614016
sha256:
  description:
    - sha256 of the dump file. For V(directory) format, the sha256 of the sorted lines
      C(<relative path>  <file sha256>) of its files.
  returned: success and not check mode
  type: str
  sample: 5b1c0e2f8f4c3a4d1c4a0b7f2c1d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e
format:
  description: Archive format.
  returned: always
  type: str
  sample: custom
compression:
  description: Compression used, as C(METHOD[:LEVEL]) or V(none).
  returned: always
  type: str
  sample: zstd
jobs:
  description: Parallel workers used (V(directory) format), else null.
  returned: always
  type: int
  sample: 2
server_version:
  description: Version of the PostgreSQL server.
  returned: always
  type: str
  sample: "17.6"
pg_dump_version:
  description: Version of the container's pg_dump.
  returned: always
  type: str
  sample: "17.6"
database_size:
  description: Size of the database on the server (pg_database_size), in bytes.
  returned: always
  type: int
  sample: 1073741824
duration_s:
  description: Seconds from the start to the placed, verified dump.
  returned: success and not check mode
  type: float
  sample: 5.2
dump_duration_s:
  description: Seconds pg_dump ran (including the copy out for V(directory) format).
  returned: success and not check mode
  type: float
  sample: 4.9
verified:
  description: Whether the dump was read back (O(verify) not V(none)).
  returned: success and not check mode
  type: bool
  sample: true
verification_level:
  description: How the dump is (in check mode, would be) read back, from O(verify), V(toc), V(full) or V(none).
  returned: always
  type: str
  sample: full
verification:
  description: What the read-back checked, in words (null without it); also in the manifest.
  returned: success and not check mode
  type: str
  sample: pg_restore --list in the container read 412 entries; pg_restore read every entry and data block of the archive (full read to /dev/null)
toc_entries:
  description: Entries pg_restore read from the table of contents, null for V(plain) or without O(verify).
  returned: success and not check mode
  type: int
  sample: 412
database:
  description: The database dumped.
  returned: always
  type: str
  sample: omero
container:
  description: The container.
  returned: always
  type: str
  sample: database
engine:
  description: The engine CLI used.
  returned: always
  type: str
  sample: docker
login_user:
  description: The role the tools connected as.
  returned: always
  type: str
  sample: omero
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils.dump import PgDump
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import container_argument_spec


def main():
    module = AnsibleModule(
        argument_spec=container_argument_spec(
            database=dict(type="str", required=True),
            dest=dict(type="path"),
            dest_dir=dict(type="path"),
            format=dict(type="str", default="custom", choices=["custom", "directory", "tar", "plain"]),
            jobs=dict(type="int"),
            compress=dict(type="str", default="auto"),
            globals=dict(type="bool", default=False),
            exclude_table_data=dict(type="list", elements="str", default=[]),
            verify=dict(type="raw", default="toc"),
            mode=dict(type="raw", default="0600"),
            force=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("dest", "dest_dir")],
        required_one_of=[("dest", "dest_dir")],
        supports_check_mode=True,
    )
    run_module(module, lambda: PgDump(**module.params).run(check_mode=module.check_mode))


if __name__ == "__main__":
    main()
