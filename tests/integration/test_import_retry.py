"""biomero_import_retry / biomero_import_info against a real PostgreSQL container.

The schema is created the way BIOMERO.importer creates it (SQLAlchemy create_all:
tables, serial ids, the indexes), orders are seeded through their life cycle the
way the importer writes them (one row per stage change), and the importer's poll
query is run as the importer runs it. Modules run through ansible-playbook; the
concurrency tests drive the module_utils core from threads with separate
connections. Nothing about the database is mocked.
"""
import datetime
import json
import os
import subprocess
import tempfile
import threading
import time
import uuid as uuidlib

import pytest

from harness import REPO_ROOT, container_ip, run_module  # noqa: E402  (importing harness links the collection)
from importer_fixture import INFO, RETRY, SCHEMA_FULL, SCHEMA_OLD, connect, module_args, scalar

from ansible_collections.nl_biomero.database.plugins.module_utils import importer  # noqa: E402

PREFIX = "nlbtest-imp"
UTC = datetime.timezone.utc


# ---------------------------------------------------------------------------
# helpers (the schema, connections and module arguments live in importer_fixture.py)
# ---------------------------------------------------------------------------

def columns(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'imports' ORDER BY ordinal_position")
        return [r[0] for r in cur.fetchall()]


def insert_sql(row):
    names = sorted(row)
    return "INSERT INTO imports (%s) VALUES (%s)" % (
        ", ".join('"%s"' % n for n in names), ", ".join("%%(%s)s" % n for n in names))


class Seeder:
    """Writes orders the way BIOMERO.importer does: a new row per stage change, same uuid."""

    def __init__(self, conn):
        self.conn = conn
        self.cols = columns(conn)
        self.now = datetime.datetime.now(UTC)
        self.uuids = {}

    def append(self, name, stage, age):
        """One more stage row of an existing order (copies its first row, as the importer does)."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT * FROM imports WHERE uuid = %s ORDER BY id LIMIT 1", (self.uuids[name],))
            row = dict(zip([d[0] for d in cur.description], cur.fetchone()))
            row.pop("id")
            row.update(stage=stage, timestamp=self.now - age)
            if "description" in row:
                row["description"] = "Import failed" if stage == importer.STAGE_FAILED else None
            cur.execute(insert_sql(row), row)
        self.conn.commit()

    def order(self, name, lifecycle, group="Core", user="alice", dest=("Dataset", "51"), files=None,
              file_names=None, description=None, preprocessing=False, import_options=None):
        """``lifecycle``: list of (stage, age as timedelta); failures get the importer's error text."""
        uid = str(uuidlib.uuid4())
        self.uuids[name] = uid
        files = files if files is not None else ["/data/%s/%s/%s.tif" % (group, user, name)]
        with self.conn.cursor() as cur:
            prep_id = None
            if preprocessing:
                cur.execute("INSERT INTO imports_preprocessing (container, input_file, output_folder, extra_params) "
                            "VALUES ('cellularimagingcf/cimagexpresstoometiff:v0.7', '{Files}', '/data', "
                            "'{\"saveoption\": \"single\"}') RETURNING id")
                prep_id = cur.fetchone()[0]
            for stage, age in lifecycle:
                row = {"group_name": group, "user_name": user, "destination_type": dest[0], "destination_id": dest[1],
                       "stage": stage, "uuid": uid, "timestamp": self.now - age, "files": json.dumps(files),
                       "file_names": json.dumps(file_names) if file_names is not None else None,
                       "preprocessing_id": prep_id}
                if "import_options" in self.cols:
                    row["import_options"] = import_options
                if "description" in self.cols:
                    if stage == importer.STAGE_PENDING:
                        row["description"] = description
                    elif stage == importer.STAGE_FAILED:
                        row["description"] = "Import failed for data package %s targeting OMERO %s. Failed files: %s" % (
                            uid, dest[1], files)
                    else:
                        row["description"] = None
                cur.execute(insert_sql(row), row)
        self.conn.commit()
        return uid


H = datetime.timedelta(hours=1)
M = datetime.timedelta(minutes=1)
D = datetime.timedelta(days=1)
P, S, F, C = importer.STAGE_PENDING, importer.STAGE_STARTED, importer.STAGE_FAILED, importer.STAGE_COMPLETED


def seed_lifecycle(conn):
    """Orders through the life cycle: failed, completed, dangling pending (finalised or not), old failure."""
    s = Seeder(conn)
    s.order("failed_a", [(P, 5 * H), (S, 5 * H - M), (F, 4 * H)], description="plates of week 23",
            file_names=["a1.tif", "a2.tif"], files=["/data/Core/alice/a1.tif", "/data/Core/alice/a2.tif"],
            preprocessing=True, import_options='{"skip": "all"}')
    s.order("failed_b", [(P, 3 * H), (S, 3 * H - M), (F, 2 * H)], group="Lab", user="bob", dest=("Screen", "7"))
    s.order("completed_c", [(P, 6 * H), (S, 6 * H - M), (C, 5 * H)])
    # dangling: the importer died; its start-up step wrote Import Failed for the pending order
    s.order("dangling_d", [(P, 30 * H), (F, 1 * H)], user="dave")
    s.order("pending_e", [(P, 10 * M)], user="erin")
    s.order("old_f", [(P, 20 * D), (S, 20 * D - M), (F, 20 * D - 5 * M)], user="carol")
    # awkward values: quotes, unicode, NULL file_names, empty description
    s.order("failed_g", [(P, 2 * H), (S, 2 * H - M), (F, 1 * H - 30 * M)], files=['/data/Core/ü ber/"q" | x.tif'],
            file_names=None, description="")
    return s


def dump(conn, where="TRUE"):
    """Full rows of imports keyed by id, with the tuple's xmin and ctid: any rewrite of a row shows."""
    with conn.cursor() as cur:
        cur.execute("SELECT id, xmin::text, ctid::text, i::text FROM imports AS i WHERE %s ORDER BY id" % where)
        rows = cur.fetchall()
    conn.commit()
    return dict((r[0], r[1:]) for r in rows)


class ImporterPoller:
    """BIOMERO.importer's DatabasePoller: stage = 'Import Pending' AND id > last_max_id ORDER BY id,
    skipping uuids this process has processed. Started on the current table (as a running importer)."""

    ORDER_COLUMNS = ("group_name", "user_name", "uuid", "destination_id", "destination_type", "files",
                     "file_names", "preprocessing_id", "import_options")

    def __init__(self, conn):
        self.conn = conn
        self.last_max_id = scalar(conn, "SELECT coalesce(max(id), 0) FROM imports")
        with conn.cursor() as cur:
            cur.execute("SELECT DISTINCT uuid FROM imports")
            self.processed = set(r[0] for r in cur.fetchall())
        conn.commit()

    def poll(self):
        cols = [c for c in self.ORDER_COLUMNS if c in columns(self.conn)]
        with self.conn.cursor() as cur:
            cur.execute("SELECT id, %s FROM imports WHERE stage = 'Import Pending' AND id > %%s ORDER BY id"
                        % ", ".join(cols), (self.last_max_id,))
            rows = cur.fetchall()
        self.conn.commit()
        picked = []
        for row in rows:
            order = dict(zip(["id"] + cols, row))
            if order["uuid"] in self.processed:
                continue
            self.last_max_id = max(self.last_max_id, order["id"])
            picked.append(order)
            self.processed.add(order["uuid"])
        return picked


def first_pending(conn, uid):
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM imports WHERE uuid = %s ORDER BY (stage = 'Import Pending') DESC, id LIMIT 1", (uid,))
        names = [d[0] for d in cur.description]
        row = dict(zip(names, cur.fetchone()))
    conn.commit()
    return row


def assert_history_unchanged(before, after):
    for row_id, row in before.items():
        assert after.get(row_id) == row, "history row %s changed: %s -> %s" % (row_id, row, after.get(row_id))


def assert_no_values_in_queries(result, values):
    text = "\n".join(result["queries"])
    assert "%(" in text
    for value in values:
        assert value not in text


def run_batch(*tasks):
    """Run several module tasks, in order, in ONE ansible-playbook (each like conftest.run_module:
    ignore_errors, results returned). ``tasks``: (module, args) or (module, args, {"check_mode":..,"diff":..}).
    One playbook start instead of one per task keeps the suite's runtime modest."""
    with tempfile.TemporaryDirectory(prefix="nlb-imp-play-") as tmp:
        out = os.path.join(tmp, "results.json")
        plays = []
        for index, task in enumerate(tasks):
            module, args = task[0], task[1]
            opts = task[2] if len(task) > 2 else {}
            plays.append({"name": "task %d" % index, module: args, "register": "r%d" % index, "ignore_errors": True,
                          "check_mode": opts.get("check_mode", False), "diff": opts.get("diff", False)})
        collect = "[%s]" % ", ".join("r%d" % i for i in range(len(tasks)))
        save = {"content": "{{ %s | to_json }}" % collect, "dest": out}
        plays.append({"name": "save results", "ansible.builtin.copy": save, "check_mode": False, "diff": False})
        playbook = os.path.join(tmp, "play.yml")
        with open(playbook, "w") as handle:
            json.dump([{"hosts": "localhost", "gather_facts": False, "tasks": plays}], handle)
        inventory = os.path.join(tmp, "inventory")
        with open(inventory, "w") as handle:
            handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % os.environ["ANSIBLE_PYTHON_INTERPRETER"])
        proc = subprocess.run(["ansible-playbook", "-i", inventory, playbook], capture_output=True, text=True,
                              timeout=600, check=False)
        if not os.path.exists(out):
            raise AssertionError("ansible-playbook did not run the modules: %s\n%s" % (proc.stdout, proc.stderr))
        with open(out) as handle:
            return json.load(handle)


def retry_lib(pg, selection, **kwargs):
    conn = connect(pg)
    try:
        return importer.retry_orders(conn, selection, **kwargs)
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------

def test_new_order_retry_is_picked_up_by_the_importer_and_keeps_history(pg_factory):
    pg = pg_factory(17, prefix=PREFIX)
    conn = connect(pg)
    with conn.cursor() as cur:
        cur.execute(SCHEMA_FULL)
    conn.commit()
    seeded = seed_lifecycle(conn)
    u = seeded.uuids
    failed = {u["failed_a"], u["failed_b"], u["dangling_d"], u["old_f"], u["failed_g"]}
    before = dump(conn)
    poller = ImporterPoller(conn)          # the importer is running and has processed everything so far
    assert poller.poll() == []

    # check mode + diff: tells what would happen, writes nothing
    check = run_module(RETRY, module_args(pg, all_failed=True), check_mode=True, diff=True)
    assert not check.get("failed"), check
    assert check["changed"] is True
    assert set(r["uuid"] for r in check["retried"]) == failed
    assert all(r["new_uuid"] is None for r in check["retried"])
    assert len(check["diff"]["after"]["appended_rows"]) == 5
    assert any(q.startswith("INSERT INTO") for q in check["queries"])
    assert dump(conn) == before

    # the real run, and a second run right after it
    result, again = run_batch((RETRY, module_args(pg, all_failed=True), {"diff": True}),
                              (RETRY, module_args(pg, all_failed=True)))
    assert not result.get("failed"), result
    assert result["changed"] is True and result["strategy"] == "new_order"
    assert result["lineage_column"] == "description"
    assert set(r["uuid"] for r in result["retried"]) == failed
    assert result["not_retried"] == []
    assert_no_values_in_queries(result, list(failed) + ["Core", "Import Failed", "Import Pending"])
    new_uuids = dict((r["uuid"], r["new_uuid"]) for r in result["retried"])
    assert len(set(new_uuids.values())) == 5
    for old, new in new_uuids.items():
        assert new not in u.values() and str(uuidlib.UUID(new)) == new
    by_old = dict((r["uuid"], r) for r in result["retried"])
    assert by_old[u["failed_a"]]["files"] == ["/data/Core/alice/a1.tif", "/data/Core/alice/a2.tif"]
    assert by_old[u["failed_a"]]["file_count"] == 2
    assert by_old[u["failed_b"]]["group_name"] == "Lab" and by_old[u["failed_b"]]["destination_type"] == "Screen"

    # the failed orders' history: every row byte-for-byte the same tuple (xmin/ctid too), 5 rows appended
    after = dump(conn)
    assert_history_unchanged(before, after)
    assert len(after) == len(before) + 5

    # the running importer's next poll picks up exactly the retried orders, with the order intact
    picked = poller.poll()
    assert sorted(p["uuid"] for p in picked) == sorted(new_uuids.values())
    new_to_old = dict((v, k) for k, v in new_uuids.items())
    for order in picked:
        source = first_pending(conn, new_to_old[order["uuid"]])
        for col in ImporterPoller.ORDER_COLUMNS:
            if col != "uuid":
                assert order[col] == source[col], col
        row = first_pending(conn, order["uuid"])
        assert row["id"] == order["id"] and row["stage"] == P
        assert abs((row["timestamp"] - datetime.datetime.now(UTC)).total_seconds()) < 120
        marker = "[retry of %s]" % new_to_old[order["uuid"]]
        assert row["description"] == (marker + " " + source["description"] if source["description"] else marker)
    assert first_pending(conn, new_uuids[u["failed_a"]])["description"] == "[retry of %s] plates of week 23" % u["failed_a"]
    assert first_pending(conn, new_uuids[u["failed_a"]])["preprocessing_id"] is not None
    assert poller.poll() == []

    # idempotent: the second run changed nothing and says why
    assert not again.get("failed"), again
    assert again["changed"] is False and again["retried"] == []
    assert dict((s["uuid"], s["retried_as"]) for s in again["not_retried"]) == new_uuids
    assert dump(conn) == after

    # the importer fails the retry of A; the retry (not A) is retried next, lineage chains
    retry_a = new_uuids[u["failed_a"]]
    source = first_pending(conn, retry_a)
    with conn.cursor() as cur:
        for stage in (S, F):
            cur.execute("INSERT INTO imports (group_name, user_name, destination_id, destination_type, stage, uuid, "
                        "timestamp, files, file_names, import_options, description, preprocessing_id) "
                        "SELECT group_name, user_name, destination_id, destination_type, %s, uuid, now(), files, "
                        "file_names, import_options, NULL, preprocessing_id FROM imports WHERE id = %s",
                        (stage, source["id"]))
    conn.commit()
    third, info = run_batch((RETRY, module_args(pg, all_failed=True)),
                            (INFO, module_args(pg, stages=[P]), {"check_mode": True}))
    assert not third.get("failed"), third
    assert [r["uuid"] for r in third["retried"]] == [retry_a]
    chained = first_pending(conn, third["retried"][0]["new_uuid"])
    assert chained["description"] == "[retry of %s] [retry of %s] plates of week 23" % (retry_a, u["failed_a"])

    # the info module sees the lineage and the pending orders
    assert not info.get("failed"), info
    assert info["changed"] is False
    pending = dict((o["uuid"], o) for o in info["orders"])
    assert set(pending) == (set(new_uuids.values()) - {retry_a}) | {u["pending_e"], third["retried"][0]["new_uuid"]}
    assert pending[new_uuids[u["failed_b"]]]["retry_of"] == u["failed_b"]
    assert pending[u["pending_e"]]["retry_of"] is None
    conn.close()


def test_filters_info_and_limit(pg_factory):
    pg = pg_factory(17, prefix=PREFIX)
    conn = connect(pg)
    with conn.cursor() as cur:
        cur.execute(SCHEMA_FULL)
    conn.commit()
    u = seed_lifecycle(conn).uuids
    before = dump(conn)

    def would_retry(**params):
        params.setdefault("all_failed", not params.get("uuids"))
        selection = importer.selection_from_params(params, default_stages=[F])
        result = retry_lib(pg, selection, check_mode=True, limit=1000)
        return set(r["uuid"] for r in result["retried"]), dict((s["uuid"], s["reason"]) for s in result["not_retried"])

    names = dict((v, k) for k, v in u.items())
    assert set(names[x] for x in would_retry(group_name="Core")[0]) == {"failed_a", "dangling_d", "old_f", "failed_g"}
    assert set(names[x] for x in would_retry(user_name="bob")[0]) == {"failed_b"}
    assert set(names[x] for x in would_retry(since="24h")[0]) == {"failed_a", "failed_b", "dangling_d", "failed_g"}
    assert set(names[x] for x in would_retry(until="7d")[0]) == {"old_f"}
    assert set(names[x] for x in would_retry(since="3h", until="90m")[0]) == {"failed_b"}
    assert set(names[x] for x in would_retry(stages=[F, P])[0]) == {"failed_a", "failed_b", "dangling_d", "old_f",
                                                                    "failed_g", "pending_e"}
    retried, skipped = would_retry(uuids=[u["failed_a"], u["completed_c"], u["pending_e"], u["old_f"]], since="7d")
    assert retried == {u["failed_a"]}
    assert skipped[u["completed_c"]] == "latest stage is 'Import Completed', not one of: Import Failed"
    assert skipped[u["pending_e"]] == "latest stage is 'Import Pending', not one of: Import Failed"
    assert skipped[u["old_f"]].startswith("latest row (") and "is before since" in skipped[u["old_f"]]
    unknown = str(uuidlib.uuid4())
    with pytest.raises(importer.ImporterError, match="order.s. not found in public.imports: %s" % unknown):
        would_retry(uuids=[u["failed_a"], unknown])

    # info: one entry per order, counts per latest stage, filters (here through login_host = container IP)
    # (the last of these guards the limit: it fails with the count and writes nothing)
    info, info2, result, guarded = run_batch(
        (INFO, module_args(pg, via="host", limit=3)),
        (INFO, module_args(pg, via="host", user_name="alice", since="24h")),
        (RETRY, module_args(pg, via="host", all_failed=True, group_name="Core", since="24h", until="45m"),
         {"check_mode": True}),
        (RETRY, module_args(pg, all_failed=True, limit=4)))
    assert not info.get("failed"), info
    assert info["counts"] == {"Import Completed": 1, "Import Failed": 5, "Import Pending": 1}
    assert info["total"] == 7 and info["truncated"] is True and len(info["orders"]) == 3
    orders = dict((o["uuid"], o) for o in info2["orders"])
    assert set(orders) == {u["failed_a"], u["completed_c"], u["failed_g"]}
    a = orders[u["failed_a"]]
    assert (a["stage"], a["group_name"], a["destination_type"], a["destination_id"], a["rows"], a["file_count"]) == \
        (F, "Core", "Dataset", "51", 3, 2)
    assert a["description"].startswith("Import failed for data package")
    first, last = (datetime.datetime.fromisoformat(a[k]) for k in ("first_at", "last_at"))
    assert datetime.timedelta(minutes=59) < last - first < datetime.timedelta(minutes=61)
    assert orders[u["failed_g"]]["files"] == ['/data/Core/ü ber/"q" | x.tif']

    # filters through the module, login_host path, check mode
    assert not result.get("failed"), result
    assert set(r["uuid"] for r in result["retried"]) == {u["failed_a"], u["dangling_d"]}
    assert result["filters"]["group_name"] == "Core" and "since" in result["filters"] and "until" in result["filters"]

    # limit guards a mass retry
    assert guarded.get("failed") and guarded["changed"] is False
    assert "5 orders are eligible for retry, more than limit=4" in guarded["msg"]
    assert dump(conn) == before

    # the playbook: by uuid list against the container of the target host, prints a table
    with tempfile.TemporaryDirectory(prefix="nlb-imp-pb-") as tmp:
        inventory = os.path.join(tmp, "inventory")
        with open(inventory, "w") as handle:
            handle.write("[nl_biomero_database]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % os.environ["ANSIBLE_PYTHON_INTERPRETER"])
        extra = {"retry_imports_container": pg.name, "retry_imports_login_user": pg.user,
                 "retry_imports_login_password": pg.password, "retry_imports_login_db": pg.database,
                 "retry_imports_uuids": [u["failed_b"], u["completed_c"]]}
        proc = subprocess.run(["ansible-playbook", "-i", inventory, os.path.join(REPO_ROOT, "playbooks", "retry_imports.yml"),
                               "-e", json.dumps(extra)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    new_b = scalar(conn, "SELECT uuid FROM imports WHERE description LIKE %s", ("[retry of %s]%%" % u["failed_b"],))
    line = [x for x in proc.stdout.splitlines() if u["failed_b"] in x and new_b in x]
    assert line and "Lab" in line[0] and "bob" in line[0]
    assert "1 retried, 1 skipped" in proc.stdout
    assert "skipped %s: latest stage is 'Import Completed'" % u["completed_c"] in proc.stdout
    assert_history_unchanged(before, dump(conn))
    conn.close()


@pytest.mark.parametrize("via", ["lock_held", "barrier"])
def test_concurrent_retries_insert_one_order_per_failed_order(pg_factory, via):
    pg = pg_factory(17, prefix=PREFIX)
    conn = connect(pg)
    with conn.cursor() as cur:
        cur.execute(SCHEMA_FULL)
        # 200 failed orders: pending, started, failed
        cur.execute("""
            INSERT INTO imports (group_name, user_name, destination_id, destination_type, stage, uuid, timestamp, files, description)
            SELECT 'Core', 'user' || (n % 7), n::text, 'Dataset', s.stage, md5('o' || n)::uuid::text,
                   now() - interval '1 hour' + s.k * interval '1 minute', '["/data/f' || n || '.tif"]',
                   CASE s.stage WHEN 'Import Failed' THEN 'boom' END
            FROM generate_series(1, 200) AS n,
                 (VALUES (0, 'Import Pending'), (1, 'Import Started'), (2, 'Import Failed')) AS s(k, stage)
            ORDER BY n, s.k""")
    conn.commit()
    before = dump(conn)
    selection = importer.Selection(stages=[F])
    results, errors = [], []
    start = threading.Barrier(3)

    def worker():
        own = connect(pg)              # each run has its own connection and transaction
        try:
            start.wait()
            results.append(importer.retry_orders(own, selection, limit=1000))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=worker), threading.Thread(target=worker)]
    holder = connect(pg)
    if via == "lock_held":
        # both runs queue behind a held lock, then race the moment it is released
        holder.cursor().execute("LOCK TABLE imports IN SHARE ROW EXCLUSIVE MODE")
        # (a run that cannot get the lock in time fails clearly and writes nothing)
        with pytest.raises(importer.ImporterError, match="could not lock public.imports within lock_timeout=1s"):
            retry_lib(pg, selection, limit=1000, lock_timeout=1)
    for thread in threads:
        thread.start()
    start.wait()
    if via == "lock_held":
        deadline = time.time() + 30
        while scalar(conn, "SELECT count(*) FROM pg_locks WHERE relation = 'imports'::regclass AND NOT granted") < 2:
            assert time.time() < deadline, "the two retries never waited for the lock"
            time.sleep(0.05)
        holder.commit()
    for thread in threads:
        thread.join(120)
    holder.close()
    assert errors == []
    assert sorted(len(r["retried"]) for r in results) == [0, 200]
    assert sorted(r["changed"] for r in results) == [False, True]
    assert scalar(conn, "SELECT count(*) FROM imports WHERE stage = 'Import Pending' AND description LIKE '[retry of %'") == 200
    assert scalar(conn, "SELECT count(DISTINCT substr(description, 11, 36)) FROM imports "
                        "WHERE description LIKE '[retry of %'") == 200
    assert_history_unchanged(before, dump(conn))
    conn.close()


def test_concurrent_module_runs(pg_factory):
    """Two ansible-playbook processes retrying the same orders at the same moment."""
    pg = pg_factory(15, prefix=PREFIX)
    conn = connect(pg)
    with conn.cursor() as cur:
        cur.execute(SCHEMA_OLD)
        cur.execute("""
            INSERT INTO imports (group_name, user_name, destination_id, destination_type, stage, uuid, timestamp, files)
            SELECT 'Core', 'alice', n::text, 'Dataset', s.stage, md5('o' || n)::uuid::text, now(), '["/f' || n || '"]'
            FROM generate_series(1, 100) AS n, (VALUES (0, 'Import Pending'), (1, 'Import Failed')) AS s(k, stage)
            ORDER BY n, s.k""")
    conn.commit()
    results = []

    def worker():
        results.append(run_module(RETRY, module_args(pg, all_failed=True)))

    threads = [threading.Thread(target=worker), threading.Thread(target=worker)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert all(not r.get("failed") for r in results), results
    assert sum(len(r["retried"]) for r in results) == 100
    assert scalar(conn, "SELECT count(*) FROM imports WHERE stage = 'Import Pending'") == 200
    conn.close()


def test_without_description_column_and_other_strategies(pg_factory):
    """An older importer schema (no description, no import_options), reached through login_host."""
    pg = pg_factory(15, prefix=PREFIX)
    conn = connect(pg)
    with conn.cursor() as cur:
        cur.execute(SCHEMA_OLD)
    conn.commit()
    s = Seeder(conn)
    assert "description" not in s.cols
    a = s.order("a", [(P, 3 * H), (S, 3 * H - M), (F, 2 * H)], file_names=["x.tif"])
    s.order("c", [(P, 3 * H), (C, 2 * H)])
    # two orders of identical content submitted before either failed: both are retried (each once)
    twin1 = s.order("twin1", [(P, 2 * H)], user="bob", files=["/data/same.tif"])
    twin2 = s.order("twin2", [(P, 2 * H - M)], user="bob", files=["/data/same.tif"])
    s.append("twin1", F, 2 * H - 2 * M)
    s.append("twin2", F, 2 * H - 3 * M)
    # the same order submitted again by hand after it failed (and failing again): only the later one is retried
    first = s.order("first", [(P, 90 * M), (F, 80 * M)], user="bob", files=["/data/again.tif"])
    again_by_hand = s.order("again_by_hand", [(P, 70 * M), (F, 60 * M)], user="bob", files=["/data/again.tif"])
    # for the other strategies
    h = s.order("h", [(P, 1 * H), (F, 30 * M)], user="hank")
    k = s.order("k", [(P, 1 * H), (S, 50 * M), (F, 40 * M)], user="kim")
    before = dump(conn)
    poller = ImporterPoller(conn)

    bob, single, bob_again, single_again, info = run_batch(
        (RETRY, module_args(pg, via="host", all_failed=True, user_name="bob")),
        (RETRY, module_args(pg, via="host", uuids=[a])),
        (RETRY, module_args(pg, via="host", all_failed=True, user_name="bob")),
        (RETRY, module_args(pg, via="host", uuids=[a])),
        (INFO, module_args(pg, via="host", stages=[P])))
    assert not bob.get("failed"), bob
    assert bob["lineage_column"] is None
    assert sorted(r["uuid"] for r in bob["retried"]) == sorted([twin1, twin2, again_by_hand])
    assert bob["not_retried"] == [
        {"uuid": first, "stage": F, "reason": "already retried as %s" % again_by_hand, "retried_as": again_by_hand}]
    assert not single.get("failed"), single
    new_a = single["retried"][0]["new_uuid"]
    assert_history_unchanged(before, dump(conn))
    picked = poller.poll()
    assert sorted(p["uuid"] for p in picked) == sorted([new_a] + [r["new_uuid"] for r in bob["retried"]])
    source = first_pending(conn, a)
    order = [p for p in picked if p["uuid"] == new_a][0]
    for col in ("group_name", "user_name", "destination_id", "destination_type", "files", "file_names", "preprocessing_id"):
        assert order[col] == source[col]
    # idempotent without a lineage column: the later Import Pending copy of the order is found
    assert bob_again["changed"] is False and len(bob_again["not_retried"]) == 4
    assert single_again["changed"] is False
    assert single_again["not_retried"][0]["retried_as"] == new_a
    assert set(o["uuid"] for o in info["orders"]) == set(p["uuid"] for p in picked)
    assert all(o["retry_of"] is None and o["description"] is None for o in info["orders"])

    # same_uuid: appends Import Pending with the old uuid, warns, a second run skips it;
    # reset_stage in check mode: an honest diff, nothing written
    before = dump(conn)
    same, same_again, check = run_batch(
        (RETRY, module_args(pg, uuids=[h], strategy="same_uuid"), {"diff": True}),
        (RETRY, module_args(pg, uuids=[h], strategy="same_uuid")),
        (RETRY, module_args(pg, uuids=[k], strategy="reset_stage"), {"check_mode": True, "diff": True}))
    assert not same.get("failed"), same
    assert same["changed"] is True and same["retried"][0]["new_uuid"] == h
    assert any("same_uuid" in w for w in same.get("warnings", []))
    assert same["diff"]["after"]["appended_rows"][0]["uuid"] == h
    after = dump(conn)
    assert_history_unchanged(before, after)
    assert len(after) == len(before) + 1
    assert scalar(conn, "SELECT stage FROM imports WHERE uuid = %s ORDER BY id DESC LIMIT 1", (h,)) == P
    assert same_again["changed"] is False
    assert same_again["not_retried"][0]["reason"] == "latest stage is 'Import Pending', not one of: Import Failed"
    assert check["changed"] is True and check["updated_rows"] == 2
    assert sorted(r["stage"] for r in check["diff"]["before"]["rows"]) == [F, S]
    assert set(r["stage"] for r in check["diff"]["after"]["rows"]) == {P}

    # reset_stage for real: the documented UPDATE rewrites the order's rows (that is its flaw), with a warning
    reset, reset_again = run_batch((RETRY, module_args(pg, uuids=[k], strategy="reset_stage"), {"diff": True}),
                                   (RETRY, module_args(pg, uuids=[k], strategy="reset_stage")))
    assert reset["changed"] is True and reset["updated_rows"] == 2
    assert sorted(r["stage"] for r in reset["diff"]["before"]["rows"]) == [F, S]
    assert any("reset_stage" in w and "ignore" in w for w in reset.get("warnings", []))
    assert scalar(conn, "SELECT array_agg(DISTINCT stage) FROM imports WHERE uuid = %s", (k,)) == [P]
    assert reset_again["changed"] is False
    assert_history_unchanged(dict((i, r) for i, r in after.items() if k not in r[2]), dump(conn))
    conn.close()


def test_errors_are_clear_and_write_nothing(pg_factory):
    pg = pg_factory(17, prefix=PREFIX)
    conn = connect(pg)
    with conn.cursor() as cur:
        cur.execute(SCHEMA_FULL)
    conn.commit()
    u = seed_lifecycle(conn).uuids
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE empty")
        cur.execute("CREATE DATABASE broken")
    broken = connect(pg, "broken")
    with broken.cursor() as cur:
        cur.execute("CREATE TABLE imports (id SERIAL PRIMARY KEY, uuid VARCHAR(36), stage VARCHAR, files TEXT)")
    broken.commit()
    broken.close()
    conn.autocommit = False
    before = dump(conn)
    ip = container_ip(pg.name)
    cases = [
        (RETRY, module_args(pg, uuids=[u["failed_a"], "not-a-uuid"]), "uuids: malformed uuid 'not-a-uuid'"),
        (RETRY, module_args(pg, all_failed=True, stages=["Import Failed", "Failed"]),
         "stages: unknown stage 'Failed'; known stages: Import Pending, Import Started"),
        (RETRY, module_args(pg, all_failed=True, since="yesterday"),
         "since: 'yesterday' is neither a timestamp nor a relative age"),
        (RETRY, module_args(pg), "refusing to retry without a selection"),
        (RETRY, module_args(pg, all_failed=True, login_db="empty"), "table 'imports' does not exist in database 'empty'"),
        (RETRY, module_args(pg, all_failed=True, login_db="broken"),
         "table public.imports lacks the required column(s) group_name, user_name, destination_id, destination_type, "
         "timestamp"),
        (RETRY, dict(module_args(pg, via="host", all_failed=True), login_port=1),
         "cannot connect to database 'appdb' as user 'app' at %s:1: " % ip),
        (RETRY, dict(module_args(pg, all_failed=True), login_password="wrong-pw"), "password authentication failed for user"),
        (RETRY, dict(module_args(pg, all_failed=True), container=PREFIX + "-does-not-exist"), "does not exist"),
        (INFO, module_args(pg, stages=["Imported"]), "stages: unknown stage 'Imported'"),
        (INFO, module_args(pg, login_db="empty"), "table 'imports' does not exist in database 'empty'"),
    ]
    results = run_batch(*[case[:2] for case in cases])
    for (module, args, message), result in zip(cases, results):
        assert result.get("failed"), (args, result)
        assert message in result["msg"], (message, result["msg"])
        assert result["changed"] is False
        assert "wrong-pw" not in json.dumps(result) and pg.password not in json.dumps(result)
    assert "refused" in results[6]["msg"].lower()
    assert dump(conn) == before
    conn.close()
