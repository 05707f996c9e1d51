"""The resident simulator: a SIP peer that plays residents by the number dialled.

A persona table (YAML or CSV) says what each number does: answer and reply after each prompt it
hears (or talk over it: ``barge_in_after_s``), press keys, be busy, not answer, reject, hang up
mid-prompt, stay silent, answer after N seconds, or play an early-media announcement and then
fail. Every call is recorded (WAV) and logged (``calls.jsonl``) in the record directory, so tests
can check what the resident heard.

One pjsua2 process holds at most 4 calls, so the simulator scales by processes: with
``procs > 1`` a small stateless SIP front (this process, no pjsua2) listens on the public port and
forwards each new INVITE to the least-loaded backend process; backends answer with their own
Contact, so in-dialog requests and RTP go to them directly.

Modules: :mod:`~callbot.residents.personas` (the table), :mod:`~callbot.residents.backend` (one
pjsua2 process playing personas), :mod:`~callbot.residents.front` (the SIP forwarder),
:mod:`~callbot.residents.supervisor` (the processes, the call log).
"""

from callbot.residents.backend import (
    CALLS_PER_BACKEND,
    PROMPT_GAP_S,
    REPLY_DELAY_S,
    SPEECH_RMS,
    run_persona,
    say_wav,
    serve_backend,
)
from callbot.residents.front import Front
from callbot.residents.personas import BEHAVIOURS, Persona, PersonaTable, load_personas
from callbot.residents.supervisor import Simulator, iter_call_log, read_call_log

__all__ = [
    "BEHAVIOURS", "CALLS_PER_BACKEND", "PROMPT_GAP_S", "REPLY_DELAY_S", "SPEECH_RMS", "Front",
    "Persona", "PersonaTable", "Simulator", "iter_call_log", "load_personas", "read_call_log",
    "run_persona", "say_wav", "serve_backend",
]
