import datetime
import re

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import retention

UTC = datetime.timezone.utc


def at(text):
    """'2026-03-14' or '2026-03-14 18:00' -> aware UTC datetime (02:00 when no time is given)."""
    if " " not in text:
        text += " 02:00"
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def days(first, last, hours=("02:00",)):
    """Ids ('YYYY-MM-DD HH:MM') of backups at the given hours on every day from first to last."""
    day = at(first).date()
    out = []
    while day <= at(last).date():
        out.extend("%s %s" % (day.isoformat(), hour) for hour in hours)
        day += datetime.timedelta(days=1)
    return out


def norm(text):
    return text if " " in text else text + " 02:00"


def items(complete_ids, incomplete_ids=(), in_progress=()):
    complete_ids = [norm(i) for i in complete_ids]
    incomplete_ids = [norm(i) for i in incomplete_ids]
    made = [{"id": i, "time": at(i), "complete": True} for i in complete_ids]
    made += [{"id": i, "time": at(i), "complete": False, "in_progress": i in in_progress} for i in incomplete_ids]
    return made


def ids(entries):
    return [entry["id"] for entry in entries]


def run(given, **policy):
    result = retention.select(given, **policy)
    every = sorted(ids(result["keep"]) + ids(result["delete"]))
    assert every == sorted(item["id"] for item in given), "every item is either kept or deleted, once"
    for part in ("keep", "delete"):
        times = [entry["time"] for entry in result[part]]
        assert times == sorted(times, reverse=True), "newest first"
    return result


JAN_TO_MAR = days("2026-01-01", "2026-03-31")  # 90 daily sets; 2026-03-31 is a Tuesday


@pytest.mark.parametrize("given,policy,expected", [
    pytest.param(JAN_TO_MAR, {"keep_last": 3}, ["2026-03-31 02:00", "2026-03-30 02:00", "2026-03-29 02:00"],
                 id="keep_last"),
    pytest.param(JAN_TO_MAR, {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 3},
                 days("2026-03-25", "2026-03-31")[::-1]
                 + ["2026-03-22 02:00", "2026-03-15 02:00"]  # Sundays: newest of ISO weeks 11 and 12 (w13 is daily)
                 + ["2026-02-28 02:00", "2026-01-31 02:00"],  # newest of February and January
                 id="daily-weekly-monthly-over-three-months"),
    pytest.param(JAN_TO_MAR, {"keep_monthly": 12}, ["2026-03-31 02:00", "2026-02-28 02:00", "2026-01-31 02:00"],
                 id="monthly-more-than-there-are"),
    pytest.param(JAN_TO_MAR, {"keep_weekly": 2}, ["2026-03-31 02:00", "2026-03-29 02:00"], id="weekly"),
    pytest.param(days("2026-03-10", "2026-03-12", hours=("02:00", "10:00", "18:00")), {"keep_daily": 2},
                 ["2026-03-12 18:00", "2026-03-11 18:00"], id="several-per-day-newest-of-each-day"),
    pytest.param(days("2026-03-10", "2026-03-12", hours=("02:00", "10:00", "18:00")), {"keep_last": 2, "keep_daily": 2},
                 ["2026-03-12 18:00", "2026-03-12 10:00", "2026-03-11 18:00"], id="last-and-daily-overlap"),
    pytest.param(["2026-01-05", "2026-01-20", "2026-03-03"], {"keep_monthly": 2},
                 ["2026-03-03 02:00", "2026-01-20 02:00"], id="empty-month-does-not-use-up-the-count"),
    pytest.param(["2025-12-28", "2025-12-29", "2026-01-04"], {"keep_weekly": 2},
                 ["2026-01-04 02:00", "2025-12-28 02:00"], id="iso-week-across-new-year"),
    pytest.param(["2025-12-31 23:00", "2026-01-01 01:00"], {"keep_monthly": 2, "keep_daily": 1},
                 ["2026-01-01 01:00", "2025-12-31 23:00"], id="year-boundary-months"),
])
def test_policy_keeps_exactly(given, policy, expected):
    result = run(items(given), **policy)
    assert ids(result["keep"]) == expected
    assert all(entry["reason"].startswith("complete, not selected") for entry in result["delete"])


def test_buckets_are_utc_whatever_the_offset_of_the_time():
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    given = [
        {"id": "local-march-1", "time": datetime.datetime(2026, 3, 1, 0, 30, tzinfo=plus2), "complete": True},
        {"id": "feb-27", "time": "2026-02-27T10:00:00Z", "complete": True},
        {"id": "mar-2", "time": "2026-03-02T10:00:00+00:00", "complete": True},
    ]
    result = run(given, keep_monthly=2)
    # 2026-03-01T00:30+02:00 is 2026-02-28T22:30Z: the newest of February
    assert ids(result["keep"]) == ["mar-2", "local-march-1"]
    assert [entry["reasons"] for entry in result["keep"]] == [["newest complete", "monthly 2026-03"],
                                                              ["monthly 2026-02"]]
    assert ids(result["delete"]) == ["feb-27"]


def test_reasons_name_every_rule():
    result = run(items(JAN_TO_MAR), keep_last=1, keep_daily=2, keep_weekly=1, keep_monthly=2)
    reasons = dict((entry["id"], entry["reasons"]) for entry in result["keep"])
    assert reasons == {
        "2026-03-31 02:00": ["newest complete", "last 1 of 1", "daily 2026-03-31", "weekly 2026-W14",
                             "monthly 2026-03"],
        "2026-03-30 02:00": ["daily 2026-03-30"],
        "2026-02-28 02:00": ["monthly 2026-02"],
    }


COMPLETE = ["2026-03-01", "2026-03-02", "2026-03-03"]
OLD_INCOMPLETE = ["2026-02-28", "2026-03-02 12:00"]
NEW_INCOMPLETE = ["2026-03-04", "2026-03-05"]


@pytest.mark.parametrize("prune,in_progress,kept,deleted", [
    pytest.param(False, (), ["2026-03-05 02:00", "2026-03-04 02:00", "2026-03-03 02:00"],
                 ["2026-03-02 12:00", "2026-03-02 02:00", "2026-03-01 02:00", "2026-02-28 02:00"],
                 id="newer-incomplete-kept"),
    pytest.param(True, (), ["2026-03-03 02:00"],
                 ["2026-03-05 02:00", "2026-03-04 02:00", "2026-03-02 12:00", "2026-03-02 02:00",
                  "2026-03-01 02:00", "2026-02-28 02:00"], id="prune-incomplete"),
    pytest.param(True, ("2026-03-05 02:00",), ["2026-03-05 02:00", "2026-03-03 02:00"],
                 ["2026-03-04 02:00", "2026-03-02 12:00", "2026-03-02 02:00", "2026-03-01 02:00",
                  "2026-02-28 02:00"], id="in-progress-never-deleted"),
])
def test_incomplete_sets(prune, in_progress, kept, deleted):
    given = items(COMPLETE, OLD_INCOMPLETE + NEW_INCOMPLETE, in_progress=in_progress)
    result = run(given, keep_last=1, prune_incomplete=prune)
    assert ids(result["keep"]) == kept
    assert ids(result["delete"]) == deleted
    reasons = dict((entry["id"], entry["reason"]) for entry in result["delete"])
    assert reasons["2026-02-28 02:00"] == "incomplete, older than the newest complete backup"


def test_incomplete_sets_never_fill_a_bucket():
    given = items(["2026-03-10 02:00", "2026-03-09 02:00"], ["2026-03-10 18:00", "2026-03-08 02:00"])
    result = run(given, keep_daily=2)
    assert ids(result["keep"]) == ["2026-03-10 18:00", "2026-03-10 02:00", "2026-03-09 02:00"]
    assert ids(result["delete"]) == ["2026-03-08 02:00"]


@pytest.mark.parametrize("prune,kept", [(False, 2), (True, 0)])
def test_nothing_complete(prune, kept):
    result = run(items([], ["2026-03-01", "2026-03-02"]), keep_last=5, prune_incomplete=prune)
    assert len(result["keep"]) == kept
    if not prune:
        assert result["keep"][0]["reasons"] == ["incomplete, no complete backup exists"]


def test_newest_complete_is_kept_even_when_older_than_incomplete_ones():
    result = run(items(["2026-01-01"], days("2026-01-02", "2026-01-09")), keep_daily=1)
    assert "2026-01-01 02:00" in ids(result["keep"])


def test_empty_input():
    assert retention.select([], keep_last=1) == {"keep": [], "delete": []}


@pytest.mark.parametrize("policy,message", [
    ({}, "all zeros"),
    ({"keep_last": 0, "keep_daily": 0}, "all zeros"),
    ({"keep_daily": -1}, "keep_daily=-1"),
    ({"keep_last": 2, "keep_weekly": -3, "keep_monthly": "x"}, "keep_weekly=-3, keep_monthly='x'"),
    ({"keep_last": True}, "keep_last=True"),
    ({"keep_monthly": 1.5}, "keep_monthly=1.5"),
])
def test_bad_policies_are_refused(policy, message):
    with pytest.raises(retention.RetentionError, match=re.escape(message)):
        retention.select(items(["2026-01-01"]), **policy)


def test_all_zero_message_is_clear():
    with pytest.raises(retention.RetentionError) as caught:
        retention.validate_policy()
    assert "set at least one of them above 0" in str(caught.value)
    assert "keep_last: 1" in str(caught.value)


def test_validate_policy_returns_policy():
    assert retention.validate_policy(keep_daily=7) == {"keep_last": 0, "keep_daily": 7, "keep_weekly": 0,
                                                       "keep_monthly": 0}


@pytest.mark.parametrize("given,message", [
    ([{"id": "a", "time": at("2026-01-01"), "complete": True}] * 2, "listed twice"),
    ([{"id": "a", "time": "yesterday", "complete": True}], "no usable time"),
    ([{"id": "a", "time": None, "complete": True}], "no usable time"),
])
def test_bad_items(given, message):
    with pytest.raises(retention.RetentionError, match=message):
        retention.select(given, keep_last=1)


def test_naive_times_are_utc():
    given = [{"id": "naive", "time": datetime.datetime(2026, 2, 28, 23, 30), "complete": True},
             {"id": "aware", "time": at("2026-03-01 00:10"), "complete": True}]
    result = run(given, keep_monthly=2)
    assert [entry["reasons"][-1] for entry in result["keep"]] == ["monthly 2026-03", "monthly 2026-02"]


@pytest.mark.parametrize("when,day,week,month", [
    ("2026-01-01", "2026-01-01", "2026-W01", "2026-01"),
    ("2027-01-01", "2027-01-01", "2026-W53", "2027-01"),
    ("2024-12-30", "2024-12-30", "2025-W01", "2024-12"),
])
def test_bucket_keys(when, day, week, month):
    assert retention.day_bucket(at(when)) == day
    assert retention.week_bucket(at(when)) == week
    assert retention.month_bucket(at(when)) == month


# -- keep_incomplete: a component failing every night does not fill the disk ---------------------------

NIGHTS = days("2026-02-01", "2026-03-12")  # 40 nights


def test_forty_failed_nights_under_the_role_default_policy_keep_two():
    given = items(["2026-01-31"], NIGHTS)
    result = run(given, keep_daily=7, keep_weekly=5, keep_monthly=12)
    assert ids(result["keep"]) == ["2026-03-12 02:00", "2026-03-11 02:00", "2026-01-31 02:00"]
    assert result["keep"][-1]["reasons"][0] == "newest complete"
    assert len(result["delete"]) == 38
    assert set(entry["reason"] for entry in result["delete"]) == {
        "incomplete, beyond keep_incomplete (the 2 newest incomplete are kept)"}
    assert ids(result["delete"])[0] == "2026-03-10 02:00" and ids(result["delete"])[-1] == "2026-02-01 02:00"


@pytest.mark.parametrize("cap,prune,kept", [
    (5, False, NIGHTS[::-1][:5]),
    (0, False, []),
    (3, True, []),  # prune_incomplete wins: none kept
])
def test_keep_incomplete_cap(cap, prune, kept):
    result = run(items(["2026-01-31"], NIGHTS), keep_last=1, keep_incomplete=cap, prune_incomplete=prune)
    assert ids(result["keep"]) == kept + ["2026-01-31 02:00"]


def test_cap_applies_when_nothing_is_complete_and_in_progress_is_not_counted():
    given = items([], NIGHTS[-5:], in_progress=(NIGHTS[-1],))
    result = run(given, keep_last=1, keep_incomplete=1)
    assert [(entry["id"], entry["reasons"]) for entry in result["keep"]] == [
        ("2026-03-12 02:00", ["in progress"]), ("2026-03-11 02:00", ["incomplete, no complete backup exists"])]


@pytest.mark.parametrize("value", [-1, True, "2", 1.0])
def test_bad_keep_incomplete_is_refused(value):
    with pytest.raises(retention.RetentionError, match=re.escape("keep_incomplete must be a whole number of 0 or "
                                                                 "more; got %r" % (value,))):
        retention.select(items(["2026-01-01"]), keep_last=1, keep_incomplete=value)


# -- sets dated in the future (a wrong clock) ----------------------------------------------------------

NOW = at("2026-03-12 02:30")


def test_a_set_from_the_future_never_makes_the_set_just_made_deletable():
    given = items(["2030-01-01", "2026-03-11", "2026-03-12"])
    result = run(given, keep_last=1, now=NOW)
    assert ids(result["keep"]) == ["2030-01-01 02:00", "2026-03-12 02:00"]
    future, made = result["keep"]
    assert future["future"] is True and future["reasons"][0].startswith("dated in the future (after 2026-03-12T02:30:00Z)")
    assert made["reasons"] == ["newest complete", "last 1 of 1"] and "future" not in made
    assert ids(result["delete"]) == ["2026-03-11 02:00"]


def test_future_sets_fill_no_bucket_and_do_not_hide_newer_failures():
    given = items(["2026-12-24", "2026-03-10"], ["2026-12-25", "2026-03-11", "2026-03-09"])
    result = run(given, keep_daily=1, keep_monthly=1, now=NOW)
    assert ids(result["keep"]) == ["2026-12-25 02:00", "2026-12-24 02:00", "2026-03-11 02:00", "2026-03-10 02:00"]
    assert [entry.get("future", False) for entry in result["keep"]] == [True, True, False, False]
    assert result["keep"][3]["reasons"] == ["newest complete", "daily 2026-03-10", "monthly 2026-03"]
    assert ids(result["delete"]) == ["2026-03-09 02:00"]


def test_a_small_clock_step_is_not_the_future():
    result = run(items(["2026-03-12 02:33", "2026-03-11"]), keep_last=1, now=NOW)
    assert ids(result["keep"]) == ["2026-03-12 02:33"] and "future" not in result["keep"][0]


def test_newest_real_unfinished_item_is_in_progress_not_a_future_one():
    given = [{"id": "future", "time": at("2027-01-01"), "complete": False, "unfinished": True},
             {"id": "running", "time": at("2026-03-12 02:00"), "complete": False, "unfinished": True},
             {"id": "dead", "time": at("2026-03-11 02:00"), "complete": False, "unfinished": True},
             {"id": "good", "time": at("2026-03-10 02:00"), "complete": True}]
    result = run(given, keep_last=1, keep_incomplete=0, now=NOW)
    assert [(entry["id"], entry["reasons"][0][:11]) for entry in result["keep"]] == [
        ("future", "dated in th"), ("running", "in progress"), ("good", "newest comp")]
    assert ids(result["delete"]) == ["dead"]


@pytest.mark.parametrize("value,expected", [
    (None, False), ("2026-03-12T02:34:59Z", False), ("2026-03-12T02:35:01Z", True), (at("2027-01-01"), True),
    (datetime.datetime(2026, 3, 12, 2, 40), True),  # naive: UTC
])
def test_dated_in_future(value, expected):
    assert retention.dated_in_future(value, now=NOW) is expected
