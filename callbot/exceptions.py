"""All callbot exceptions, flat. Catch the narrow one you mean."""

from __future__ import annotations


class CallbotError(Exception):
    """Base class of every error callbot raises on purpose."""


class ConfigError(CallbotError):
    """A setting or sip.conf entry is missing or wrong; names file, key and what is wrong."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        self.path = path
        self.key = key
        where = ":".join(p for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class MissingExtraError(CallbotError):
    """An optional dependency is not installed; says which extra to install."""

    def __init__(self, module: str, extra: str):
        super().__init__(
            f"{module} is not installed: pip install 'callbot[{extra}]'"
        )
        self.module = module
        self.extra = extra


class TelephonyError(CallbotError):
    """The SIP stack failed (endpoint, transport, account)."""


class RegistrationError(TelephonyError):
    """Registration with the registrar/PBX failed (401/403/timeout)."""

    def __init__(self, message: str, *, code: int | None = None):
        super().__init__(message)
        self.code = code


class SpeechError(CallbotError):
    """TTS or ASR failed."""


class ModelNotFoundError(SpeechError):
    """A speech model is missing; the message names the command that fetches it."""


class TemplateError(CallbotError):
    """A dialogue template is invalid. ``errors`` holds every problem found, each with a line."""

    def __init__(self, message: str, errors: list | None = None):
        super().__init__(message)
        self.errors = errors or []


class PromptLimitError(TemplateError):
    """A prompt grew past a render limit (length, number size, render time): refused, not rendered."""


class ImportRowError(CallbotError):
    """One row of a contact list cannot be imported (row number as a spreadsheet shows it)."""


class ContactFileError(CallbotError):
    """A whole contact file cannot be read (empty, wrong headers, too big, garbage)."""


class CampaignError(CallbotError):
    """A campaign action is not allowed in the campaign's state."""


class DialError(TelephonyError):
    """A number or SIP URI cannot be dialled (does not match the dial pattern, bad URI)."""


class TooManyCallsError(TelephonyError):
    """More concurrent calls than one process may hold (the pjsua2 wheel allows 4)."""


class RecordingError(CallbotError):
    """Reply audio or a call recording cannot be encoded, stored or found."""


class AlertDeliveryError(CallbotError):
    """A webhook did not take an alert (unreachable, HTTP error, errcode ≠ 0); it is retried."""
