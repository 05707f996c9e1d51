"""The web app for committee staff and supervisors (Chinese UI).

``create_app()`` wires settings, the SQL store, login, CSRF and one blueprint per area. Nothing
connects anywhere at import time; the web process never touches SIP or audio capture.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, g, render_template
from flask_login import current_user
from werkzeug.routing import IntegerConverter

from callbot.config import Settings, load_settings


def _secret_key(settings: Settings) -> str:
    """CALLBOT_SECRET_KEY, else a key generated once and kept (mode 0600) in the data dir."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "web_secret_key"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


class _DatabaseInt(IntegerConverter):
    """``<int:...>`` that matches only ids the database can hold (SQLite and PostgreSQL: signed
    64-bit); a larger one is no route (404) instead of an OverflowError in the driver (500)."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(url_map, *args, **kwargs)


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """Build the Flask app. *overrides* are Flask config keys (e.g. ``TESTING=True``)."""
    from web import (
        admin,
        alerts,
        auth,
        campaigns,
        labels,
        lists,
        main,
        recordings,
        reports,
        results,
        scripts,
    )
    from web.store import init_store

    settings = settings or load_settings()
    app = Flask(__name__)
    secure = settings.extra.get("web_secure_cookies", "").lower() in ("1", "true", "yes")
    app.config.update(
        SECRET_KEY=_secret_key(settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_NAME="callbot_session",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        MAX_CONTENT_LENGTH=20 * 1024 * 1024,
        WTF_CSRF_TIME_LIMIT=8 * 3600,
        LOGIN_FREE_FAILURES=5,
        LOGIN_BACKOFF_S=30.0,
        LOGIN_BACKOFF_MAX_S=900.0,
        UPLOAD_DIR=str(settings.data_dir / "uploads"),
        SCRIPTS_DIR=str(settings.data_dir / "scripts"),
    )
    app.config.update(overrides)
    app.extensions["callbot_settings"] = settings
    proxies = settings.extra.get("web_proxies", "").strip()
    if proxies:  # behind N reverse proxies: the client address is in X-Forwarded-For
        from werkzeug.middleware.proxy_fix import ProxyFix

        if not proxies.isdigit() or not 0 < int(proxies) <= 5:
            from callbot.exceptions import ConfigError

            raise ConfigError(f"CALLBOT_WEB_PROXIES 须为 1–5 的整数（可信反向代理层数），"
                              f"got {proxies!r}", key="CALLBOT_WEB_PROXIES")
        n = int(proxies)
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    uploads = Path(app.config["UPLOAD_DIR"])
    uploads.mkdir(parents=True, exist_ok=True)
    os.chmod(uploads, 0o700)  # lists waiting for 确认导入: residents' names and numbers

    app.url_map.converters["int"] = _DatabaseInt  # before any route: a huge id is 404, not 500
    init_store(app, settings)
    auth.init_app(app)
    labels.init_app(app)
    alerts.init_app(app)
    for module in (main, auth, lists, scripts, campaigns, results, reports, alerts, admin,
                   recordings):
        app.register_blueprint(module.bp)

    @app.after_request
    def _security_headers(resp):  # type: ignore[no-untyped-def]
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "media-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'",
        )
        return resp

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"committee_name": settings.committee, "current_user": current_user}

    for code, title in ((400, "请求无效"), (403, "没有权限"), (404, "页面不存在"),
                        (413, "文件太大"), (429, "请求过于频繁"), (500, "服务器出错")):
        def handler(err, code=code, title=title):  # type: ignore[no-untyped-def]
            desc = getattr(err, "description", "") or ""
            if desc == getattr(type(err), "description", None):
                desc = ""  # werkzeug's English default; the page shows a Chinese title
            if type(err).__name__ == "CSRFError":
                desc = "页面已过期或缺少安全令牌（CSRF），请刷新页面后重试。"
            return render_template("error.html", code=code, title=title, message=desc), code
        app.register_error_handler(code, handler)

    @app.teardown_appcontext
    def _close_db(_exc: BaseException | None) -> None:
        db = g.pop("db", None)
        if db is not None:
            db.close()

    return app
