"""The daemon's schedules: durations, Every slots and their jitter, cron matching, windows."""

from __future__ import annotations

import calendar
import itertools
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.daemon.schedule import (
    MAX_DUE_SLOTS,
    Cron,
    Every,
    due_slots,
    latest_due,
    next_due,
    parse_duration,
    schedule_of,
    slot_at,
)

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3600


def at(text: str) -> float:
    """Epoch seconds of an ISO time read as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# -- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s", 93784.0),
        ("500ms", 0.5),
        ("1m500ms", 60.5),
        ("1.5h", 5400.0),
        (" 1h 30m ", 5400.0),
        ("15M", 900.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(value: str | int | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "abc",
        "15x",
        "m",
        "h1",
        "1.h",
        "-5m",
        "+5m",
        "1h-30m",
        "30m1h",
        "1h1h",
        "5 5m",
        "\u0661\u0665m",
    ],
)
def test_parse_duration_rejects_garbage_naming_it(value: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as raised:
        parse_duration(value)
    assert repr(value) in str(raised.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, True, None, [1], {"m": 1}])
def test_parse_duration_rejects_non_durations(value: Any) -> None:
    with pytest.raises(ValueError, match="invalid duration") as raised:
        parse_duration(value)
    assert repr(value) in str(raised.value)


# -- Every ----------------------------------------------------------------------------------

T0 = at("2024-05-06T10:07:30")


def test_every_slots_are_evenly_spaced_on_multiples_of_the_period() -> None:
    every = Every(900)
    slots = due_slots(every, "scans", T0, T0 + 24 * HOUR)
    assert len(slots) == 96
    assert all(slot % 900 == 0 for slot in slots)
    assert {b - a for a, b in itertools.pairwise(slots)} == {900}
    assert [slot_at(every, "scans", slot) for slot in slots] == [float(s) for s in slots]
    assert utc(slots[0]) == datetime(2024, 5, 6, 10, 15, tzinfo=UTC)


def offsets(every: Every, name: str, count: int = 200) -> list[float]:
    first = next_due(every, name, T0)[0]
    step = int(every.period)
    return [slot_at(every, name, first + k * step) - (first + k * step) for k in range(count)]


def test_every_jitter_is_within_bounds_and_spread() -> None:
    every = Every(900, jitter=0.1)
    spread = offsets(every, "scans")
    assert all(0 <= offset < 90 for offset in spread)
    # Spread over the window, not bunched: each tenth of it holds some offsets.
    assert {int(offset // 9) for offset in spread} == set(range(10))


def test_every_full_jitter_keeps_slots_in_order() -> None:
    every = Every(60, jitter=1.0)
    slots = due_slots(every, "scans", T0, T0 + 6 * HOUR)
    dues = [slot_at(every, "scans", slot) for slot in slots]
    assert dues == sorted(dues)
    assert all(0 <= due - slot < 60 for slot, due in zip(slots, dues, strict=True))


def test_every_jitter_is_the_same_on_every_call_and_differs_between_drivers() -> None:
    every = Every(900, jitter=0.5)
    assert offsets(every, "scans") == offsets(Every(900, jitter=0.5), "scans")
    assert offsets(every, "scans") != offsets(every, "raw")
    # Not one offset per driver shifted: the slots of two drivers interleave differently.
    gaps = {
        round(a - b, 6) for a, b in zip(offsets(every, "scans"), offsets(every, "raw"), strict=True)
    }
    assert len(gaps) > 100


REPLICA = """
import json, sys
from syncd.daemon.schedule import Every, slot_at
every = Every(900, jitter=0.25)
print(json.dumps([slot_at(every, name, 1714989600 + k * 900) for name in sys.argv[1:] for k in range(50)]))
"""


def test_every_jitter_is_the_same_in_separate_processes() -> None:
    # Different hash seeds: str hashes differ between the two, slot offsets must not.
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA, "scans", "raw"],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in ("1", "2")
    ]
    outputs = [replica.communicate(timeout=60)[0] for replica in replicas]
    assert [replica.returncode for replica in replicas] == [0, 0]
    every = Every(900, jitter=0.25)
    here = [
        slot_at(every, name, 1714989600 + k * 900) for name in ("scans", "raw") for k in range(50)
    ]
    assert json.loads(outputs[0]) == json.loads(outputs[1]) == here


@pytest.mark.parametrize(
    ("period", "jitter"),
    [
        (0.5, 0.0),
        (0, 0.0),
        (-60, 0.0),
        (90.5, 0.0),
        (math.inf, 0.0),
        (60, -0.1),
        (60, 1.5),
        (60, math.nan),
    ],
)
def test_every_rejects_bad_periods_and_jitter(period: float, jitter: float) -> None:
    with pytest.raises(ValueError, match=r"period|jitter"):
        Every(period, jitter)


def test_slot_at_rejects_ids_that_are_not_slots() -> None:
    with pytest.raises(ValueError, match="not a slot of every 900s"):
        slot_at(Every(900), "scans", 1714989600 + 60)
    with pytest.raises(ValueError, match="not a slot of cron"):
        slot_at(Cron("*/15 * * * *"), "scans", int(at("2024-05-06T10:05")))
    with pytest.raises(ValueError, match="not a slot of cron"):
        slot_at(Cron("* * * * *"), "scans", int(at("2024-05-06T10:05")) + 1)


# -- cron: next times -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "now", "expected"),
    [
        ("*/15 * * * *", "2024-05-06T10:07", "2024-05-06T10:15"),
        ("*/15 * * * *", "2024-05-06T10:14:59.5", "2024-05-06T10:15"),
        ("*/15 * * * *", "2024-05-06T10:15", "2024-05-06T10:30"),  # strictly after now
        ("*/15 * * * *", "2024-05-06T23:50", "2024-05-07T00:00"),
        ("* * * * *", "2024-05-06T10:07:01", "2024-05-06T10:08"),
        ("0 9 * * mon-fri", "2024-05-10T18:00", "2024-05-13T09:00"),  # Friday evening
        ("0 9 * * MON-FRI", "2024-05-11T08:00", "2024-05-13T09:00"),
        ("0 0 1,15 * *", "2024-05-02T00:00", "2024-05-15T00:00"),
        ("0 0 1,15 * *", "2024-05-15T00:00", "2024-06-01T00:00"),
        ("0 12 * * 7", "2024-05-06T10:00", "2024-05-12T12:00"),  # 7 is Sunday
        ("0 12 * * 0", "2024-05-06T10:00", "2024-05-12T12:00"),
        ("0 12 * * sun", "2024-05-12T12:00", "2024-05-19T12:00"),
        # Both day fields restricted: the 13th or a Friday, whichever comes first.
        ("0 0 13 * fri", "2024-05-06T00:00", "2024-05-10T00:00"),
        ("0 0 13 * fri", "2024-05-10T00:00", "2024-05-13T00:00"),  # a Monday
        # ... yet one that starts with `*` defers to the other, as in Vixie cron: odd Fridays.
        ("0 0 */2 * fri", "2024-05-06T00:00", "2024-05-17T00:00"),
        ("0 0 31 2 mon", "2024-05-06T00:00", "2025-02-03T00:00"),
        ("@hourly", "2024-05-06T10:07", "2024-05-06T11:00"),
        ("@daily", "2024-05-06T10:07", "2024-05-07T00:00"),
        ("@midnight", "2024-05-06T10:07", "2024-05-07T00:00"),
        ("@weekly", "2024-05-06T10:07", "2024-05-12T00:00"),
        ("@monthly", "2024-05-06T10:07", "2024-06-01T00:00"),
        ("@yearly", "2024-05-06T10:07", "2025-01-01T00:00"),
        ("@Annually", "2024-05-06T10:07", "2025-01-01T00:00"),
        ("0 0 29 2 *", "2024-03-01T00:00", "2028-02-29T00:00"),
        ("0 0 29 2 *", "2097-01-01T00:00", "2104-02-29T00:00"),  # 2100 is no leap year
        ("0 0 31 * *", "2024-01-31T00:00", "2024-03-31T00:00"),
        ("59 23 31 12 *", "2024-12-31T23:59", "2025-12-31T23:59"),
        ("30 6 * jan,jul *", "2024-05-06T10:07", "2024-07-01T06:30"),
        ("0 8-18/4 * * *", "2024-05-06T10:07", "2024-05-06T12:00"),
        ("0 8-18/4 * * *", "2024-05-06T16:07", "2024-05-07T08:00"),
        ("5,10-12,50-59/5 * * * *", "2024-05-06T10:12", "2024-05-06T10:50"),
        ("0 0 * feb-mar/1 sat", "2024-05-06T00:00", "2025-02-01T00:00"),
        ("  0   0  *  *  *  ", "2024-05-06T10:07", "2024-05-07T00:00"),
    ],
)
def test_cron_next_due(expression: str, now: str, expected: str) -> None:
    slot_id, due = next_due(Cron.parse(expression), "scans", at(now))
    assert due == slot_id == at(expected)
    assert slot_at(Cron(expression), "scans", slot_id) == due


@pytest.mark.parametrize(
    ("expression", "fragments"),
    [
        ("", ["5 fields", "got 0"]),
        ("* * * *", ["5 fields", "got 4"]),
        ("* * * * * *", ["5 fields", "got 6"]),
        ("60 * * * *", ["minute", "'60'", "0-59"]),
        ("* 24 * * *", ["hour", "'24'", "0-23"]),
        ("* * 0 * *", ["day-of-month", "'0'", "1-31"]),
        ("* * 32 * *", ["day-of-month", "'32'"]),
        ("* * * 13 *", ["month", "'13'", "1-12"]),
        ("* * * 0 *", ["month", "'0'"]),
        ("* * * * 8", ["day-of-week", "'8'", "0-7"]),
        ("* * * foo *", ["month", "'foo'", "jan..dec"]),
        ("* * * * mon-fry", ["day-of-week", "'fry'", "sun..sat"]),
        ("* * * * monday", ["day-of-week", "'monday'"]),
        ("* * * * jan", ["day-of-week", "'jan'"]),
        ("a * * * *", ["minute", "'a'", "not a number"]),
        ("*/0 * * * *", ["minute", "'*/0'", "step"]),
        ("*/x * * * *", ["minute", "'x'"]),
        ("*/5/2 * * * *", ["minute", "'5/2'"]),
        ("5/15 * * * *", ["minute", "'5/15'", "range"]),
        ("10-5 * * * *", ["minute", "'10-5'", "backwards"]),
        ("1-2-3 * * * *", ["minute", "'2-3'"]),
        ("1,,2 * * * *", ["minute", "'1,,2'", "missing"]),
        ("1,2, * * * *", ["minute", "missing"]),
        ("-1 * * * *", ["minute", "'-1'"]),
        ("\u0661 * * * *", ["minute", "'\u0661'"]),
        ("0 0 31 2 *", ["never matches", "day-of-month '31'", "months '2'"]),
        ("0 0 30,31 feb *", ["never matches"]),
        ("0 0 31 4,6,9,11 *", ["never matches"]),
        ("0 0 31 2 */2", ["never matches"]),  # `*/2` defers to the day of the month
        ("@reboot", ["'@reboot'", "unknown macro"]),
        ("@daily *", ["'@daily *'"]),
    ],
)
def test_cron_errors_name_the_field_and_value(expression: str, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as raised:
        Cron.parse(expression)
    message = str(raised.value)
    assert message.startswith(f"cron {' '.join(expression.split())!r}")
    for fragment in fragments:
        assert fragment in message


def test_cron_satisfiable_rarities_parse() -> None:
    # Day 31 of February never comes, but Mondays in February do (the OR rule).
    Cron("0 0 31 2 mon")
    # A 29 February that is a Sunday: rare (2004, 2032, ...), but it comes.
    assert utc(next_due(Cron("0 0 29 2 */7"), "x", at("2005-01-01"))[1]) == datetime(
        2032, 2, 29, tzinfo=UTC
    )


# -- windows --------------------------------------------------------------------------------


def test_due_slots_of_a_cron_window_exclude_after_and_include_now() -> None:
    cron = Cron("*/15 * * * *")
    expected = [int(at(f"2024-05-06T{t}")) for t in ("10:15", "10:30", "10:45", "11:00")]
    assert due_slots(cron, "x", at("2024-05-06T10:07"), at("2024-05-06T11:00")) == expected
    assert due_slots(cron, "x", at("2024-05-06T10:15"), at("2024-05-06T11:00")) == expected[1:]
    assert due_slots(cron, "x", at("2024-05-06T10:15"), at("2024-05-06T10:59:59")) == expected[1:3]
    assert due_slots(cron, "x", at("2024-05-06T11:00"), at("2024-05-06T10:00")) == []


def test_due_slots_with_jitter_follow_due_times_not_nominal_starts() -> None:
    every = Every(900, jitter=0.9)
    after, now = T0, T0 + 3 * HOUR
    start = int(after // 900) * 900 - 900
    candidates = range(start, int(now) + 900, 900)
    expected = [s for s in candidates if after < slot_at(every, "scans", s) <= now]
    assert due_slots(every, "scans", after, now) == expected
    assert len(expected) in (11, 12, 13)


def test_due_slots_are_bounded_and_page_on() -> None:
    cron = Cron("* * * * *")
    year_down = (at("2023-05-06T10:00"), at("2024-05-06T10:00"))
    first = due_slots(cron, "x", *year_down)
    assert len(first) == MAX_DUE_SLOTS
    assert first[0] == at("2023-05-06T10:01")
    second = due_slots(cron, "x", slot_at(cron, "x", first[-1]), year_down[1], limit=10)
    assert second == [first[-1] + 60 * k for k in range(1, 11)]
    every = Every(60, jitter=0.5)
    assert len(due_slots(every, "x", *year_down)) == MAX_DUE_SLOTS


def test_latest_due_is_the_newest_slot_of_the_window() -> None:
    cron = Cron("0 9 * * mon-fri")
    monday_early = at("2024-05-13T08:00")
    assert latest_due(cron, "x", monday_early, at("2024-05-10T08:00")) == at("2024-05-10T09:00")
    assert latest_due(cron, "x", monday_early, at("2024-05-10T09:00")) is None  # exclusive
    assert latest_due(cron, "x", monday_early, -math.inf) == at("2024-05-10T09:00")
    assert latest_due(cron, "x", at("2024-05-13T09:00"), 0) == at("2024-05-13T09:00")  # inclusive
    assert latest_due(Cron("0 0 29 2 *"), "x", at("2101-01-01"), at("2090-01-01")) == at(
        "2096-02-29"
    )
    assert latest_due(Cron("0 0 29 2 *"), "x", at("2101-01-01"), at("2097-01-01")) is None


def test_latest_due_with_jitter_waits_for_the_offset() -> None:
    every = Every(HOUR, jitter=0.5)
    slot = int(at("2024-05-06T10:00"))
    due = slot_at(every, "scans", slot)
    assert due > slot  # this name and slot draw a non-zero offset
    assert latest_due(every, "scans", due - 0.001, 0) == slot - HOUR
    assert latest_due(every, "scans", due, 0) == slot
    assert latest_due(every, "scans", due, due) is None
    assert latest_due(every, "scans", due + HOUR / 2, slot_at(every, "scans", slot - HOUR)) == slot


def test_next_due_of_every_is_strictly_after_now() -> None:
    every = Every(900, jitter=0.2)
    for now in (T0, float(int(T0 // 900) * 900), slot_at(every, "x", int(T0 // 900) * 900 + 900)):
        slot_id, due = next_due(every, "x", now)
        assert due > now
        assert due == slot_at(every, "x", slot_id)
        assert latest_due(every, "x", now, -math.inf) == slot_id - 900


# -- schedule_of ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "schedule"),
    [
        ({"every": "15m"}, Every(900)),
        ({"every": 900}, Every(900)),
        ({"every": "1h30m", "jitter": "10%"}, Every(5400, 0.1)),
        ({"every": "15m", "jitter": 0.25}, Every(900, 0.25)),
        ({"every": "1s", "jitter": "100%"}, Every(1, 1.0)),
        ({"every": "15m", "jitter": 0}, Every(900)),
        ({"cron": "*/5 * * * *"}, Cron("*/5 * * * *")),
        ({"cron": " @daily "}, Cron("@daily")),
    ],
)
def test_schedule_of(config: dict[str, Any], schedule: Every | Cron) -> None:
    assert schedule_of(config) == schedule


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({}, "either every or cron"),
        ({"every": "15m", "cron": "* * * * *"}, "either every or cron"),
        ({"jitter": "10%"}, "either every or cron"),
        ({"every": "15m", "at": "9:00"}, "unknown schedule key 'at'"),
        ({"every": "soon"}, "invalid duration 'soon'"),
        ({"every": "500ms"}, "at least 1"),
        ({"every": 0}, "at least 1"),
        ({"every": "-15m"}, "invalid duration '-15m'"),
        ({"every": "1500ms"}, "whole number of seconds"),
        ({"every": "15m", "jitter": "150%"}, "jitter 1.5 is outside 0..1"),
        ({"every": "15m", "jitter": 2}, "outside 0..1"),
        ({"every": "15m", "jitter": -0.1}, "outside 0..1"),
        ({"every": "15m", "jitter": "often"}, "jitter 'often'"),
        ({"every": "15m", "jitter": "0.1"}, "jitter '0.1'"),
        ({"every": "15m", "jitter": True}, "jitter True"),
        ({"cron": "*/5 * * * *", "jitter": "10%"}, "jitter goes with every"),
        ({"cron": 5}, "cron 5"),
        ({"cron": "61 * * * *"}, "minute field '61'"),
    ],
)
def test_schedule_of_rejects(config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError) as raised:
        schedule_of(config)
    assert fragment in str(raised.value)


def test_schedule_of_rejects_non_mappings() -> None:
    with pytest.raises(ValueError, match="mapping"):
        schedule_of("15m")  # type: ignore[arg-type]


# -- property: next and latest cron matches agree with brute force --------------------------

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]


@st.composite
def fields(draw: st.DrawFn, low: int, high: int, names: tuple[str, ...] = ()) -> Field:
    """A random field and the values it means, worked out independently of the parser."""

    def token(value: int) -> str:
        index = value - low
        return names[index] if index < len(names) and draw(st.booleans()) else str(value)

    def item() -> Field:
        kind = draw(st.sampled_from(["*", "*/n", "a", "a-b", "a-b/n"]))
        if kind == "*":
            return Field("*", frozenset(range(low, high + 1)))
        if kind == "*/n":
            step = draw(st.integers(1, high - low + 2))
            return Field(f"*/{step}", frozenset(range(low, high + 1, step)))
        first = draw(st.integers(low, high))
        if kind == "a":
            return Field(token(first), frozenset({first}))
        last = draw(st.integers(first, high))
        step = draw(st.integers(1, 6)) if kind == "a-b/n" else 1
        suffix = f"/{step}" if kind == "a-b/n" else ""
        return Field(
            f"{token(first)}-{token(last)}{suffix}", frozenset(range(first, last + 1, step))
        )

    items = [item() for _ in range(draw(st.integers(1, 3)))]
    return Field(
        ",".join(i.text for i in items), frozenset[int]().union(*(i.values for i in items))
    )


@dataclass(frozen=True)
class Spec:
    minute: Field
    hour: Field
    day: Field
    month: Field
    weekday: Field

    @property
    def expression(self) -> str:
        return " ".join(
            f.text for f in (self.minute, self.hour, self.day, self.month, self.weekday)
        )

    def day_matches(self, moment: datetime) -> bool:
        if moment.month not in self.month.values:
            return False
        in_month = moment.day in self.day.values
        in_week = moment.isoweekday() % 7 in {d % 7 for d in self.weekday.values}
        if self.day.text.startswith("*") or self.weekday.text.startswith("*"):
            return in_month and in_week
        return in_month or in_week

    def matches(self, moment: datetime) -> bool:
        return (
            moment.second == 0
            and moment.minute in self.minute.values
            and moment.hour in self.hour.values
            and self.day_matches(moment)
        )

    def satisfiable(self) -> bool:
        """Whether some date, in some (leap) year, can match: dates cycle through weekdays."""
        either = not (self.day.text.startswith("*") or self.weekday.text.startswith("*"))
        return either or any(
            day <= calendar.monthrange(2000, month)[1]
            for month in self.month.values
            for day in self.day.values
        )


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    # Months are often `*` so that most expressions match within weeks; the brute force below
    # skips whole days that cannot match, so a match a year away is still quick to check.
    return Spec(
        draw(fields(0, 59)),
        draw(fields(0, 23)),
        draw(fields(1, 31)),
        draw(st.one_of(st.just(Field("*", frozenset(range(1, 13)))), fields(1, 12, MONTHS))),
        draw(fields(0, 7, WEEKDAYS)),
    )


def step_towards(spec: Spec, moment: datetime, forward: bool) -> datetime:
    """The next minute to look at: whole days that cannot match are skipped, whatever minute."""
    if spec.day_matches(moment):
        return moment + timedelta(minutes=1 if forward else -1)
    midnight = moment.replace(hour=0, minute=0)
    return midnight + timedelta(days=1) if forward else midnight - timedelta(minutes=1)


ANY_TIME = st.integers(int(at("1990-01-01")), int(at("2090-01-01")))
# Searches carry over at month and year ends, so times near them get their own share.
NEAR_MONTH_START = st.builds(
    lambda year, month, seconds: datetime(year, month, 1, tzinfo=UTC).timestamp() + seconds,
    st.integers(1990, 2090),
    st.integers(1, 12),
    st.integers(-2 * 86400, 2 * 86400),
)
NOWS = st.builds(
    lambda seconds, fraction: seconds + fraction,
    st.one_of(ANY_TIME, NEAR_MONTH_START),
    st.sampled_from([0.0, 0.5, 59.999]),
)


@settings(max_examples=150, deadline=None)
@given(specs(), NOWS)
def test_next_and_latest_cron_matches_agree_with_brute_force(spec: Spec, now: float) -> None:
    if not spec.satisfiable():
        with pytest.raises(ValueError, match="never matches"):
            Cron(spec.expression)
        return
    cron = Cron(spec.expression)

    slot_id, due = next_due(cron, "x", now)
    assert due == slot_id > now
    assert spec.matches(utc(due))
    moment = utc(math.floor(now / 60) * 60 + 60)
    while moment < utc(due):
        assert not spec.matches(moment), moment
        moment = step_towards(spec, moment, forward=True)

    not_before = now - 400 * 86400
    latest = latest_due(cron, "x", now, not_before)
    moment = utc(math.floor(now / 60) * 60)
    while moment.timestamp() > not_before and moment.timestamp() != latest:
        assert not spec.matches(moment), moment
        moment = step_towards(spec, moment, forward=False)
    if latest is not None:
        assert spec.matches(utc(latest))
        assert not_before < latest <= now
