#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_backup_info
short_description: List backup sets and loose dumps in a backup directory
version_added: 0.1.0
description:
  - Reads the backup catalogue of a directory on the managed host from its
    manifests and reports, newest first, every backup set (a folder
    C(<path>/<YYYY-MM-DDTHH-MM-SSZ>/) with a C(set.manifest.json)) and every
    loose dump (a file or folder with a per-dump C(.manifest.json) beside it,
    as M(nl_biomero.database.pg_dump_container) writes them).
  - For each it gives the time, the databases, sizes, tool and server
    versions and whether it is complete. Only a set that was finished, whose
    every component succeeded and whose files are all present with their
    recorded sizes counts as complete.
  - A stamp-named folder without a readable set manifest is listed with
    status V(unknown) and never counts as complete; a set that never finished
    (in progress, or its run died) has status V(unfinished).
  - File presence and sizes are always checked (cheap); the sha256 of every
    file is re-computed only with O(verify_checksums).
  - Never changes anything.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
options:
  path:
    description:
      - The backup directory to list (the C(backup_dir) sets are created in).
    type: path
    required: true
  verify_checksums:
    description:
      - Re-read every recorded file and compare its sha256 with the manifest.
        A mismatch marks the set or dump V(damaged) (not complete).
      - Reads every byte of every backup, which takes long on big backups.
    type: bool
    default: false
  offsite:
    description:
      - Off-host targets to list too, as in O(nl_biomero.database.pg_backup_set#module:offsite) (the role's
        C(postgres_backup_offsite)); each is asked for the sets it stores (RV(remote)), also those whose local
        set is gone. With O(verify_checksums) each target re-reads its sets against their records.
    type: list
    elements: dict
    default: []
attributes:
  check_mode:
    support: full
    description: Runs in check mode too and reports the same; it only reads.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
  idempotent:
    support: full
    description: Never changes anything; the same backups give the same result.
seealso:
  - module: nl_biomero.database.pg_backup_retention
  - module: nl_biomero.database.pg_dump_container
"""

EXAMPLES = r"""
- name: List the backups of this host
  nl_biomero.database.pg_backup_info:
    path: /var/backups/nl-biomero
  register: catalogue

- name: Show the newest complete set
  ansible.builtin.debug:
    msg: "{{ catalogue.newest_complete.name }} holds {{ catalogue.newest_complete.databases | join(', ') }}"
  when: catalogue.newest_complete is not none

- name: Re-verify every checksum and fail on a damaged backup
  nl_biomero.database.pg_backup_info:
    path: /var/backups/nl-biomero
    verify_checksums: true
  register: verified
  failed_when: verified.sets | selectattr('checksums', 'equalto', 'mismatch') | list | length > 0
"""

RETURN = r"""
path:
  description: The directory that was listed, as an absolute path.
  returned: always
  type: str
  sample: /var/backups/nl-biomero
sets:
  description: Backup sets, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Folder name (the set's UTC stamp).
      type: str
      sample: 2026-03-14T02-00-00Z
    path:
      description: Absolute path of the set folder.
      type: str
    time:
      description: When the set was started, UTC, ISO 8601.
      type: str
      sample: "2026-03-14T02:00:00Z"
    started:
      description: Start time recorded in the manifest.
      type: str
    finished:
      description: End time recorded in the manifest; null when the run never finished.
      type: str
    duration_s:
      description: Duration of the run in seconds.
      type: float
    status:
      description:
        - V(complete), V(incomplete) (finished, something failed), V(unfinished)
          (in progress or the run died), V(damaged) (recorded complete, but a
          file is missing, or its size or checksum differs) or V(unknown) (no
          readable set manifest).
      type: str
      sample: complete
    complete:
      description: True only for status V(complete); only such a set is a good backup.
      type: bool
    databases:
      description: Databases dumped in the set.
      type: list
      elements: str
      sample: [omero, biomero]
    bytes:
      description: Total size of the set's successful components.
      type: int
    versions:
      description: Per component name, the versions recorded (server, pg_dump, image, ...).
      type: dict
      sample: {"omero": {"server": "17.2", "pg_dump": "17.2", "image": "postgres:17"}}
    components:
      description:
        - The components from the set manifest (name, kind, path, bytes,
          sha256, versions, duration_s, outcome, error and any extra keys),
          each with a C(problem) found while checking it, or null.
      type: list
      elements: dict
    checksums:
      description: V(not_checked), V(ok) or V(mismatch).
      type: str
    problems:
      description: Everything found wrong with the set.
      type: list
      elements: str
    error:
      description: The run's error recorded in the manifest.
      type: str
    restore_test:
      description: The restore test result recorded in the manifest, if any.
      type: dict
    offsite:
      description:
        - The off-host copies recorded in the manifest, by target name (C(verified), C(bytes), C(files),
          C(encrypted), C(target), C(time), C(error)), or null when the set was not copied.
      type: dict
    dated_in_future:
      description:
        - True when the set is dated in the future (made while the clock was wrong); it is never the
          RV(newest_complete) and retention counts it for nothing (a warning names it).
      type: bool
    format_version:
      description: Format version of the set manifest.
      type: int
dumps:
  description:
    - Loose dumps (outside sets), newest first. Keys as for O(ignore:sets)
      where they apply, plus C(database), C(format), C(compression),
      C(sha256), C(manifest) (the per-dump manifest's path) and
      C(globals_file).
  returned: always
  type: list
  elements: dict
  sample:
    - name: omero.2026-03-14T02-00-00Z.dump
      path: /var/backups/nl-biomero/omero.2026-03-14T02-00-00Z.dump
      time: "2026-03-14T02:00:00Z"
      status: complete
      complete: true
      database: omero
      bytes: 1048576
      versions: {"server": "17.2", "pg_dump": "17.2"}
      checksums: not_checked
      problems: []
remote:
  description:
    - Per target of O(offsite), the sets stored there (C(set), C(bytes), C(files), with O(verify_checksums)
      C(verified) and C(problems)), C(partial) (copies that did not finish) and C(error) when the target
      cannot be listed (unreachable, wrong key).
  returned: when O(offsite) names targets
  type: dict
newest_complete:
  description:
    - The newest complete set not dated in the future (same keys as an element of RV(sets)), or null when
      there is none.
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_set import (
    BackupSetError,
    list_backups,
    newest_complete,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_config import offsite_targets
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.offsite import list_targets
from ansible_collections.nl_biomero.database.plugins.module_utils.retention import dated_in_future


def _info(path, verify_checksums, offsite):
    path = os.path.abspath(path)
    try:
        catalogue = list_backups(path, verify_checksums=verify_checksums)
    except (BackupSetError, OSError) as exc:
        raise BackupSetError("cannot list backups in %s: %s" % (path, exc))
    warnings = []
    for entry in catalogue["sets"]:
        entry["dated_in_future"] = dated_in_future(entry["time"])
        if entry["dated_in_future"]:
            warnings.append("set %s is dated %s, in the future: made with a wrong clock? It is never taken as the "
                            "newest complete set" % (entry["name"], entry["time"]))
    real = [entry for entry in catalogue["sets"] if not entry["dated_in_future"]]
    result = dict(changed=False, path=path, sets=catalogue["sets"], dumps=catalogue["dumps"],
                  newest_complete=newest_complete(real), warnings=warnings)
    if offsite:
        result["remote"] = list_targets(offsite_targets(offsite), verify_checksums)
        warnings.extend("off-host target %s: %s" % (name, item["error"])
                        for name, item in sorted(result["remote"].items()) if item["error"])
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            verify_checksums=dict(type="bool", default=False),
            offsite=dict(type="list", elements="dict", default=[]),
        ),
        supports_check_mode=True,
    )
    run_module(module, lambda: _info(**module.params))


if __name__ == "__main__":
    main()
