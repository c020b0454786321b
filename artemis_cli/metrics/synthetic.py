"""Synthetic VideoRefBench prediction records for tests and benchmarks: captions with case,
punctuation, unicode, newlines, very short and very long predictions, and repeated ids."""

from __future__ import annotations

import random

SUBJECTS = ["the man", "a woman", "The boy in red", "an old lady", "the Police officer", "a girl",
            "the waiter", "Zoë", "the man in the café", "a child", "the driver", "she", "he"]
VERBS = ["walks to", "sits next to", "opens", "turns toward", "talks with", "runs past", "hugs",
         "looks at", "picks up", "pushes", "follows", "waves at", "stands behind"]
OBJECTS = ["the door", "a table", "the bed", "the man", "the woman in black", "a red car", "the window",
           "her friend", "the 日本 sign", "a dog", "the crowd", "the naïve cat", "the (old) chair"]
TAILS = ["", "", " slowly", " and then leaves", ", smiling", " — quickly", " again!", " in the room",
         "; he is angry", " (twice)", " at night", "?", " 😀"]


def _sentence(rng: random.Random) -> str:
    text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(TAILS)}"
    text = text[0].upper() + text[1:]
    return text + rng.choice([".", ".", "", "!", "..."])


def _caption(rng: random.Random, sentences: int) -> str:
    return rng.choice([" ", " ", "\n", "  "]).join(_sentence(rng) for _ in range(sentences))


def _perturb(rng: random.Random, caption: str) -> str:
    words = caption.split(" ")
    for _ in range(rng.randint(0, 3)):
        roll, where = rng.random(), rng.randrange(len(words))
        if roll < 0.4 and len(words) > 2:
            del words[where]
        elif roll < 0.7:
            words[where] = rng.choice(VERBS + OBJECTS)
        else:
            words.insert(where, rng.choice(["very", "A", "the", "Then,", "UP"]))
    text = " ".join(words)
    return text.upper() if rng.random() < 0.05 else text


def make_prediction_records(n: int, seed: int = 0, *, edge_cases: bool = True) -> list[dict]:
    """`n` records ``{video_name, groundtruth, pred}``; with `edge_cases`, about 1 in 8 has a too short
    or too long prediction and about 1 in 20 repeats an earlier id."""
    rng = random.Random(seed)
    records = []
    for index in range(n):
        name = f"{index:05d}_clip{rng.randint(0, 9)}.mp4"
        truth = _caption(rng, rng.choice([1, 1, 1, 2]))
        pred = _perturb(rng, truth) if rng.random() < 0.85 else _caption(rng, 1)
        if edge_cases:
            roll = rng.random()
            if roll < 0.06:
                pred = rng.choice(["", "ok", "a.", "yes!", "Man.", "walks", "他走了"])
            elif roll < 0.12:
                pred = _caption(rng, rng.randint(12, 20))  # 300+ characters
            elif roll < 0.17 and records:
                name = rng.choice(records)["video_name"]
        records.append({"video_name": name, "groundtruth": truth, "pred": pred})
    rng.shuffle(records)  # so the protocol's sort by id matters
    return records
