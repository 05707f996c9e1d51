"""Every tunable default in one place. Units are in the names or the docstrings."""

from __future__ import annotations

DATA_DIR = "./var"
"""Where the database, caches, recordings and the embedded Redis live (CALLBOT_DATA_DIR)."""

TIMEZONE = "Asia/Shanghai"
"""Time zone of calling windows and reports."""

COMMITTEE_NAME = "社区居委会"
"""Committee name offered to templates as ``{{ 居委会 }}`` / ``{{ committee }}``."""

SAMPLE_RATE = 8000
"""Telephone audio sample rate (Hz) used everywhere inside callbot."""

FRAME_MS = 20
"""Length of one audio frame handed between telephony, ASR and players (ms)."""

FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2
"""Bytes in one 20 ms frame of 16-bit mono PCM at 8 kHz (320)."""

MEDIA_PTIME_MS = 60
"""The conference bridge's frame in a line process (pjsua ``audioFramePtime``, a multiple of
FRAME_MS; CALLBOT_MEDIA_PTIME_MS): its clock wakes and hands each call's audio to Python once per
this many ms, cut into FRAME_MS frames. RTP on the wire keeps the codec's 20 ms packets."""

RING_TIMEOUT_S = 30.0
"""How long we let a number ring before we cancel (→ no_answer), seconds."""

MAX_CALL_S = 300.0
"""Hard cap on the talk time of one call, seconds."""

CALLS_PER_PROCESS = 4
"""The pjsua2 wheel is built with PJSUA_MAX_CALLS 4: never more calls in one process."""

SIP_LOCAL_PORT = 5060
"""Default local SIP port of the robot."""

TTS_ENGINE = "edge"
"""Production TTS engine; falls back to espeak when the service cannot be reached."""

TTS_VOICE_EDGE = "zh-CN-XiaoxiaoNeural"
"""Default edge-tts voice."""

TTS_VOICE_ESPEAK = "cmn-latn-pinyin"
"""espeak-ng voice for offline Mandarin (``cmn`` reads pinyin digits as English)."""

ASR_ENGINE = "pinyin"
"""Default speech recogniser: ``pinyin`` (free-form, sherpa-onnx transducer → toned pinyin),
``kws`` (sherpa-onnx keyword spotting of the expected phrases) or ``vosk``."""

# --- contact import and campaigns (issue 5) ---

IMPORT_MAX_BYTES = 20 * 1024 * 1024
"""Largest contact file accepted for import (bytes)."""

IMPORT_MAX_ROWS = 50_000
"""Most data rows accepted in one contact file."""

PHONE_REGION = "CN"
"""Region used to read phone numbers written without a country code."""

CALLING_WINDOWS = (("09:00", "11:30"), ("14:00", "20:00"))
"""Default calling windows (local time of the campaign's time zone); no call starts outside."""

CAMPAIGN_LINES = 4
"""Default concurrent calls of one campaign."""

DAILY_CAP = 3
"""Default most call attempts to one number per local day, across campaigns."""

MAX_ATTEMPTS = 3
"""Default most attempts per contact for retryable outcomes (no answer, busy...)."""

RETRY_DELAY_S = 1800
"""Default wait before retrying a contact after no answer / busy (seconds)."""

WORKER_HEARTBEAT_S = 5.0
"""How often a line worker process writes its heartbeat to SQL (CALLBOT_HEARTBEAT_S)."""

WORKER_DEAD_AFTER_HEARTBEATS = 3
"""A worker missing this many heartbeats is dead; its dialing attempts become interrupted."""

LINE_PROBE_TIMEOUT_S = 2.0
"""How long a line worker waits for its SIP peer to answer an OPTIONS probe, seconds."""

LINE_PROBE_INTERVAL_S = 2.0
"""While its line is down, a line worker probes the SIP peer this often, seconds."""

LINE_BUSY_BACKOFF_S = 5.0
"""After a trunk-side failure (503, 500, 502, 504, 408 from the proxy) a line worker takes no
calls for this long, doubling for each further one up to LINE_BUSY_BACKOFF_MAX_S, seconds."""

LINE_BUSY_BACKOFF_MAX_S = 60.0
"""The longest back-off of a line worker whose SIP peer keeps failing calls, seconds."""

TRUNK_GIVE_BACKS_MAX = 3
"""How often a line worker gives one number's attempt back after trunk-side failures before the
next one counts as a try (unreachable): a number the trunk always fails is not called for ever."""

DB_RETRY_S = 60.0
"""How long a line worker keeps retrying to store an answer, an end or an outcome while the
database is away (a restart, a fail-over), seconds; the call goes on meanwhile."""

DISPATCH_INTERVAL_S = 1.0
"""Seconds between two dispatcher ticks (enqueue, reconcile)."""

CALL_QUEUE = "callbot-calls"
"""Name of the RQ queue carrying ``place_call(attempt_id)`` jobs."""

# --- speech: TTS, ASR, endpointing (issue 3) ---

TTS_RATE = "+0%"
"""Default speaking rate for edge-tts (a signed percentage; espeak maps it onto words per minute)."""

TTS_VOLUME = "+0%"
"""Default edge-tts volume (a signed percentage)."""

TTS_EDGE_TIMEOUT_S = 15.0
"""How long one edge-tts synthesis may take before we fall back to espeak (seconds)."""

TTS_MIN_DBFS = -45.0
"""A rendered prompt quieter than this RMS level (dBFS) is treated as silent and rejected."""

TTS_MIN_DURATION_S = 0.2
"""A rendered prompt shorter than this is treated as broken and rejected (seconds)."""

ASR_NO_INPUT_S = 5.0
"""Listening ends with NoInput when no speech starts within this time (seconds)."""

ASR_MAX_REPLY_S = 8.0
"""A reply is cut off (and decoded) after this much time since speech started (seconds)."""

ASR_TRAILING_SILENCE_S = 0.8
"""A reply ends after this much silence following speech (seconds)."""

ASR_LONG_REPLY_S = 1.2
"""Speech longer than this (first to last voiced frame, seconds) is waited out with at least
ASR_LONG_REPLY_SILENCE_S of silence: short answers end after the question's own silence, but
a long stretch of talk (a story, a television) is not cut at its pauses into short pieces
that each could sound like an answer (…听见没有 → no)."""

ASR_LONG_REPLY_SILENCE_S = 0.8
"""Silence that ends a reply once it has run longer than ASR_LONG_REPLY_S (seconds); slowed
speech pauses up to 0.6 s inside a sentence (docs/benchmarks.md)."""

ASR_VAD_MODE = 2
"""webrtcvad aggressiveness 0-3 (3 filters most non-speech)."""

ASR_SPEECH_START_MS = 100
"""Voiced audio (within a 200 ms window) needed before speech counts as started (barge-in), ms."""

ASR_PREROLL_MS = 300
"""Audio kept from before speech started and handed to the decoder, ms."""

ASR_DECODE_SILENCE_S = 0.5
"""Silence after speech still decoded (the decoder needs it to settle); beyond it, until the
reply ends or speech resumes, frames are not decoded (seconds)."""

ASR_REPLY_AUDIO_TAIL_S = 0.2
"""Audio kept after the last voiced frame in a reply's stored audio (``Final.audio``), seconds:
webrtcvad ends speech a little before a word's fade-out."""

KWS_THRESHOLD = 0.35
"""sherpa-onnx keyword trigger threshold (probability; higher = fewer detections). At 0.25
unrelated real speech with a little line noise was heard as 不要/不用了; at 0.4 the clean 五个
clip is missed (bench/asr_noise.py, docs/benchmarks.md)."""

KWS_SCORE = 1.0
"""sherpa-onnx keyword boosting score (higher = keywords survive beam search more easily)."""

KWS_SHORT_THRESHOLD = 0.35
"""Trigger threshold for one-syllable keywords (要, 好, 是). Stricter values lose one-word
replies (要 missed in 3 of 12 noisy draws at 0.5); KWS_SHORT_MAX_S is what keeps them out of
other talk."""

KWS_SHORT_MAX_S = 2.0
"""A one-syllable keyword (要, 对, 好) counts only in a reply of at most this much decoded audio
(seconds, the 0.3 s pre-roll and the decoded trailing silence included): inside a longer stretch
of speech it is a syllable of other talk, not an answer."""

KWS_TAIL_S = 0.3
"""Silence appended when a reply ends so the spotter emits a keyword said last (seconds)."""

KWS_ALIGNMENTS = 3
"""Keyword searches per reply, on audio shifted by part of a 0.32 s chunk (short words are missed
at some chunk positions); each costs one more decode while the callee speaks."""

KWS_RESEARCH_MAX_S = 3.0
"""Replies longer than this (decoded audio, seconds) that matched nothing are not searched again
at other alignments: they are other talk, and the re-search would delay the next prompt."""

VOSK_MIN_WORD_CONF = 0.6
"""Vosk words recognised with less confidence than this count as unknown."""

DIALOGUE_LISTEN_TIMEOUT_S = 6.0
"""How long a question waits for a reply (speech or key) before it counts as silence, seconds."""

DIALOGUE_MAX_TURNS = 20
"""Questions asked in one call before the robot politely ends it (ended = max_turns)."""

DIALOGUE_REPEAT_RATE_DELTA = -20
"""A question asked again after 你说什么 is spoken this many percentage points slower than the
script's rate (-15% → -35%), never below -50%."""

DIALOGUE_END_SILENCE_S = 0.3
"""On a call, a reply ends after this much silence (s): replies are short phrases, and the next
prompt should start within 400 ms of the callee's last word (ASR_TRAILING_SILENCE_S is the
recogniser's own, more patient default for ``callbot listen``)."""

TEMPLATE_MAX_BYTES = 256 * 1024
"""A dialogue template larger than this (UTF-8 bytes) is refused before it is parsed."""

TEMPLATE_MAX_NODES = 20_000
"""YAML values a template may hold once aliases are expanded (the built-ins have ~200)."""

TEMPLATE_MAX_ALIASES = 200
"""YAML alias uses (``*anchor``) a template may make."""

PROMPT_MAX_VARIANTS = 256
"""Answer combinations one prompt may depend on (product of its answer fields' domains)."""

TEMPLATE_MAX_PROMPTS = 2_000
"""Rendered prompt variants a whole template may have (all pre-rendered by TTS before a call)."""

PROMPT_MAX_CHARS = 2_000
"""Characters a rendered prompt (or any string made while rendering it) may have (~8 minutes
of speech; the built-ins' longest is under 60)."""

PROMPT_MAX_INT_BITS = 1_024
"""Bits an integer computed in a prompt may have (``10**10000000`` is refused, not computed)."""

PROMPT_RENDER_MAX_S = 0.5
"""CPU seconds one prompt may take to render; longer is refused (at validation, with the line).
CPU, not wall time: a loaded box must not fail a call whose prompt is cheap."""

TEMPLATE_RENDER_MAX_S = 5.0
"""Seconds validation may spend rendering all of a template's prompt variants."""

IMPORT_XLSX_MAX_UNCOMPRESSED = 128 * 1024 * 1024
"""Bytes an XLSX contact file may hold once decompressed (all its parts); a 50,000-row list is
~30 MB. Read from the zip directory before anything is inflated (zipfile never inflates a
part past its declared size)."""

IMPORT_XLSX_MAX_SHARED_STRINGS = 32 * 1024 * 1024
"""Bytes of an XLSX file's shared-strings part (read into memory at once, unlike the sheet)."""

IMPORT_XLSX_MAX_CELLS = 2_000_000
"""Filled cells read from an XLSX sheet (50,000 rows × 40 columns)."""

IMPORT_MAX_COLUMNS = 200
"""Columns a contact file may use (a filled cell further right is refused)."""

RECORDING_DAYS = 90
"""Reply audio and whole-call recordings older than this many days are purged by the dispatcher
(``CALLBOT_RECORDING_DAYS``)."""

RECORDING_PURGE_INTERVAL_S = 3600.0
"""How often the dispatcher looks for recordings past their retention, seconds."""

RECORDING_STORE = "db"
"""Where reply audio and call recordings are kept (``CALLBOT_RECORDING_STORE``): ``db``, the
database every host already reads."""

RECORDING_OPUS_LEVEL = 0.98
"""libsndfile compression level (0–1) of stored Ogg Opus audio: 0.98 is ≈ 1.4 kB/s of 8 kHz speech
with recognition unchanged on our clips (docs/benchmarks.md)."""

RECORDING_DEFER_MAX_S = 5.0
"""A reply's audio is compressed and stored once no call of the line process is between a reply
and its next prompt (the reply → prompt path), but never later than this many seconds after it
was handed over (docs/benchmarks.md, "The resident's voice")."""

# --- welfare escalation: alerts, follow-up, transfer to a person (issue 10) ---

ALERT_POLL_S = 1.0
"""How often the dispatcher's alert deliverer looks for alerts to send (seconds)."""

ALERT_HTTP_TIMEOUT_S = 5.0
"""Time one webhook POST may take before it counts as failed and is retried (seconds)."""

ALERT_RETRY_FIRST_S = 2.0
"""Wait before the first retry of a failed webhook delivery; doubled after each failure (s)."""

ALERT_RETRY_MAX_S = 30.0
"""Longest wait between two delivery retries (s): after an outage the backlog goes out within it."""

ALERT_SENDING_STALE_S = 60.0
"""An alert left 'sending' this long (its deliverer died mid-POST) is tried again (seconds)."""

ALERT_BATCH = 20
"""Most alerts one delivery pass sends (urgent first); the next pass takes the rest."""

TRANSFER_TIMEOUT_S = 20.0
"""How long the committee's duty phone may ring before the resident hears the call-back line (s)."""

TRANSFER_MAX_S = 1800.0
"""Hard cap on a bridged resident ↔ duty-phone conversation (seconds)."""

TRANSFER_SPARE_LEGS = 1
"""Call slots each line-worker process keeps free for the duty-phone leg of a transfer."""

# --- free-form recognition (issue 9) ---

PINYIN_DITHER_DBFS = -66.0
"""RMS of the fixed noise added to audio before the pinyin transducer (dBFS): digital silence
makes the model invent syllables (好的 → hǎoděng), a little noise keeps it quiet."""

PINYIN_TAIL_S = 0.5
"""Quiet audio fed after a reply ends so the transducer emits its last syllable (seconds)."""

PINYIN_AFTER_SPEECH_S = 0.3
"""Tokens stamped later than this after the last voiced frame are dropped: the model's stray
syllables out of the flushing silence (我不舒服 → wǒbùshūfúcǐ), seconds."""

PINYIN_UNSURE = 0.45
"""A syllable the transducer heard with a probability (geometric mean of its tokens') below this is
marked unsure in ``Final.pinyin`` (``"yòng? mìng"``): on the tuned free set 44 % of the
misheard syllables are below it and 7 % of the right ones (docs/speech.md)."""

INTENT_COST_ONE = 0.2
"""Most a one-syllable phrase (要, 对, 疼) may differ from what was heard (0 = same, 1 = nothing
alike, see callbot.pinyin.distance): a tone, or z/zh."""

INTENT_COST_TWO = 0.45
"""Most a two-syllable phrase may differ from what was heard (about one half-syllable slip)."""

INTENT_COST_THREE = 0.6
"""Most a three-syllable phrase may differ from what was heard: less than one wholly different
syllable (我在忙 is not "wǒ zài bīn")."""

INTENT_COST_PER_SYLLABLE = 0.27
"""Most a phrase of four syllables or more may differ from what was heard, per syllable."""

INTENT_FINE_OVER_DOUBT = 3
"""An "I'm fine" of at least this many syllables, heard closely (at most INTENT_COST_ONE off),
outweighs a shorter complaint word heard only loosely (more than INTENT_COST_ONE off, no more
than two syllables) in the same reply: 身体还行，就是年纪大了 is fine — its "shì nián" is the
nearest the lexicon has to 失眠, two slips away. A complaint heard closely always wins, and an
emergency is never outweighed."""

INTENT_URGENT_SLACK = 0.1
"""Extra difference allowed for an emergency phrase (心口疼 heard as "tīng kǒu téng"): a missed
emergency costs more than a false alarm."""

INTENT_LONG_REPLY = 8
"""A reply of more syllables is long: its one-syllable 是, 有, 要, 好 count as other talk when a
yes/no/ok is weighed (they are words of a story more often than an answer inside one)."""

INTENT_SLACK_SHARE = 0.5
"""An emergency phrase heard only through INTENT_URGENT_SLACK (or an unsure syllable) counts when
at most this share of the reply (or INTENT_STRONG_UNEXPLAINED syllables) is unexplained: 心口疼
heard as "tīng kǒu téng" before a garbled 透不过气 still does, "shēng le" (摔了?) in a 12-syllable
story about a neighbour's cat does not."""

INTENT_UNSURE_COST = 0.5
"""In an emergency phrase, the most one syllable the recogniser was unsure of may cost: 救命 heard
as "yòng? mìng" on a noisy line is still 救命 (a missed emergency costs more than a false alarm)."""


INTENT_NUMERAL_COST = 0.4
"""Most a syllable followed by a measure word may differ from a numeral and still be read as it
(四盒 heard as "zì hé", 一盒 as "yù hé"); a numeral without one must be said exactly."""

INTENT_WEAK_UNEXPLAINED = 1
"""A yes / no / quantity / ok (or any one-syllable phrase) counts only when at most this many
syllables of the reply — or INTENT_WEAK_SHARE of it — are words the lexicon does not know."""

INTENT_WEAK_SHARE = 0.34
"""Share of a reply that may be unknown words for a yes / no / quantity / ok to count."""

INTENT_STRONG_UNEXPLAINED = 3
"""Unknown syllables a reply may hold and still be heard as an emergency, needs_help, stop,
human, later, repeat or wrong_person (or INTENT_STRONG_SHARE of it, whichever is more)."""

INTENT_STRONG_SHARE = 0.4
"""Share of a reply that may be unknown words for the multi-syllable intents to count."""

INTENT_URGENT_SHARE = 0.75
"""Share of a reply that may be unknown words for an emergency to count: someone in trouble may
say much else besides (a false alarm costs a visit, a missed one much more)."""

EXIT_CONFIG = 78
"""Exit status of a worker process that cannot start for a reason a restart will not fix (no
speech model, SIP account refused): its supervisor stops instead of restarting it (sysexits
EX_CONFIG)."""

SPEECH_SERVICE_TIMEOUT_S = 10.0
"""Longest a line process hears nothing at all from the host's speech process (s): while a
reply waits its turn to be decoded the process sends a keep-alive every
SPEECH_SERVICE_KEEPALIVE_S, so only a hung or stopped process runs into this."""

SPEECH_SERVICE_RESULT_MAX_S = 20.0
"""Longest a line process waits for one reply's result however busy the speech process is (s);
past it the reply counts as not understood (the question is asked again), never a crash."""

SPEECH_SERVICE_KEEPALIVE_S = 1.0
"""How often the speech process tells a waiting line process it is still working on its reply (s)."""

SPEECH_SERVICE_SEND_MS = 200
"""A line process sends a reply's audio to the speech process in pieces of this many ms (fewer
wake-ups and system calls than one message per 20 ms frame; the last piece goes with the end)."""

SPEECH_SERVICE_DECODERS: int | None = None
"""Decoding threads of the speech process, each with its own copy of the model (a few MB);
None: one per CPU core, at most 4 (``CALLBOT_SPEECH_DECODERS`` overrides)."""

SPEECH_SERVICE_START_S = 180.0
"""Longest ``callbot worker`` waits for its speech process to load the model (s)."""

SCHEMA_UPGRADE_TIMEOUT_S = 300.0
"""Longest ``callbot worker`` waits for ``callbot db upgrade`` before starting its line processes
(s); past it each line process upgrades the database itself."""

TTS_SHARED_TTL_S = 7 * 86400
"""How long a rendered prompt stays in the shared (Redis) prompt cache (s)."""
