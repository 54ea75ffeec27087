import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils.tuning import (
    SettingsError,
    auto_tune,
    check_command_args,
    data_layout,
    error_summary,
    format_value,
    logging_settings,
    major_from_image,
    merge_settings,
    normalize_settings,
    parameter_in_error,
    parse_describe_config,
    parse_id,
    postgres_command,
    size_to_bytes,
    unknown_settings,
)


@pytest.mark.parametrize("value,expected", [
    (0, 0),
    (1024, 1024),
    ("512m", 512 * 1024 ** 2),
    ("2g", 2 * 1024 ** 3),
    ("2G", 2 * 1024 ** 3),
    ("1GB", 1024 ** 3),
    ("1.5GiB", int(1.5 * 1024 ** 3)),
    ("64k", 65536),
    ("100", 100),
])
def test_size_to_bytes(value, expected):
    assert size_to_bytes(value) == expected


@pytest.mark.parametrize("value", ["lots", "2x", "-1g", True, -5, ""])
def test_size_to_bytes_rejects(value):
    with pytest.raises(SettingsError):
        size_to_bytes(value)


@pytest.mark.parametrize("memory_mb,cpus,conns,expected", [
    # 24 GiB host shared by NL-BIOMERO's two instances, 2 CPUs, default connections
    (12288, 2, 100, {"shared_buffers": "3072MB", "effective_cache_size": "9216MB",
                     "maintenance_work_mem": "768MB", "work_mem": "31457kB", "max_wal_size": "6144MB"}),
    # the page's -N 500
    (12288, 2, 500, {"shared_buffers": "3072MB", "effective_cache_size": "9216MB",
                     "maintenance_work_mem": "768MB", "work_mem": "6291kB", "max_wal_size": "6144MB"}),
    # 8 CPUs: a query may use 4 workers, so work_mem shrinks by 4
    (12288, 8, 100, {"shared_buffers": "3072MB", "effective_cache_size": "9216MB",
                     "maintenance_work_mem": "768MB", "work_mem": "7864kB", "max_wal_size": "6144MB"}),
    # small container: floors apply
    (256, 1, 100, {"shared_buffers": "64MB", "effective_cache_size": "192MB",
                   "maintenance_work_mem": "16MB", "work_mem": "1024kB", "max_wal_size": "1024MB"}),
    # big host: caps apply
    (262144, 64, 200, {"shared_buffers": "16384MB", "effective_cache_size": "196608MB",
                       "maintenance_work_mem": "2048MB", "work_mem": "104857kB", "max_wal_size": "16384MB"}),
])
def test_auto_tune(memory_mb, cpus, conns, expected):
    assert auto_tune(memory_mb, cpus, conns) == expected


def test_auto_tune_never_budgets_more_than_memory():
    for memory_mb in (256, 1024, 4096, 12288, 65536):
        for conns in (10, 100, 500):
            tuned = auto_tune(memory_mb, 2, conns)
            shared = int(tuned["shared_buffers"][:-2])
            work_kb = int(tuned["work_mem"][:-2])
            assert shared <= memory_mb // 4 or shared == 32
            assert shared * 1024 + work_kb * conns <= memory_mb * 1024 or work_kb == 1024


@pytest.mark.parametrize("args", [(32, 2, 100), (1024, 2, 0)])
def test_auto_tune_rejects(args):
    with pytest.raises(SettingsError):
        auto_tune(*args)


@pytest.mark.parametrize("value,expected", [
    (True, "on"), (False, "off"), (500, "500"), (0.9, "0.9"), ("1GB", "1GB"), ("'logs'", "'logs'"),
])
def test_format_value(value, expected):
    assert format_value("x", value) == expected


@pytest.mark.parametrize("value", [["a"], {"a": 1}, "two\nlines", "nul\x00"])
def test_format_value_rejects(value):
    with pytest.raises(SettingsError, match="setting 'x'"):
        format_value("x", value)


def test_normalize_settings_lowercases_and_formats():
    assert normalize_settings({"Work_Mem": "8MB", "jit": False, "auto_explain.log_min_duration": 250,
                               "work_mem_drop": None}) == {
        "work_mem": "8MB", "jit": "off", "auto_explain.log_min_duration": "250", "work_mem_drop": None}


@pytest.mark.parametrize("settings,message", [
    ({"max_connections": 10}, "use the max_connections option"),
    ({"data_directory": "/x"}, "'data_directory' cannot be set here"),
    ({"port": 5433}, "published_port"),
    ({"bad name": 1}, "'bad name' is not a valid PostgreSQL setting name"),
    ({"x;drop": 1}, "not a valid PostgreSQL setting name"),
    ({"Work_Mem": 1, "work_mem": 2}, "given twice"),
    ("work_mem=1", "must be a dict"),
])
def test_normalize_settings_rejects(settings, message):
    with pytest.raises(SettingsError, match=message):
        normalize_settings(settings)


def test_merge_settings_later_wins_none_removes():
    assert merge_settings({"a": "1", "b": "2"}, {"b": "3"}, {"a": None, "c": "4"}) == {"b": "3", "c": "4"}


def test_logging_settings_match_the_page():
    assert logging_settings("/var/log/postgresql", statement="all") == {
        "logging_collector": "on",
        "log_directory": "/var/log/postgresql",
        "log_filename": "postgresql-%Y-%m-%d.log",
        "log_rotation_age": "1d",
        "log_rotation_size": "100MB",
        "log_statement": "all",
    }


def test_postgres_command_sorted_argv():
    assert postgres_command(500, {"work_mem": "8MB", "log_statement": "all", "log_filename": "pg %d.log"}) == [
        "postgres", "-N", "500", "-c", "log_filename=pg %d.log", "-c", "log_statement=all", "-c", "work_mem=8MB"]


def test_postgres_command_rejects_zero_connections():
    with pytest.raises(SettingsError):
        postgres_command(0, {})


@pytest.mark.parametrize("image,major", [
    ("postgres:16", 16),
    ("postgres:16-alpine", 16),
    ("postgres:16.4-bookworm", 16),
    ("nl-biomero/postgres:17", 17),
    ("registry.example:5000/lib/postgres:18", 18),
    ("postgres:18beta1", 18),
    ("postgres:15@sha256:abcd", 15),
    ("postgres", None),
    ("postgres:latest", None),
    ("registry.example:5000/postgres", None),
    ("postgres:bookworm", None),
    ("", None),
])
def test_major_from_image(image, major):
    assert major_from_image(image) == major


@pytest.mark.parametrize("major,mount,pgdata,expected", [
    (16, None, None, ("/var/lib/postgresql/data", "/var/lib/postgresql/data")),
    (17, None, None, ("/var/lib/postgresql/data", "/var/lib/postgresql/data")),
    (18, None, None, ("/var/lib/postgresql", "/var/lib/postgresql/18/docker")),
    (19, None, None, ("/var/lib/postgresql", "/var/lib/postgresql/19/docker")),
    (18, "/var/lib/postgresql/data", None, ("/var/lib/postgresql/data", "/var/lib/postgresql/data")),
    (16, "/pg/", "/pg/cluster", ("/pg", "/pg/cluster")),
    (18, None, "/var/lib/postgresql/custom", ("/var/lib/postgresql", "/var/lib/postgresql/custom")),
    (None, "/data", None, ("/data", "/data")),
])
def test_data_layout(major, mount, pgdata, expected):
    assert data_layout(major, mount, pgdata) == expected


def test_data_layout_needs_a_major_or_a_mount():
    with pytest.raises(SettingsError, match="set data_mount"):
        data_layout(None)


def test_parse_describe_config_and_unknown():
    text = ("allow_system_table_mods\tpostmaster\tDeveloper Options\tBOOLEAN\tfalse\t\t\tAllows...\n"
            "work_mem\tuser\tResource Usage / Memory\tINTEGER\t4096\t64\t2147483647\tSets...\n")
    known = parse_describe_config(text)
    assert known == {"allow_system_table_mods", "work_mem"}
    assert unknown_settings(["work_mem", "wrok_mem", "auto_explain.log_analyze", "Work_Mem"], known) == ["wrok_mem"]


@pytest.mark.parametrize("stderr,param", [
    ('2025-01-01 FATAL:  invalid value for parameter "shared_buffers": "lots"\n', "shared_buffers"),
    ('postgres: FATAL:  unrecognized configuration parameter "wrok_mem"', "wrok_mem"),
    ('FATAL:  parameter "jit" requires a Boolean value', "jit"),
    ('FATAL:  -5 is outside the valid range for parameter "max_connections" (1 .. 262143)', "max_connections"),
    ("postgres: could not access directory", None),
])
def test_parameter_in_error(stderr, param):
    assert parameter_in_error(stderr) == param


def test_error_summary():
    assert error_summary('noise\n2026-11-26 02:46:37.243 GMT [1] FATAL:  invalid value for parameter "x": "y"\n'
                         'HINT:  Valid units are "kB".\n') == 'invalid value for parameter "x": "y" HINT: Valid units are "kB".'
    assert error_summary("a\nlast line\n") == "last line"
    assert error_summary("") == ""


def test_parse_id():
    assert parse_id("uid=999(postgres) gid=999(postgres) groups=999(postgres),106(ssl-cert)\n") == (999, 999)
    with pytest.raises(SettingsError):
        parse_id("id: 'postgres': no such user")


def test_check_command_args_parse_like_the_server():
    assert check_command_args(500, {"work_mem": "8MB"}) == [
        "--config-file=/dev/null", "-D", "/tmp", "-C", "server_version_num", "-N", "500", "-c", "work_mem=8MB"]
