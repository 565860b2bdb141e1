"""Guard: each unit released only once its check approved it, in order; a blocked unit and
all after it never reach the sink; checks run while earlier units are paced out."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacer import Pacer, SentenceSplitter, arun, run, simulate
from pacer.guard import CheckRequest, Guard
from pacer.server import Outcome
from pacer.sse import SSEDecoder
from pacer.testing.strategies import hard_text

TEXT = "The weather is fine. My password is hunter2. Do not tell anyone. Bye now."
UNITS = ["The weather is fine. ", "My password is hunter2. ", "Do not tell anyone. ", "Bye now."]


def no_password(text: str) -> bool:
    return "hunter2" not in text


def _pieces(text: str, sizes: list[int]) -> list[str]:
    out, i, k = [], 0, 0
    while i < len(text):
        n = sizes[k % len(sizes)] if sizes else 3
        out.append(text[i : i + n])
        i, k = i + n, k + 1
    return out


@settings(max_examples=150, deadline=None)
@given(
    hard_text,
    st.lists(st.integers(1, 9), max_size=8),
    st.lists(st.sampled_from(["pass", "block", "replace"]), min_size=1, max_size=12),
    st.lists(st.floats(0, 1.5), min_size=1, max_size=6),
    st.booleans(),
)
def test_only_approved_units_reach_the_sink_in_order_whatever_the_latencies(
    text: str, sizes: list[int], verdicts: list[str], latencies: list[float], paced: bool
) -> None:
    units = _split(text)
    calls: list[str] = []

    def check(unit: str) -> bool | str:
        verdict = verdicts[len(calls) % len(verdicts)]
        calls.append(unit)
        return {"pass": True, "block": False, "replace": f"<{len(calls)}>"}[verdict]

    guard = Guard(check, max_chars=40, max_hold=None)
    stage = guard | Pacer(cps=200) if paced else guard
    trace = [(i * 0.01, piece) for i, piece in enumerate(_pieces(text, sizes))]
    timeline = simulate(trace, stage, check_latency=lambda r: latencies[r.id % len(latencies)])
    assert calls == units[: len(calls)]  # every check saw a whole unit, in order
    expected = ""
    for i, unit in enumerate(units):
        verdict = verdicts[i % len(verdicts)]
        if verdict == "block":
            assert guard.blocked is not None and guard.blocked.text == unit
            break
        expected += unit if verdict == "pass" else f"<{i + 1}>"
    else:
        assert guard.blocked is None
    assert timeline.text == expected  # nothing of a blocked unit or after it, ever


def _split(text: str) -> list[str]:
    splitter = SentenceSplitter(max_chars=40)
    return splitter.feed(text) + splitter.flush()


def test_a_check_sees_a_phrase_split_across_tokens_whole() -> None:
    seen: list[str] = []

    def canary(text: str) -> bool:
        seen.append(text)
        return "XYZZY-42" not in text

    trace = [(0.0, "The code is XY"), (0.1, "ZZ"), (0.2, "Y-4"), (0.3, "2. Keep it safe.")]
    timeline = simulate(trace, Guard(canary) | Pacer())
    assert timeline.text == "" and seen == ["The code is XYZZY-42. "]


def test_a_check_is_given_the_text_before_its_unit() -> None:
    def across(text: str, context: str) -> bool:
        return "launch code" not in " ".join((context + text).split())

    timeline = simulate([(0.0, "Say the launch\n\ncode now. Or not.")], Guard(across))
    assert timeline.text == "Say the launch\n\n"


def test_checks_overlap_the_pacing_of_earlier_units() -> None:
    """With checks of 300 ms, after the first unit the reader waits no longer than
    without a guard: each check runs while the unit before is typed out."""
    text = "".join(f"Sentence number {i} is here, and it is long enough to type. " for i in range(8))
    trace = [(i * 0.025, w + " ") for i, w in enumerate(text.split(" ")) if w]

    def emissions(stage: Any, latency: float | None) -> list[float]:
        timeline = simulate(trace, stage, check_latency=latency)
        return [c.emitted for c in timeline.emissions if c.emitted is not None]

    plain = emissions(SentenceSplitter() | Pacer(cps=40, max_lag=10), None)
    guarded = emissions(Guard(lambda t: True) | Pacer(cps=40, max_lag=10), 0.3)
    assert guarded[0] - plain[0] == pytest.approx(0.3, abs=0.02)  # the first unit waits its check
    # Then the text flows as it would have anyway: the seven later checks' waits are
    # never seen again (each ran while the unit before it was typed out).
    assert guarded[-1] - plain[-1] == pytest.approx(0.3, abs=0.02)


def test_a_check_that_fails_or_answers_nonsense_blocks_fail_closed() -> None:
    def broken(text: str) -> bool:
        if "password" in text:
            raise RuntimeError("classifier down")
        return True

    guard = Guard(broken)
    assert simulate([(0.0, TEXT)], guard).text == UNITS[0]
    assert guard.blocked is not None and "check raised RuntimeError: classifier down" in guard.blocked.reason
    guard = Guard(lambda t: None)
    assert simulate([(0.0, TEXT)], guard).text == ""
    assert "check must return True, False or a str, got NoneType" in guard.blocked.reason  # type: ignore[union-attr]
    lenient = Guard(broken, on_error="pass")
    assert simulate([(0.0, TEXT)], lenient).text == TEXT


def test_a_check_past_its_timeout_blocks_unless_told_to_pass() -> None:
    slow = Guard(no_password, timeout=0.5)
    timeline = simulate([(0.0, TEXT)], slow, check_latency=lambda r: 2.0 if r.id == 2 else 0.1)
    assert timeline.text == UNITS[0] and timeline.metrics.blocked == "check took longer than 0.5 s"
    assert slow.blocked is not None and "longer than 0.5 s" in slow.blocked.reason
    lenient = Guard(lambda t: True, timeout=0.5, on_error="pass")
    assert simulate([(0.0, TEXT)], lenient, check_latency=2.0).text == TEXT


def test_stand_alone_feed_checks_inline_and_an_async_check_says_it_needs_a_driver() -> None:
    guard = Guard(no_password)
    assert guard.feed(TEXT) == [UNITS[0]] and guard.flush() == []

    async def later(text: str) -> bool:
        return True

    guard = Guard(later)
    assert guard.feed(TEXT) == []
    assert guard.blocked is not None and "an async check needs a driver" in guard.blocked.reason


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(TypeError, match="Guard: check must be callable, got str"):
        Guard("no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Guard: on_error must be 'block' or 'pass', got 'ignore'"):
        Guard(no_password, on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Guard: timeout"):
        Guard(no_password, timeout=0)


# -- live drivers ------------------------------------------------------------------------------


WORDS = TEXT.split(" ") + ["More", "text."] * 100


class Source:
    """Words of ``TEXT`` and a long tail, every few ms; counts how many were read."""

    def __init__(self, words: list[str] = WORDS) -> None:
        self.words_ = words
        self.read = 0
        self.closed = False

    async def words(self) -> AsyncIterator[str]:
        try:
            for word in self.words_:
                await anyio.sleep(0.003)
                self.read += 1
                yield word + " "
        finally:
            self.closed = True

    def sync_words(self) -> Iterator[str]:
        try:
            for word in self.words_:
                time.sleep(0.003)
                self.read += 1
                yield word + " "
        finally:
            self.closed = True


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_arun_runs_async_checks_concurrently_and_stops_the_source_at_a_block(backend: str) -> None:
    started: list[float] = []

    async def check(text: str) -> bool:
        started.append(anyio.current_time())
        await anyio.sleep(random.Random(len(text)).uniform(0.01, 0.08))  # answers out of order
        return "hunter2" not in text

    source = Source()

    async def main() -> str:
        return "".join([t async for t in arun(Guard(check) | Pacer(cps=2000), source.words())])

    assert anyio.run(main, backend=backend) == UNITS[0]
    assert source.closed and source.read < len(WORDS)  # the rest was never read


def test_run_runs_plain_checks_on_threads() -> None:
    source = Source()
    stream = run(Guard(no_password) | Pacer(cps=2000), source.sync_words())
    out = "".join(stream)
    assert out == UNITS[0] and stream.metrics.blocked == "blocked by the check"
    deadline = time.monotonic() + 10  # the reader thread closes the source as it stops
    while not source.closed:
        assert time.monotonic() < deadline, "the source was not closed after the block"
        time.sleep(0.01)
    assert source.read < len(WORDS)


def test_run_passes_everything_approved_and_redacted() -> None:
    source = Source(TEXT.split(" "))
    out = "".join(run(Guard(lambda t: t.replace("hunter2", "*******")), source.sync_words()))
    assert out == TEXT.replace("hunter2", "*******") + " "


def test_check_request_shows_its_text() -> None:
    assert repr(CheckRequest(3, "Hi.", "")) == "CheckRequest(id=3, text='Hi.')"


# -- through the proxy, read by the openai client ---------------------------------------------------


@pytest.mark.parametrize("check", ["no_breathing", "slow_no_breathing"])
def test_the_proxy_with_guard_ends_a_blocked_answer_with_content_filter(check: str) -> None:
    import httpx
    import openai

    from pacer.testing.streams import ANSWERS

    from .guards import FORBIDDEN
    from .servers import ScriptedUpstream, cli_proxy, serve

    with serve(ScriptedUpstream().app) as upstream:
        args = ("--upstream", f"{upstream}/v1", "--cps", "3000", "--guard", f"tests.guards:{check}")
        with cli_proxy(*args) as (url, _):
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
            text, finish = "", None
            for chunk in client.chat.completions.create(model="m", messages=[], stream=True):
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    finish = choice.finish_reason or finish
            body = {"model": "m", "stream": True}
            raw = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"accept-encoding": "identity"})
    assert text == "Paced text reads calmly. " and finish == "content_filter"
    assert ANSWERS[0].startswith(text + FORBIDDEN)
    wire = raw.content.decode()
    assert "breathes" not in wire and "calmly" in wire  # the blocked text never left the proxy
    assert SSEDecoder().feed(raw.content)[-1].data == "[DONE]"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_hub_runs_checks_as_tasks_and_stops_at_a_block(backend: str) -> None:
    from pacer import Hub

    async def check(text: str) -> bool:
        await anyio.sleep(0.02)
        return "hunter2" not in text

    async def main() -> tuple[str, str]:
        hub = Hub()
        got: list[str] = []
        source = Source()
        await hub.pump(
            Guard(check) | Pacer(cps=2000), source.words(), lambda chunks: got.extend(c.text for c in chunks)
        )
        assert source.closed and source.read < len(WORDS)
        plain: list[str] = []
        await hub.pump(
            Guard(no_password), Source(TEXT.split(" ")).words(), lambda cs: plain.extend(c.text for c in cs)
        )
        return "".join(got), "".join(plain)

    assert anyio.run(main, backend=backend) == (UNITS[0], UNITS[0])


def test_paced_event_source_ends_a_blocked_stream_as_openai_does_or_with_an_error() -> None:
    import httpx
    import openai
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    from pacer.server import OpenAIChunks, PacedEventSource
    from pacer.sse import SSEDecoder

    from .servers import serve

    async def chat(request: Request) -> PacedEventSource:
        words = Source(TEXT.split(" ")).words()
        check = no_password if request.query_params.get("strict") != "0" else (lambda t: True)
        pipeline = Guard(check) | Pacer(cps=3000)
        return PacedEventSource(words, pipeline, encoder=OpenAIChunks(model="m"), on_close=outcomes.append)

    async def plain(request: Request) -> PacedEventSource:
        words = Source(TEXT.split(" ")).words()
        return PacedEventSource(words, Guard(no_password) | Pacer(cps=3000), on_close=outcomes.append)

    outcomes: list[Outcome] = []

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/plain", plain)])
    with serve(app) as url:
        seen = []
        for strict in ("1", "0"):
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
            text, finish, role = "", None, None
            stream = client.chat.completions.create(
                model="m", messages=[], stream=True, extra_query={"strict": strict}
            )
            for chunk in stream:
                role = role or chunk.choices[0].delta.role
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            seen.append((text, finish, role))
        decoder = SSEDecoder()
        with httpx.stream("GET", f"{url}/plain") as response:
            events = [e for piece in response.iter_bytes() for e in decoder.feed(piece)]
    assert seen == [(UNITS[0], "content_filter", "assistant"), (TEXT + " ", "stop", "assistant")]
    assert "".join(e.data for e in events[:-1]) == UNITS[0]
    assert events[-1].event == "error" and '"type": "content_filter"' in events[-1].data
    assert all(e.data != "[DONE]" for e in events)
    for _ in range(500):  # on_close runs once the response's last write is out
        if len(outcomes) == 3:
            break
        time.sleep(0.01)
    # Recorded as what happened: blocked (not done, nor error for the plain error event).
    assert outcomes == [Outcome.BLOCKED, Outcome.DONE, Outcome.BLOCKED]


# -- a match cut by a stall or a length cap (#37 item 3) ---------------------------------------

KEY = "sk-" + "a1b2c3d4e5f6g7h8"


@settings(max_examples=60, deadline=None)
@given(
    before=st.text(alphabet="abc de.,", max_size=60),
    after=st.text(alphabet="xyz w.", max_size=40),
    cut=st.integers(1, len(KEY) - 1),
    stall=st.sampled_from([0.5, 3.0]),
    max_chars=st.sampled_from([None, 12, 25]),
    redact=st.booleans(),
    latency=st.sampled_from([None, 0.05]),
)
def test_a_key_cut_by_a_stall_or_a_length_cap_never_leaves_in_pieces(
    before: str,
    after: str,
    cut: int,
    stall: float,
    max_chars: int | None,
    redact: bool,
    latency: float | None,
) -> None:
    """The key arrives in two pieces with a stall between them longer than the hold timer
    (2 s) or not, inside units cut by a length cap or not: the pattern policy's tail is
    held, so the key is checked whole and never reaches the output, whole or in part."""
    from pacer.patterns import patterns

    policy = patterns(redact=[r"sk-[a-z0-9]{16}"]) if redact else patterns(block=[r"sk-[a-z0-9]{16}"])
    text = before + KEY + after
    first, second = before + KEY[:cut], KEY[cut:] + after
    trace = [(0.0, first), (stall, second)]
    guard = Guard(policy, max_chars=max_chars, max_hold=2.0)
    out = simulate(trace, guard, check_latency=latency).text
    assert KEY[:4] + KEY[4:8] not in out  # not even the start of the key beyond its prefix
    if redact:
        assert out == text.replace(KEY, "[redacted]")
    else:
        assert out == before[: len(out)] and len(out) <= len(before)


def test_without_a_tail_policy_a_check_still_sees_the_text_before_a_cut() -> None:
    """A plain two-argument check gets the released text before its unit as context."""
    seen: list[tuple[str, str]] = []

    def check(text: str, context: str) -> bool:
        seen.append((text, context))
        return True

    simulate([(0.0, "first half of a sent"), (3.0, "ence. Then more.")], Guard(check, max_hold=2.0))
    assert ("first half of a sent", "") in seen
    assert any(
        text.startswith("ence.") and context.endswith("first half of a sent") for text, context in seen
    )
