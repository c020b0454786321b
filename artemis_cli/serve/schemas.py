"""The OpenAI chat-completions shapes `artemis serve` reads and writes, as pydantic models.

A request is the OpenAI chat format plus Artemis' fields, which the `openai` client sends through
``extra_body`` (they land at the top level of the JSON body)::

    client.chat.completions.create(
        model="artemis-7b",
        messages=[{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": "file:///data/videos/clip.mp4"}},   # or data:video/mp4;base64,...
            {"type": "text", "text": "What is the <bbox> doing in this video?"}]}],
        extra_body={"box": [x1, y1, x2, y2], "frame": 0},          # the target, pixels of frame `frame`
        # (optionally "keys": [{"frame": 300, "box": [...]}]: more key boxes where the track went wrong)
    )

or, for evaluation clients, a prepared referring record instead of the video and box::

    extra_body={"record": {...VideoRef record: clip_path, frame_path, frame_id, track_list, ...},
                "data_root": "/data/DATA_ROOT/Artemis_data"}     # what clip_path / frame_path are relative to

Unknown fields are refused (a typo fails loudly); OpenAI fields this server does not implement (tools,
response_format, penalties...) are refused as "not supported" unless they carry their neutral value
(`unsupported_fields`). Decoding: `temperature` 0 or absent = greedy (deterministic, the default);
> 0 samples with `top_p` / `top_k`, seeded by `seed`. Every number is bounded, every list and string
has a length limit: a request cannot make the server do unbounded work before it is refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from artemis_cli.ownvideo.tracking import ExtraKey

_STRICT = ConfigDict(extra="forbid")
MAX_MESSAGES = 256  # turns in one request
MAX_TEXT_CHARS = 100_000  # characters in one text part (the context length refuses long prompts precisely)
MAX_PARTS = 8  # content parts in one message
MAX_N = 8  # answers per request
MAX_STOP = 4  # stop strings, as OpenAI
MAX_COORDINATE = 1e6  # pixels: no video is this large
MAX_FRAME = 10_000_000
MAX_NEW_TOKENS_FIELD = 1 << 30  # the flag --max-new-tokens is the real ceiling

Coordinate = Annotated[StrictFloat, Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE, allow_inf_nan=False)]  # ints too
Text = Annotated[StrictStr, Field(max_length=MAX_TEXT_CHARS)]


class TextPart(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: Text


class VideoURL(BaseModel):
    model_config = _STRICT
    url: StrictStr = Field(min_length=1)
    detail: Optional[Literal["auto", "low", "high"]] = None  # OpenAI's image_url field; ignored


class VideoPart(BaseModel):
    model_config = _STRICT
    type: Literal["video_url"]
    video_url: VideoURL


Part = Annotated[Union[TextPart, VideoPart], Field(discriminator="type")]


class Message(BaseModel):
    """One turn. ``developer`` is OpenAI's newer name for ``system``: both set the system prompt."""

    model_config = _STRICT
    role: Literal["user", "assistant", "system", "developer"]
    content: Union[Text, Annotated[list[Part], Field(max_length=MAX_PARTS)]]
    name: Optional[Annotated[StrictStr, Field(max_length=256)]] = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    def videos(self) -> list[str]:
        if isinstance(self.content, str):
            return []
        return [part.video_url.url for part in self.content if isinstance(part, VideoPart)]


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: StrictBool = False


class RequestKey(ExtraKey):
    """A further key box in a request, its numbers bounded."""

    frame: StrictInt = Field(ge=0, le=MAX_FRAME)
    box: list[Coordinate] = Field(min_length=4, max_length=4)


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions`` (the OpenAI fields Artemis honours, plus its target fields)."""

    model_config = _STRICT

    model: StrictStr = Field(max_length=512)
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: Optional[StrictInt] = Field(None, ge=0, le=100_000)
    max_tokens: Optional[StrictInt] = Field(None, ge=1, le=MAX_NEW_TOKENS_FIELD)
    max_completion_tokens: Optional[StrictInt] = Field(None, ge=1, le=MAX_NEW_TOKENS_FIELD)
    seed: Optional[StrictInt] = Field(None, ge=-(1 << 63), le=(1 << 64) - 1)
    stop: Optional[Union[Annotated[StrictStr, Field(min_length=1, max_length=256)],
                         Annotated[list[Annotated[StrictStr, Field(min_length=1, max_length=256)]],
                                   Field(max_length=MAX_STOP)]]] = None
    stream: StrictBool = False
    stream_options: Optional[StreamOptions] = None
    n: StrictInt = Field(1, ge=1, le=MAX_N, description=f"answers to return (1-{MAX_N}); under greedy decoding "
                         "they are alike, with temperature > 0 each is its own sample")
    logprobs: Optional[StrictBool] = None
    top_logprobs: Optional[StrictInt] = Field(None, ge=0, le=20)
    user: Optional[Annotated[StrictStr, Field(max_length=256)]] = None
    # Artemis: the target on the video, or a prepared referring record (+ the folder it is relative to)
    box: Optional[list[Coordinate]] = Field(None, description="the target: [x1, y1, x2, y2] in pixels of frame "
                                            "`frame` (Artemis extension; the openai client sends it in extra_body)")
    frame: StrictInt = Field(0, ge=0, le=MAX_FRAME, description="the frame (0-based) `box` is drawn on")
    keys: list[RequestKey] = Field(default_factory=list, max_length=16,
                                   description="further key boxes [{frame, box}] where the track went wrong")
    record: Optional[dict[str, Any]] = Field(None, description="a prepared VideoRef referring record instead of "
                                             "a video and a box (needs data_root)")
    data_root: Optional[StrictStr] = Field(None, max_length=4096, description="the folder the record's "
                                           "clip_path and frame_path are relative to (under --allow-path)")

    @model_validator(mode="after")
    def _target(self) -> "ChatRequest":
        if self.record is not None:
            if self.box is not None or self.keys:
                raise ValueError("give either box (and keys, with a video_url) or record, not both")
            if not self.data_root:
                raise ValueError("record needs data_root (the folder its clip_path and frame_path are relative to)")
        elif self.box is None:
            raise ValueError("the target is missing: pass extra_body={'box': [x1, y1, x2, y2], 'frame': N} "
                             "(or a prepared 'record' with 'data_root')")
        elif len(self.box) != 4:
            raise ValueError(f"box is 4 numbers [x1, y1, x2, y2], got {len(self.box)}")
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    @property
    def new_tokens(self) -> Optional[int]:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


# OpenAI request fields this server does not implement, with the values that mean "not used" (accepted and
# ignored, since clients and frameworks often send the neutral value of every field they know).
_NEUTRAL: dict[str, tuple] = {
    "tools": (None, []), "tool_choice": (None, "none", "auto"), "functions": (None, []),
    "function_call": (None, "none", "auto"), "parallel_tool_calls": (None, True, False),
    "response_format": (None, {"type": "text"}), "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0), "repetition_penalty": (None, 1, 1.0), "logit_bias": (None, {}),
    "audio": (None,), "modalities": (None, ["text"]), "prediction": (None,), "reasoning_effort": (None,),
    "web_search_options": (None,), "service_tier": (None, "auto", "default"), "store": (None, False),
    "metadata": (None, {}), "best_of": (None, 1), "echo": (None, False), "suffix": (None,),
    "min_p": (None, 0, 0.0), "use_beam_search": (None, False), "length_penalty": (None, 1, 1.0),
    "guided_json": (None,), "guided_regex": (None,), "guided_choice": (None,), "guided_grammar": (None,),
}
_WHAT = {"tools": "tool calls", "tool_choice": "tool calls", "functions": "function calls",
         "function_call": "function calls", "parallel_tool_calls": "tool calls",
         "response_format": "structured output (the answer is plain text)"}


def unsupported_fields(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for each OpenAI field in `payload` this server does not implement, set to anything
    but its neutral value. Fields with their neutral value are removed from `payload`."""
    found = []
    for name, neutral in _NEUTRAL.items():
        if name not in payload:
            continue
        value = payload[name]
        if any(type(value) is type(n) and value == n for n in neutral) or value is None:
            del payload[name]
            continue
        what = _WHAT.get(name, "this parameter")
        found.append((name, f"Unsupported parameter: '{name}' is not supported by this server (artemis serve "
                            f"answers questions about a boxed target in a video; it has no {what})"
                      if name in _WHAT else
                      f"Unsupported parameter: '{name}' is not supported by this server (its decoding is greedy, "
                      "or sampling with temperature, top_p, top_k and seed)"))
    return found


def error_body(message: str, kind: str = "invalid_request_error", *, param: Optional[str] = None,
               code: Optional[str] = None) -> dict[str, Any]:
    """An OpenAI-style error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
