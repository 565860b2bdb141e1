"""An OpenAI-compatible server around ``TinyModel``: a real upstream for the proxy's tests.

Routes, as vLLM serves them:

* ``POST /v1/chat/completions``: ``messages`` (``system``/``developer``, ``user``,
  ``assistant``; text or text parts), ``max_tokens`` (or ``max_completion_tokens``),
  ``stream``, ``stream_options.include_usage``. ``continue_final_message: true``
  leaves the final message open and continues it, as vLLM and SGLang do: the answer
  holds only the new text; it cannot be combined with ``add_generation_prompt: true``
  (a 400, vLLM's message), and an omitted ``add_generation_prompt`` then counts as
  false. ``add_generation_prompt: false`` without it closes every message, and the
  answer is empty.
* ``POST /v1/completions``: a string ``prompt`` (or a list of one), continued as text;
  ``max_tokens`` defaults to 16, as in the OpenAI API and vLLM.
* ``GET /v1/models``, ``GET /health``.

Decoding is always greedy (``temperature``, ``top_p``, ``seed`` and the like are
accepted and have no effect). ``n`` choices (up to 16) are ``TinyModel`` lanes: in
chat, lane ``i`` opens with the model's ``i``-th best first character, then goes on
greedily, so the lanes differ and each continues as itself once it shows a character;
a completion's lanes continue a non-empty prompt and are alike. A stream sends a role
chunk per choice (chat), one chunk per token, a token of each choice in turn, a chunk
with ``finish_reason`` per choice (``"stop"``: the model ended; ``"length"``:
``max_tokens`` or the context), a usage chunk when asked (the choices' tokens
summed), then ``data: [DONE]``; ``token_delay`` seconds pass after each round of
tokens, so a test can cut a stream in the middle, but none between the last
``finish_reason`` and the end: the usage and ``[DONE]`` follow at once, as vLLM's do.

``python -m pacer.testing.model_server --port N`` serves it with uvicorn (``--port 0``:
any free port) and prints its URL, ``http://127.0.0.1:PORT``, once it listens.
``ModelProcess`` runs one from a test: started, killed (SIGKILL, as a crash), stalled
and let go (SIGSTOP, SIGCONT), restarted on the same port.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .model import ANSWER_CHARS, Finish, Generation, Message, TinyModel

__all__ = ["TOKEN_DELAY", "ModelProcess", "create_app", "main"]

#: The pause after each streamed token (seconds), by default: short, and long enough to
#: cut a stream in the middle.
TOKEN_DELAY = 0.005

_MAX_LANES = 16
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status

    def response(self) -> Response:
        kind = "NotFoundError" if self.status == 404 else "BadRequestError"
        error = {"message": str(self), "type": kind, "param": self.param, "code": self.status}
        return JSONResponse({"error": error}, status_code=self.status)


@dataclass(frozen=True, slots=True)
class _Job:
    """What one request asks: the context's ids and how to answer."""

    chat: bool  # chat.completion(s) or text_completion(s)
    context: list[int]
    max_tokens: int | None  # per lane
    n: int  # lanes (choices)
    stream: bool
    include_usage: bool


def create_app(model: TinyModel | None = None, *, token_delay: float = TOKEN_DELAY) -> Starlette:
    """The server's Starlette app; ``model`` defaults to ``TinyModel()``, ``token_delay``
    is the pause after each streamed token, in seconds."""
    served = model if model is not None else TinyModel()

    async def chat(request: Request) -> Response:
        return await _answer(served, request, token_delay, chat=True)

    async def completions(request: Request) -> Response:
        return await _answer(served, request, token_delay, chat=False)

    async def models(request: Request) -> Response:
        card = {"id": served.name, "object": "model", "created": 0, "owned_by": "pacer"}
        return JSONResponse({"object": "list", "data": [{**card, "max_model_len": served.max_context}]})

    async def health(request: Request) -> Response:
        return Response()

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


async def _answer(model: TinyModel, request: Request, token_delay: float, *, chat: bool) -> Response:
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise _BadRequest("the request body must be a JSON object")
        job = _job(model, body, chat=chat)
    except json.JSONDecodeError as exc:
        return _BadRequest(f"the request body is not JSON: {exc}").response()
    except _BadRequest as exc:
        return exc.response()
    lanes = [model.generate(job.context, job.max_tokens, lane) for lane in range(job.n)]
    head = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": model.name,
    }
    if job.stream:
        return StreamingResponse(_stream(lanes, job, head, token_delay), media_type="text/event-stream")
    choices = []
    for lane, generation in enumerate(lanes):
        text = await anyio.to_thread.run_sync(generation.run)
        choice: dict[str, Any] = {"index": lane}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choices.append({**choice, "logprobs": None, "finish_reason": _finish(generation)})
    kind = "chat.completion" if chat else "text_completion"
    return JSONResponse({**head, "object": kind, "choices": choices, "usage": _usage(lanes)})


async def _stream(
    lanes: list[Generation], job: _Job, head: dict[str, Any], token_delay: float
) -> AsyncIterator[bytes]:
    """Each lane's chunks, a token of each in turn, then the usage and ``[DONE]``."""
    head = {**head, "object": "chat.completion.chunk" if job.chat else "text_completion"}
    if job.include_usage:
        head["usage"] = None  # on every chunk but the last, as the OpenAI API does

    def chunk(lane: int, piece: dict[str, Any] | None, finish: str | None = None) -> bytes:
        choice: dict[str, Any] = {"index": lane}
        if job.chat:
            choice["delta"] = piece if piece is not None else {}
        else:
            choice["text"] = piece["content"] if piece is not None else ""
        choice |= {"logprobs": None, "finish_reason": finish}
        return _event({**head, "choices": [choice]})

    if job.chat:
        for lane in range(len(lanes)):
            yield chunk(lane, {"role": "assistant", "content": ""})
    decode = lanes[0].model.tokenizer.decode
    running = dict(enumerate(lanes))
    while running:
        for lane, generation in list(running.items()):
            token = await anyio.to_thread.run_sync(generation.step)
            if token is None:
                del running[lane]
                yield chunk(lane, None, _finish(generation))
            else:
                yield chunk(lane, {"content": decode([token])})
        if running:  # (a kill between the answer's end and its usage is no mid-answer cut)
            await anyio.sleep(token_delay)
    if job.include_usage:
        yield _event({**head, "choices": [], "usage": _usage(lanes)})
    yield b"data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _finish(generation: Generation) -> str:
    return (generation.finish or Finish.LENGTH).value


def _usage(lanes: list[Generation]) -> dict[str, int]:
    prompt, completion = len(lanes[0].context), sum(len(g.ids) for g in lanes)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _job(model: TinyModel, body: dict[str, Any], *, chat: bool) -> _Job:
    name = body.get("model")
    if name is not None and name != model.name:
        raise _BadRequest(f"The model `{name}` does not exist.", "model", status=404)
    n = body.get("n", 1)
    if not isinstance(n, int) or not 1 <= n <= _MAX_LANES:
        raise _BadRequest(f"n must be an integer from 1 to {_MAX_LANES}, got {n!r}", "n")
    if chat:
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        context = _chat_context(model, body)
    else:
        max_tokens = body.get("max_tokens", 16)
        context = model.tokenizer.completion(_prompt(body.get("prompt")))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise _BadRequest(f"max_tokens must be a positive integer, got {max_tokens!r}", "max_tokens")
    if len(context) >= model.max_context:
        raise _BadRequest(f"the prompt holds {len(context)} tokens, the context {model.max_context}")
    options = body.get("stream_options")
    options = options if isinstance(options, dict) else {}
    return _Job(chat, context, max_tokens, n, bool(body.get("stream")), bool(options.get("include_usage")))


def _chat_context(model: TinyModel, body: dict[str, Any]) -> list[int]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("messages must be a non-empty list", "messages")
    continued = bool(body.get("continue_final_message"))
    if continued and body.get("add_generation_prompt"):
        raise _BadRequest("Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
    generation_prompt = body.get("add_generation_prompt", not continued)
    parsed = [_message(m) for m in messages]
    return model.tokenizer.chat(
        parsed, add_generation_prompt=bool(generation_prompt), continue_final_message=continued
    )


def _message(message: Any) -> Message:
    if not isinstance(message, dict) or message.get("role") not in _ROLES:
        raise _BadRequest(f"a message is an object with a role in {sorted(_ROLES)}", "messages")
    content = message.get("content")
    if isinstance(content, list):
        if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
            raise _BadRequest("this server reads text parts only", "messages")
        content = "".join(str(p.get("text", "")) for p in content)
    elif content is None:
        content = ""
    elif not isinstance(content, str):
        raise _BadRequest("a message's content is a string or a list of text parts", "messages")
    return Message(_ROLES[message["role"]], content)


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _BadRequest("prompt must be a string (or a list of one)", "prompt")
    return prompt


class ModelProcess:
    """``python -m pacer.testing.model_server ARGS`` in a process of its own, for tests.

    ``start()`` returns once the server listens (its URL is ``url``); ``kill()`` ends it
    with SIGKILL, as a crash would, cutting its streams; ``pause()`` and ``resume()``
    stall it and let it go on (SIGSTOP, SIGCONT), its connections open; ``restart()``
    starts it again on the same port; leaving the ``with`` block kills it.
    """

    def __init__(self, *args: str, port: int = 0) -> None:
        self.args = args
        self.port = port
        self.url = ""
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 120.0) -> str:
        """Start the server; its URL, once it listens (``timeout`` in seconds)."""
        self.launch()
        return self.wait(timeout)

    def launch(self) -> None:
        """Start the server without waiting for it (several start side by side)."""
        if self.process is not None:
            raise RuntimeError("the model server is already running")
        command = [sys.executable, "-m", "pacer.testing.model_server", *self.args, "--port", str(self.port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)

    def wait(self, timeout: float = 120.0) -> str:
        """The URL of a launched server, once it listens (``timeout`` in seconds)."""
        if self.process is None or self.process.stdout is None:
            raise RuntimeError("the model server was not launched")
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("http://"):
            self.kill()
            raise RuntimeError(f"the model server did not start within {timeout} s")
        self.url = line.strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.url

    def kill(self) -> None:
        """End the server at once (SIGKILL): its open streams are cut mid-answer."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def pause(self) -> None:
        """Stop the server (SIGSTOP) with its connections open: a stalled upstream."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT) where it stopped."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def restart(self, timeout: float = 120.0) -> str:
        """Kill the server if it runs, and start it again on the same port."""
        self.kill()
        return self.start(timeout)

    def __enter__(self) -> ModelProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m pacer.testing.model_server``: serve ``TinyModel`` on loopback."""
    parser = argparse.ArgumentParser(prog="python -m pacer.testing.model_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--token-delay", type=float, default=TOKEN_DELAY, help="seconds after each token")
    parser.add_argument("--seed", type=int, default=0, help="the model's weights")
    parser.add_argument(
        "--answer-chars", type=int, default=ANSWER_CHARS, help="an answer ends at a sentence end past this"
    )
    args = parser.parse_args(argv)

    import torch
    import uvicorn

    torch.set_num_threads(1)  # a model this small only loses time to more threads
    app = create_app(TinyModel(args.seed, args.answer_chars), token_delay=args.token_delay)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)  # from here on a client waits in the backlog, never refused
    print(f"http://{args.host}:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
