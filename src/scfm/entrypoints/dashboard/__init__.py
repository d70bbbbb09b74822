"""The dashboard: server-rendered pages at / for the people who run callouts, on the API's services and scope.

Sign-in takes an access token and keeps it in the signed session cookie; every request checks it again (a
deleted token signs the browser out). Forms carry a CSRF token of the session; every page has a strict
Content-Security-Policy (our own script and style files only).
"""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from babel import Locale
from flask import Flask, request
from flask_babel import Babel, get_locale

from scfm.config import Settings
from scfm.entrypoints.dashboard import views

log = logging.getLogger(__name__)

LANGUAGES = ("en",)
TRANSLATIONS = Path(__file__).parent / "translations"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECRET_KEY_FILE = "secret_key"


def secret_key(settings: Settings) -> str:
    """SCFM_SECRET_KEY, else the key kept in the data folder (made on first use, shared by every process that
    uses the folder); a folder we cannot write gives a key of this process only (sessions end with it)."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / SECRET_KEY_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(48) + "\n")
        key = path.read_text().strip()
        if key:
            return key
    except OSError as error:
        log.warning("no SCFM_SECRET_KEY and %s cannot be kept (%s): dashboard sessions last as long as this "
                    "process", path, error.strerror)
    return secrets.token_urlsafe(48)


def text_direction() -> str:
    return "rtl" if Locale.parse(str(get_locale())).character_order == "right-to-left" else "ltr"


def language_tag() -> str:
    """The page's language as HTML wants it: pt-BR, not Babel's pt_BR."""
    return str(get_locale()).replace("_", "-")


def register(app: Flask, settings: Settings) -> None:
    app.secret_key = secret_key(settings)
    app.config.update(
        SESSION_COOKIE_NAME="scfm_session", SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=(settings.public_url or "").startswith("https://"),
        BABEL_TRANSLATION_DIRECTORIES=str(TRANSLATIONS), BABEL_DEFAULT_LOCALE="en",
    )
    Babel(app, locale_selector=lambda: request.accept_languages.best_match(LANGUAGES) or "en")
    app.jinja_env.globals.update(text_direction=text_direction, language_tag=language_tag)
    app.register_blueprint(views.blp)

    @app.after_request
    def secure_headers(response):
        if not request.path.startswith("/api/"):
            response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "same-origin"
            response.headers["X-Frame-Options"] = "DENY"  # frame-ancestors, for browsers without CSP 2
            if response.mimetype == "text/html":
                response.headers["Cache-Control"] = "no-store"
        return response
