"""`ownvideo.cache`: the size quota (least recently used entries go first, pinned ones never, temp files
are not touched) and one computation per entry when threads ask for it at once."""

from __future__ import annotations

import os
import threading
import time

from artemis_cli.ownvideo.cache import CacheQuota, TrackCache, _Claims


def entry(path, size: int, age: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix:
        path.write_bytes(b"x" * size)
    else:
        path.mkdir()
        (path / "frames").mkdir()
        (path / "frames" / "000001.jpg").write_bytes(b"x" * size)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_the_least_recently_used_entries_go_until_the_rest_fits(tmp_path):
    old_upload = entry(tmp_path / "uploads" / "a.mp4", 400, age=50)
    old_track = entry(tmp_path / "tracks" / "k1", 300, age=40)
    feature = entry(tmp_path / "features" / "f.pkl", 200, age=30)
    new_upload = entry(tmp_path / "uploads" / "b.mp4", 100, age=1)
    temp = entry(tmp_path / "tracks" / ".k2.tmp-1-2", 5000, age=100)  # a write under way
    quota = CacheQuota(tmp_path, max_bytes=700)
    assert quota.usage() == 1000
    quota.used(old_upload)  # used just now (its mtime stays: an upload is known by it)
    quota.used(tmp_path.parent / "elsewhere.mp4")  # a video read in place is no entry: not remembered
    assert list(quota._used) == [str(old_upload)]
    assert quota.enforce() == [old_track]
    assert quota.usage() == 700 and temp.exists() and old_upload.stat().st_mtime < time.time() - 40
    quota.max_bytes = 150
    quota.pin(feature)
    assert [p.name for p in quota.enforce()] == ["b.mp4", "a.mp4"]  # older first; the pinned feature stays
    assert feature.exists() and quota.usage() == 200
    quota.unpin(feature)
    assert quota.enforce() == [feature] and quota.evicted == 4 and quota.usage() == 0


def test_pins_are_counted(tmp_path):
    quota = CacheQuota(tmp_path, max_bytes=0)
    path = entry(tmp_path / "features" / "f.pkl", 10, age=5)
    quota.pin(path)
    quota.pin(path)
    quota.unpin(path)
    assert quota.pinned(path) and quota.enforce() == []
    quota.unpin(path)
    assert not quota.pinned(path) and quota.enforce() == [path]


def test_an_entry_asked_for_by_many_threads_at_once_is_computed_once(tmp_path):
    claims, computed, results = _Claims(), [], []
    store = {}

    def want(key):
        with claims.claim(key):
            if key not in store:
                computed.append(key)
                time.sleep(0.2)
                store[key] = len(computed)
            results.append(store[key])

    threads = [threading.Thread(target=want, args=("a" if i % 2 else "b",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(computed) == ["a", "b"] and len(results) == 8 and claims._held == {}


def test_a_waiting_claim_can_be_stopped(tmp_path):
    claims, stopped = _Claims(), []
    holder = threading.Event()
    release = threading.Event()

    def hold():
        with claims.claim("k"):
            holder.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    holder.wait(5)

    def check(frame):
        raise TimeoutError("deadline")

    try:
        with claims.claim("k", check):
            stopped.append("entered")
    except TimeoutError:
        stopped.append("stopped")
    release.set()
    thread.join(5)
    assert stopped == ["stopped"] and claims._held == {}


def test_two_threads_of_one_process_write_entries_through_their_own_temp_folders(tmp_path):
    tracks = TrackCache(tmp_path)
    import numpy as np

    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    errors = []

    def write(key):
        try:
            tracks.store(key, iter([(0, frame)]), 1, {"record": {}})
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"key{i % 2}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors and sorted(p.name for p in (tmp_path / "tracks").iterdir()) == ["key0", "key1"]
    assert tracks.load("key0") == {"record": {}}
