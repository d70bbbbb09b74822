"""The dashboard's strings all go through the message catalogue, and the pages turn right to left."""
from __future__ import annotations

from pathlib import Path

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from flask import Flask, render_template_string
from flask_babel import force_locale

from scfm.config import Settings
from scfm.entrypoints import dashboard

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "src/scfm/entrypoints/dashboard/translations"


def _ids(catalogue_path: Path) -> set[str]:
    with catalogue_path.open("rb") as file:
        return {message.id for message in read_po(file) if message.id}


def test_the_message_template_holds_every_string_of_the_sources_and_english_has_them_all():
    with (ROOT / "babel.cfg").open() as file:
        method_map, options_map = parse_mapping_cfg(file, str(ROOT / "babel.cfg"))
    keywords = {**DEFAULT_KEYWORDS, "lazy_gettext": None}
    found = {message if isinstance(message, str) else message[0]
             for _file, _line, message, _comments, _context in extract_from_dir(
                 str(ROOT), method_map, options_map, keywords=keywords)}
    template = _ids(TRANSLATIONS / "messages.pot")
    assert found == template, "run the pybabel extract of babel.cfg, then pybabel update"
    assert _ids(TRANSLATIONS / "en/LC_MESSAGES/messages.po") == template


def test_the_page_direction_follows_the_locale():
    app = Flask(__name__)
    dashboard.register(app, Settings(secret_key="test"))
    with app.test_request_context("/"):
        page = '<html lang="{{ language_tag() }}" dir="{{ text_direction() }}">{{ 1234567|numberformat }}'
        assert render_template_string(page) == '<html lang="en" dir="ltr">1,234,567'
        with force_locale("ar_EG"):
            assert render_template_string(page).startswith('<html lang="ar-EG" dir="rtl">')
        with force_locale("km"):
            assert render_template_string(page).startswith('<html lang="km" dir="ltr">')


def test_every_status_and_state_has_its_words():
    from scfm.domain import state_machines as sm
    from scfm.entrypoints.dashboard.views import STATUS_LABELS
    from scfm.services.statistics import STATES

    statuses = {status.value for enum in (sm.CalloutStatus, sm.BatchOperationStatus, sm.PhoneCallStatus,
                                          sm.ContactImportStatus) for status in enum}
    assert statuses | set(STATES) <= set(STATUS_LABELS)
