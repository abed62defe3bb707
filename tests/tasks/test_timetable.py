"""Schedule logic against an injected clock: cron and `@every`, time zones across both
daylight-saving changes, and what happens to due times missed while nothing ran."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.timetable import LOOKBACK, SKIPPED_ROWS, Timetable, missed


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_daily_run_in_berlin_fires_once_across_both_dst_changes():
    berlin = Timetable("30 2 * * *", "Europe/Berlin")
    # 29 March 2026: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist that day.
    spring = berlin.upcoming(utc(2026, 3, 28, 12), 3)
    assert spring == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)]
    # 25 October 2026: 03:00 CEST falls back to 02:00 CET, so 02:30 happens twice; it runs once.
    autumn = berlin.upcoming(utc(2026, 10, 24, 12), 3)
    assert autumn == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30), utc(2026, 10, 27, 1, 30)]
    # Asked from inside the repeated hour, it does not go back to the first 02:30.
    assert berlin.after(utc(2026, 10, 25, 1, 0)) == utc(2026, 10, 26, 1, 30)


def test_utc_is_the_default_and_the_wall_clock_of_a_zone_is_followed():
    assert Timetable("0 9 * * 1-5").after(utc(2026, 11, 27, 9, 0)) == utc(2026, 11, 30, 9, 0)  # Friday 09:00 → Monday
    assert Timetable("0 9 * * *", "America/New_York").after(utc(2026, 7, 1)) == utc(2026, 7, 1, 13)  # EDT
    assert Timetable("0 9 * * *", "America/New_York").after(utc(2026, 12, 1)) == utc(2026, 12, 1, 14)  # EST


def test_every_fires_at_multiples_of_its_duration():
    every = Timetable("@every 2s")
    assert every.after(utc(2026, 1, 1, 0, 0, 0)) == utc(2026, 1, 1, 0, 0, 2)
    assert every.after(utc(2026, 1, 1, 0, 0, 1, 500000)) == utc(2026, 1, 1, 0, 0, 2)
    assert every.upcoming(utc(2026, 1, 1), 3) == [utc(2026, 1, 1, 0, 0, 2), utc(2026, 1, 1, 0, 0, 4), utc(2026, 1, 1, 0, 0, 6)]
    assert Timetable("@every 90m").after(utc(2026, 1, 1, 0, 0)) == utc(2026, 1, 1, 1, 30)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_the_next_due_time_is_always_strictly_later(moment):
    for expression, tz in (("*/7 * * * *", "Europe/Berlin"), ("30 2 * * *", "Europe/Berlin"), ("@every 45s", "UTC"), ("0 0 29 2 *", "UTC")):
        due = Timetable(expression, tz).after(moment)
        assert due > moment and due.tzinfo is not None


def test_described_in_words():
    assert Timetable("30 2 * * *", "Europe/Berlin").describe() == "At 02:30 every day, Europe/Berlin"
    assert Timetable("@every 2s").describe() == "Every 2 seconds"
    assert Timetable("@every 1h").describe() == "Every 1 hour"
    assert Timetable("@every 5m").describe() == "Every 5 minutes" and Timetable("@every 1m").describe() == "Every 1 minute"
    assert Timetable("@every 90s").describe() == "Every 90 seconds"


def test_on_time_the_due_run_runs():
    decisions, following = missed(Timetable("@every 1m"), utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 1, 0, 200000), 600)
    assert [(d.at, d.run) for d in decisions] == [(utc(2026, 1, 1, 0, 1), True)]
    assert following == utc(2026, 1, 1, 0, 2)
    assert missed(Timetable("@every 1m"), utc(2026, 1, 1, 0, 2), utc(2026, 1, 1, 0, 1, 30), 600) == ([], utc(2026, 1, 1, 0, 2))


def test_after_downtime_the_newest_within_the_deadline_runs_and_the_rest_are_skipped_with_the_reason():
    decisions, following = missed(Timetable("@every 1m"), utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 5, 10), 600)
    assert [d.at for d in decisions] == [utc(2026, 1, 1, 0, m) for m in range(6)]
    assert [d.run for d in decisions] == [False] * 5 + [True]
    assert all("a later due time (2026-01-01 00:05:00 UTC) runs instead" in d.reason for d in decisions[:5])
    assert following == utc(2026, 1, 1, 0, 6)


def test_past_the_starting_deadline_nothing_runs_and_each_says_how_late():
    decisions, _ = missed(Timetable("@every 1m"), utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 1, 45), 30)
    assert [(d.at, d.run) for d in decisions] == [(utc(2026, 1, 1, 0, 0), False), (utc(2026, 1, 1, 0, 1), False)]
    assert "reached it 105s late, past the starting deadline (30s)" in decisions[0].reason
    assert "reached it 45s late, past the starting deadline (30s)" in decisions[1].reason


def test_a_long_downtime_is_recorded_in_bounded_rows_and_nothing_disappears():
    start, now = utc(2026, 1, 1), utc(2026, 1, 1, 0, 50)  # 3,000 due times of @every 1s
    decisions, following = missed(Timetable("@every 1s"), start, now, 600)
    assert len(decisions) == SKIPPED_ROWS and decisions[-1].run and decisions[-1].at == now
    assert decisions[0].at == start and decisions[0].run is False
    assert decisions[0].reason == (
        "missed: 2902 due times from 2026-01-01 00:00:00 UTC to 2026-01-01 00:48:21 UTC "
        "passed while the scheduler was not running (recorded as this one)"
    )
    assert following == now + timedelta(seconds=1)
    # Longer than the look-back: the count is a lower bound, the due time at `now` still
    # runs, and the schedule continues from now.
    now = start + timedelta(days=1)
    decisions, following = missed(Timetable("@every 1s"), start, now, 600)
    assert f"missed: at least {LOOKBACK - SKIPPED_ROWS + 2} due times" in decisions[0].reason
    assert f"and more until {now:%Y-%m-%d %H:%M:%S} UTC," in decisions[0].reason
    assert decisions[-1].at == now and decisions[-1].run and not any(d.run for d in decisions[:-1])
    assert following == now + timedelta(seconds=1)
    # Exactly at the look-back's end, the due time `now` is not lost either.
    decisions, following = missed(Timetable("@every 1s"), now - timedelta(seconds=LOOKBACK), now, 600)
    assert decisions[-1].at == now and decisions[-1].run and following == now + timedelta(seconds=1)
    # A cron schedule behind by more than the look-back runs its newest due time too.
    decisions, _ = missed(Timetable("* * * * *"), start, start + timedelta(days=30, seconds=20), 600)
    assert decisions[-1].at == start + timedelta(days=30) and decisions[-1].run


def test_the_boundaries_of_the_deadline_and_of_the_rows():
    # Exactly `deadline` seconds late still runs.
    decisions, _ = missed(Timetable("@every 1m"), utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 1, 30), 30)
    assert [d.run for d in decisions] == [True]
    # SKIPPED_ROWS due times are recorded one by one; one more, and the oldest two share a row.
    start = utc(2026, 1, 1)
    decisions, _ = missed(Timetable("@every 1s"), start, start + timedelta(seconds=SKIPPED_ROWS - 1), 600)
    assert len(decisions) == SKIPPED_ROWS and not any("recorded as this one" in d.reason for d in decisions)
    decisions, _ = missed(Timetable("@every 1s"), start, start + timedelta(seconds=SKIPPED_ROWS), 600)
    assert len(decisions) == SKIPPED_ROWS and decisions[0].reason.startswith("missed: 2 due times from")


def test_times_in_reasons_are_utc_whatever_the_machine_s_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        decisions, _ = missed(Timetable("@every 1m"), utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 1, 10), 600)
        assert "(2026-01-01 00:01:00 UTC)" in decisions[0].reason
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_due_times_are_in_utc_whatever_the_machine_s_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        berlin = Timetable("30 2 * * *", "Europe/Berlin")
        for due in (berlin.after(utc(2026, 6, 1)), berlin.latest(utc(2026, 6, 1))):
            assert due.utcoffset() == timedelta(0) and due.isoformat().endswith("+00:00")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_the_newest_due_time_at_or_before_a_moment():
    assert Timetable("@every 2s").latest(utc(2026, 1, 1, 0, 0, 3)) == utc(2026, 1, 1, 0, 0, 2)
    assert Timetable("@every 2s").latest(utc(2026, 1, 1, 0, 0, 2)) == utc(2026, 1, 1, 0, 0, 2)
    assert Timetable("0 12 * * *").latest(utc(2026, 1, 1, 12)) == utc(2026, 1, 1, 12)
    assert Timetable("0 12 * * *").latest(utc(2026, 1, 1, 11, 59, 59)) == utc(2025, 12, 31, 12)
    assert Timetable("30 2 * * *", "Europe/Berlin").latest(utc(2026, 3, 29, 12)) == utc(2026, 3, 29, 1, 0)


def test_a_timetable_refuses_what_the_descriptor_refuses():
    with pytest.raises(ValueError, match="'@every' needs at least 1s, got '@every 500ms'"):
        Timetable("@every 500ms")


@pytest.mark.parametrize("expression", ["61 * * * *", "* * *", "@every 0s", "@every", "@daily"])
def test_bad_expressions_are_refused_by_the_descriptor(expression):
    from builds.descriptor import DescriptorError, parse_descriptor

    with pytest.raises(DescriptorError) as refused:
        parse_descriptor(f"schemaVersion: 1\ntype: scheduled-task\nschedule: '{expression}'\n")
    assert refused.value.key == "schedule"
