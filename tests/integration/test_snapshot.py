"""Counts taken in a held, exported snapshot equal what pg_dump --snapshot writes, while a writer keeps inserting."""

import threading
import time

from harness import ENGINE

from ansible_collections.nl_biomero.database.plugins.module_utils.engine import EngineError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import PgContainer
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_snapshot import ExportedSnapshot

import pytest


def _writer(pg, stop):
    while not stop.is_set():
        pg.psql("INSERT INTO t (v) SELECT 'w' FROM generate_series(1, 50)", check=False)


@pytest.mark.parametrize("major", [15, 17])
def test_counts_match_the_dump_under_writes(pg_factory, major):
    db = pg_factory(major=major, prefix="nlbtest-snap")
    db.psql("CREATE TABLE t (id bigserial PRIMARY KEY, v text); INSERT INTO t (v) SELECT 'x' FROM generate_series(1, 1000)")
    pg = PgContainer(db.name, engine=ENGINE, user=db.user, password=db.password)
    stop = threading.Event()
    writer = threading.Thread(target=_writer, args=(db, stop))
    writer.start()
    try:
        time.sleep(0.5)
        with ExportedSnapshot(pg, db.database, timeout=60) as snap:
            counts = snap.row_counts()
            time.sleep(1)  # the writer commits more rows meanwhile
            rc, out, err = pg.exec_tool(["pg_dump", "--snapshot=" + snap.snapshot_id, "--data-only", "-t", "public.t"],
                                        database=db.database)
            assert rc == 0, err
    finally:
        stop.set()
        writer.join()
    copied = out.split("COPY public.t (id, v) FROM stdin;\n", 1)[1].split("\n\\.\n", 1)[0].count("\n") + 1
    assert counts == {"public.t": copied}
    assert int(db.query("SELECT count(*) FROM t")) > copied  # the writer really wrote during the dump
    assert db.query("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'") == "0"


def test_a_failed_session_leaves_no_transaction(pg_factory):
    db = pg_factory(major=17, prefix="nlbtest-snap")
    pg = PgContainer(db.name, engine=ENGINE, user=db.user, password=db.password)
    with pytest.raises(EngineError):
        with ExportedSnapshot(pg, "no_such_database", timeout=30):
            pass
    with pytest.raises(RuntimeError):
        with ExportedSnapshot(pg, db.database, timeout=30):
            raise RuntimeError("the dump failed")
    deadline = time.time() + 10
    while time.time() < deadline and db.query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                                              "AND pid <> pg_backend_pid()") != "0":
        time.sleep(0.2)
    assert db.query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                    "AND pid <> pg_backend_pid()") == "0"
