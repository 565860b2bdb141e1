"""Per-stream numbers a running pipeline keeps about itself: ``StreamMetrics`` (one per
pipeline, as ``pipeline.metrics``), its lag samples and pause tallies, and
``percentile``.

They are defined in ``pacer._metrics``, below the pipeline that records into them;
this is the module to import them from.

Cost: see ``StreamMetrics``: O(1) per emitted chunk, at most 80 KB of lag samples a
stream by default.
"""

from __future__ import annotations

from ._metrics import Gaps, LagSamples, StreamMetrics, percentile

__all__ = ["Gaps", "LagSamples", "StreamMetrics", "percentile"]
