"""Both built-in scripts driven by real recorded replies through the real KWS recogniser, with
each question listening for exactly the phrases the engine asks for (no SIP: that is
test_session.py). Needs the KWS model (../shared/models or CALLBOT_MODELS_DIR)."""

from __future__ import annotations

import json

import pytest

from callbot.dialogue import DialogueEngine, Listen
from callbot.script import load_script
from tests.conftest import SHARED
from tests.dialogue.conftest import hear, replies_dir, talk

pytestmark = [pytest.mark.speech, pytest.mark.slow]


@pytest.mark.parametrize(("stems", "answers", "ended"), [
    (["xuyao", "liangge", "shide"], {"need_masks": True, "masks": 2}, "completed"),
    (["buxuyao"], {"need_masks": False, "masks": 0}, "completed"),
    (["buyongle"], {"need_masks": False, "masks": 0}, "completed"),
    (["yao", "sange", "haode"], {"need_masks": True, "masks": 3}, "completed"),
    (["yaolianghe", "shide"], {"need_masks": True, "masks": 2}, "completed"),
    # 五个 is heard as "nǐ gè" (the transducer's worst word): not understood, asked again
    (["nishuoshenme", "xuyao", "wuge", "sige", "haode"], {"need_masks": True, "masks": 4},
     "completed"),
    (["xuyao", "sige", "bushi", "yige", "shide"], {"need_masks": True, "masks": 1}, "completed"),
    (["zaijian", "zaijian", "zaijian"], {}, "no_match"),
    # "no" at the quantity question is confirmed before it is recorded
    (["xuyao", "buyao", "buxuyao"], {"need_masks": False, "masks": 0}, "completed"),
    (["xuyao", "buyao", "xuyao", "liangge", "shide"], {"need_masks": True, "masks": 2},
     "completed"),
])
def test_mask_reservation_by_voice(kws, stems, answers, ended) -> None:
    engine = talk(kws, "mask_reservation", stems)
    assert engine.answers == answers
    assert engine.ended == ended


@pytest.mark.parametrize(("stems", "answers"), [
    (["wobushufu"], {"welfare": "needs_help", "note": "我不舒服"}),
    (["butaihao"], {"welfare": "needs_help", "note": "不太好"}),
    (["wohenhao", "buxuyao"], {"welfare": "ok"}),
    (["tinghaode", "xuyaobangzhu"], {"welfare": "needs_help", "note": "需要帮助"}),
    (["haode", "buyongle"], {"welfare": "ok"}),
])
def test_welfare_check_by_voice(kws, stems, answers) -> None:
    engine = talk(kws, "welfare_check", stems)
    assert engine.answers == answers
    assert engine.ended == "completed"


def test_unrelated_real_speech_is_no_answer(kws) -> None:
    real = sorted((SHARED / "audio" / "real").glob("*.wav")) if (SHARED / "audio" / "real").is_dir() else []
    if not real:
        pytest.skip("no ../shared/audio/real clips")
    for name in ("mask_reservation", "welfare_check"):
        engine = DialogueEngine(load_script(name), {"姓名": "张阿姨"})
        listen = engine.start()[-1]
        assert isinstance(listen, Listen)
        for clip in real:
            event = hear(kws, listen, clip)
            engine2 = DialogueEngine(load_script(name), {"姓名": "张阿姨"})
            engine2.start()
            engine2.on(event)
            assert engine2.answers == {}, (clip.name, event)


def test_transcripts_are_what_the_clips_say() -> None:
    tr = json.loads((replies_dir() / "transcripts.json").read_text(encoding="utf-8"))
    assert tr["liangge"] == "两个" and tr["wobushufu"] == "我不舒服"
