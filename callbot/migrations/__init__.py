"""Alembic migrations shipped inside the package (``callbot db upgrade``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def alembic_config(connection: Any = None, url: str | None = None) -> Any:
    """An Alembic ``Config`` pointing at these migrations, bound to *connection* or *url*."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg
