"""`artemis serve`: an OpenAI-compatible chat-completions API over the own-video `Referrer`.

`server.serve(ServeConfig)` is the entry point (checks, bind, load, run, graceful stop); `app.build_app`
is the FastAPI app (routes, key check, error bodies, streaming); `batching.BatchQueue` gathers
concurrent requests into one batched generation; `targets` turns a request's messages, video URL and
box (or a prepared referring record) into what `Referrer.ask_many` takes; `schemas` are the request
shapes. Nothing here tracks, extracts features, builds prompts or generates: the `Referrer` does.
"""

from artemis_cli.serve.server import ServeConfig, ServeSummary, serve

__all__ = ["ServeConfig", "ServeSummary", "serve"]
