"""A real OpenAI-compatible chat server on 127.0.0.1 for the judge tests, with scripted faults.

Each request names its item through a ``[[item-id]]`` marker that the tests put in the prediction
text. Per item, `scripts[id]` lists faults served to the first requests (an HTTP status with
headers, a reply slower than the client's timeout, a bad reply); after that the server sends
`answers[id]`. `answered` counts those final answers actually sent: an item paid twice would show
up there as 2.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_MARKER = re.compile(r"\[\[([\w.-]+)\]\]")


class FakeJudgeServer:
    def __init__(self, api_key: str, served_suffix: str = "-0125"):
        self.api_key = api_key
        self.served_suffix = served_suffix
        self.answers: dict[str, str] = {}
        self.scripts: dict[str, list[tuple]] = {}
        self.requests: Counter[str] = Counter()
        self._position: Counter[str] = Counter()  # how far into its script each item is (never reset)
        self.answered: Counter[str] = Counter()
        self.request_times: dict[str, list[float]] = defaultdict(list)
        self.bad_auth = 0
        self.answer_delay = 0.0  # seconds before each final answer (to observe concurrency)
        self.in_flight = 0
        self.max_in_flight = 0
        self.hold_after: int | None = None  # after this many final answers, hold requests until `release`
        self.gone_models: set[str] = set()  # models answered with OpenAI's 404 model_not_found
        self.bodies: dict[str, dict] = {}  # the last request body per item (model, messages, parameters)
        self.responder = None  # request body -> answer, for items without an entry in `answers`
        self.release = threading.Event()
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def __enter__(self) -> "FakeJudgeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()
            self.answered.clear()
            self.request_times.clear()

    def _next_step(self, item: str) -> tuple | None:
        with self.lock:
            number = self._position[item]
            self._position[item] += 1
            self.requests[item] += 1
            self.request_times[item].append(time.monotonic())
            script = self.scripts.get(item, [])
            return script[number] if number < len(script) else None

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                return None

            def _send(self, status: int, body: dict, headers: dict | None = None) -> bool:
                data = json.dumps(body).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return False
                return True

            def _completion(self, model: str, content: str) -> dict:
                served = model if re.search(r"-\d{4}(-\d{2}-\d{2})?$", model) else model + server.served_suffix
                return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": served,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                got = self.headers.get("Authorization", "")
                if got != f"Bearer {server.api_key}":
                    server.bad_auth += 1
                    # Echo the key as OpenAI does (partly): our client must redact it everywhere.
                    self._send(401, {"error": {"message": f"Incorrect API key provided: {got[7:]}",
                                               "type": "invalid_request_error", "code": "invalid_api_key"}})
                    return
                model = request.get("model", "")
                if model in server.gone_models:
                    self._send(404, {"error": {"message": f"The model `{model}` does not exist or you do not have "
                                                          "access to it.", "type": "invalid_request_error",
                                               "param": None, "code": "model_not_found"}})
                    return
                text = "\n".join(m.get("content", "") for m in request.get("messages", []))
                marker = _MARKER.search(text)
                item = marker.group(1) if marker else "?"
                server.bodies[item] = request
                step = server._next_step(item)
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._step(step, item, model)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _step(self, step: tuple | None, item: str, model: str) -> None:
                if step is None:
                    self._final(item, model)
                elif step[0] == "status":
                    _, code, headers = step
                    self._send(code, {"error": {"message": f"injected {code}", "type": "server_error"}}, headers)
                elif step[0] == "slow":
                    time.sleep(step[1])
                    self._send(200, self._completion(model, server.answers.get(item, "")))
                elif step[0] == "reply":
                    self._send(200, self._completion(model, step[1]))
                else:
                    raise AssertionError(f"unknown step {step!r}")

            def _final(self, item: str, model: str) -> None:
                with server.lock:
                    held = server.hold_after is not None and sum(server.answered.values()) >= server.hold_after
                if held:
                    server.release.wait(60)
                    self.close_connection = True  # no reply at all: the client never got (or paid for) one
                    return
                time.sleep(server.answer_delay)
                answer = server.answers.get(item)
                if answer is None and server.responder is not None:
                    answer = server.responder(server.bodies[item])
                if self._send(200, self._completion(model, answer if answer is not None else server.answers[item])):
                    with server.lock:
                        server.answered[item] += 1

        return Handler
