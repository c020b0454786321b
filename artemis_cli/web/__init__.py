"""`artemis web`: a Gradio page over the own-video library (upload a video, draw a box, ask).

`serve_web(WebOptions(...))` is the entry point; the page itself is in `page.py` (imports gradio).
"""

from artemis_cli.web.options import WebOptions

__all__ = ["WebOptions", "serve_web"]


def serve_web(options: WebOptions, **kwargs) -> None:
    """Serve the page (see `artemis_cli.web.server.serve_web`)."""
    from artemis_cli.web.server import serve_web as _serve

    _serve(options, **kwargs)
