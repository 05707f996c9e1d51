"""Telephony: the only place that imports pjsua2 (and only inside ``Phone.start``).

``Phone`` owns this process's Endpoint and one loop thread; ``Call`` is a thread-safe handle whose
``events`` queue carries :mod:`callbot.telephony.events`. Outcomes: :mod:`callbot.telephony.outcome`.
"""

from callbot.telephony.dialplan import to_sip_uri
from callbot.telephony.events import (
    Answered,
    Disconnected,
    Dtmf,
    Event,
    Frame,
    PlaybackEnded,
    Ringing,
    TransferStatus,
)
from callbot.telephony.outcome import OUTCOMES, CallResult, classify
from callbot.telephony.phone import Call, Phone

__all__ = [
    "Answered", "Call", "CallResult", "Disconnected", "Dtmf", "Event", "Frame", "OUTCOMES",
    "Phone", "PlaybackEnded", "Ringing", "TransferStatus", "classify", "to_sip_uri",
]
