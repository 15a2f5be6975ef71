"""The 3D shapes world's vocabulary, its scene spec and the parser of its grammar.

A spec (the shapes world's format, with 3D shapes and relations):

    {"tag": "relation", "prompt": "a red cube on top of a blue sphere",
     "include": [{"class": "cube", "count": 1, "color": "red", "position": ["on top of", 1]},
                 {"class": "sphere", "count": 1, "color": "blue"}]}

Categories (`tag`):
    single      one object                              "a green cone"
    counting    two or three objects of one shape       "two yellow cylinders"
    two_object  two different shapes                    "a cube and a purple sphere"
    relation    object A <relation> object B            "a red cone behind a cylinder"
Colours are optional (the scene generator then picks a random palette colour); the palette is the 2-D shapes
world's (rewards/shapes/world.py).

Grammar (case-insensitive):
    prompt   := phrase | phrase " and " phrase | phrase " " relation " " phrase
    phrase   := ("a" | "an" | "two" | "three") [color] shape["s"]
    relation := "on top of" | "below" | "left of" | "right of" | "in front of" | "behind"
World axes (rewards/render3d.py's): y up, x to the right and z towards the viewer of the default camera (azimuth 0
looks from +z), so "left of" = smaller x, "in front of" = larger z.
"""

from __future__ import annotations

import re

from rewards.shapes.world import COLORS

SHAPES = ("cube", "sphere", "cone", "cylinder")
NUMBERS = {"two": 2, "three": 3}
MAX_COUNT = 3
# relation -> (axis, sign): "A on top of B" means y(A) - y(B) > 0
RELATIONS = {"on top of": (1, 1), "below": (1, -1), "left of": (0, -1), "right of": (0, 1),
             "in front of": (2, 1), "behind": (2, -1)}
CATEGORIES = ("single", "counting", "two_object", "relation")
WORDS = tuple(dict.fromkeys(["a", "an", "and", "on", "top", "of", "below", "left", "right", "in", "front", "behind",
                             *NUMBERS, *COLORS, *SHAPES, *(s + "s" for s in SHAPES)]))

_HINT = ("write prompts like 'a red cube', 'two green cones', 'a sphere and a blue cylinder' or 'a red cube on top of "
         "a blue sphere' (shapes: " + ", ".join(SHAPES) + "; colors: " + ", ".join(COLORS) + "; relations: " +
         ", ".join(RELATIONS) + ")")
_NUMBER_WORDS = {v: k for k, v in NUMBERS.items()}


def _phrase(obj: dict) -> str:
    n = obj["count"]
    return " ".join([_NUMBER_WORDS[n] if n > 1 else "a", *([obj["color"]] if obj.get("color") else []),
                     obj["class"] + ("s" if n > 1 else "")])


def spec_to_prompt(spec: dict) -> str:
    inc = spec["include"]
    if spec["tag"] == "relation":
        return f"{_phrase(inc[0])} {inc[0]['position'][0]} {_phrase(inc[1])}"
    return " and ".join(_phrase(o) for o in inc)


def validate_spec(spec: dict) -> None:
    if not isinstance(spec, dict) or not isinstance(spec.get("include"), list) or not spec["include"]:
        raise ValueError(f"shapes3d spec must be a dict with a non-empty 'include' list, got {spec!r}")
    tag, inc = spec.get("tag"), spec["include"]
    if tag not in CATEGORIES:
        raise ValueError(f"shapes3d spec tag {tag!r} is not one of {', '.join(CATEGORIES)}")
    for o in inc:
        if o.get("class") not in SHAPES:
            raise ValueError(f"shapes3d spec: unknown primitive {o.get('class')!r}; choose one of {', '.join(SHAPES)}")
        if not isinstance(o.get("count"), int) or not 1 <= o["count"] <= MAX_COUNT:
            raise ValueError(f"shapes3d spec count {o.get('count')!r} must be an int in 1..{MAX_COUNT}")
        if o.get("color") is not None and o["color"] not in COLORS:
            raise ValueError(f"shapes3d spec color {o['color']!r} is not one of {', '.join(COLORS)}")
    want = {"single": (1, False), "counting": (1, True), "two_object": (2, False), "relation": (2, False)}[tag]
    if len(inc) != want[0] or (want[1] != (inc[0]["count"] > 1)) or (tag in ("two_object", "relation") and
                                                                   any(o["count"] != 1 for o in inc)):
        raise ValueError(f"shapes3d spec: {tag!r} takes {'two objects' if want[0] == 2 else 'one clause'}"
                         f"{' with count 2-3' if want[1] else ' of count 1'}, got {inc!r}")
    if want[0] == 2 and inc[0]["class"] == inc[1]["class"]:
        raise ValueError(f"shapes3d spec: the two objects must be different shapes, got two {inc[0]['class']}s")
    pos = inc[0].get("position")
    if (tag == "relation") != (pos is not None) or any(o.get("position") for o in inc[1:]):
        raise ValueError("shapes3d spec: only a 'relation' spec has a position, on its first object")
    if pos is not None and (len(pos) != 2 or pos[0] not in RELATIONS or pos[1] != 1):
        raise ValueError(f"shapes3d spec position {pos!r} must be [relation, 1] with a relation in "
                         f"{', '.join(RELATIONS)}")


def make_spec(tag: str, include: list[dict]) -> dict:
    spec = {"tag": tag, "include": [{"count": 1, **o} for o in include]}
    validate_spec(spec)
    spec["prompt"] = spec_to_prompt(spec)
    return spec


def _parse_phrase(text: str, prompt: str) -> dict:
    words = text.split()
    if len(words) not in (2, 3) or (words[0] not in ("a", "an") and words[0] not in NUMBERS):
        raise ValueError(f"cannot parse {text!r} in {prompt!r}; {_HINT}")
    count = NUMBERS.get(words[0], 1)
    noun = words[-1]
    shape = noun[:-1] if count > 1 and noun.endswith("s") else noun
    if shape not in SHAPES:
        raise ValueError(f"unknown primitive {noun!r} in {prompt!r}; shapes are {', '.join(SHAPES)}")
    if (count > 1) != (noun != shape):
        raise ValueError(f"number and noun disagree in {text!r} (prompt {prompt!r})")
    obj = {"class": shape, "count": count}
    if len(words) == 3:
        if words[1] not in COLORS:
            raise ValueError(f"unknown color {words[1]!r} in {prompt!r}; colors are {', '.join(COLORS)}")
        obj["color"] = words[1]
    return obj


def parse_prompt(prompt: str) -> dict:
    """Parse a prompt of the world's grammar into a spec (one-line ValueError naming the fix otherwise)."""
    text = " ".join(re.sub(r"[^a-z ]", " ", str(prompt).lower()).split())
    rel = next((r for r in RELATIONS if f" {r} " in f" {text} "), None)
    if rel is not None:
        parts = text.split(f" {rel} ")
        if len(parts) != 2:
            raise ValueError(f"cannot parse {prompt!r}: one relation between two objects; {_HINT}")
        objs = [_parse_phrase(p, prompt) for p in parts]
        objs[0]["position"] = [rel, 1]
        tag = "relation"
    else:
        objs = [_parse_phrase(p, prompt) for p in text.split(" and ")]
        tag = ("counting" if objs[0]["count"] > 1 else "single") if len(objs) == 1 else "two_object"
    spec = {"tag": tag, "include": objs}
    try:
        validate_spec(spec)
    except ValueError as e:
        raise ValueError(f"prompt {prompt!r}: {e}") from None
    spec["prompt"] = spec_to_prompt(spec)
    return spec
