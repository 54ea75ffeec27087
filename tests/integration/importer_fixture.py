"""BIOMERO.importer's database as the importer makes it: its schema, a connection to a test
container and the retry/info modules' arguments. Shared by tests/integration/test_import_retry.py,
test_example_inventory.py and benchmarks/import_retry.py."""

import psycopg2

from harness import container_ip

RETRY = "nl_biomero.database.biomero_import_retry"
INFO = "nl_biomero.database.biomero_import_info"

# SQLAlchemy create_all of BIOMERO.importer's models (ingest_tracker.py), newest revision.
SCHEMA_FULL = """
CREATE TABLE alembic_version_omeroadi (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
CREATE TABLE imports_preprocessing (
    id SERIAL NOT NULL, container VARCHAR NOT NULL, input_file VARCHAR NOT NULL,
    output_folder VARCHAR NOT NULL, alt_output_folder VARCHAR, extra_params JSON, PRIMARY KEY (id));
CREATE TABLE imports (
    id SERIAL NOT NULL,
    group_name VARCHAR NOT NULL,
    user_name VARCHAR NOT NULL,
    destination_id VARCHAR NOT NULL,
    destination_type VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    uuid VARCHAR(36) NOT NULL,
    timestamp TIMESTAMP WITH TIME ZONE,
    files TEXT NOT NULL,
    file_names TEXT,
    import_options TEXT,
    description TEXT,
    preprocessing_id INTEGER,
    PRIMARY KEY (id),
    FOREIGN KEY(preprocessing_id) REFERENCES imports_preprocessing (id));
CREATE INDEX ix_imports_user_name ON imports (user_name);
CREATE INDEX ix_imports_uuid ON imports (uuid);
CREATE INDEX imports_ix_uuid_timestamp ON imports (uuid, timestamp);
"""
# An older importer: before the revisions adding description and import_options.
SCHEMA_OLD = "\n".join(line for line in SCHEMA_FULL.splitlines()
                       if "import_options TEXT" not in line and "description TEXT" not in line)


def connect(pg, database=None):
    """psycopg2 connection to a harness.DbContainer, on its bridge address."""
    return psycopg2.connect(host=container_ip(pg.name), port=5432, user=pg.user, password=pg.password,
                            dbname=database or pg.database, connect_timeout=10)


def module_args(pg, via="container", **extra):
    """Connection arguments of biomero_import_retry/_info for ``pg``: by container name or by login_host."""
    args = {"login_user": pg.user, "login_password": pg.password, "login_db": pg.database}
    if via == "container":
        args["container"] = pg.name
    else:
        args["login_host"] = container_ip(pg.name)
    args.update(extra)
    return args


def scalar(conn, query, params=None):
    """The first column of the first row; the transaction ends (commit) afterwards."""
    with conn.cursor() as cur:
        cur.execute(query, params)
        value = cur.fetchone()[0]
    conn.commit()
    return value
