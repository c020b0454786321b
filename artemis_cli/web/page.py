"""The Gradio 6 page of `artemis web`: upload a video (or a folder of frames) and play it, pick a frame, draw
a box (confirmed at once, in video pixels), correct the track with more key boxes, ask, watch the answer
stream into the conversation, and play the track back on the video.

The page is a thin front end: tracking, features, prompts and generation are the own-video library's
`Referrer.prepare` / `Referrer.ask`. `PageHandlers` holds the event handlers as plain methods (testable
without a browser); `build_page` lays the page out and wires them. Element ids are stable so scripts
and the browser tests can drive the page: #video-input, #frames-input, #player, #frame-slider, #frame-label,
#box-editor, #target-used (the box in video pixels, confirmed as soon as it is drawn), #add-key,
#clear-keys, #keys, #question, #ask, #new-target, #status, #chat, #error, #track-video, #track-quality.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import gradio as gr
from gradio_image_annotation import image_annotator

from artemis_cli.errors import ArtemisError, UsageError
from artemis_cli.ownvideo.video import IMAGE_SUFFIXES
from artemis_cli.web.frames import VideoInfo, editor_box, editor_image, ingest, read_frames, sort_frame_images
from artemis_cli.web.options import TRACKERS
from artemis_cli.web.session import SessionFolders, WebSession, end_session

SESSION_TTL_S = 6 * 3600  # an idle session's state (and temp folder) is dropped after this
VIDEO_TYPES = [".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif"]
IMAGE_TYPES = list(IMAGE_SUFFIXES)  # a folder of frames
FOLLOW_UP_NOTE = "a `<bbox>` in a follow-up means the same target: it is sent to the model as \"the target\""


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


def box_text(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def frame_label(frame: int, info: VideoInfo) -> str:
    """One numbering everywhere: frames are counted from 0."""
    return f"frame {frame} of 0-{info.num_frames - 1} ({info.num_frames} frames, {info.width}x{info.height} px)"


def confirmed_text(frame: int, box: Sequence[float], info: VideoInfo) -> str:
    return (f"box {box_text(box)} on frame {frame}, in video pixels of the {info.width}x{info.height} frame: "
            "Ask, or add it as one more key box")


def keys_text(keys: Sequence[tuple[int, tuple]], spans: Optional[dict] = None) -> str:
    """The key boxes, and once tracked, the frames each one governs."""
    if not keys:
        return ""
    lines = ["**Key boxes** (each governs the frames nearer to it; the first is the question's key frame):"]
    for number, (frame, box) in enumerate(sorted(keys, key=lambda k: k[0]), start=1):
        span = (spans or {}).get(frame)
        governs = f": governs frames {span[0]}-{span[1]}" if span else ""
        lines.append(f"{number}. frame {frame}, box {box_text(box)}{governs}")
    return "\n".join(lines)


def chat_messages(history: Sequence[tuple[str, str]]) -> list[dict]:
    messages = []
    for question, answer in history:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


STAGES = {"track": "tracking the box through the video", "features": "clip features",
          "answering": "answering", "decode": "reading the video"}


class PageHandlers:
    """The page's event handlers over one backend (`referrer(tracker)` -> a `Referrer`).

    Each returns (or yields) the new session state first, then the components' new values; a failure
    becomes the #error message and leaves the page usable."""

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
        """A video was uploaded (or an example picked, or the file cleared): play it, show frame 0.

        Returns (session, player, slider, frame label, box editor, target-used, keys, chat, track video,
        track quality, status, error)."""
        session = self._session(session, request)
        if not upload:
            return self._cleared(session, "video")
        path = Path(upload)
        return self._opened(session, path.name, lambda: session.set_video(path))

    def load_frames(self, uploads: Optional[Sequence[str]], session: Optional[WebSession], request: gr.Request = None):
        """A folder of frame images was uploaded (or cleared): the same as a video, its player copy made from the
        images. Files that are not images are left out, and the status says which."""
        session = self._session(session, request)
        if not uploads:
            return self._cleared(session, "frames")
        left_out: list[str] = []

        def keep() -> None:
            images, others = sort_frame_images([Path(u) for u in uploads])
            left_out.extend(others)
            session.set_frames(images)

        out = list(self._opened(session, f"a folder of {len(uploads)} file(s)", keep))
        if left_out and not out[-1]:  # opened: say what was not read
            out[-2] = (f"left out {len(left_out)} file(s) that are not frame images: "
                       f"{', '.join(left_out[:5])}{' ...' if len(left_out) > 5 else ''}")
        return tuple(out)

    @staticmethod
    def _no_video(session: WebSession, error: str = ""):
        """The page with no video: no player, the slider hidden (it would read 0-1), everything else empty."""
        hidden_slider = gr.update(minimum=0, maximum=1, value=0, visible=False, interactive=False)
        return (session, None, hidden_slider, "", gr.update(value=None), "", "", [], None, "", "", error)

    def _cleared(self, session: WebSession, kind: str):
        """An input was cleared: the video goes only if it came from that input."""
        if session.kind not in ("", kind):
            return (session, *(gr.skip(),) * 10, "")
        session.drop_video()
        return self._no_video(session)

    def _opened(self, session: WebSession, name: str, keep: Callable[[], None]):
        """`keep()` puts the upload in the session; then play it and show frame 0 (or say why not)."""
        try:
            keep()
            info, player = ingest(session.video, session.video.parent)
            session.info = info
            session.scale = session.editor_scale()
            frame = read_frames(session.video, [0])[0]
        except ArtemisError as exc:
            session.drop_video()
            self.log(f"web: rejected upload {name}: {exc.message}")
            return self._no_video(session, error_text(exc))
        self.log(f"web: {session.kind} {session.name}: {info.num_frames} frames, {info.width}x{info.height}")
        slider = gr.update(minimum=0, maximum=max(info.num_frames - 1, 1), value=0, step=1,
                           interactive=info.num_frames > 1, visible=True)
        editor = {"image": editor_image(frame, session.scale), "boxes": []}
        return (session, str(player), slider, frame_label(0, info), editor,
                "drag a box around the target on the frame", "", [], None, "", "", "")

    def show_frame(self, frame: Any, session: Optional[WebSession], request: gr.Request = None):
        """The slider moved: show that frame (without a box) in the editor.

        Returns (session, box editor, frame label, target-used, error)."""
        session = self._session(session, request)
        if session.video is None or session.info is None:
            return session, gr.skip(), gr.skip(), gr.skip(), ""
        try:
            index = int(round(float(frame)))
        except (TypeError, ValueError):
            return session, gr.skip(), gr.skip(), gr.skip(), error_text(UsageError(f"frame {frame!r} is not a number"))
        index = min(max(index, 0), session.info.num_frames - 1)
        if index == session.frame:
            return session, gr.skip(), gr.skip(), gr.skip(), ""
        try:
            image = read_frames(session.video, [index])[index]
        except ArtemisError as exc:
            return session, gr.skip(), gr.skip(), gr.skip(), error_text(exc, session)
        session.frame = index
        return (session, {"image": editor_image(image, session.scale), "boxes": []}, frame_label(index, session.info),
                "drag a box around the target on the frame", "")

    def box_drawn(self, editor: Optional[dict], session: Optional[WebSession], request: gr.Request = None):
        """A box was drawn (or moved): confirm it at once, in video pixels and with its frame.

        Returns (session, target-used, error)."""
        session = self._session(session, request)
        if session.info is None or not (editor or {}).get("boxes"):
            return session, gr.skip(), ""
        try:
            box = editor_box(editor, session.info, session.scale)
        except ArtemisError as exc:
            return session, gr.skip(), error_text(exc, session)
        return session, confirmed_text(session.frame, box, session.info), ""

    def add_key(self, editor: Optional[dict], session: Optional[WebSession], request: gr.Request = None):
        """The drawn box becomes one more key box (a correction where the track went wrong).

        Returns (session, keys, target-used, error)."""
        session = self._session(session, request)
        try:
            if session.info is None:
                raise UsageError("no video: upload a video (or pick an example) first")
            box = editor_box(editor, session.info, session.scale)
        except ArtemisError as exc:
            return session, gr.skip(), gr.skip(), error_text(exc, session)
        if not session.keys and session.prepared is not None:  # correcting the target asked about: keep its boxes
            session.keys = _keys(session.prepared.target)
        session.keys = [(f, b) for f, b in session.keys if f != session.frame] + [(session.frame, box)]
        return (session, keys_text(session.keys), f"key box {box_text(box)} on frame {session.frame} added: move to "
                "another frame to add more, then Ask", "")

    def clear_keys(self, session: Optional[WebSession], request: gr.Request = None):
        """Returns (session, keys, error)."""
        session = self._session(session, request)
        session.keys = []
        return session, "", ""

    # -- asking ---------------------------------------------------------------------------------------
    def target_of(self, session: WebSession, editor: Optional[dict]):
        """The key boxes of the question: the ones added, plus the box drawn on the frame shown (if any)."""
        from artemis_cli.ownvideo.prepare import Target

        keys = list(session.keys)
        if (editor or {}).get("boxes"):
            drawn = editor_box(editor, session.info, session.scale)
            keys = [(f, b) for f, b in keys if f != session.frame] + [(session.frame, drawn)]
        if not keys:
            raise UsageError("no box drawn: drag a box around the target on the frame first")
        first, *more = keys
        return Target(video=session.video, box=first[1], frame=first[0], more=tuple(more))

    def ask(self, session: Optional[WebSession], editor: Optional[dict], question: str, tracker: str,
            decoding: Decoding, request: gr.Request = None) -> Iterator[tuple]:
        """Ask about the target (its key boxes); a new box, frame, video or tracker starts a new conversation.
        Yields as it goes: the stage while tracking and extracting, then the answer growing in the chat.

        Yields (session, chat, status, track video, track quality, keys, target-used, error, question)."""
        session = self._session(session, request)
        skip = gr.skip()
        try:
            if session.video is None or session.info is None:
                raise UsageError("no video: upload a video (or pick an example) first")
            if tracker not in TRACKERS:
                raise UsageError(f"unknown tracker {tracker!r}", hint=f"pick one of {', '.join(TRACKERS)}")
            target = self.target_of(session, editor)
            key = (str(session.video), target.frame, target.box, target.more, tracker)
            question = (question or "").strip()
            note = ""
            if key == session.target_key and session.history:
                if not question:
                    raise UsageError("the question is empty: type a follow-up question, or press New target")
                if "<bbox>" in question:
                    from artemis_cli.ownvideo.referrer import follow_up_question

                    question, note = follow_up_question(question), f" ({FOLLOW_UP_NOTE})"
            elif not question:
                question = self.default_question
            referrer = self.referrer(tracker)
            started = time.perf_counter()
            if key != session.target_key:
                session.reset_target()
                self.log(f"web: target {session.name}: key boxes "
                         f"{', '.join(f'{box_text(b)} on frame {f}' for f, b in _keys(target))}, tracker {tracker}")
                yield (session, chat_messages(session.history), "tracking the box through the video ...", skip, skip,
                       skip, skip, "", skip)
                session.prepared = referrer.prepare(target)
                session.target_key = key
            prepared = session.prepared
            spans = _spans(prepared)
            asked = chat_messages(session.history) + [{"role": "user", "content": question}]
            yield (session, asked, "answering ..." + note, skip, prepared.quality_line(),
                   keys_text(_keys(target), spans), skip, "", "")
            answer = None
            for answer, text in _streamed(referrer, prepared, question, session.history, decoding.settings()):
                if answer is None:  # a new piece: the answer so far, in the conversation
                    yield (session, asked + [{"role": "assistant", "content": text}], "answering ..." + note, skip,
                           skip, skip, skip, "", skip)
        except Exception as exc:  # ArtemisError: the user's to fix; anything else is logged as a bug
            yield (session, chat_messages(session.history), "", skip, skip, skip, skip, error_text(exc, session), skip)
            return
        session.history.append((question, answer.answer))
        seconds = time.perf_counter() - started
        self.log(f"web: answered turn {len(session.history)} in {seconds:.2f} s ({answer.completion_tokens} tokens)")
        try:
            video = self.track_video(session, answer.frames_used)
        except ArtemisError as exc:
            video = None
            self.log(f"web: no track video: {exc.message}")
        used = (f"asked about frame {target.frame}, box {box_text(target.box)} (video pixels)"
                + (f" and {len(target.more)} more key box(es)" if target.more else "")
                + f"; frames fed to the model: {', '.join(str(i) for i in answer.frames_used)}")
        yield (session, chat_messages(session.history), f"answered in {seconds:.1f} s{note}", video,
               session.prepared.quality_line(), skip, used, "", "")

    def track_video(self, session: WebSession, frames_used: Sequence[int]) -> Optional[str]:
        """The video of the track: every tracked frame with its box (key frames yellow, dropped frames red,
        low confidence orange) and the frames fed to the model marked; an H.264 .mp4 the browser plays."""
        from artemis_cli.ownvideo.preview import render_preview

        prepared = session.prepared
        fps = len(prepared.frame_indices) / max(prepared.num_frames, 1) * (session.fps or 10.0)
        out = session.folder / f"track-{len(session.tracks)}.mp4"
        session.tracks.append(out)
        return str(render_preview(out, prepared, used=frames_used, fps=max(2.0, min(fps, 15.0))))

    def new_target(self, session: Optional[WebSession], request: gr.Request = None):
        """Clear the conversation, the key boxes and the box; keep the video and the frame.

        Returns (session, box editor, chat, track video, track quality, keys, target-used, status, error, question)."""
        session = self._session(session, request)
        session.reset_target()
        session.keys = []
        editor: Any = gr.skip()
        if session.video is not None:
            try:
                frame = read_frames(session.video, [session.frame])[session.frame]
                editor = {"image": editor_image(frame, session.scale), "boxes": []}
            except ArtemisError:
                editor = gr.skip()
        return (session, editor, [], None, "", "", "drag a box around the target on the frame", "", "",
                self.default_question)


STREAM_EVERY_S = 0.15  # the page is updated at most this often while an answer streams


def _streamed(referrer, prepared, question: str, history, decoding) -> Iterator[tuple[Any, str]]:
    """(None, the answer so far) while `Referrer.ask` generates (it runs in a thread and hands over each new
    piece), then (the `Answer`, its text). Its exception is raised here."""
    import queue
    import threading

    pieces: "queue.Queue[Optional[str]]" = queue.Queue()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["answer"] = referrer.ask(prepared, question, history=list(history), decoding=decoding,
                                             on_text=pieces.put)
        except BaseException as exc:  # handed to the page's thread below
            outcome["error"] = exc
        finally:
            pieces.put(None)

    thread = threading.Thread(target=work, name="web-answer", daemon=True)
    thread.start()
    text, shown = "", 0.0
    while (piece := pieces.get()) is not None:
        text += piece
        if time.monotonic() - shown >= STREAM_EVERY_S:
            shown = time.monotonic()
            yield None, text
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    yield outcome["answer"], outcome["answer"].answer


def _keys(target) -> list[tuple[int, tuple]]:
    return [(k.frame, k.box) for k in target.key_boxes()]


def _spans(prepared) -> dict:
    from artemis_cli.ownvideo.tracking import key_spans

    track = prepared.track
    return key_spans(track.get("frames", []), track.get("governed_by", []))


CSS = """
#error { color: #b91c1c; }
#target-used, #frame-label, #track-quality { font-family: monospace; font-size: 0.9em; }
#status { font-style: italic; }
/* two columns on a wide screen: the video and its editor left, the question and the conversation right */
#main { display: grid !important; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 16px; }
#video-col { grid-column: 1; grid-row: 1; }
#editor-col { grid-column: 1; grid-row: 2; }
#ask-col { grid-column: 2; grid-row: 1 / span 2; }
/* a phone: one column, the question and Ask right after the video, before the editor */
@media (max-width: 720px) {
  #main { grid-template-columns: minmax(0, 1fr); }
  #video-col { grid-row: 1; } #ask-col { grid-column: 1; grid-row: 2; } #editor-col { grid-row: 3; }
}
#editor-tools { font-size: 0.85em; color: #555; }
"""
# the editor switches to its move tool once a box is drawn; a new frame or target starts with the draw tool again
DRAW_TOOL_JS = "() => { const b = document.querySelector(\"#box-editor button[aria-label='Create box']\"); if (b) b.click(); }"
EDITOR_TOOLS = ("The editor's tools, left to right: **draw** a box (C), **move** it (D), **remove** it (Del), "
                "rotate the image.")


def build_page(handlers: PageHandlers, *, model_name: str, tracker: str, examples: Sequence[Path] = (),
               max_new_tokens: int = 256, concurrency: int = 1) -> gr.Blocks:
    """Lay the page out and wire `handlers`; the `Blocks` is returned unlaunched."""
    with gr.Blocks(title="Artemis: ask about a target in a video", delete_cache=(1800, 3600),
                   analytics_enabled=False) as page:  # nothing leaves the machine
        session = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=end_session)
        gr.Markdown("## Artemis: ask about a target in a video\nUpload a video or a folder of frames (or pick an "
                    "example), choose a frame, drag a box around the target, ask. To correct the track, add a key "
                    "box on another frame.")
        gr.Markdown(f"Model: `{model_name}`", elem_id="model-name")
        with gr.Row(elem_id="main"):
            with gr.Column(elem_id="video-col"):
                video_input = gr.File(label="Video", elem_id="video-input", file_count="single", type="filepath",
                                      file_types=VIDEO_TYPES)
                frames_input = gr.File(label="Or a folder of frames (images)",
                                       elem_id="frames-input", file_count="directory", type="filepath",
                                       file_types=IMAGE_TYPES, height=130)
                if examples:
                    gr.Examples(examples=[[str(p)] for p in examples], inputs=[video_input], label="Examples")
                player = gr.Video(label="The video", elem_id="player", interactive=False, height=300)
            with gr.Column(elem_id="ask-col"):
                question = gr.Textbox(handlers.default_question, label="Question (<bbox> marks the target)",
                                      elem_id="question", lines=2,
                                      placeholder="A follow-up question about the same target")
                with gr.Row():
                    ask = gr.Button("Ask", variant="primary", elem_id="ask", min_width=80)
                    new_target = gr.Button("New target", elem_id="new-target", min_width=80)
                status = gr.Markdown(elem_id="status")
                error = gr.Markdown(elem_id="error")
                chat = gr.Chatbot(label="Conversation", elem_id="chat", height=320)
                with gr.Accordion("Advanced", open=False):
                    tracker_choice = gr.Dropdown(list(TRACKERS), value=tracker, label="Tracker", elem_id="tracker")
                    mode = gr.Radio(["greedy", "sample"], value="greedy", label="Decoding", elem_id="decoding")
                    temperature = gr.Slider(0.01, 2.0, value=0.2, step=0.01, label="Temperature (sampling)",
                                            elem_id="temperature")
                    seed = gr.Number(0, precision=0, label="Seed (sampling)", elem_id="seed")
                    new_tokens = gr.Slider(1, max(max_new_tokens, 1), value=max_new_tokens, step=1,
                                           label="Max new tokens", elem_id="max-new-tokens")
            with gr.Column(elem_id="editor-col"):
                frame_slider = gr.Slider(0, 1, value=0, step=1, label="Frame (from 0)", elem_id="frame-slider",
                                         interactive=False, visible=False)
                frame_text = gr.Markdown(elem_id="frame-label")
                box_editor = image_annotator(label="Draw one box around the target", elem_id="box-editor",
                                             single_box=True, sources=None, image_type="numpy",
                                             label_list=["target"], label_colors=[(255, 40, 40)],
                                             use_default_label=True, disable_edit_boxes=True,
                                             show_clear_button=False, show_download_button=False,
                                             box_min_size=4, height=420)
                gr.Markdown(EDITOR_TOOLS, elem_id="editor-tools")
                target_used = gr.Markdown(elem_id="target-used")
                with gr.Row():
                    add_key = gr.Button("Add as key box", elem_id="add-key", size="sm", min_width=80)
                    clear_keys = gr.Button("Clear key boxes", elem_id="clear-keys", size="sm", min_width=80)
                keys = gr.Markdown(elem_id="keys")
        # the legend above the player, not as its label: a media label sits over the video's top-left corner,
        # where each frame's caption ("#12 fed to the model 0.77") is drawn
        gr.Markdown("**The track, played back**: key frames yellow, dropped frames red, frames fed to the model "
                    "in blue; each frame's number, state and confidence top left.", elem_id="track-legend")
        with gr.Row():
            track_video = gr.Video(label="The track, played back", show_label=False, elem_id="track-video",
                                   interactive=False, height=320)
        track_quality = gr.Markdown(elem_id="track-quality")

        loaded = [session, player, frame_slider, frame_text, box_editor, target_used, keys, chat, track_video,
                  track_quality, status, error]
        video_input.change(handlers.load_video, [video_input, session], loaded, concurrency_limit=concurrency)
        frames_input.change(handlers.load_frames, [frames_input, session], loaded, concurrency_limit=concurrency)
        frame_slider.change(handlers.show_frame, [frame_slider, session],
                            [session, box_editor, frame_text, target_used, error], trigger_mode="always_last",
                            concurrency_limit=concurrency).then(None, js=DRAW_TOOL_JS)
        box_editor.change(handlers.box_drawn, [box_editor, session], [session, target_used, error],
                          trigger_mode="always_last")
        add_key.click(handlers.add_key, [box_editor, session], [session, keys, target_used, error])
        clear_keys.click(handlers.clear_keys, [session], [session, keys, error])

        def ask_event(session, editor, question, tracker, mode, temperature, seed, max_new_tokens,
                      request: gr.Request):
            decoding = Decoding(mode, temperature, 0 if seed is None else seed, max_new_tokens)
            yield from handlers.ask(session, editor, question, tracker, decoding, request=request)

        ask_inputs = [session, box_editor, question, tracker_choice, mode, temperature, seed, new_tokens]
        ask_outputs = [session, chat, status, track_video, track_quality, keys, target_used, error, question]
        ask.click(ask_event, ask_inputs, ask_outputs, concurrency_limit=concurrency, concurrency_id="model")
        question.submit(ask_event, ask_inputs, ask_outputs, concurrency_limit=concurrency, concurrency_id="model")
        new_target.click(handlers.new_target, [session],
                         [session, box_editor, chat, track_video, track_quality, keys, target_used, status, error,
                          question]).then(None, js=DRAW_TOOL_JS)
        page.unload(handlers.end)
    return page
