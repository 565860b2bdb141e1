"""How often a stream may be replayed: per stream and per client, a minute at a time.

A resume or a cancel replays a stream's log from its start (``pacer.resumable``), so
each costs CPU in proportion to the stream's length; ``ReplayLimits`` bounds how many
each stream and each client (a key its caller chooses) may ask for in a minute. It is a token bucket
per key, fed the time (``now``, seconds) by its caller, so tests need no clock.

Cost: O(1) per ``take``; memory one small entry per key seen in the last minute, the
full buckets dropped whenever the table passes ``max_keys``, and then the oldest ones.
"""

from __future__ import annotations

from ._args import whole

__all__ = ["ReplayLimits"]

_WINDOW = 60.0  # seconds a full bucket takes to refill


class _Bucket:
    __slots__ = ("seen", "tokens")

    def __init__(self, tokens: float, seen: float) -> None:
        self.tokens = tokens
        self.seen = seen


class ReplayLimits:
    """At most ``per_stream`` replays of one stream and ``per_client`` by one client a
    minute (each a burst of that many, refilled evenly over the minute); ``0`` is no limit.
    ``max_keys`` bounds the keys remembered."""

    def __init__(self, per_stream: int, per_client: int, *, max_keys: int = 100_000) -> None:
        self.per_stream = whole(per_stream, "ReplayLimits: per_stream")
        self.per_client = whole(per_client, "ReplayLimits: per_client")
        self.max_keys = max_keys
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def take_client(self, client: str, now: float) -> float:
        """Count one replay by ``client``: 0, or the seconds to wait when it is over its limit."""
        return self._take(("client", client), self.per_client, now)

    def take_stream(self, stream_id: str, now: float) -> float:
        """Count one replay of ``stream_id``: 0, or the seconds to wait when it is over its limit."""
        return self._take(("stream", stream_id), self.per_stream, now)

    def _take(self, key: tuple[str, str], limit: int, now: float) -> float:
        if not limit:
            return 0.0
        rate = limit / _WINDOW
        bucket = self._buckets.get(key)
        if bucket is None:
            self._prune(now)
            bucket = self._buckets[key] = _Bucket(float(limit), now)
        bucket.tokens = min(float(limit), bucket.tokens + (now - bucket.seen) * rate)
        bucket.seen = now
        if bucket.tokens < 1.0:
            return (1.0 - bucket.tokens) / rate
        bucket.tokens -= 1.0
        return 0.0

    def _prune(self, now: float) -> None:
        if len(self._buckets) < self.max_keys:
            return
        # Buckets untouched for a window are full again: forgetting them changes nothing.
        for key in [k for k, b in self._buckets.items() if now - b.seen >= _WINDOW]:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:  # under a flood, the oldest go first
            del self._buckets[next(iter(self._buckets))]
