"""``callbot demo``: a whole campaign on this machine, on embedded defaults.

Imports the sample list of 50 residents (``callbot/data/demo_residents.csv``: mixed phone formats,
a duplicate and two bad rows), starts the resident simulator with a mixed population (answer and
reply by voice or keys, busy, no answer, reject, wrong number, hang up mid-prompt, needs help),
runs the mask (or welfare) script with a few line workers and short retry delays, prints the
report and the alerts it raised (welfare: residents who are not well, some who fell — urgent —, one
who asks for a person and is put through to the simulated duty phone, those never reached), and
serves the web app (URL and demo logins printed) until Ctrl-C; ``--no-web`` ends
after the report. ``--one-call`` keeps the first version: one test call.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

DEMO_PROMPT = "您好，这里是社区居委会。请问您家需要预约口罩吗？"
SAMPLE_LIST = Path(__file__).resolve().parent.parent / "data" / "demo_residents.csv"
_REPLIES = Path(__file__).resolve().parent.parent / "data" / "replies"
DEMO_TTS_RATE = "+40%"
"""The demo's prompts are spoken faster than the scripts' own rate (real calls keep theirs)."""
ALERT_FLUSH_S = 20.0
"""How long the demo waits, after the last call, for its alerts' first delivery try."""
DEMO_PASSWORD = "callbot-demo"
"""Password of the demo's web logins (``demo`` staff, ``supervisor``); the web listens on 127.0.0.1."""


def _clip(stem: str) -> str:
    """A synthesized Mandarin reply shipped with callbot (espeak-ng's Mandarin is often misheard)."""
    return str(_REPLIES / f"{stem}.wav")


_ANNOUNCEMENTS = Path(__file__).resolve().parent.parent / "data" / "announcements"


def _ann(stem: str) -> str:
    """A synthesised carrier announcement / voice assistant shipped with callbot
    (callbot/data/announcements, from tests/fixtures/audio/announcements)."""
    return str(_ANNOUNCEMENTS / f"{stem}.wav")


# what the line says instead of a resident (issue 11): in 183 early media before the carrier's
# code, or after a 200; the robot classifies them by what they say (空号, 关机, 停机, 无法接通,
# 占线, 语音助手), none counts as answered
_VACANT = {"behaviour": "early_media_fail", "code": 404, "announcement": _ann("kong_cmcc")}
_LINE_SAYS: list[dict[str, Any]] = [
    {"behaviour": "early_media_fail", "code": 480, "announcement": _ann("off_yonghu")},
    {"behaviour": "answered_announcement", "announcement": _ann("stop_qianfei")},
    {"behaviour": "early_media_fail", "code": 480, "announcement": _ann("busy_tonghua")},
    {"behaviour": "answered_announcement", "announcement": _ann("asst_mishu"),
     "hangup_after_s": 3},
    {"behaviour": "early_media_fail", "code": 503, "announcement": _ann("unr_jietong")},
]


# persona kinds by script, cycled over the sample list (index i → KINDS[i % len]); the mask
# mix's first seven are one voice answer and the six things a line may say instead of a resident
_MASK: list[dict[str, Any]] = [
    {"behaviour": "answer", "replies": [_clip("xuyao"), _clip("yaolianghe"), _clip("shide")], "ring_s": 1},
    _VACANT,
    *_LINE_SAYS,
    {"behaviour": "answer", "replies": ["dtmf:1", "dtmf:3", "dtmf:1"]},
    {"behaviour": "busy"},
    {"behaviour": "answer", "replies": [_clip("buxuyao")]},
    {"behaviour": "no_answer"},
    {"behaviour": "answer", "replies": ["dtmf:1", "dtmf:1", "dtmf:1"], "ring_s": 2},
    {"behaviour": "answer", "replies": ["dtmf:2"]},
    {"behaviour": "reject", "code": 603},
    {"behaviour": "hangup_mid_prompt", "hangup_after_s": 1.5},
]
_WELFARE: list[dict[str, Any]] = [
    {"behaviour": "answer", "replies": [_clip("tinghaode"), _clip("buxuyao")], "ring_s": 1},
    {"behaviour": "answer", "replies": ["dtmf:2"]},
    # trouble in her own words: a fall → needs help, urgent, put through to the duty phone
    {"behaviour": "answer", "replies": [_clip("shuailejiao"), "silence", _clip("wobushufu")]},
    {"behaviour": "answer", "replies": ["dtmf:1", "dtmf:2"]},
    {"behaviour": "no_answer"},
    {"behaviour": "answer", "replies": [_clip("butaihao")]},
    _VACANT,
    {"behaviour": "answer", "replies": ["dtmf:1", "dtmf:1"]},
    _LINE_SAYS[0],  # 关机
    {"behaviour": "silent"},
    {"behaviour": "answer", "replies": [_clip("wohenhao"), _clip("buyongle")]},
    _LINE_SAYS[3],  # 语音助手
    {"behaviour": "busy"},
]
_ASKS_FOR_A_PERSON = {"behaviour": "answer",
                      "replies": [_clip("zhaorengong"), "silence", _clip("wobushufu")]}
"""One welfare resident (the second on the list) asks for a person: 转人工 to the duty phone,
where she says she is not well; she says nothing while the robot puts her through."""
DEMO_DUTY_NUMBER = "88880000"
"""The demo's duty phone (a simulated resident: the committee's duty officer)."""
_DUTY_PHONE = {"behaviour": "answer", "name": "居委会值班室", "ring_s": 1,
               "greeting": _clip("haode"), "replies": [_clip("zaijian")],
               "after_replies": "hangup"}
"""The duty officer: picks up after a ring, says 好的, hears the resident, says 再见, hangs up."""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_personas(dials: list[str], script: str, path: Path,
                   duty: tuple[str, ...] = (DEMO_DUTY_NUMBER,)) -> Path:
    """A persona table giving each number of the sample list one behaviour of the mix, and the
    duty phone(s) 转人工 dials."""
    import yaml

    welfare = "welfare" in script
    kinds = _WELFARE if welfare else _MASK
    rows = [{"number": d, **(_ASKS_FOR_A_PERSON if welfare and i == 1 else kinds[i % len(kinds)])}
            for i, d in enumerate(dials)]
    rows += [{"number": n, **_DUTY_PHONE} for n in dict.fromkeys(duty) if n not in dials]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"default": {"behaviour": "busy"}, "residents": rows},
                                   allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def write_sip_conf(path: Path, port: int, ring_timeout: float) -> Path:
    """A direct-trunk sip.conf pointed at the simulator on 127.0.0.1:*port*."""
    path.write_text(f"""; written by `callbot demo`: the robot's line to the local resident simulator
[account]
mode = direct
transport = udp
bind = 127.0.0.1
local_port = 0
domain = 127.0.0.1
username = callbot
caller_id = 社区居委会
response_timeout = 8

[dial]
uri = sip:{{number}}@127.0.0.1:{port}
; the demo calls only the simulator: a SIP URI (a duty phone set up as sip:…) to another host is
; refused
uri_hosts = 127.0.0.1 localhost

[media]
codecs = PCMU, PCMA
rtp_port = 0

[calls]
ring_timeout = {ring_timeout:g}
max_call_length = 120
calls_per_process = 4
""", encoding="utf-8")
    return path


@click.command()
@click.option("--script", default="mask_reservation", show_default=True,
              type=click.Choice(["mask_reservation", "welfare_check"]), help="话术模板")
@click.option("--list", "list_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="名单文件（默认自带的 50 位居民）")
@click.option("--lines", default=8, show_default=True, type=int, help="并发线路数")
@click.option("--retry-delay", default=5.0, show_default=True, type=float, help="重试间隔（秒）")
@click.option("--later-delay", default=15.0, show_default=True, type=float,
              help="关机、语音助手、约定回电的重拨间隔（秒；正式活动默认 2 小时）"
                   " (the demo's stand-in for the two-hour rules)")
@click.option("--ring-timeout", default=8.0, show_default=True, type=float, help="振铃超时（秒）")
@click.option("--timeout", default=900.0, show_default=True, type=float,
              help="最长运行时间（秒）")
@click.option("--json", "as_json", is_flag=True, help="最后输出 JSON 报告")
@click.option("--one-call", is_flag=True, help="只打一通测试电话（第一版演示）")
@click.option("--no-web", is_flag=True, help="跑完不启动网页端，直接退出（非交互运行）")
@click.option("--port", default=8000, show_default=True, type=int,
              help="网页端端口（被占用时换一个空闲端口）")
@click.option("--number", default=None,
              help="只给这位模拟居民打一通测试电话 (one test call; implies --one-call; "
                   "default 13800000001).")
def demo(script: str, list_file: Path | None, lines: int, retry_delay: float,
         later_delay: float, ring_timeout: float, timeout: float, as_json: bool, one_call: bool, no_web: bool,
         port: int, number: str | None) -> None:
    """演示：导入 50 位居民，模拟居民接听，跑完一次外呼活动并打印报告 (a whole campaign)."""
    if one_call or number is not None:
        _one_call(number or "13800000001", as_json)
        return
    # SIGTERM unwinds like Ctrl-C: the line workers, the simulator and the embedded Redis stop.
    # Ctrl-C itself is set here too: a process started with SIGINT ignored (a background job of
    # a script) would otherwise never see it. SIGUSR1 prints where every thread is (stderr).
    import faulthandler

    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    web = None if no_web else start_demo_web(port)
    try:
        rep = run_demo(script=script, list_file=list_file or SAMPLE_LIST, lines=lines,
                       retry_delay=retry_delay, later_delay=later_delay,
                       ring_timeout=ring_timeout, timeout=timeout,
                       quiet=as_json, web_url=web.url if web else None,
                       demo_logins=bool(web and web.demo_logins))
        if as_json:
            click.echo(json.dumps(rep, ensure_ascii=False, indent=2, default=str))
        if web is None:
            return
        cid = rep.get("campaign_id")
        _print_logins(web.url, cid, web.demo_logins)
        click.echo("网页端运行中，按 Ctrl-C 退出 (serving; Ctrl-C to stop)", err=True)
        try:
            while web.thread.is_alive():
                web.thread.join(1)
        except KeyboardInterrupt:
            click.echo("", err=True)
    finally:
        if web is not None:
            web.close()


def _interrupted(*_: Any) -> None:
    raise KeyboardInterrupt


def start_demo_web(port: int) -> Any:
    """The web app on 127.0.0.1:*port* (a free port when taken) with the demo's two logins."""
    from callbot.accounts import demo_logins_refused, ensure_user, mark_demo_dir
    from callbot.config import load_settings
    from web import create_app
    from web.server import start_server

    settings = load_settings()
    app = create_app(settings)
    with app.extensions["callbot_sessionmaker"]() as s:
        # only in the demo's own data dir: its password is published
        refused = demo_logins_refused(s, settings.data_dir, settings.database_url)
        if refused is None:
            mark_demo_dir(settings.data_dir)
            # the demo's lists and campaign belong to no committee, so any staff login sees them
            ensure_user(s, "demo", DEMO_PASSWORD, "staff", settings.committee)
            ensure_user(s, "supervisor", DEMO_PASSWORD, "supervisor")
            s.commit()
        else:
            click.echo(f"{refused}（{settings.data_dir}），演示不会在这里创建或启用公开密码的演示账号"
                       "（demo / supervisor）；请用自己的账号登录，或把 CALLBOT_DATA_DIR 设为一个新目录再"
                       "运行演示 (demo logins are made only in the demo's own data dir)", err=True)
    try:
        web = start_server(app, "127.0.0.1", port)
    except OSError:
        web = start_server(app, "127.0.0.1", 0)
        click.echo(f"端口 {port} 已被占用，网页端改用 {web.url} (port {port} taken)", err=True)
    web.demo_logins = refused is None
    return web


def _print_logins(url: str, cid: Any, demo_logins: bool = True) -> None:
    lines = [f"网页端：{url}  (web app)"]
    if demo_logins:
        lines += [f"  工作人员登录 (staff)：用户名 demo，密码 {DEMO_PASSWORD}",
                  f"  督导登录 (supervisor)：用户名 supervisor，密码 {DEMO_PASSWORD}"]
    if cid:
        lines += [f"  本次活动：{url}campaigns/{cid}   结果：{url}results/{cid}",
                  f"  待处理（需要帮助、要求人工的居民）：{url}alerts/",
                  f"  统计报表（督导）：{url}reports/"]
    click.echo("\n".join(lines), err=True)


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        click.echo(msg, err=True)


def run_demo(*, script: str, list_file: Path, lines: int, retry_delay: float,
             ring_timeout: float, later_delay: float = 15.0, timeout: float, quiet: bool = False,
             web_url: str | None = None, demo_logins: bool = True) -> dict[str, Any]:
    """Run the demo campaign end to end; returns the full report."""
    from callbot import reports
    from callbot.campaign import service
    from callbot.campaign.dispatcher import Dispatcher
    from callbot.campaign.lists import save_list
    from callbot.campaign.store import open_db, redis_connection
    from callbot.cli.campaign import format_report, watch
    from callbot.config import load_settings
    from callbot.contacts import parse_contacts
    from callbot.db import session_scope
    from callbot.exceptions import CallbotError
    from callbot.residents import Simulator

    settings = load_settings()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    work = settings.data_dir / "demo" / stamp
    work.mkdir(parents=True, exist_ok=True)
    try:
        preview = parse_contacts(list_file.read_bytes(), list_file.name)
    except CallbotError as exc:
        raise click.ClickException(str(exc)) from None
    _say(quiet, f"名单 {list_file.name}：{len(preview.contacts)} 人可呼叫，"
                f"合并重复 {len(preview.duplicates)} 行，错误 {len(preview.errors)} 行")
    for row, reason in preview.errors:
        _say(quiet, f"  第 {row} 行：{reason}")

    port = _free_udp_port()
    factory = open_db(settings)
    duty = _duty_numbers(factory, settings)
    personas = write_personas([c.dial for c in preview.contacts], script, work / "personas.yaml",
                              duty)
    sim = Simulator(str(personas), str(work / "residents"), port=port,
                    procs=(lines + 3) // 4 + 1)
    conf = write_sip_conf(work / "sip.conf", port, ring_timeout)
    redis = redis_connection(settings)
    queue = f"demo-{stamp}"
    worker: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    flushed = False
    try:
        sim.start()
        _say(quiet, f"模拟居民已启动 127.0.0.1:{port}（{len(preview.contacts)} 位，混合情形）")
        with session_scope(factory) as s:
            lst = save_list(s, f"演示名单 {stamp}", preview)
            c = service.create_campaign(
                s, f"演示-{'关爱回访' if 'welfare' in script else '口罩预约'}-{stamp}", lst.id,
                script, lines=lines, windows="00:00-24:00",
                retry_policy=demo_policy(retry_delay, later_delay), daily_cap=5)
            service.start(s, c.id)
            cid, cname = c.id, c.name
        _say(quiet, f"活动“{cname}”(#{cid})：{lines} 条线路，重试间隔 {retry_delay:g} 秒，"
                    f"最多 3 次；关机、语音助手、约定回电 {later_delay:g} 秒后再拨（正式活动默认 2 小时后）"
                    "（演示不限呼叫时段；正式活动默认 09:00–11:30、14:00–20:00）")
        env = dict(os.environ, CALLBOT_SIP_CONF=str(conf), CALLBOT_DATA_DIR=str(settings.data_dir))
        env.setdefault("CALLBOT_TTS_ENGINE", "espeak")
        env.setdefault("CALLBOT_CALL_TTS_RATE", DEMO_TTS_RATE)
        env["CALLBOT_DUTY_NUMBER"] = duty[-1]  # the simulated duty phone (a committee's own wins)
        log = open(work / "worker.log", "ab")  # noqa: SIM115 - closed in finally
        worker = subprocess.Popen(
            [sys.executable, "-m", "callbot", "worker", "--lines", str(lines), "--queue", queue],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        d = Dispatcher(factory, redis, queue_name=queue, settings=settings)
        t = threading.Thread(target=d.run, args=(stop, 0.5), daemon=True, name="dispatcher")
        t.start()
        _say(quiet, f"线路进程已启动（日志 {work / 'worker.log'}），开始外呼……")
        if web_url and not quiet:
            _print_logins(web_url, cid, demo_logins)
            _say(quiet, "（外呼进行中也可以在网页上看进度）")
        state = watch(cid, timeout=timeout, factory=factory) if not quiet else _wait(
            factory, cid, timeout)
        if state in ("running", "paused"):
            with session_scope(factory) as s:
                service.cancel(s, cid)
            _say(quiet, f"超过 {timeout:g} 秒，活动已取消 (timed out)")
        flushed = _flush_alerts(factory, cid)  # the dispatcher's alert thread sends them
    finally:
        stop.set()
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        sim.stop()
    with session_scope(factory) as s:
        rep = reports.full_report(s, cid)
        export = reports.export_file(s, cid, work / "report.xlsx")
    raised = demo_alerts(factory, cid)
    rep["alerts"] = raised
    rep["transfer_calls"] = demo_transfers(factory, cid)
    if not quiet:
        click.echo(format_report(rep))
        for t in rep["transfer_calls"]:
            click.echo(f"  转人工：{t['name']} → 值班电话 {t['to']}，"
                       + (f"接通，通话 {t['talk_s']:.0f} 秒" if t["answered"] else "无人接听（已发紧急提醒）"))
        click.echo(format_alerts(raised, flushed, web_url))
        click.echo(f"导出：{export}")
    if not quiet and web_url is None:
        click.echo("网页：运行 `callbot users add admin --role admin` 建账号，再运行 `callbot web`，"
                   f"打开 http://127.0.0.1:8000/results/{cid} 查看结果，"
                   f"http://127.0.0.1:8000/campaigns/{cid} 查看每位居民的通话")
    return rep


def demo_policy(retry_delay: float, later_delay: float) -> dict[str, Any]:
    """The demo campaign's retry policy: time compressed, the two-hour rules (关机, 语音助手,
    约定回电) set by name, as a campaign must (a campaign-wide delay leaves them)."""
    from callbot.campaign.policy import OWN_DELAY

    return {"delay_s": retry_delay, "max_attempts": 3,
            **{k: {"delay_s": later_delay} for k in sorted(OWN_DELAY)}}


def _duty_numbers(factory: Any, settings: Any) -> tuple[str, ...]:
    """The numbers 转人工 may dial in the demo: the installation committee's duty phone when it
    has one (it wins over CALLBOT_DUTY_NUMBER), and the demo's own; both reach the simulator."""
    from sqlalchemy import select

    from callbot.committees import CommitteeSettings
    from callbot.db import session_scope

    with session_scope(factory) as s:
        row = s.scalar(select(CommitteeSettings).where(
            CommitteeSettings.name == settings.committee))
        own = row.duty_number if row is not None and row.duty_number else None
    if own and not local_duty(own):
        click.echo(f"居委会的值班电话 {own} 不在本机，演示不会拨打它：转人工会失败并发出提醒；"
                   f"演示用模拟值班电话 {DEMO_DUTY_NUMBER} 请先在设置里清空值班电话 "
                   "(the demo calls local peers only)", err=True)
        own = None
    return tuple(n for n in (own, DEMO_DUTY_NUMBER) if n)


def local_duty(number: str) -> bool:
    """A duty phone the demo may dial: a phone number (the demo's sip.conf sends every number
    to the simulator) or a SIP URI on this machine — never a real external ``sip:`` address."""
    n = number.strip().lower()
    if not n.startswith(("sip:", "sips:", "tel:")) and "@" not in n:
        return True
    host = n.split("@", 1)[-1].split(";")[0].split(">")[0]
    host = host[1:host.index("]")] if host.startswith("[") else host.split(":")[0]
    return host in ("127.0.0.1", "localhost", "::1")


def _flush_alerts(factory: Any, cid: int, wait_s: float = ALERT_FLUSH_S) -> bool:
    """Wait until every alert of the campaign has had its first delivery try (the outbox is
    flushed); False when some are still waiting (the group robot down: they stay queued)."""
    from sqlalchemy import func, select

    from callbot.alerts import Alert
    from callbot.db import session_scope

    deadline = time.monotonic() + wait_s
    while True:
        with session_scope(factory) as s:
            waiting = s.scalar(select(func.count()).select_from(Alert).where(
                Alert.campaign_id == cid, Alert.delivery.in_(("pending", "sending"))))
        if not waiting:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def demo_transfers(factory: Any, cid: int) -> list[dict[str, Any]]:
    """The demo's 转人工 calls: who, to which duty phone, answered, talk time."""
    from sqlalchemy import select

    from callbot.campaign.models import Attempt, Contact
    from callbot.db import session_scope

    with session_scope(factory) as s:
        rows = s.execute(select(Contact.name, Attempt.transfer_to, Attempt.transfer_answered,
                                Attempt.transfer_talk_s)
                         .join(Contact, Contact.id == Attempt.contact_id)
                         .where(Attempt.campaign_id == cid, Attempt.transfer_to.is_not(None))
                         .order_by(Attempt.id)).all()
    return [{"name": n, "to": to, "answered": bool(ok), "talk_s": float(talk or 0.0)}
            for n, to, ok, talk in rows]


def demo_alerts(factory: Any, cid: int) -> list[dict[str, Any]]:
    """The alerts the demo raised, urgent first (what the 待处理 page lists)."""
    from sqlalchemy import select

    from callbot.alerts import Alert
    from callbot.campaign.models import Contact
    from callbot.db import session_scope

    out = []
    with session_scope(factory) as s:
        rows = s.scalars(select(Alert).where(Alert.campaign_id == cid)
                         .order_by(Alert.urgent.desc(), Alert.id)).all()
        for a in rows:
            ct = s.get(Contact, a.contact_id)
            out.append({"id": a.id, "reason": a.reason, "label": a.reason_label,
                        "urgent": a.urgent, "name": ct.name if ct else "",
                        "address": ct.address if ct else "", "said": a.said, "detail": a.detail,
                        "delivery": a.delivery, "delivery_label": a.delivery_label,
                        "error": a.last_error})
    return out


def format_alerts(raised: list[dict[str, Any]], flushed: bool, web_url: str | None) -> str:
    """The alerts as the demo prints them: one line each, urgent first."""
    if not raised:
        return "待处理：本次没有发出提醒"
    lines = [f"待处理：发出 {len(raised)} 条提醒（紧急 {sum(a['urgent'] for a in raised)} 条）"]
    for a in raised:
        said = f"“{a['said']}”" if a["said"] else ""
        lines.append(f"  #{a['id']} {'【紧急】' if a['urgent'] else ''}{a['label']}　{a['name']}"
                     f"　{a['address'] or ''}　{said}{'　' + a['detail'] if a['detail'] else ''}"
                     f"　→ {a['delivery_label']}")
    if not flushed:
        lines.append("  （群机器人暂时推送失败，提醒留在待处理页，稍后自动重试）")
    if all(a["delivery"] == "none" for a in raised):
        lines.append("  群机器人：未配置。设置 CALLBOT_ALERT_WEBHOOK（或在 系统管理 → 居委会：群机器人与值班电话 "
                     "填写企业微信/钉钉群机器人的 Webhook）后，这些提醒会同时推送到工作群。")
    if web_url:
        lines.append(f"  待处理页：{web_url}alerts/")
    return "\n".join(lines)


def _wait(factory: Any, cid: int, timeout: float) -> str:
    from callbot.campaign.models import Campaign
    from callbot.db import session_scope

    deadline = time.monotonic() + timeout
    while True:
        with session_scope(factory) as s:
            c = s.get(Campaign, cid)
            if c is None:
                raise click.ClickException(f"campaign {cid} vanished from the database")
            state = c.state
        if state not in ("running", "paused") or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def _one_call(number: str, as_json: bool) -> None:
    from callbot.cli.call import CallPlan, LiveLog, play_call
    from callbot.cli.residents import SAMPLE_TABLE
    from callbot.config import SipConfig, load_settings
    from callbot.exceptions import CallbotError
    from callbot.residents import Simulator, read_call_log, say_wav

    settings = load_settings()
    rdir = settings.data_dir / "residents"
    prompt = say_wav(DEMO_PROMPT, settings.cache_dir / "demo")
    port = _free_udp_port()
    sim = Simulator(str(SAMPLE_TABLE), str(rdir), port=port, procs=1)
    log = LiveLog(not as_json)
    try:
        sim.start()
        log(f"模拟居民已启动 127.0.0.1:{port}", "resident simulator up")
        conf = SipConfig(bind="127.0.0.1", local_port=0, rtp_port=0,
                         dial_uri=f"sip:{{number}}@127.0.0.1:{port}", ring_timeout_s=20)
        result = play_call(conf, number, CallPlan(play=Path(prompt), listen_s=4.0), log)
        time.sleep(0.5)
    except (CallbotError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        sim.stop()
    heard = [c for c in read_call_log(rdir) if c["number"] == number]
    if as_json:
        out = result.to_json()
        out["resident"] = heard[-1] if heard else None
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    click.echo(f"结果 (result): {result.outcome} SIP {result.sip_code} {result.reason}; "
               f"振铃 {result.ring_s:.1f} s, 通话 {result.talk_s:.1f} s")
    if heard:
        h = heard[-1]
        click.echo(f"居民听到 {h['prompts_heard']} 段提示 (prompts the resident heard); "
                   f"回答 (replies): {', '.join(h['replies_given']) or '-'}; "
                   f"录音 (recording): {h['recording']}")
