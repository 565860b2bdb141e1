"""A pace remembered per reader: the last rate a user set, applied to their next streams.

``Paces`` keeps, in a stream log's store (``put_value``/``get_value``: this process's
memory, or Redis shared by every process), the last ``cps`` each user set with a
control, for ``ttl`` seconds after they set it. A user is the value of a header the
operator trusts to name them (``user_header``, set by an authenticating gateway in
front), or else their credential (``Authorization`` or ``x-api-key``); either is
stored only as a keyed hash (HMAC-SHA256), never as it came. The key is made once per
store and kept in it, so that every process sharing the store finds the same user.
A request with neither has no remembered pace.

Cost: one store read when a stream starts, one write per rate a user sets.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Mapping

from ._args import number, seconds
from .streamlog import StreamLog

__all__ = ["Paces"]

_KEY = "pace-key"


class Paces:
    """Users' remembered rates in ``log``'s store, for ``ttl`` seconds (module docstring)."""

    def __init__(self, log: StreamLog, ttl: float, user_header: str | None = None) -> None:
        self.log = log
        self.ttl = seconds(ttl, "Paces: ttl")
        if user_header is not None and (not isinstance(user_header, str) or not user_header.strip()):
            raise ValueError(f"Paces: user_header must be a header name, got {user_header!r}")
        self.user_header = user_header.strip().lower() if user_header is not None else None
        self._key: bytes | None = None

    def user(self, headers: Mapping[str, str], credential: str | None) -> str | None:
        """Who is asking (``headers``, lower-case names, and their ``credential``): the trusted
        header's value, or else the credential; ``None``: nobody known."""
        if self.user_header is not None:
            named = headers.get(self.user_header, "").strip()
            if named:
                return "user:" + named
        return None if credential is None else "key:" + credential

    async def _name(self, user: str) -> str:
        """The store's name for ``user``'s pace: a keyed hash of who they are."""
        if self._key is None:
            kept = await self.log.get_value(_KEY)
            if kept is None:
                await self.log.put_value(_KEY, secrets.token_hex(32), 10 * 365 * 86400.0)
                kept = await self.log.get_value(_KEY)  # another process's, if it was first
            assert kept is not None
            self._key = kept.encode()
        mac = hmac.new(self._key, user.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()
        return "pace:" + mac

    async def recall(self, user: str | None) -> float | None:
        """The rate ``user`` set last (characters per second), if it is still kept."""
        if user is None:
            return None
        kept = await self.log.get_value(await self._name(user))
        if kept is None:
            return None
        try:
            cps = float(kept)
        except ValueError:
            return None
        return cps if 0 < cps < math.inf else None

    async def remember(self, user: str | None, cps: float) -> None:
        """Keep ``cps`` as ``user``'s pace for ``ttl`` seconds."""
        if user is None:
            return
        rate = number(cps, "Paces.remember: cps")
        await self.log.put_value(await self._name(user), repr(rate), self.ttl)
