"""A callout's statistics and results, the account's statistics, and whether a callout is finished."""
from __future__ import annotations

from flask import g
from marshmallow import Schema, fields, pre_dump, validate

from scfm.entrypoints.api.exports import _CSV, csv_response
from scfm.entrypoints.api.http import SECRET_LENGTH, ArgsSchema, Blueprint, Timestamp, bounded_string, deps, uow
from scfm.services import statistics as services

blp = Blueprint("statistics", __name__, url_prefix="/api", description="Callout statistics and results")


class CalloutFinished(Schema):
    """The callout's `finished`, read for a whole page of callouts at once."""

    finished = fields.Boolean(dump_only=True, metadata={
        "description": "Whether it has participations and every one is done (see its statistics)"})

    @pre_dump(pass_collection=True)
    def with_finished(self, data, many, **_kwargs):
        callouts = list(data) if many else [data]
        done = services.finished(uow(), callouts)
        shown = [{**{name: getattr(callout, name) for name in vars(callout) if not name.startswith("_")},
                  "finished": done[callout.id]} for callout in callouts]
        return shown if many else shown[0]


class StatisticsArgs(ArgsSchema):
    minutes = fields.Integer(load_default=services.DEFAULT_MINUTES,
                             validate=validate.Range(min=1, max=services.MAX_MINUTES),
                             metadata={"description": "How many minutes calls_per_minute covers (1 to 60)"})
    access_token = bounded_string(SECRET_LENGTH, load_only=True)


class StatesSchema(Schema):
    class Meta:
        ordered = True

    to_call = fields.Integer(metadata={"description": "No call in progress: none yet, one created but not queued, "
                                                      "or (with a call plan) one that ended and may be retried"})
    waiting_for_window = fields.Integer(metadata={"description": "Its call is queued until its window opens"})
    queued = fields.Integer(metadata={"description": "Its call waits in the dial queue, or is being dialed"})
    in_flight = fields.Integer(metadata={"description": "Its call is at the provider"})
    done = fields.Integer(metadata={"description": "It has its final outcome (see outcomes)"})


class DurationSchema(Schema):
    class Meta:
        ordered = True

    answered_calls = fields.Integer(metadata={"description": "Participations whose latest call was answered, "
                                                             "with a known duration"})
    median_seconds = fields.Float(allow_none=True)
    total_seconds = fields.Integer()


class MinuteSchema(Schema):
    class Meta:
        ordered = True

    minute = Timestamp()
    calls = fields.Integer(metadata={"description": "Calls that reached the provider in that minute"})


class EstimateSchema(Schema):
    class Meta:
        ordered = True

    calls_left = fields.Integer(metadata={"description": "Calls still to dial without another batch operation"})
    calls_per_second = fields.Float(metadata={"description": "The account's rate"})
    seconds_left = fields.Float(allow_none=True, metadata={
        "description": "null when nothing dials on its own (paused, stopped, a call plan not started) or the "
                       "window never opens"})
    finishes_at = Timestamp(allow_none=True)


class StatisticsSchema(Schema):
    class Meta:
        ordered = True

    participations = fields.Integer()
    states = fields.Nested(StatesSchema, metadata={"description": "Every participation in exactly one state"})
    outcomes = fields.Dict(keys=fields.String(), values=fields.Integer(),
                           metadata={"description": "The done participations by final outcome"})
    finished = fields.Boolean()
    calls = fields.Integer(metadata={"description": "Phone calls made for the participations"})
    attempts = fields.Integer(metadata={"description": "Calls that reached the provider"})
    answered = fields.Integer(metadata={"description": "Participations whose call was answered"})
    answer_rate = fields.Float(allow_none=True, metadata={
        "description": "answered / attempts that ended (null before any ended)"})
    duration = fields.Nested(DurationSchema)
    calls_per_minute = fields.List(fields.Nested(MinuteSchema), metadata={"description": "Oldest minute first"})
    estimate = fields.Nested(EstimateSchema)


@blp.route("/callouts/<int:callout_id>/statistics", methods=["GET"])
@blp.arguments(StatisticsArgs, location="query")
@blp.response(200, StatisticsSchema)
def callout_statistics(args, callout_id):
    """Where a callout stands: its participations by state and outcome, attempts, answer rate, durations,
    calls per minute and an estimate of when it finishes."""
    return services.callout_statistics(uow(), callout_id, deps().settings.provider, args["minutes"])


@blp.route("/account/statistics", methods=["GET"])
@blp.arguments(StatisticsArgs, location="query")
@blp.response(200, StatisticsSchema)
def account_statistics(args):
    """The same, for all the caller's callouts together."""
    return services.account_statistics(uow(), deps().settings.provider, args["minutes"])


class ResultsArgs(ArgsSchema):
    access_token = bounded_string(SECRET_LENGTH, load_only=True)


@blp.route("/callouts/<int:callout_id>/results.csv", methods=["GET"])
@blp.arguments(ResultsArgs, location="query")
@blp.doc(responses=_CSV)
def results(_args, callout_id):
    """One row per participation: its number, calls, attempts, last status, outcome, the duration of its latest
    answered call, its contact's metadata (metadata.*) and what call flow logic gathered on that call
    (call.metadata.*, e.g. call.metadata.capom.q1)."""
    rows = services.results(deps().uow, g.account.id, callout_id)
    return csv_response(rows, f"callout-{callout_id}-results.csv")
