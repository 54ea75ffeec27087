import pytest

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
