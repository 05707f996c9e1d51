"""How a phone number (or a SIP URI) becomes the URI we send the INVITE to."""

from __future__ import annotations

import re
import unicodedata

from callbot.config import SipConfig
from callbot.exceptions import DialError

_PAUSED_RE = re.compile(r"[,pP]+\s*[0-9*#][0-9*#,pP]{0,15}$")
_URI_EXTENSION_RE = re.compile(r"(?:转|分机)\s*(,*\d{1,6})\s*$|(,+\d{1,6})\s*$")
_DASHED_RE = re.compile(r"-\s*(\d{1,6})\s*$")

_URI = re.compile(r"^sips?:([^@\s]+@)?[A-Za-z0-9.\-\[\]:]+(;[^\s]*)?$")


def to_sip_uri(number: str, conf: SipConfig) -> str:
    """A full SIP URI passes through unchanged (after a syntax check); a phone number goes
    through ``[dial]``: strip, prefix, allowed pattern, uri template."""
    n = number.strip()
    if n.startswith(("sip:", "sips:")):
        if not _URI.match(n):
            raise DialError(f"不是有效的 SIP URI (not a valid SIP URI): {number!r}")
        host = re.sub(r"^sips?:([^@]*@)?", "", n).split(";")[0]
        host = host[1:host.index("]")] if host.startswith("[") else host.split(":")[0]
        if conf.dial_uri_hosts and host.lower() not in conf.dial_uri_hosts:
            raise DialError(f"这条线路只能拨打 {' '.join(conf.dial_uri_hosts)} 上的 SIP 地址 "
                            f"([dial] uri_hosts): {number!r}")
        return _with_transport(n, conf)
    compact = re.sub(r"[\s\-()]", "", n)
    if not re.search(conf.dial_allowed, compact):
        raise DialError(f"号码不符合拨号规则 (number does not match [dial] allowed "
                        f"{conf.dial_allowed}): {number!r}")
    for p in conf.dial_strip:
        if p and compact.startswith(p):
            compact = compact[len(p):]
            break
    compact = conf.dial_prefix + compact
    return _with_transport(conf.dial_uri.format(number=compact, domain=conf.domain), conf)


def _with_transport(uri: str, conf: SipConfig) -> str:
    """With a TCP/TLS line, say so in the URI (pjsip would otherwise pick UDP, which we lack)."""
    if conf.transport == "udp" or "transport=" in uri.lower():
        return uri
    return f"{uri};transport={conf.transport}"


def split_extension(number: str) -> tuple[str, str]:
    """``(number, extension)``: a number as a user types it for ``callbot call``, with the
    extension spellings the contact import accepts (``callbot.contacts.EXTENSION_RE``: ``转123``, ``分机123``,
    ``ext 123``, ``x123``, ``#123``), a dialler's pauses (``02161234567,,123``, ``…p123``) and a
    dash when the number before it is a whole landline and the whole is not a number
    (``021-6123 4567-123``). A SIP URI takes ``转123``, ``分机123`` or ``,123`` after it.
    The extension is '' when there is none; full-width characters count as their ASCII."""
    from callbot.contacts import EXTENSION_RE

    text = unicodedata.normalize("NFKC", number or "").strip()
    if text.startswith(("sip:", "sips:")):
        m = _URI_EXTENSION_RE.search(text)
        if m and m.start() > 0:
            return text[:m.start()].rstrip(), (m.group(1) or m.group(2))
        return text, ""
    m = EXTENSION_RE.search(text)
    if m and m.start() > 0:
        return text[:m.start()].rstrip(), m.group(1)
    m = _PAUSED_RE.search(text)
    if m and m.start() > 0:
        return text[:m.start()].rstrip(), m.group(0).strip()
    m = _DASHED_RE.search(text)
    if m and m.start() > 0 and _whole_number(text[:m.start()]) and not _whole_number(text):
        return text[:m.start()].rstrip(), m.group(1)
    return text, ""


def _whole_number(text: str) -> bool:
    """A valid Chinese phone number (the contact import's test), without any extension."""
    from callbot.contacts import normalize_phone

    try:
        return normalize_phone(text)[2] == ""
    except ValueError:
        return False


EXTENSION_SETTLE_S = 0.25
"""After an extension's last digit: per digit sent, how long before the dialogue starts (the
digits take ~0.2 s each on the wire, then the extension's phone rings)."""


def extension_plan(extension: str, delay_s: float = 2.0, pause_s: float = 1.0
                   ) -> list[tuple[float, str]]:
    """(seconds after the answer, digits) to send as DTMF for an extension such as ``123`` or
    ``,,123``: the first *delay_s* after the answer (``[calls] extension_delay``), each ``,`` or
    ``p`` waits *pause_s* (``extension_pause``); [] without one. Characters other than DTMF keys
    and pauses are dropped."""
    ext = "".join(ch for ch in (extension or "") if ch in "0123456789*#,pP")
    if not ext.strip(",pP"):
        return []
    t = float(delay_s)
    plan: list[tuple[float, str]] = []
    for ch in ext:
        if ch in ",pP":
            t += pause_s
        elif plan and plan[-1][0] == t:
            plan[-1] = (t, plan[-1][1] + ch)
        else:
            plan.append((t, ch))
    return plan
