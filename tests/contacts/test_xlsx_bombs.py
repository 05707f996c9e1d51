"""XLSX decompression bombs (issue 13, hole 3): a small upload that expands to gigabytes while it
is read is refused with a clear Chinese message, and the process stays within a memory ceiling.

Each file is parsed in a child process limited to 1.5 GB of address space, so a regression
fails the test instead of taking the machine's memory."""

from __future__ import annotations

import json
import subprocess
import sys

import openpyxl
import pytest

from callbot import defaults
from callbot.contacts import parse_contacts
from tests.contacts.conftest import END, NS, base_xlsx, one_huge_cell, with_part

CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
from callbot.contacts import parse_contacts
from callbot.exceptions import ContactFileError
data = open(sys.argv[1], "rb").read()
try:
    p = parse_contacts(data, "名单.xlsx")
    print(json.dumps({"ok": True, "contacts": len(p.contacts), "errors": len(p.errors)}))
except ContactFileError as exc:
    print(json.dumps({"ok": False, "message": str(exc)}, ensure_ascii=False))
except MemoryError:
    print(json.dumps({"ok": False, "message": "MemoryError"}))
"""


def _parse_in_child(tmp_path, data: bytes) -> dict:  # type: ignore[no-untyped-def,type-arg]
    path = tmp_path / "bomb.xlsx"
    path.write_bytes(data)
    try:
        p = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                           text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError("reading the file did not finish in 120 s") from None
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)  # type: ignore[no-any-return]


def _wide_rows():  # type: ignore[no-untyped-def]
    """50,000 rows, each with one value in the sheet's last column (XFD): 16,384 cells a row."""
    yield NS
    yield ('<row r="1"><c r="A1" t="inlineStr"><is><t>姓名</t></is></c>'
           '<c r="B1" t="inlineStr"><is><t>电话</t></is></c></row>').encode()
    for i in range(2, 50_002):
        yield f'<row r="{i}"><c r="XFD{i}"><v>1</v></c></row>'.encode()
    yield END


def _many_shared_strings():  # type: ignore[no-untyped-def]
    """A sharedStrings part of ~600 MB of two-letter strings (36 million string objects)."""
    yield b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    block = b"<si><t>ab</t></si>" * 60_000
    for _ in range(600):
        yield block
    yield b"</sst>"


@pytest.mark.parametrize("part,chunks,needle", [
    ("xl/worksheets/sheet1.xml", _wide_rows, "列"),
    ("xl/worksheets/sheet1.xml", one_huge_cell, "解压"),
    ("xl/sharedStrings.xml", _many_shared_strings, "解压"),
])
def test_xlsx_bomb_is_refused_in_bounded_memory(tmp_path, part, chunks, needle) -> None:  # type: ignore[no-untyped-def]
    data = with_part(part, chunks())
    assert len(data) < defaults.IMPORT_MAX_BYTES  # an upload the size limit lets through
    got = _parse_in_child(tmp_path, data)
    assert not got["ok"], got
    assert needle in got["message"] and "XLSX" in got["message"], got


def test_too_many_cells_is_refused(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A sheet with more filled cells than the cap (each row well within the column cap); the
    cap is lowered so the test reads thousands of cells, not millions."""
    monkeypatch.setattr(defaults, "IMPORT_XLSX_MAX_CELLS", 5_000)
    cols = 60
    rows = defaults.IMPORT_XLSX_MAX_CELLS // cols + 10

    def sheet():  # type: ignore[no-untyped-def]
        yield NS
        for i in range(1, rows + 1):
            yield (f'<row r="{i}">' + "".join(f'<c r="{openpyxl.utils.get_column_letter(j)}{i}">'
                                               f"<v>{j}</v></c>" for j in range(1, cols + 1))
                   + "</row>").encode()
        yield END

    data = with_part("xl/worksheets/sheet1.xml", sheet(), level=1)
    from callbot.exceptions import ContactFileError

    with pytest.raises(ContactFileError, match="单元格"):
        parse_contacts(data, "名单.xlsx", max_rows=rows + 10)


def test_an_ordinary_workbook_still_reads() -> None:
    p = parse_contacts(base_xlsx(), "名单.xlsx")
    assert [c.name for c in p.contacts] == ["张三"]


def test_csv_of_newlines_and_commas_stays_small(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """5 MB of newlines (5 million blank rows) and a header of a million commas."""
    from callbot.exceptions import ContactFileError

    p = parse_contacts("姓名,电话\n张三,13800000001\n".encode() + b"\n" * 5_000_000, "a.csv")
    assert [c.name for c in p.contacts] == ["张三"] and p.blank_rows == []
    with pytest.raises(ContactFileError, match="列"):
        parse_contacts(b"," * 1_000_000 + "电话\n13800000001\n".encode(), "a.csv")
