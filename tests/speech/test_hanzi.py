"""The characters staff read for a reply (``Final.text``): lexicon phrases where they were heard
closely, the input method's guess elsewhere; the pinyin beside it decides."""

from __future__ import annotations

import pytest

from callbot import pinyin as py
from callbot.speech import hanzi

pytest.importorskip("Pinyin2Hanzi")


def _render(heard: str) -> str:
    return hanzi.render(py.from_string(heard), unsure=py.unsure_of(heard))


def test_a_syllable_the_recogniser_doubted_is_written_as_the_lexicon_writes_the_word() -> None:
    # what a real welfare call heard for 膝盖疼得厉害 (help_xigai_slow.wav over SIP)
    assert _render("qī? gài céng? dé lì hài") == "膝盖疼得厉害"
    assert _render("qí? gài téng dé lì hài") == "膝盖疼得厉害"


def test_a_syllable_heard_surely_otherwise_is_not_rewritten() -> None:
    # the recogniser was sure of qí: staff must not read a word the resident may not have said
    assert not _render("qí gài téng dé lì hài").startswith("膝盖")


def test_a_filler_after_a_phrase_is_written_from_the_lexicon() -> None:
    # 得厉害 is a filler the intent reading did not choose; the guess wrote it 得利害
    assert _render("xī gài téng dé lì hài") == "膝盖疼得厉害"
    assert _render("wǒ shuāi le yī jiāo zhàn bù qǐ lái") == "我摔了一跤站不起来"
    assert _render("hái còu hé") == "还凑合"
