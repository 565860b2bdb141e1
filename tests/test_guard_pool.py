"""Checks on a bounded pool of their own, fair across streams (issue #37, item 6).

The proxy tests run ``pacer proxy`` in its own process, as a user runs it, in front of an
upstream of short sentences (``tests.servers.SentencesUpstream``), with a plain check
that takes 0.1 s (``tests.guards.tenth_of_a_second``).
"""

from __future__ import annotations

import httpx

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
