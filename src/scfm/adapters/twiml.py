"""Render provider-neutral call flow instructions as TwiML (works for Twilio and Somleng)."""

from __future__ import annotations

from functools import lru_cache

from twilio.twiml.voice_response import Gather as TwimlGather
from twilio.twiml.voice_response import VoiceResponse

from scfm.domain.call_flow_logic import CallFlowResponse, Gather, Hangup, Play, Redirect, Say


def render(response: CallFlowResponse) -> str:
    try:
        return _rendered(response.instructions)
    except TypeError:  # an instruction that cannot be a key (it holds a list): rendered afresh
        return _render(response.instructions)


@lru_cache(maxsize=1024)
def _rendered(instructions: tuple[object, ...]) -> str:
    """Most calls of a callout are answered alike: the same instructions are rendered once (building the XML
    tree cost as much CPU as a statement)."""
    return _render(instructions)


def _render(instructions: tuple[object, ...]) -> str:
    twiml = VoiceResponse()
    for instruction in instructions:
        _append(twiml, instruction)
    return twiml.to_xml()


def _append(parent: VoiceResponse | TwimlGather, instruction: object) -> None:
    if isinstance(instruction, Say):
        parent.say(instruction.text, voice=instruction.voice, language=instruction.language)
    elif isinstance(instruction, Play):
        parent.play(instruction.url)
    elif isinstance(instruction, Gather) and isinstance(parent, VoiceResponse):
        gather = parent.gather(
            num_digits=instruction.num_digits,
            action=instruction.action_url,
            method="POST",
            timeout=instruction.timeout,
        )
        for child in instruction.children:
            if not isinstance(child, (Say, Play)):
                raise TypeError(f"Gather may only contain Say or Play, got {type(child).__name__}")
            _append(gather, child)
    elif isinstance(instruction, Hangup) and isinstance(parent, VoiceResponse):
        parent.hangup()
    elif isinstance(instruction, Redirect) and isinstance(parent, VoiceResponse):
        parent.redirect(instruction.url, method="POST")
    else:
        raise TypeError(f"cannot render call flow instruction {instruction!r}")
