"""pacer: composable stream middleware between LLM token sources and their sinks.

Stages are sans-I/O objects joined with ``|``; drivers run the result over sync
or async sources. See the README for the tour.
"""

from . import _build

# Before any stage is imported: the compiled build if one is installed and current.
_from_source = _build.choose(__path__[0])

from . import traces
from ._core import Boundary, Chunk, Pipeline, Stage, StageClosedError, pipeline
from .clock import Clock, MonotonicClock, VirtualClock
from .detokenize import ByteDecoder, Detokenizer
from .hub import Hub, HubStream
from .metrics import StreamMetrics
from .mux import Mux, MuxStream
from .pacing import Pacer
from .packets import Packetizer
from .run import AsyncRun, SyncRun, arun, run
from .sentences import SentenceSplitter, split_sentences
from .simulate import Timeline, simulate
from .streamer import PacerStreamer
from .tokenizers import Vocab

__version__ = "0.1.0"

#: True where the per-token stages run compiled by mypyc (built with ``PACER_COMPILE=1``,
#: as release wheels are: setup.py), False where they run as their pure-Python source.
compiled = not _from_source

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
