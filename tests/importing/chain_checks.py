"""The comparisons behind tests/importing/test_chains.py and test_packed.py: an artifact, in
one runtime, against the user's own torch module.

    inputs(spec, rng, batch, seq)                    seeded feeds (ragged lengths, packed)
    check_artifact(runner, spec, theirs, rng, shapes, runtime)
    check_stream(runner, spec, theirs, runtime)      ragged rows alone; chunked = whole
"""
import numpy as np
import torch

from pipeline.contract import check_stream_feeds


def inputs(spec, rng, batch, seq, longest=None):
    """Seeded inputs in the spec's kind, and ragged lengths (longest first) where it packs;
    the longest row is `seq` steps unless `longest` says otherwise."""
    if spec.input_kind == "tokens":
        x = rng.integers(0, spec.input_size, (batch, seq)).astype(np.int64)
    else:
        x = rng.standard_normal((batch, seq, spec.input_size)).astype(np.float32)
    feeds = {"input": x}
    if spec.takes_lengths:
        top = longest or seq
        feeds["lengths"] = np.sort(rng.integers(1, top + 1, batch))[::-1].copy()
        feeds["lengths"][0] = top
    return feeds


def check_artifact(runner, spec, theirs, feeds, label):
    """runner's output equals the user's forward on feeds; a per-step output has every input
    step, of which the user's forward returns the first (all, or max(lengths) where it
    pads packed steps without total_length)."""
    with torch.inference_mode():
        want = theirs(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    got = runner.run(feeds)["output"]
    if spec.per_step:
        assert got.shape[1] == feeds["input"].shape[1], label
        got = got[:, :want.shape[1]]
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5, err_msg=label)


def check_stream(runner, spec, theirs, rng, runtime):
    """Ragged rows from zero state equal each row alone; a sequence in chunks, the state
    carried, equals the whole (a per-step output: every chunk's steps, joined)."""
    x = inputs(spec, rng, 4, 15)["input"]
    lengths = np.array([15, 1, 8, 4])
    padded = x.copy()
    for i, n in enumerate(lengths):       # other values past each length
        padded[i, n:] = rng.integers(0, spec.input_size, padded[i, n:].shape) \
            if spec.input_kind == "tokens" else 1e3
    got = runner.run(check_stream_feeds({"input": padded, "lengths": lengths}, spec,
                                        "ragged"))["output"]
    with torch.inference_mode():
        for i, n in enumerate(lengths):
            row = [torch.from_numpy(x[i:i + 1, :n])] + \
                ([torch.tensor([n])] if spec.takes_lengths else [])
            want = theirs(*row).numpy()
            have = got[i:i + 1, :n] if spec.per_step else got[i:i + 1]
            np.testing.assert_allclose(have, want, atol=2e-5, rtol=2e-5,
                                       err_msg=f"{runtime} row {i} ({n} steps)")
    states, start, steps = {}, 0, []
    for n in (1, 9, 5):
        result = runner.run(check_stream_feeds({"input": x[:, start:start + n], **states,
                                                "lengths": np.full(4, n, np.int64)}, spec,
                                               "chunk"))
        states = {i: result[o] for i, o in spec.state_names}
        steps.append(result["output"])
        start += n
    with torch.inference_mode():
        whole = [torch.from_numpy(x)] + ([torch.full((4,), 15)] if spec.takes_lengths else [])
        want = theirs(*whole).numpy()
    have = np.concatenate(steps, axis=1) if spec.per_step else result["output"]
    np.testing.assert_allclose(have, want, atol=2e-5, rtol=2e-5,
                               err_msg=f"{runtime} chunked 1+9+5")
