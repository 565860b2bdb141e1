"""pacer: composable stream middleware between LLM token sources and their sinks.

Stages are sans-I/O objects joined with ``|``; drivers run the result over sync
or async sources. See the README for the tour.
"""

from . import _build

# Before any stage is imported: the compiled build if one is installed and current.
_from_source = _build.choose(__path__[0])

from . import traces as traces  # a module: pacer.traces.bursty(...) and the like
from ._checks import CheckPool
from ._control import Control, ControlError, Mailbox
from ._core import Boundary, Chunk, Pipeline, Stage, StageClosedError, pipeline
from ._detokenize import ByteDecoder, Detokenizer
from ._heard import HeardText
from ._hub import Hub, HubStream
from ._metrics import StreamMetrics
from ._pacing import Pacer
from ._packets import Packetizer
from ._run import AsyncRun, SyncRun, arun, run
from ._sentences import SentenceSplitter, split_sentences
from ._simulate import Timeline, simulate
from ._streamer import PacerStreamer
from .clock import VirtualClock
from .guard import Guard

__version__ = "0.1.0"

#: True where the per-token stages run compiled by mypyc (built with ``PACER_COMPILE=1``,
#: as release wheels are: setup.py), False where they run as their pure-Python source.
compiled = not _from_source

# The stages, the drivers and the types a user touches. The submodules a user imports
# are public too (docs/reference.md): pacer.sse, pacer.traces, pacer.tokenizers,
# pacer.clock, pacer.guard, pacer.patterns, pacer.mux, pacer.formats, pacer.adapters,
# pacer.config, pacer.server, pacer.proxy, pacer.resumable, pacer.streamroutes,
# pacer.streamlog, pacer.redislog, pacer.websocket, pacer.prometheus, pacer.client,
# pacer.testing; every module whose name starts with _ is the implementation.
__all__ = [
    # stages
    "ByteDecoder",
    "Detokenizer",
    "Guard",
    "HeardText",
    "Pacer",
    "PacerStreamer",
    "Packetizer",
    "SentenceSplitter",
    "split_sentences",
    # composing them, and what flows between them
    "Boundary",
    "Chunk",
    "Pipeline",
    "Stage",
    "StageClosedError",
    "pipeline",
    # drivers, and what they give back
    "AsyncRun",
    "CheckPool",
    "Hub",
    "HubStream",
    "StreamMetrics",
    "SyncRun",
    "Timeline",
    "VirtualClock",
    "arun",
    # the reader's controls on a running stream
    "Control",
    "ControlError",
    "Mailbox",
    "run",
    "simulate",
]
