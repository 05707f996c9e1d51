"""A local stand-in for the edge-tts websocket service (ws://127.0.0.1), shared by the tests of
the TTS engine (tests/speech/test_tts.py) and of ``tts_personal`` (tests/campaign/
test_tts_personal.py): it records every message it is sent (the SSML holds the prompt text) and
answers each with a real MP3 in the service's message framing, so edge-tts's success path runs
although Microsoft's service is unreachable from here."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def edge_stand_in(tmp_path: Path, monkeypatch: Any, seconds: float = 1.5) -> Iterator[list[str]]:
    """Serve edge-tts's protocol on a free local port while the block runs; edge-tts in this
    process is pointed at it. Yields the list of messages received (grows as they come)."""
    import asyncio
    import threading

    import edge_tts.communicate
    from aiohttp import WSMsgType, web

    mp3 = tmp_path / "answer.mp3"
    subprocess.run(["sox", "-n", "-r", "24000", "-c", "1", str(mp3), "synth", str(seconds),
                    "sine", "300-900", "vol", "0.3"], check=True, capture_output=True)
    received: list[str] = []

    async def handler(request: Any) -> Any:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            received.append(msg.data)
            if "<speak" not in msg.data:
                continue
            await ws.send_str("X-RequestId:1\r\nPath:turn.start\r\n\r\n{}")
            hdr = b"X-RequestId:1\r\nContent-Type:audio/mpeg\r\nPath:audio"
            await ws.send_bytes((len(hdr) + 2).to_bytes(2, "big") + hdr + b"\r\n"
                                + mp3.read_bytes())
            await ws.send_str("X-RequestId:1\r\nPath:turn.end\r\n\r\n{}")
        return ws

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/edge/v1", handler)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(edge_tts.communicate, "WSS_URL",
                        f"ws://127.0.0.1:{port}/edge/v1?TrustedClientToken=test")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        yield received
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
