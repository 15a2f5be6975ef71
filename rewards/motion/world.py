"""The moving-shapes video world's vocabulary, its motion spec and the parser of its grammar.

Objects, colours and the background are the shapes world's (rewards/shapes/world.py). A spec:

    {"tag": "two_motion", "prompt": "a red circle and a blue square moving apart", "motion": "apart",
     "include": [{"class": "circle", "count": 1, "color": "red"}, {"class": "square", "count": 1, "color": "blue"}]}

Categories (`tag`) and their motions:
    direction   one object moving left / right / up / down      "a red circle moving right"
    still       one object standing still                        "a green square standing still"
    two_motion  two objects (different shapes) moving apart / together along the horizontal axis
                                                                 "a circle and a yellow triangle moving together"
Colours are optional (the renderer then draws a random palette colour).

Grammar (case-insensitive; an optional "a video of" prefix):
    prompt := phrase (" moving " direction | " standing still") | phrase " and " phrase " moving " ("apart"|"together")
    phrase := ("a" | "an") [color] shape
Image coordinates: x grows to the right, y grows downwards ("up" = decreasing y).
"""

from __future__ import annotations

import re

from rewards.shapes.world import COLORS, SHAPES

DIRECTIONS = ("left", "right", "up", "down")
PAIR_MOTIONS = ("apart", "together")
MOTIONS = (*DIRECTIONS, "still", *PAIR_MOTIONS)
CATEGORIES = ("direction", "still", "two_motion")
PREFIX = "a video of"
# every word the grammar can produce (the tokenizer's vocabulary)
WORDS = tuple(dict.fromkeys(["a", "an", "video", "of", "and", "moving", "standing", *MOTIONS, *COLORS, *SHAPES]))

_HINT = ("write prompts like 'a red circle moving right', 'a square standing still' or 'a blue circle and a "
         "triangle moving apart' (directions: " + ", ".join(DIRECTIONS) + "; shapes: " + ", ".join(SHAPES) +
         "; colors: " + ", ".join(COLORS) + ")")


def _phrase(obj: dict) -> str:
    color = obj.get("color")
    return " ".join(["a", *([color] if color else []), obj["class"]])


def spec_to_prompt(spec: dict) -> str:
    inc, motion = spec["include"], spec["motion"]
    if motion == "still":
        return f"{_phrase(inc[0])} standing still"
    return " and ".join(_phrase(o) for o in inc) + f" moving {motion}"


def validate_spec(spec: dict) -> None:
    if not isinstance(spec, dict) or not isinstance(spec.get("include"), list):
        raise ValueError(f"motion spec must be a dict with an 'include' list, got {spec!r}")
    tag, motion, inc = spec.get("tag"), spec.get("motion"), spec["include"]
    if tag not in CATEGORIES:
        raise ValueError(f"motion spec tag {tag!r} is not one of {', '.join(CATEGORIES)}")
    allowed = {"direction": DIRECTIONS, "still": ("still",), "two_motion": PAIR_MOTIONS}[tag]
    if motion not in allowed:
        raise ValueError(f"motion spec: {tag!r} needs motion in {', '.join(allowed)}, got {motion!r}")
    n = 2 if tag == "two_motion" else 1
    if len(inc) != n:
        raise ValueError(f"motion spec: {tag!r} has {n} object(s), got {len(inc)}")
    for o in inc:
        if o.get("class") not in SHAPES:
            raise ValueError(f"motion spec class {o.get('class')!r} is not one of {', '.join(SHAPES)}")
        if o.get("count", 1) != 1:
            raise ValueError(f"motion spec objects have count 1, got {o.get('count')!r}")
        if o.get("color") is not None and o["color"] not in COLORS:
            raise ValueError(f"motion spec color {o['color']!r} is not one of {', '.join(COLORS)}")
    if n == 2 and inc[0]["class"] == inc[1]["class"]:
        raise ValueError(f"motion spec: the two objects must be different shapes, got two {inc[0]['class']}s")


def make_spec(tag: str, include: list[dict], motion: str) -> dict:
    spec = {"tag": tag, "motion": motion, "include": [{"count": 1, **o} for o in include]}
    validate_spec(spec)
    spec["prompt"] = spec_to_prompt(spec)
    return spec


def _parse_phrase(text: str, prompt: str) -> dict:
    words = text.split()
    if len(words) not in (2, 3) or words[0] not in ("a", "an"):
        raise ValueError(f"cannot parse {text!r} in {prompt!r}; {_HINT}")
    obj = {"class": words[-1], "count": 1}
    if len(words) == 3:
        obj["color"] = words[1]
    if obj["class"] not in SHAPES or obj.get("color", "red") not in COLORS:
        raise ValueError(f"unknown colour or shape in {text!r} (prompt {prompt!r}); {_HINT}")
    return obj


def parse_prompt(prompt: str) -> dict:
    """Parse a prompt of the world's grammar into a spec (ValueError, one line, naming the fix, otherwise)."""
    text = " ".join(re.sub(r"[^a-z ]", " ", str(prompt).lower()).split())
    text = text.removeprefix(PREFIX + " ")
    m = re.fullmatch(r"(.+) standing still", text)
    if m:
        tag, motion, objs = "still", "still", [_parse_phrase(m.group(1), prompt)]
    else:
        m = re.fullmatch(r"(.+) moving (\w+)", text)
        if not m or m.group(2) not in DIRECTIONS + PAIR_MOTIONS:
            raise ValueError(f"cannot parse motion prompt {prompt!r}; {_HINT}")
        motion, parts = m.group(2), m.group(1).split(" and ")
        tag = "two_motion" if motion in PAIR_MOTIONS else "direction"
        if len(parts) != (2 if tag == "two_motion" else 1):
            takes = "two objects" if tag == "two_motion" else "one object"
            raise ValueError(f"{prompt!r}: 'moving {motion}' takes {takes}; {_HINT}")
        objs = [_parse_phrase(p, prompt) for p in parts]
    spec = {"tag": tag, "motion": motion, "include": objs}
    try:
        validate_spec(spec)
    except ValueError as e:
        raise ValueError(f"prompt {prompt!r}: {e}") from None
    spec["prompt"] = spec_to_prompt(spec)
    return spec
