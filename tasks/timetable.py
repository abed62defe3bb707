"""When a schedule is due: pure functions of an expression, a time zone and a clock.

A 5-field cron expression follows the wall clock of its time zone, through cronsim: across
a daylight-saving change a `30 2 * * *` fires once (at 03:00 on the day 02:30 does not
exist, and at the first 02:30 on the day it happens twice). `@every <duration>` fires at
the multiples of the duration since the Unix epoch, so its due times do not depend on when
the schedule was made or when the scheduler last ran.

`missed()` decides what happens to every due time a scheduler finds behind it: the newest
one still within the starting deadline runs, and each of the others is recorded as skipped
with the reason. Nothing is dropped silently: past SKIPPED_ROWS the oldest share one record
that counts them, and past LOOKBACK due times the count is a lower bound.
"""

from __future__ import annotations

import math
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronsim import CronSim

from builds.descriptor import EVERY_RE, parse_duration

# At most this many skipped due times are recorded one by one; older ones share one record.
SKIPPED_ROWS = 100
# Looking back further than this many due times, the count of the oldest is a lower bound.
LOOKBACK = 10_000


class Timetable:
    def __init__(self, expression: str, tz: str = "UTC"):
        self.expression = expression.strip()
        self.tz = zoneinfo.ZoneInfo(tz)
        every = EVERY_RE.match(self.expression)
        self.every = parse_duration(every.group(1)) if every else None
        if self.every is not None and self.every < 1:
            raise ValueError(f"'@every' needs at least 1s, got {self.expression!r}")
        if self.every is None:
            CronSim(self.expression, datetime.now(self.tz))  # raises CronSimError when invalid

    def after(self, moment: datetime) -> datetime:
        """The first due time strictly after `moment` (aware), in UTC."""
        if self.every is not None:
            seconds = moment.timestamp()
            step = math.floor(seconds / self.every) + 1
            return datetime.fromtimestamp(step * self.every, UTC)
        probe = moment.astimezone(self.tz)
        for _ in range(4):  # the ambiguous hour of a DST change can hand back an earlier instant
            due = next(CronSim(self.expression, probe)).astimezone(UTC)
            if due > moment:
                return due
            probe = due.astimezone(self.tz) + timedelta(minutes=1)
        raise ValueError(f"no due time after {moment.isoformat()} for {self.expression!r}")

    def latest(self, moment: datetime) -> datetime:
        """The newest due time at or before `moment` (aware), in UTC."""
        if self.every is not None:
            return datetime.fromtimestamp(math.floor(moment.timestamp() / self.every) * self.every, UTC)
        probe = (moment + timedelta(seconds=1)).astimezone(self.tz)  # cronsim's reverse order is strictly before
        return next(CronSim(self.expression, probe, reverse=True)).astimezone(UTC)

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        times, current = [], moment
        for _ in range(count):
            current = self.after(current)
            times.append(current)
        return times

    def describe(self) -> str:
        """The schedule in words, e.g. "At 02:30, Europe/Berlin" or "Every 2 seconds"."""
        if self.every is not None:
            seconds = self.every
            for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
                if seconds >= size and seconds % size == 0:
                    amount = int(seconds // size)
                    return f"Every {amount} {unit}{'s' if amount != 1 else ''}"
            return f"Every {seconds:g} seconds"
        words = CronSim(self.expression, datetime.now(self.tz)).explain()
        return f"{words}, {self.tz.key}"


@dataclass(frozen=True)
class Due:
    at: datetime
    run: bool
    reason: str = ""  # why it is skipped


def missed(timetable: Timetable, next_due: datetime, now: datetime, deadline: float) -> tuple[list[Due], datetime]:
    """Every due time from `next_due` up to `now`, each to run or to skip, and the first due
    time after `now`. At most one runs: the newest that is at most `deadline` seconds late."""
    late: list[datetime] = []
    current = next_due
    count = 0
    while current <= now and count < LOOKBACK:
        late.append(current)
        current = timetable.after(current)
        count += 1
    overflow = current <= now
    if overflow:  # more than LOOKBACK behind: count no further, but the newest may still run
        late.append(timetable.latest(now))  # later than late[-1]: `current` was after it, and not after now
        current = timetable.after(now)
    if not late:
        return [], current

    runs_at = late[-1] if (now - late[-1]).total_seconds() <= deadline else None
    decisions: list[Due] = []
    for at in late:
        if at == runs_at:
            decisions.append(Due(at, True))
        elif runs_at is not None:
            decisions.append(Due(at, False, f"missed: a later due time ({_clock(runs_at)}) runs instead"))
        else:
            late_by = int((now - at).total_seconds())
            decisions.append(
                Due(at, False, f"missed: the scheduler reached it {late_by}s late, past the starting deadline ({deadline:g}s)")
            )
    if len(decisions) > SKIPPED_ROWS:
        kept = decisions[-(SKIPPED_ROWS - 1) :]
        folded = decisions[: len(decisions) - len(kept)]
        more = "at least " if overflow else ""
        uncounted = f", and more until {_clock(kept[-1].at)}," if overflow else ""
        reason = (
            f"missed: {more}{len(folded)} due times from {_clock(folded[0].at)} to {_clock(folded[-1].at)}{uncounted} "
            "passed while the scheduler was not running (recorded as this one)"
        )
        decisions = [Due(folded[0].at, False, reason), *kept]
    return decisions, current


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
