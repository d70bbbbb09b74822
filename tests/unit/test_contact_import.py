"""The pure rules of contact imports: options, the header, one row's normalisation and reasons, the state
machine, reading the file, and the flattening of metadata for exports."""
import json
from datetime import datetime, timezone

import pytest

from scfm.domain import contact_import as ci
from scfm.domain import state_machines as sm
from scfm.domain.contact_import import ContactImport, Header, ImportOptions, Refusal, Row, normalize_row
from scfm.domain.errors import EventNotAllowed, ValidationFailed
from scfm.domain.values import MergeMode

ALLOWED = {("queued", "start"): "running", ("running", "finish"): "finished", ("queued", "fail"): "failed",
           ("running", "fail"): "failed"}


@pytest.mark.parametrize("status,event", [(s.value, e) for s in sm.ContactImportStatus
                                          for e in sm.CONTACT_IMPORT_TRANSITIONS])
def test_contact_import_events(status, event):
    contact_import = ContactImport(status=status)
    if (status, event) in ALLOWED:
        contact_import.fire(event)
        assert contact_import.status == ALLOWED[(status, event)]
        assert (contact_import.started_at if event == "start" else contact_import.finished_at) is not None
    else:
        with pytest.raises(EventNotAllowed):
            contact_import.fire(event)


def test_progress_is_the_share_of_rows_done():
    assert ContactImport(rows_total=200, rows_read=50, status="running").progress == 0.25
    assert ContactImport(rows_total=0, status="queued").progress == 0.0
    assert ContactImport(rows_total=0, status="finished").progress == 1.0


def test_options_are_parsed_and_bad_ones_named():
    options = ImportOptions.parse({"default_country": "kh", "metadata_merge_mode": "deep_merge",
                                   "update_existing": "false", "callout_id": "7", "msisdn_column": "Tel"})
    assert options == ImportOptions("Tel", "KH", MergeMode.DEEP_MERGE, False, 7)
    assert ImportOptions.parse({}) == ImportOptions()
    with pytest.raises(ValidationFailed) as error:
        ImportOptions.parse({"default_country": "XX", "metadata_merge_mode": "x", "update_existing": "maybe",
                             "callout_id": "one"})
    assert set(error.value.errors) == {"default_country", "metadata_merge_mode", "update_existing", "callout_id"}


def test_the_header_finds_the_number_column_and_nests_the_others():
    header = Header.parse([" Phone ", "name", "address.province", "address.district"], ImportOptions())
    assert header.msisdn_index == 0
    assert header.metadata_columns == ((1, ("name",)), (2, ("address", "province")), (3, ("address", "district")))
    assert Header.parse(["tel", "msisdn"], ImportOptions(msisdn_column="TEL")).msisdn_index == 0


@pytest.mark.parametrize("cells,message", [
    (["name"], "has no msisdn or phone or phone_number column"),
    ([""], "is empty (a header line naming the columns is required)"),
    (["msisdn", ""], "has a column without a name (column 2)"),
    (["msisdn", "a", "a.b"], "has columns that name the same metadata key: a and a.b"),
    (["msisdn", "a", "a"], "has columns that name the same metadata key: a and a"),
    (["msisdn", "a..b"], "has a column name that cannot be a metadata key: a..b"),
])
def test_bad_headers_are_refused(cells, message):
    with pytest.raises(ValidationFailed) as error:
        Header.parse(cells, ImportOptions())
    assert error.value.errors == {"file": [message]}


HEADER = Header.parse(["msisdn", "name", "address.province"], ImportOptions())


@pytest.mark.parametrize("cells,options,expected", [
    (["+855 12-345-678", " Alice ", "Kandal"], ImportOptions(),
     Row(2, "+85512345678", {"name": "Alice", "address": {"province": "Kandal"}})),
    (["012345678", "", ""], ImportOptions(default_country="KH"), Row(2, "+85512345678", {})),
    (["85512345678", "Bob", ""], ImportOptions(default_country="KH"), Row(2, "+85512345678", {"name": "Bob"})),
    (["252662345678", "", ""], ImportOptions(default_country="KH"), Row(2, "+252662345678", {})),
    (["012345678", "", ""], ImportOptions(), Refusal(2, "invalid number")),
    (["12345", "", ""], ImportOptions(), Refusal(2, "invalid number")),
    (["", "Alice", ""], ImportOptions(), Refusal(2, "invalid number (blank)")),
    (["+" + "1" * 40, "", ""], ImportOptions(), Refusal(2, "value too long (msisdn: maximum is 32 characters)")),
    (["+85512345678", "x" * 1025, ""], ImportOptions(), Refusal(2, "value too long (name: maximum is 1024 characters)")),
    (["+85512345678", "Alice"], ImportOptions(), Refusal(2, "malformed line (2 cells, the header has 3)")),
    (["+85512345678", "a\x00b", ""], ImportOptions(), Refusal(2, "malformed line (a NUL character)")),
    (["+85512345678", "caf\udce9", ""], ImportOptions(), Refusal(2, "malformed line (not valid UTF-8)")),
])
def test_a_row_is_normalised_or_refused_with_its_reason(cells, options, expected):
    result = normalize_row(2, cells, HEADER, options)
    assert (result._replace(metadata=json.loads(result.metadata)) if isinstance(result, Row) else result) == expected


def test_metadata_of_columns_that_do_not_nest_is_the_json_of_their_values():
    header = Header.parse(["name", "msisdn", "note"], ImportOptions())
    row = normalize_row(3, [' "Al"\\ ', "+85512345678", "caf\u00e9\t\u2028!"], header, ImportOptions())
    assert row == Row(3, "+85512345678", '{"name":"\\"Al\\"\\\\","note":"caf\u00e9\\t\u2028!"}')
    assert json.loads(row.metadata) == {"name": '"Al"\\', "note": "caf\u00e9\t\u2028!"}
    assert normalize_row(4, ["", "+85512345678", ""], header, ImportOptions()) == Row(4, "+85512345678", "{}")


def test_every_reason_starts_with_one_of_the_documented_kinds():
    kinds = (ci.INVALID_NUMBER, ci.DUPLICATE_NUMBER, ci.VALUE_TOO_LONG, ci.MALFORMED_LINE)
    assert ci.duplicate_reason(3) == "duplicate number within the file (first on line 3)"
    assert ci.merged_too_large_reason().startswith(kinds)


def test_metadata_over_the_document_bound_is_too_long():
    header = Header.parse(["msisdn", *[f"c{n}" for n in range(70)]], ImportOptions())
    result = normalize_row(5, ["+85512345678", *["x" * 1000] * 70], header, ImportOptions())
    assert result == Refusal(5, "value too long (metadata: maximum is 65536 bytes)")


@pytest.mark.parametrize("line,delimiter", [
    ("msisdn,name\n", ","), ("msisdn;name;province\n", ";"), ('"a;b;c",name\n', ","), ("msisdn\n", ","),
])
def test_the_delimiter_is_the_headers(line, delimiter):
    assert ci.detect_delimiter(line) == delimiter


def test_reading_a_file_gives_line_numbers_and_problems():
    text = ['msisdn;note\r\n', '1;"two\n', 'lines"\r\n', '\r\n', ';\r\n', '3;caf\udce9\r\n', '4;ok\r\n']
    header, delimiter, rows = ci.read_csv(iter(text))
    assert (header, delimiter) == (["msisdn", "note"], ";")
    assert list(rows) == [(2, ["1", "two\nlines"], None), (6, ["3", "caf\ufffd"], "malformed line (not valid UTF-8)"),
                          (7, ["4", "ok"], None)]


def test_metadata_is_flattened_to_dotted_columns():
    assert ci.flatten_metadata({"a": {"b": 1, "c": {"d": True}}, "e": [1], "f": {}}) == {
        "a.b": 1, "a.c.d": True, "e": [1]}
    values = (1, datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc))
    metadata = {"a": {"b": 1}, "e": ["x"], "n": None, "t": False}
    assert ci.export_row(values, metadata, ["a.b", "e", "n", "t", "z"]) == [
        "1", "2026-01-02T03:04:05.678Z", "1", '["x"]', "", "false", ""]
    assert ci.metadata_column_names([("b",), ("a", "c"), ("a.c",)]) == ["a.c", "b"]


def test_the_quick_reading_of_a_number_agrees_with_phonenumbers_everywhere():
    """Numbers read without phonenumbers.parse (a quarter of its time) come out as normalize_msisdn has them,
    for example numbers of every region, with a national prefix or a digit too many, and random digits."""
    import random

    import phonenumbers

    from scfm.domain.values import normalize_msisdn

    def slow(text):
        try:
            return normalize_msisdn(text)
        except ValidationFailed:
            return None

    def quick(text):
        try:
            return ci.normalize_import_msisdn(text, None)
        except ValidationFailed:
            return None

    rng = random.Random(13)
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            code = str(example.country_code)
            national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)[1 + len(code):]
            variants = ["+" + code + national, code + national, "+" + code + "0" + national,
                        "+" + code + "1" + national, "+" + code + national + "5"]
            variants += ["+" + code + "".join(rng.choice("0123456789") for _ in national) for _ in range(3)]
            for text in variants:
                assert quick(text) == slow(text), text
