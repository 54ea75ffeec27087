"""Scheduled command lines: checked by handing them to the real readers (sh for cron, systemd-analyze when present)."""

import shutil
import subprocess

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils.schedule import (
    ScheduleError, cron_command, shell_command, systemd_command, systemd_environment)

HOSTILE = ["/opt/nl biomero/py", "-m", "x.y", "--config", "/etc/a%b/c'd\"e$HOME`id`;|&.json", ""]


def _cron_unescape(line):
    """What (Vixie/Debian) cron hands to sh: '\\%' -> '%' (and an unescaped '%' would end the command)."""
    assert "%" not in line.replace("\\%", "")
    return line.replace("\\%", "%")


def _through_sh(line):
    return subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True).stdout.split("\n")[:-1]


def test_shell_command_round_trips_through_sh():
    assert _through_sh(shell_command(["printf", "%s\\n"] + HOSTILE)) == HOSTILE


def test_cron_command_escapes_percent():
    line = cron_command(["printf", "%s\\n"] + HOSTILE)
    assert "\\%" in line
    assert _through_sh(_cron_unescape(line)) == HOSTILE


def test_systemd_command_quotes_specifiers_and_variables():
    line = systemd_command(["/opt/nl biomero/py", "a%b", "$HOME", 'q"\\'])
    assert line == '"/opt/nl biomero/py" "a%%b" "$$HOME" "q\\"\\\\"'


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_reads_back_the_argv(tmp_path):
    unit = tmp_path / "nlb-quote-test.service"
    unit.write_text("[Service]\nType=oneshot\nExecStart=%s\n" % systemd_command(["/bin/echo"] + HOSTILE[:-1]))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "ignoring" not in proc.stderr, proc.stderr


def test_systemd_environment():
    assert systemd_environment("PYTHONPATH", "/opt/a b%c") == '"PYTHONPATH=/opt/a b%%c"'


@pytest.mark.parametrize("argv", [[], ["a\nb"], ["x", "nul\0"]])
def test_unschedulable_arguments_are_refused(argv):
    with pytest.raises(ScheduleError):
        shell_command(argv)
