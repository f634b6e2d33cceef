"""Stream clients for `loadtest --model-name <model>_stream_onnx`: each client carries its own
streams, one step per request, and every answer is checked afterwards.

    python -m pipeline loadtest --model-name forecaster_stream_onnx --steps 64 --concurrency 1,16,64

A client starts a stream from zero state, sends step after step (input (batch, 1, F), or
(batch, 1) token ids inside the vocabulary; lengths 1; the state it got back from the
previous step: every state output fed back as its state input, paired in order, so an LSTM's
h and c, or a chain's states of several layers, are carried like an RNN's h), and after
`steps` steps starts a new one; a request that fails ends its stream (the state is lost), and the
next begins. All requests have one shape, so Triton's dynamic batcher can merge them: this is
the one-step "bucket 1" of docs/streaming.md.

The check is independent of the stepping: after the level, each stream's inputs are run here,
in one call of the published artifact, as whole sequences (row t: the stream's first t+1 steps,
`lengths` t+1, zero state), and every answer the server gave at step t, outputs and states,
must equal row t within the verification tolerance (a per-step output: row t's step t, its
last valid one; the steps after it are padding). That holds because a stream model's
chunked and whole runs agree (proven by `verify` up to 300 steps); a state lost, crossed
between clients or applied twice would not.
"""
from __future__ import annotations

import time

import numpy as np

from .loadtest import client, close


def stream_worker(index, config, model, _pool, stop_at, record, streams):
    pairs = model.state_pairs()
    data, lengths = model.inputs[0], model.inputs[1]
    names = [t.name for t in model.outputs]
    rng = np.random.default_rng(1000 + index)      # each client its own inputs
    batch = config.batch
    module, triton = client(config.protocol, config.url)
    # One set of request objects per client, refilled each step: building them anew is most
    # of a Python client's cost per request, and it shares the cores with the server.
    shapes = {data.name: [batch, 1, *data.dims[1:]], lengths.name: [batch, *lengths.dims],
              **{i.name: [batch, *i.dims] for i, _ in pairs}}
    tensors = {t.name: module.InferInput(t.name, shapes[t.name], t.datatype) for t in model.inputs}
    tensors[lengths.name].set_data_from_numpy(lengths.wire(np.ones(batch, lengths.dtype)))
    requested = [module.InferRequestedOutput(n) for n in names]
    try:
        while time.perf_counter() < stop_at:
            xs = model.sample_steps(rng, batch, config.steps)    # (steps, batch, 1, ...)
            state = {i.name: np.zeros((batch, *i.dims), i.dtype) for i, _ in pairs}
            answers = []
            for step in range(config.steps):
                if time.perf_counter() >= stop_at:
                    break
                tensors[data.name].set_data_from_numpy(xs[step])
                for name, value in state.items():
                    tensors[name].set_data_from_numpy(value)
                start = time.perf_counter()
                try:
                    result = triton.infer(config.model, list(tensors.values()), outputs=requested)
                except Exception as exc:   # counted; the state is gone, so is the stream
                    record(time.perf_counter() - start, f"{type(exc).__name__}: {exc}", None)
                    break
                record(time.perf_counter() - start, None, False)
                got = {n: result.as_numpy(n) for n in names}
                answers.append(got)
                state = {i.name: got[o.name].reshape(batch, *i.dims) for i, o in pairs}
            if answers:
                streams.append((xs[:len(answers)], answers))
    finally:
        triton.close()


def check_streams(model, streams) -> int:
    """Steps whose answer (any output, any row) differs from the whole-sequence run."""
    run = model.runner()
    data, lengths = model.inputs[0], model.inputs[1]
    wrong = 0
    for xs, answers in streams:
        steps, batch = len(answers), xs.shape[1]
        whole = np.moveaxis(xs[:, :, 0], 0, 1)               # (batch, steps, F)
        feeds = {data.name: np.repeat(whole, steps, axis=0),  # row b*steps + t: stream b
                 lengths.name: np.tile(np.arange(1, steps + 1), batch).astype(lengths.dtype)}
        for state, _ in model.state_pairs():
            feeds[state.name] = np.zeros((batch * steps, *state.dims), state.dtype)
        want = run(feeds)
        per_step = {t.name for t in model.outputs if t.dims[:1] == (-1,)}    # (batch, seq, O)
        bad = np.zeros(steps, bool)
        for name, expected in want.items():
            if model.variant and name != model.outputs[0].name:
                continue         # a variant's states: not bounded (published.answer_tolerance)
            got = np.moveaxis(np.stack([a[name] for a in answers]), 0, 1)   # (batch, steps, ...)
            got = got.reshape(batch * steps, -1)
            if name in per_step:     # row t's valid step is its last, t: (batch * steps, O)
                expected = expected.reshape(batch, steps, steps, -1)[:, range(steps), range(steps)]
            expected = expected.reshape(batch * steps, -1)
            ok = np.array([close(g, e, model.atol, model.rtol) for g, e in zip(got, expected)])
            bad |= ~ok.reshape(batch, steps).all(axis=0)
        wrong += int(bad.sum())
    return wrong
