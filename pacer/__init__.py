"""pacer: composable stream middleware between LLM token sources and their sinks.

Stages are sans-I/O objects joined with ``|``; drivers run the result over sync
or async sources. See the README for the tour.
"""

import importlib.machinery as _machinery
import importlib.util as _util
import os as _os
import sys as _sys


def _run_from_source() -> bool:
    """Whether to import the stages from their source, not from a mypyc build (setup.py).

    On request (``PACER_PURE=1``), or where a partial build left compiled modules
    without the shared library they need.
    """
    if _os.environ.get("PACER_PURE") == "1":
        return True
    built = (_os.path.join(__path__[0], "_core" + s) for s in _machinery.EXTENSION_SUFFIXES)
    return any(map(_os.path.exists, built)) and _util.find_spec("pacer__mypyc") is None


if _run_from_source():
    from ._source import SourceFinder as _SourceFinder

    _sys.meta_path.insert(0, _SourceFinder(__path__[0]))

from . import traces
from ._core import Boundary, Chunk, Pipeline, Stage, StageClosedError, pipeline
from .clock import Clock, MonotonicClock, VirtualClock
from .detokenize import ByteDecoder, Detokenizer, Vocab
from .hub import Hub, HubStream
from .metrics import StreamMetrics
from .mux import Mux, MuxStream
from .pacing import Pacer
from .packets import Packetizer
from .run import AsyncRun, SyncRun, arun, run
from .sentences import SentenceSplitter, split_sentences
from .simulate import Timeline, simulate
from .streamer import PacerStreamer

__version__ = "0.1.0"

#: True where the per-token stages run compiled by mypyc (setup.py), False where
#: they run as pure Python (no C compiler at install, or ``PACER_PURE=1``).
compiled = not (_sys.modules[__name__ + "._core"].__file__ or "").endswith(".py")

__all__ = [
    "AsyncRun",
    "Boundary",
    "ByteDecoder",
    "Chunk",
    "Clock",
    "Detokenizer",
    "Hub",
    "HubStream",
    "MonotonicClock",
    "Mux",
    "MuxStream",
    "Pacer",
    "PacerStreamer",
    "Packetizer",
    "Pipeline",
    "SentenceSplitter",
    "Stage",
    "StageClosedError",
    "StreamMetrics",
    "SyncRun",
    "Timeline",
    "VirtualClock",
    "Vocab",
    "arun",
    "compiled",
    "pipeline",
    "run",
    "simulate",
    "split_sentences",
    "traces",
]
