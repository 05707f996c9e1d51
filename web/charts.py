"""Server-rendered SVG charts (no JavaScript, no CDN): horizontal bars and grouped columns."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

GOOD, WARN, BAD, NEUTRAL = "#27ae60", "#f2994a", "#eb5757", "#9aa5b1"
TONE = {"answered": GOOD, "completed": GOOD, "ok": GOOD, "no_answer": WARN, "busy": WARN,
        "incomplete": WARN, "unreachable": WARN, "rejected": BAD, "failed": BAD,
        "invalid_number": BAD, "interrupted": BAD, "needs_help": BAD, "refused": BAD,
        "callback": WARN}
"""Colour by meaning: green went well, orange try again, red failed or needs attention."""
PALETTE = ("#2f80ed", "#27ae60", "#f2994a", "#eb5757", "#9b51e0", "#56ccf2", "#828282")
FONT = "WenQuanYi Micro Hei, Microsoft YaHei, PingFang SC, sans-serif"


def hbar(items: Sequence[tuple[str, float]], *, unit: str = "", width: int = 560,
         title: str = "", colors: Sequence[str] | None = None) -> Markup:
    """Horizontal bars, one per (label, value), the value written at the bar's end."""
    if not items:
        return Markup('<p class="muted">暂无数据</p>')
    row_h, label_w, pad = 30, 120, 8
    top = 24 if title else 4
    height = top + row_h * len(items) + pad
    vmax = max((v for _l, v in items), default=0) or 1
    bar_w = width - label_w - 80
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
             f'font-family="{FONT}" font-size="13">']
    if title:
        parts.append(f'<text x="0" y="16" font-weight="bold">{escape(title)}</text>')
    for i, (label, value) in enumerate(items):
        y = top + i * row_h
        w = max(1.0, bar_w * (value / vmax)) if value else 0
        color = colors[i] if colors and i < len(colors) else PALETTE[i % len(PALETTE)]
        shown = f"{value:g}{unit}"
        parts.append(f'<text x="{label_w - 8}" y="{y + 19}" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 5}" width="{w:.1f}" height="{row_h - 10}" '
                     f'rx="3" fill="{color}"><title>{escape(label)}: {escape(shown)}</title></rect>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 19}">{escape(shown)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def columns(categories: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *,
            width: int = 560, height: int = 240, title: str = "") -> Markup:
    """Grouped vertical columns: one group per category, one column per series, with a legend."""
    if not categories:
        return Markup('<p class="muted">暂无数据</p>')
    left, bottom, top = 36, 28, 44 if title else 24
    plot_w, plot_h = width - left - 8, height - top - bottom
    vmax = max((v for _n, vals in series for v in vals), default=0) or 1
    group_w = plot_w / len(categories)
    col_w = max(4.0, min(28.0, (group_w - 8) / max(1, len(series))))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
             f'font-family="{FONT}" font-size="12">']
    if title:
        parts.append(f'<text x="0" y="16" font-weight="bold" font-size="13">{escape(title)}</text>')
    lx = left
    for si, (name, _vals) in enumerate(series):
        color = PALETTE[si % len(PALETTE)]
        parts.append(f'<rect x="{lx}" y="{top - 16}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{lx + 16}" y="{top - 6}">{escape(name)}</text>')
        lx += 24 + 13 * len(name) + 10
    base_y = top + plot_h
    for tick in (0, 0.5, 1):
        y = base_y - plot_h * tick
        parts.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#e4e9f0"/><text x="{left - 4}" y="{y + 4:.1f}" '
                     f'text-anchor="end" fill="#616e7c">{vmax * tick:g}</text>')
    for ci, cat in enumerate(categories):
        gx = left + ci * group_w + (group_w - col_w * len(series)) / 2
        for si, (name, vals) in enumerate(series):
            v = vals[ci] if ci < len(vals) else 0
            h = plot_h * (v / vmax)
            x = gx + si * col_w
            parts.append(f'<rect x="{x:.1f}" y="{base_y - h:.1f}" width="{col_w - 2:.1f}" '
                         f'height="{h:.1f}" fill="{PALETTE[si % len(PALETTE)]}">'
                         f'<title>{escape(cat)} {escape(name)}: {v:g}</title></rect>')
        parts.append(f'<text x="{left + ci * group_w + group_w / 2:.1f}" y="{height - 10}" '
                     f'text-anchor="middle">{escape(cat)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
