"""`artemis chat`: a multi-turn conversation about a target, one line at a time (a terminal or piped stdin).

Each line is a question about the current target; the conversation is kept in the model's template
(`Referrer.ask(..., history=...)`: the first question carries the video and the boxes, so it needs its
``<bbox>``; an empty first line asks the default question). Commands: ``/box X1,Y1,X2,Y2 [FRAME]``
(a new target: a new track and a new conversation), ``/key X1,Y1,X2,Y2 FRAME`` (one more key box for the
current target where its track went wrong: it is tracked again, the conversation starts again),
``/reset`` (a new conversation about the same target), ``/save FILE`` (the transcript as JSON), ``/quit``,
``/help``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from artemis_cli.errors import ArtemisError, UsageError
from artemis_cli.ownvideo.prepare import Target
from artemis_cli.ownvideo.referrer import DEFAULT_QUESTION, Referrer, follow_up_question


HELP = ("commands: /box X1,Y1,X2,Y2 [FRAME] (a new target), /key X1,Y1,X2,Y2 FRAME (correct the track with one "
        "more key box), /reset (a new conversation), /save FILE (the transcript as JSON), /quit; the first question "
        "needs one <bbox> (Enter alone asks the default)")


@dataclass
class Conversation:
    target: Target
    turns: list[dict] = field(default_factory=list)  # {question, answer, seconds}

    def history(self) -> list[tuple[str, str]]:
        return [(turn["question"], turn["answer"]) for turn in self.turns]

    def to_json(self) -> dict:
        out = {"video": str(self.target.video), "frame": self.target.frame, "box": list(self.target.box),
               "turns": self.turns}
        if self.target.more:
            out["keys"] = [{"frame": frame, "box": list(box)} for frame, box in self.target.more]
        return out


class ChatSession:
    """The state of one `chat`: the referrer, the current target's prepared record and conversations."""

    def __init__(self, referrer: Referrer, target: Target, *, decoding=None,
                 say: Callable[[str], None] = print, note: Callable[[str], None] = print, prepared=None):
        """`prepared`: the target already prepared (`ask.prepare_while_loading`), else it is prepared here."""
        self.referrer = referrer
        self.decoding = decoding
        self.say = say  # answers (stdout)
        self.note = note  # everything else (stderr)
        self.conversations: list[Conversation] = []
        self.prepared = None
        self._new_target(target, prepared)

    @property
    def current(self) -> Conversation:
        return self.conversations[-1]

    def _new_target(self, target: Target, prepared=None) -> None:
        start = time.perf_counter()
        self.prepared = prepared if prepared is not None else self.referrer.prepare(target)
        self.conversations.append(Conversation(target))
        keys = f" (+{len(target.more)} key box(es))" if target.more else ""
        took = f"{time.perf_counter() - start:.2f} s" if prepared is None else "tracked while the model loaded"
        self.note(f"target: box {','.join(f'{v:g}' for v in target.box)} on frame {target.frame}{keys} "
                  f"({took}); {self.prepared.quality_line()}")
        for line in self.prepared.warnings():
            self.note(f"warning: {line}")

    def handle(self, line: str) -> bool:
        """Act on one input line; False once the session should end. Errors are reported, not raised."""
        line = line.strip()
        try:
            if line.startswith("/"):
                return self._command(line)
            self._ask(line)
        except ArtemisError as exc:
            self.note(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""))
        return True

    def _ask(self, question: str) -> None:
        if not question:
            if self.current.turns:
                return
            question = DEFAULT_QUESTION
        start = time.perf_counter()
        if self.current.turns and "<bbox>" in question:
            question = follow_up_question(question)
            self.note(f"(a follow-up's <bbox> is the same target: asked as {question!r})")
        answer = self.referrer.ask(self.prepared, question, history=self.current.history(), decoding=self.decoding)
        seconds = time.perf_counter() - start
        self.current.turns.append({"question": question, "answer": answer.answer, "seconds": round(seconds, 3)})
        self.say(answer.answer)
        self.note(f"({seconds:.2f} s, {answer.completion_tokens} tokens)")

    def _command(self, line: str) -> bool:
        from artemis_cli.ownvideo.video import parse_box

        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/help":
            self.note(HELP)
        elif name == "/reset":
            self.conversations.append(Conversation(self.current.target))
            self.note("new conversation about the same target")
        elif name == "/box":
            parts = rest.split()
            if not parts or len(parts) > 2:
                raise UsageError("/box X1,Y1,X2,Y2 [FRAME]")
            frame = self.current.target.frame if len(parts) == 1 else _frame(parts[1])
            self._new_target(Target(self.current.target.video, parse_box(parts[0]), frame))
        elif name == "/key":
            parts = rest.split()
            if len(parts) != 2:
                raise UsageError("/key X1,Y1,X2,Y2 FRAME (one more key box for the current target)")
            current = self.current.target
            frame = _frame(parts[1], "/key")
            others = [(f, b) for f, b in current.more if f != frame]
            if frame == current.frame:
                self._new_target(Target(current.video, parse_box(parts[0]), frame, tuple(others)))
            else:
                self._new_target(Target(current.video, current.box, current.frame,
                                        tuple(sorted(others + [(frame, parse_box(parts[0]))]))))
        elif name == "/save":
            if not rest:
                raise UsageError("/save FILE")
            self.save(Path(rest).expanduser())
        else:
            raise UsageError(f"unknown command {name}", hint=HELP)
        return True

    def save(self, path: Path) -> Path:
        from artemis_cli.common.atomic import atomic_write_json

        if path.resolve() == Path(self.current.target.video).resolve():
            raise UsageError(f"/save {path}: that is the video")
        atomic_write_json(path, self.transcript())
        self.note(f"saved {path}")
        return path

    def transcript(self) -> dict:
        return {"model": self.referrer.model_name, "settings": self.referrer.settings(),
                "conversations": [c.to_json() for c in self.conversations if c.turns]}


def _frame(text: str, command: str = "/box") -> int:
    try:
        frame = int(text)
    except ValueError:
        raise UsageError(f"{command}: frame {text!r} is not a whole number") from None
    if frame < 0:
        raise UsageError(f"{command}: frame {frame}: frame indices start at 0")
    return frame


def run_chat(session: ChatSession, lines: Iterable[str], prompt: Optional[Callable[[], None]] = None) -> ChatSession:
    """Feed `lines` to the session until they end or ``/quit``."""
    if prompt:
        prompt()
    for line in lines:
        if not session.handle(line):
            break
        if prompt:
            prompt()
    return session
