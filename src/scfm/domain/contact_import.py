"""Contact imports: a CSV file of contacts, read row by row into contacts, and the reasons a row is refused.

Pure rules: the options of an import, the header (which column holds the number, which become metadata), the
normalisation of one row, and the flattening of metadata into the dotted columns of an export. The adapter
applies the rules that need the whole file (a number repeated on a later line) in SQL.
"""
from __future__ import annotations

import csv
import functools
import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from json.encoder import encode_basestring
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata

from scfm.domain import model
from scfm.domain import state_machines as sm
from scfm.domain.errors import ValidationFailed
from scfm.domain.filters import FilterSpec
from scfm.domain.values import MAX_DOCUMENT_BYTES, MAX_MSISDN_LENGTH, MergeMode, document_size, normalize_msisdn

DEFAULT_MSISDN_COLUMNS = ("msisdn", "phone", "phone_number")
MAX_CELL_LENGTH = 1024  # one metadata value: a name, a district, a free-text remark
MAX_COLUMNS = 256
MAX_HEADER_DEPTH = 32  # `a.b.c`: as deep as a nested parameter may be
MAX_COLUMN_NAME_LENGTH = 255

# Why a row is refused (the `reason` column of errors.csv starts with one of these).
INVALID_NUMBER = "invalid number"
DUPLICATE_NUMBER = "duplicate number within the file"
VALUE_TOO_LONG = "value too long"
MALFORMED_LINE = "malformed line"

# A text as a JSON string, as json.dumps(..., ensure_ascii=False) writes it (its C function, without the call's
# set-up: a million rows have five each).
_json_string = encode_basestring

# Characters a spreadsheet puts in a number for the eye: `+855 96-234-5678`, `(096) 234 5678`.
_NUMBER_PUNCTUATION = str.maketrans("", "", " -.()\u00a0")


def duplicate_reason(first_line: int) -> str:
    """The first line with a number is imported; every later line with the same number is refused."""
    return f"{DUPLICATE_NUMBER} (first on line {first_line})"


# ---------------------------------------------------------------- options

@dataclass(frozen=True)
class ImportOptions:
    msisdn_column: str | None = None  # None: the first of DEFAULT_MSISDN_COLUMNS the header has
    default_country: str | None = None  # ISO 3166 code for numbers written without a country code
    metadata_merge_mode: MergeMode = MergeMode.MERGE
    update_existing: bool = True  # False: contacts the account has are left as they are
    callout_id: int | None = None  # every imported contact joins this callout

    @classmethod
    def parse(cls, params: dict[str, Any]) -> "ImportOptions":
        errors: dict[str, list[str]] = {}
        column = params.get("msisdn_column")
        if column in ("", None):
            column = None
        elif not isinstance(column, str) or len(column) > MAX_COLUMN_NAME_LENGTH:
            errors["msisdn_column"] = ["is invalid"]
        country = params.get("default_country")
        if country in ("", None):
            country = None
        elif not isinstance(country, str) or country.strip().upper() not in phonenumbers.SUPPORTED_REGIONS:
            errors["default_country"] = ["is not included in the list"]
        else:
            country = country.strip().upper()
        try:
            mode = MergeMode.parse(params.get("metadata_merge_mode"))
        except ValidationFailed as error:
            errors.update(error.errors)
            mode = MergeMode.MERGE
        update_existing = _boolean(params.get("update_existing"), True)
        if update_existing is None:
            errors["update_existing"] = ["is invalid"]
        callout_id = params.get("callout_id")
        if callout_id in ("", None):
            callout_id = None
        else:
            try:
                callout_id = int(str(callout_id))
            except ValueError:
                errors["callout_id"] = ["is invalid"]
        if errors:
            raise ValidationFailed(errors)
        return cls(column, country, mode, bool(update_existing), callout_id)

    def as_dict(self) -> dict[str, Any]:
        return {"msisdn_column": self.msisdn_column, "default_country": self.default_country,
                "metadata_merge_mode": self.metadata_merge_mode.value, "update_existing": self.update_existing}

    @classmethod
    def from_dict(cls, data: dict[str, Any], callout_id: int | None = None) -> "ImportOptions":
        return cls(data.get("msisdn_column"), data.get("default_country"),
                   MergeMode(data.get("metadata_merge_mode") or "merge"), bool(data.get("update_existing", True)),
                   callout_id)


def _boolean(raw: Any, default: bool) -> bool | None:
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"true", "1", "t", "yes"}:
        return True
    if text in {"false", "0", "f", "no"}:
        return False
    return None


# ---------------------------------------------------------------- the file

def detect_delimiter(header_line: str) -> str:
    """`;` when the header has more semicolons than commas outside quotes (a spreadsheet in a locale whose
    decimal mark is the comma writes `;`), else `,`."""
    counts = {",": 0, ";": 0}
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    return ";" if counts[";"] > counts[","] else ","


def unreadable_cells(cells: list[str]) -> str | None:
    """Why cells read from the file cannot be stored (bytes that are not UTF-8, NUL characters), or None."""
    for cell in cells:
        if "\x00" in cell:
            return f"{MALFORMED_LINE} (a NUL character)"
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError:
            return f"{MALFORMED_LINE} (not valid UTF-8)"
    return None


def storable_cells(cells: list[str]) -> list[str]:
    """Cells as errors.csv can show them: undecodable bytes as U+FFFD, NUL characters dropped."""
    return [cell.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\x00", "")
            if not cell.isascii() or "\x00" in cell else cell for cell in cells]


@dataclass(frozen=True)
class Header:
    names: tuple[str, ...]
    msisdn_index: int
    metadata_columns: tuple[tuple[int, tuple[str, ...]], ...]  # (cell index, path in metadata)

    @property
    def width(self) -> int:
        return len(self.names)

    @classmethod
    def parse(cls, cells: list[str], options: ImportOptions) -> "Header":
        """The header line; a 422 on `file` when it has no number column or names that cannot be metadata."""
        names = tuple(cell.strip() for cell in cells)
        if not names or names == ("",):
            raise ValidationFailed.on("file", "is empty (a header line naming the columns is required)")
        if len(names) > MAX_COLUMNS:
            raise ValidationFailed.on("file", f"has too many columns (maximum is {MAX_COLUMNS})")
        if unreadable_cells(list(names)):
            raise ValidationFailed.on("file", "has a header line that is not valid UTF-8 text")
        lowered = [name.lower() for name in names]
        wanted = [options.msisdn_column.strip().lower()] if options.msisdn_column else list(DEFAULT_MSISDN_COLUMNS)
        index = next((lowered.index(name) for name in wanted if name in lowered), None)
        if index is None:
            raise ValidationFailed.on("file", f"has no {' or '.join(wanted)} column")
        columns: list[tuple[int, tuple[str, ...]]] = []
        seen: dict[tuple[str, ...], str] = {}
        for position, name in enumerate(names):
            if position == index:
                continue
            if not name:
                raise ValidationFailed.on("file", f"has a column without a name (column {position + 1})")
            if len(name) > MAX_COLUMN_NAME_LENGTH:
                raise ValidationFailed.on("file", f"has a column name longer than {MAX_COLUMN_NAME_LENGTH} characters")
            path = tuple(part.strip() for part in name.split("."))
            if any(not part for part in path) or len(path) > MAX_HEADER_DEPTH:
                raise ValidationFailed.on("file", f"has a column name that cannot be a metadata key: {name}")
            for other in seen:
                if other == path or other[:len(path)] == path or path[:len(other)] == other:
                    raise ValidationFailed.on("file", f"has columns that name the same metadata key: "
                                                      f"{seen[other]} and {name}")
            seen[path] = name
            columns.append((position, path))
        return cls(names, index, tuple(columns))

    @functools.cached_property
    def json_keys(self) -> tuple[tuple[int, str], ...] | None:
        """(cell index, `"key":` as JSON) of each metadata column when none nests (`a.b`); None when one does."""
        if any(len(path) > 1 for _, path in self.metadata_columns):
            return None
        return tuple((index, _json_string(path[0]) + ":") for index, path in self.metadata_columns)


class Row(NamedTuple):
    line: int
    msisdn: str
    metadata: str  # JSON text of an object


class Refusal(NamedTuple):
    line: int
    reason: str


_COUNTRY_CODES = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
# The kinds of number phonenumbers knows; a national number is valid when it fits the general description of
# its region and one of these (PhoneNumberUtil._number_type_helper).
_NUMBER_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
                 "fixed_line", "mobile")


@functools.lru_cache(maxsize=None)
def _quick_rules(country_code: int) -> tuple[str, PhoneMetadata | None] | None:
    """(the national prefix, or "" when there is none; the metadata when the code has one region) for a
    country code whose regions strip nothing but the prefix when parsing; None when a region has rules of
    its own (AR, MX, ...): those numbers take the long way."""
    prefixes, regions = set(), phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
        if metadata is None or metadata.national_prefix_transform_rule is not None or \
                metadata.national_prefix_for_parsing not in (None, metadata.national_prefix):
            return None
        prefixes.add(metadata.national_prefix or "")
    if len(prefixes) != 1:
        return None
    return prefixes.pop(), metadata if len(regions) == 1 and regions[0] != "001" else None


@functools.lru_cache(maxsize=None)
def _valid_pattern(country_code: int, length: int) -> re.Pattern[str] | None:
    """One expression that a national number of this length of the code's one region matches exactly when
    phonenumbers calls it valid (the general description's pattern, and one of the number types'); None when
    no number of that length is. One match instead of phonenumbers' ten, for a million rows."""
    rules = _quick_rules(country_code)
    metadata = rules[1] if rules is not None else None
    if metadata is None:
        return None

    def pattern(desc: Any) -> str | None:
        if desc is None or not desc.national_number_pattern or (desc.possible_length and
                                                                length not in desc.possible_length):
            return None
        return f"(?:{desc.national_number_pattern})"

    general = pattern(metadata.general_desc)
    kinds = [kind for kind in (pattern(getattr(metadata, name, None)) for name in _NUMBER_TYPES) if kind]
    if general is None or not kinds:
        return None
    return re.compile(f"(?={general}\\Z)(?:{'|'.join(kinds)})")


@functools.lru_cache(maxsize=None)
def _quick_check(head: str, length: int) -> tuple[int, str, re.Pattern[str] | None] | None:
    """How to read `length` digits starting with `head` (their first three) as an international number without
    phonenumbers.parse: (the country code's size, its national prefix, the pattern of its valid national
    numbers of that length, or None when phonenumbers.is_valid_number must tell); None when no number so
    written can be read that way."""
    for size in (1, 2, 3):
        country_code = _COUNTRY_CODES.get(head[:size])
        if country_code is not None:
            break
    else:
        return None
    rules = _quick_rules(country_code)
    if rules is None or length <= size:
        return None
    if rules[1] is None:
        return size, rules[0], None
    pattern = _valid_pattern(country_code, length - size)
    return (size, rules[0], pattern) if pattern is not None else None


def _quick_e164(digits: str) -> str | None:
    """`+digits` when phonenumbers would read `+digits` as that very number and call it valid; None when it
    would not, or might read it otherwise (a national prefix after the country code, a leading zero, a
    country with parsing rules of its own). A small share of the time of parsing, for a million rows."""
    check = _quick_check(digits[:3], len(digits))
    if check is None:
        return None
    size, prefix, pattern = check
    national = digits[size:]
    if national[0] == "0" or (prefix and national.startswith(prefix)):
        return None
    if pattern is not None:
        valid = pattern.fullmatch(national) is not None
    else:
        valid = phonenumbers.is_valid_number(phonenumbers.PhoneNumber(country_code=int(digits[:size]),
                                                                      national_number=int(national)))
    return "+" + digits if valid else None


def normalize_import_msisdn(raw: str, default_country: str | None) -> str:
    """E.164 of a number as a spreadsheet writes it: `+855 96 234 5678`, `855962345678`, or `0962345678`
    with a default country of KH. Raises ValidationFailed."""
    text = raw if (raw[1:] if raw.startswith("+") else raw).isdigit() else raw.translate(_NUMBER_PUNCTUATION)
    international = text[1:] if text.startswith("+") else None if default_country else text
    if international and international.isdigit() and len(international) <= 15 \
            and (quick := _quick_e164(international)) is not None:
        return quick
    if default_country and not text.startswith("+"):
        try:
            number = phonenumbers.parse(text, default_country)
        except phonenumbers.NumberParseException:
            number = None
        if number is not None and phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return normalize_msisdn(text)


def normalize_row(line: int, cells: list[str], header: Header, options: ImportOptions,
                  readable: bool = False) -> Row | Refusal:
    """One data row as a contact's number and metadata, or the reason it is refused. `readable`: the cells are
    known to be storable text (read_csv said so)."""
    if len(cells) != header.width:
        return Refusal(line, f"{MALFORMED_LINE} ({len(cells)} cells, the header has {header.width})")
    if not readable and (problem := unreadable_cells(cells)) is not None:
        return Refusal(line, problem)
    raw = cells[header.msisdn_index].strip()
    if len(raw) > MAX_MSISDN_LENGTH:
        return Refusal(line, f"{VALUE_TOO_LONG} ({header.names[header.msisdn_index]}: maximum is "
                             f"{MAX_MSISDN_LENGTH} characters)")
    if not raw:
        return Refusal(line, f"{INVALID_NUMBER} (blank)")
    try:
        msisdn = normalize_import_msisdn(raw, options.default_country)
    except ValidationFailed:
        return Refusal(line, INVALID_NUMBER)
    keys = header.json_keys
    if keys is not None:  # every column a key of its own: the JSON text written as the cells are read
        parts = []
        for index, key in keys:
            value = cells[index].strip()
            if value:
                if len(value) > MAX_CELL_LENGTH:
                    return _too_long(line, header, index)
                parts.append(key + _json_string(value))
        metadata = "{" + ",".join(parts) + "}"
        if len(keys) * MAX_CELL_LENGTH > MAX_DOCUMENT_BYTES and \
                document_size(json.loads(metadata)) > MAX_DOCUMENT_BYTES:
            return _too_large(line)
        return Row(line, msisdn, metadata)
    nested: dict[str, Any] = {}
    for index, path in header.metadata_columns:
        value = cells[index].strip()
        if not value:
            continue  # an empty cell sets nothing: a merge keeps what the contact has
        if len(value) > MAX_CELL_LENGTH:
            return _too_long(line, header, index)
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    if len(header.metadata_columns) * MAX_CELL_LENGTH > MAX_DOCUMENT_BYTES and \
            document_size(nested) > MAX_DOCUMENT_BYTES:
        return _too_large(line)
    return Row(line, msisdn, json.dumps(nested, ensure_ascii=False, separators=(",", ":")))


def _too_long(line: int, header: Header, index: int) -> Refusal:
    return Refusal(line, f"{VALUE_TOO_LONG} ({header.names[index]}: maximum is {MAX_CELL_LENGTH} characters)")


def _too_large(line: int) -> Refusal:
    return Refusal(line, f"{VALUE_TOO_LONG} (metadata: maximum is {MAX_DOCUMENT_BYTES} bytes)")


def normalise_rows(rows: Iterable[tuple[int, list[str], str | None]], header: Header, options: ImportOptions
                   ) -> Iterator[tuple[list[str], Row | Refusal]]:
    """The rows read_csv reads, each with its cells and what it becomes (a number on an earlier line is the
    store's to find: it needs the whole file)."""
    for line, cells, problem in rows:
        yield cells, Refusal(line, problem) if problem else normalize_row(line, cells, header, options, readable=True)


def merged_too_large_reason() -> str:
    return f"{VALUE_TOO_LONG} (metadata merged with the contact's: maximum is {MAX_DOCUMENT_BYTES} bytes)"


# ---------------------------------------------------------------- the import

@dataclass
class ContactImport(model.Entity):
    account_id: int | None = None
    callout_id: int | None = None
    status: str = sm.ContactImportStatus.QUEUED.value
    filename: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)
    delimiter: str = ","
    rows_total: int = 0
    rows_read: int = 0
    rows_created: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_refused: int = 0
    last_line: int = 0  # the last line done: the next chunk starts after it
    attempts: int = 0
    error_message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def fire(self, event: str) -> None:
        self.status = sm.transition(sm.CONTACT_IMPORT_TRANSITIONS, sm.ContactImportStatus(self.status), event).value
        now = datetime.now(timezone.utc)
        if event == "start":
            self.started_at = now
        elif event in ("finish", "fail"):
            self.finished_at = now

    @property
    def is_open(self) -> bool:
        return sm.ContactImportStatus(self.status) in sm.OPEN_CONTACT_IMPORT_STATUSES

    @property
    def progress(self) -> float:
        """The share of the file's rows done, 0 to 1."""
        if self.status == sm.ContactImportStatus.FINISHED.value or not self.rows_total:
            return 1.0 if self.status == sm.ContactImportStatus.FINISHED.value else 0.0
        return round(min(1.0, self.rows_read / self.rows_total), 4)

    def import_options(self) -> ImportOptions:
        return ImportOptions.from_dict(self.options, self.callout_id)

    def parsed_header(self) -> Header:
        return Header.parse(self.header, self.import_options())


@dataclass
class ChunkCounts:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0


# ---------------------------------------------------------------- exports

def flatten_metadata(metadata: Any, prefix: str = "") -> dict[str, Any]:
    """{"address": {"province": "Kandal"}} -> {"address.province": "Kandal"}; an empty object is no column."""
    flat: dict[str, Any] = {}
    if not isinstance(metadata, dict):
        return flat
    for key, value in metadata.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metadata(value, name + "."))
        else:
            flat[name] = value
    return flat


def format_cell(value: Any) -> str:
    """A value as an export's cell: text as is, times as the API shows them, lists and objects as JSON."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def export_row(values: Iterable[Any], metadata: dict[str, Any] | None, metadata_columns: list[str]) -> list[str]:
    """A record's cells: its own values, then its metadata's under `metadata_columns` (dotted names)."""
    flat = flatten_metadata(metadata or {})
    return [format_cell(value) for value in values] + [format_cell(flat.get(name)) for name in metadata_columns]


def metadata_column_names(paths: Iterable[Sequence[str]]) -> list[str]:
    """Dotted names of metadata leaf paths, sorted, each once (`{"a.b": 1}` and `{"a": {"b": 2}}` share one)."""
    return sorted({".".join(path) for path in paths})


# ---------------------------------------------------------------- reading the file

def read_csv(text_lines: Iterator[str]) -> tuple[list[str], str, Iterator[tuple[int, list[str], str | None]]]:
    """The header's cells, the delimiter, and the data rows as (line, cells, problem): `line` is the line of
    the file the row starts on (a quoted cell may hold line breaks), `problem` why the row cannot be read
    (its cells are then as much of it as could be read). Blank lines are skipped."""
    first = next(text_lines, "")
    delimiter = detect_delimiter(first)
    reader = csv.reader(itertools.chain([first], text_lines), delimiter=delimiter)
    try:
        header = next(reader, [])
    except csv.Error:
        raise ValidationFailed.on("file", "has a header line that cannot be read as CSV") from None

    def rows() -> Iterator[tuple[int, list[str], str | None]]:
        line = reader.line_num + 1
        while True:
            try:
                for cells in reader:
                    joined = "".join(cells)
                    if joined and not joined.isspace():
                        problem = None if joined.isascii() and "\x00" not in joined else unreadable_cells(cells)
                        yield line, storable_cells(cells) if problem else cells, problem
                    line = reader.line_num + 1
                return
            except csv.Error as error:
                yield line, [], f"{MALFORMED_LINE} ({error})"
                line = reader.line_num + 1

    return header, delimiter, rows()


CONTACT_IMPORT_FILTERS = FilterSpec(
    int_columns=frozenset({"callout_id"}),
    enum_columns={"status": {status.value for status in sm.ContactImportStatus}},
)
