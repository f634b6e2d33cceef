"""Ports and plain HTTP calls to tritonserver (stdlib only: `serve` needs no client library).

Each call opens its own connection and closes it: an open keep-alive connection would make
tritonserver's shutdown wait out its `--exit-timeout-secs`.
"""
from __future__ import annotations

import http.client
import socket


def can_listen_on(host: str) -> str | None:
    """None if this machine can listen on `host`, else why not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, 0))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def check_host(host: str) -> None:
    """ServeError unless this machine can listen on `host`."""
    from ..errors import ServeError
    why = can_listen_on(host)
    if why:
        raise ServeError(f"cannot listen on host {host!r}: {why}")


def port_in_use(host: str, port: int) -> bool:
    """True when something listens on (or otherwise holds) `host:port`.

    The probe binds with SO_REUSEADDR, as tritonserver's own listeners do: a port that only
    holds connections in TIME_WAIT (a server stopped a moment ago, whose clients and
    watchdog probes leave one each for ~60 s) is free to listen on, and a plain bind would
    wrongly call it busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def free_ports(host: str, wanted: dict[str, int]) -> dict[str, int]:
    """`wanted` with every 0 replaced by a distinct port that is free now."""
    chosen, held = dict(wanted), []
    try:
        for name, port in wanted.items():
            if not port:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)    # held until all are picked, so the three differ
                sock.bind((host, 0))
                chosen[name] = sock.getsockname()[1]
    finally:
        for sock in held:
            sock.close()
    return chosen


def _request(address: str, method: str, path: str, headers: dict | None = None,
             timeout: float = 5.0, body: bytes | None = None) -> tuple[int, str]:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request(method, path, body=body if body is not None else
                           (b"" if method == "POST" else None),
                           headers={"Connection": "close", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    except OSError:       # not listening (yet), gone, or no answer within `timeout`
        return 0, ""
    finally:
        connection.close()


def http_get(address: str, path: str) -> int:
    """HTTP status of GET `path` at `host:port`; 0 when nothing answers."""
    return _request(address, "GET", path)[0]


def http_post(address: str, path: str, headers: dict | None = None,
              timeout: float = 120.0) -> tuple[int, str]:
    return _request(address, "POST", path, headers, timeout)


def http_json(address: str, path: str, payload: dict | None = None, headers: dict | None = None,
              timeout: float = 10.0) -> tuple[int, dict | None]:
    """GET `path` (or POST `payload` as JSON): (status, the JSON answer or None)."""
    import json
    body = None if payload is None else json.dumps(payload).encode()
    status, text = _request(address, "GET" if body is None else "POST", path,
                            {"Content-Type": "application/json", **(headers or {})}, timeout, body)
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, {"error": text}
