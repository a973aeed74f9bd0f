"""Per-token request limits for the HTTP API, on the `limits` package's moving window.

`rate_per_s` on average with bursts of `burst`: a window of `burst` requests per
`burst / rate_per_s` seconds. In memory, per API process: with several API processes each
enforces its own window.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimiter:
    """`take(key)`: None when the request may go ahead, else seconds to wait."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.enabled = rate_per_s > 0
        self._item = RateLimitItemPerSecond(
            max(1, burst), max(1, round(max(1, burst) / rate_per_s)) if self.enabled else 1
        )
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def take(self, key: str) -> int | None:
        if not self.enabled or self._limiter.hit(self._item, key):
            return None
        reset_at = self._limiter.get_window_stats(self._item, key).reset_time
        return max(1, math.ceil(reset_at - time.time()))
