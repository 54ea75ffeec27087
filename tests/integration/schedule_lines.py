"""What a scheduler runs, read back from an installed schedule the way the scheduler reads it.

Written apart from plugins/module_utils/schedule.py (which writes the lines) so that a test does not check
the writer against itself:
- cron (Vixie/Debian): the command field ends at the first unescaped '%'; '\\%' becomes '%', the other
  '%' become newlines and what follows the first one is the command's stdin; /bin/sh runs the rest.
- systemd: '%' specifiers expanded on the whole value (only '%%' is expected here), then words split with
  double/single quotes and C escapes, then (ExecStart= only) '$$' -> '$' and $VAR expansion, here refused.

Also a command line tool for the Molecule scenario: `python3 schedule_lines.py systemd UNIT` prints
{"env": {...}, "argv": [...], "pre": [...], "post": [...]} as JSON; `... cron FILE` prints
{"command": "...", "stdin": ..., "reboot": "..."}.
"""

import json
import re
import sys

_PREFIXES = "-@+!:|"
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r", "s": " ", "a": "\a", "b": "\b",
            "f": "\f", "v": "\v"}


class ScheduleReadError(ValueError):
    pass


def cron_command(field):
    """(command sh runs, stdin or None) from a crontab command field."""
    parts = []
    index = 0
    while index < len(field):
        char = field[index]
        if char == "\\" and field[index + 1:index + 2] == "%":
            parts.append("%")
            index += 2
            continue
        if char == "%":
            return "".join(parts), field[index + 1:].replace("%", "\n")
        parts.append(char)
        index += 1
    return "".join(parts), None


def cron_entries(text):
    """[(schedule, user, command field)] of the job lines of a /etc/cron.d file (comments, variables skipped)."""
    entries = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", stripped):
            continue
        if stripped.startswith("@"):
            schedule, user, command = stripped.split(None, 2)
        else:
            fields = stripped.split(None, 6)
            schedule, user, command = " ".join(fields[:5]), fields[5], fields[6]
        entries.append((schedule, user, command))
    return entries


def _specifiers(value):
    out = []
    index = 0
    while index < len(value):
        if value[index] == "%":
            if value[index + 1:index + 2] != "%":
                raise ScheduleReadError("systemd would expand the specifier %r in %r" % (value[index:index + 2], value))
            out.append("%")
            index += 2
            continue
        out.append(value[index])
        index += 1
    return "".join(out)


def _unescape(value, index):
    """(character, next index) of the C escape starting at value[index] (a backslash)."""
    char = value[index + 1:index + 2]
    if char in _ESCAPES:
        return _ESCAPES[char], index + 2
    if char == "x" and re.match(r"^[0-9a-fA-F]{2}$", value[index + 2:index + 4]):
        return chr(int(value[index + 2:index + 4], 16)), index + 4
    if re.match(r"^[0-7]{3}$", value[index + 1:index + 4]):
        return chr(int(value[index + 1:index + 4], 8)), index + 4
    raise ScheduleReadError("unknown escape %r in %r" % (value[index:index + 2], value))


def systemd_words(value):
    """The words of a systemd setting's value after specifier expansion, quote removal and C unescaping."""
    value = _specifiers(value)
    words = []
    current, in_word, quote = [], False, None
    index = 0
    while index < len(value):
        char = value[index]
        if quote:
            if char == quote:
                quote = None
                index += 1
            elif char == "\\":
                text, index = _unescape(value, index)
                current.append(text)
            else:
                current.append(char)
                index += 1
            continue
        if char in " \t":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
            index += 1
        elif char in "\"'":
            quote, in_word = char, True
            index += 1
        elif char == "\\":
            text, index = _unescape(value, index)
            current.append(text)
            in_word = True
        else:
            current.append(char)
            in_word = True
            index += 1
    if quote:
        raise ScheduleReadError("unterminated quote in %r" % value)
    if in_word:
        words.append("".join(current))
    return words


def _dollars(word):
    if re.search(r"\$(?!\$)", word.replace("$$", "")):
        raise ScheduleReadError("systemd would expand a variable in %r" % word)
    return word.replace("$$", "$")


def unit_values(text, key):
    """Every value of ``key=`` in a unit file (comments skipped)."""
    return [line.split("=", 1)[1] for line in text.splitlines()
            if not line.lstrip().startswith(("#", ";")) and line.split("=", 1)[0].strip() == key]


def exec_argv(value):
    """(prefixes, argv) of an ExecStart=-like value."""
    words = [_dollars(word) for word in systemd_words(value)]
    prefix = ""
    while words and words[0] and words[0][0] in _PREFIXES:
        prefix += words[0][0]
        words[0] = words[0][1:]
    return prefix, words


def service(text):
    """{"env": {...}, "argv": ExecStart argv, "pre": [(prefix, argv)], "post": [(prefix, argv)]} of a unit."""
    env = {}
    for value in unit_values(text, "Environment"):
        for word in systemd_words(value):
            name, _sep, setting = word.partition("=")
            env[name] = setting
    starts = unit_values(text, "ExecStart")
    if len(starts) != 1:
        raise ScheduleReadError("expected one ExecStart=, found %d" % len(starts))
    prefix, argv = exec_argv(starts[0])
    return {"env": env, "prefix": prefix, "argv": argv,
            "pre": [exec_argv(value) for value in unit_values(text, "ExecStartPre")],
            "post": [exec_argv(value) for value in unit_values(text, "ExecStopPost")]}


def main(argv):
    kind, path = argv
    with open(path) as handle:
        text = handle.read()
    if kind == "systemd":
        result = service(text)
    else:
        entries = cron_entries(text)
        jobs = [entry for entry in entries if entry[0] != "@reboot"]
        reboot = [entry for entry in entries if entry[0] == "@reboot"]
        command, stdin = cron_command(jobs[0][2])
        result = {"schedule": jobs[0][0], "user": jobs[0][1], "command": command, "stdin": stdin,
                  "reboot": cron_command(reboot[0][2])[0] if reboot else None}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
