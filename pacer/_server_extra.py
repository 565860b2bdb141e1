"""Imported first by the modules that need the ``server`` extra (``pacer.proxy``,
``pacer.server``, ``pacer.websocket``, ``pacer.streamroutes``, ``pacer.client``,
``pacer.failover``): on a plain install, importing one of them says which extra brings
what is missing, instead of a bare ``ModuleNotFoundError`` from deep inside.

Cost: one module-spec look-up per package, once per process.
"""

from __future__ import annotations

import importlib.util

__all__ = ["SERVER_EXTRA", "missing"]

#: The install that brings what the server side imports.
SERVER_EXTRA = "pip install 'pacer-llm[server]'"


def missing(*names: str) -> str | None:
    """The first of the packages ``names`` that is not installed, or ``None``."""
    return next((name for name in names if importlib.util.find_spec(name) is None), None)


if (_absent := missing("starlette", "httpx")) is not None:
    raise ModuleNotFoundError(
        f"pacer's servers, proxy and client need {_absent}, which the plain install lacks: {SERVER_EXTRA}",
        name=_absent,
    )
