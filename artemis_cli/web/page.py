"""The Gradio 6 page of `artemis web`: upload a video, pick a frame, draw a box, ask, see the answer,
the tracked boxes and the conversation.

The page is a thin front end: tracking, features, prompts and generation are the own-video library's
`Referrer.prepare` / `Referrer.ask`. `PageHandlers` holds the event handlers as plain methods (testable
without a browser); `build_page` lays the page out and wires them. Element ids are stable so scripts
and the browser tests can drive the page: #video-input, #frame-slider, #box-editor, #question, #ask,
#answer, #track-preview, #chat, #new-target, #error (and #target-used: which frame and box were sent).
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import gradio as gr
from gradio_image_annotation import image_annotator

from artemis_cli.errors import ArtemisError, UsageError
from artemis_cli.web.frames import VideoInfo, draw_box, editor_box, editor_image, probe_video, read_frames
from artemis_cli.web.options import TRACKERS
from artemis_cli.web.session import SessionFolders, WebSession, end_session

SESSION_TTL_S = 6 * 3600  # an idle session's state (and temp folder) is dropped after this


@dataclass
class Decoding:
    """The Advanced panel's decoding settings as the page sends them."""

    mode: str = "greedy"
    temperature: float = 0.2
    seed: int = 0
    max_new_tokens: int = 256

    def settings(self):
        from artemis_cli.model.generation import DecodingSettings

        return DecodingSettings(sample=self.mode == "sample", temperature=float(self.temperature),
                                seed=int(self.seed), max_new_tokens=int(self.max_new_tokens))


def error_text(exc: BaseException, session: Optional[WebSession] = None) -> str:
    """What the page shows for a failure: the error line and its hint, never a traceback, and never the
    server's own paths (the session's copy of the upload is named by the upload's file name)."""
    if isinstance(exc, ArtemisError):
        text = f"**error:** {exc.message}" + (f"  \n**hint:** {exc.hint}" if exc.hint else "")
        if session is not None and session.video is not None:
            text = text.replace(str(session.video), session.name)
        return text
    # a bug: the traceback goes to the server's log, the page gets one line
    traceback.print_exception(exc, file=sys.stderr)
    return f"**error:** internal error ({type(exc).__name__}: {str(exc)[:300]}); the server log has the details"


def used_text(frame: int, box: Sequence[float], info: VideoInfo, tracker: str, frames_used: Sequence[int] = ()) -> str:
    """The line that says which frame and box went to the model (video pixels)."""
    numbers = ", ".join(f"{v:g}" for v in box)
    text = (f"frame {frame}, box [{numbers}] in video pixels ({info.width}x{info.height}, {info.num_frames} frames), "
            f"tracker {tracker}")
    if frames_used:
        text += f"; frames used: {', '.join(str(i) for i in frames_used)}"
    return text


def frame_text(frame: int, info: VideoInfo) -> str:
    return f"frame {frame} of {info.num_frames - 1} ({info.width}x{info.height}): drag a box around the target, then Ask"


def chat_messages(history: Sequence[tuple[str, str]]) -> list[dict]:
    messages = []
    for question, answer in history:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


class PageHandlers:
    """The page's event handlers over one backend (`referrer(tracker)` -> a `Referrer`).

    Each returns the new session state first, then the components' new values; a failure becomes the
    #error message and leaves the page usable."""

    def __init__(self, referrer: Callable[[str], Any], folders: SessionFolders, *, default_question: str,
                 log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)):
        self.referrer = referrer
        self.folders = folders
        self.default_question = default_question
        self.log = log

    def _session(self, session: Optional[WebSession], request: Optional[gr.Request]) -> WebSession:
        if isinstance(session, WebSession):
            return session
        return self.folders.new(getattr(request, "session_hash", None))

    def end(self, request: gr.Request = None) -> None:
        """The tab closed (gradio's unload event): remove the session's folder now, not when its state expires."""
        self.folders.end(getattr(request, "session_hash", None))

    # -- video and frame ------------------------------------------------------------------------------
    def load_video(self, upload: Optional[str], session: Optional[WebSession], request: gr.Request = None):
        """A video was uploaded (or an example picked, or the file cleared): show frame 0, size the slider.

        Returns (session, box editor, slider, target-used, error, answer, chat, track preview)."""
        session = self._session(session, request)
        cleared = (None, gr.update(maximum=1, value=0, interactive=False), "", "", [], [])
        if not upload:
            session.drop_video()
            return (session, *cleared[:2], "", *cleared[2:])
        path = Path(upload)
        try:
            info = probe_video(path)
            frame = read_frames(path, [0])[0]
        except ArtemisError as exc:
            session.drop_video()
            self.log(f"web: rejected upload {path.name}: {exc.message}")
            return (session, *cleared[:2], error_text(exc), *cleared[2:])
        session.set_video(path, info)
        self.log(f"web: video {path.name}: {info.num_frames} frames, {info.width}x{info.height}")
        slider = gr.update(minimum=0, maximum=max(info.num_frames - 1, 1), value=0, step=1, interactive=info.num_frames > 1)
        return (session, {"image": editor_image(frame, session.scale), "boxes": []}, slider, "", frame_text(0, info),
                "", [], [])

    def show_frame(self, frame: Any, session: Optional[WebSession], request: gr.Request = None):
        """The slider moved: show that frame (without a box) in the editor.

        Returns (session, box editor, target-used, error)."""
        session = self._session(session, request)
        if session.video is None or session.info is None:
            return session, gr.skip(), gr.skip(), ""
        try:
            index = int(round(float(frame)))
        except (TypeError, ValueError):
            return session, gr.skip(), gr.skip(), error_text(UsageError(f"frame {frame!r} is not a number"))
        index = min(max(index, 0), session.info.num_frames - 1)
        if index == session.frame:
            return session, gr.skip(), gr.skip(), ""
        try:
            image = read_frames(session.video, [index])[index]
        except ArtemisError as exc:
            return session, gr.skip(), gr.skip(), error_text(exc)
        session.frame = index
        return session, {"image": editor_image(image, session.scale), "boxes": []}, frame_text(index, session.info), ""

    # -- asking ---------------------------------------------------------------------------------------
    def ask(self, session: Optional[WebSession], editor: Optional[dict], question: str, tracker: str,
            decoding: Decoding, progress: Optional[Callable[[str, float], None]] = None, request: gr.Request = None):
        """Ask about the box drawn on the frame shown (the box editor's, which the slider picked); a new box,
        frame, video or tracker starts a new conversation.

        Returns (session, answer, chat, track preview, target-used, error, question box)."""
        session = self._session(session, request)
        try:
            if session.video is None or session.info is None:
                raise UsageError("no video: upload a video (or pick an example) first")
            if tracker not in TRACKERS:
                raise UsageError(f"unknown tracker {tracker!r}", hint=f"pick one of {', '.join(TRACKERS)}")
            box = editor_box(editor, session.info, session.scale)
            index = session.frame  # the frame the editor shows, so the one the box was drawn on
            key = (str(session.video), index, box, tracker)
            question = question or ""
            if not question.strip():
                if session.history and key == session.target_key:
                    raise UsageError("the question is empty: type a follow-up question, or press New target")
                question = self.default_question
            referrer = self.referrer(tracker)
            if key != session.target_key:
                from artemis_cli.ownvideo.referrer import Target

                session.reset_target()
                self.log(f"web: target {session.name}: frame {index}, box [{', '.join(f'{v:g}' for v in box)}], "
                         f"tracker {tracker}")
                session.prepared = referrer.prepare(Target(video=session.video, box=box, frame=index), progress=progress)
                session.target_key = key
            if progress is not None:
                progress("answering", 0.0)
            answer = referrer.ask(session.prepared, question, history=list(session.history),
                                  decoding=decoding.settings())
        except Exception as exc:  # ArtemisError: the user's to fix; anything else is logged as a bug
            # answer and preview stay; the chat shows the conversation that is still going (none for a new target)
            return (session, gr.skip(), chat_messages(session.history), gr.skip(), gr.skip(), error_text(exc, session),
                    gr.skip())
        session.history.append((question, answer.answer))
        self.log(f"web: answered turn {len(session.history)} in {sum(answer.timings.values()):.2f} s "
                 f"({answer.completion_tokens} tokens)")
        preview = self.track_preview(session, answer.frames_used)
        used = used_text(index, box, session.info, tracker, answer.frames_used)
        return (session, answer.answer, chat_messages(session.history), preview, used, "", "")

    def track_preview(self, session: WebSession, frames_used: Sequence[int]) -> list:
        """The frames the model saw, each with its tracked box, as (image, caption) gallery items.

        The frames come from the track cache the Referrer wrote (JPEGs of the tracked frames), so a long
        video is not decoded again; a missing file falls back to decoding."""
        import numpy as np
        from PIL import Image

        prepared = session.prepared
        track = prepared.track_json()
        boxes = dict(zip(track["frames"], track["boxes"]))
        indices = list(dict.fromkeys(int(i) for i in frames_used)) or list(track["frames"])[:9]
        names = dict(zip(prepared.frame_indices, prepared.record["frame_id"]))
        folder = Path(prepared.root) / prepared.record["frame_path"]
        images = {}
        for index in indices:
            path = folder / names.get(index, "")
            if index in names and path.is_file():
                with Image.open(path) as picture:
                    images[index] = np.asarray(picture.convert("RGB"))
        try:
            images.update(read_frames(session.video, [i for i in indices if i not in images]))
        except ArtemisError:
            return []
        items = []
        for position, index in enumerate(indices):
            box = boxes.get(index) or []
            caption = f"frame {index}" + (" (key)" if position == 0 else "") + ("" if box else ": lost")
            scale = session.scale  # small frames enlarged as in the editor, so the box outline shows
            items.append((draw_box(editor_image(images[index], scale), [v * scale for v in box]), caption))
        return items

    def new_target(self, session: Optional[WebSession], request: gr.Request = None):
        """Clear the conversation and the box; keep the video and the frame.

        Returns (session, box editor, answer, chat, track preview, target-used, error, question)."""
        session = self._session(session, request)
        session.reset_target()
        editor: Any = gr.skip()
        if session.video is not None:
            try:
                frame = read_frames(session.video, [session.frame])[session.frame]
                editor = {"image": editor_image(frame, session.scale), "boxes": []}
            except ArtemisError:
                editor = gr.skip()
        used = frame_text(session.frame, session.info) if session.info is not None else ""
        return (session, editor, "", [], [], used, "", self.default_question)


CSS = """
#error { color: #b91c1c; }
#target-used { font-family: monospace; font-size: 0.9em; }
"""


def build_page(handlers: PageHandlers, *, model_name: str, tracker: str, examples: Sequence[Path] = (),
               max_new_tokens: int = 256, concurrency: int = 1) -> gr.Blocks:
    """Lay the page out and wire `handlers`; the `Blocks` is returned unlaunched."""
    with gr.Blocks(title="Artemis: ask about a target in a video", delete_cache=(1800, 3600),
                   analytics_enabled=False) as page:  # nothing leaves the machine
        session = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=end_session)
        gr.Markdown(f"## Artemis: ask about a target in a video\nModel: `{model_name}`. Upload a video (or pick an "
                    "example), choose a frame, drag a box around the target, ask.")
        with gr.Row():
            with gr.Column(scale=3):
                video_input = gr.File(label="Video", elem_id="video-input", file_count="single", type="filepath")
                if examples:
                    gr.Examples(examples=[[str(p)] for p in examples], inputs=[video_input], label="Examples")
                frame_slider = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="frame-slider",
                                         interactive=False)
                box_editor = image_annotator(label="Draw one box around the target", elem_id="box-editor",
                                             single_box=True, sources=None, image_type="numpy",
                                             label_list=["target"], label_colors=[(255, 40, 40)],
                                             use_default_label=True, disable_edit_boxes=True,
                                             show_clear_button=False, show_download_button=False,
                                             box_min_size=4, height=480)
                target_used = gr.Markdown(elem_id="target-used")
            with gr.Column(scale=2):
                question = gr.Textbox(handlers.default_question, label="Question (<bbox> marks the target)",
                                      elem_id="question", lines=3, placeholder="A follow-up question about the same target")
                with gr.Row():
                    ask = gr.Button("Ask", variant="primary", elem_id="ask")
                    new_target = gr.Button("New target", elem_id="new-target")
                error = gr.Markdown(elem_id="error")
                answer = gr.Textbox(label="Answer", elem_id="answer", interactive=False, lines=3)
                chat = gr.Chatbot(label="Conversation", elem_id="chat", height=280)
                with gr.Accordion("Advanced", open=False):
                    tracker_choice = gr.Dropdown(list(TRACKERS), value=tracker, label="Tracker", elem_id="tracker")
                    mode = gr.Radio(["greedy", "sample"], value="greedy", label="Decoding", elem_id="decoding")
                    temperature = gr.Slider(0.01, 2.0, value=0.2, step=0.01, label="Temperature (sampling)",
                                            elem_id="temperature")
                    seed = gr.Number(0, precision=0, label="Seed (sampling)", elem_id="seed")
                    new_tokens = gr.Slider(1, max(max_new_tokens, 1), value=max_new_tokens, step=1,
                                           label="Max new tokens", elem_id="max-new-tokens")
        track_preview = gr.Gallery(label="Tracked box on the frames the model saw (key frame first)",
                                   elem_id="track-preview", columns=9, height=200, object_fit="contain")

        video_input.change(handlers.load_video, [video_input, session],
                           [session, box_editor, frame_slider, error, target_used, answer, chat, track_preview],
                           concurrency_limit=concurrency)
        frame_slider.change(handlers.show_frame, [frame_slider, session], [session, box_editor, target_used, error],
                            trigger_mode="always_last", concurrency_limit=concurrency)

        def ask_event(session, editor, question, tracker, mode, temperature, seed, max_new_tokens,
                      request: gr.Request, progress=gr.Progress()):
            def report(stage: str, fraction: float) -> None:
                progress(min(max(float(fraction), 0.0), 1.0), desc=stage)

            decoding = Decoding(mode, temperature, 0 if seed is None else seed, max_new_tokens)
            return handlers.ask(session, editor, question, tracker, decoding, progress=report, request=request)

        ask_inputs = [session, box_editor, question, tracker_choice, mode, temperature, seed, new_tokens]
        ask_outputs = [session, answer, chat, track_preview, target_used, error, question]
        ask.click(ask_event, ask_inputs, ask_outputs, concurrency_limit=concurrency, concurrency_id="model")
        question.submit(ask_event, ask_inputs, ask_outputs, concurrency_limit=concurrency, concurrency_id="model")
        new_target.click(handlers.new_target, [session],
                         [session, box_editor, answer, chat, track_preview, target_used, error, question])
        page.unload(handlers.end)
    return page
