"""pacer: composable stream middleware between LLM token sources and their sinks.

Stages are sans-I/O objects joined with ``|``; drivers run the result over sync
or async sources. See the README for the tour.
"""

from . import _build

# Before any stage is imported: the compiled build if one is installed and current.
_from_source = _build.choose(__path__[0])

from . import traces as traces  # a module: pacer.traces.bursty(...) and the like
from ._core import Boundary, Chunk, Pipeline, Stage, StageClosedError, pipeline
from .clock import VirtualClock
from .detokenize import ByteDecoder, Detokenizer
from .guard import Guard
from .heard import HeardText
from .hub import Hub
from .pacing import Pacer
from .packets import Packetizer
from .run import arun, run
from .sentences import SentenceSplitter, split_sentences
from .simulate import simulate
from .streamer import PacerStreamer

__version__ = "0.1.0"

#: True where the per-token stages run compiled by mypyc (built with ``PACER_COMPILE=1``,
#: as release wheels are: setup.py), False where they run as their pure-Python source.
compiled = not _from_source

# The stages, the drivers and the few types a user touches. The rest is one module
# down: pacer.run (SyncRun, AsyncRun), pacer.hub (HubStream), pacer.mux (Mux,
# MuxStream), pacer.metrics (StreamMetrics), pacer.simulate (Timeline), pacer.clock
# (Clock, MonotonicClock), pacer.tokenizers (Vocab), pacer.resumable (ResumableStreams).
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
    # drivers
    "Hub",
    "VirtualClock",
    "arun",
    "run",
    "simulate",
]
