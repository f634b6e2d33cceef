"""The Ray engine: the same job on Ray Data, for data that outgrows one machine.

    python -m pipeline score --model classifier --input /shared/seqs/ --output y.parquet \
        --engine ray --ray-address HEAD:6379 --threads 2

    read_parquet(files) -> map_batches(ScoreActor, ActorPoolStrategy(size=actors),
                                       num_cpus=threads) -> iter_batches -> one output file

Each actor gets the artifact's bytes from the driver (no shared model folder needed), lays
them out in a temp folder and opens them with `open_runner` there: the manifest (or, with
--public-key, the release signature) is checked on the actor's own copy before it is
loaded. Its ONNX Runtime session has intra_op_num_threads = its num_cpus (ORT ignores
OMP_NUM_THREADS, and more threads than CPUs would oversubscribe the node). Each actor call
takes `--batch-size` rows, checks them and runs them in exact-length groups (grouping.py)
and returns id, output, label and reason (null for a good row).

The driver writes: it streams the results (a few floats per row, ~1% of the input) into
the same single output file, atomically, as the local engine, so both engines give the same
file and --bad-rows fail stops at the first bad row it receives. A worker node that dies
mid-job loses nothing: Ray Data restarts the actors and retries their tasks
(max_restarts/max_task_retries -1) and the streamed results are consumed exactly once.

Without --ray-address a local Ray is started and stopped. Ray 2.60 turns token
authentication on for a new local cluster and would write ~/.ray/auth_token; a token is
given in RAY_AUTH_TOKEN for this run instead (unless the caller set up authentication).
Ray's logs and session files go under RAY_TMPDIR (default /tmp/ray).
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import PipelineError, first_line
from .output import Progress, ScoreWriter, rejects_path
from .score import Artifact, ScoreConfig, open_runner

if TYPE_CHECKING:
    import pyarrow as pa

INSTALL_HINT = "pip install '.[scale]' (or: make install)"
_TOKEN: dict[str, str] = {}   # this process's token for the local Rays it starts
BLOCK_BYTES = 16 * 2**20     # Ray Data's default 128 MiB would give a 300 MB file 3 blocks


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise PipelineError(f"--engine ray needs Ray Data, which is not installed: "
                            f"{INSTALL_HINT}") from None
    return ray


def artifact_files(artifact: Artifact) -> dict[str, bytes]:
    """{relative path: bytes} of what the actors need; checked there, not here."""
    from ..manifest import MANIFEST, read_manifest, safe_member
    if artifact.version_dir is not None:
        folder = Path(artifact.version_dir)
        where = f"{folder.resolve().parent.name}/{folder.resolve().name}"   # signed place
        files = {f"{where}/{p.name}": p.read_bytes() for p in folder.iterdir() if p.is_file()}
        files["public.pem"] = Path(artifact.public_key).read_bytes()
        return files
    folder = Path(artifact.model_dir)
    names = [MANIFEST, *read_manifest(folder)["files"]]
    if artifact.precision != "fp32":     # the actor checks the pair verify let through
        names.append("verification.json")
    return {name: safe_member(folder, name).read_bytes() for name in names}


class ScoreActor:
    """One Ray actor: the artifact checked and loaded once, then a batch per call.

    `files` is artifact_files() or a one-item list holding its ObjectRef: a reference
    nested in a list is passed as is (not resolved by Ray), so the constructor's arguments
    stay small, and a restarted actor fetches the bytes again from the driver's copy.
    """

    def __init__(self, files, artifact: Artifact, threads: int, id_column: str,
                 sequence_column: str, repeated=None):
        if isinstance(files, list):
            import ray
            files = ray.get(files[0])
        self.folder = Path(tempfile.mkdtemp(prefix="score-artifact-"))
        for name, data in files.items():
            path = self.folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if artifact.version_dir is not None:
            local = replace(artifact, version_dir=self.folder / next(
                n.rsplit("/", 1)[0] for n in files if "/" in n),
                public_key=self.folder / "public.pem")
        else:
            local = replace(artifact, model_dir=self.folder)
        self.runner = open_runner(local, threads)   # manifest / signature, then load
        self.columns, self.repeated = (id_column, sequence_column), repeated

    def __call__(self, batch: "pa.Table") -> "pa.Table":
        """(rows,) id, sequence -> (rows,) id, output, [label,] reason (null when good)."""
        import pyarrow as pa

        from .grouping import group_batch, run_group, step_width
        from .output import output_schema, output_table
        from .rows import check_batch

        spec = self.runner.spec
        id_column, sequence_column = self.columns
        schema = output_schema(spec, id_column, batch.schema.field(id_column).type)
        schema = schema.append(pa.field("reason", pa.string()))
        if not batch.num_rows:
            return schema.empty_table()
        (record,) = batch.combine_chunks().to_batches()          # one contiguous batch
        checked = check_batch(record, spec, id_column, sequence_column, self.repeated)
        parts = []
        for group in group_batch(checked, step_width(spec)):
            table = output_table(spec, schema.remove(len(schema) - 1), group.ids,
                                 run_group(self.runner, group))
            parts.append(table.append_column("reason", pa.nulls(len(group.ids), pa.string())))
        if len(checked.bad_ids):
            n = len(checked.bad_ids)
            columns = [checked.bad_ids] + [pa.nulls(n, f.type) for f in schema][1:-1] + \
                [pa.array(checked.bad_reasons, pa.string())]
            parts.append(pa.Table.from_arrays(columns, schema=schema))
        return pa.concat_tables(parts)

    def __del__(self):
        shutil.rmtree(getattr(self, "folder", ""), ignore_errors=True)


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None):
    """Join `address`, or start a local Ray (token in the environment, not in ~/.ray) and
    stop it on the way out, whatever happens."""
    ray = import_ray()
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_TOKEN",)}
    # (a token in the environment is harmless where the caller set RAY_AUTH_MODE=disabled;
    # Ray itself sets RAY_AUTH_MODE=token in this process once it has started one)
    own_auth = address is None and not any(os.environ.get(k) for k in (
        "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")) and \
        not (Path.home() / ".ray" / "auth_token").exists()
    if own_auth:
        # Ray turns token auth on (and says so, a warning we silence) and finds this token
        # first, so it writes none. RAY_AUTH_MODE is read once at import: left alone.
        # One token per process: Ray's loader caches the first it reads, so a second
        # local Ray in this process with another token could not reach its own GCS.
        os.environ["RAY_AUTH_TOKEN"] = _TOKEN.setdefault("token", secrets.token_hex(32))
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    try:
        try:
            # "local": a new Ray even where one runs already (address=None would join it)
            ray.init(address=address or "local", num_cpus=None if address else num_cpus,
                     include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise PipelineError(f"Ray: cannot {'join ' + address if address else 'start'} "
                                f"({first_line(exc)})") from None
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def score_ray(config: ScoreConfig, artifact: Artifact, log: Callable[[str], None]) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc

    from .dataset import open_dataset
    from .ids import refuse_repeated, repeated_ids

    runner = open_runner(artifact, 1)      # the driver refuses a bad artifact before Ray
    spec = runner.spec
    data = open_dataset(config.input, spec, config.id_column, config.sequence_column)
    files = artifact_files(artifact)
    cpus, per_actor = os.cpu_count() or 1, config.actor_cpus or config.threads
    actors = config.actors or max(1, int(cpus // per_actor) - 1)
    skip = config.bad_rows == "skip"
    repeated = repeated_ids(data, spec)          # the whole input's, before the actors split it
    if not skip:
        refuse_repeated(repeated, config.id_column)
    # A local Ray gets a logical CPU beyond the actors' for the read tasks: an actor pool
    # holding every CPU would leave the Parquet reads unscheduled (a deadlock).
    with ray_session(config.ray_address, max(cpus, int(actors * per_actor) + 1)) as ray:
        if config.ray_address and not config.actors:     # the cluster's CPUs, less one
            cluster_cpus = ray.cluster_resources().get("CPU", 1)
            actors = max(1, int(cluster_cpus // per_actor) - 1)
        logging.getLogger("ray.data").setLevel(logging.ERROR)   # "progress bars disabled"...
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False                 # ours counts rows instead
        context.print_on_execution_start = False
        context.target_max_block_size = BLOCK_BYTES
        # Parquet through Ray Data's V1 reader: V2 (the default since 2.5x) reads the files'
        # footers in FooterReader actors spread over the nodes, with no retry, so a node lost
        # while files were still listed failed the whole job; V1's read tasks are retried.
        context.use_datasource_v2 = False
        if data.files[0].suffix == ".npz" or data.row_ids:    # ids numbered here, in order
            tables = [pa.Table.from_batches([b]) for b in data.batches(config.batch_rows, spec)]
            dataset = ray.data.from_arrow(tables)
        else:
            # a read task per file at least, and blocks of <= BLOCK_BYTES, so that even a
            # single file reaches every actor
            dataset = ray.data.read_parquet(
                [str(f) for f in data.files], override_num_blocks=len(data.files)).select_columns(
                [config.id_column, config.sequence_column])
        scored = dataset.map_batches(
            ScoreActor, batch_format="pyarrow", batch_size=config.batch_rows,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=per_actor,
            fn_constructor_kwargs=dict(files=[ray.put(files)], artifact=artifact,
                                       threads=config.threads,
                                       id_column=config.id_column,
                                       sequence_column=config.sequence_column,
                                       repeated=repeated))
        progress = Progress(data.rows, log, enabled=config.progress)
        start = time.perf_counter()
        try:
            with ScoreWriter(config.output, spec, config.id_column, data.id_type, skip) as out:
                for table in scored.iter_batches(batch_format="pyarrow", batch_size=None):
                    bad = pc.is_valid(table.column("reason"))
                    rejected = table.filter(bad)
                    out.reject(rejected.column(config.id_column).combine_chunks(),
                               rejected.column("reason").to_pylist())
                    out.write_table(table.filter(pc.invert(bad)).drop_columns(["reason"]))
                    progress.update(table.num_rows)
        except Exception as exc:
            if isinstance(exc, PipelineError) or not _is_ray_error(exc):
                raise
            raise PipelineError(f"Ray job failed: {first_line(_cause(exc))}") from None
        finally:
            progress.close()
    seconds = time.perf_counter() - start
    return {"model": spec.name, "runtime": runner.name, "engine": f"ray ({actors} actors)",
            "rows": out.rows, "rejected": out.rejected, "seconds": seconds,
            "rows_per_s": (out.rows + out.rejected) / max(seconds, 1e-9),
            "output": Path(config.output), "rejects": rejects_path(config.output) if skip else None,
            "row_ids": data.row_ids}


def _is_ray_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("ray")


def _cause(exc: BaseException) -> BaseException:
    """The user's exception inside Ray's wrappers (e.g. an actor's IntegrityError)."""
    while getattr(exc, "cause", None) is not None and exc.cause is not exc:
        exc = exc.cause
    return exc
