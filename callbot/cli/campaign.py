"""CLI: ``import``, ``campaign``, ``worker``, ``dispatcher``, ``report``, ``db``."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from callbot import defaults
from callbot.exceptions import CallbotError


def _factory() -> Any:
    from callbot.campaign.store import open_db

    return open_db()


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc)) from exc


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--list", "list_name", required=True, help="名单名称 (name of the new list)")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.option("--dry-run", is_flag=True, help="只检查，不保存 (check only)")
def import_cmd(file: Path, list_name: str, as_json: bool, dry_run: bool) -> None:
    """导入联系人名单 (CSV/XLSX) — import a contact list."""
    from callbot.campaign.lists import save_list
    from callbot.contacts import parse_contacts
    from callbot.db import session_scope

    try:
        preview = parse_contacts(file.read_bytes(), file.name)
        list_id = None
        if not dry_run:
            with session_scope(_factory()) as s:
                list_id = save_list(s, list_name, preview).id
    except CallbotError as exc:
        _fail(exc)
    d = preview.as_dict()
    out = {"list": list_name, "list_id": list_id, "file": str(file), "rows": d["rows"],
           "imported": d["imported"], "duplicates": len(preview.duplicates),
           "duplicate_rows": d["duplicates"], "errors": d["errors"],
           "blank_rows": d["blank_rows"], "variables": preview.variables, "saved": not dry_run}
    if as_json:
        _echo_json(out)
        return
    click.echo(f"名单“{list_name}”：导入 {out['imported']} 人，合并重复 {out['duplicates']} 行，"
               f"错误 {len(out['errors'])} 行" + ("（未保存 dry run）" if dry_run else ""))
    for e in out["errors"]:
        click.echo(f"  第 {e['row']} 行：{e['reason']}")
    for dup in out["duplicate_rows"]:
        click.echo(f"  第 {dup['row']} 行与第 {dup['first_row']} 行号码相同，已合并")
    if preview.variables:
        click.echo("模板变量：" + "、".join(preview.variables))


@click.group()
def campaign() -> None:
    """外呼活动：create / start / pause / resume / cancel / status."""


@campaign.command("create")
@click.argument("name")
@click.option("--list", "list_ref", required=True, help="名单名称或编号")
@click.option("--script", required=True, help="话术模板名称或 YAML 路径 (e.g. mask_reservation)")
@click.option("--lines", default=defaults.CAMPAIGN_LINES, show_default=True, type=int,
              help="并发线路数")
@click.option("--windows", default=",".join(f"{a}-{b}" for a, b in defaults.CALLING_WINDOWS),
              show_default=True, help="呼叫时段")
@click.option("--timezone", default=defaults.TIMEZONE, show_default=True)
@click.option("--retry-delay", type=float, default=None,
              help=f"重试间隔（秒），默认 {defaults.RETRY_DELAY_S}；关机、语音助手、约定回电仍按各自的 2 小时"
                   "（用 --retry-policy 单独设置）")
@click.option("--max-attempts", type=int, default=None,
              help=f"每人最多尝试次数，默认 {defaults.MAX_ATTEMPTS}")
@click.option("--retry-policy", "policy_json", default=None,
              help='按结果的重试策略 JSON，如 {"busy": {"max_attempts": 5}}')
@click.option("--daily-cap", default=defaults.DAILY_CAP, show_default=True, type=int,
              help="每个号码每天最多呼叫次数")
@click.option("--record-calls", "record_calls", is_flag=True,
              help="录制整通电话（双方声音；属个人信息，按 CALLBOT_RECORDING_DAYS 到期删除）"
                   " (record whole calls, both sides; personal data; off by default)")
@click.option("--tts-personal", "tts_personal", type=click.Choice(["online", "offline"]),
              default="online", show_default=True,
              help="offline：提示语里的个人信息（姓名、地址…）只在本机用 espeak-ng 合成，不发送到在线引擎"
                   " (offline: a contact's name, address… are synthesised on this box)")
@click.option("--start", "start_now", is_flag=True, help="创建后立即启动")
@click.option("--json", "as_json", is_flag=True)
def create_cmd(name: str, list_ref: str, script: str, lines: int, windows: str, timezone: str,
               retry_delay: float | None, max_attempts: int | None, policy_json: str | None,
               daily_cap: int, start_now: bool, as_json: bool, record_calls: bool = False,
               tts_personal: str = "online") -> None:
    """创建活动 (create a campaign)."""
    from callbot.campaign import service
    from callbot.db import session_scope

    policy: dict[str, Any] = {}
    if policy_json:
        try:
            policy.update(json.loads(policy_json))
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"不是有效的 JSON：{exc}", param_hint="--retry-policy") from exc
    if retry_delay is not None:
        policy["delay_s"] = retry_delay
    if max_attempts is not None:
        policy["max_attempts"] = max_attempts
    try:
        with session_scope(_factory()) as s:
            c = service.create_campaign(s, name, list_ref, script, lines=lines, windows=windows,
                                        timezone=timezone, retry_policy=policy,
                                        daily_cap=daily_cap, record_calls=record_calls,
                                        tts_personal=tts_personal)
            if start_now:
                service.start(s, c.id)
            st = service.status(s, c.id)
    except CallbotError as exc:
        _fail(exc)
    if as_json:
        _echo_json(st.as_dict())
    else:
        from callbot import labels

        click.echo(f"活动“{st.name}”(#{st.id}) 已创建：{st.contacts} 人，{st.lines} 条线路，"
                   f"状态 {labels.campaign_state(st.state)}")


def _action(fn_name: str) -> click.Command:
    from callbot import labels

    verb = labels.campaign_action(fn_name)

    @click.argument("name")
    def cmd(name: str) -> None:
        from callbot.campaign import service
        from callbot.db import session_scope

        try:
            with session_scope(_factory()) as s:
                c = getattr(service, fn_name)(s, name)
                click.echo(f"活动“{c.name}”已{verb}（状态 {labels.campaign_state(c.state)}）")
        except CallbotError as exc:
            _fail(exc)

    cmd.__doc__ = f"{verb}活动 ({fn_name} a campaign)."
    return click.command(fn_name)(cmd)


for _fn in ("start", "pause", "resume", "cancel"):
    campaign.add_command(_action(_fn))


@campaign.command("status")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
def status_cmd(name: str | None, as_json: bool) -> None:
    """活动进度 (progress; all campaigns without NAME)."""
    from callbot.campaign import service
    from callbot.db import session_scope

    try:
        with session_scope(_factory()) as s:
            refs = [name] if name else [c.id for c in service.list_campaigns(s)]
            sts = [service.status(s, r) for r in refs]
    except CallbotError as exc:
        _fail(exc)
    if as_json:
        _echo_json([x.as_dict() for x in sts] if name is None else sts[0].as_dict())
        return
    if not sts:
        click.echo("还没有活动 (no campaign yet)")
    from callbot import labels

    for st in sts:
        res = "，".join(f"{labels.result(k)} {v}" for k, v in sorted(st.results.items())) or "—"
        click.echo(f"#{st.id} {st.name} [{labels.campaign_state(st.state)}] 名单 {st.list_name}："
                   f"完成 {st.done}/"
                   f"{st.contacts}（{res}），进行中 {st.targets.get('active', 0)}，"
                   f"等待 {st.targets.get('pending', 0)}")
        if st.pause_reason:
            click.echo(f"  暂停原因：{st.pause_reason}")


@campaign.command("watch")
@click.argument("name")
@click.option("--timeout", type=float, default=None, help="最多等待秒数")
def watch_cmd(name: str, timeout: float | None) -> None:
    """进度条，直到活动结束 (progress bar until the campaign is over)."""
    watch(name, timeout)


def watch(name: str | int, timeout: float | None = None, factory: Any = None) -> str:
    """Show a progress bar of contacts done until the campaign leaves running/paused."""
    from callbot.campaign import service
    from callbot.db import session_scope

    factory = factory or _factory()
    with session_scope(factory) as s:
        st = service.status(s, name)
    deadline = time.monotonic() + timeout if timeout else None
    with click.progressbar(length=st.contacts, label=f"活动 {st.name}", file=sys.stderr,
                           show_pos=True) as bar:
        shown = 0
        while True:
            with session_scope(factory) as s:
                st = service.status(s, name)
            bar.update(st.done - shown)
            shown = st.done
            if st.state not in ("running", "paused", "draft"):
                return st.state
            if deadline and time.monotonic() > deadline:
                return st.state
            time.sleep(0.5)


@campaign.command("list")
def list_cmd() -> None:
    """列出名单和活动 (lists and campaigns)."""
    from sqlalchemy import select

    from callbot import labels
    from callbot.campaign.models import Campaign, ContactList
    from callbot.db import session_scope

    with session_scope(_factory()) as s:
        for lst in s.scalars(select(ContactList).order_by(ContactList.id)):
            click.echo(f"名单 #{lst.id} {lst.name}: {lst.size} 人")
        for c in s.scalars(select(Campaign).order_by(Campaign.id)):
            click.echo(f"活动 #{c.id} {c.name} [{labels.campaign_state(c.state)}] 话术 {c.script}, "
                       f"{c.lines} 线")


@campaign.command("dnc")
@click.argument("phone")
@click.option("--remove", is_flag=True, help="从勿扰名单移除")
@click.option("--reason", default="", help="原因")
def dnc_cmd(phone: str, remove: bool, reason: str) -> None:
    """勿扰名单 (do-not-call list): add or remove a number."""
    from callbot.campaign import service
    from callbot.db import session_scope

    try:
        with session_scope(_factory()) as s:
            if remove:
                ok = service.remove_do_not_call(s, phone)
                click.echo("已移除" if ok else "不在勿扰名单中")
            else:
                row = service.add_do_not_call(s, phone, reason)
                click.echo(f"已加入勿扰名单：{row.phone}")
    except (CallbotError, ValueError) as exc:
        _fail(exc)


@click.command()
@click.option("--lines", default=defaults.CALLS_PER_PROCESS - defaults.TRANSFER_SPARE_LEGS,
              show_default=True, type=int,
              help="并发线路数 (3 per process, one call slot kept for 转人工; more start several "
                   "processes; CALLBOT_TRANSFER_SPARE_LEGS changes the reserve)")
@click.option("--runner", default=None, help="呼叫执行器 module:factory（测试用）")
@click.option("--queue", "queue_name", default=defaults.CALL_QUEUE, show_default=True)
def worker(lines: int, runner: str | None, queue_name: str) -> None:
    """运行线路工作进程 (line workers that place the calls)."""
    from callbot.campaign.worker import run_worker

    try:
        sys.exit(run_worker(lines, runner=runner, queue_name=queue_name))
    except CallbotError as exc:
        _fail(exc)


@click.command()
@click.option("--interval", default=defaults.DISPATCH_INTERVAL_S, show_default=True, type=float,
              help="两次调度间隔（秒）")
@click.option("--until-idle", is_flag=True, help="没有进行中的活动时退出")
def dispatcher(interval: float, until_idle: bool) -> None:
    """运行调度器：按时段和线路把到期的呼叫放入队列 (the dispatcher)."""
    import signal

    from callbot.campaign.dispatcher import Dispatcher
    from callbot.campaign.store import redis_connection
    from callbot.campaign.worker import heartbeat_s
    from callbot.config import load_settings

    settings = load_settings()
    from callbot.recordings import open_store

    factory = _factory()
    d = Dispatcher(factory, redis_connection(settings),
                   dead_after_s=heartbeat_s(settings) * defaults.WORKER_DEAD_AFTER_HEARTBEATS,
                   store=open_store(settings, factory), recording_days=settings.recording_days,
                   settings=settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    d.run(stop, interval, until_idle=until_idle)


@click.command()
@click.argument("campaign_ref", metavar="CAMPAIGN")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.option("--export", "export_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="导出明细到 .csv 或 .xlsx")
def report(campaign_ref: str, as_json: bool, export_path: Path | None) -> None:
    """活动报告 (report: rates, outcomes, tabulations; export CSV/XLSX)."""
    from callbot import reports
    from callbot.db import session_scope

    try:
        with session_scope(_factory()) as s:
            rep = reports.full_report(s, campaign_ref)
            if export_path:
                reports.export_file(s, campaign_ref, export_path)
    except CallbotError as exc:
        _fail(exc)
    if as_json:
        _echo_json(rep)
        return
    click.echo(format_report(rep))
    if export_path:
        click.echo(f"已导出：{export_path}")


def format_report(rep: dict[str, Any]) -> str:
    """The report as a few lines of Chinese text for the terminal."""
    from callbot import labels

    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    lines = [
        f"活动“{rep['campaign']}” [{rep['state']}]  话术 {rep['script']}",
        f"  联系人 {rep['contacts']}，呼叫 {rep['attempts']} 次，接通 {rep['answered_attempts']} 次",
        f"  接通率（按呼叫）{pct(rep['connection_rate_attempts'])}；"
        f"接通率（按人）{pct(rep['connection_rate_contacts'])}；"
        f"完成率 {pct(rep['completion_rate'])}；平均通话 {rep['mean_talk_s']:.1f} 秒",
        "  呼叫结果：" + "，".join(f"{labels.outcome(k)} {v}"
                              for k, v in sorted(rep["outcomes"].items())),
        "  最终结果：" + "，".join(f"{labels.result(k)} {v}"
                              for k, v in sorted(rep["results"].items())),
        "  按尝试次数：" + "，".join(f"第{n}次 {d['answered']}/{d['attempts']}"
                                for n, d in rep["by_attempt"].items()),
    ]
    if rep.get("transfers"):
        lines.append(f"  转人工：{rep['transfers']} 次，值班电话接通 {rep['transfers_answered']} 次")
    if "masks" in rep:
        m = rep["masks"]
        lines.append(f"  口罩：{m['households']} 户共 {m['total_masks']} 盒，不需要 {m['declined']} 户")
        for b, d in m["per_building"].items():
            lines.append(f"    {b}：{d['households']} 户 {d['masks']} 盒")
    if "welfare" in rep:
        w = rep["welfare"]["counts"]
        lines.append("  关怀：" + "，".join(f"{labels.welfare(k)} {w[k]}" for k in (
            "ok", "needs_help", "human", "callback", "unreachable")))
        for f in rep["welfare"]["follow_up"][:20]:
            lines.append(f"    跟进：第{f['row']}行 {f['name']} {f['phone']} {f['address']} "
                         f"({labels.follow_up_reason(f['reason'])}) {f['note']}")
    return "\n".join(lines)


@click.group()
def db() -> None:
    """数据库迁移 (database migrations)."""


@db.command("upgrade")
def db_upgrade() -> None:
    """把数据库升级到最新结构 (create or upgrade the schema)."""
    from callbot.campaign.store import engine_for, upgrade
    from callbot.config import load_settings

    settings = load_settings()
    upgrade(engine_for(settings))
    click.echo(f"数据库已是最新：{_redact(settings.database_url)}")


@db.command("current")
def db_current() -> None:
    """显示当前迁移版本."""
    from alembic.runtime.migration import MigrationContext

    from callbot.campaign.store import engine_for
    from callbot.config import load_settings

    with engine_for(load_settings()).connect() as conn:
        click.echo(MigrationContext.configure(conn).get_current_revision() or "(empty)")


def _redact(url: str) -> str:
    import re

    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", url)
