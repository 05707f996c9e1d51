"""Contact import: encodings, XLSX, phone formats, duplicates, row-numbered errors, limits."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbot.contacts import normalize_phone, parse_contacts
from callbot.exceptions import ContactFileError
from tests.conftest import callbot_cmd, env_for_subprocess

ROWS = [
    ["姓名", "电话", "地址", "楼层", "备注"],
    ["张三", "13812345678", "3号楼101", "1", ""],
    ["李四", "021-6123 4567", "5号楼202", "2", "腿脚不便"],
    ["王五", "１３９ ００００ １１１１", "7栋", "3", ""],     # full-width digits
    ["赵六", "+86 137-0000-2222", "8幢", "", ""],
    ["钱七", "010-12345678转123", "1号楼", "", ""],         # extension
    ["孙八", "12345", "2号楼", "", ""],                      # invalid → row 7
    ["周九", "", "2号楼", "", ""],                           # empty → row 8
    ["", "", "", "", ""],                                    # blank row 9
    ["张三（重复）", "138-1234-5678", "", "", "新备注"],      # duplicate of row 2 → row 10
    ["吴十", "61234567", "9号楼", "", ""],                   # landline without area code → row 11
]


def _csv_bytes(rows: list[list[str]], encoding: str) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    text = buf.getvalue()
    if encoding == "utf-8-sig":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    return text.encode(encoding)


def _xlsx_bytes(rows: list[list[object]]) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _check_sample(p) -> None:  # type: ignore[no-untyped-def]
    assert p.total_rows == 10
    assert len(p.contacts) == 5
    assert [c.row for c in p.contacts] == [2, 3, 4, 5, 6]
    assert [r for r, _ in p.errors] == [7, 8, 11]
    assert "无效" in dict(p.errors)[7]
    assert "为空" in dict(p.errors)[8]
    assert "区号" in dict(p.errors)[11]
    assert [(d.row, d.first_row) for d in p.duplicates] == [(10, 2)]
    assert p.blank_rows == [9]
    by_row = {c.row: c for c in p.contacts}
    assert by_row[2].phone == "+8613812345678" and by_row[2].dial == "13812345678"
    assert by_row[2].note == "新备注"  # merged from the duplicate row
    assert by_row[3].phone == "+862161234567" and by_row[3].dial == "02161234567"
    assert by_row[4].phone == "+8613900001111"
    assert by_row[5].dial == "13700002222"
    assert by_row[6].dial == "01012345678" and by_row[6].extension == "123"
    assert by_row[3].variables == {"楼层": "2"}
    assert p.mapping == {"姓名": "name", "电话": "phone", "地址": "address", "楼层": "var",
                         "备注": "note"}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_each_encoding(encoding: str) -> None:
    _check_sample(parse_contacts(_csv_bytes(ROWS, encoding), "名单.csv"))


def test_xlsx() -> None:
    rows: list[list[object]] = [list(r) for r in ROWS]
    rows[1][1] = 13812345678  # a number cell, as Excel stores it
    _check_sample(parse_contacts(_xlsx_bytes(rows), "名单.xlsx"))


def test_xlsx_without_the_fast_reader_gives_the_same_result(monkeypatch) -> None:
    """The fast XLSX reader uses openpyxl internals; if a later openpyxl breaks them, the public
    API reads the same file to the same contacts, errors and row numbers (with a date cell and a
    gap of missing rows too)."""
    import datetime as dt

    from callbot import contacts

    rows: list[list[object]] = [list(r) for r in ROWS]
    rows[1][1] = 13812345678
    rows[4][3] = dt.datetime(2026, 3, 2)  # a date cell in a variable column
    data = _xlsx_bytes(rows)
    fast = parse_contacts(data, "名单.xlsx")

    def broken() -> None:
        raise AttributeError("WorkSheetParser has no attribute parse_cell")

    monkeypatch.setattr(contacts, "_sheet_parser_class", broken)
    slow = parse_contacts(data, "名单.xlsx")
    _check_sample(slow)
    assert [(c.row, c.name, c.phone, c.variables) for c in slow.contacts] == \
        [(c.row, c.name, c.phone, c.variables) for c in fast.contacts]
    assert slow.errors == fast.errors and slow.blank_rows == fast.blank_rows


def test_english_headers_and_variables() -> None:
    data = b"Name,Phone,Address,Note,household\nAnn,13800000001,Bldg 2,hi,3\n"
    p = parse_contacts(data, "a.csv")
    assert p.contacts[0].name == "Ann" and p.contacts[0].variables == {"household": "3"}
    assert p.variables == ["household"]


@pytest.mark.parametrize("raw,e164,ext", [
    ("13812345678", "+8613812345678", ""),
    ("+86 138 1234 5678", "+8613812345678", ""),
    ("0086-138-1234-5678", "+8613812345678", ""),
    ("(021) 6123-4567", "+862161234567", ""),
    ("0755-12345678 转 88", "+8675512345678", "88"),
    ("0755-12345678转,,88", "+8675512345678", ",,88"),  # pauses first (a slow switchboard)
    ("０２１－６１２３４５６７", "+862161234567", ""),
    ("13812345678.0", "+8613812345678", ""),
    ("021-6123 4567-123", "+862161234567", "123"),  # a whole landline, a dash, an extension
    ("010-1234-5678", "+861012345678", ""),  # the whole is a number: its dashes are no extension
    ("02161234567,,123", "+862161234567", ",,123"),  # a dialler's pauses, as callbot call takes
    ("13800000001p12", "+8613800000001", "p12"),
])
def test_phone_formats(raw: str, e164: str, ext: str) -> None:
    got, _, got_ext = normalize_phone(raw)
    assert (got, got_ext) == (e164, ext)


@pytest.mark.parametrize("raw", ["", "abc", "123", "1381234567", "61234567", "13812345678999"])
def test_bad_phones(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_phone(raw)


@pytest.mark.parametrize("data,name,needle", [
    (b"", "a.csv", "空"),
    (b"\n\n  \n", "a.csv", "空"),
    ("姓名,地址\n张三,1号楼\n".encode(), "a.csv", "电话"),
    (bytes(range(256)) * 4, "a.csv", "二进制"),
    (b"PK\x03\x04garbage-not-a-zip", "a.xlsx", "XLSX"),
    (b"\xff\xfe\xfd\x81\x30\xff" * 10, "a.csv", "编码"),
])
def test_bad_files(data: bytes, name: str, needle: str) -> None:
    with pytest.raises(ContactFileError, match=needle):
        parse_contacts(data, name)


def test_limits() -> None:
    head = "姓名,电话\n"
    body = "".join(f"p{i},138{i:08d}\n" for i in range(101))
    with pytest.raises(ContactFileError, match="行数太多"):
        parse_contacts((head + body).encode(), "a.csv", max_rows=100)
    assert len(parse_contacts((head + body).encode(), "a.csv", max_rows=101).contacts) == 101
    with pytest.raises(ContactFileError, match="文件太大"):
        parse_contacts(b"x" * 2000, "a.csv", max_bytes=1000)


def test_an_extension_without_its_number_is_a_row_error_and_the_rest_is_imported() -> None:
    """``,,123`` (a dialler's pauses and an extension, no number) in the phone column: that row
    is reported by number as an extension without a phone number; the other rows are imported,
    a number written with pauses (``02161234567,,123``) as number + extension, also when the CSV
    split it at its commas because nobody quoted it (the phone the last column)."""
    data = _csv_bytes([["姓名", "地址", "电话"], ["甲", "1号楼", ",,123"],
                       ["乙", "2号楼", "13800000001"], ["丙", "3号楼", "02161234567,,123"],
                       ["丁", "4号楼", "转8"]], "utf-8")
    data += "戊,5号楼,075512345678,,,9\n己,6号楼,,45\n".encode()
    p = parse_contacts(data, "a.csv")
    errors = dict(p.errors)
    assert sorted(errors) == [2, 5, 7], p.errors
    assert all("只有分机号" in errors[r] for r in (2, 5, 7)), p.errors
    assert [(c.row, c.dial, c.extension) for c in p.contacts] == [
        (3, "13800000001", ""), (4, "02161234567", ",,123"), (6, "075512345678", ",,,9")]


def test_row_with_extra_cells_is_an_error() -> None:
    p = parse_contacts("姓名,电话\n甲,13800000001,多余\n乙,13800000002\n".encode(), "a.csv")
    assert [r for r, _ in p.errors] == [2] and len(p.contacts) == 1


_cell = st.text(alphabet=st.sampled_from(list("0123456789０１２+-() 转x,\"\n张三号楼=@")),
                max_size=14)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_cell, _cell, _cell), max_size=30),
       st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]))
def test_property_import_never_crashes_nor_loses_rows(rows, encoding) -> None:  # type: ignore[no-untyped-def]
    data = _csv_bytes([["姓名", "电话", "地址"], *[list(r) for r in rows]], encoding)
    try:
        p = parse_contacts(data, "p.csv")
    except ContactFileError:
        return  # a whole-file problem is reported as such
    accounted = ([c.row for c in p.contacts] + [r for r, _ in p.errors]
                 + [d.row for d in p.duplicates] + p.blank_rows)
    assert sorted(accounted) == list(range(2, p.total_rows + 2))
    assert len(set(accounted)) == len(accounted)


def test_cli_import_json(data_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "名单.csv"
    f.write_bytes(_csv_bytes(ROWS, "gbk"))
    out = subprocess.run(callbot_cmd("import", str(f), "--list", "三号楼", "--json"),
                         capture_output=True, text=True, env=env_for_subprocess(), check=True)
    d = json.loads(out.stdout)
    assert d["imported"] == 5 and d["duplicates"] == 1
    assert [e["row"] for e in d["errors"]] == [7, 8, 11]
    again = subprocess.run(callbot_cmd("import", str(f), "--list", "三号楼"),
                           capture_output=True, text=True, env=env_for_subprocess())
    assert again.returncode != 0 and "已存在" in again.stderr


def test_cli_import_takes_the_dashed_extension_callbot_call_takes(data_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``021-6123 4567-123`` (a whole landline, a dash, the extension) is imported as the number
    and extension ``callbot call`` dials for it; a whole number's own dashes stay the number."""
    from sqlalchemy import select

    from callbot.campaign.models import Contact
    from callbot.campaign.store import open_db
    from callbot.config import load_settings
    from callbot.contacts import normalize_phone as norm
    from callbot.db import session_scope
    from callbot.telephony.dialplan import split_extension

    typed = ["021-6123 4567-123", "0755-12345678-8", "010-1234-5678", "138-0000-0001"]
    f = tmp_path / "名单.xlsx"
    rows: list[list[object]] = [["姓名", "电话"]]
    rows += [[f"居民{i}", n] for i, n in enumerate(typed)]
    f.write_bytes(_xlsx_bytes(rows))
    out = subprocess.run(callbot_cmd("import", str(f), "--list", "分机", "--json"),
                         capture_output=True, text=True, env=env_for_subprocess())
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["imported"] == 4 and d["errors"] == [], d
    with session_scope(open_db(load_settings())) as s:
        got = {c.row: (c.dial, c.extension) for c in s.scalars(select(Contact))}
    assert got == {2: ("02161234567", "123"), 3: ("075512345678", "8"),
                   4: ("01012345678", ""), 5: ("13800000001", "")}
    for row, raw in enumerate(typed, start=2):  # what callbot call makes of the same text
        number, ext = split_extension(raw)
        assert (norm(number)[1], ext) == got[row], raw
