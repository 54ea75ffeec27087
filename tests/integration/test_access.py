"""Client authentication of the role postgres_container (issue 16): pg_hba rules, TLS, reload, refusals.

One provisioning (playbooks/provision.yml, PostgreSQL 17) shared by the module:
a CA and a server certificate made with openssl in a tmp dir, a network with a
known subnet, an instance with TLS on and one hostssl rule for the upper half
of the subnet. Clients are throwaway containers of the image on that network
with fixed addresses (one inside the rule, one outside), connecting with psql.
"""

import json
import os
import random
import re
import shutil
import subprocess
import time

import pytest

from harness import ENGINE, REPO_ROOT, engine, require_image, unique

pytestmark = pytest.mark.skipif(ENGINE != "docker", reason="the postgres_container role is tested with Docker")

PW = "access-pw"
LEGACY_PW = "legacy-md5-pw"


def openssl(work, *args):
    subprocess.run(["openssl", *args], cwd=work, check=True, capture_output=True, timeout=60)


def make_certs(work):
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(work, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=nlbtest-ca")
    openssl(work, "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=nlbtest-db")
    openssl(work, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2")
    openssl(work, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", "other.key")
    for name in ("ca.key", "server.key", "other.key"):
        os.chmod(os.path.join(work, name), 0o600)


def make_network(name):
    """A network with a fixed /24 (clients get fixed addresses); retried on an overlap."""
    for _attempt in range(20):
        subnet = "10.%d.%d" % (random.randint(200, 250), random.randint(0, 255))
        proc = engine("network", "create", "--subnet", subnet + ".0/24", name, check=False)
        if proc.returncode == 0:
            return subnet
    raise AssertionError("no free subnet for %s: %s" % (name, proc.stderr))


def write_inventory(site, hba, tls=None):
    with open(site["inventory"], "w") as handle:
        json.dump({"nl_biomero_database": {"hosts": {"db-host": {
            "ansible_connection": "local",
            "ansible_python_interpreter": os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"),
            "postgres_container_instances": [{
                "name": site["container"], "role": "omero", "user": "omero", "db": "omero", "password": PW,
                "image": require_image(17), "hba": hba, "listen_addresses": ["*"],
                "tls": tls or {"cert": site["work"] + "/server.crt", "key": site["work"] + "/server.key",
                               "ca": site["work"] + "/ca.crt"}}],
            "postgres_container_network": site["network"],
            "postgres_container_access_root": site["access_root"],
            "postgres_container_tuning": "none",
            "postgres_container_pull": False,
            "postgres_container_stop_timeout": 30,
            "postgres_container_wait_timeout": 120,
        }}}}, handle)


def playbook(site, *extra):
    started = time.time()
    proc = subprocess.run(["ansible-playbook", "-i", site["inventory"], *extra,
                           os.path.join(REPO_ROOT, "playbooks", "provision.yml")],
                          capture_output=True, text=True, timeout=600, check=False, cwd=site["work"])
    proc.seconds = time.time() - started
    return proc


def recap(output):
    found = re.findall(r"^db-host\s*:\s*(.*)$", output, re.M)
    return dict((key, int(value)) for key, value in re.findall(r"(\w+)=(\d+)", found[-1]))


def client(site, address, conninfo, user="omero", password=PW):
    """psql from a throwaway container at ``address`` on the instance's network; (rc, output)."""
    proc = engine("run", "--rm", "--pull", "never", "--network", site["network"], "--ip", address,
                  "-v", site["work"] + "/ca.crt:/tls/ca.crt:ro", "-e", "PGPASSWORD=" + password,
                  "--entrypoint", "psql", require_image(17), "-X", "-At",
                  "host=%s user=%s dbname=omero connect_timeout=10 %s" % (site["db_ip"], user, conninfo),
                  "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", check=False)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def started_at(site):
    return engine("container", "inspect", "-f", "{{.State.StartedAt}}", site["container"]).stdout.strip()


def hba_text(site):
    with open(os.path.join(site["access_root"], site["container"], "pg_hba.conf")) as handle:
        return handle.read()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("access"))
    os.chmod(work, 0o755)
    site = {"container": unique("nlbtest-access"), "network": unique("nlbtest-access-net"), "work": work,
            "inventory": os.path.join(work, "inventory.json"), "access_root": os.path.join(work, "access")}
    make_certs(work)
    try:
        subnet = make_network(site["network"])
        site.update({"subnet": subnet, "allowed": subnet + ".130", "outside": subnet + ".70",
                     "rules": [{"address": subnet + ".128/25", "database": "omero"}]})
        write_inventory(site, site["rules"])
        proc = playbook(site)
        site["provision_seconds"] = proc.seconds
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        site["db_ip"] = engine("container", "inspect", "-f",
                               "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                               site["container"]).stdout.strip()
        yield site
    finally:
        engine("rm", "-f", "-v", site["container"], check=False)
        engine("volume", "rm", "-f", site["container"], check=False)
        engine("network", "rm", site["network"], check=False)
        shutil.rmtree(work, ignore_errors=True)


def test_tls_client_on_an_allowed_network_connects_with_verify_ca(site):
    rc, out = client(site, site["allowed"], "sslmode=verify-ca sslrootcert=/tls/ca.crt")
    assert (rc, out) == (0, "t")
    # The key the server reads is the role's copy: owned by the image's postgres user, 0600.
    key = os.stat(os.path.join(site["access_root"], site["container"], "server.key"))
    assert (key.st_uid, oct(key.st_mode & 0o777)) == (999, "0o600")


def test_a_connection_without_tls_is_refused(site):
    rc, out = client(site, site["allowed"], "sslmode=disable")
    assert rc != 0 and "no pg_hba.conf entry" in out and "no encryption" in out, out


def test_a_client_outside_the_rules_is_refused(site):
    rc, out = client(site, site["outside"], "sslmode=verify-ca sslrootcert=/tls/ca.crt")
    assert rc != 0 and "no pg_hba.conf entry for host \"%s\"" % site["outside"] in out, out


def test_only_scram_is_accepted(site):
    # A client that insists on md5 is refused: the server asks for SCRAM.
    rc, out = client(site, site["allowed"], "sslmode=require require_auth=md5")
    assert rc != 0 and "SASL" in out, out
    # A role whose password is stored as an md5 hash cannot log in through the scram-sha-256 rule.
    engine("exec", "-i", site["container"], "psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", "omero", "-d", "omero",
           "-f", "-", input="SET password_encryption = 'md5';\n"
                            "CREATE ROLE legacy LOGIN PASSWORD '%s';\n" % LEGACY_PW)
    rc, out = client(site, site["allowed"], "sslmode=require", user="legacy", password=LEGACY_PW)
    assert rc != 0 and "password authentication failed" in out, out


def test_an_hba_change_reloads_without_a_restart_and_a_rerun_changes_nothing(site):
    before, old_text = started_at(site), hba_text(site)
    rules = site["rules"] + [{"address": site["subnet"] + ".64/26", "database": "omero", "user": "omero"}]
    write_inventory(site, rules)
    check = playbook(site, "--check", "--diff")
    assert check.returncode == 0, check.stdout[-4000:]
    assert re.search(r"^\+hostssl\s+omero\s+omero\s+%s\.64/26\s+scram-sha-256$" % re.escape(site["subnet"]),
                     check.stdout, re.M), check.stdout[-4000:]
    assert "BEGIN PRIVATE KEY" not in check.stdout
    assert hba_text(site) == old_text and recap(check.stdout)["changed"] >= 1  # --check changed nothing
    assert client(site, site["outside"], "sslmode=require")[0] != 0

    run = playbook(site)
    assert run.returncode == 0, run.stdout[-4000:]
    assert started_at(site) == before  # reloaded, not restarted
    assert client(site, site["outside"], "sslmode=verify-ca sslrootcert=/tls/ca.crt") == (0, "t")

    again = playbook(site)
    assert again.returncode == 0 and recap(again.stdout)["changed"] == 0, again.stdout[-4000:]
    print("provision %.1f s, check %.1f s, change %.1f s, re-run %.1f s"
          % (site["provision_seconds"], check.seconds, run.seconds, again.seconds))


@pytest.mark.parametrize("case", ["lockout", "tls_files"])
def test_refused_before_anything_changes(site, case):
    before, old_text = started_at(site), hba_text(site)
    tls = {"cert": site["work"] + "/server.crt", "key": site["work"] + "/server.key"}
    rules = site["rules"]
    if case == "lockout":
        rules = rules + [{"type": "local", "user": "omero"}]
        expected = ["hba[1] {'type': 'local', 'user': 'omero'} would lock out the role's own connection"]
    else:
        # pg_access_check reports every bad file of a run.
        tls.update(key=site["work"] + "/other.key", ca=site["work"] + "/missing.crt")
        expected = ["tls key %s does not belong to the certificate" % tls["key"],
                    "tls ca %s does not exist" % tls["ca"]]
    write_inventory(site, rules, tls)
    try:
        proc = playbook(site)
    finally:
        write_inventory(site, site["rules"])
    assert proc.returncode != 0 and "nothing was changed" in proc.stdout, proc.stdout[-4000:]
    for text in expected:
        assert text in proc.stdout, proc.stdout[-4000:]
    assert recap(proc.stdout)["changed"] == 0
    assert (started_at(site), hba_text(site)) == (before, old_text)
