"""`artemis serve`: an OpenAI-compatible referring API, batching concurrent requests into one generation
and streaming each request's tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from artemis_cli.cli.options import Device, Dtype, Quantize


def serve_cmd(
    model: Annotated[str, typer.Option("--model", help="Stage-3 Artemis checkpoint folder (merged, or LoRA / "
                                       "projector-only with --model-base) or hub id.")],
    model_base: Annotated[Optional[str], typer.Option("--model-base", help="Base of a LoRA or projector-only "
                                                      "checkpoint.")] = None,
    image_tower: Annotated[Optional[str], typer.Option("--image-tower", help="CLIP tower folder or id (default: "
                                                       "the checkpoint's).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind. Anything but loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one, printed).")] = 8000,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, max=256, help="Most requests answered in one "
                                           "generation call.")] = 16,
    batch_wait_ms: Annotated[float, typer.Option("--batch-wait-ms", min=0, max=10_000, help="How long a request "
                                                 "waits for company before its batch starts.")] = 20,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="ARTEMIS_API_KEY", show_envvar=True,
                                                   show_default=False, help="Require `Authorization: Bearer KEY` "
                                                   "(prefer the environment variable: a flag shows in `ps`).")] = None,
    allow_path: Annotated[Optional[list[Path]], typer.Option("--allow-path", file_okay=False, help="Folder whose "
                                                             "videos / records file:// URLs and data_root may read "
                                                             "(repeatable; none: data: URLs only).")] = None,
    max_request_mb: Annotated[float, typer.Option("--max-request-mb", min=0.001, help="Largest request body "
                                                  "(a data: URL video counts), in MB.")] = 64,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="The longest answer: a request's "
                                                "max_tokens above it is refused (400); also the default when a "
                                                "request gives none.")] = 1024,
    served_model_name: Annotated[Optional[str], typer.Option("--served-model-name", help="The model id clients "
                                                             "name (default: the checkpoint folder's name).",
                                                             show_default=False)] = None,
    cors_origin: Annotated[Optional[list[str]], typer.Option("--cors-origin", help="Let web pages of this origin "
                                                             "call the API (repeatable; none: no CORS headers).",
                                                             show_default=False)] = None,
    request_timeout: Annotated[float, typer.Option("--request-timeout", min=0.1, help="Seconds a request's headers, "
                                                   "and then its body, may take to arrive (408 after).")] = 60,
    prepare_timeout: Annotated[float, typer.Option("--prepare-timeout", min=0.1, help="Seconds a new video's "
                                                   "tracking and features may take (400 after).")] = 120,
    prepare_workers: Annotated[int, typer.Option("--prepare-workers", min=1, max=64, help="New videos prepared at "
                                                 "once (at a lower CPU priority than generation).")] = 1,
    max_video_frames: Annotated[int, typer.Option("--max-video-frames", min=1, help="Longest video, in frames.")]
    = 18_000,
    max_frame_pixels: Annotated[int, typer.Option("--max-frame-pixels", min=1, help="Largest frame, in pixels "
                                                  "(width x height).")] = 1920 * 1080,
    max_video_pixels: Annotated[float, typer.Option("--max-video-pixels", min=1, help="Most frames x pixels per "
                                                    "frame in one video.")] = 6e9,
    cache_quota_gb: Annotated[float, typer.Option("--cache-quota-gb", min=0, help="Size of the uploads, tracks "
                                                  "and features kept in --cache-dir; least recently used go first "
                                                  "(0: no quota).")] = 10,
    max_connections: Annotated[int, typer.Option("--max-connections", min=1, help="Open connections at once "
                                                 "(more get a 503).")] = 512,
    shutdown_timeout: Annotated[float, typer.Option("--shutdown-timeout", min=1, help="Seconds SIGTERM waits for "
                                                    "answers under way.")] = 60,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="One stderr line per request "
                                             "(never a key).")] = True,
    quantize: Quantize = "none",
    tracker: Annotated[str, typer.Option("--tracker", help="csrt, kcf or sam2.")] = "csrt",
    stride: Annotated[Optional[int], typer.Option("--stride", min=1, help="Track every N-th frame (default: about 6 frames a second of video).", show_default=False)] = None,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", file_okay=False, help="Track/feature caches "
                                                      "and uploaded videos (default $ARTEMIS_CACHE or "
                                                      "~/.cache/artemis).")] = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """Serve an OpenAI-compatible API: POST /v1/chat/completions (a video_url part + a question with
    <bbox>, the box in extra_body; stream=true streams tokens), GET /v1/models, GET /v1/models/ID, GET /health, GET /docs.
    Binds 127.0.0.1 unless --host (then an API key). SIGTERM / Ctrl-C finish the answers under way first.

    Example request (server started with --allow-path /data/videos):

    curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' -d '{"model":
    "Artemis-7b", "box": [120, 40, 260, 300], "frame": 0, "max_tokens": 128, "messages": [{"role": "user",
    "content": [{"type": "video_url", "video_url": {"url": "file:///data/videos/clip.mp4"}}, {"type": "text",
    "text": "What is the <bbox> doing in this video?"}]}]}'

    With the openai client: client.chat.completions.create(model=..., messages=[...], extra_body={"box":
    \\[x1, y1, x2, y2], "frame": 0}). API documentation: http://127.0.0.1:8000/docs"""
    from artemis_cli.common.config import load_config
    from artemis_cli.serve import ServeConfig, serve

    config = load_config(ServeConfig, base=dict(
        model=model, model_base=model_base, image_tower=image_tower, host=host, port=port, max_batch=max_batch,
        batch_wait_ms=batch_wait_ms, api_key=api_key, allow_paths=allow_path or [], max_request_mb=max_request_mb,
        max_new_tokens=max_new_tokens, quantize=quantize, tracker=tracker, stride=stride, cache_dir=cache_dir,
        device=device, dtype=dtype, served_model_name=served_model_name, cors_origins=cors_origin or [],
        request_timeout_s=request_timeout, prepare_timeout_s=prepare_timeout, prepare_workers=prepare_workers,
        max_video_frames=max_video_frames, max_frame_pixels=max_frame_pixels, max_video_pixels=max_video_pixels,
        cache_quota_gb=cache_quota_gb, max_connections=max_connections, shutdown_timeout_s=shutdown_timeout,
        access_log=access_log))
    summary = serve(config)
    typer.echo(f"stopped ({summary.stopped_by or 'shut down'}) after {summary.seconds:.0f} s: "
               f"{summary.stats.get('requests', 0)} request(s) answered in {summary.stats.get('batches', 0)} "
               "batch(es); none was in flight", err=True)
