"""``callbot web`` (serve the web app with waitress) and ``callbot users`` (manage logins)."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option("--threads", default=8, show_default=True, type=int, help="waitress worker threads.")
def web(host: str, port: int, threads: int) -> None:
    """启动网页端 (serve the web app with waitress)."""
    from web import create_app
    from web.server import serve_forever

    app = create_app()

    def ready(url: str) -> None:
        click.echo(f"网页端已启动 (web app): {url}")
        click.echo("添加账号 (add a login): callbot users add 姓名 --role staff|supervisor|admin")

    try:
        serve_forever(app, host, port, threads, on_ready=ready)
    except OSError as exc:
        raise click.ClickException(f"无法监听 {host}:{port}（端口被占用？）: {exc}") from exc


@click.group()
def users() -> None:
    """管理网页端账号 (manage web users)."""


def _session():  # type: ignore[no-untyped-def]
    from callbot.config import load_settings
    from callbot.db import make_engine, make_sessionmaker
    from web.store import ensure_schema

    engine = make_engine(load_settings().database_url)
    ensure_schema(engine)
    return make_sessionmaker(engine)()


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["staff", "supervisor", "admin"]), default="staff",
              show_default=True, help="staff 工作人员 / supervisor 督导 / admin 管理员")
@click.option("--committee", default=None,
              help="所属居委会 (committee); staff default to CALLBOT_COMMITTEE.")
@click.option("--password", default=None, help="密码；不给则提示输入 (prompted when absent).")
def users_add(name: str, role: str, committee: str | None, password: str | None) -> None:
    """添加账号 (add a user)."""
    from callbot.accounts import DEMO_LOGINS, AccountError, audit, create_user, retire_demo_logins
    from callbot.config import load_settings

    if role == "staff" and not committee:  # staff always belong to a committee
        committee = load_settings().committee
    if password is None:
        password = click.prompt("密码 (password)", hide_input=True, confirmation_prompt=True)
    s = _session()
    try:
        create_user(s, name, password, role, committee)
        audit(s, "cli", "user_add", name, f"role={role}")
        retired = [] if name in DEMO_LOGINS else retire_demo_logins(s, load_settings().data_dir)
        s.commit()
        if retired:
            click.echo(f"这是演示用的数据目录：已停用公开密码的演示账号 {'、'.join(retired)} "
                       "(demo logins disabled now that a real account exists)")
    except AccountError as exc:
        s.rollback()
        raise click.ClickException(str(exc)) from exc
    finally:
        s.close()
    click.echo(f"已添加用户 {name}（{role}{'，' + committee if committee else ''}）")


@users.command("list")
def users_list() -> None:
    """列出账号 (list users)."""
    from sqlalchemy import select

    from callbot.accounts import User

    s = _session()
    try:
        for u in s.scalars(select(User).order_by(User.id)):
            state = "" if u.active else "  (停用 disabled)"
            click.echo(f"{u.name}\t{u.role}\t{u.committee or '-'}{state}")
    finally:
        s.close()


@users.command("passwd")
@click.argument("name")
@click.option("--password", default=None, help="新密码；不给则提示输入.")
def users_passwd(name: str, password: str | None) -> None:
    """重设密码 (reset a password)."""
    from sqlalchemy import select

    from callbot.accounts import AccountError, User, audit, change_password

    s = _session()
    try:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise click.ClickException(f"用户 {name!r} 不存在 (no such user)")
        if password is None:
            password = click.prompt("新密码 (password)", hide_input=True, confirmation_prompt=True)
        try:
            change_password(s, user, password)  # every session of the account ends
        except AccountError as exc:
            raise click.ClickException(str(exc)) from exc
        audit(s, "cli", "user_passwd", name)
        s.commit()
    finally:
        s.close()
    click.echo(f"已重设 {name} 的密码（该账号的所有登录已退出）")


def _set_active(name: str, active: bool) -> None:
    from sqlalchemy import select

    from callbot.accounts import AccountError, User, audit, set_active

    s = _session()
    try:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise click.ClickException(f"用户 {name!r} 不存在 (no such user)")
        try:
            set_active(s, user, active)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from exc
        audit(s, "cli", "user_enable" if active else "user_disable", name)
        s.commit()
    finally:
        s.close()
    click.echo(f"已{'启用' if active else '停用'}用户 {name}")


@users.command("enable")
@click.argument("name")
def users_enable(name: str) -> None:
    """重新启用账号（例如被停用的管理员）(re-enable a user)."""
    _set_active(name, True)


@users.command("disable")
@click.argument("name")
def users_disable(name: str) -> None:
    """停用账号，并退出它的所有登录 (disable a user and end its sessions)."""
    _set_active(name, False)
