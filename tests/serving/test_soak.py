"""The soak's memory measure (soak.py): RSS read from /proc for a process group, and growth
after warm-up computed as the docstring says, on made-up samples."""
import subprocess

import pytest

from pipeline.serving.soak import RssSampler


def test_rss_of_a_process_group_is_sampled():
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        sampler = RssSampler(child.pid)
        sampler._t0 = 0
        sampler.tick()
        (t, server, stubs, total), = sampler.samples
        assert server > 0 and stubs == 0 and total == server
    finally:
        child.kill()
        child.wait()


def test_growth_after_warm_up():
    """10 minutes: 100 MiB during warm-up, flat at 120 MiB from 30 s to 5 min, then 126 MiB:
    +5% from minute 1 to minute 10, whatever the first 30 s did."""
    sampler = RssSampler(0)
    mib = 2**20
    for t in range(601):
        total = 100 * mib if t < 30 else 120 * mib if t < 300 else 126 * mib
        sampler.samples.append([float(t), 10 * mib, total - 10 * mib, total])
    report = sampler.report()
    assert report["warmup_s"] == 60 and report["end_s"] == 600
    assert report["at_warmup_bytes"] == 120 * mib and report["at_end_bytes"] == 126 * mib
    assert report["growth_pct"] == pytest.approx(5.0)
    assert report["server"]["growth_pct"] == 0
    short = RssSampler(0)
    short.samples = [[float(t), 1, 1, 2] for t in range(21)]
    assert short.report()["warmup_s"] == 10      # a short run: the first half is warm-up
