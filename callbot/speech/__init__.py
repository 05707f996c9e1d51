"""Speech: prompts (``tts``), replies (``asr`` with the ``kws`` and ``vosk`` engines), models.

Nothing heavy is imported here: engines load their libraries when first used.
"""
