"""Track integrity: a confidence for every tracked frame, shot cuts, and a guard that never reports a box
it does not believe.

A tracker (CSRT, KCF, SAM 2) proposes a box per frame and happily follows whatever it slid onto: an
occluder, the background, or another person passing in front. `Guard` checks each proposal against what
is known about the target:

- **appearance**: a colour histogram and a grey-level template of the target, from the key frame and from
  recent confident frames (the target may turn or the light change), compared with the proposed patch;
- **motion**: where the target should be by now, from its recent velocity, with an uncertainty that grows
  while it is not seen; a box that jumps away from there (onto a look-alike walking the other way) is not
  the target;
- **ambiguity**: the template is matched around the prediction; when two distinct places look like the
  target and both are plausible (two look-alikes side by side, or crossing), nothing is reported until
  one of them is clearly it, and then identity follows the motion from before the ambiguity.

The confidence of a frame is appearance x motion. A box is reported at `ACCEPT` or above and marked low
below `WARN`; otherwise the frame is dropped (``[]`` in the track list) and the guard searches the
frame for the target near its predicted place, re-starting the tracker there when it finds it
("re-acquired"). A shot cut (`CutDetector`: the whole picture changes between two frames) ends the
track in that direction: after a cut nothing is reported until another key box governs the frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

Box = list[float]

ACCEPT = 0.45  # below: the frame is dropped
REACQUIRE = 0.6  # a target lost (or a tracker that strayed) is found again only this sure, and with no look-alike
REACQUIRE_KEY = 0.5  # and only a box at least this like the key frame's target (not merely like the recent look)
LOST_LIMIT = 20  # tracked frames after which a lost target is not searched for any more (a key box brings it back)
WARN = 0.6  # below: reported, but counted (and, for a RoI frame, warned about) as low confidence
TEMPLATE_SIDE = 24  # px: the grey template's longer side
PEAK_MIN = 0.5  # a template-match peak below this is not a candidate
AMBIGUOUS = 0.88  # a second candidate with at least this share of the best appearance makes a frame ambiguous
UNKNOWN_SPEED = 0.6  # box diagonals per tracked frame a target may move before its velocity is known
MAX_LOST_RADIUS = 3.0  # box diagonals: the farthest the search goes from the prediction
CROWD_DISTANCE = 1.1  # box diagonals: a look-alike this near makes identity uncertain
SEPARATED = 1.25  # box diagonals: a candidate this far from where the look-alike should be is not it
KEY_FLOOR = 0.3  # similarity to the key frame's look below which the recent look cannot vouch for a box
KEY_TEACH = 0.45  # and below which a believed box does not update the recent look
TYPICAL_START = 0.8  # the appearance score a target is expected to keep (the running mean starts here)
TYPICAL_FLOOR = 0.5  # and never assumed lower: a box that looks this unlike the key is not excused
RESCALES = (0.8, 0.9, 1.0, 1.12, 1.25)  # sizes tried for a target found again
RESTART_AFTER = 3  # tracked frames the tracker's box is not believed before it is restarted on the target
PROBATION = 8  # tracked frames a re-acquired target must keep moving as it did before it was lost
CROWD_PATIENCE = 60  # tracked frames a crowd may last before the guard gives up telling them apart
CUT_MIN = 12.0  # mean absolute HSV difference (0-255) of two thumbnails below which there is no cut
CUT_RATIO = 3.0  # times the median of the recent differences a cut must jump


def _colour_layout(patch_bgr: np.ndarray) -> list[np.ndarray]:
    """Colour histograms (HSV, 8x4x4 bins) of the top, middle and bottom thirds of a patch's central 70%:
    how colour is laid out tells one person (or object) from another far better than one histogram of
    the whole box, and it does not care about pose (a walker's legs)."""
    import cv2

    height, width = patch_bgr.shape[:2]
    central = patch_bgr[:, int(width * 0.15):max(int(width * 0.85), int(width * 0.15) + 1)]
    hsv = cv2.cvtColor(central, cv2.COLOR_BGR2HSV)
    stripes = []
    for k in range(3):
        part = hsv[k * height // 3:max((k + 1) * height // 3, k * height // 3 + 1)]
        hist = cv2.calcHist([part], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256])
        stripes.append(cv2.normalize(hist, hist).flatten())
    return stripes


def _layout_similarity(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([_correlation(x, y) for x, y in zip(a, b)]))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    import cv2

    value = float(cv2.compareHist(a, b, cv2.HISTCMP_CORREL))
    return 0.0 if math.isnan(value) else value


def _crop(frame: np.ndarray, box: Sequence[float]) -> Optional[np.ndarray]:
    height, width = frame.shape[:2]
    x1, y1 = max(int(round(box[0])), 0), max(int(round(box[1])), 0)
    x2, y2 = min(int(round(box[2])), width), min(int(round(box[3])), height)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return frame[y1:y2, x1:x2]


def _template_size(box: Sequence[float]) -> tuple[int, int]:
    w, h = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
    scale = TEMPLATE_SIDE / max(w, h)
    return max(4, int(round(w * scale))), max(4, int(round(h * scale)))


def _grey(patch_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(patch_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / denominator if denominator > 1e-6 else 0.0


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre(box: Sequence[float]) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _diagonal(box: Sequence[float]) -> float:
    return max(math.hypot(box[2] - box[0], box[3] - box[1]), 4.0)


class CutDetector:
    """Shot cuts, as content-aware scene detectors find them: the mean absolute HSV difference between
    two consecutive frames' thumbnails, against the recent frame-to-frame differences. A cut changes the
    whole picture at once (differences of 20-45 on real film against 1-5 between frames of one shot);
    fast motion or a shaking camera raises the recent differences too, so it takes a jump of
    `CUT_RATIO` times their median and at least `CUT_MIN`. Fed every decoded frame, in order."""

    THUMB = (64, 36)

    def __init__(self):
        self._previous: Optional[np.ndarray] = None
        self._recent: list[float] = []

    def step(self, thumb_bgr: np.ndarray) -> bool:
        """True when `thumb_bgr` (a `THUMB`-sized BGR frame) starts a new shot."""
        import cv2

        hsv = cv2.cvtColor(thumb_bgr, cv2.COLOR_BGR2HSV).astype(np.float32)
        previous, self._previous = self._previous, hsv
        if previous is None:
            return False
        score = float(np.abs(hsv - previous).mean())
        baseline = float(np.median(self._recent)) if self._recent else score
        self._recent = (self._recent + [score])[-8:]
        return len(self._recent) > 1 and score > CUT_MIN and score > CUT_RATIO * max(baseline, 1.0)


@dataclass
class Verdict:
    """The guard's word on one frame: the box to report (None: dropped), its confidence and why."""

    box: Optional[Box]
    confidence: float
    state: str  # tracked | reacquired | lost | ambiguous
    restart: bool = False  # the tracker should restart on `box` (it was elsewhere)
    retract: list[int] = field(default_factory=list)  # earlier frames whose boxes turned out not to be the target


@dataclass
class _Probation:
    """A target found again: until it has moved for `PROBATION` tracked frames the way it was moving when it
    was lost (or stood still), what was found may be someone else who stepped into its place."""

    start: int
    velocity: np.ndarray  # the motion when it was lost, px per frame
    saved: list  # the history before it was lost
    frames: list[int] = field(default_factory=list)


@dataclass
class _Candidate:
    box: Box
    appearance: float  # similarity to the target's look, 0-1
    motion: float = 1.0  # how well its place fits the target's motion, 0-1
    from_tracker: bool = False
    typical: float = 1.0  # the appearance the target itself usually scores (what "looks like it" means)

    @property
    def score(self) -> float:
        return min(1.0, self.appearance / self.typical) * self.motion


@dataclass
class _Crowd:
    """A look-alike near the target: where it has been seen since they met."""

    start: int
    rival: list[tuple[int, np.ndarray]]

    def predict(self, index: int) -> np.ndarray:
        (i1, c1), (i2, c2) = self.rival[0], self.rival[-1]
        velocity = (c2 - c1) / (i2 - i1) if i2 != i1 else np.zeros(2)
        return c2 + velocity * (index - i2)


@dataclass
class Guard:
    """Everything known about one target in one tracking direction (see the module doc). Boxes are in the
    pixels of the frames it is given."""

    key_frame: np.ndarray  # BGR
    key_box: Box
    key_index: int
    stride: int = 1  # frames between two tracked frames
    history: list[tuple[int, np.ndarray, Box]] = field(default_factory=list)  # (frame, centre, box) believed

    def __post_init__(self):
        patch = _crop(self.key_frame, self.key_box)
        if patch is None:
            patch = self.key_frame
        self._size = _template_size(self.key_box)
        self._key_colours = _colour_layout(patch)
        self._key_grey = _grey(patch, self._size)
        self._recent_colours = self._key_colours
        self._recent_grey = self._key_grey
        self.history = [(self.key_index, _centre(self.key_box), list(self.key_box))]
        self._crowd: Optional[_Crowd] = None
        self._probation: Optional[_Probation] = None
        self._tracker_misses = 0  # tracked frames in a row on which the tracker's box was not believed
        self._distrust_tracker = False  # the tracker followed someone else (a retracted re-acquisition)
        self._typical = TYPICAL_START  # the appearance the target scores on frames it is believed on (mean)
        self.frame_size = (self.key_frame.shape[1], self.key_frame.shape[0])

    # ---- what the target should look like and where it should be ----------------------------------
    def _appearance(self, frame: np.ndarray, box: Sequence[float]) -> float:
        """Similarity to the target, 0-1: colour layout and grey template, against the key frame's and the
        recent look. The recent look lets the target change (turn, come into the light), but only for a box
        that still resembles the key at least a little (`KEY_FLOOR`): otherwise a tracker parked on an
        occluder would teach the recent look the occluder, and then believe it."""
        patch = _crop(frame, box)
        if patch is None:
            return 0.0
        colours, grey = _colour_layout(patch), _grey(patch, self._size)
        key = 0.5 * min(_layout_similarity(colours, self._key_colours), 1.0) + 0.5 * min(_ncc(grey, self._key_grey), 1.0)
        self._last_key_similarity = max(key, 0.0)
        if key < KEY_FLOOR:
            return max(key, 0.0)
        recent = (0.5 * min(_layout_similarity(colours, self._recent_colours), 1.0)
                  + 0.5 * min(_ncc(grey, self._recent_grey), 1.0))
        return max(key, recent, 0.0)

    def _velocity(self) -> np.ndarray:
        """px per frame: the median over the last eight steps between believed frames."""
        recent = self.history[-9:]
        steps = [(c2 - c1) / (i2 - i1) for (i1, c1, _), (i2, c2, _) in zip(recent, recent[1:]) if i2 != i1]
        return np.median(np.array(steps), axis=0) if steps else np.zeros(2)

    def predict(self, index: int) -> tuple[Box, float]:
        """The predicted box on frame `index` and the search radius (px) around its centre: a third of the
        box's diagonal plus the distance it moves per tracked frame, growing while it is not seen."""
        last_index, last_centre, last_box = self.history[-1]
        gap = max(abs(index - last_index) / self.stride, 1.0)  # tracked frames since the target was believed
        velocity = self._velocity()
        centre = last_centre + velocity * (index - last_index)
        w, h = last_box[2] - last_box[0], last_box[3] - last_box[1]
        diagonal = _diagonal(last_box)
        # px per tracked frame; until its motion is known (three believed frames) it may move fast
        speed = float(np.linalg.norm(velocity)) * self.stride if len(self.history) >= 3 else UNKNOWN_SPEED * diagonal
        radius = min(diagonal * (0.3 + 0.12 * (gap - 1)) + speed * gap, MAX_LOST_RADIUS * diagonal)
        return [centre[0] - w / 2, centre[1] - h / 2, centre[0] + w / 2, centre[1] + h / 2], radius

    def _motion(self, box: Sequence[float], predicted: Sequence[float], radius: float) -> float:
        distance = float(np.linalg.norm(_centre(box) - _centre(predicted)))
        score = math.exp(-0.5 * (distance / radius) ** 2)
        area, expected = (box[2] - box[0]) * (box[3] - box[1]), (predicted[2] - predicted[0]) * (predicted[3] - predicted[1])
        ratio = min(area, expected) / max(area, expected, 1e-6)
        return score * min(1.0, ratio / 0.5)

    def _peaks(self, frame: np.ndarray, predicted: Box, radius: float) -> list[_Candidate]:
        """Places around the prediction that look like the target (template-match peaks), best first."""
        import cv2

        height, width = frame.shape[:2]
        w, h = predicted[2] - predicted[0], predicted[3] - predicted[1]
        if w < 4 or h < 4:
            return []
        centre = _centre(predicted)
        reach = max(radius, CROWD_DISTANCE * _diagonal(predicted)) + max(w, h) / 2  # look-alikes nearby too
        x1, y1 = int(max(0, centre[0] - reach)), int(max(0, centre[1] - reach))
        x2, y2 = int(min(width, centre[0] + reach)), int(min(height, centre[1] + reach))
        if x2 - x1 <= w or y2 - y1 <= h:
            return []
        region = frame[y1:y2, x1:x2]
        scale = self._size[0] / w  # search at template scale: cheap, and the same for every frame
        small = cv2.resize(cv2.cvtColor(region, cv2.COLOR_BGR2GRAY), None, fx=scale, fy=scale,
                           interpolation=cv2.INTER_AREA).astype(np.float32)
        tw, th = self._size
        if small.shape[0] <= th or small.shape[1] <= tw:
            return []
        response = np.maximum(cv2.matchTemplate(small, self._key_grey, cv2.TM_CCOEFF_NORMED),
                              cv2.matchTemplate(small, self._recent_grey, cv2.TM_CCOEFF_NORMED))
        peaks = []
        for _ in range(3):
            _, value, _, (px, py) = cv2.minMaxLoc(response)
            if value < PEAK_MIN:
                break
            bx1, by1 = x1 + px / scale, y1 + py / scale
            box = [bx1, by1, bx1 + w, by1 + h]
            peaks.append(_Candidate(box, self._appearance(frame, box)))
            # suppress around this peak (half a template each way) before taking the next
            response[max(0, py - th // 2):py + th // 2 + 1, max(0, px - tw // 2):px + tw // 2 + 1] = -1.0
        return peaks

    # ---- the verdict ------------------------------------------------------------------------------
    def judge(self, frame: np.ndarray, index: int, proposed: Optional[Sequence[float]]) -> Verdict:
        """The verdict on frame `index` for the tracker's `proposed` box (None: the tracker failed)."""
        predicted, radius = self.predict(index)
        candidates = self._peaks(frame, predicted, radius)
        if proposed is not None:
            tracker = _Candidate(list(proposed), self._appearance(frame, proposed), from_tracker=True)
            candidates = [c for c in candidates if box_iou(c.box, tracker.box) < 0.5] + [tracker]
        for candidate in candidates:
            candidate.motion = self._motion(candidate.box, predicted, radius)
            candidate.typical = self._typical
        if self._crowd is not None:
            return self._judge_crowd(frame, index, candidates, predicted)
        if not candidates:
            return Verdict(None, 0.0, "lost")
        # the tracker's box while it is believed (it follows scale and shape; a template peak does not), else
        # the most believable place: peaks are for finding the target again, not for second-guessing
        trackers = [c for c in candidates if c.from_tracker and c.score >= ACCEPT and not self._distrust_tracker]
        best = trackers[0] if trackers else max(candidates, key=lambda c: c.score)
        diagonal = _diagonal(best.box)
        rivals = [c for c in candidates if c is not best and box_iou(c.box, best.box) < 0.3
                  and c.appearance >= AMBIGUOUS * best.appearance
                  and np.linalg.norm(_centre(c.box) - _centre(best.box)) < CROWD_DISTANCE * diagonal]
        if rivals and best.score >= ACCEPT:
            # a look-alike beside the target: from here identity rests on the motion from before
            rival = min(rivals, key=lambda c: np.linalg.norm(_centre(c.box) - _centre(best.box)))
            self._crowd = _Crowd(start=index, rival=[(index, _centre(rival.box))])
            return Verdict(None, round(min(best.score, ACCEPT - 0.01), 3), "ambiguous")
        return self._verdict(frame, index, best, candidates)

    def _verdict(self, frame: np.ndarray, index: int, best: "_Candidate", candidates: Sequence = ()) -> Verdict:
        confidence = round(best.score, 3)
        peak = not best.from_tracker
        lost_before = abs(index - self.history[-1][0]) > 1.5 * self.stride or self._tracker_misses > 0
        if peak or lost_before:
            # finding it again takes more: not lost for long, clearly like the key frame's target, and nothing
            # else around that looks like it
            self._appearance(frame, best.box)
            lost_for = (index - self.history[-1][0]) / self.stride
            if (abs(lost_for) > LOST_LIMIT or confidence < REACQUIRE or self._last_key_similarity < REACQUIRE_KEY
                    or any(c is not best and box_iou(c.box, best.box) < 0.3
                           and c.appearance >= AMBIGUOUS * best.appearance for c in candidates)):
                self._tracker_misses += 1
                return Verdict(None, min(confidence, ACCEPT - 0.01), "lost")
        if confidence < ACCEPT:
            self._tracker_misses += 1
            return Verdict(None, confidence, "lost")
        if (peak or lost_before) and self._probation is None:
            self._probation = _Probation(start=index, velocity=self._velocity(), saved=list(self.history))
        restart = False
        if peak:  # a template peak has the last believed size: the target may have grown or shrunk since
            best.box = self._best_scale(frame, best.box)
            self._tracker_misses += 1
            # a tracker that slipped for a frame often comes back (and keeps its model of the target's scale):
            # it is restarted only after `RESTART_AFTER` frames away, or when it was following someone else
            restart = self._tracker_misses >= RESTART_AFTER or self._distrust_tracker
        else:
            self._tracker_misses = 0
        if restart:
            self._distrust_tracker = False
            self._tracker_misses = 0
        self._believe(frame, index, best.box, confidence, best.appearance)
        state = "reacquired" if peak or lost_before else "tracked"
        verdict = Verdict([float(v) for v in best.box], confidence, state, restart=restart)
        if self._probation is not None:
            self._on_probation(index, verdict)
        return verdict

    def _best_scale(self, frame: np.ndarray, box: Box) -> Box:
        """`box` rescaled about its centre to the size (of `RESCALES`) that looks most like the target."""
        centre, w, h = _centre(box), box[2] - box[0], box[3] - box[1]
        sized = [[centre[0] - f * w / 2, centre[1] - f * h / 2, centre[0] + f * w / 2, centre[1] + f * h / 2]
                 for f in RESCALES]
        return max(sized, key=lambda b: self._appearance(frame, b))

    def _on_probation(self, index: int, verdict: Verdict) -> None:
        """Confirm a re-acquired target, or take it back (and the frames since) when it walks the other way."""
        trial = self._probation
        trial.frames.append(index)
        found = [entry for entry in self.history if entry[0] >= trial.start]
        if len(found) < 3:
            return
        moved = (found[-1][1] - found[0][1]) / max(found[-1][0] - found[0][0], 1)
        before = trial.velocity
        speed_before, speed_now = float(np.linalg.norm(before)), float(np.linalg.norm(moved))
        opposite = (speed_before > 0.5 and speed_now > 0.3 * speed_before
                    and float(np.dot(moved, before)) < -0.3 * speed_before * speed_now)
        if opposite:  # someone else: back to what was known before, and those frames were not the target
            self.history = trial.saved
            self._probation = None
            self._distrust_tracker = True  # it may be following that someone: not believed until restarted
            self._tracker_misses += 1
            verdict.retract, verdict.box, verdict.state = trial.frames[:-1], None, "lost"
            verdict.confidence = min(verdict.confidence, ACCEPT - 0.01)
            verdict.restart = False
        elif len(trial.frames) >= PROBATION:
            self._probation = None

    def _judge_crowd(self, frame: np.ndarray, index: int, candidates: list, predicted: Box) -> Verdict:
        """A look-alike is (or was just) beside the target. Nothing is reported until a candidate is where
        the target should be and clearly not where the look-alike should be; the believed motion is the one
        from before they met, and the look-alike is followed meanwhile."""
        crowd = self._crowd
        diagonal = _diagonal(predicted)
        rival_at = crowd.predict(index)
        looks = [c for c in candidates if c.appearance >= PEAK_MIN]
        target = max(looks, key=lambda c: c.motion, default=None)
        if target is not None:
            apart = float(np.linalg.norm(_centre(target.box) - rival_at)) > SEPARATED * diagonal
            if apart and target.motion >= 0.3 and target.score >= ACCEPT:
                self._crowd = None
                verdict = self._verdict(frame, index, target)
                if verdict.box is not None:  # the tracker may be on the look-alike: restart it on the target
                    verdict.restart, self._tracker_misses, self._distrust_tracker = True, 0, False
                verdict.state = "reacquired" if verdict.box is not None else verdict.state
                return verdict
        others = [c for c in looks if c is not target]
        if others:  # follow the look-alike: the one nearest to where it should be
            nearest = min(others, key=lambda c: np.linalg.norm(_centre(c.box) - rival_at))
            crowd.rival.append((index, _centre(nearest.box)))
            del crowd.rival[:-8]
        if index - crowd.start > CROWD_PATIENCE * self.stride:  # too long to keep identities apart: start over
            self._crowd = None
            return Verdict(None, 0.0, "lost")
        best = max(candidates, key=lambda c: c.score, default=None)
        return Verdict(None, round(min(best.score, ACCEPT - 0.01), 3) if best else 0.0, "ambiguous")

    def _believe(self, frame: np.ndarray, index: int, box: Box, confidence: float, appearance: float) -> None:
        self.history.append((index, _centre(box), list(box)))
        del self.history[:-16]
        self._typical = min(max(0.9 * self._typical + 0.1 * appearance, TYPICAL_FLOOR), 1.0)
        self._appearance(frame, box)  # its similarity to the key (`_last_key_similarity`)
        if confidence >= WARN and self._last_key_similarity >= KEY_TEACH:
            # only confident frames that still look like the key teach it what the target looks like now
            patch = _crop(frame, box)
            if patch is not None:
                self._recent_colours = [0.7 * old + 0.3 * new for old, new in zip(self._recent_colours,
                                                                                _colour_layout(patch))]
                self._recent_grey = 0.7 * self._recent_grey + 0.3 * _grey(patch, self._size)
