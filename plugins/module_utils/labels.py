# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container and volume label names the collection writes and reads, in one place."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Provisioning (role postgres_container, filter plugin): what an instance is.
INSTANCE_PREFIX = "nl-biomero.database."
INSTANCE_ROLE = INSTANCE_PREFIX + "role"
INSTANCE_MAJOR = INSTANCE_PREFIX + "major"

# Upgrade: put on the new container so that rollback and cleanup find the old one.
UPGRADE_PREFIX = "org.nl-biomero.upgrade."
UPGRADE_PREVIOUS_CONTAINER = UPGRADE_PREFIX + "previous-container"
UPGRADE_PREVIOUS_VOLUME = UPGRADE_PREFIX + "previous-volume"
UPGRADE_PREVIOUS_IMAGE = UPGRADE_PREFIX + "previous-image"
UPGRADE_FROM_MAJOR = UPGRADE_PREFIX + "from-major"
UPGRADE_VOLUME = UPGRADE_PREFIX + "volume"

# Every throwaway container or volume the collection starts (engine.throwaway_argv):
# its value says what for (e.g. restore-test, preflight); a sweep finds leftovers by it.
THROWAWAY = INSTANCE_PREFIX + "throwaway"
RESTORE_TEST = INSTANCE_PREFIX + "restore-test"

# Upgrade: on the new volume and the staging container, so that a recovery finds them after a killed run.
UPGRADE_INSTANCE = UPGRADE_PREFIX + "instance"
UPGRADE_MAJOR = UPGRADE_PREFIX + "major"
UPGRADE_STAGING_FOR = UPGRADE_PREFIX + "staging-for"

# Test stacks (module pg_stack): the stack a resource belongs to, and when the stack was made
# (epoch seconds), so that a teardown finds exactly what it made and a max_age sweep finds old stacks.
STACK = INSTANCE_PREFIX + "stack"
STACK_CREATED = INSTANCE_PREFIX + "stack-created"

# Metrics (role postgres_container, tasks/exporter.yml): on an exporter container, the instance it watches.
EXPORTER_OF = INSTANCE_PREFIX + "exporter-of"
