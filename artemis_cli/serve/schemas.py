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

Unknown fields are refused (a typo fails loudly). Decoding: `temperature` 0 or absent = greedy
(deterministic, the default); > 0 samples with `top_p` / `top_k`, seeded by `seed`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, model_validator

from artemis_cli.ownvideo.tracking import ExtraKey

_STRICT = ConfigDict(extra="forbid")
Number = Union[StrictInt, StrictFloat]


class TextPart(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: StrictStr


class VideoURL(BaseModel):
    model_config = _STRICT
    url: StrictStr = Field(min_length=1)


class VideoPart(BaseModel):
    model_config = _STRICT
    type: Literal["video_url"]
    video_url: VideoURL


Part = Annotated[Union[TextPart, VideoPart], Field(discriminator="type")]


class Message(BaseModel):
    model_config = _STRICT
    role: Literal["user", "assistant", "system"]
    content: Union[StrictStr, list[Part]]
    name: Optional[StrictStr] = None

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
    include_usage: bool = False


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions`` (the OpenAI fields Artemis honours, plus its target fields)."""

    model_config = _STRICT

    model: StrictStr
    messages: list[Message] = Field(min_length=1)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    top_k: Optional[int] = Field(None, ge=0)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    seed: Optional[int] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: int = Field(1, ge=1, le=1, description="one answer per request")
    user: Optional[StrictStr] = None
    # Artemis: the target on the video, or a prepared referring record (+ the folder it is relative to)
    box: Optional[list[Number]] = None
    frame: StrictInt = Field(0, ge=0)
    keys: list[ExtraKey] = Field(default_factory=list, max_length=16)  # further key boxes (corrections)
    record: Optional[dict[str, Any]] = None
    data_root: Optional[StrictStr] = None

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
        return self

    @property
    def new_tokens(self) -> Optional[int]:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def error_body(message: str, kind: str = "invalid_request_error", *, param: Optional[str] = None,
               code: Optional[str] = None) -> dict[str, Any]:
    """An OpenAI-style error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
