"""Calling windows and the retry policy: pure functions of a clock and an outcome, no I/O."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from callbot import defaults
from callbot.exceptions import CampaignError

Clock = Callable[[], datetime]
"""Returns now as naive UTC; injectable so tests can move time."""


def system_clock() -> datetime:
    """Now, as a naive UTC timestamp (what the database stores)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _parse_hhmm(s: str) -> time | None:
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", s)
    if not m:
        raise CampaignError(f"时间格式应为 HH:MM：{s!r} (bad time)")
    h, mi = int(m.group(1)), int(m.group(2))
    if h == 24 and mi == 0:
        return None  # end of day
    if h > 23 or mi > 59:
        raise CampaignError(f"时间超出范围：{s!r} (time out of range)")
    return time(h, mi)


@dataclass(frozen=True)
class Windows:
    """Daily calling windows ``[(start, end)]`` in local time of *tz*; ``end`` is exclusive.

    ``24:00`` as an end means midnight. A window whose end is not after its start is rejected.
    """

    spans: tuple[tuple[str, str], ...]
    tz: str = defaults.TIMEZONE

    def __post_init__(self) -> None:
        if not self.spans:
            raise CampaignError("至少需要一个呼叫时段 (at least one calling window)")
        try:
            ZoneInfo(self.tz)
        except Exception as exc:
            raise CampaignError(f"未知时区 {self.tz!r} (unknown time zone)") from exc
        for a, b in self.spans:
            if self._minutes(a) >= self._minutes(b, end=True):
                raise CampaignError(f"呼叫时段 {a}-{b} 的结束须晚于开始 (end must be after start)")

    @staticmethod
    def _minutes(s: str, end: bool = False) -> int:
        t = _parse_hhmm(s)
        if t is None:
            if not end:
                raise CampaignError("24:00 只能作为结束时间 (24:00 only as an end)")
            return 24 * 60
        return t.hour * 60 + t.minute

    @classmethod
    def parse(cls, text: str | Iterable[Iterable[str]], tz: str = defaults.TIMEZONE) -> Windows:
        """From ``"09:00-11:30,14:00-20:00"`` or ``[["09:00","11:30"], ...]``."""
        if isinstance(text, str):
            spans = []
            for part in filter(None, (p.strip() for p in re.split(r"[,，;；]", text))):
                ab = re.split(r"\s*[-–~～至]\s*", part)
                if len(ab) != 2:
                    raise CampaignError(f"呼叫时段应写成 09:00-11:30：{part!r} (bad window)")
                spans.append((ab[0].strip(), ab[1].strip()))
        else:
            spans = [tuple(p) for p in text]  # type: ignore[misc]
        return cls(tuple((a, b) for a, b in spans), tz)

    def _local(self, now_utc: datetime) -> datetime:
        return now_utc.replace(tzinfo=UTC).astimezone(ZoneInfo(self.tz))

    def is_open(self, now_utc: datetime) -> bool:
        """Whether a call may start at *now_utc* (naive UTC)."""
        loc = self._local(now_utc)
        m = loc.hour * 60 + loc.minute + loc.second / 60 + loc.microsecond / 60e6
        return any(self._minutes(a) <= m < self._minutes(b, end=True) for a, b in self.spans)

    def next_open(self, now_utc: datetime) -> datetime:
        """The earliest naive-UTC instant ≥ *now_utc* at which a call may start."""
        if self.is_open(now_utc):
            return now_utc
        tz = ZoneInfo(self.tz)
        loc = self._local(now_utc)
        best: datetime | None = None
        for day in range(0, 3):
            d = (loc + timedelta(days=day)).date()
            for a, _b in self.spans:
                m = self._minutes(a)
                cand = datetime(d.year, d.month, d.day, m // 60, m % 60, tzinfo=tz)
                cand_utc = cand.astimezone(UTC).replace(tzinfo=None)
                if cand_utc >= now_utc and self.is_open(cand_utc) and (
                        best is None or cand_utc < best):
                    best = cand_utc
            if best is not None:
                return best
        raise CampaignError("找不到下一个呼叫时段 (no next window)")  # pragma: no cover

    def as_list(self) -> list[list[str]]:
        return [[a, b] for a, b in self.spans]

    def local_day_start(self, now_utc: datetime) -> datetime:
        """Naive UTC of the local midnight that starts *now_utc*'s day (for daily caps)."""
        loc = self._local(now_utc)
        mid = loc.replace(hour=0, minute=0, second=0, microsecond=0)
        return mid.astimezone(UTC).replace(tzinfo=None)


DEFAULT_WINDOWS = Windows(defaults.CALLING_WINDOWS)

CALLBACK_DELAY_S = 2 * 3600
"""Default wait before calling back a resident who said 现在没空 / 晚点再打 (two hours)."""

LATER_DELAY_S = 2 * 3600
"""Wait before calling again a phone that was switched off (已关机) or answered by a voice
assistant (two hours): the resident is away now, not gone."""

# outcome -> (retry?, max attempts, delay seconds)
DEFAULT_RULES: dict[str, dict[str, Any]] = {
    "no_answer": {"retry": True, "max_attempts": defaults.MAX_ATTEMPTS,
                  "delay_s": defaults.RETRY_DELAY_S},
    "busy": {"retry": True, "max_attempts": defaults.MAX_ATTEMPTS,
             "delay_s": defaults.RETRY_DELAY_S},
    "incomplete": {"retry": True, "max_attempts": 2, "delay_s": defaults.RETRY_DELAY_S},
    "callback": {"retry": True, "max_attempts": 3, "delay_s": CALLBACK_DELAY_S},
    "rejected": {"retry": True, "max_attempts": 2, "delay_s": 2 * defaults.RETRY_DELAY_S},
    "unreachable": {"retry": True, "max_attempts": defaults.MAX_ATTEMPTS,
                    "delay_s": defaults.RETRY_DELAY_S},
    "failed": {"retry": True, "max_attempts": defaults.MAX_ATTEMPTS, "delay_s": 300},
    "interrupted": {"retry": True, "max_attempts": defaults.MAX_ATTEMPTS, "delay_s": 300},
    "invalid_number": {"retry": False, "max_attempts": 1, "delay_s": 0},
    "suspended": {"retry": False, "max_attempts": 1, "delay_s": 0},
    "powered_off": {"retry": True, "max_attempts": defaults.MAX_ATTEMPTS,
                    "delay_s": LATER_DELAY_S},
    "assistant": {"retry": True, "max_attempts": defaults.MAX_ATTEMPTS,
                  "delay_s": LATER_DELAY_S},
}
"""Default retry rules by outcome; ``incomplete`` = answered but the script did not finish;
``callback`` = answered and the resident asked to be called back later (the dialogue ended
``callback``). What a carrier announcement decides: ``invalid_number`` (空号) and ``suspended``
(停机) are never retried, ``powered_off`` (关机) and ``assistant`` (语音助手) after two hours. The dispatcher only dials inside the calling windows, so a call-back due at night
is placed when the next window opens."""

OWN_DELAY = frozenset({"callback", "powered_off", "assistant"})
"""Rules whose wait is what they mean (the resident asked for later, or is away: 关机, 语音助手):
a campaign-wide ``delay_s`` (``--retry-delay``, the web form's 重拨间隔) leaves them at their own
two hours; only the rule's own ``delay_s`` (``{"callback": {"delay_s": 3600}}``) changes it."""

FINAL_RESULT = {
    "no_answer": "unreachable", "busy": "unreachable", "rejected": "unreachable",
    "failed": "unreachable", "unreachable": "unreachable", "interrupted": "unreachable", "incomplete": "incomplete",
    "invalid_number": "invalid_number", "callback": "callback", "suspended": "suspended",
    "powered_off": "unreachable", "assistant": "unreachable",
}
"""Final result of a contact whose last attempt's rule allows no more calls. A contact that asked
for a call back on any attempt and was never completed ends ``callback`` (约定回电未接通) instead of
``unreachable`` / ``incomplete``: someone promised to call, a person should follow up."""


@dataclass(frozen=True)
class RetryPolicy:
    """Per-outcome retry rules of a campaign (defaults merged with the campaign's overrides).

    Top-level ``delay_s`` / ``max_attempts`` set every retryable rule (the delay: all but
    OWN_DELAY's), then a rule named by outcome overrides its own fields."""

    rules: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RetryPolicy:
        rules = {k: dict(v) for k, v in DEFAULT_RULES.items()}
        data = dict(data or {})
        scale_delay = data.pop("delay_s", None)
        max_attempts = data.pop("max_attempts", None)
        for k, v in rules.items():
            if scale_delay is not None and v["retry"] and k not in OWN_DELAY:
                v["delay_s"] = float(scale_delay)
            if max_attempts is not None and v["retry"]:
                v["max_attempts"] = int(max_attempts)
        for k, v in data.items():
            if not isinstance(v, Mapping):
                raise CampaignError(f"重试策略 {k!r} 应为对象 (bad retry rule)")
            rules.setdefault(k, {"retry": False, "max_attempts": 1, "delay_s": 0}).update(v)
        return cls(rules)

    def decide(self, outcome: str, completed: bool, attempts: int, now: datetime, *,
               ended: str | None = None,
               callback_asked: bool = False) -> tuple[str | None, datetime | None]:
        """After an attempt: ``(result, None)`` when the contact is done, else
        ``(None, next_at)`` for a retry. *attempts* counts the attempts dialled so far;
        *ended* is how this attempt's dialogue ended (``callback``: the resident asked to be
        called back, retried by the ``callback`` rule); *callback_asked*: an earlier attempt of
        this contact ended ``callback``, so running out of attempts ends as ``callback``."""
        if completed:
            return "completed", None
        if outcome == "answered":
            key = "callback" if ended == "callback" else "incomplete"
        else:
            key = outcome
        rule = self.rules.get(key) or {"retry": False}
        limit = int(rule.get("max_attempts", 1))
        if callback_asked:  # a promised call back keeps trying as long as the callback rule says
            limit = max(limit, int((self.rules.get("callback") or {}).get("max_attempts", 1)))
        if rule.get("retry") and attempts < limit:
            return None, now + timedelta(seconds=float(rule.get("delay_s", 0)))
        result = FINAL_RESULT.get(key, "unreachable")
        if callback_asked and result in ("unreachable", "incomplete"):
            result = "callback"
        return result, None
