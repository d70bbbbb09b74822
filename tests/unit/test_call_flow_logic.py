"""Behaviour of built-in call flow logic, its TwiML rendering and the call flow registry."""

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint

import pytest

from scfm.adapters import call_flow_plugins
from scfm.adapters.twiml import render
from scfm.domain.call_flow_logic import (
    APPLICATION,
    CAPOM_SHORT,
    HELLO_WORLD,
    PLAY_MESSAGE,
    CallFlowLogicNotRegistered,
    CallFlowRegistry,
    CallFlowRequest,
    CallFlowResponse,
    CapomShort,
    Gather,
    Hangup,
    Say,
)

WEBHOOK_URL = "https://scfm.example.com/api/remote_phone_call_events"


def make_request(digits=None, metadata=None, context_metadata=None):
    return CallFlowRequest(
        phone_call_id=1,
        msisdn="+85512345678",
        direction="outbound",
        remote_status="in-progress",
        digits=digits,
        webhook_url=WEBHOOK_URL,
        metadata=metadata or {},
        context_metadata=context_metadata or {},
        details={},
    )


def twiml_of(flow_name, request=None, registered=(HELLO_WORLD, PLAY_MESSAGE, CAPOM_SHORT)):
    response = CallFlowRegistry(registered=registered).get(flow_name).respond(request or make_request())
    root = ET.fromstring(render(response))
    assert root.tag == "Response"
    return root


def capom_step(digits=None, answers=None, url=WEBHOOK_URL):
    request = replace(make_request(digits=digits, metadata={"capom": answers or {}}), webhook_url=url)
    response = CapomShort().respond(request)
    return response, ET.fromstring(render(response))


def asked_question(root):
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("numDigits") == "1"
    question = CapomShort.QUESTIONS[[q.prompt for q in CapomShort.QUESTIONS].index(gather.find("Say").text)]
    assert gather.get("action") == f"{WEBHOOK_URL}?capom_question={question.key}"
    assert root.find("Redirect").text == gather.get("action")
    return gather.find("Say").text


def questions():
    return [q.prompt for q in CapomShort.QUESTIONS]


# Built-in flows


def test_application_thanks_the_caller_and_plays_the_demo_mp3():
    root = twiml_of(APPLICATION)

    assert [child.tag for child in root] == ["Say", "Play"]
    assert root.find("Say").text == "Thanks for trying our documentation. Enjoy!"
    assert root.find("Play").text == "https://demo.twilio.com/docs/classic.mp3"


def test_hello_world_says_hello_world():
    root = twiml_of(HELLO_WORLD)

    assert [child.tag for child in root] == ["Say"]
    assert root.find("Say").text.lower().startswith("hello world")


def test_play_message_plays_the_message_url_from_context_metadata():
    request = make_request(context_metadata={"message_url": "https://example.com/message.mp3"})

    root = twiml_of(PLAY_MESSAGE, request)

    assert [child.tag for child in root] == ["Play"]
    assert root.find("Play").text == "https://example.com/message.mp3"


def test_play_message_says_a_default_sentence_when_there_is_no_message_url():
    root = twiml_of(PLAY_MESSAGE, make_request(context_metadata={"other": "value"}))

    assert [child.tag for child in root] == ["Say"]
    assert root.find("Say").text


# CapomShort survey


def test_capom_short_asks_the_first_question_when_nothing_is_answered():
    response, root = capom_step()

    assert asked_question(root) == questions()[0]
    assert response.metadata_updates is None


def test_capom_short_walks_through_every_question_then_thanks_and_hangs_up():
    response, root = capom_step(digits="2")
    assert response.metadata_updates == {"capom": {"q1": "2"}}
    assert asked_question(root) == questions()[1]

    response, root = capom_step(digits="1", answers={"q1": "2"})
    assert response.metadata_updates == {"capom": {"q2": "1"}}
    assert asked_question(root) == questions()[2]

    response, root = capom_step(digits="2", answers={"q1": "2", "q2": "1"})
    assert response.metadata_updates == {"capom": {"q3": "2"}}
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root.find("Say").text == CapomShort.THANKS


def test_capom_short_repeats_the_question_on_an_invalid_digit():
    response, root = capom_step(digits="9", answers={"q1": "1"})

    assert asked_question(root) == questions()[1]
    assert response.metadata_updates is None


@pytest.mark.parametrize("digits", [None, "", "12", "*"])
def test_capom_short_repeats_the_question_on_missing_or_malformed_input(digits):
    response, root = capom_step(digits=digits, answers={"q1": "1"})

    assert asked_question(root) == questions()[1]
    assert response.metadata_updates is None


def test_capom_short_hangs_up_without_updates_when_already_complete():
    response, root = capom_step(digits="1", answers={"q1": "1", "q2": "1", "q3": "1"})

    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert response.metadata_updates is None


def test_capom_short_takes_digits_only_for_the_question_its_url_says_was_asked():
    asked_q2 = f"{WEBHOOK_URL}?phone_call_id=7&capom_question=q2"
    response, root = capom_step(digits="1", answers={"q1": "1"}, url=asked_q2)
    assert response.metadata_updates == {"capom": {"q2": "1"}}
    gather = root.find("Gather")
    assert gather.get("action") == f"{WEBHOOK_URL}?phone_call_id=7&capom_question=q3"
    # a retried answer to q1, already answered: not taken for q2, which is asked again
    response, root = capom_step(digits="1", answers={"q1": "1"}, url=f"{WEBHOOK_URL}?capom_question=q1")
    assert response.metadata_updates is None and asked_question(root) == questions()[1]


def test_capom_short_ignores_unrelated_metadata():
    response = CapomShort().respond(make_request(metadata={"foo": "bar"}))

    assert isinstance(response.instructions[0], Gather)


# Registry rules


def test_application_is_always_registered_and_the_default():
    registry = CallFlowRegistry(registered=[])

    assert registry.names() == [APPLICATION]
    assert registry.is_registered(APPLICATION)
    assert registry.default_name == APPLICATION
    assert registry.get(None).name == APPLICATION


def test_built_in_flow_is_not_registered_unless_listed():
    registry = CallFlowRegistry(registered=[HELLO_WORLD])

    assert registry.is_registered(HELLO_WORLD)
    assert not registry.is_registered(PLAY_MESSAGE)
    assert not registry.is_registered(CAPOM_SHORT)
    with pytest.raises(CallFlowLogicNotRegistered):
        registry.get(PLAY_MESSAGE)


def test_unknown_name_in_registered_list_is_rejected():
    with pytest.raises(ValueError, match="CallFlowLogic::Nope"):
        CallFlowRegistry(registered=["CallFlowLogic::Nope"])


def test_default_must_be_registered():
    with pytest.raises(ValueError, match="not registered"):
        CallFlowRegistry(registered=[], default=HELLO_WORLD)


def test_get_without_a_name_returns_the_configured_default():
    registry = CallFlowRegistry(registered=[" " + HELLO_WORLD, ""], default=HELLO_WORLD)

    assert registry.default_name == HELLO_WORLD
    assert registry.get(None).name == HELLO_WORLD
    assert registry.names() == [APPLICATION, HELLO_WORLD]


# Third-party flows


@dataclass
class FakeFlow:
    name: str = "Acme::Greeting"

    def respond(self, request):
        return CallFlowResponse((Say(f"Hi {request.msisdn}"), Hangup()), {"greeted": True})


def test_third_party_flow_is_registered_only_when_listed():
    unlisted = CallFlowRegistry(registered=[], extra={"Acme::Greeting": FakeFlow})
    listed = CallFlowRegistry(registered=["Acme::Greeting"], extra={"Acme::Greeting": FakeFlow})

    assert not unlisted.is_registered("Acme::Greeting")
    assert listed.is_registered("Acme::Greeting")


def test_third_party_flow_responds_through_the_registry():
    registry = CallFlowRegistry(
        registered=["Acme::Greeting"], default="Acme::Greeting", extra={"Acme::Greeting": FakeFlow()}
    )

    response = registry.get(None).respond(make_request())
    root = ET.fromstring(render(response))

    assert root.find("Say").text == "Hi +85512345678"
    assert root.find("Hangup") is not None
    assert response.metadata_updates == {"greeted": True}


def test_third_party_flow_may_not_shadow_a_built_in():
    with pytest.raises(ValueError, match="clashes"):
        CallFlowRegistry(registered=[], extra={HELLO_WORLD: FakeFlow})


def test_third_party_flow_without_respond_is_rejected():
    with pytest.raises(ValueError, match="respond"):
        CallFlowRegistry(registered=[], extra={"Acme::Broken": object()})


def test_build_registry_loads_listed_entry_point_flows(monkeypatch):
    entry_point = EntryPoint(
        name="Acme::Greeting", value=f"{__name__}:FakeFlow", group=call_flow_plugins.ENTRY_POINT_GROUP
    )
    broken = EntryPoint(name="Acme::Broken", value="no_such_module:Flow", group=call_flow_plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(call_flow_plugins, "entry_points", lambda group: [entry_point, broken])

    registry = call_flow_plugins.build_registry(f"{HELLO_WORLD}, Acme::Greeting", "Acme::Greeting")

    assert registry.names() == [APPLICATION, HELLO_WORLD, "Acme::Greeting"]
    assert registry.get(None).respond(make_request()).metadata_updates == {"greeted": True}
