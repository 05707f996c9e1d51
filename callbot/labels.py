"""Every status word's Chinese label, defined once: the CLI, the web pages, the exports and the
alert texts all read them here, so one resident's result reads the same on every face.

One table per kind of status, because the same code can mean different things in two kinds:
``unreachable`` as a call's :data:`OUTCOMES` is one call the network could not put through
(无法接通); as a contact's :data:`RESULTS` or a :data:`FOLLOW_UP_REASONS` it is a resident never
reached after every attempt (联系不上). Within one table each code has one label, and a code that
means the same thing in two tables reads the same in both (``invalid_number`` 空号, ``completed``
已完成, ``finished`` 已结束). Look a label up with the function named for its kind
(:func:`outcome`, :func:`result`, …); an unknown code reads as itself, no value as ``—``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CAMPAIGN_STATES: dict[str, str] = {
    "draft": "草稿", "running": "进行中", "paused": "已暂停", "finished": "已结束",
    "cancelled": "已取消",
}
"""``Campaign.state``: draft → running ⇄ paused → finished | cancelled."""

CAMPAIGN = "外呼活动"
"""What a campaign is called (short: 活动) on every face — not 任务."""

CAMPAIGN_ACTIONS: dict[str, str] = {
    "start": "开始", "pause": "暂停", "resume": "继续", "cancel": "取消",
}
"""What staff do to a campaign (``callbot campaign start|pause|resume|cancel``, the web's buttons
and the message after one: 活动“…”已开始)."""

ATTEMPT_STATES: dict[str, str] = {
    "queued": "排队中", "dialing": "拨号中", "finished": "已结束", "interrupted": "中断",
    "cancelled": "已取消",
}
"""``Attempt.state``: queued → dialing → finished | interrupted; queued → cancelled."""

OUTCOMES: dict[str, str] = {
    "answered": "已接通", "no_answer": "无人接听", "busy": "占线", "rejected": "拒接",
    "invalid_number": "空号", "unreachable": "无法接通", "failed": "呼叫失败",
    "interrupted": "中断", "powered_off": "关机", "suspended": "停机", "assistant": "语音助手",
}
"""``Attempt.outcome`` (telephony's ``CallResult.outcome``): how one call went on the network.
``unreachable`` here is one call the network could not put through (无法接通)."""

TARGET_STATES: dict[str, str] = {"pending": "等待拨打", "active": "通话中", "done": "已结束"}
"""``Target.state``: where one contact stands in a campaign."""

RESULTS: dict[str, str] = {
    "completed": "已完成", "incomplete": "未完成", "callback": "约定回电未接通",
    "unreachable": "联系不上", "invalid_number": "空号", "refused": "拒绝", "dnc": "勿扰",
    "cancelled": "已取消", "human": "要求人工回电", "emergency": "紧急求助", "suspended": "停机",
}
"""``Target.result``: what a contact ended as. ``unreachable`` here is a resident never reached
after every attempt (联系不上); ``callback``: asked to be called back and never reached again."""

NO_RESULT = "进行中"
"""What a contact's result reads while it has none yet (not done)."""

ENDED: dict[str, str] = {
    "completed": "已完成", "declined": "对方婉拒", "callback": "约定回电",
    "stop": "要求不再来电", "no_input": "多次无回应", "no_match": "多次没听懂",
    "wrong_person": "打错人", "max_turns": "对话轮次过多", "hung_up": "对方挂断",
    "transfer": "已转人工", "transfer_failed": "转人工未接通", "emergency": "紧急求助",
    "human": "要求人工回电",
}
"""``Attempt.ended`` / ``engine.ended``: how one dialogue ended (``script.END_REASONS``).
``callback`` here is the request itself (现在没空, 约定回电), not yet a result."""

FOLLOW_UP_REASONS: dict[str, str] = {
    "emergency": "紧急求助", "needs_help": "需要帮助", "human": "要求人工回电",
    "callback": "约定回电未接通", "unreachable": "联系不上",
}
"""Why a resident is on the welfare follow-up list or an alert was raised (``Alert.reason``)."""

FOLLOW_UP_STATES: dict[str, str] = {
    "open": "待处理", "claimed": "已认领", "contacted": "已联系", "visited": "已上门",
    "resolved": "已解决",
}
"""``Alert.state``: open → claimed → contacted / visited → resolved (reopen → open)."""

FOLLOW_UP_ACTIONS: dict[str, str] = {
    "claim": "认领", "contacted": "已联系", "visited": "已上门", "resolved": "已解决",
    "reopen": "重新打开",
}
"""What staff do to a follow-up item (``alerts.ACTIONS``)."""

DELIVERIES: dict[str, str] = {
    "pending": "等待推送", "sending": "推送中", "retrying": "推送失败，稍后重试",
    "delivered": "已推送到群", "none": "未配置群机器人",
}
"""``Alert.delivery``: pending → sending → delivered, or → retrying → sending …; none."""

ANSWERS: dict[object, str] = {True: "是", False: "否", "ok": "安好", "needs_help": "需要帮助"}
"""Recorded answer values as people read them (yes/no fields, the welfare field's values); the
JSON report keeps the values themselves."""

WELFARE: dict[str, str] = {
    "ok": ANSWERS["ok"], "needs_help": ANSWERS["needs_help"], "urgent": "紧急",
    "human": FOLLOW_UP_REASONS["human"], "callback": FOLLOW_UP_REASONS["callback"],
    "unreachable": FOLLOW_UP_REASONS["unreachable"], "pending": "尚未结束", "other": "其他",
}
"""The welfare tabulation's counts (``reports.welfare_table``), in the same words as the answers
and follow-up reasons they count."""

CONTACT_FIELDS: dict[str, str] = {
    "name": "姓名", "phone": "电话", "address": "地址", "note": "备注", "var": "模板变量",
}
"""What a contact-list column is read as (``contacts`` mapping)."""

EMPTY = "—"
"""What no value reads as."""


def _look(table: Mapping[Any, str], value: object) -> str:
    if value is None or value == "":
        return EMPTY
    if isinstance(value, bool) or isinstance(value, str):
        return table.get(value, str(value))
    return str(value)


def campaign_state(value: object) -> str:
    """A campaign's state (草稿, 进行中, …)."""
    return _look(CAMPAIGN_STATES, value)


def campaign_action(value: object) -> str:
    """What staff did to a campaign (开始, 暂停, 继续, 取消)."""
    return _look(CAMPAIGN_ACTIONS, value)


def attempt_state(value: object) -> str:
    """An attempt's state (排队中, 拨号中, …)."""
    return _look(ATTEMPT_STATES, value)


def outcome(value: object) -> str:
    """One call's telephony outcome (已接通, 占线, 空号, 无法接通, …)."""
    return _look(OUTCOMES, value)


def target_state(value: object) -> str:
    """Where a contact stands in a campaign (等待拨打, 通话中, 已结束)."""
    return _look(TARGET_STATES, value)


def result(value: object) -> str:
    """A contact's final result (已完成, 联系不上, …); :data:`NO_RESULT` while it has none."""
    return NO_RESULT if value is None or value == "" else _look(RESULTS, value)


def ended(value: object) -> str:
    """How one dialogue ended (已完成, 对方挂断, 约定回电, …)."""
    return _look(ENDED, value)


def follow_up_reason(value: object) -> str:
    """Why a resident needs following up (需要帮助, 联系不上, …)."""
    return _look(FOLLOW_UP_REASONS, value)


def follow_up_state(value: object) -> str:
    """A follow-up item's state (待处理, 已认领, …)."""
    return _look(FOLLOW_UP_STATES, value)


def follow_up_action(value: object) -> str:
    """A follow-up action staff take (认领, 已上门, …)."""
    return _look(FOLLOW_UP_ACTIONS, value)


def delivery(value: object) -> str:
    """An alert's delivery to the committee's group robot (已推送到群, …)."""
    return _look(DELIVERIES, value)


def answer(value: object) -> str:
    """A recorded answer: 是/否 for booleans, the label of a known code, else the value."""
    return _look(ANSWERS, value)


def welfare(value: object) -> str:
    """A welfare tabulation count's name (安好, 需要帮助, 联系不上, …)."""
    return _look(WELFARE, value)


def contact_field(value: object) -> str:
    """What a contact-list column is read as (姓名, 电话, …)."""
    return _look(CONTACT_FIELDS, value)
