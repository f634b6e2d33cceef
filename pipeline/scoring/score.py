"""Stage: score a dataset with a verified artifact, locally or on a Ray cluster.

    python -m pipeline score --model classifier --input seqs.parquet --output scores.parquet
    python -m pipeline score --model forecaster --input data/ --output y.parquet --bad-rows skip
    python -m pipeline score --model classifier --input s3://... --output y.parquet \
        --engine ray --ray-address ray://head:10001
    >>> main(ScoreConfig("classifier", Path("seqs.parquet"), Path("scores.parquet")))

Both engines read the input (dataset.py), check each row (bad ones fail the run or go to
the rejects file), run exact-length groups through the artifact (grouping.py) and write one
output Parquet atomically (output.py). The artifact is opened by `open_runner`: the
manifest is checked before anything is loaded (`open_runners`), or for a published
version folder its signature, every file's hash and its place (`open_published`). The
local engine (local.py) calls it once; the Ray engine (ray_engine.py) in every actor, on the
actor's own copy of the files, before that actor loads them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import PipelineError

ENGINES = ("local", "ray")
BAD_ROWS = ("fail", "skip")
DEFAULT_BATCH_ROWS = 16384     # rows held for grouping (local) / per actor call (ray)


@dataclass(frozen=True)
class ScoreConfig:
    model: str | None                 # a model under `out`; None with version_dir
    input: Path                       # .parquet, a folder of them, or .npz
    output: Path                      # .parquet; rejects go to <stem>.rejects.parquet
    out: Path = Path("exported")
    runtime: str = "onnx"             # any of pipeline.runtimes.RUNTIMES
    engine: str = "local"             # local | ray
    bad_rows: str = "fail"            # fail | skip
    batch_rows: int = DEFAULT_BATCH_ROWS
    threads: int = 1                  # intra-op threads per session (each Ray actor's too)
    id_column: str = "id"
    sequence_column: str = "sequence"
    version_dir: Path | None = None   # a published version folder instead of out/model
    public_key: Path | None = None    # required with version_dir
    ray_address: str | None = None    # join this cluster; None: start a local Ray, stop it
    actors: int | None = None         # Ray actor pool size; None: one per free CPU
    actor_cpus: float | None = None   # CPUs each actor asks Ray for; None: threads
    progress: bool = True
    prefetch: bool = True             # local: decode and check the next batch meanwhile
    precision: str = "fp32"           # a verified precision variant of `runtime` (issue 23)


@dataclass(frozen=True)
class Artifact:
    """Where the model comes from; small and picklable, so Ray actors open it themselves."""
    model_dir: Path | None
    runtime: str
    version_dir: Path | None = None
    public_key: Path | None = None
    precision: str = "fp32"


def open_runner(artifact: Artifact, threads: int):
    """Check, then load: the manifest (model folder) or the signature (version folder)."""
    if artifact.version_dir is not None:
        from ..publishing.trust import open_published
        runner = open_published(artifact.version_dir, artifact.public_key, device="cpu",
                                threads=threads)
        if len(runner.inputs) > 1:
            raise PipelineError(f"{artifact.version_dir}: a stream model (inputs "
                                f"{', '.join(runner.inputs)}); score the plain one "
                                f"(<model>_onnx or <model>_torchscript)")
        return runner
    if artifact.precision != "fp32":      # a variant verify let through (pipeline/precision)
        from ..precision.choice import open_verified_pair
        return open_verified_pair(artifact.model_dir, artifact.runtime, artifact.precision,
                                  threads)
    from ..runtimes import open_runners
    # every exact-length group is a new input shape (shapes_vary: no per-shape memory plan)
    (runner,) = open_runners(artifact.model_dir, (artifact.runtime,), device="cpu",
                             threads=threads, shapes_vary=True)
    return runner


def check_config(config: ScoreConfig) -> Artifact:
    """Refuse a bad combination before any work; return where the artifact comes from."""
    if config.engine not in ENGINES:
        raise PipelineError(f"--engine {config.engine!r}: choose {' or '.join(ENGINES)}")
    if config.bad_rows not in BAD_ROWS:
        raise PipelineError(f"--bad-rows {config.bad_rows!r}: choose {' or '.join(BAD_ROWS)}")
    if config.batch_rows < 1 or config.threads < 1 or (config.actors or 1) < 1:
        raise PipelineError("--batch-size, --threads and --actors must be >= 1")
    if config.actor_cpus is not None and config.actor_cpus <= 0:
        raise PipelineError("--actor-cpus must be > 0")
    if not config.id_column or not config.sequence_column or \
            config.id_column == config.sequence_column:
        raise PipelineError("--id-column and --sequence-column must be two different, "
                            "non-empty names")
    output = Path(config.output)
    if output.suffix != ".parquet":
        raise PipelineError(f"--output {output}: must be a .parquet file")
    if not output.parent.is_dir():
        raise PipelineError(f"--output {output}: folder {output.parent} does not exist")
    if output.is_dir():
        raise PipelineError(f"--output {output}: is a folder; give a .parquet file")
    source = Path(config.input).resolve()
    if source == output.resolve() or (source.is_dir() and source in output.resolve().parents):
        raise PipelineError(f"--output {output}: inside --input {config.input}; a later run "
                            "would read it as input")
    if config.engine == "local" and (config.ray_address or config.actors or config.actor_cpus):
        raise PipelineError("--ray-address, --actors and --actor-cpus go with --engine ray")
    from ..predict import check_source
    from ..runtimes import select_runtimes
    check_source(config.model, config.version_dir, config.public_key)
    select_runtimes((config.runtime,), ())        # unknown or not installed: one line
    if config.version_dir is not None:
        if config.precision != "fp32":
            raise PipelineError("--precision goes with --model; a published version folder "
                                "holds one file and says its precision itself")
        return Artifact(None, config.runtime, Path(config.version_dir), Path(config.public_key))
    if config.precision != "fp32":        # unverified or outside budget: one line, no work
        from ..precision.choice import verified_pair
        verified_pair(Path(config.out) / config.model, config.runtime, config.precision)
    return Artifact(Path(config.out) / config.model, config.runtime, precision=config.precision)


def main(config: ScoreConfig, log: Callable[[str], None] = print) -> dict:
    """Score config.input into config.output; return the summary
    {"model", "runtime", "engine", "rows", "rejected", "seconds", "rows_per_s", "output",
    "rejects", "row_ids" (True: the input had no id column, row numbers are the ids)}."""
    artifact = check_config(config)
    if config.engine == "ray":
        from .ray_engine import score_ray
        return score_ray(config, artifact, log)
    from .local import score_local
    return score_local(config, artifact, log)


def summary_line(result: dict) -> str:
    rejects = f"; rejects -> {result['rejects']}" if result["rejects"] else ""
    ids = "; ids are row numbers from 0 (the input has no id column)" \
        if result.get("row_ids") else ""
    return (f"{result['model']} ({result['runtime']}, {result['engine']}): scored "
            f"{result['rows']:,} rows, rejected {result['rejected']:,}, in "
            f"{result['seconds']:.2f} s ({result['rows_per_s']:,.0f} rows/s) -> "
            f"{result['output']}{rejects}{ids}")
