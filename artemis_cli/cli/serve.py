"""`artemis serve`: an OpenAI-compatible referring API, batching concurrent requests into one generation."""

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
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Answer length cap when a request "
                                                "gives no max_tokens.")] = 1024,
    quantize: Quantize = "none",
    tracker: Annotated[str, typer.Option("--tracker", help="csrt, kcf or sam2.")] = "csrt",
    stride: Annotated[Optional[int], typer.Option("--stride", min=1, help="Track every N-th frame (default: about 10 frames a second of video).", show_default=False)] = None,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", file_okay=False, help="Track/feature caches "
                                                      "and uploaded videos (default $ARTEMIS_CACHE or "
                                                      "~/.cache/artemis).")] = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """Serve POST /v1/chat/completions (OpenAI format: video_url part + question with <bbox>, the box in
    extra_body), GET /v1/models and GET /health. Binds 127.0.0.1 unless --host (then an API key).
    SIGTERM / Ctrl-C finish the requests in flight first."""
    from artemis_cli.common.config import load_config
    from artemis_cli.serve import ServeConfig, serve

    config = load_config(ServeConfig, base=dict(
        model=model, model_base=model_base, image_tower=image_tower, host=host, port=port, max_batch=max_batch,
        batch_wait_ms=batch_wait_ms, api_key=api_key, allow_paths=allow_path or [], max_request_mb=max_request_mb,
        max_new_tokens=max_new_tokens, quantize=quantize, tracker=tracker, stride=stride, cache_dir=cache_dir,
        device=device, dtype=dtype))
    summary = serve(config)
    typer.echo(f"stopped ({summary.stopped_by or 'shut down'}) after {summary.seconds:.0f} s: "
               f"{summary.stats.get('requests', 0)} request(s) answered in {summary.stats.get('batches', 0)} "
               "batch(es); none was in flight", err=True)
