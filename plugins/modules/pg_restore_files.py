#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_restore_files
short_description: Restore the non-database components of a backup set (/OMERO, OMERO configuration, Metabase, host folders)
version_added: 0.1.0
description:
  - Restores chosen components of a backup set (as the backup job and
    M(nl_biomero.database.pg_backup_set) write them) of the kinds
    C(omero_data), C(omero_config), C(metabase) and C(other) - the folders
    archived as C(<name>.tar.gz) and command outputs saved as C(<name>.txt),
    such as the output of C(omero config get --show-password).
  - Before anything is touched, every chosen component is checked against the
    set manifest (size and sha256), each archive must hold one top entry and
    no member leaving it, and each target must be missing or empty unless
    O(overwrite=true) (or the component's own C(overwrite)). A target inside a
    target restored earlier in the same task counts as new.
  - A host target (only C(path)) is extracted into a hidden folder beside it and
    swapped in by rename; the old content is moved aside and removed only once
    the new one is in place.
  - A container target (C(container) and C(path)) must lie on a volume or bind
    mount of that container (running or stopped). A throwaway container of the
    container's image (or O(image)) with C(--volumes-from) extracts into a
    staging folder inside the target folder, then swaps every entry by rename;
    a file is written beside its target and renamed over it (mode 0600, owned
    like its folder). Ownership and modes of the archive are kept.
  - On a failure the staging copy is removed and the target is as it was.
  - Stopping the clients (the OMERO server) around the restore is the caller's
    part (M(nl_biomero.database.pg_clients); the role's C(restore) entry point
    does it).
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container.engine
options:
  set:
    description:
      - The backup set folder (holding C(set.manifest.json)).
    type: path
    required: true
  restores:
    description:
      - The components to restore, in order, each with its target.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The component's name in the set (e.g. C(OMERO), C(omero.config), C(metabase)).
        type: str
        required: true
      path:
        description: The target, an absolute path on the host or, with O(restores[].container), in that container.
        type: str
        required: true
      container:
        description: The container whose volume holds O(restores[].path); omitted for a host path.
        type: str
      overwrite:
        description: Replace a target that is not empty (default O(overwrite)).
        type: bool
  overwrite:
    description:
      - Replace targets that are not empty. Without it such a target is refused and nothing is changed.
    type: bool
    default: false
  image:
    description:
      - The image of the throwaway container for container targets (it needs C(sh), GNU C(tar), C(find)
        and coreutils); default the target container's own image.
    type: str
  timeout:
    description:
      - Seconds one component's restore may take; it is stopped then and the target left as it was.
    type: int
    default: 3600
attributes:
  check_mode:
    support: full
    description: In check mode every check runs (checksums, archives, targets) and nothing is changed.
  diff_mode:
    support: none
    description: No diff is reported.
  idempotent:
    support: none
    description: A second run finds the targets not empty and refuses without O(overwrite).
seealso:
  - module: nl_biomero.database.pg_restore_container
  - module: nl_biomero.database.pg_backup_info
"""

EXAMPLES = r"""
- name: Restore /OMERO into the OMERO server's volume, its configuration beside it, and Metabase's folder
  nl_biomero.database.pg_restore_files:
    set: /var/backups/nl-biomero/2026-03-14T02-00-00Z
    restores:
      - {name: OMERO, container: omeroserver, path: /OMERO}
      - {name: omero.config, container: omeroserver, path: /OMERO/backup/omero.config}
      - {name: metabase, path: /opt/nl-biomero/metabase}
"""

RETURN = r"""
set:
  description: The set folder.
  returned: success
  type: str
restored:
  description: The components restored (in check mode, those that would be) with their targets.
  returned: success
  type: list
  elements: dict
  sample:
    - {name: OMERO, kind: omero_data, container: omeroserver, path: /OMERO, bytes: 1234, sha256: "...",
       duration_s: 1.2}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils.engine import engine_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.restore_files import RestoreFiles


def main():
    module = AnsibleModule(argument_spec=dict(
        set=dict(type="path", required=True),
        restores=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            path=dict(type="str", required=True),
            container=dict(type="str"),
            overwrite=dict(type="bool"),
        )),
        overwrite=dict(type="bool", default=False),
        image=dict(type="str"),
        timeout=dict(type="int", default=3600),
        **engine_argument_spec()), supports_check_mode=True)
    params = module.params
    restores = [dict((key, value) for key, value in item.items() if value is not None) for item in params["restores"]]
    run_module(module, lambda: RestoreFiles(params["set"], restores, overwrite=params["overwrite"],
                                            engine=params["engine"], image=params["image"],
                                            timeout=params["timeout"]).run(check_mode=module.check_mode))


if __name__ == "__main__":
    main()
