# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which backups to keep: pure selection, no file access.

Rules, applied to items that each have an ``id``, a ``time`` and a
``complete`` flag:

- Only complete items count for the policy. ``keep_last`` keeps the N newest.
  ``keep_daily``/``keep_weekly``/``keep_monthly`` look at calendar buckets in
  UTC (day, ISO week starting Monday, month): walking from the newest item
  back, the newest complete item of each bucket is kept, for the N most recent
  buckets that hold a complete item (a gap in the backups does not use up the
  count, the way restic and borg count).
- The newest complete item is always kept.
- Of the incomplete items newer than the newest complete one (or of all
  incomplete items when nothing is complete) the ``keep_incomplete`` newest are
  kept (none with ``prune_incomplete``), the others deleted: a component that
  fails every night must not fill the disk with sets. Older incomplete items
  are deleted. An item marked ``in_progress`` is always kept and not counted.
- An item dated after ``now`` (a clock that was wrong when it was made) is
  kept, marked ``future``, and counts for nothing: it can never make the
  newest real item deletable.
- Everything else is deleted. Each kept item carries every reason it is kept.

A policy of all zeros is refused: it is almost certainly a mistake, and
``keep_last: 1`` says "only the newest" explicitly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

POLICY_KEYS = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")
# Incomplete sets kept beside the complete ones when nothing else says how many.
KEEP_INCOMPLETE = 2
# An item more than this much after "now" is dated in the future (small clock steps are not).
FUTURE_SLACK = datetime.timedelta(minutes=5)


class RetentionError(NlbError, ValueError):
    """The policy or the items given to the selection are invalid."""


def validate_policy(keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0):
    """Return the policy as a dict; RetentionError naming every bad value, or an all-zero policy."""
    policy = {"keep_last": keep_last, "keep_daily": keep_daily, "keep_weekly": keep_weekly,
              "keep_monthly": keep_monthly}
    bad = ["%s=%r" % (key, value) for key, value in policy.items()
           if isinstance(value, bool) or not isinstance(value, int) or value < 0]
    if bad:
        raise RetentionError("retention counts must be whole numbers of 0 or more; got %s" % ", ".join(bad))
    if not any(policy.values()):
        raise RetentionError(
            "the retention policy is all zeros (keep_last, keep_daily, keep_weekly and keep_monthly are 0), "
            "which would delete every backup but the newest complete one; set at least one of them above 0 "
            "(keep_last: 1 keeps only the newest)")
    return policy


def validate_keep_incomplete(value):
    """``keep_incomplete`` as an int (None: the default); RetentionError naming a bad value."""
    if value is None:
        return KEEP_INCOMPLETE
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RetentionError("keep_incomplete must be a whole number of 0 or more; got %r" % (value,))
    return value


def _as_utc(value, item_id):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            return _as_utc(datetime.datetime.fromisoformat(text), item_id)
        except ValueError:
            pass
    raise RetentionError("item %s has no usable time (%r)" % (item_id, value))


def dated_in_future(value, now=None):
    """Whether a time (datetime or ISO text; None: no) lies more than FUTURE_SLACK after ``now`` (default: the clock)."""
    if value is None:
        return False
    now = _as_utc(now, "now") if now is not None else datetime.datetime.now(datetime.timezone.utc)
    return _as_utc(value, "time") > now + FUTURE_SLACK


def day_bucket(when):
    return "%04d-%02d-%02d" % (when.year, when.month, when.day)


def week_bucket(when):
    year, week, _day = when.isocalendar()[:3]
    return "%04d-W%02d" % (year, week)


def month_bucket(when):
    return "%04d-%02d" % (when.year, when.month)


BUCKETS = (
    ("keep_daily", "daily", day_bucket),
    ("keep_weekly", "weekly", week_bucket),
    ("keep_monthly", "monthly", month_bucket),
)


def select(items, keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0, prune_incomplete=False,
           keep_incomplete=None, now=None):
    """Split ``items`` into what to keep and what to delete.

    ``items``: iterable of dicts with ``id`` (unique), ``time`` (datetime, or
    ISO 8601 text; naive means UTC), ``complete`` (bool) and optionally
    ``in_progress`` (bool) or ``unfinished`` (bool: the newest item not dated
    in the future is in progress when it is unfinished). ``now`` (default: the clock) tells which items are
    dated in the future. Returns ``{"keep": [...], "delete": [...]}``, both
    newest first; each element is the item's ``id``, ``time`` (aware UTC
    datetime) and ``complete``, plus ``reasons`` (list) when kept or
    ``reason`` (text) when deleted; a kept item dated in the future also has
    ``future: True``.
    """
    policy = validate_policy(keep_last, keep_daily, keep_weekly, keep_monthly)
    cap = 0 if prune_incomplete else validate_keep_incomplete(keep_incomplete)
    now = _as_utc(now, "now") if now is not None else datetime.datetime.now(datetime.timezone.utc)
    prepared = []
    seen = set()
    for item in items:
        item_id = item["id"]
        if item_id in seen:
            raise RetentionError("item %s is listed twice" % item_id)
        seen.add(item_id)
        prepared.append({"id": item_id, "time": _as_utc(item["time"], item_id),
                         "complete": bool(item.get("complete")), "in_progress": bool(item.get("in_progress")),
                         "unfinished": bool(item.get("unfinished"))})
    prepared.sort(key=lambda entry: (entry["time"], str(entry["id"])), reverse=True)
    future = set(entry["id"] for entry in prepared if dated_in_future(entry["time"], now))
    real = [entry for entry in prepared if entry["id"] not in future]
    if real and real[0]["unfinished"] and not real[0]["complete"]:
        real[0]["in_progress"] = True

    reasons = dict((entry["id"], []) for entry in prepared)
    complete = [entry for entry in real if entry["complete"]]
    newest = complete[0] if complete else None
    if newest is not None:
        reasons[newest["id"]].append("newest complete")
    for index, entry in enumerate(complete[:policy["keep_last"]]):
        reasons[entry["id"]].append("last %d of %d" % (index + 1, policy["keep_last"]))
    for key, label, bucket_of in BUCKETS:
        count = policy[key]
        taken = []
        for entry in complete:
            if len(taken) >= count:
                break
            bucket = bucket_of(entry["time"])
            if taken and taken[-1] == bucket:
                continue  # newest first: the first item met in a bucket is its newest
            taken.append(bucket)
            reasons[entry["id"]].append("%s %s" % (label, bucket))

    keep, delete = [], []
    incomplete_kept = 0
    for entry in prepared:
        result = {"id": entry["id"], "time": entry["time"], "complete": entry["complete"]}
        why = reasons[entry["id"]]
        if entry["id"] in future:
            result.update(future=True, reasons=["dated in the future (after %s): made with a wrong clock? "
                                                "kept, not counted" % now.strftime("%Y-%m-%dT%H:%M:%SZ")])
            keep.append(result)
        elif entry["complete"]:
            if why:
                result["reasons"] = why
                keep.append(result)
            else:
                result["reason"] = "complete, not selected by keep_last/keep_daily/keep_weekly/keep_monthly"
                delete.append(result)
        elif entry["in_progress"]:
            result["reasons"] = ["in progress"]
            keep.append(result)
        elif newest is not None and entry["time"] <= newest["time"]:
            result["reason"] = "incomplete, older than the newest complete backup"
            delete.append(result)
        elif incomplete_kept < cap:
            incomplete_kept += 1
            result["reasons"] = ["incomplete, newer than the newest complete backup" if newest is not None
                                 else "incomplete, no complete backup exists"]
            keep.append(result)
        elif prune_incomplete:
            result["reason"] = "incomplete (prune_incomplete)"
            delete.append(result)
        else:
            result["reason"] = "incomplete, beyond keep_incomplete (the %d newest incomplete are kept)" % cap
            delete.append(result)
    return {"keep": keep, "delete": delete}
