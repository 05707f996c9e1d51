"""Contact-list fixtures: XLSX workbooks built part by part (for decompression bombs)."""

from __future__ import annotations

import io
import zipfile

import openpyxl

NS = b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
END = b"</sheetData></worksheet>"


def base_xlsx() -> bytes:
    """A small valid workbook: a header and one contact."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["姓名", "电话"])
    ws.append(["张三", "13800000001"])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def with_part(name: str, chunks, level: int = 9) -> bytes:  # type: ignore[no-untyped-def]
    """The base workbook with part *name* replaced by the concatenated *chunks* (streamed)."""
    src = zipfile.ZipFile(io.BytesIO(base_xlsx()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        for info in src.infolist():
            if info.filename == name:
                continue
            z.writestr(info, src.read(info.filename))
        with z.open(name, "w", force_zip64=True) as f:
            for chunk in chunks:
                f.write(chunk)
    return out.getvalue()


def one_huge_cell():  # type: ignore[no-untyped-def]
    """One inline-string cell of 600 MB (compresses to well under 1 MB)."""
    yield NS + b'<row r="1"><c r="A1" t="inlineStr"><is><t>'
    block = b"a" * (1 << 20)
    for _ in range(600):
        yield block
    yield b"</t></is></c></row>" + END
