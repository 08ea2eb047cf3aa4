"""When each driver's reconcile is due, computed alike by every daemon replica.

A *slot* is one due reconcile of one driver, named by an int: its nominal start in whole
seconds since the epoch (UTC). Replicas never talk about schedules: each derives the same slot
ids and due times from the config alone, and the catalog keeps one run per (driver, slot id),
so one replica runs each slot.

- `Every(period, jitter)`: slots start at the multiples of `period` since the epoch (so
  `every: 1d` is due at 00:00 UTC), each delayed by an offset in `[0, jitter * period)` drawn
  from a hash of the driver's name and the slot id. The offset is the same on every replica and
  after every restart, and differs between drivers, so they do not all list their buckets at
  the same instant.
- `Cron(expression)`: the five standard fields, in UTC; each matching minute is a slot.

After downtime, run only the newest missed slot (`latest_due`): one reconcile brings a driver
up to date whatever it missed, so replaying every missed slot only repeats work. `due_slots`
lists all slots of a window, a bounded page at a time, for callers that want each of them.

Pure: no clock, no I/O, no threads; callers pass the times (epoch seconds).
"""

from __future__ import annotations

import bisect
import calendar
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeAlias

#: The most slots `due_slots` returns at once, so a long outage does not become a backlog.
MAX_DUE_SLOTS = 1000

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
# `ms` comes first in the alternation so that it is not read as minutes followed by seconds.
_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)")
_DURATION = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+")
_PERCENT = re.compile(rf"\s*({_NUMBER})\s*%\s*")

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# The Gregorian calendar repeats every 400 years (146097 days, a whole number of weeks).
_CYCLE_MINUTES = 146097 * 1440


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`: a number of seconds, or text such as `90`, `90s`, `15m`, `2h`,
    `1d`, `1h30m`, `1.5h` or `500ms` (units largest first, each at most once). A number passes
    as it is, sign and all: which durations make sense is the caller's business."""
    # bool is an int, but `True` is no duration.
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"invalid duration {value!r}: not a finite number")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: expected seconds or text like '15m'")
    text = value.strip().lower()
    if re.fullmatch(_NUMBER, text):
        return float(text)
    if not _DURATION.fullmatch(text):
        raise ValueError(
            f"invalid duration {value!r}: expected seconds or text like '90s', '15m', "
            "'1h30m', '500ms'"
        )
    parts = _PART.findall(text)
    ranks = [list(_UNITS).index(unit) for _, unit in parts]
    if ranks != sorted(set(ranks)):
        raise ValueError(
            f"invalid duration {value!r}: units go from largest to smallest, each once"
        )
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


@dataclass(frozen=True)
class Every:
    """Slots at each multiple of `period` seconds since the epoch, each due after a fixed
    per-(driver, slot) offset below `jitter * period`."""

    period: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        # Slot ids are whole seconds; whole-second periods keep every id exact and distinct.
        if not (math.isfinite(self.period) and self.period >= 1 and self.period % 1 == 0):
            raise ValueError(
                f"every {self.period!r}s: the period must be a whole number of seconds, at least 1"
            )
        # Up to a whole period, so that slots still fall due in the order of their ids.
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter {self.jitter!r} is outside 0..1 (0%..100%) of the period")


@dataclass(frozen=True)
class _Rule:
    """The values a cron expression allows, each field sorted."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 is Sunday
    either_day: bool

    def day_matches(self, day: date) -> bool:
        in_month = day.day in self.days
        in_week = day.toordinal() % 7 in self.weekdays  # ordinal 7 (0001-01-07) is a Sunday
        return (in_month or in_week) if self.either_day else (in_month and in_week)


@dataclass(frozen=True)
class Cron:
    """The minutes, in UTC, that a five-field cron expression (or an @-macro) matches."""

    expression: str
    _rule: _Rule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rule", _parse_rule(self.expression))

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """The schedule of `expression`, its whitespace normalized; a ValueError names the
        field and the value at fault."""
        return cls(" ".join(expression.split()))


Schedule: TypeAlias = Every | Cron


@dataclass(frozen=True)
class _Spec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # the names of low, low + 1, ...


_SPECS = (
    _Spec("minute", 0, 59),
    _Spec("hour", 0, 23),
    _Spec("day-of-month", 1, 31),
    _Spec("month", 1, 12, tuple(name.lower() for name in calendar.month_abbr[1:])),
    # 7 is Sunday too, as in Vixie cron.
    _Spec("day-of-week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_LONGEST_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _parse_rule(expression: str) -> _Rule:
    text = _MACROS.get(expression.strip().lower(), expression)
    if text.strip().startswith("@"):
        raise ValueError(
            f"cron {expression!r}: unknown macro; expected one of {', '.join(_MACROS)}"
        )
    fields = text.split()
    if len(fields) != len(_SPECS):
        raise ValueError(
            f"cron {expression!r}: expected 5 fields (minute hour day-of-month month "
            f"day-of-week), got {len(fields)}"
        )
    minutes, hours, days, months, weekdays = (
        _parse_field(spec, part, expression) for spec, part in zip(_SPECS, fields, strict=True)
    )
    rule = _Rule(
        minutes,
        hours,
        days,
        months,
        tuple(sorted({day % 7 for day in weekdays})),
        # Vixie cron: a day field that starts with `*` (even `*/2`) defers to the other one;
        # only when neither does is a day due if either matches.
        either_day=not fields[2].startswith("*") and not fields[4].startswith("*"),
    )
    # Every date falls on every weekday within the 400-year cycle, so only a day of the month
    # that none of the months has can make an expression never match.
    if not rule.either_day and rule.days[0] > max(_LONGEST_MONTH[m] for m in rule.months):
        raise ValueError(
            f"cron {expression!r} never matches: day-of-month {fields[2]!r} is in none of the "
            f"months {fields[3]!r}"
        )
    return rule


def _parse_field(spec: _Spec, text: str, expression: str) -> tuple[int, ...]:
    values: set[int] = set()
    try:
        for item in text.split(","):
            values.update(_parse_item(spec, item))
    except ValueError as error:
        raise ValueError(f"cron {expression!r}: {spec.name} field {text!r}: {error}") from None
    return tuple(sorted(values))


def _parse_item(spec: _Spec, item: str) -> range:
    base, slash, step_text = item.partition("/")
    step = _number(step_text) if slash else 1
    if step < 1:
        raise ValueError(f"step {step_text!r} must be at least 1")
    if base == "*":
        return range(spec.low, spec.high + 1, step)
    first, dash, last = base.partition("-")
    if slash and not dash:
        raise ValueError(f"{item!r}: a step needs * or a range, as in {first}-{spec.high}/{step}")
    low = _value(spec, first)
    high = _value(spec, last) if dash else low
    if low > high:
        raise ValueError(f"range {base!r} runs backwards")
    return range(low, high + 1, step)


def _value(spec: _Spec, token: str) -> int:
    name = token.lower()
    if name in spec.names:
        return spec.low + spec.names.index(name)
    value = _number(token, spec.names)
    if not spec.low <= value <= spec.high:
        raise ValueError(f"{value} is out of range {spec.low}-{spec.high}")
    return value


def _number(token: str, names: tuple[str, ...] = ()) -> int:
    # str.isdigit alone accepts other scripts' digits, which int() would then read.
    if not (token.isascii() and token.isdigit()):
        if not token:
            raise ValueError("a value is missing")
        expected = f"a number or a name {names[0]}..{names[-1]}" if names else "a number"
        raise ValueError(f"{token!r} is not {expected}")
    return int(token)


def _ceil(values: tuple[int, ...], x: int) -> int | None:
    at = bisect.bisect_left(values, x)
    return values[at] if at < len(values) else None


def _floor(values: tuple[int, ...], x: int) -> int | None:
    at = bisect.bisect_right(values, x)
    return values[at - 1] if at else None


def _civil(minute: int) -> tuple[int, int, int, int, int]:
    days, rest = divmod(minute, 1440)
    day = date.fromordinal(days + _EPOCH_ORDINAL)
    return day.year, day.month, day.day, rest // 60, rest % 60


def _minute(year: int, month: int, day: int, hour: int, minute: int) -> int:
    return (date(year, month, day).toordinal() - _EPOCH_ORDINAL) * 1440 + hour * 60 + minute


def _next_match(rule: _Rule, start: int) -> int:
    """The first minute since the epoch at or after `start` that `rule` matches.

    Skips a whole month, day or hour at a time, so a year's search is a few hundred steps; it
    ends because a parsed rule matches somewhere in every 400-year cycle."""
    year, month, day, hour, minute = _civil(start)
    while True:
        # An out-of-range month, day or hour (13, 32, 24) is how a step carries over.
        if month not in rule.months:
            later = _ceil(rule.months, month)
            year, month = (year, later) if later is not None else (year + 1, rule.months[0])
            day, hour, minute = 1, 0, 0
        elif day > calendar.monthrange(year, month)[1]:
            month, day, hour, minute = month + 1, 1, 0, 0
        elif (
            not rule.day_matches(date(year, month, day))
            or (next_hour := _ceil(rule.hours, hour)) is None
        ):
            day, hour, minute = day + 1, 0, 0
        elif next_hour != hour:
            hour, minute = next_hour, 0
        elif (next_minute := _ceil(rule.minutes, minute)) is None:
            hour, minute = hour + 1, 0
        else:
            return _minute(year, month, day, hour, next_minute)


def _last_match(rule: _Rule, high: int, low: int) -> int | None:
    """The last minute since the epoch in [low, high] that `rule` matches, if any."""
    year, month, day, hour, minute = _civil(high)
    first_year = _civil(low)[0]
    while year >= first_year:
        # The mirror of _next_match: 0 and -1 carry back, and day 31 is "the month's end".
        if month not in rule.months:
            earlier = _floor(rule.months, month)
            year, month = (year, earlier) if earlier is not None else (year - 1, rule.months[-1])
            day, hour, minute = 31, 23, 59
        elif day > (length := calendar.monthrange(year, month)[1]):
            day, hour, minute = length, 23, 59
        elif day < 1:
            month, day, hour, minute = month - 1, 31, 23, 59
        elif (
            not rule.day_matches(date(year, month, day))
            or (last_hour := _floor(rule.hours, hour)) is None
        ):
            day, hour, minute = day - 1, 23, 59
        elif last_hour != hour:
            hour, minute = last_hour, 59
        elif (last_minute := _floor(rule.minutes, minute)) is None:
            hour, minute = hour - 1, 59
        else:
            found = _minute(year, month, day, hour, last_minute)
            return found if found >= low else None
    return None


def _offset(every: Every, name: str, slot_id: int) -> float:
    # blake2b, never hash(): str hashes are salted per process, and replicas must agree.
    digest = hashlib.blake2b(
        f"{slot_id}:{name}".encode(), digest_size=8, person=b"syncd.schedule"
    ).digest()
    # 53 bits fill a float's mantissa exactly, so the fraction stays below 1.
    fraction = (int.from_bytes(digest, "big") >> 11) / 2**53
    return fraction * every.jitter * every.period


def slot_at(schedule: Schedule, name: str, slot_id: int) -> float:
    """When slot `slot_id` of driver `name` falls due; a ValueError if it is not a slot of
    `schedule`."""
    if isinstance(schedule, Every):
        if slot_id % int(schedule.period):
            raise ValueError(f"{slot_id} is not a slot of every {schedule.period:g}s")
        return slot_id + _offset(schedule, name, slot_id)
    if slot_id % 60 or _next_match(schedule._rule, slot_id // 60) != slot_id // 60:
        raise ValueError(f"{slot_id} is not a slot of cron {schedule.expression!r}")
    return float(slot_id)


def next_due(schedule: Schedule, name: str, now: float) -> tuple[int, float]:
    """The first slot of driver `name` due strictly after `now`, and when it is due."""
    if isinstance(schedule, Every):
        step = int(schedule.period)
        slot_id = math.floor(now / step) * step
        # Jitter never reaches a whole period, so it is this slot or the one after.
        if slot_at(schedule, name, slot_id) <= now:
            slot_id += step
        return slot_id, slot_at(schedule, name, slot_id)
    slot_id = _next_match(schedule._rule, math.floor(now / 60) + 1) * 60
    return slot_id, float(slot_id)


def due_slots(
    schedule: Schedule, name: str, after: float, now: float, *, limit: int = MAX_DUE_SLOTS
) -> list[int]:
    """The slots of driver `name` due in (after, now], oldest first, at most `limit`; for the
    next page pass the last one's `slot_at` as `after`. After downtime prefer `latest_due`."""
    slots: list[int] = []
    slot_id, due = next_due(schedule, name, after)
    while due <= now and len(slots) < limit:
        slots.append(slot_id)
        slot_id, due = next_due(schedule, name, due)
    return slots


def latest_due(schedule: Schedule, name: str, now: float, not_before: float) -> int | None:
    """The newest slot of driver `name` due in (not_before, now]: the one to run after
    downtime, or None if no slot fell due in that window."""
    if isinstance(schedule, Every):
        step = int(schedule.period)
        slot_id = math.floor(now / step) * step
        if slot_at(schedule, name, slot_id) > now:
            slot_id -= step
        return slot_id if slot_at(schedule, name, slot_id) > not_before else None
    # A rule that matched nowhere in the last 400 years never matches, so look no further back
    # (which also lets `not_before` be -inf).
    low = math.floor(max(not_before, now - _CYCLE_MINUTES * 60) / 60) + 1
    minute = _last_match(schedule._rule, math.floor(now / 60), low)
    return None if minute is None else minute * 60


def schedule_of(value: Mapping[str, Any]) -> Every | Cron:
    """The schedule a config mapping describes: `{"every": "15m", "jitter": "10%"}` or
    `{"cron": "*/5 * * * *"}`; a ValueError says what is wrong with anything else."""
    if not isinstance(value, Mapping):
        raise ValueError(f"a schedule is a mapping with every or cron, got {value!r}")
    unknown = sorted(repr(key) for key in value if key not in ("every", "cron", "jitter"))
    if unknown:
        raise ValueError(
            f"unknown schedule key {', '.join(unknown)}: expected every (and jitter) or cron"
        )
    if ("every" in value) == ("cron" in value):
        raise ValueError("a schedule has either every or cron, not both or neither")
    if "cron" in value:
        if "jitter" in value:
            raise ValueError("jitter goes with every; a cron schedule is due at its minute")
        expression = value["cron"]
        if not isinstance(expression, str):
            raise ValueError(f"cron {expression!r}: expected a string of 5 fields")
        return Cron.parse(expression)
    return Every(parse_duration(value["every"]), _jitter_of(value.get("jitter", 0.0)))


def _jitter_of(value: object) -> float:
    """A fraction of the period: a number from 0 to 1, or a percentage such as "10%"."""
    if isinstance(value, str) and (match := _PERCENT.fullmatch(value)):
        return float(match[1]) / 100
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(
        f"jitter {value!r}: expected a fraction from 0 to 1 or a percentage like '10%'"
    )
