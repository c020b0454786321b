"""`artemis web`: a page to upload a video, draw a box, ask, and see the track and the answer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from artemis_cli.cli.options import Device, Dtype


def web_cmd(
    model: Annotated[Optional[str], typer.Option("--model", help="Artemis checkpoint folder (merged, or LoRA with "
                                                 "--model-base) or hub id.")] = None,
    model_base: Annotated[Optional[str], typer.Option("--model-base", help="Base of a LoRA or projector-only "
                                                      "checkpoint.")] = None,
    image_tower: Annotated[Optional[str], typer.Option("--image-tower", help="CLIP tower folder or id (default: "
                                                       "the checkpoint's).")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Serve the tiny random demo model with the sample videos as "
                                       "examples (built on first use in $ARTEMIS_CACHE/web-demo, nothing "
                                       "downloaded).")] = False,
    host: Annotated[str, typer.Option("--host", help="Address to bind. Anything but loopback needs --auth.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to serve on.")] = 7860,
    auth: Annotated[Optional[str], typer.Option("--auth", help="USER:PASS login for the page (default: "
                                                "$ARTEMIS_WEB_AUTH); required off loopback.", show_default=False)] = None,
    tracker: Annotated[str, typer.Option("--tracker", help="Default tracker: csrt, kcf or sam2 (the page's "
                                         "Advanced panel can switch).")] = "csrt",
    tracker_model: Annotated[Optional[str], typer.Option("--tracker-model", help="SAM 2 checkpoint folder or hub "
                                                         "id, for the sam2 tracker.")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest video upload, in MB.")] = 500,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=64, help="Requests the model works on at "
                                             "once; the rest wait in the queue.")] = 1,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, max=4096, help="Largest answer the "
                                                "page allows (its slider's maximum and default).")] = 256,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", file_okay=False, help="Demo assets and the "
                                                      "track/feature caches (default $ARTEMIS_CACHE/web-demo or "
                                                      "~/.cache/artemis/web-demo).")] = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """Serve a page to upload a video (or pick an example), draw a box on a frame, ask about the target and
    see the answer, the tracked box and the conversation. Binds 127.0.0.1 unless --host (then --auth)."""
    from artemis_cli.common.config import load_config
    from artemis_cli.web import WebOptions, serve_web

    options = load_config(WebOptions, base=dict(
        model=model, model_base=model_base, image_tower=image_tower, demo=demo, host=host, port=port, auth=auth,
        tracker=tracker, tracker_model=tracker_model, max_upload_mb=max_upload_mb, concurrency=concurrency,
        max_new_tokens=max_new_tokens, cache_dir=cache_dir, device=device, dtype=dtype))
    serve_web(options)
