"""Checks on a bounded pool of their own, fair across streams (issue #37, item 6).

The proxy tests run ``pacer proxy`` in its own process, as a user runs it, in front of an
upstream of short sentences (``tests.servers.SentencesUpstream``), with a plain check
that takes 0.1 s (``tests.guards.tenth_of_a_second``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacer import CheckPool, Chunk, Guard, Pacer, Stage, arun, run
from pacer._checks import FairQueue
from pacer.config import ProxyConfig

from .servers import SentencesUpstream, cli_proxy, serve

GUARD = ("--guard", "tests.guards:tenth_of_a_second")


def _flood(url: str, resumable: bool) -> None:
    """Ask for a flooding answer of 600 sentences, then leave once its headers are in."""
    headers = {"X-Pacer-Resumable": "1"} if resumable else {}
    body = {"model": "flood", "messages": [], "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200


def test_ten_abandoned_floods_do_not_get_another_users_clean_answer_blocked() -> None:
    """Ten answers of 600 short sentences each, resumable and left by their clients (so
    they go on generating, and asking for checks), then an unrelated user's clean answer:
    it ends ``stop`` with all its text. On a shared FIFO pool whose timeout counts the
    queueing, it ended ``content_filter``."""
    import openai

    upstream = SentencesUpstream()
    with serve(upstream.app) as base, cli_proxy("--upstream", f"{base}/v1", *GUARD) as (url, _):
        for _ in range(10):
            _flood(url, resumable=True)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=60)
        text, finish = "", None
        for chunk in client.chat.completions.create(model="clean", messages=[], stream=True):
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
    assert (finish, text) == ("stop", SentencesUpstream.CLEAN)


def _content(line: str) -> str:
    choices = json.loads(line[len("data: ") :]).get("choices") or [{}]
    return choices[0].get("delta", {}).get("content") or ""


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _settled(path: Path, quiet: float = 1.0, limit: float = 30.0) -> int:
    """The number of checks logged in ``path`` once none has been added for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    count = _lines(path)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = _lines(path)
        if now == count:
            return count
        count = now
    raise AssertionError(f"checks still being asked for after {limit} s: {count}")


def test_an_abandoned_answer_that_is_not_resumable_stops_asking_for_checks(tmp_path: Path) -> None:
    """A client reads the first sentence of a 600-sentence answer and leaves without asking
    to resume: the proxy stops its upstream, drops its queued checks and asks for no more
    (the old shared pool went on checking all 600 sentences for nobody)."""
    log = tmp_path / "checks.log"
    upstream = SentencesUpstream()
    with serve(upstream.app) as base:
        args = ("--upstream", f"{base}/v1", *GUARD, "--checks-per-stream", "2")
        with cli_proxy(*args, env={"PACER_TEST_CHECK_LOG": str(log)}) as (url, _):
            body = {"model": "flood", "messages": [], "stream": True}
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as r:
                assert r.headers.get("x-pacer-stream-id")  # logged, but not resumable: not asked
                for line in r.iter_lines():
                    if line.startswith("data: {") and _content(line):
                        break  # read the first text, then leave
            deadline = time.monotonic() + 30
            while "flood" not in upstream.closed:
                assert time.monotonic() < deadline, "the proxy never closed the upstream"
                time.sleep(0.05)
            asked = _settled(log)
    assert 1 <= asked < 100  # a few in flight when the client left, not the 600 sentences


# -- the pool, in this process -----------------------------------------------------------------


class Gate:
    """Checks that wait at a gate: ``running`` counts those started and not yet let
    through, per stream (``most``: the most at once, per stream; ``peak``: in all)."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.lock = threading.Condition()
        self.running: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.calls: list[str] = []
        self.peak = 0  # the most running at once, all streams together

    def check(self, stream: str) -> Callable[[str], bool]:
        def check(text: str) -> bool:
            with self.lock:
                self.calls.append(text)
                self.running[stream] = self.running.get(stream, 0) + 1
                self.most[stream] = max(self.most.get(stream, 0), self.running[stream])
                self.peak = max(self.peak, self.total())
                self.lock.notify_all()
            self.open.wait(30)
            with self.lock:
                self.running[stream] -= 1
            return True

        return check

    def total(self) -> int:
        return sum(self.running.values())

    def wait_running(self, count: int) -> None:
        with self.lock:
            assert self.lock.wait_for(lambda: self.total() >= count, 30), f"never {count} checks at once"


SENTENCES = [f"Sentence {i} is here. " for i in range(8)]


def _run_in_thread(stage: Stage, out: dict[str, str], name: str) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.update({name: "".join(run(stage, SENTENCES))}), daemon=True)
    thread.start()
    return thread


def test_a_pool_runs_at_most_its_workers_at_once() -> None:
    pool, gate, out = CheckPool(3, per_stream=8), Gate(), {}
    threads = [_run_in_thread(Guard(gate.check(s), pool=pool), out, s) for s in "ab"]
    gate.wait_running(3)
    time.sleep(0.3)  # room for a fourth to start, were the pool not bounded
    assert gate.total() == 3
    gate.open.set()
    for thread in threads:
        thread.join(30)
    assert out == {"a": "".join(SENTENCES), "b": "".join(SENTENCES)}
    assert gate.peak == 3
    pool.close()


def test_one_stream_runs_at_most_per_stream_checks_at_once() -> None:
    pool, gate, out = CheckPool(8, per_stream=2), Gate(), {}
    threads = [_run_in_thread(Guard(gate.check(s), pool=pool), out, s) for s in "ab"]
    gate.wait_running(4)
    time.sleep(0.3)  # room for a third of one stream to start, were it not limited
    assert gate.running == {"a": 2, "b": 2}
    gate.open.set()
    for thread in threads:
        thread.join(30)
    assert gate.most == {"a": 2, "b": 2} and out["a"] == out["b"] == "".join(SENTENCES)
    pool.close()


def test_a_check_queued_longer_than_its_timeout_still_passes() -> None:
    """The timeout counts from when the check starts: the victim's check waits behind a
    slow one on a pool of one worker for longer than its timeout, then passes at once."""
    pool, gate, out = CheckPool(1), Gate(), {}
    slow = _run_in_thread(Guard(gate.check("slow"), pool=pool), out, "slow")
    gate.wait_running(1)
    victim = _run_in_thread(Guard(lambda text: True, timeout=0.2, pool=pool), out, "victim")
    time.sleep(0.6)  # the victim's first check waits three times its timeout
    assert "victim" not in out
    gate.open.set()
    for thread in (slow, victim):
        thread.join(30)
    assert out["victim"] == "".join(SENTENCES)
    pool.close()


def test_the_timeout_runs_from_the_start_on_the_virtual_clock() -> None:
    guard = Guard(lambda text: True, timeout=1.0, max_hold=None)
    guard.drive_checks()
    guard.push(Chunk("One. Two", 0.0), 0.0)
    (request,) = guard.take_requests(0.0)
    assert guard.deadline is None and guard.awaiting  # queued: no timeout runs
    assert guard.poll(100.0) == [] and guard.blocked is None
    request.started = 100.0
    assert guard.deadline == 101.0
    assert guard.poll(101.0) == [] and guard.blocked is not None
    assert guard.blocked.reason == "check took longer than 1 s"


def test_a_stream_that_ends_drops_its_queued_checks() -> None:
    """A run closed early (its consumer left) asks for no more checks, and the ones it
    had queued never run."""
    pool, calls, second, gate = CheckPool(1), [], threading.Event(), threading.Event()

    def check(text: str) -> bool:
        calls.append(text)
        if len(calls) > 1:  # the second waits at the gate, the rest queue behind it
            second.set()
            gate.wait(30)
        return True

    words = [w + " " for s in SENTENCES for w in s.split()]
    it = run(Guard(check, pool=pool) | Pacer(cps=10_000), words)
    assert next(it) == SENTENCES[0]
    assert second.wait(30)
    it.close()  # the consumer leaves: the checks queued behind the second are dropped
    gate.set()
    time.sleep(0.3)  # room for a dropped check to run, were it not dropped
    assert calls == SENTENCES[:2]
    pool.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_checks_take_turns_on_the_pool_in_their_own_loop(backend: str) -> None:
    pool, running, peak, threads = CheckPool(8, per_stream=2), [0], [0], set()

    async def check(text: str) -> bool:
        threads.add(threading.get_ident())
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await anyio.sleep(0.01)
        running[0] -= 1
        return "7" not in text

    async def main() -> tuple[str, int]:
        out = [text async for text in arun(Guard(check, pool=pool) | Pacer(cps=10_000), SENTENCES)]
        return "".join(out), threading.get_ident()

    text, loop_thread = anyio.run(main, backend=backend)
    assert text == "".join(SENTENCES[:7])
    assert peak[0] <= 2 and threads == {loop_thread}
    pool.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_async_check_past_its_timeout_is_cancelled_not_left_running(backend: str) -> None:
    """The run blocks a unit whose check outlives the guard's timeout; the check itself is
    then cancelled in its loop, not left to run on (it did, to its end, and a loop that
    ended first printed its CancelledError as an unhandled one at shutdown)."""
    pool = CheckPool(2)
    seen: dict[str, Any] = {}

    async def check(text: str) -> bool:
        seen["started"] = True
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            seen["cancelled"].set()
            raise
        seen["finished"] = True
        return True

    async def main() -> str:
        seen["cancelled"] = anyio.Event()
        out = [
            text async for text in arun(Guard(check, timeout=0.05, pool=pool) | Pacer(cps=10_000), SENTENCES)
        ]
        with anyio.fail_after(30):  # still in the loop: the check was cancelled, not left running
            await seen["cancelled"].wait()
        return "".join(out)

    assert anyio.run(main, backend=backend) == ""  # blocked from the first unit
    assert seen.get("started") and "finished" not in seen
    pool.close()


def test_a_fair_queue_takes_streams_in_turn_within_their_limit() -> None:
    fair = FairQueue(workers=10, per_stream=2)
    a, b, c = fair.stream(), fair.stream(), fair.stream()
    for name, turn, n in (("a", a, 6), ("b", b, 2), ("c", c, 1)):
        for i in range(n):
            fair.add(turn, f"{name}{i}")
    order = []
    while (picked := fair.next()) is not None:
        order.append(picked[1])
    assert order == ["a0", "b0", "c0", "a1", "b1"]  # a and b at their limit of 2
    fair.done(a)
    assert fair.next() == (a, "a2")
    assert fair.drop(a) == ["a3", "a4", "a5"]
    fair.add(a, "a6")
    fair.done(b)
    assert fair.next() is None  # a dropped, b has nothing queued
    fair.add(b, "b2")
    fair.add(b, "b3")
    assert fair.next() == (b, "b2")
    fair.add(c, "c1")
    assert sorted(fair.clear()) == ["b3", "c1"]  # b, at its limit, is out of the ring: dropped too
    assert fair.next() is None


@settings(max_examples=50, deadline=None)
@given(floods=st.integers(1, 12), workers=st.integers(1, 8), per_stream=st.integers(1, 4))
def test_a_victim_waits_for_at_most_one_check_of_each_other_stream(
    floods: int, workers: int, per_stream: int
) -> None:
    fair = FairQueue(workers, per_stream)
    streams = [fair.stream() for _ in range(floods)]
    for turn in streams:
        for i in range(600):
            fair.add(turn, i)
    running: list[Any] = []
    while (picked := fair.next()) is not None:
        running.append(picked[0])
    victim = fair.stream()
    fair.add(victim, "mine")
    started = 0
    while True:
        fair.done(running.pop(0))  # the oldest check ends, a worker is free
        picked = fair.next()
        assert picked is not None
        if picked[0] is victim:
            break
        running.append(picked[0])
        started += 1
    assert started <= floods


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: CheckPool(0), ValueError, "CheckPool: workers must be >= 1, got 0"),
        (lambda: CheckPool(2.5), TypeError, "CheckPool: workers must be an int, got float: 2.5"),
        (lambda: CheckPool(per_stream=0), ValueError, "CheckPool: per_stream must be >= 1, got 0"),
        (lambda: CheckPool(per_stream="2"), TypeError, "CheckPool: per_stream must be an int, got str"),
        (lambda: Guard(bool, pool=8), TypeError, "Guard: pool must be a pacer.CheckPool or None, got int"),
        (lambda: ProxyConfig(check_workers=0), ValueError, "ProxyConfig: check_workers must be >= 1"),
        (
            lambda: ProxyConfig(checks_per_stream=1.5),
            TypeError,
            "ProxyConfig: checks_per_stream must be an int",
        ),
    ],
)
def test_a_bad_pool_setting_fails_naming_it(build: Callable[[], object], error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        build()
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("PACER_CHECK_WORKERS", "0", "PACER_CHECK_WORKERS='0' is not a valid --check-workers: must be >= 1"),
        (
            "PACER_CHECKS_PER_STREAM",
            "two",
            "PACER_CHECKS_PER_STREAM='two' is not a valid --checks-per-stream",
        ),
    ],
)
def test_a_bad_pool_variable_is_a_usage_error_naming_it(
    variable: str, raw: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from pacer.cli import main

    monkeypatch.setenv(variable, raw)
    with pytest.raises(SystemExit) as exit_:
        main(["proxy", "--upstream", "http://127.0.0.1:9"])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("by", ["flags", "variables"])
def test_the_pool_flags_reach_the_guards_pool(by: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pacer.cli import _parser, proxy_settings
    from pacer.proxy import app_from_settings, settings_values

    argv = ["proxy", "--upstream", "http://127.0.0.1:9/v1", "--guard", "tests.guards:no_breathing"]
    if by == "flags":
        argv += ["--check-workers", "5", "--checks-per-stream", "1"]
    else:
        monkeypatch.setenv("PACER_CHECK_WORKERS", "5")
        monkeypatch.setenv("PACER_CHECKS_PER_STREAM", "1")
    args = _parser().parse_args(argv)
    settings = {k: v for k, v in proxy_settings(args).items() if k not in ("host", "port", "workers")}
    app = app_from_settings(settings_values(args.upstream, **settings))
    proxy = next(r.endpoint.func.__self__ for r in app.routes if hasattr(r.endpoint, "func"))
    guard = proxy.pipeline_factory().stages[0]
    assert isinstance(guard, Guard) and repr(guard.pool) == "CheckPool(workers=5, per_stream=1)"
    assert proxy.pipeline_factory().stages[0].pool is guard.pool  # one pool for every stream


def test_a_closed_pool_fails_each_check_at_once() -> None:
    pool = CheckPool(2)
    pool.close()
    guard = Guard(lambda text: True, pool=pool)
    assert "".join(run(guard, SENTENCES)) == ""
    assert guard.blocked is not None
    assert guard.blocked.reason == "check raised RuntimeError: CheckPool: the pool is closed"


def test_closing_a_pool_fails_the_checks_still_queued() -> None:
    """A stream at its per-stream limit still has its queued checks answered (as failures)
    when the pool closes, so its run ends instead of waiting for answers forever."""
    pool, gate, out = CheckPool(4, per_stream=1), Gate(), {}
    thread = _run_in_thread(Guard(gate.check("a"), pool=pool, on_error="pass"), out, "a")
    gate.wait_running(1)
    pool.close()  # the first check runs on; the seven behind it fail, and pass
    gate.open.set()
    thread.join(30)
    assert out["a"] == "".join(SENTENCES) and gate.calls == SENTENCES[:1]
