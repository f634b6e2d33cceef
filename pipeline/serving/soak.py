"""Memory under sustained load: the resident set of tritonserver and its backend stubs, sampled
every second while `loadtest` runs (the soak: `make soak`, 16 clients for 10 minutes).

    sampler = RssSampler(server.process.pid).start()
    ...                                   # load
    sampler.stop(); sampler.report()      # {"samples": [[t, server, stubs, total]], "growth_pct"}

Growth is measured after warm-up (the first minute, or the first half of a shorter run: the
allocator's pools, gRPC buffers and the batcher's queues fill while load ramps up): the
median total RSS of the last 10 s against the median of the 10 s around the warm-up mark.
A leak of a few bytes per request shows there as steady growth; a process restarted by the
watchdog shows as a step.
"""
from __future__ import annotations

import time

import numpy as np

from .procs import Periodic, group_pids, rss

WARMUP_S = 60.0
WINDOW_S = 10.0


class RssSampler(Periodic):
    def __init__(self, server_pid: int, interval: float = 1.0):
        self.server_pid, self.interval = server_pid, interval
        self.samples: list[list[float]] = []     # [seconds, server, stubs, total] (bytes)
        self._t0 = time.monotonic()

    def tick(self) -> None:
        found = rss(group_pids(self.server_pid))
        server = found.pop(self.server_pid, 0)
        stubs = sum(found.values())
        self.samples.append([round(time.monotonic() - self._t0, 2), server, stubs, server + stubs])

    def report(self) -> dict:
        rows = np.array(self.samples, dtype=float).reshape(-1, 4)
        end = float(rows[-1, 0]) if len(rows) else 0.0
        warmup = WARMUP_S if end >= 2 * WARMUP_S else end / 2
        around = np.abs(rows[:, 0] - warmup) <= WINDOW_S / 2
        last = rows[:, 0] >= end - WINDOW_S
        found = {}
        for column, what in ((1, "server"), (2, "stubs"), (3, "total")):
            at_warmup = float(np.median(rows[around, column])) if around.any() else float("nan")
            at_end = float(np.median(rows[last, column])) if last.any() else float("nan")
            found[what] = {"at_warmup_bytes": at_warmup, "at_end_bytes": at_end,
                           "growth_pct": 100.0 * (at_end - at_warmup) / at_warmup
                           if at_warmup else float("nan")}
        total = found["total"]
        summary = (f"RSS of tritonserver + stubs: {total['at_warmup_bytes'] / 2**20:.1f} MiB at "
                   f"{warmup:.0f} s, {total['at_end_bytes'] / 2**20:.1f} MiB at {end:.0f} s: "
                   f"{total['growth_pct']:+.2f}% after warm-up (tritonserver alone "
                   f"{found['server']['growth_pct']:+.2f}%; {len(rows)} samples)")
        return {"interval_s": self.interval, "warmup_s": warmup, "end_s": end, **total,
                "server": found["server"], "stubs": found["stubs"], "summary": summary,
                "samples": self.samples}
