"""The dashboard's pages: the API's services, in the signed-in account's scope, rendered as HTML."""
from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for
from babel.dates import get_day_names
from flask_babel import format_percent, format_timedelta, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from marshmallow import ValidationError as MarshmallowValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from scfm.adapters.postgres.repositories import EXACT_TOTAL_UP_TO
from scfm.domain import batch_operation as bo
from scfm.domain.errors import NotFound, ValidationFailed
from scfm.domain.call_plan import DAYS, RETRYABLE_OUTCOMES
from scfm.domain.filters import PHONE_CALL_STATUSES
from scfm.domain.model import stored
from scfm.domain.state_machines import (
    CALLOUT_TRANSITIONS, BatchOperationStatus, CalloutStatus, ContactImportStatus, PhoneCallStatus,
)
from scfm.domain.values import normalize_msisdn
from scfm.entrypoints.api.accounts import AccountArgs
from scfm.entrypoints.api.exports import csv_response
from scfm.entrypoints.api.http import BadRequest, call_flows, check_text, deps, flatten_errors, uow
from scfm.entrypoints.dashboard import charts, plans, reads
from scfm.services import accounts as account_services
from scfm.services import batch_operations as batch_services
from scfm.services import callouts as callout_services
from scfm.services import contact_imports as import_services
from scfm.services import contacts as contact_services
from scfm.services import exports as export_services
from scfm.services import phone_calls as call_services
from scfm.services import remote_events as event_services
from scfm.services import statistics as statistics_services
from scfm.services.common import MAX_PER_PAGE, Page, PageRequest

blp = Blueprint("dashboard", __name__, url_prefix="", template_folder="templates", static_folder="static",
                static_url_path="/assets")

PER_PAGE = 25
LIVE_MINUTES = 30  # the minutes a callout's charts cover
MAX_PAGE = 400_000  # 10,000,000 rows at 25 a page: deeper pages are found by filtering, not by paging
METADATA_PAIRS = 3  # the rows of key = value a metadata filter form offers
PUBLIC_ENDPOINTS = {"dashboard.sign_in", "dashboard.static"}
UPLOAD_ENDPOINT = "dashboard.import_contacts"
CALLOUT_STATUSES = [status.value for status in CalloutStatus]
CALL_STATUSES = [status.value for status in PhoneCallStatus]
PROVIDER_FIELDS = ("platform_provider_name", "twilio_account_sid", "somleng_account_sid", "somleng_api_host",
                   "somleng_api_base_url")
SECRET_FIELDS = ("twilio_auth_token", "somleng_auth_token")

# What the pages call each status (the catalogue's words; the values stay those of the API).
C, B, P = CalloutStatus, BatchOperationStatus, PhoneCallStatus
STATUS_LABELS = {
    C.INITIALIZED.value: lazy_gettext("initialized"), C.RUNNING.value: lazy_gettext("running"),
    C.PAUSED.value: lazy_gettext("paused"), C.STOPPED.value: lazy_gettext("stopped"),
    B.PREVIEW.value: lazy_gettext("preview"), B.QUEUED.value: lazy_gettext("queued"),
    B.FINISHED.value: lazy_gettext("finished"), ContactImportStatus.FAILED.value: lazy_gettext("failed"),
    P.CREATED.value: lazy_gettext("created"), P.REMOTELY_QUEUED.value: lazy_gettext("at the provider"),
    P.REMOTE_FETCH_QUEUED.value: lazy_gettext("status asked"), P.IN_PROGRESS.value: lazy_gettext("in progress"),
    P.ERRORED.value: lazy_gettext("errored"), P.BUSY.value: lazy_gettext("busy"),
    P.NOT_ANSWERED.value: lazy_gettext("not answered"), P.CANCELED.value: lazy_gettext("canceled"),
    P.COMPLETED.value: lazy_gettext("completed"), P.EXPIRED.value: lazy_gettext("expired"),
    # a participation's state (the statistics')
    statistics_services.TO_CALL: lazy_gettext("to call"),
    statistics_services.WAITING_FOR_WINDOW: lazy_gettext("waiting for its hours"),
    statistics_services.IN_FLIGHT: lazy_gettext("on the line"), statistics_services.DONE: lazy_gettext("done"),
}
EVENT_LABELS = {"start": lazy_gettext("Start"), "pause": lazy_gettext("Pause"), "resume": lazy_gettext("Resume"),
                "stop": lazy_gettext("Stop")}
EVENT_CONFIRMATIONS = {
    "start": lazy_gettext("Start this callout? Its queued calls will be dialed."),
    "pause": lazy_gettext("Pause this callout? Its queued calls will wait."),
    "resume": lazy_gettext("Resume this callout? Its queued calls will be dialed again."),
    "stop": lazy_gettext("Stop this callout? Its queued calls will be held."),
}
OPERATION_LABELS = {
    bo.CALLOUT_POPULATION: lazy_gettext("Add contacts"), bo.PHONE_CALL_CREATE: lazy_gettext("Create calls"),
    bo.PHONE_CALL_QUEUE: lazy_gettext("Queue calls"), bo.PHONE_CALL_QUEUE_REMOTE_FETCH: lazy_gettext("Fetch statuses"),
}


def status_label(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))


blp.add_app_template_global(status_label)


@blp.app_context_processor
def labels() -> dict[str, Any]:
    return {"event_labels": EVENT_LABELS, "event_confirmations": EVENT_CONFIRMATIONS,
            "operation_labels": OPERATION_LABELS}


# ---------------------------------------------------------------- the session: sign-in, CSRF

def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


blp.add_app_template_global(csrf_token)


@blp.before_request
def check_session():
    """Every form carries the session's CSRF token; every page but sign-in needs a token that still works."""
    if request.method == "POST":
        sent = request.form.get("csrf_token", "")
        if not hmac.compare_digest(sent.encode(), session.get("csrf", "").encode()) or not sent:
            return render_template("error.html", title=_("This form has expired"),
                                   errors=[_("Reload the page and try again.")]), 400
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    signed_in = _signed_in()
    if signed_in is None:
        session.pop("session_key", None)
        return redirect(url_for("dashboard.sign_in", next=request.full_path.rstrip("?") if request.method == "GET" else None))
    g.account, g.access_token_id = signed_in
    return None


@blp.errorhandler(NotFound)
def not_found(_error):
    return render_template("error.html", title=_("Not found"), errors=[]), 404


@blp.errorhandler(BadRequest)
def malformed(error):
    return render_template("error.html", title=_("That was refused"), errors=[str(error)]), 400


@blp.errorhandler(ValidationFailed)
def refused(error):
    messages = [f"{name}: {', '.join(texts)}" if name != "base" else ", ".join(texts)
                for name, texts in error.errors.items()]
    return render_template("error.html", title=_("That was refused"), errors=messages), 422


BACKING_SERVICE_TITLES = {
    400: lazy_gettext("That was refused"),
    503: lazy_gettext("The service is unavailable"),
}
BACKING_SERVICE_MESSAGES = {
    400: lazy_gettext("A value is out of range or cannot be stored."),
    503: lazy_gettext("The database or the queue does not answer. Try again in a moment."),
}


@blp.errorhandler(DBAPIError)
@blp.errorhandler(RedisError)
def backing_service(error):
    """The API's answer to a database or Redis error (503 when one is down, 400 for a value it cannot store,
    logged there), as a page: its status, and HTML instead of JSON."""
    handlers = current_app.error_handler_spec[None][None]
    handler = next(handlers[kind] for kind in type(error).__mro__ if kind in handlers)
    answer = handler(error)
    status = answer[1] if isinstance(answer, tuple) else answer.status_code
    title = BACKING_SERVICE_TITLES.get(status, _("Something went wrong"))
    message = BACKING_SERVICE_MESSAGES.get(status, _("Try again in a moment."))
    return render_template("error.html", title=title, errors=[message]), status


def _signed_in():
    """The account of the session and the id of its token. The session is kept on the server: the cookie holds a
    random key (never the token, nor anything the API or an older release takes), and signing out, or deleting
    the token, ends the session for every copy of the cookie."""
    key = session.get("session_key")
    if not isinstance(key, str) or not key:
        return None
    return account_services.dashboard_session(deps().uow(None), key, _session_seconds())


def _session_seconds() -> float:
    return current_app.permanent_session_lifetime.total_seconds()


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never //host or a scheme): sign-in must not send anyone elsewhere. No blank or
    control character either: browsers drop tabs and line breaks from a URL (`/<TAB>/evil.example` is
    `//evil.example`), and a line break cannot be a header's."""
    if (target and target.startswith("/") and not target.startswith("//") and "\\" not in target
            and all(ch.isprintable() and not ch.isspace() for ch in target)):
        return target
    return url_for("dashboard.callouts")


@blp.route("/sign_in", methods=["GET", "POST"])
def sign_in():
    error = None
    if request.method == "POST":
        token = request.form.get("access_token", "").strip()
        key = account_services.start_dashboard_session(deps().uow(None), token, _session_seconds())
        if key is not None:
            _end_session()  # signing in over another session ends it
            session["session_key"] = key
            session["csrf"] = secrets.token_urlsafe(32)
            return redirect(_safe_next(request.args.get("next")))
        error = _("That access token is not valid.")
    return render_template("sign_in.html", error=error), 401 if error else 200


def _end_session() -> None:
    """The session ends on the server, for every copy of its cookie, and the cookie is emptied."""
    key = session.get("session_key")
    if isinstance(key, str) and key:
        account_services.end_dashboard_session(deps().uow(None), key)
    session.clear()


@blp.route("/sign_out", methods=["POST"])
def sign_out():
    _end_session()
    return redirect(url_for("dashboard.sign_in"))


# ---------------------------------------------------------------- helpers

def _paging() -> PageRequest:
    try:
        page = int(request.args.get("page", 1))
    except ValueError:
        page = 1
    return PageRequest(page=min(max(page, 1), MAX_PAGE), per_page=PER_PAGE)


def _metadata_pairs(source) -> dict[str, str]:
    """`key`/`value` rows of a form as a metadata filter ({"district": "Kampot"}); blank rows are left out."""
    keys, values = source.getlist("key"), source.getlist("value")
    return {key.strip(): value for key, value in zip(keys, values) if key.strip()}


def _pairs_for_form(pairs: dict[str, str]) -> list[tuple[str, str]]:
    rows = list(pairs.items())[:METADATA_PAIRS]
    return rows + [("", "")] * (METADATA_PAIRS - len(rows))


def _contact_query() -> tuple[dict[str, Any], dict[str, str], str]:
    msisdn = request.args.get("msisdn", "").strip()
    pairs = _metadata_pairs(request.args)
    q: dict[str, Any] = {}
    if msisdn:
        q["msisdn"] = msisdn
    if pairs:
        q["metadata"] = pairs
    return q, pairs, msisdn


def _number_problem(msisdn: str) -> str | None:
    """Why a searched phone number cannot match any contact (the API's 422), said on the page that searched."""
    if not msisdn:
        return None
    try:
        normalize_msisdn(msisdn)
    except ValidationFailed:
        return _("%(number)s is not a phone number: write it with its country code, e.g. +85512345678.",
                 number=msisdn)
    return None


def _nothing() -> Page:
    return Page(items=[], total=0, page=1, per_page=PER_PAGE)


def _status_query(allowed) -> tuple[dict[str, Any], str]:
    status = request.args.get("status", "")
    return ({"status": status} if status in allowed else {}), (status if status in allowed else "")


# ---------------------------------------------------------------- callouts

@blp.route("/")
def home():
    return redirect(url_for("dashboard.callouts"))


@blp.route("/callouts")
def callouts():
    q, status = _status_query(CALLOUT_STATUSES)
    page = callout_services.list_callouts(uow(), q, _paging())
    return render_template("callouts.html", page=page, summaries=_summaries(page.items), status=status,
                           statuses=CALLOUT_STATUSES, call_flow_names=_call_flow_names(), events=_events)


@blp.route("/callouts", methods=["POST"])
def create_callout():
    params: dict[str, Any] = {"call_flow_logic": request.form.get("call_flow_logic") or None}
    name = request.form.get("name", "").strip()
    if name:
        params["metadata"] = {"name": name}
    callout = callout_services.create_callout(uow(), call_flows(), uow().account_id, params)
    return redirect(url_for("dashboard.callout", callout_id=callout.id))


def _call_flow_names() -> list[str]:
    return sorted(call_flows().names())


def _events(status: str) -> list[str]:
    """The events a callout in `status` may take, in the order of CALLOUT_TRANSITIONS."""
    return [event for event, (sources, _target) in CALLOUT_TRANSITIONS.items() if CalloutStatus(status) in sources]


def _summaries(callouts) -> dict[int, dict[str, Any]]:
    """Each callout's progress (done of all), outcomes and time left, from the statistics' counters of the whole
    page read at once (the API's callout statistics, without their durations and minutes)."""
    if not callouts:
        return {}
    unit = uow()
    with unit:
        account = unit.accounts.get(unit.account_id)
        rows = unit.statistics.state_counts([callout.id for callout in callouts])
        now = unit.statistics.now()
    counts: dict[int, dict[str, statistics_services.StateCount]] = {callout.id: {} for callout in callouts}
    for callout_id, raw, participations, calls, attempts in rows:
        counts[callout_id][raw] = statistics_services.StateCount(participations, calls, attempts)
    summaries = {}
    for callout in callouts:
        work = statistics_services.CalloutWork(callout, bool(statistics_services.effective_plan(account, callout)),
                                               counts[callout.id])
        states = dict.fromkeys(statistics_services.STATES, 0)
        outcomes: dict[str, int] = {}
        for state, outcome, count in work.states():
            states[state] += count.participations
            if outcome is not None and count.participations:
                outcomes[outcome] = outcomes.get(outcome, 0) + count.participations
        estimate = statistics_services.estimate([work], account, deps().settings.provider, now)
        summaries[callout.id] = {
            "participations": sum(states.values()), "done": states[statistics_services.DONE],
            "outcomes": _in_order(outcomes), "finished": statistics_services.is_finished(states),
            "time_left": _time_left(estimate["seconds_left"]),
        }
    return summaries


OUTCOME_ORDER = [PhoneCallStatus.COMPLETED.value, *RETRYABLE_OUTCOMES]


def _in_order(outcomes: dict[str, int]) -> list[tuple[str, int]]:
    return [(outcome, outcomes[outcome]) for outcome in OUTCOME_ORDER if outcomes.get(outcome)]


def _time_left(seconds: float | None) -> str | None:
    """"3 minutes" (in the page's language); None when nothing dials on its own, or nothing is left to dial."""
    if not seconds:
        return None
    return format_timedelta(timedelta(seconds=seconds), threshold=1.1, add_direction=False)


def _live(callout) -> dict[str, Any]:
    """The callout's statistics as its page shows them, and whether the page should ask again."""
    figures = statistics_services.callout_statistics(uow(), callout.id, deps().settings.provider, LIVE_MINUTES)
    minutes = [row["minute"] for row in figures.calls_per_minute]
    calls = charts.stacked(minutes, {row["minute"]: {"calls": row["calls"]} for row in figures.calls_per_minute},
                           ["calls"])
    ended = None
    if figures.participations <= EXACT_TOTAL_UP_TO:
        ended = charts.stacked(minutes, reads.ended_calls_per_minute(
            deps().engine, g.account.id, callout.id, list(statistics_services.OUTCOMES), minutes[0]), OUTCOME_ORDER)
    states = figures.states
    moving = sum(states[state] for state in (statistics_services.QUEUED_STATE, statistics_services.IN_FLIGHT,
                                             statistics_services.WAITING_FOR_WINDOW))
    return {
        "figures": figures, "outcomes": _in_order(figures.outcomes),
        "share_done": format_percent(states[statistics_services.DONE] / figures.participations
                                     if figures.participations else 0),
        "time_left": _time_left(figures.estimate.get("seconds_left")), "calls_chart": calls, "ended_chart": ended,
        "answer_rate": None if figures.answer_rate is None else format_percent(figures.answer_rate),
        "refresh": not figures.finished and (callout.status == CalloutStatus.RUNNING.value or moving > 0),
        "part_labels": {"calls": _("calls"), **{outcome: status_label(outcome) for outcome in OUTCOME_ORDER}},
        "exact_up_to": EXACT_TOTAL_UP_TO, "states": statistics_services.STATES,
    }


@blp.route("/callouts/<int:callout_id>")
def callout(callout_id: int):
    item = callout_services.get_callout(uow(), callout_id)
    showing = "calls" if request.args.get("show") == "calls" else "participations"
    status, number_problem = "", None
    if showing == "calls":
        q, status = _status_query(PHONE_CALL_STATUSES)
        page = call_services.list_phone_calls(uow(), q, _paging(), callout_id=callout_id)
    else:
        msisdn = request.args.get("msisdn", "").strip()
        number_problem = _number_problem(msisdn)
        page = _nothing() if number_problem else callout_services.list_participations(
            uow(), {"msisdn": msisdn} if msisdn else None, _paging(), callout_id=callout_id)
    operations = batch_services.list_batch_operations(uow(), None, PageRequest(1, MAX_PER_PAGE),
                                                      callout_id=callout_id)
    effective = statistics_services.effective_plan(g.account, item)
    return render_template("callout.html", callout=item, live=_live(item), events=_events(item.status),
                           showing=showing, page=page, status=status, statuses=CALL_STATUSES, operations=operations,
                           pairs=_pairs_for_form({}), msisdn=request.args.get("msisdn", ""),
                           number_problem=number_problem, plan=plans.form_values(item.call_plan),
                           account_plan=g.account.call_plan, plan_calls=bool(effective.get("remote_request_params")),
                           retry_outcomes=RETRYABLE_OUTCOMES, days=_day_names()), \
        422 if number_problem else 200


@blp.route("/callouts/<int:callout_id>/live")
def callout_live(callout_id: int):
    """The callout page's live statistics alone: what its script asks for every few seconds."""
    item = callout_services.get_callout(uow(), callout_id)
    return render_template("_live.html", callout=item, live=_live(item))


def _day_names() -> list[tuple[str, str]]:
    names = get_day_names("abbreviated", locale=get_locale())
    return [(day, names[index]) for index, day in enumerate(DAYS)]


@blp.route("/callouts/<int:callout_id>/call_plan", methods=["POST"])
def save_call_plan(callout_id: int):
    """The callout's own call plan (the account's applies where it says nothing); an empty form clears it."""
    callout_services.update_callout(uow(), call_flows(), callout_id, {"call_plan": plans.from_form(request.form)},
                                    deps().settings.max_attempts)
    return redirect(url_for("dashboard.callout", callout_id=callout_id) + "#call-plan")


@blp.route("/callouts/<int:callout_id>/results.csv")
def callout_results(callout_id: int):
    callout_services.get_callout(uow(), callout_id)
    rows = statistics_services.results(deps().uow, g.account.id, callout_id)
    return csv_response(rows, f"callout-{callout_id}-results.csv")


@blp.route("/callouts/<int:callout_id>/events", methods=["POST"])
def callout_event(callout_id: int):
    event = request.form.get("event", "")
    if event not in CALLOUT_TRANSITIONS:
        raise ValidationFailed.on("event", "is not included in the list")
    callout_services.fire_callout_event(uow(), deps().jobs, callout_id, event)
    return redirect(url_for("dashboard.callout", callout_id=callout_id))


@blp.route("/callouts/<int:callout_id>/populations", methods=["POST"])
def add_contacts(callout_id: int):
    """A CalloutPopulation in preview over the contacts the filter matches: nothing is added until confirmed."""
    pairs = _metadata_pairs(request.form)
    filters: dict[str, Any] = {"metadata": pairs} if pairs else {}
    operation = batch_services.create_batch_operation(
        uow(), uow().account_id, {"type": bo.CALLOUT_POPULATION, "parameters": {"contact_filter_params": filters}},
        callout_id=callout_id)
    return redirect(url_for("dashboard.batch_operation", operation_id=operation.id))


@blp.route("/callouts/<int:callout_id>/phone_call_creates", methods=["POST"])
def create_calls(callout_id: int):
    """A PhoneCallCreate in preview: a call for each participation of this callout that has none."""
    remote = {"url": request.form.get("url", "").strip(), "method": request.form.get("method") or "POST"}
    caller = request.form.get("from", "").strip()
    if caller:
        remote["from"] = caller
    if not remote["url"]:
        raise ValidationFailed.on(_("Call flow URL"), "can't be blank")
    parameters = {"remote_request_params": remote,
                  "callout_participation_filter_params": {"callout_id": callout_id, "has_phone_calls": "false"}}
    callout_services.get_callout(uow(), callout_id)
    operation = batch_services.create_batch_operation(
        uow(), uow().account_id, {"type": bo.PHONE_CALL_CREATE, "parameters": parameters}, callout_id=callout_id)
    return redirect(url_for("dashboard.batch_operation", operation_id=operation.id))


@blp.route("/callouts/<int:callout_id>/phone_call_queues", methods=["POST"])
def queue_calls(callout_id: int):
    """A PhoneCallQueue in preview: this callout's calls still in `created` go to the dialer once confirmed."""
    parameters = {"phone_call_filter_params": {"status": PhoneCallStatus.CREATED.value},
                  "callout_participation_filter_params": {"callout_id": callout_id}}
    callout_services.get_callout(uow(), callout_id)
    operation = batch_services.create_batch_operation(
        uow(), uow().account_id, {"type": bo.PHONE_CALL_QUEUE, "parameters": parameters}, callout_id=callout_id)
    return redirect(url_for("dashboard.batch_operation", operation_id=operation.id))


# ---------------------------------------------------------------- batch operations: preview, confirm

@blp.route("/batch_operations/<int:operation_id>")
def batch_operation(operation_id: int):
    operation = batch_services.get_batch_operation(uow(), operation_id)
    preview = results = None
    kind = sorted(bo.PREVIEWS[stored(operation.type)])[0]
    if operation.status == "preview":
        preview = batch_services.preview(uow(), operation_id, kind, _paging())
    else:
        kind = sorted(bo.RESULTS[stored(operation.type)])[0]
        results = batch_services.results(uow(), operation_id, kind, _paging())
    return render_template("batch_operation.html", operation=operation, preview=preview, results=results,
                           kind=kind, busy=operation.status in ("queued", "running"))


@blp.route("/batch_operations/<int:operation_id>/queue", methods=["POST"])
def queue_batch_operation(operation_id: int):
    batch_services.fire_batch_operation_event(uow(), deps().jobs, operation_id, "queue")
    return redirect(url_for("dashboard.batch_operation", operation_id=operation_id))


@blp.route("/batch_operations/<int:operation_id>/delete", methods=["POST"])
def delete_batch_operation(operation_id: int):
    operation = batch_services.get_batch_operation(uow(), operation_id)
    batch_services.delete_batch_operation(uow(), operation_id)
    if operation.callout_id:
        return redirect(url_for("dashboard.callout", callout_id=operation.callout_id))
    return redirect(url_for("dashboard.callouts"))


# ---------------------------------------------------------------- contacts and their imports

@blp.route("/contacts")
def contacts():
    q, pairs, msisdn = _contact_query()
    number_problem = _number_problem(msisdn)
    page = _nothing() if number_problem else contact_services.list_contacts(uow(), q or None, _paging())
    imports = import_services.list_imports(uow(), None, PageRequest(1, 5))
    return render_template("contacts.html", page=page, pairs=_pairs_for_form(pairs), msisdn=msisdn,
                           imports=imports, number_problem=number_problem), 422 if number_problem else 200


@blp.route("/contacts.csv")
def export_contacts():
    q, _pairs, _msisdn = _contact_query()
    rows = export_services.export(deps().uow, g.account.id, "contacts", q or None, None)
    return csv_response(rows, "contacts.csv")


@blp.route("/contacts/<int:contact_id>")
def contact(contact_id: int):
    item = contact_services.get_contact(uow(), contact_id)
    calls = call_services.list_phone_calls(uow(), None, _paging(), contact_id=contact_id)
    callouts_of = callout_services.list_callouts(uow(), None, PageRequest(1, PER_PAGE), contact_id=contact_id)
    return render_template("contact.html", contact=item, calls=calls, callouts=callouts_of)


@blp.route("/contact_imports", methods=["POST"])
def import_contacts():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ValidationFailed.on(_("File"), "can't be blank")
    options = check_text({key: request.form[key] for key in ("msisdn_column", "default_country")
                          if request.form.get(key)}, "the form")
    contact_import = import_services.create_import(uow(), deps().jobs, g.account.id, options, upload.stream,
                                                   upload.filename)
    return redirect(url_for("dashboard.contact_import", contact_import_id=contact_import.id))


@blp.route("/contact_imports/<int:contact_import_id>")
def contact_import(contact_import_id: int):
    item = import_services.get_import(uow(), contact_import_id)
    return render_template("contact_import.html", contact_import=item)


@blp.route("/contact_imports/<int:contact_import_id>/errors.csv")
def contact_import_errors(contact_import_id: int):
    rows = import_services.import_errors(deps().uow, g.account.id, contact_import_id)
    return csv_response(rows, f"contact-import-{contact_import_id}-errors.csv")


# ---------------------------------------------------------------- phone calls

@blp.route("/phone_calls")
def phone_calls():
    q, status = _status_query(PHONE_CALL_STATUSES)
    page = call_services.list_phone_calls(uow(), q or None, _paging())
    return render_template("phone_calls.html", page=page, status=status, statuses=CALL_STATUSES)


@blp.route("/phone_calls/<int:phone_call_id>")
def phone_call(phone_call_id: int):
    call = call_services.get_phone_call(uow(), phone_call_id)
    events = event_services.list_events(uow(), None, _paging(), phone_call_id=phone_call_id)
    return render_template("phone_call.html", call=call, events=events)


# ---------------------------------------------------------------- the account and its access tokens

def _account_page(new_token=None, status=200):
    account = account_services.get_account(uow(), g.account.id)
    tokens = account_services.list_access_tokens(uow(), None, _paging())
    return render_template("account.html", account=account, tokens=tokens, new_token=new_token,
                           current_token_id=_current_token_id(tokens.items)), status


def _current_token_id(tokens) -> int | None:
    return next((token.id for token in tokens if token.id == g.access_token_id), None)


@blp.route("/account")
def account():
    return _account_page()


def _account_params(params: dict[str, Any]) -> dict[str, Any]:
    """The form's fields as PATCH /api/account takes them: the same lengths, ranges and choices."""
    try:
        return AccountArgs().load(params, partial=True)
    except MarshmallowValidationError as error:
        raise ValidationFailed(flatten_errors(error.messages)) from None


@blp.route("/account/rates", methods=["POST"])
def update_rates():
    params = _account_params({name: request.form.get(name, "").strip() or None
                              for name in ("calls_per_second", "max_calls_in_flight")})
    account_services.update_account(uow(), g.account.id, params, allow_permissions=False,
                                    provider_settings=deps().settings.provider)
    return redirect(url_for("dashboard.account"))


@blp.route("/account/provider", methods=["POST"])
def update_provider():
    """Secrets are write-only: a blank field keeps the stored one."""
    params: dict[str, Any] = {name: request.form.get(name, "").strip() or None for name in PROVIDER_FIELDS}
    params.update({name: request.form[name].strip() for name in SECRET_FIELDS if request.form.get(name, "").strip()})
    account_services.update_account(uow(), g.account.id, _account_params(params), allow_permissions=False,
                                    provider_settings=deps().settings.provider)
    return redirect(url_for("dashboard.account"))


@blp.route("/access_tokens", methods=["POST"])
def create_access_token():
    """The new token is shown once, in this answer (not kept in the session or a URL)."""
    token = account_services.create_access_token(uow(), g.account, {})
    return _account_page(new_token=token, status=201)


@blp.route("/access_tokens/<int:token_id>/delete", methods=["POST"])
def delete_access_token(token_id: int):
    account_services.delete_access_token(uow(), token_id)
    return redirect(url_for("dashboard.account"))
