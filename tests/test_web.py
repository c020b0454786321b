"""`artemis web` without a browser: serving rules, the box editor's coordinates, frame reading (the same
frames the own-video library tracks), the page handlers' errors and session cleanup, the doctor check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.errors import InputError, UsageError
from artemis_cli.web.frames import VideoInfo, editor_box, editor_image, editor_scale, probe_video, read_frames
from artemis_cli.web.options import WebOptions, is_loopback, parse_auth

runner = CliRunner()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """(path, TrackingVideo): a generated 12-frame 160x90 mp4 with known boxes."""
    from artemis_cli.data.synthetic_tracking import make_tracking_video, save_video

    clip = make_tracking_video(seed=1, n_frames=12, width=160, height=90)
    return save_video(clip, tmp_path_factory.mktemp("web_video") / "clip.mp4"), clip


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True),
                                            ("::1", True), ("[::1]", True), ("0.0.0.0", False),
                                            ("192.168.1.5", False), ("example.org", False), ("::", False)])
def test_only_loopback_hosts_count_as_local(host, loopback):
    assert is_loopback(host) is loopback


def test_non_loopback_host_needs_a_login_from_the_flag_or_the_environment():
    with pytest.raises(UsageError, match="reachable from other machines") as err:
        WebOptions(demo=True, host="0.0.0.0").credentials(env={})
    assert "--auth USER:PASS" in err.value.hint and "ARTEMIS_WEB_AUTH" in err.value.hint
    assert WebOptions(demo=True, host="0.0.0.0", auth="ann:pa:ss").credentials(env={}) == ("ann", "pa:ss")
    assert WebOptions(demo=True, host="0.0.0.0").credentials(env={"ARTEMIS_WEB_AUTH": "bo:pw"}) == ("bo", "pw")
    assert WebOptions(demo=True).credentials(env={}) is None  # loopback: no login needed
    with pytest.raises(UsageError, match="expected USER:PASS") as err:
        parse_auth("secretonly", "--auth")
    assert "secretonly" not in err.value.message  # a malformed value may still be a password


def test_options_need_a_model_or_demo_and_reject_bad_values():
    from artemis_cli.common.config import load_config
    from artemis_cli.errors import ConfigError

    for bad, message in (({}, "pass --model"), ({"demo": True, "model": "m"}, "leave out --model"),
                         ({"demo": True, "max_upload_mb": 0}, "max_upload_mb"),
                         ({"demo": True, "concurrency": 0}, "concurrency"),
                         ({"demo": True, "tracker": "nano"}, "tracker"), ({"demo": True, "colour": 1}, "colour")):
        with pytest.raises(ConfigError, match=message):
            load_config(WebOptions, base=bad)
    assert WebOptions(demo=True, max_upload_mb=2.5).max_upload_bytes == 2_500_000


def test_cli_refuses_an_open_host_without_login_before_loading_anything(monkeypatch, tmp_path):
    import artemis_cli.web.server as server

    monkeypatch.delenv("ARTEMIS_WEB_AUTH", raising=False)
    monkeypatch.setattr(server, "load_backend", lambda *a, **k: pytest.fail("loaded a model for a refused host"))
    result = runner.invoke(app, ["web", "--demo", "--host", "0.0.0.0", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "error: --host 0.0.0.0 is reachable from other machines: it needs a login" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["web"])
    assert result.exit_code == 2 and "pass --model CHECKPOINT (or --demo" in result.output


def test_launch_settings_carry_host_login_and_upload_limit():
    from artemis_cli.web.server import launch_settings

    settings = launch_settings(WebOptions(demo=True, host="10.0.0.7", port=8123, auth="u:p", max_upload_mb=12))
    assert (settings["server_name"], settings["server_port"], settings["auth"]) == ("10.0.0.7", 8123, ("u", "p"))
    assert settings["max_file_size"] == 12_000_000 and settings["share"] is False


def test_editor_box_is_in_video_pixels_whatever_the_editor_scale():
    info = VideoInfo(num_frames=10, width=96, height=64)
    scale = editor_scale(info)
    assert scale == 6  # 96 px is shown 576 px wide; a 640 px video as it is
    assert editor_scale(VideoInfo(5, 1920, 1080)) == 1
    frame = np.arange(64 * 96 * 3, dtype=np.uint8).reshape(64, 96, 3)
    shown = editor_image(frame, scale)
    assert shown.shape == (384, 576, 3) and (shown[6 * 10 + 5, 6 * 20 + 3] == frame[10, 20]).all()
    drawn = {"boxes": [{"xmin": 63, "ymin": 30, "xmax": 300, "ymax": 241, "label": "target"}]}
    assert editor_box(drawn, info, scale) == (10.5, 5.0, 50.0, 40.17)
    # corners in either order, clipped to the frame; the newest box wins
    dragged_back = {"boxes": [{"xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9},
                              {"xmin": 700, "ymin": 500, "xmax": 60, "ymax": 12}]}
    assert editor_box(dragged_back, info, scale) == (10.0, 2.0, 96.0, 64.0)
    with pytest.raises(UsageError, match="no box drawn"):
        editor_box({"image": None, "boxes": []}, info, scale)
    with pytest.raises(UsageError, match="is empty inside"):
        editor_box({"boxes": [{"xmin": 700, "ymin": 0, "xmax": 800, "ymax": 50}]}, info, scale)


def test_frames_are_the_ones_the_own_video_library_tracks(video):
    from artemis_cli.ownvideo.video import DecodeReport, iter_frames, probe

    path, clip = video
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (12, 160, 90)
    decoded = {frame.index: frame.rgb() for frame in iter_frames(probe(path), DecodeReport())}
    picked = read_frames(path, [0, 7, 11])
    for index in (0, 7, 11):
        np.testing.assert_array_equal(picked[index], decoded[index])
    with pytest.raises(InputError, match="frame 12 could not be decoded"):
        read_frames(path, [12])


def test_text_file_is_not_a_video(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    with pytest.raises(InputError, match=r"notes.txt is not a video that can be decoded") as err:
        probe_video(text)
    assert str(tmp_path) not in err.value.message  # the server's paths stay off the page


class _NoModel:
    def __call__(self, tracker):
        raise AssertionError("the model was asked although the input was bad")


def last(outputs):
    """The final update of the generator `PageHandlers.ask`."""
    return list(outputs)[-1]


def test_handlers_show_errors_and_keep_the_session(tmp_path, video):
    from artemis_cli.web.page import Decoding, PageHandlers
    from artemis_cli.web.session import SessionFolders, end_session

    folders = SessionFolders(tmp_path)
    lines = []
    handlers = PageHandlers(_NoModel(), folders, default_question="What is the <bbox> doing?", log=lines.append)
    text = tmp_path / "bad.txt"
    text.write_text("hello")
    session, player, slider, label, editor, *rest = handlers.load_video(str(text), None)
    error = rest[-1]
    assert player is None and "**error:** bad.txt is not a video" in error and session.video is None
    assert slider["visible"] is False  # no slider reading 0-1 before there is a video
    assert any("rejected upload bad.txt" in line for line in lines)

    path, _ = video
    session, player, slider, label, editor, confirm, *rest = handlers.load_video(str(path), session)
    assert rest[-1] == "" and editor["image"].shape == (360, 640, 3)  # 160x90 enlarged 4x for drawing
    assert slider["maximum"] == 11 and slider["interactive"] is True and slider["visible"] is True
    assert label == "frame 0 of 0-11 (12 frames, 160x90 px)"  # one numbering, from 0
    assert Path(player).suffix == ".mp4" and Path(player).is_file()  # something the page's player plays
    assert session.video.parent.parent == session.folder and session.video.name == "clip.mp4"
    assert session.video.read_bytes() == path.read_bytes()

    session, editor, label, used, error = handlers.show_frame(5, session)
    assert session.frame == 5 and error == "" and label.startswith("frame 5 of 0-11")
    np.testing.assert_array_equal(editor["image"][::4, ::4], read_frames(path, [5])[5])
    # a box is confirmed as soon as it is drawn, in video pixels with its frame
    drawn = {"boxes": [{"xmin": 40, "ymin": 20, "xmax": 120, "ymax": 100}]}
    session, confirm, error = handlers.box_drawn(drawn, session)
    assert confirm.startswith("box [10, 5, 30, 25] on frame 5, in video pixels of the 160x90 frame") and error == ""
    session, keys, confirm, error = handlers.add_key(drawn, session)
    assert session.keys == [(5, (10.0, 5.0, 30.0, 25.0))] and keys.splitlines()[1] == "1. frame 5, box [10, 5, 30, 25]"

    outputs = last(handlers.ask(session, {"boxes": []}, "", "nano", Decoding()))
    assert "unknown tracker 'nano'" in outputs[7]
    session, keys, error = handlers.clear_keys(session)
    outputs = last(handlers.ask(session, {"boxes": []}, "", "csrt", Decoding()))
    assert "no box drawn" in outputs[7]

    folder = session.folder
    assert folder.is_dir() and folders.live() == [folder]
    end_session(session)  # gradio's delete callback when the tab closes or the state expires
    assert not folder.exists() and path.exists()  # the session's link goes, never the original
    folders.close()
    assert not folders.root.exists()


def test_a_folder_of_frames_opens_like_a_video_and_says_what_it_left_out(tmp_path, video):
    from PIL import Image

    from artemis_cli.web.page import PageHandlers
    from artemis_cli.web.session import SessionFolders

    _, clip = video
    upload = tmp_path / "upload"  # as gradio hands a directory over: one path per file
    upload.mkdir()
    files = []
    for index, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(upload / f"frame_{index}.png")  # natural order: frame_2 before frame_10
        files.append(upload / f"frame_{index}.png")
    (upload / "notes.txt").write_text("shot on a phone")
    (upload / ".DS_Store").write_bytes(b"\x00")
    files += [upload / "notes.txt", upload / ".DS_Store"]
    folders = SessionFolders(tmp_path)
    lines = []
    handlers = PageHandlers(_NoModel(), folders, default_question="What is the <bbox> doing?", log=lines.append)
    session, player, slider, label, editor, confirm, *rest = handlers.load_frames([str(f) for f in files[::-1]], None)
    status, error = rest[-2:]
    assert error == "" and status == "left out 2 file(s) that are not frame images: .DS_Store, notes.txt"
    assert label == "frame 0 of 0-11 (12 frames, 160x90 px)" and slider["maximum"] == 11
    assert session.kind == "frames" and session.video.name == "frames" and session.video.is_dir()
    assert sorted(p.name for p in session.video.iterdir()) == sorted(f"frame_{i}.png" for i in range(12))
    np.testing.assert_array_equal(editor["image"][::4, ::4], clip.frames[0])  # PNG: the frames as they were
    np.testing.assert_array_equal(read_frames(session.video, [10])[10], clip.frames[10])
    import av

    with av.open(player) as container:  # the player's H.264 copy of the images
        assert sum(1 for _ in container.decode(video=0)) == 12
    assert any(line.startswith("web: frames frames: 12 frames, 160x90") for line in lines)
    assert handlers.load_video(None, session)[0].video == session.video  # clearing the *video* input keeps them
    for bad, message in (([upload / "notes.txt"], "has no frame images"),
                         ([files[0], tmp_path / "frame_0.png"], "two images named frame_0.png")):
        if not bad[-1].exists():
            bad[-1].write_bytes(files[0].read_bytes())
        session, player, *rest = handlers.load_frames([str(f) for f in bad], session)
        assert player is None and message in rest[-1] and session.video is None
    session, player, *rest = handlers.load_frames([str(f) for f in files], session)
    assert session.video is not None
    session, player, slider, *rest = handlers.load_frames(None, session)  # cleared: the frames go
    assert session.video is None and player is None and slider["visible"] is False
    folders.close()


def test_doctor_reports_the_web_extra(monkeypatch):
    from importlib import metadata

    from artemis_cli.doctor import check_web

    check = check_web()
    assert check.status == "ok" and check.detail.startswith("gradio 6.")
    real = metadata.version

    def without_annotator(name):
        if name == "gradio-image-annotation":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", without_annotator)
    check = check_web()
    assert check.status == "warn" and "gradio-image-annotation not installed" in check.detail
    assert check.fix == "pip install 'artemis[web]'"


@pytest.mark.slow
def test_handlers_answer_as_the_referrer_with_the_advanced_settings(tmp_path, tiny_artemis):
    """The Advanced panel's tracker and sampling settings reach `Referrer.prepare/ask`; the stages show while
    it works; a second key box corrects the track; a follow-up's <bbox> means the same target."""
    import torch

    from artemis_cli.model.generation import DecodingSettings
    from artemis_cli.ownvideo.referrer import follow_up_question
    from artemis_cli.ownvideo.prepare import Target
    from artemis_cli.ownvideo.referrer import DEFAULT_QUESTION, Referrer
    from artemis_cli.web.page import Decoding, PageHandlers
    from artemis_cli.web.session import SessionFolders
    from ownvideo_helpers import sharpened, tracked_frames

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, loaded = sharpened(tiny_artemis, tmp_path / "sharp")
        referrers = {name: Referrer(loaded=loaded, tracker=name, cache_dir=tmp_path / "cache") for name in ("csrt", "kcf")}
        folders = SessionFolders(tmp_path)
        handlers = PageHandlers(referrers.__getitem__, folders, default_question=DEFAULT_QUESTION, log=lambda line: None)
        from artemis_cli.data.synthetic_tracking import make_tracking_video, save_video

        clip = make_tracking_video(seed=2, n_frames=12, width=320, height=180)
        path = save_video(clip, tmp_path / "walk.mp4")
        session, *_ = handlers.load_video(str(path), None)
        session, *_ = handlers.show_frame(2, session)
        box = [round(v) for v in clip.objects["walker"].boxes[2]]
        scale = session.scale
        editor = {"boxes": [{"xmin": box[0] * scale, "ymin": box[1] * scale, "xmax": box[2] * scale, "ymax": box[3] * scale}]}
        decoding = Decoding(mode="sample", temperature=0.9, seed=7, max_new_tokens=6)
        updates = list(handlers.ask(session, editor, "", "kcf", decoding))
        statuses = [u[2] for u in updates if isinstance(u[2], str)]
        assert statuses[0].startswith("tracking") and statuses[1].startswith("answering")
        session, chat, status, video, quality, keys, used, error, question = updates[-1]
        assert error == "" and question == "" and status.startswith("answered in")
        assert used.startswith(f"asked about frame 2, box [{', '.join(map(str, box))}] (video pixels)")
        assert quality.startswith("track quality: on target") and keys is not None
        expected = referrers["kcf"].ask(referrers["kcf"].prepare(Target(path, tuple(map(float, box)), 2)), DEFAULT_QUESTION,
                                        decoding=DecodingSettings(sample=True, temperature=0.9, seed=7, max_new_tokens=6))
        assert chat[-1] == {"role": "assistant", "content": expected.answer}
        import av

        with av.open(video) as container:  # the track played back: every tracked frame, H.264 for the browser
            stream = container.streams.video[0]
            assert stream.codec_context.name in ("h264", "mpeg4") and sum(1 for _ in container.decode(stream)) == len(tracked_frames(12, (2,)))
        assert session.target_key[-1] == "kcf"
        # an empty follow-up is refused on the page, a typed one continues the conversation
        outputs = last(handlers.ask(session, editor, "  ", "kcf", decoding))
        assert "the question is empty" in outputs[7] and len(session.history) == 1
        session, chat, *_ = last(handlers.ask(session, editor, "And then?", "kcf", decoding))
        assert [m["content"] for m in chat[::2]] == [DEFAULT_QUESTION, "And then?"]
        # a follow-up may name the target again: its <bbox> is asked as "the target"
        session, chat, status, *_ = last(handlers.ask(session, editor, "Is the <bbox> red?", "kcf", decoding))
        assert chat[-2]["content"] == follow_up_question("Is the <bbox> red?") == "Is the target red?"
        assert '"the target"' in status and len(session.history) == 3
        # a second key box on another frame corrects the track: a new target, tracked from both
        session, *_ = handlers.show_frame(9, session)
        late = [round(v) for v in clip.objects["walker"].boxes[9]]
        second = {"boxes": [{"xmin": late[0] * scale, "ymin": late[1] * scale, "xmax": late[2] * scale,
                             "ymax": late[3] * scale}]}
        session, keys, confirm, error = handlers.add_key(second, session)
        assert error == "" and session.keys == [(2, tuple(map(float, box))), (9, tuple(map(float, late)))]
        updates = list(handlers.ask(session, second, "", "kcf", decoding))
        session, chat, status, video, quality, keys, used, error, _ = updates[-1]
        assert error == "" and "2 key box(es)" in quality and len(session.history) == 1  # a new conversation
        keys = [u[5] for u in updates if isinstance(u[5], str)][-1]
        assert keys.count("governs frames") == 2 and "1. frame 2" in keys and "2. frame 9" in keys
        both = Target(path, tuple(map(float, box)), 2, ((9, tuple(map(float, late))),))
        expected = referrers["kcf"].ask(referrers["kcf"].prepare(both), DEFAULT_QUESTION, decoding=decoding.settings())
        asked = session.prepared.target
        assert (asked.frame, asked.box, asked.more) == (both.frame, both.box, both.more)
        assert chat[-1]["content"] == expected.answer  # as `ask` with both boxes
        # a library error names the upload, not the server's copy of it
        session.video.unlink()
        handlers.clear_keys(session)
        moved = {"boxes": [{"xmin": 10 * scale, "ymin": 10 * scale, "xmax": 60 * scale, "ymax": 60 * scale}]}
        outputs = last(handlers.ask(session, moved, "", "csrt", Decoding(max_new_tokens=6)))
        assert outputs[7].startswith("**error:** walk.mp4: no such video file") and str(tmp_path) not in outputs[7]
        assert session.history == []
        session, *cleared = handlers.new_target(session)
        assert session.history == [] and session.keys == [] and cleared[1] == [] and cleared[-1] == DEFAULT_QUESTION
        folders.close()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_served_page_enforces_login_and_upload_limit(tmp_path, tiny_artemis_dir, monkeypatch):
    """`serve_web` itself (no browser): a login is required, an upload over --max-upload-mb is refused,
    and the temp root is gone after the server stops."""
    import socket
    import threading

    import httpx

    from artemis_cli.web import serve_web

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = WebOptions(model=str(tiny_artemis_dir), port=port, auth="ann:secret-pw", max_upload_mb=0.01,
                         concurrency=2, device="cpu", cache_dir=tmp_path / "cache")
    ready, stop, failure = threading.Event(), threading.Event(), []

    def run():
        try:
            serve_web(options, ready=lambda url: ready.set(), stop=stop)
        except BaseException as exc:  # reported by the assertion below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(120) and not failure, failure
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.get("/config").status_code == 401
            assert client.post("/login", data={"username": "ann", "password": "wrong"}).status_code >= 400
            assert client.post("/login", data={"username": "ann", "password": "secret-pw"}).status_code == 200
            assert client.get("/config").status_code == 200  # the login cookie
            small = client.post("/gradio_api/upload", files={"files": ("a.mp4", b"x" * 5_000)})
            assert small.status_code == 200
            big = client.post("/gradio_api/upload", files={"files": ("b.mp4", b"x" * 20_000)})
            assert big.status_code == 413
        roots = list(tmp_path.glob("artemis-web-*"))
        assert len(roots) == 1
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive() and not list(tmp_path.glob("artemis-web-*"))


def test_page_has_the_stable_ids_and_asks_on_the_concurrency_workers(tmp_path):
    from artemis_cli.web.page import PageHandlers, build_page
    from artemis_cli.web.session import SessionFolders

    folders = SessionFolders(tmp_path)
    handlers = PageHandlers(_NoModel(), folders, default_question="What is the <bbox> doing?")
    page = build_page(handlers, model_name="m", tracker="kcf", concurrency=3)
    ids = {block.elem_id for block in page.blocks.values() if getattr(block, "elem_id", None)}
    assert {"video-input", "frames-input", "player", "frame-slider", "frame-label", "box-editor", "target-used", "add-key",
            "clear-keys", "keys", "question", "ask", "new-target", "status", "chat", "error", "track-video",
            "track-quality", "tracker"} <= ids
    assert "answer" not in ids  # the answer lives in the conversation only
    tracker = next(b for b in page.blocks.values() if getattr(b, "elem_id", None) == "tracker")
    assert tracker.value == "kcf"
    model_events = [fn for fn in page.fns.values() if fn.concurrency_id == "model"]
    assert len(model_events) == 2 and {fn.concurrency_limit for fn in model_events} == {3}  # Ask and Enter
    assert any(fn.name == "end" for fn in page.fns.values())  # the unload cleanup is wired
    folders.close()


@pytest.mark.slow
def test_sam2_without_its_model_is_refused_at_start_up(tiny_artemis_dir, tmp_path):
    result = runner.invoke(app, ["web", "--model", str(tiny_artemis_dir), "--tracker", "sam2", "--device", "cpu",
                                 "--cache-dir", str(tmp_path), "--port", "1"])
    assert result.exit_code == 2, result.output
    assert "error: --tracker sam2 needs --tracker-model" in result.output and "Traceback" not in result.output


def test_the_guard_refuses_foreign_hosts_and_other_pages_and_slows_down_wrong_passwords():
    import asyncio

    import httpx

    from artemis_cli.web.guard import LoginThrottle, RequestGuard

    async def page(scope, receive, send):  # stands for gradio: /login accepts only "right"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status = 400 if scope["path"] == "/login" and b"right" not in body else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    now = [1000.0]
    throttle = LoginThrottle(free=3, clock=lambda: now[0])

    async def run(guard, method, path, headers=None, content=b""):
        transport = httpx.ASGITransport(app=guard, client=("10.1.1.1", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7860") as client:
            return await client.request(method, path, headers=headers or {}, content=content)

    local = RequestGuard(page, port=7860, local_only=True, throttle=throttle)
    ask = lambda *a, **k: asyncio.run(run(local, *a, **k))  # noqa: E731
    assert ask("GET", "/").status_code == 200
    assert ask("GET", "/", headers={"host": "localhost:7860"}).status_code == 200
    foreign = ask("GET", "/", headers={"host": "evil.example:7860"})
    assert foreign.status_code == 403 and "Host header names another server" in foreign.json()["error"]
    assert ask("GET", "/", headers={"host": "127.0.0.1:9999"}).status_code == 403  # a rebinding to another port
    same_page = {"origin": "http://127.0.0.1:7860"}
    assert ask("POST", "/gradio_api/upload", headers=same_page).status_code == 200
    other_page = ask("POST", "/gradio_api/upload", headers={"origin": "https://evil.example"}, content=b"x")
    assert other_page.status_code == 403 and "cross-origin" in other_page.json()["error"]
    assert ask("GET", "/config", headers={"origin": "https://evil.example"}).status_code == 200  # reads: no CORS
    # a login: the Host/Origin rules are off (proxies, names), wrong passwords are slowed down
    login = RequestGuard(page, port=7860, local_only=False, throttle=throttle)
    try_login = lambda password: asyncio.run(run(login, "POST", "/login", content=password.encode()))  # noqa: E731
    assert [try_login("wrong").status_code for _ in range(3)] == [400, 400, 400]  # free tries
    slowed = try_login("right")  # from now on each try waits: 1 s, then 2, 4, ...
    assert slowed.status_code == 429 and slowed.headers["retry-after"] == "1"
    now[0] += 1.5
    assert try_login("wrong").status_code == 400
    slowed = try_login("wrong")
    assert slowed.status_code == 429 and slowed.headers["retry-after"] == "2"
    now[0] += 2.5
    assert try_login("right").status_code == 200  # waited: the right password is in, the count resets
    assert throttle.wait_s("10.1.1.1") == 0.0
