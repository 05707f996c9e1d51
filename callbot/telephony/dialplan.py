"""How a phone number (or a SIP URI) becomes the URI we send the INVITE to."""

from __future__ import annotations

import re

from callbot.config import SipConfig
from callbot.exceptions import DialError

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
