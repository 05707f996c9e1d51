"""A mixed resident population for real-call campaign tests: personas for the simulator and the
exact results a campaign must end with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# kind -> (simulator persona fields, final result, attempts with max_attempts=3, masks or None)
KINDS: dict[str, tuple[dict[str, object], str, int, int | None]] = {
    "masks1": ({"behaviour": "answer", "replies": ["dtmf:1", "dtmf:1"]}, "completed", 1, 1),
    "masks3": ({"behaviour": "answer", "replies": ["dtmf:1", "dtmf:3"]}, "completed", 1, 3),
    "none": ({"behaviour": "answer", "replies": ["dtmf:2"]}, "completed", 1, 0),
    "busy": ({"behaviour": "busy"}, "unreachable", 3, None),
    "no_answer": ({"behaviour": "no_answer"}, "unreachable", 3, None),
    "reject": ({"behaviour": "reject", "code": 603}, "unreachable", 3, None),
    "wrong_number": ({"behaviour": "early_media_fail", "code": 404,
                      "announcement": "say:空号"}, "invalid_number", 1, None),
}
ORDER = ["masks1", "none", "busy", "masks3", "no_answer", "masks1", "reject", "none",
         "wrong_number", "masks3"]


@dataclass(frozen=True)
class Resident:
    number: str
    name: str
    kind: str

    @property
    def result(self) -> str:
        return KINDS[self.kind][1]

    @property
    def attempts(self) -> int:
        return KINDS[self.kind][2]

    @property
    def masks(self) -> int | None:
        return KINDS[self.kind][3]


def population(n: int, prefix: str = "1390000") -> list[Resident]:
    return [Resident(f"{prefix}{i:04d}", f"居民{i}", ORDER[i % len(ORDER)]) for i in range(n)]


def write_table(people: list[Resident], path: Path) -> Path:
    rows = [{"number": p.number, "name": p.name, **KINDS[p.kind][0]} for p in people]
    path.write_text(yaml.safe_dump({"default": {"behaviour": "busy"}, "residents": rows},
                                   allow_unicode=True), encoding="utf-8")
    return path


def start_simulator(tmp: Path, table: Path, lines: int) -> tuple[Any, Path]:
    """The resident simulator on a free port for *lines* concurrent calls (one more backend than
    needed), and a sip.conf that dials it: ``(simulator, sip_conf path)``."""
    from callbot.residents import Simulator
    from tests.conftest import free_port

    port = free_port()
    sim = Simulator(str(table), str(tmp / "rec"), port=port, procs=(lines + 3) // 4 + 1)
    sim.start()
    return sim, sip_conf(tmp / "sip.conf", port)


def write_csv(people: list[Resident], path: Path) -> Path:
    lines = ["姓名,电话,地址"] + [f"{p.name},{p.number},{i % 4 + 1}号楼{101 + i}室"
                                 for i, p in enumerate(people)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sip_conf(path: Path, port: int, ring_timeout: float = 4.0) -> Path:
    path.write_text(f"""[account]
mode = direct
transport = udp
bind = 127.0.0.1
local_port = 0
domain = 127.0.0.1
username = callbot
caller_id = 居委会
response_timeout = 5

[dial]
uri = sip:{{number}}@127.0.0.1:{port}

[media]
codecs = PCMU, PCMA
rtp_port = 0

[calls]
ring_timeout = {ring_timeout}
max_call_length = 60
calls_per_process = 4
""", encoding="utf-8")
    return path
