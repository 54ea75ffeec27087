# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An exported snapshot held open: what a dump with ``pg_dump --snapshot`` sees, counted in the same view.

Counting rows before a dump and dumping afterwards disagree as soon as
anything writes in between. Here one REPEATABLE READ transaction exports its
snapshot and stays open (a psql session inside the container); the row counts
are taken in it and pg_dump reads the same snapshot, so the recorded counts
equal the archive's under any write load::

    with ExportedSnapshot(pg, "omero") as snap:
        counts = snap.row_counts()
        PgDump(..., snapshot=snap.snapshot_id).run()
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import uuid

from ansible_collections.nl_biomero.database.plugins.module_utils.engine import Session
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import SQL_TABLE_ROWS, PgError


class ExportedSnapshot:
    """A context manager holding a REPEATABLE READ, READ ONLY transaction with an exported snapshot."""

    def __init__(self, pg, database, timeout=None, lock_timeout=None):
        self.pg = pg
        self.database = database
        self.timeout = timeout
        self.lock_timeout = lock_timeout  # seconds a count waits for a table lock (None: no limit)
        self.snapshot_id = None
        self._session = None
        self._marker = "nlb-snapshot-%s" % uuid.uuid4().hex

    def _ask(self, sql):
        return self._session.exchange("%s\n\\echo %s\n" % (sql, self._marker), self._marker, timeout=self.timeout)

    def __enter__(self):
        env = self.pg.env(self.database)
        psql = ["psql", "-X", "-q", "-A", "-t", "--no-password", "-v", "ON_ERROR_STOP=1"]
        argv = self.pg.engine.exec_argv(self.pg.container, psql, env_names=sorted(env), interactive=True)
        self._session = Session(argv, env=env)
        try:
            setting = "SET LOCAL lock_timeout = %d;\n" % int(self.lock_timeout * 1000) if self.lock_timeout else ""
            lines = self._ask("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n%sSELECT pg_export_snapshot();"
                              % setting)
        except BaseException:
            self._session.close(kill=True)
            raise
        if not lines or not lines[-1].strip():
            self._session.close(kill=True)
            raise PgError("pg_export_snapshot() in %s answered nothing" % self.pg.container)
        self.snapshot_id = lines[-1].strip()
        return self

    def row_counts(self):
        """{'schema.table': rows} as the snapshot sees them."""
        lines = self._ask(SQL_TABLE_ROWS + ";")
        return json.loads(lines[-1]) if lines else {}

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self._ask("COMMIT;")
            self._session.close()
        else:
            self._session.close(kill=True)
        return False
