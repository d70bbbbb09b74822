"""Call flow logic: pluggable flows that answer a voice webhook with provider-neutral instructions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


@dataclass(frozen=True)
class Say:
    text: str
    voice: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class Play:
    url: str


@dataclass(frozen=True)
class Gather:
    num_digits: int
    action_url: str
    children: tuple[Any, ...] = ()
    timeout: int | None = None


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class Redirect:
    url: str


@dataclass(frozen=True)
class CallFlowRequest:
    phone_call_id: int
    msisdn: str | None  # None: a call created without a number, which the provider still reports on
    direction: str | None
    remote_status: str | None
    digits: str | None
    webhook_url: str
    metadata: dict[str, Any] = field(default_factory=dict)
    context_metadata: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallFlowResponse:
    instructions: tuple[Any, ...]
    metadata_updates: dict[str, Any] | None = None


@runtime_checkable
class CallFlowLogic(Protocol):
    name: str

    def respond(self, request: CallFlowRequest) -> CallFlowResponse: ...


APPLICATION = "CallFlowLogic::Application"
HELLO_WORLD = "CallFlowLogic::HelloWorld"
PLAY_MESSAGE = "CallFlowLogic::PlayMessage"
CAPOM_SHORT = "CallFlowLogic::AvfCapom::CapomShort"


class Application:
    name = APPLICATION
    MESSAGE = "Thanks for trying our documentation. Enjoy!"
    DEMO_MP3_URL = "https://demo.twilio.com/docs/classic.mp3"

    def respond(self, request: CallFlowRequest) -> CallFlowResponse:
        return CallFlowResponse((Say(self.MESSAGE), Play(self.DEMO_MP3_URL)))


class HelloWorld:
    name = HELLO_WORLD
    MESSAGE = "Hello World!"

    def respond(self, request: CallFlowRequest) -> CallFlowResponse:
        return CallFlowResponse((Say(self.MESSAGE),))


class PlayMessage:
    name = PLAY_MESSAGE
    METADATA_KEY = "message_url"
    NO_MESSAGE = "Sorry, there is no message for you right now. Goodbye."

    def respond(self, request: CallFlowRequest) -> CallFlowResponse:
        # context_metadata is already merged callout < participation < phone call,
        # so the most specific message_url wins.
        url = request.context_metadata.get(self.METADATA_KEY)
        if isinstance(url, str) and url.strip():
            return CallFlowResponse((Play(url.strip()),))
        return CallFlowResponse((Say(self.NO_MESSAGE),))


@dataclass(frozen=True)
class _Question:
    key: str
    prompt: str
    valid_digits: str


class CapomShort:
    name = CAPOM_SHORT
    METADATA_KEY = "capom"
    QUESTIONS = (
        _Question(
            "q1",
            "How satisfied are you with the service you received? "
            "Press 1 for satisfied, 2 for neutral, or 3 for not satisfied.",
            "123",
        ),
        _Question(
            "q2",
            "Was the information you received useful? Press 1 for yes or 2 for no.",
            "12",
        ),
        _Question(
            "q3",
            "Would you recommend this service to others? Press 1 for yes or 2 for no.",
            "12",
        ),
    )
    THANKS = "Thank you for taking part in this survey. Goodbye."
    GATHER_TIMEOUT = 10
    # The question asked rides in the URL the answer comes back to: each answer is a request of its own (the
    # webhook records a replayed request once, and "1" to q1 then "1" to q2 must be two), and a retried
    # answer to a question already answered is not taken for the next one.
    QUESTION_PARAMETER = "capom_question"

    def respond(self, request: CallFlowRequest) -> CallFlowResponse:
        answers = dict(request.metadata.get(self.METADATA_KEY) or {})
        question = self._next_question(answers)
        if question is None:
            return self._finish(None)

        asked = dict(parse_qsl(urlsplit(request.webhook_url).query)).get(self.QUESTION_PARAMETER)
        digits = (request.digits or "").strip()
        if asked not in (None, question.key) or len(digits) != 1 or digits not in question.valid_digits:
            return self._ask(question, request.webhook_url)

        answers[question.key] = digits
        updates = {self.METADATA_KEY: {question.key: digits}}
        following = self._next_question(answers)
        if following is None:
            return self._finish(updates)
        return self._ask(following, request.webhook_url, updates)

    def _next_question(self, answers: Mapping[str, Any]) -> _Question | None:
        return next((q for q in self.QUESTIONS if q.key not in answers), None)

    def _ask(self, question: _Question, webhook_url: str, updates: dict[str, Any] | None = None) -> CallFlowResponse:
        parts = urlsplit(webhook_url)
        query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
                 if key != self.QUESTION_PARAMETER] + [(self.QUESTION_PARAMETER, question.key)]
        url = urlunsplit(parts._replace(query=urlencode(query)))
        gather = Gather(
            num_digits=1,
            action_url=url,
            children=(Say(question.prompt),),
            timeout=self.GATHER_TIMEOUT,
        )
        # Without input the provider falls through past <Gather>; redirecting
        # back without Digits makes the same question be asked again.
        return CallFlowResponse((gather, Redirect(url)), updates)

    def _finish(self, updates: dict[str, Any] | None) -> CallFlowResponse:
        return CallFlowResponse((Say(self.THANKS), Hangup()), updates)


BUILT_INS: dict[str, type] = {
    cls.name: cls for cls in (Application, HelloWorld, PlayMessage, CapomShort)
}


class CallFlowLogicNotRegistered(LookupError):
    pass


class CallFlowRegistry:
    """Application is always registered; every other flow, built-in or third-party
    (``extra``), is registered only when its name appears in ``registered``."""

    def __init__(
        self,
        registered: Iterable[str] = (),
        default: str | None = None,
        extra: Mapping[str, type | object] | None = None,
    ) -> None:
        extra = dict(extra or {})
        clashes = sorted(set(extra) & set(BUILT_INS))
        if clashes:
            raise ValueError(f"third-party call flow logic clashes with built-in name(s): {', '.join(clashes)}")
        for flow_name, flow in extra.items():
            if not callable(getattr(flow, "respond", None)):
                raise ValueError(f"call flow logic {flow_name!r} does not define respond(request)")

        available = {**BUILT_INS, **extra}
        self._flows: dict[str, type | object] = {APPLICATION: Application}
        for raw in registered:
            flow_name = raw.strip()
            if not flow_name:
                continue
            if flow_name not in available:
                known = ", ".join(sorted(available))
                raise ValueError(f"unknown call flow logic {flow_name!r} in registered list (known: {known})")
            self._flows[flow_name] = available[flow_name]

        default = (default or "").strip() or APPLICATION
        if default not in self._flows:
            raise ValueError(
                f"default call flow logic {default!r} is not registered "
                f"(registered: {', '.join(self._flows)})"
            )
        self._default = default

    @property
    def default_name(self) -> str:
        return self._default

    def names(self) -> list[str]:
        return list(self._flows)

    def is_registered(self, name: str | None) -> bool:
        return name in self._flows

    def get(self, name: str | None = None) -> CallFlowLogic:
        flow_name = self._default if name is None else name
        try:
            flow = self._flows[flow_name]
        except KeyError:
            raise CallFlowLogicNotRegistered(f"call flow logic {flow_name!r} is not registered") from None
        built: CallFlowLogic = flow() if isinstance(flow, type) else flow  # type: ignore[assignment]
        return built
