"""The OpenAPI description of `artemis serve` (``/docs``, ``/openapi.json``): the chat route reads its raw
body, so the request model is added to FastAPI's schema here."""

from __future__ import annotations

from artemis_cli.serve.schemas import ChatRequest

OPENAPI_DESCRIPTION = """An OpenAI-compatible chat-completions API over **Artemis** (video-based referring, NeurIPS 2024):
ask what a boxed target does in a video.

The OpenAI chat format, plus the target (the `openai` clients send it through `extra_body`):
- `box`: `[x1, y1, x2, y2]` in pixels of frame `frame` (0-based) of the video;
- `keys`: further key boxes `[{"frame": N, "box": [...]}]` where the track went wrong;
- or `record` (a prepared VideoRef referring record) with `data_root` instead of a video and a box.

The video is a `video_url` content part of the first user message: `file:///path` (under the server's
`--allow-path`) or `data:video/mp4;base64,...`. The question carries one `<bbox>` where the target is meant.
Streaming (`stream: true`) sends the role chunk at once, SSE comments (`: artemis {"stage": "track",
"progress": 0.4}`, `: keep-alive`) while the video is prepared, then the answer token by token.
"""

CHAT_OPENAPI = {
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ChatRequest"},
        "example": {"model": "Artemis-7b", "max_tokens": 128, "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": "file:///data/videos/clip.mp4"}},
            {"type": "text", "text": "What is the <bbox> doing in this video?"}]}],
            "box": [120, 40, 260, 300], "frame": 0, "keys": [{"frame": 250, "box": [300, 40, 380, 150]}]}}}},
    "responses": {
        "200": {"description": "`chat.completion` (or `text/event-stream` of `chat.completion.chunk` with "
                               "`stream: true`), with an `artemis` field: the frames fed to the RoI module, "
                               "the batch size, timings"},
        "400": {"description": "bad request: JSON, fields, conversation, target, `context_length_exceeded`, "
                               "`unsupported_parameter`, a video over the work limits"},
        "401": {"description": "missing or wrong API key"},
        "403": {"description": "a path missing or outside --allow-path"},
        "404": {"description": "unknown model"},
        "413": {"description": "body over --max-request-mb"},
        "503": {"description": "shutting down, or busy (Retry-After)"}},
}


def openapi_schema(app) -> dict:
    """FastAPI's schema plus the request model (the route reads the raw body, so FastAPI does not know it)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        request = ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(request.pop("$defs", {}))
        components["ChatRequest"] = request
        app.openapi_schema = schema
    return app.openapi_schema
