import os

import pytest
import yaml

from ansible_collections.nl_biomero.database.plugins.module_utils import backup_config as bc


def base(**extra):
    config = {"backup_dir": "/var/backups/nlb", "databases": [{"container": "database", "database": "omero"}]}
    config.update(extra)
    return config


def test_normalize_defaults():
    config = bc.normalize_config(base())
    entry = config["databases"][0]
    assert entry["name"] == "omero"
    assert entry["format"] == "custom" and entry["globals"] is True and entry["row_counts"] is True
    assert config["lock_file"] == "/var/backups/nlb/.nl-biomero-backup.lock"
    assert config["client_action"] == "stop" and config["retention"] is None
    assert bc.expected_components(config) == ["omero", "omero.globals"]


@pytest.mark.parametrize("config, expect", [
    ({"databases": []}, "backup_dir is required"),
    (base(databases=[]), "nothing to back up"),
    (base(databases=[{"container": "c"}]), "database is required"),
    (base(databases=[{"container": "c", "database": "d", "pasword": "x"}]), "unknown key(s) pasword"),
    (base(databases=[{"container": "c", "database": "d", "password": "a", "password_env": "B"}]), "at most one"),
    (base(databases=[{"container": "a", "database": "omero"}, {"container": "b", "database": "omero"}]),
     "repeated: omero"),
    (base(paths=[{"path": "relative/dir"}]), "absolute host path"),
    (base(paths=[{"path": "/srv/x", "kind": "photos"}]), "kind 'photos'"),
    (base(paths=[{"path": "/srv/x", "name": "../x"}]), "not usable"),
    (base(client_action="kill"), "client_action"),
    (base(clients="omero"), "clients must be a list"),
    (base(notify_command="mail -s x root"), "argv list"),
    (base(retention={"keep_lots": 3}), "retention"),
    (base(surprise=1), "unknown key(s) surprise"),
    (base(container_paths=[{"container": "omero", "path": "OMERO"}]), "absolute path"),
    (base(container_commands=[{"name": "cfg", "container": "omero", "command": "omero config get"}]), "argv list"),
    (base(container_commands=[{"container": "omero", "command": ["true"]}]), "container_commands[0]: name is required"),
])
def test_normalize_refuses(config, expect):
    with pytest.raises(bc.BackupRunError) as error:
        bc.normalize_config(config)
    assert expect in str(error.value)


def test_normalize_same_database_twice_with_names_and_retention():
    config = bc.normalize_config(base(
        databases=[{"container": "a", "database": "postgres", "name": "a"},
                   {"container": "b", "database": "postgres", "name": "b", "globals": False}],
        paths=[{"path": "/srv/metabase/", "kind": "metabase"}],
        retention={"keep_daily": 7, "prune_incomplete": True}))
    assert bc.expected_components(config) == ["a", "a.globals", "b", "metabase"]
    assert config["retention"]["keep_daily"] == 7 and config["retention"]["prune_incomplete"] is True
    assert config["retention"]["keep_incomplete"] == 2  # the default cap on incomplete sets


@pytest.mark.parametrize("value,expect", [
    (0, 0), (5, 5), (-1, "keep_incomplete must be a whole number of 0 or more; got -1"), ("two", "got 'two'"),
])
def test_retention_keep_incomplete(value, expect):
    raw = base(retention={"keep_last": 3, "keep_incomplete": value})
    if isinstance(expect, int):
        assert bc.normalize_config(raw)["retention"]["keep_incomplete"] == expect
    else:
        with pytest.raises(bc.BackupRunError, match="configuration: retention: .*%s.*keep_incomplete, prune_incomplete"
                           % expect):
            bc.normalize_config(raw)


def test_normalize_container_components_order():
    config = bc.normalize_config(base(
        container_paths=[{"container": "omeroserver", "path": "/OMERO/"}],
        container_commands=[{"name": "omero.config", "container": "omeroserver", "command": ["omero", "config", "get"]}]))
    assert config["container_paths"][0]["name"] == "OMERO" and config["container_paths"][0]["kind"] == "omero_data"
    assert bc.expected_components(config) == ["omero", "omero.globals", "omero.config", "OMERO"]


def test_resolve_password(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cr'et\n")
    assert bc.resolve_password({"name": "x", "password": "inline"}) == "inline"
    assert bc.resolve_password({"name": "x", "password_file": str(pw)}) == "s3cr'et"
    assert bc.resolve_password({"name": "x", "password_env": "PW"}, environ={"PW": "e"}) == "e"
    assert bc.resolve_password({"name": "x"}) is None
    with pytest.raises(bc.BackupRunError, match="PW is not set"):
        bc.resolve_password({"name": "x", "password_env": "PW"}, environ={})
    with pytest.raises(bc.BackupRunError, match="cannot read password_file"):
        bc.resolve_password({"name": "x", "password_file": str(tmp_path / "missing")})


def test_public_config_hides_passwords():
    config = bc.normalize_config(base(databases=[{"container": "c", "database": "d", "password": "hunter2"}]))
    assert "hunter2" not in repr(bc.public_config(config))


# -- the schema's own rules -------------------------------------------------------------

def test_empty_means_none_for_options_without_default():
    """The role writes '' / [] / {} for "none"; options with a default keep what is given."""
    config = bc.normalize_config(base(metrics_file="", lock_file="", notify_command=[], retention={}, clients=[]))
    assert config["metrics_file"] is None and config["notify_command"] is None and config["retention"] is None
    assert config["lock_file"] == "/var/backups/nlb/.nl-biomero-backup.lock"
    assert config["clients"] == []


def test_types_from_the_schema():
    config = bc.normalize_config(base(client_stop_timeout="5", restore_test="yes", syslog="off",
                                      databases=[{"container": "c", "database": "d", "jobs": "4", "globals": "no"}]))
    assert config["client_stop_timeout"] == 5 and config["restore_test"] is True and config["syslog"] is False
    assert config["databases"][0]["jobs"] == 4 and config["databases"][0]["globals"] is False
    assert config["databases"][0]["format"] == "custom" and config["databases"][0]["exclude_table_data"] == []


@pytest.mark.parametrize("config, expect", [
    (base(client_stop_timeout="soon"), "configuration: client_stop_timeout must be an integer"),
    (base(restore_test="maybe"), "configuration: restore_test must be true or false"),
    (base(databases=[{"container": "c", "database": "d", "format": "zip"}]), "databases[0]: format 'zip' is not one of"),
    (base(databases=[{"container": ["c"], "database": "d"}]), "databases[0].container must be a string"),
    (base(databases="omero"), "configuration: databases must be a list"),
    (base(databases=["omero"]), "databases[0] must be a mapping"),
    (base(retention=[1]), "configuration: retention must be a mapping"),
    (base(clients=["a", ""]), "clients must be a list of non-empty strings"),
    ("backup_dir=/x", "configuration must be a mapping"),
])
def test_schema_refuses(config, expect):
    with pytest.raises(bc.BackupRunError) as error:
        bc.normalize_config(config)
    assert expect in str(error.value)


def test_module_argument_spec_is_the_schema_without_job_options():
    spec = bc.module_argument_spec()
    assert set(spec) == set(bc.SCHEMA) - set(bc.JOB_ONLY)
    assert spec["databases"]["options"]["password"]["no_log"] is True
    assert spec["engine"] == {"type": "str", "default": "auto", "choices": ["auto", "docker", "podman"]}
    spec["databases"]["options"].clear()  # a copy: the schema stays whole
    assert bc.SCHEMA["databases"]["options"]


# -- the pg_backup_set documentation and the postgres_backup role follow the schema ----------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
ROLE = os.path.join(REPO, "roles", "postgres_backup")
# Schema options whose role variable is not postgres_backup_<option>.
ROLE_NAMES = {"backup_dir": "postgres_backup_dir"}
# Schema options the role does not pass as they are: it resolves them itself.
ROLE_RESOLVED = {"syslog": "postgres_backup_syslog: auto turns syslog on when cron runs the job"}
# Schema options whose role default differs on purpose (the module's default is neutral, the role's
# describes an NL-BIOMERO host).
ROLE_DEFAULTS = {
    "backup_dir": "the module requires it; the role has one place for backups",
    "databases": "the role names NL-BIOMERO's OMERO DB and BIOMERO DB containers",
    "retention": "the role keeps 7 daily, 5 weekly and 12 monthly sets",
    "metrics_file": "the role writes node_exporter's textfile",
    "compose_command": "the role stops compose-made clients the compose way; the module only when asked",
}
_COMPARED = ("type", "elements", "choices")


def _yaml(*parts):
    with open(os.path.join(*parts)) as handle:
        return yaml.safe_load(handle)


def _role_variable(key):
    return ROLE_NAMES.get(key, "postgres_backup_" + key)


def _same_suboptions(schema_options, role_options, where):
    assert set(role_options) == set(schema_options), where
    for key, spec in schema_options.items():
        role = role_options[key]
        for field in _COMPARED + ("required",):
            assert role.get(field) == spec.get(field), "%s.%s: %s" % (where, key, field)
        assert role.get("default") == spec.get("default"), "%s.%s: default" % (where, key)
        if "options" in spec:
            _same_suboptions(spec["options"], role["options"], "%s.%s" % (where, key))


def _same_default(key, schema_default, role_default):
    if key in ROLE_DEFAULTS:
        return
    if schema_default is None:
        assert role_default in (None, "", [], {}), "%s: the role's default must mean none" % key
    else:
        assert role_default == schema_default, key


def test_role_argument_specs_and_defaults_follow_the_schema():
    specs = _yaml(ROLE, "meta", "argument_specs.yml")["argument_specs"]
    defaults = _yaml(ROLE, "defaults", "main.yml")
    job = specs["run_now"]["options"]
    exposed = [key for key in bc.SCHEMA if key not in ROLE_RESOLVED]
    assert set(job) == set(_role_variable(key) for key in exposed)
    for key in exposed:
        spec, name = bc.SCHEMA[key], _role_variable(key)
        role = job[name]
        for field in _COMPARED:
            assert role.get(field) == spec.get(field), "%s: %s" % (name, field)
        if "options" in spec:
            _same_suboptions(spec["options"], role["options"], name)
        assert role.get("default") == defaults[name], "%s: argument_specs and defaults/main.yml differ" % name
        _same_default(key, spec.get("default"), defaults[name])
    for key in ROLE_RESOLVED:
        assert _role_variable(key) in specs["main"]["options"] and _role_variable(key) in defaults
    # main (install the job) takes every option of the run, and every role variable is documented there
    assert set(job) <= set(specs["main"]["options"])
    documented = set().union(*(entry["options"] for entry in specs.values()))
    assert set(defaults) <= documented
    for name, spec in specs["restore"]["options"].items():
        assert spec.get("default") == defaults.get(name) or name == "postgres_backup_docker_host", name


def test_role_passes_every_exposed_option_to_the_job():
    role_vars = _yaml(ROLE, "vars", "main.yml")
    passed = set(role_vars["postgres_backup__options"]) | set(ROLE_NAMES)
    assert passed == set(bc.SCHEMA) - set(ROLE_RESOLVED)
    assert "postgres_backup__module_utils_files" not in role_vars  # the whole package is installed


def _documented_options():
    from ansible_collections.nl_biomero.database.plugins.modules import pg_backup_set
    return yaml.safe_load(pg_backup_set.DOCUMENTATION)["options"]


def _same_as_documented(spec, doc, where):
    for field in _COMPARED + ("default",):
        assert doc.get(field) == spec.get(field), "%s: %s" % (where, field)
    assert bool(doc.get("required")) == bool(spec.get("required")), "%s: required" % where
    if "options" in spec:
        assert set(doc["suboptions"]) == set(spec["options"]), where
        for key, sub in spec["options"].items():
            _same_as_documented(sub, doc["suboptions"][key], "%s.%s" % (where, key))


def test_pg_backup_set_documentation_follows_the_schema():
    documented = _documented_options()
    spec = bc.module_argument_spec()
    spec.pop("engine")  # documented by the doc fragment nl_biomero.database.container.engine
    assert set(documented) == set(spec)
    for key, option in spec.items():
        _same_as_documented(option, documented[key], key)


def test_sets_verify_whole_archives_by_default():
    config = bc.normalize_config({"backup_dir": "/b", "databases": [{"container": "c", "database": "d"}]})
    assert config["databases"][0]["verify"] == "full"
    with pytest.raises(bc.NlbError, match="verify 'fast' is not one of full, toc, none"):
        bc.normalize_config({"backup_dir": "/b", "databases": [{"container": "c", "database": "d", "verify": "fast"}]})


_BASE = {"backup_dir": "/b", "databases": [{"container": "c", "database": "d"}]}
_KEY = "age1" + "q" * 58


@pytest.mark.parametrize("offsite, message", [
    ([{"name": "t"}], r"offsite\[0\] \(t\): give exactly one of directory \(a mount\) or ssh"),
    ([{"name": "t", "directory": "/m", "ssh": {"host": "h", "user": "u"}}], "give exactly one of directory"),
    ([{"name": "t", "directory": "relative/dir"}], "directory must be an absolute path, got 'relative/dir'"),
    ([{"name": "t", "ssh": {"host": "h"}}], r"offsite\[0\] \(t\).ssh: user is required"),
    ([{"name": "t", "ssh": {"host": "h", "user": "u", "hots": "x"}}], r"unknown key\(s\) hots"),
    ([{"name": "t", "directory": "/m", "keep": 0}], "keep must be at least 1"),
    ([{"name": "t", "directory": "/m", "recipients": ["age1typo"]}], "recipient 'age1typo' is not an age public key"),
    ([{"name": "t", "directory": "/m"}, {"name": "t", "directory": "/n"}], "repeated: t"),
])
def test_offsite_targets_are_checked_naming_the_value(offsite, message):
    with pytest.raises(bc.NlbError, match=message):
        bc.normalize_config(dict(_BASE, offsite=offsite))


def test_offsite_targets_get_their_defaults():
    config = bc.normalize_config(dict(_BASE, offsite=[
        {"name": "nas", "directory": "/m"},
        {"name": "vault", "ssh": {"host": "h", "user": "u"}, "recipients": [_KEY, "ssh-ed25519 AAAAC3 me@host"]}]))
    nas, vault = config["offsite"]
    assert nas == {"name": "nas", "directory": "/m", "ssh": None, "keep": None, "recipients": []}
    assert vault["ssh"] == {"host": "h", "user": "u", "port": 22, "identity_file": None, "known_hosts": None}
