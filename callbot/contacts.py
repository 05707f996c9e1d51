"""Contact lists: read CSV/XLSX files, normalise Chinese phone numbers, merge duplicates, save.

Service API (used by the CLI and the web pages): :func:`parse_contacts` → :class:`ImportPreview`
→ ``campaign.lists.save_list``. Every data row ends up in exactly one of ``contacts``, ``errors``,
``duplicates`` or ``blank_rows``: nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from callbot import defaults
from callbot.exceptions import ContactFileError

log = logging.getLogger(__name__)

# canonical field -> header aliases (compared after normalising: NFKC, lower case, no spaces)
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "名字", "名称", "联系人", "name", "fullname", "full name"),
    "phone": ("电话", "手机", "手机号", "手机号码", "电话号码", "联系电话", "联系方式", "phone",
              "mobile", "tel", "telephone", "phone number", "number"),
    "address": ("地址", "住址", "楼号", "门牌", "门牌号", "楼栋", "address", "addr", "building"),
    "note": ("备注", "说明", "note", "notes", "remark", "remarks"),
}
_ALIAS_TO_FIELD = {
    re.sub(r"\s+", "", unicodedata.normalize("NFKC", a)).lower(): f
    for f, aliases in HEADER_ALIASES.items() for a in aliases
}
EXTENSION_RE = re.compile(r"(?:转|分机|ext\.?|x|#)\s*(,*\d{1,6})\s*$", re.IGNORECASE)
"""How an extension follows a phone number (the import and ``callbot call`` alike): ``转123``,
``分机123``, ``ext 123``, ``ext.123``, ``x123``, ``#123``; pauses may lead the digits (``转,,123``:
a switchboard that needs longer before it takes them)."""
_EXT_RE = EXTENSION_RE
_PHONE_JUNK_RE = re.compile(r"[\s\-‐‑–—().（）/]")
_CN_MOBILE_RE = re.compile(r"1(?!79)[3-9]\d{9}")
MAX_CELL_CHARS = 500
"""Longest text accepted in one cell (characters)."""


@dataclass(frozen=True)
class Contact:
    """One resident as imported: ``phone`` is E.164, ``dial`` the digits to dial in China."""

    row: int
    name: str
    phone: str
    dial: str
    extension: str = ""
    address: str = ""
    note: str = ""
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Duplicate:
    """A row merged into an earlier row with the same number."""

    row: int
    first_row: int
    phone: str


@dataclass
class ImportPreview:
    """What a file holds, before it is saved. ``errors`` are ``(row, reason)``, row 1 = header."""

    filename: str
    columns: list[str]
    mapping: dict[str, str]
    """header -> canonical field (name/phone/address/note) or ``var`` for a template variable."""
    contacts: list[Contact]
    errors: list[tuple[int, str]]
    duplicates: list[Duplicate]
    blank_rows: list[int]
    total_rows: int

    @property
    def variables(self) -> list[str]:
        return [h for h, f in self.mapping.items() if f == "var"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "columns": self.columns,
            "mapping": self.mapping,
            "rows": self.total_rows,
            "imported": len(self.contacts),
            "duplicates": [{"row": d.row, "first_row": d.first_row, "phone": d.phone}
                           for d in self.duplicates],
            "errors": [{"row": r, "reason": m} for r, m in self.errors],
            "blank_rows": self.blank_rows,
        }


def normalize_phone(raw: str, region: str = defaults.PHONE_REGION) -> tuple[str, str, str]:
    """Return ``(e164, dial, extension)`` for a Chinese phone number or raise ``ValueError``.

    Accepts mobiles, landlines with area code (021-6123 4567), extensions (转123, and a dash
    after a whole number when the whole is no number: 021-6123 4567-123, as ``callbot call``
    takes it), full-width digits, +86, spaces and dashes. ``dial`` is the national form (0 +
    area code for landlines).
    """
    text = unicodedata.normalize("NFKC", raw or "").strip()
    if not text:
        raise ValueError("电话号码为空 (phone is empty)")
    if re.fullmatch(r"\d+\.0", text):  # a number cell that went through a float
        text = text[:-2]
    m = _EXT_RE.search(text) or PAUSED_EXTENSION_RE.search(text)
    if m and m.start() == 0:
        raise ValueError(f"只有分机号，没有电话号码 (an extension without its phone number): "
                         f"{raw.strip()[:40]}")
    if m:
        ext = m.group(1) if m.re is _EXT_RE else m.group(0).strip()
        return (*_parse_phone(text[: m.start()], raw, region), ext)
    d = DASHED_EXTENSION_RE.search(text)
    try:
        return (*_parse_phone(text, raw, region), "")
    except ValueError:
        if d is None or d.start() == 0:
            raise
        try:  # 021-6123 4567-123: the whole is no number, the part before the dash is one
            return (*_parse_phone(text[: d.start()], raw, region), d.group(1))
        except ValueError:
            pass
        raise


PAUSED_EXTENSION_RE = re.compile(r"[,pP]+\s*[0-9*#][0-9*#,pP]{0,15}$")
"""A dialler's pauses before an extension (``02161234567,,123``, ``…p123``: each ``,``/``p`` a
pause), as ``callbot call`` takes them (``telephony.dialplan.split_extension``)."""
DASHED_EXTENSION_RE = re.compile(r"-\s*(\d{1,6})\s*$")
"""An extension after a dash (``021-6123 4567-123``): taken only when the whole is no phone
number and the part before the dash is one (``138-0000-0001`` stays a mobile)."""


def _parse_phone(text: str, raw: str, region: str) -> tuple[str, str]:
    """``(e164, dial)`` of *text* (no extension), or ValueError naming *raw*."""
    import phonenumbers

    digits = _PHONE_JUNK_RE.sub("", text)
    if digits.startswith("0086"):
        digits = "+86" + digits[4:]
    if not re.fullmatch(r"\+?\d{3,20}", digits):
        raise ValueError(f"电话号码格式无法识别 (not a phone number): {raw.strip()[:40]}")
    if region == "CN" and _CN_MOBILE_RE.fullmatch(digits):
        # what parse() makes of 11 digits 1[3-9]… in CN (no IDD or carrier prefix can match
        # these: both start 1[12] or 179), at a fifth of the cost; number_type() still validates
        num = phonenumbers.PhoneNumber(country_code=86, national_number=int(digits))
    else:
        try:
            num = phonenumbers.parse(digits, region)
        except phonenumbers.NumberParseException as exc:
            raise ValueError(f"电话号码无法解析 (cannot parse): {raw.strip()[:40]}") from exc
    # number_type() is UNKNOWN exactly when is_valid_number() is False (both match the number
    # against its region's patterns), so one call both validates and classifies
    kind = phonenumbers.number_type(num)
    if kind == phonenumbers.PhoneNumberType.UNKNOWN:
        hint = "；固定电话请带区号 (landline needs area code)" if len(digits) in (7, 8) else ""
        raise ValueError(f"电话号码无效 (invalid number): {raw.strip()[:40]}{hint}")
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    nsn = phonenumbers.national_significant_number(num)
    if num.country_code == 86:
        mobile = kind in (
            phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
        dial = nsn if mobile and nsn.startswith("1") else "0" + nsn
    else:
        dial = "00" + str(num.country_code) + nsn
    return e164, dial


def _norm_header(h: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", h)).lower()


def _decode(data: bytes) -> str:
    if b"\x00" in data[:4096]:
        raise ContactFileError("文件不是文本表格（含二进制内容）；请上传 CSV 或 XLSX (binary content)")
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContactFileError(f"UTF-8 文件含无效字节 (invalid UTF-8 at byte {exc.start + 3})") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise ContactFileError(
            "无法识别文件编码；请另存为 UTF-8 或 GBK 的 CSV，或 XLSX (unknown encoding)") from exc


def _csv_rows(data: bytes, max_rows: int = defaults.IMPORT_MAX_ROWS) -> list[list[str]]:
    """The rows of a CSV file; blank lines are kept only when data follows them and reading
    stops past *max_rows* (20 MB of newlines must not become 20 million lists)."""
    text = _decode(data)
    if not text.strip():
        raise ContactFileError("文件是空的 (the file is empty)")
    sample = text[:8192]
    delimiter = ","
    if "\t" in sample.splitlines()[0] and "," not in sample.splitlines()[0]:
        delimiter = "\t"
    rows: list[list[str]] = []
    blanks = 0
    try:
        for rowno, r in enumerate(csv.reader(io.StringIO(text, newline=""),
                                             delimiter=delimiter), 1):
            if not any(c.strip() for c in r):
                blanks += 1
                continue
            if len(rows) + blanks > max_rows + 1:  # too many rows: parse_contacts says so
                rows.extend([] for _ in range(max_rows + 2 - len(rows)))
                break
            rows.extend([] for _ in range(blanks))
            blanks = 0
            width = max((i for i, c in enumerate(r, 1) if c.strip()), default=0)
            if width > defaults.IMPORT_MAX_COLUMNS:
                raise ContactFileError(
                    f"CSV 第 {rowno} 行第 {width} 列有内容，名单最多 {defaults.IMPORT_MAX_COLUMNS} 列 "
                    f"(too many columns)")
            rows.append(r)
    except csv.Error as exc:
        raise ContactFileError(f"CSV 格式错误 (bad CSV): {exc}") from exc
    return rows


def _check_zip(data: bytes) -> None:
    """Refuse a decompression bomb before anything is inflated: the parts' declared sizes are
    upper bounds (zipfile stops a part at its declared size and then fails its CRC)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ContactFileError(f"无法读取 XLSX 文件 (cannot read XLSX): {exc}") from exc
    total = sum(i.file_size for i in infos)
    limit = defaults.IMPORT_XLSX_MAX_UNCOMPRESSED
    strings = sum(i.file_size for i in infos if i.filename.lower().endswith("sharedstrings.xml"))
    if total > limit or strings > defaults.IMPORT_XLSX_MAX_SHARED_STRINGS:
        raise ContactFileError(
            f"XLSX 文件解压后太大（{total / 2**20:.0f} MB，上限 {limit / 2**20:.0f} MB）：这不像一份"
            f"名单，请在 Excel 里另存为新的 .xlsx 或 CSV 再导入 (XLSX expands too much when "
            f"decompressed)")


class _Cells:
    """Counts filled cells while a sheet is read and refuses a sheet too wide or too full."""

    def __init__(self) -> None:
        self.left = defaults.IMPORT_XLSX_MAX_CELLS

    def row(self, rowno: int, cells: Iterable[tuple[int, object]]) -> list[str]:
        """Sheet row *rowno* from ``(column, value)`` pairs (1-based columns), as text."""
        filled = [(col, text) for col, v in cells if col >= 1 and (text := _cell_text(v)) != ""]
        self.left -= len(filled)
        if self.left < 0:
            raise ContactFileError(
                f"XLSX 文件的单元格太多（超过 {defaults.IMPORT_XLSX_MAX_CELLS} 个）；请分成几个名单导入 "
                f"(too many cells)")
        width = max((col for col, _ in filled), default=0)
        if width > defaults.IMPORT_MAX_COLUMNS:
            raise ContactFileError(
                f"XLSX 第 {rowno} 行第 {width} 列有内容，名单最多 {defaults.IMPORT_MAX_COLUMNS} 列；"
                f"请删掉右边多余的列 (too many columns)")
        row = [""] * width
        for col, text in filled:
            row[col - 1] = text
        return row


def _xlsx_rows(data: bytes, max_rows: int) -> list[list[str]]:
    """The first worksheet's cells as text, ``rows[i]`` being sheet row ``i + 1``.

    The fast reader drives openpyxl's internal sheet parser; should a later openpyxl change
    those internals, the public read-only API reads the file instead (slower, same rows)."""
    _check_zip(data)
    try:
        return _xlsx_rows_fast(data, max_rows)
    except (ImportError, AttributeError, TypeError) as exc:
        log.warning("fast XLSX reader unavailable (%s: %s); using openpyxl's public API",
                    type(exc).__name__, exc)
        return _xlsx_rows_public(data, max_rows)


def _xlsx_rows_public(data: bytes, max_rows: int) -> list[list[str]]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ContactFileError(f"无法读取 XLSX 文件 (cannot read XLSX): {exc}") from exc
    try:
        rows: list[list[str]] = []
        cells = _Cells()
        for values in wb.worksheets[0].iter_rows(values_only=True):
            if len(rows) > max_rows + 1:
                break
            rows.append(cells.row(len(rows) + 1, enumerate(values, 1)))
        return rows
    finally:
        wb.close()


def _xlsx_rows_fast(data: bytes, max_rows: int) -> list[list[str]]:
    """The first worksheet's cells as text, ``rows[i]`` being sheet row ``i + 1`` (rows the file
    leaves out come back empty, so row numbers stay the sheet's own).

    Read as ``openpyxl.load_workbook(read_only=True, data_only=True)`` reads it (same cell
    parser, dates, shared strings), with two costs cut: openpyxl's read-only sheet, when the
    file has no ``<dimension>`` (openpyxl's own write-only files, some exporters), parses the
    whole sheet once just to size it; and it reads each inline string through its rich-text
    object model. Rows past a wrong ``<dimension>`` are kept, not dropped.
    """
    from xml.etree.ElementTree import ParseError

    try:
        reader, path = _open_xlsx(data)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ContactFileError(f"无法读取 XLSX 文件 (cannot read XLSX): {exc}") from exc
    rows: list[list[str]] = []
    counter = _Cells()
    try:
        with reader.archive.open(path) as src:
            wb = reader.wb
            parser = _sheet_parser_class()(
                src, reader.shared_strings, data_only=True, epoch=wb.epoch,
                date_formats=wb._date_formats, timedelta_formats=wb._timedelta_formats)
            for idx, cells in parser.parse():
                if idx > max_rows + 2 or len(rows) > max_rows + 1:
                    break
                if idx <= len(rows):  # a repeated row number: openpyxl skips it too
                    continue
                while len(rows) < idx - 1:
                    rows.append([])
                rows.append(counter.row(idx, ((c["column"], c["value"]) for c in cells)))
    except (KeyError, OSError, ValueError, ParseError, zipfile.BadZipFile) as exc:
        raise ContactFileError(f"无法读取 XLSX 文件 (cannot read XLSX): {exc}") from exc
    finally:
        reader.archive.close()
    return rows


def _open_xlsx(data: bytes) -> tuple[Any, str]:
    """openpyxl's reader with strings, workbook and styles read; the path of the first
    worksheet (what ``load_workbook(...).worksheets[0]`` would read)."""
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.styles.stylesheet import apply_stylesheet

    reader = ExcelReader(io.BytesIO(data), read_only=True, data_only=True)
    try:
        reader.read_manifest()
        reader.read_strings()
        reader.read_workbook()
        apply_stylesheet(reader.archive, reader.wb)  # date formats: dates read as dates
        for _sheet, rel in reader.parser.find_sheets():
            if rel.target in reader.valid_files and "chartsheet" not in rel.Type:
                return reader, rel.target
    except BaseException:
        reader.archive.close()
        raise
    reader.archive.close()
    raise ContactFileError("XLSX 文件里没有工作表 (no worksheet in the XLSX file)")


_SHEET_PARSER: Any = None


def _sheet_parser_class() -> Any:
    """openpyxl's worksheet parser, reading inline strings (``<c t="inlineStr"><is>``) as
    plain text + rich-text runs, without building openpyxl's rich-text objects."""
    global _SHEET_PARSER
    if _SHEET_PARSER is not None:
        return _SHEET_PARSER
    from openpyxl.worksheet._reader import INLINE_STRING, WorkSheetParser
    from openpyxl.xml.constants import SHEET_MAIN_NS

    t_tag, r_tag = f"{{{SHEET_MAIN_NS}}}t", f"{{{SHEET_MAIN_NS}}}r"

    class Parser(WorkSheetParser):  # type: ignore[misc]
        def parse_cell(self, element: Any) -> dict[str, Any]:
            child = element.find(INLINE_STRING) if element.get("t") == "inlineStr" else None
            if child is None:
                return super().parse_cell(element)  # type: ignore[no-any-return]
            element.remove(child)  # the rest (row, column, style) as openpyxl reads it
            cell: dict[str, Any] = super().parse_cell(element)
            parts = []
            for el in child:  # the plain text, then the runs' text; phonetic runs are not text
                if el.tag == t_tag:
                    parts.append(el.text or "")
                elif el.tag == r_tag:
                    t = el.find(t_tag)
                    if t is not None:
                        parts.append(t.text or "")
            cell["value"], cell["data_type"] = "".join(parts), "s"
            return cell

    _SHEET_PARSER = Parser
    return Parser


def _cell_text(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def parse_contacts(  # noqa: C901
    data: bytes,
    filename: str,
    *,
    max_bytes: int = defaults.IMPORT_MAX_BYTES,
    max_rows: int = defaults.IMPORT_MAX_ROWS,
    region: str = defaults.PHONE_REGION,
) -> ImportPreview:
    """Read a CSV or XLSX contact file. Raise ``ContactFileError`` when the whole file is unusable."""
    if not data:
        raise ContactFileError("文件是空的 (the file is empty)")
    if len(data) > max_bytes:
        raise ContactFileError(
            f"文件太大：{len(data) / 1e6:.1f} MB，上限 {max_bytes / 1e6:.0f} MB "
            f"(file too large; split it into several lists)")
    is_xlsx = data[:4] == b"PK\x03\x04" or filename.lower().endswith((".xlsx", ".xlsm"))
    rows = _xlsx_rows(data, max_rows) if is_xlsx else _csv_rows(data, max_rows)
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()
    if not rows:
        raise ContactFileError("文件是空的 (the file is empty)")
    if len(rows) - 1 > max_rows:
        raise ContactFileError(
            f"行数太多：超过 {max_rows} 行 (too many rows, limit {max_rows}); 请拆分后分批导入")
    header = [unicodedata.normalize("NFKC", h).strip() for h in rows[0]]
    mapping: dict[str, str] = {}
    field_col: dict[str, int] = {}
    var_cols: list[tuple[int, str]] = []
    for i, h in enumerate(header):
        if not h:
            continue
        if h in mapping:
            raise ContactFileError(f"表头第 {i + 1} 列“{h}”重复 (duplicate column name)")
        f = _ALIAS_TO_FIELD.get(_norm_header(h))
        if f and f not in field_col:
            field_col[f] = i
            mapping[h] = f
        else:
            mapping[h] = "var"
            var_cols.append((i, h))
    if "phone" not in field_col:
        raise ContactFileError(
            "第 1 行表头里找不到电话列；请用“电话”“手机”“联系电话”或 phone 作列名 "
            f"(no phone column; headers found: {', '.join(h for h in header if h)[:200] or 'none'})")

    contacts: list[Contact] = []
    errors: list[tuple[int, str]] = []
    duplicates: list[Duplicate] = []
    blank: list[int] = []
    seen: dict[str, int] = {}  # phone+ext -> index in contacts

    def cell(r: list[str], f: str) -> str:
        i = field_col.get(f)
        return r[i].strip() if i is not None and i < len(r) else ""

    for rowno, r in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in r):
            blank.append(rowno)
            continue
        if len(r) > len(header) and any(c.strip() for c in r[len(header):]):
            r = _paused_phone_cells(r, field_col["phone"], len(header), data_is_csv=not is_xlsx)
        if len(r) > len(header) and any(c.strip() for c in r[len(header):]):
            errors.append((rowno, f"本行有 {len(r)} 列，表头只有 {len(header)} 列 (more cells than headers)"))
            continue
        long = next((c for c in r if len(c) > MAX_CELL_CHARS), None)
        if long is not None:
            errors.append((rowno, f"单元格太长（超过 {MAX_CELL_CHARS} 字） (cell too long)"))
            continue
        raw_phone = cell(r, "phone")
        try:
            e164, dial, ext = normalize_phone(raw_phone, region)
        except ValueError as exc:
            errors.append((rowno, str(exc)))
            continue
        variables = {h: (r[i].strip() if i < len(r) else "") for i, h in var_cols}
        c = Contact(row=rowno, name=cell(r, "name"), phone=e164, dial=dial, extension=ext,
                    address=cell(r, "address"), note=cell(r, "note"), variables=variables)
        key = f"{e164};{ext}"
        if key in seen:
            idx = seen[key]
            first = contacts[idx]
            contacts[idx] = _merge(first, c)
            duplicates.append(Duplicate(row=rowno, first_row=first.row, phone=e164))
            continue
        seen[key] = len(contacts)
        contacts.append(c)
    return ImportPreview(filename=filename, columns=[h for h in header if h], mapping=mapping,
                         contacts=contacts, errors=errors, duplicates=duplicates,
                         blank_rows=blank, total_rows=len(rows) - 1)


def _paused_phone_cells(r: list[str], phone_col: int, width: int, *, data_is_csv: bool
                        ) -> list[str]:
    """A CSV row whose last column is the phone, written with a dialler's pauses and no quotes
    (``丁,02161234567,,123``): the CSV reader split the number at its commas; join them back
    when what that gives is a number with a paused extension. Any other row is left as it is."""
    if not data_is_csv or phone_col != width - 1:
        return r
    joined = ",".join(r[phone_col:])
    m = PAUSED_EXTENSION_RE.search(joined.strip())
    if m is None or "," not in m.group(0):
        return r
    return [*r[:phone_col], joined]


def _merge(first: Contact, later: Contact) -> Contact:
    """Keep the first row; fill its empty fields from the later duplicate."""
    variables = dict(first.variables)
    for k, v in later.variables.items():
        if not variables.get(k):
            variables[k] = v
    return Contact(row=first.row, name=first.name or later.name, phone=first.phone,
                   dial=first.dial, extension=first.extension,
                   address=first.address or later.address, note=first.note or later.note,
                   variables=variables)
