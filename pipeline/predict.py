"""Stage: run an exported model on a user's array file, after checking the file against
the model's input contract.

    python -m pipeline predict --model classifier --input x.npy
    python -m pipeline predict --model forecaster --input x.csv --runtime torchscript --output y.npy
    python -m pipeline predict --version-dir exported/model_repository/classifier_onnx/1 \
        --public-key .keys/signing.pub --input x.npy

A published version folder (`--version-dir`) is loaded only after its signature, every
file's hash and its place check out against `--public-key` (publishing/trust.py); its
runtime is the folder's own (model.onnx or model.pt).

The artifact is loaded through `open_runners`, so the manifest (sizes and sha256 of every
file) is checked before anything is opened. Then the input policy (stated in `predict
--help`) is enforced before inference, each violation one `InputError` line naming the
file and what is wrong, e.g. `x.npy: NaN at index (3, 12, 0)`:

  .npy one array; .npz exactly one array, or one named as the spec's input; .csv one
  sequence (rows = steps, columns = features, no header) read as batch 1. Pickled
  (object) arrays are never loaded. Rank 3 (batch, seq, features); batch, seq >= 1;
  features = the spec's input_size; dtype the spec's (float32), float64 converted (an
  overflow is refused), any other refused; no NaN or Inf (the first one's index is given).
  A token model (a chain starting with an Embedding, issue 22) takes integer ids instead:
  rank 2 (batch, seq), every id in 0..vocabulary-1; its .csv holds one id per row. A
  per-step model writes (batch, seq, outputs); a model whose forward packs its input takes
  each row's length from the .npz's `lengths` array (batch,) in 1..seq beside `input`, and
  runs every row at full length without one.

    python -m pipeline predict --model forecaster --input step.npz --stream --output next.npz

`--stream` runs the stream artifact (model_stream.*, carried state and per-row lengths):
the .npz holds `input` (batch, seq, features) zero-padded past each row's length,
`lengths` (batch,) integers in 1..seq and optionally the state, `h_in` (batch, hidden),
or (batch, layers, hidden) for several layers, + `c_in` for an LSTM, zeros when absent (a
new stream); out-of-range lengths, a batch mismatch and seq 0 are refused
(`check_stream_feeds`). It prints or saves (.npz) `output` and the state (`h_out`[,
`c_out`]); feed it back as `h_in`[, `c_in`] to continue.
"""
from __future__ import annotations

import contextlib
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .bounded import check_npy, check_npz
from .contract import check_input, check_lengths, check_stream_feeds
from .errors import InputError, PipelineError, first_line
from .specs import ModelSpec

SUFFIXES = (".npy", ".npz", ".csv")
NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


@dataclass(frozen=True)
class PredictConfig:
    model: str | None                # None with version_dir: the folder names it
    input: Path
    runtime: str = "onnx"
    output: Path | None = None       # a .npy file for the (batch, outputs) array
    out: Path = Path("exported")
    version_dir: Path | None = None  # a published version folder instead of <out>/<model>
    public_key: Path | None = None   # required with version_dir: who must have signed it
    stream: bool = False             # the stream artifact; input and output are .npz
    precision: str = "fp32"          # a variant of `runtime` verify let through (issue 23)


def _read_array(path: Path, spec: ModelSpec) -> np.ndarray:
    """The raw array in `path`, by its suffix; no policy checks yet."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
                         f"give {', '.join(SUFFIXES)}")
    with _reading(path):
        if suffix == ".csv":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)   # "input contained no data"
                table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
            if table.size == 0:
                raise InputError(f"{path}: no rows; a .csv holds one sequence, a row per step")
            if spec.input_kind == "tokens":             # one id per row (or one row of ids)
                if min(table.shape) != 1 or not np.array_equal(table, np.round(table)):
                    raise InputError(f"{path}: a token model's .csv holds one sequence of "
                                     "integer ids, one per row")
                return table.reshape(1, -1).astype(np.int64)     # (1, steps)
            return table[None]                          # (1, steps, features)
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
        if not head.startswith(NPY_MAGIC if suffix == ".npy" else ZIP_MAGIC):
            raise InputError(f"{path}: not a {suffix} file (it does not start like one)")
        if suffix == ".npy":
            check_npy(path)                 # the header's shape, before numpy allocates it
            return np.load(path, allow_pickle=False)
        check_npz(path)
        with np.load(path, allow_pickle=False) as archive:
            names = archive.files
            if len(names) == 1:
                return archive[names[0]]
            if spec.input_name in names:
                return archive[spec.input_name]
            raise InputError(f"{path}: holds arrays {names}; give exactly one, or name one "
                             f"{spec.input_name!r}")


def _packed_lengths(path: Path, spec: ModelSpec, shape: tuple[int, int]) -> np.ndarray:
    """A packed forward's lengths: the .npz's `lengths` array (checked: integers in
    1..seq, one per row), else every row full length."""
    batch, seq = shape
    if path.suffix.lower() == ".npz":
        with _reading(path), np.load(path, allow_pickle=False) as archive:
            if spec.lengths_name in archive.files:
                return check_lengths(np.asarray(archive[spec.lengths_name]), batch, seq,
                                     str(path), spec.lengths_name)
    return np.full(batch, seq, np.int64)


@contextlib.contextmanager
def _reading(path: Path):
    """Turn a numpy reader's failures into one-line InputErrors; pickles are never loaded."""
    try:
        yield
    except InputError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(f"{path}: holds pickled Python objects; only numeric arrays "
                             "are loaded") from None
        raise InputError(f"{path}: unreadable ({first_line(exc)})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: unreadable ({first_line(exc)})") from None


def check_source(model: str | None, version_dir, public_key) -> None:
    """--model, or --version-dir with --public-key: refused otherwise, before any work."""
    if (model is None) == (version_dir is None):
        raise PipelineError("give --model (a model under --out) or --version-dir (a published "
                            "version), one of them")
    if (version_dir is None) != (public_key is None):
        raise PipelineError("--version-dir and --public-key go together: a published version "
                            "is loaded only once its signature checks out")


def load_stream_input(path: str | Path, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Read a stream .npz ({input, lengths[, h_in]}) and enforce `check_stream_feeds`."""
    path = Path(path)
    names = [t.name for t in spec.stream_inputs]
    if path.suffix.lower() != ".npz":
        raise InputError(f"{path}: --stream takes an .npz holding {names[0]!r}, {names[1]!r} "
                         f"and optionally {' and '.join(map(repr, names[2:]))}")
    with _reading(path):
        with open(path, "rb") as f:
            if not f.read(len(ZIP_MAGIC)).startswith(ZIP_MAGIC):
                raise InputError(f"{path}: not a .npz file (it does not start like one)")
        check_npz(path)
        with np.load(path, allow_pickle=False) as archive:
            extra = sorted(set(archive.files) - set(names))
            if extra:
                raise InputError(f"{path}: unexpected arrays {extra}; give {names}")
            feeds = {name: archive[name] for name in archive.files}
    return check_stream_feeds(feeds, spec, str(path))


def load_input(path: str | Path, spec: ModelSpec) -> np.ndarray:
    """Read `path` (.npy, .npz or .csv) and enforce the input policy; InputError if it breaks it."""
    path = Path(path)
    return check_input(_read_array(path, spec), spec, str(path))


def format_rows(y: np.ndarray, spec: ModelSpec) -> list[str]:
    """One line per sequence: the predicted class and logits, or the forecast values; for
    a per-step model the class of every step, or every step's values."""
    if y.ndim == 3:                                     # (batch, seq, outputs)
        if spec.task == "classification":
            return [f"{i}: classes per step [{', '.join(str(int(c)) for c in row.argmax(-1))}]"
                    for i, row in enumerate(y)]
        return [f"{i}: per step [" + "; ".join(", ".join(f"{v:.6g}" for v in step)
                                              for step in row) + "]" for i, row in enumerate(y)]
    lines = []
    for i, row in enumerate(y):                         # row: (output_size,)
        values = ", ".join(f"{v:.6g}" for v in row)
        if spec.task == "classification":
            lines.append(f"{i}: class {int(row.argmax())}  logits [{values}]")
        else:
            lines.append(f"{i}: {values}")
    return lines


def main(config: PredictConfig, log: Callable[[str], None] = print) -> dict:
    """Check the manifest, load the artifact, check the input, run it; return
    {"spec", "runtime", "output": (batch, output_size) array}, saved when config.output."""
    from .fsio import atomic_path
    from .runtimes import open_runners

    suffix = ".npz" if config.stream else ".npy"
    if config.output is not None:                       # refuse before any work is done
        if Path(config.output).suffix != suffix:
            raise PipelineError(f"--output {config.output}: must be a {suffix} file")
        if not Path(config.output).parent.is_dir():
            raise PipelineError(f"--output {config.output}: folder {Path(config.output).parent} "
                                "does not exist")
    check_source(config.model, config.version_dir, config.public_key)
    if config.version_dir is not None and config.precision != "fp32":
        raise PipelineError("--precision goes with --model; a published version folder holds "
                            "one file and says its precision itself")
    if config.version_dir is not None:
        from .publishing.trust import open_published
        runner = open_published(config.version_dir, config.public_key, device="cpu")
        if (len(runner.inputs) > 1) != config.stream:   # a stream model takes lengths, h_in
            raise PipelineError(f"{config.version_dir}: {'not ' if config.stream else ''}a "
                                f"stream model; {'drop' if config.stream else 'give'} --stream")
    elif config.precision != "fp32":
        runner = _variant_runner(config)
    elif config.stream:
        from .runtimes import open_stream_runners
        (runner,) = open_stream_runners(Path(config.out) / config.model, (config.runtime,),
                                        device="cpu")
    else:
        (runner,) = open_runners(Path(config.out) / config.model, (config.runtime,), device="cpu")
    if config.stream:
        return _main_stream(runner, config, log)
    spec = runner.spec
    x = load_input(config.input, spec)                  # (batch, seq, features) or ids
    feeds = {spec.input_name: x}
    if spec.takes_lengths:                              # a packed forward: (batch,)
        feeds[spec.lengths_name] = _packed_lengths(Path(config.input), spec, x.shape[:2])
    y = runner.run(feeds)[spec.output_name]             # (batch, [seq,] output_size)
    log(f"{spec.name} ({runner.name}): {x.shape} -> {y.shape}")
    if config.output is not None:
        with atomic_path(config.output) as tmp, open(tmp, "wb") as f:
            np.save(f, y, allow_pickle=False)           # a file object: np.save adds no suffix
    return {"spec": spec, "runtime": runner.name, "output": y}


def _variant_runner(config: PredictConfig):
    """The runner of a precision variant verify let through (its stream file with
    --stream), one thread as verify ran it (int8 quantizes by the rows a thread gets); an
    unverified or failed pair is one line with its figures."""
    from .checkpoint import read_config
    from .manifest import read_manifest
    from .precision.choice import load_pair, pair_name, verified_pair
    model_dir = Path(config.out) / config.model
    verified_pair(model_dir, config.runtime, config.precision)
    spec = read_config(model_dir)["recipe"].model
    runner = load_pair(model_dir, spec, config.runtime, config.precision, {}, threads=1,
                       stream=config.stream)
    if runner is None:
        entry = read_manifest(model_dir).get("precisions", {}).get(config.precision, {})
        why = entry.get("skipped", {}).get("stream", "none was exported")
        raise PipelineError(f"{config.model}: {pair_name(config.runtime, config.precision)} "
                            f"has no stream file ({why})")
    return runner


def _main_stream(runner, config: PredictConfig, log: Callable[[str], None]) -> dict:
    """`main` for a stream runner: {"spec", "runtime", "output", "h_out"}."""
    from .fsio import atomic_path

    spec = runner.spec
    feeds = load_stream_input(config.input, spec)
    result = runner.run(feeds)               # {output: (batch, O), h_out: (batch, [L,] H), ...}
    y = result[spec.output_name]
    states = {o: result[o] for _, o in spec.state_names}
    log(f"{spec.name} ({runner.name}, stream): {feeds[spec.input_name].shape}, lengths "
        f"{feeds[spec.lengths_name].tolist()} -> {y.shape}, "
        + ", ".join(f"{name} {s.shape}" for name, s in states.items()))
    if config.output is not None:
        with atomic_path(config.output) as tmp, open(tmp, "wb") as f:
            np.savez(f, **{spec.output_name: y, **states})
    return {"spec": spec, "runtime": runner.name, "output": y, **states}
