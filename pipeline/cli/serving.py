"""The serving commands: serve (a real tritonserver on the repository) and loadtest."""
from __future__ import annotations

import errno
import re
import signal
import threading
from pathlib import Path

import click

from ..errors import PipelineError
from .common import domain_errors

registry_option = click.option(
    "--registry", default="exported/model_repository", show_default=True, metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path), help="Published Triton model repository.")
env_option = click.option(
    "--serve-env", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
    help="Environment with tritonserver and the backends' Python (`make serve-env`). "
         "Default: .venv-serve in the project.")


# Triton's own defaults, so `curl localhost:8000/v2/health/ready` works as every Triton guide
# says; 8003 is serve's (the watchdog's /metrics).
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002, "status": 8003}


def _port(name: str, what: str = ""):
    return click.option(f"--{name}-port", type=click.IntRange(0, 65535), default=DEFAULT_PORTS[name],
                        show_default=True, help=f"{what or name} port; 0 picks a free one.")


def _server_config(registry, host, http_port, grpc_port, metrics_port, serve_env, log_file=None,
                   public_key=None, exit_timeout=None):
    from ..serving.server import ServeConfig
    extra = {"serve_env": serve_env} if serve_env else {}
    if exit_timeout is not None:
        extra["exit_timeout"] = exit_timeout
    return ServeConfig(registry, host, http_port, grpc_port, metrics_port, log_file=log_file,
                       public_key=public_key, **extra)


def _status_server(watchdog, host, port):
    from ..errors import ServeError
    from ..serving.watch import serve_status
    try:
        return serve_status(watchdog, host, port)
    except OSError as exc:
        raise ServeError(f"{host}:{port} (status port) is already in use; choose another "
                         "--status-port, or 0 for a free one" if exc.errno == errno.EADDRINUSE
                         else f"status port {host}:{port}: {exc.strerror or exc}") from None


@click.command()
@registry_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@_port("http")
@_port("grpc")
@_port("metrics", "Triton's Prometheus metrics")
@_port("status", "serve's own /metrics (the watchdog's reloads)")
@env_option
@click.option("--log", "log_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Keep tritonserver's log in FILE (appended). Default: dropped at exit.")
@click.option("--public-key", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Serve only if every version is signed by this key (`keygen`'s signing.pub); "
                   "checked at start, at every reload and before the watchdog reloads a model.")
@click.option("--watch-interval", type=click.FloatRange(min=0), default=1.0, show_default=True,
              metavar="S", help="Seconds between the watchdog's checks of every model (its "
              "backend processes and a probe request); 0 turns the watchdog off.")
@click.option("--drain-timeout", type=click.IntRange(1, 600), default=5, show_default=True,
              metavar="S", help="At Ctrl-C or SIGTERM, seconds the requests under way get "
              "to finish (new ones are refused meanwhile).")
@click.option("--stop-with-parent", is_flag=True,
              help="Drain and stop when the process that started serve dies, even by SIGKILL "
                   "(`make serve` uses it: a supervisor killing make stops the server too).")
@domain_errors
def serve(registry, host, http_port, grpc_port, metrics_port, status_port, serve_env, log_file,
          public_key, watch_interval, drain_timeout, stop_with_parent):
    """Serve the published repository, unchanged, in a real tritonserver on the CPU.

    Checks every published version (its manifest; its signature with --public-key) first,
    starts tritonserver with this package's onnxruntime and pytorch backends on Triton's
    usual ports, prints the endpoints and models once every model is ready, and runs until
    Ctrl-C or SIGTERM: requests under way finish (--drain-timeout), then server, stubs and
    shared memory are gone, exit 0. A watchdog reloads a model whose backend dies or stops
    answering (logged, counted on --status-port's /metrics). SIGHUP checks the repository
    again and loads newly published versions.

    \b
    Example:
      python -m pipeline serve --registry exported/model_repository --public-key .keys/signing.pub
      curl localhost:8000/v2/health/ready
    """
    from ..serving.net import check_host
    from ..serving.procs import stop_with_parent as set_parent_death_signal
    from ..serving.server import TritonServer, server_failed
    from ..serving.watch import Watchdog

    wake, asked = threading.Event(), set()

    def on_signal(signum, _frame):
        if signum == signal.SIGHUP:
            asked.add("reload")
        elif "ready" not in asked:   # still starting: abort start(), which stops what it began
            raise KeyboardInterrupt
        else:                        # serving: the loop below stops the server
            asked.add("stop")
        wake.set()

    # SIGINT too: a shell may have started us with SIGINT ignored (`cmd &`), Ctrl-C must work.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    if stop_with_parent:
        set_parent_death_signal(signal.SIGTERM)
    config = _server_config(registry, host, http_port, grpc_port, metrics_port, serve_env, log_file,
                            public_key, drain_timeout)
    say = lambda s: click.echo(s, err=True)  # noqa: E731
    server = TritonServer(config, log=say)
    watchdog = Watchdog(server, interval=watch_interval or 1.0, log=say)
    check_host(host)
    status = _status_server(watchdog, host, status_port)   # a taken port: said before any start
    try:
        with server:
            asked.add("ready")
            if watch_interval:
                watchdog.start()
            click.echo(f"tritonserver ready: HTTP {server.urls['http']}, gRPC {server.urls['grpc']}, "
                       f"metrics {server.urls['metrics']}, status "
                       f"http://{host}:{status.server_address[1]}/metrics")
            for name, versions in server.models.items():
                click.echo(f"  {name}: versions {', '.join(map(str, versions))}")
            click.echo("Ctrl-C or SIGTERM stops it; SIGHUP loads newly published versions.", err=True)
            while "stop" not in asked:
                wake.wait(0.5)
                wake.clear()
                if "reload" in asked:
                    asked.discard("reload")
                    try:
                        models = server.reload()
                        click.echo("reloaded: " + ", ".join(f"{n} v{max(v)}" for n, v in models.items()))
                    except PipelineError as exc:   # a bad new version: the old ones keep serving
                        click.echo(f"reload refused: {exc}", err=True)
                if not server.running():
                    raise click.ClickException(server_failed(server.log_text(), "exited by itself"))
            watchdog.stop()     # the models stop answering while the server drains
            say(f"draining: requests under way get up to {drain_timeout} s; new ones are refused")
    finally:
        watchdog.stop()
        status.shutdown()
        status.server_close()
    click.echo("tritonserver stopped")


@click.command()
@registry_option
@click.option("--model-name", "model", default="forecaster_onnx", show_default=True,
              help="Triton model to load (e.g. classifier_torchscript, or a stream model "
                   "such as forecaster_stream_onnx: each client then carries its own state).")
@click.option("--protocol", type=click.Choice(["grpc", "http"]), default="grpc", show_default=True)
@click.option("--url", metavar="HOST:PORT",
              help="A running server's endpoint for --protocol. Default: start one on --registry.")
@click.option("--concurrency", default="1,16,64", show_default=True, metavar="N,N,...",
              help="Concurrent clients per level, comma-separated.")
@click.option("--duration", type=click.FloatRange(min=0.5), default=10.0, show_default=True,
              help="Seconds per level.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seq", type=click.IntRange(min=1), default=7, show_default=True,
              help="Steps per request (stateless models; a stream model gets one).")
@click.option("--steps", type=click.IntRange(1, 300), default=64, show_default=True,
              help="Stream models: steps per stream before a client starts a new one (up to "
                   "300, the longest stream `verify` proves).")
@click.option("--out", "out", default="exported/loadtest", show_default=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path), help="Writes loadtest.json and .png here.")
@env_option
@domain_errors
def loadtest(registry, model, protocol, url, concurrency, duration, batch, seq, steps, out,
             serve_env):
    """Load-test a served model: N concurrent clients, throughput and latency per level.

    Every answer is checked against the same published artifact run in this process; any
    error or wrong answer makes the exit status 1. Without --url a tritonserver is started
    on --registry for the run (free ports) and stopped after it, and the resident memory of
    it and its backend stubs is sampled every second (`make soak`: 16 clients, 600 s).

    \b
    Example:
      python -m pipeline loadtest --model-name classifier_onnx --protocol http --concurrency 1,8
      python -m pipeline loadtest --model-name forecaster_stream_onnx --steps 64
    """
    from ..serving.loadtest import LoadConfig, main, table
    from ..serving.server import TritonServer

    try:
        levels = tuple(int(c) for c in concurrency.split(","))
        if not levels or min(levels) < 1:
            raise ValueError
    except ValueError:
        raise click.BadParameter("comma-separated positive integers, e.g. 1,16,64",
                                 param_hint="--concurrency") from None

    if url and not re.fullmatch(r"[^\s:]+:\d{1,5}", url):
        raise click.BadParameter(f"{url!r} is not HOST:PORT", param_hint="--url")

    def run(endpoint, server_pid=None):
        config = LoadConfig(endpoint, registry, model, protocol, levels, duration, batch, seq,
                            steps, out, server_pid=server_pid)
        return main(config, log=lambda s: click.echo(s, err=True))

    if url:
        report = run(url)
    else:
        with TritonServer(_server_config(registry, "127.0.0.1", 0, 0, 0, serve_env)) as server:
            report = run(server.urls[protocol], server.process.pid)
    click.echo(table(report))
    click.echo(f"-> {', '.join(report.get('files', []))}")
    if report["errors"] or report["wrong"]:
        first = next((lv["first_error"] for lv in report["levels"] if lv["first_error"]), None)
        raise click.ClickException(f"{report['errors']} errors, {report['wrong']} wrong answers"
                                   + (f"; first error: {first}" if first else ""))
