"""A door to the session's moto server that can lose the answer to a request it has forwarded.

`LossyDoor(upstream)` listens on a port of its own and forwards every request to `upstream` (the
moto server) over HTTP/1.1 keep-alive, relaying the answer. `lose("UpdateItem", how)` makes it, for
the next request of that operation, forward the request (moto applies it) and then not answer it:

* `drop`: close the client's connection without a byte of answer (a connection reset);
* `timeout`: hold the answer past the client's read timeout (`hold` seconds), then close;
* `5xx`: answer `500 InternalServerError`, as DynamoDB may after applying a write.

`between` (optional) runs after the request was applied and before its answer is lost: other
requests landing in the meantime. Django-free, like the gate.
"""

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOW = ("drop", "timeout", "5xx")


class LossyDoor:
    def __init__(self, upstream: str, *, hold: float = 1.0) -> None:
        self.upstream = urlsplit(upstream)
        self.hold = hold
        self.operations: list[str] = []  # every request's operation, in order
        self.headers: list[dict[str, str]] = []  # every request's headers, in order (how it was signed)
        self.lost: list[str] = []  # the operations whose answer was lost
        self._plans: list[tuple[str, str, Callable[[], None] | None]] = []
        self._lock = threading.Lock()
        door = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                door._forward(self)

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def lose(self, operation: str, how: str = "drop", *, between: Callable[[], None] | None = None) -> None:
        """Lose the answer to the next request of `operation` (after it was applied)."""
        assert how in HOW, how
        with self._lock:
            self._plans.append((operation, how, between))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _plan(self, operation: str) -> tuple[str, Callable[[], None] | None] | None:
        with self._lock:
            self.operations.append(operation)
            for i, (wanted, how, between) in enumerate(self._plans):
                if wanted == operation:
                    del self._plans[i]
                    self.lost.append(operation)
                    return how, between
        return None

    def _forward(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        operation = request.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        self.headers.append(dict(request.headers))
        plan = self._plan(operation)
        upstream = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() != "connection"}
            upstream.request("POST", request.path, body=body, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
        finally:
            upstream.close()
        if plan is not None:
            how, between = plan
            if between is not None:
                between()
            if how == "5xx":
                error = json.dumps(
                    {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "lost"}
                ).encode()
                request.send_response(500)
                request.send_header("Content-Type", "application/x-amz-json-1.0")
                request.send_header("Content-Length", str(len(error)))
                request.end_headers()
                request.wfile.write(error)
                return
            if how == "timeout":
                time.sleep(self.hold)
            request.close_connection = True
            with contextlib.suppress(OSError):
                request.connection.shutdown(socket.SHUT_RDWR)
            return
        request.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                request.send_header(name, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)
