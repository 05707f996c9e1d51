"""Chinese labels for the states, outcomes and results the app shows."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Flask

LABELS: dict[str, str] = {
    # campaign states
    "draft": "草稿", "running": "进行中", "paused": "已暂停", "finished": "已完成",
    "cancelled": "已取消",
    # attempt states and telephony outcomes
    "queued": "排队中", "dialing": "拨号中", "answered": "已接通", "no_answer": "无人接听",
    "busy": "占线", "rejected": "拒接", "invalid_number": "号码无效", "failed": "呼叫失败",
    "interrupted": "中断",
    # target states and final results
    "pending": "等待拨打", "active": "通话中", "done": "已结束", "completed": "已完成话术",
    "incomplete": "未完成话术", "unreachable": "联系不上", "refused": "拒绝", "dnc": "免打扰",
    "callback": "约定回电",
    # how a dialogue ended
    "declined": "对方婉拒", "no_input": "多次无回应", "no_match": "多次没听懂",
    "wrong_person": "打错人", "max_turns": "对话轮次过多", "hung_up": "对方挂断",
    "stop": "要求不再来电", "human": "要求人工回电", "emergency": "紧急求助",
    # (an attempt that ended "callback" shows 约定回电 too: the resident asked to be called back)
    # welfare answers
    "ok": "安好", "needs_help": "需要帮助", "no_answer_welfare": "无人接听",
    # contact fields
    "name": "姓名", "phone": "电话", "address": "地址", "note": "备注", "var": "模板变量",
}


def label(value: object) -> str:
    if value is None or value == "":
        return "—"
    return LABELS.get(str(value), str(value))


def local_time(value: datetime | None, tz: str = "Asia/Shanghai", fmt: str = "%m-%d %H:%M") -> str:
    """A naive-UTC or aware timestamp shown in the committee's time zone."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value.astimezone(ZoneInfo(tz)).strftime(fmt)


def answer(value: object) -> str:
    """A recorded answer as a person reads it: 是/否 for booleans, labels for known codes (the
    same words the exports write, ``reports.ANSWER_LABELS``)."""
    from callbot.reports import ANSWER_LABELS

    if isinstance(value, bool):
        return ANSWER_LABELS[value]
    if value is None:
        return "—"
    if isinstance(value, str) and value in LABELS:
        return LABELS[value]
    return str(value)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def init_app(app: Flask) -> None:
    tz = app.extensions["callbot_settings"].timezone
    app.jinja_env.filters["label"] = label
    app.jinja_env.filters["pct"] = pct
    app.jinja_env.filters["answer"] = answer
    app.jinja_env.filters["localtime"] = lambda v, fmt="%m-%d %H:%M": local_time(v, tz, fmt)
