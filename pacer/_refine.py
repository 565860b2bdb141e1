"""Stop and refine: the request that follows a stopped answer, in each API's own shape.

A reader sees an answer going wrong, stops it, and corrects the question. The follow-up
request is the original one plus two turns: the answer's text *as the reader saw it*
as the assistant's (partial) turn, and the correction as the next user turn. The model
then continues from what the reader saw, never from text it wrote past the cut that
nobody read. Where that text comes from: a cancel's answer (``POST
/v1/streams/{id}/cancel`` returns ``{"text", "choices", ...}``: what every reader
received), what one client received (``pacer.client.ResumableStream.transcript``, a
``pacer.formats.Transcript``), or, for a voice agent, what had been heard at time ``t``
(``HeardText`` with ``at=t``).

The turns, per API (``api`` is the name or any URL or path ending in its route):

- ``"chat.completions"`` (``/v1/chat/completions``): ``messages`` gets ``{"role":
  "assistant", "content": shown}`` and ``{"role": "user", "content": correction}``. A
  request that continued its own last assistant message (``"continue_final_message":
  true``) gets the shown text added to that message instead; ``continue_final_message``
  and ``add_generation_prompt`` are dropped, since the follow-up ends with a user turn.
- ``"responses"`` (``/v1/responses``): ``input`` (a string becomes a user message) gets
  ``{"type": "message", "role": "assistant", "content": [{"type": "output_text",
  "text": shown, "annotations": []}]}`` and ``{"type": "message", "role": "user",
  "content": correction}``.
- ``"messages"`` (``/v1/messages``, Anthropic): ``messages`` gets ``{"role":
  "assistant", "content": [{"type": "text", "text": shown}]}`` and ``{"role": "user",
  "content": [{"type": "text", "text": correction}]}``; a prefill (a last assistant
  message) gets the shown text as its next text block instead.

Everything else of the request is kept as it was: the model, the system prompt
(``system``, ``instructions``, system messages), tools, sampling, ``n``, ``stream``,
``previous_response_id``. The request itself is not changed. The Completions API has no
turns to put a correction in: asking for it is an error.

Cost: O(number of messages) to copy the list, O(length of the shown text) to read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._args import number, whole
from ._heard import HeardText
from .formats import ROUTES, Transcript

__all__ = ["APIS", "api_of", "follow_up", "shown_text"]

#: What a stream's text can be given as: the text, a cancel's JSON answer, a client's
#: ``Transcript``, or a ``HeardText`` (with ``at=``).
Shown = str | Mapping[str, Any] | Transcript | HeardText


def api_of(api: str) -> str | None:
    """The format name of ``api``: a name of ``pacer.formats.FORMATS``' APIs as it is, or
    the one whose route a URL or path ends in (``http://h/gw/v1/messages`` is
    ``"messages"``); ``None`` for anything else."""
    if api in _NAMES:
        return api
    _, sep, rest = api.partition("/v1/")
    route = ROUTES.get("/v1/" + rest.partition("?")[0].rstrip("/")) if sep else None
    return None if route is None else route.transcript


_NAMES = frozenset(fmt.transcript for fmt in ROUTES.values())


def shown_text(shown: Shown, *, choice: int = 0, at: float | None = None) -> str:
    """The text of lane ``choice`` (an ``n > 1`` request's choice index) that ``shown``
    says the reader saw: ``shown`` itself (a str, one lane's text), a cancel answer's
    ``choices`` (or its ``text`` for lane 0), a ``Transcript``'s lanes, or
    ``HeardText.at(at)``. A ``TypeError`` or ``ValueError`` says what was wrong."""
    choice = whole(choice, "follow_up: choice")
    if choice < 0:
        raise ValueError(f"follow_up: choice must be >= 0 (a choice's index), got {choice}")
    if isinstance(shown, HeardText):
        if at is None:
            raise TypeError("follow_up: a HeardText needs at= (the time of the interruption, in seconds)")
        return _one_lane(shown.at(number(at, "follow_up: at")), choice, "a HeardText")
    if at is not None:
        raise TypeError(f"follow_up: at= is for a HeardText; shown is a {type(shown).__name__}")
    if isinstance(shown, str):
        return _one_lane(shown, choice, "a str")
    if isinstance(shown, Transcript):
        return _lane({c["index"]: c["text"] for c in shown.choices}, choice)
    if isinstance(shown, Mapping):
        return _answer_lane(shown, choice)
    raise TypeError(
        "follow_up: shown must be the text (str), a cancel's JSON answer (dict), a Transcript "
        f"or a HeardText, got {type(shown).__name__}: {shown!r}"
    )


def _one_lane(text: str, choice: int, what: str) -> str:
    if choice:
        raise ValueError(f"follow_up: choice={choice}, but {what} is one lane's text; pass that lane's")
    return text


def _answer_lane(answer: Mapping[str, Any], choice: int) -> str:
    """Lane ``choice`` of a cancel's answer: from ``choices`` when it has them."""
    choices = answer.get("choices")
    if isinstance(choices, list) and choices:
        lanes = {c.get("index"): c.get("text") for c in choices if isinstance(c, Mapping)}
        return _lane(lanes, choice)
    text = answer.get("text")
    if not isinstance(text, str):
        raise ValueError(
            "follow_up: shown has no 'text' str; expected the JSON a cancel answers "
            f"({{'text': ..., 'choices': [...]}}), got keys {sorted(map(str, answer))}"
        )
    return _one_lane(text, choice, "a cancel answer without choices")


def _lane(lanes: Mapping[Any, Any], choice: int) -> str:
    text = lanes.get(choice)
    if not isinstance(text, str):
        known = ", ".join(str(i) for i in sorted(i for i in lanes if isinstance(i, int))) or "none"
        raise ValueError(f"follow_up: no text for choice {choice}; the lanes shown are: {known}")
    return text


def follow_up(
    api: str,
    request: Mapping[str, Any],
    shown: Shown,
    correction: str,
    *,
    choice: int = 0,
    at: float | None = None,
) -> dict[str, Any]:
    """The request that follows ``request`` after its stream was stopped: a copy with two
    turns added to its conversation, the text shown as the assistant's and ``correction``
    as the user's, in the API's shape (Chat Completions: ``messages`` with string
    content; Responses: ``input`` items, the assistant's ``output_text``; Anthropic
    Messages: ``messages`` with text blocks; a prefill or ``continue_final_message`` turn
    is extended instead). Every other field is kept.

    ``api`` is ``"chat.completions"``, ``"responses"`` or ``"messages"``, or the request's
    URL or path (``.../v1/chat/completions``); ``shown`` what the reader saw
    (``shown_text``: the text, a cancel's answer, a ``Transcript``, or a ``HeardText``
    read ``at`` seconds); ``choice`` the lane to continue of an ``n > 1`` request;
    ``correction`` the reader's next words. Raises ``TypeError`` or ``ValueError`` for an
    unknown API, a request without its conversation, or no text shown or typed.
    """
    name = _api_name(api)
    if not isinstance(request, Mapping):
        raise TypeError(
            f"follow_up: request must be the original request's JSON object, got {type(request).__name__}"
        )
    if not isinstance(correction, str):
        raise TypeError(f"follow_up: correction must be a str, got {type(correction).__name__}")
    if not correction.strip():
        raise ValueError(f"follow_up: correction is blank ({correction!r}): the reader typed nothing")
    text = shown_text(shown, choice=choice, at=at)
    if not text.strip():
        raise ValueError(
            f"follow_up: no text was shown (choice {choice}): there is no partial answer to "
            "continue from; send the corrected request as a new question instead"
        )
    return APIS[name](request, text, correction)


def _api_name(api: object) -> str:
    """``api``'s name in ``APIS``; a clear error for anything else."""
    if not isinstance(api, str):
        raise TypeError(f"follow_up: api must be a str (an API name or URL), got {type(api).__name__}")
    name = api_of(api)
    if name == "completions":
        raise ValueError(
            "follow_up: the Completions API has no turns to put a correction in; continue "
            "its prompt with the shown text yourself, or ask /v1/chat/completions"
        )
    if name not in APIS:
        raise ValueError(
            f"follow_up: api must be one of {', '.join(APIS)}, or a URL or path ending in "
            f"/v1/chat/completions, /v1/responses or /v1/messages; got {api!r}"
        )
    return name


def _turns(request: Mapping[str, Any], key: str, api: str) -> list[Any]:
    """A copy of ``request[key]``, the conversation; a clear error when it is not a list."""
    turns = request.get(key)
    if not isinstance(turns, list):
        raise ValueError(f"follow_up: a {api} request needs a {key!r} list, got {turns!r}")
    return list(turns)


def _prefill(turns: list[Any]) -> Mapping[str, Any] | None:
    """The last turn when it is the assistant's (an answer the model was to continue)."""
    last = turns[-1] if turns else None
    return last if isinstance(last, Mapping) and last.get("role") == "assistant" else None


def _with_text(content: Any, text: str) -> Any:
    """A turn's ``content`` with ``text`` added: joined to a string, a text part after parts."""
    if isinstance(content, list):
        return [*content, {"type": "text", "text": text}]
    return (content if isinstance(content, str) else "") + text


def _chat(request: Mapping[str, Any], shown: str, correction: str) -> dict[str, Any]:
    messages = _turns(request, "messages", "chat.completions")
    prefill = _prefill(messages) if request.get("continue_final_message") else None
    if prefill is not None:
        messages[-1] = {**prefill, "content": _with_text(prefill.get("content"), shown)}
    else:
        messages.append({"role": "assistant", "content": shown})
    messages.append({"role": "user", "content": correction})
    body = {k: v for k, v in request.items() if k not in ("continue_final_message", "add_generation_prompt")}
    body["messages"] = messages
    return body


def _responses(request: Mapping[str, Any], shown: str, correction: str) -> dict[str, Any]:
    given = request.get("input")
    if isinstance(given, str):
        items: list[Any] = [{"type": "message", "role": "user", "content": given}]
    else:
        items = [] if given is None else _turns(request, "input", "responses")
    items.append(
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": shown, "annotations": []}],
        }
    )
    items.append({"type": "message", "role": "user", "content": correction})
    return {**request, "input": items}


def _messages(request: Mapping[str, Any], shown: str, correction: str) -> dict[str, Any]:
    messages = _turns(request, "messages", "messages")
    prefill = _prefill(messages)
    block = {"type": "text", "text": shown}
    if prefill is not None:
        content = prefill.get("content")
        if not isinstance(content, list):
            content = [{"type": "text", "text": content}] if content else []
        messages[-1] = {**prefill, "content": [*content, block]}
    else:
        messages.append({"role": "assistant", "content": [block]})
    messages.append({"role": "user", "content": [{"type": "text", "text": correction}]})
    return {**request, "messages": messages}


#: The APIs a follow-up can be built for, and how.
APIS: dict[str, Callable[[Mapping[str, Any], str, str], dict[str, Any]]] = {
    "chat.completions": _chat,
    "responses": _responses,
    "messages": _messages,
}
