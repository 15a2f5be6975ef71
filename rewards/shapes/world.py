"""The shapes world's vocabulary, its structured prompt spec and the parser of its grammar.

A spec mirrors GenEval's per-prompt metadata:

    {"tag": "color_attr", "prompt": "a photo of a red circle and a blue square",
     "include": [{"class": "circle", "count": 1, "color": "red"},
                 {"class": "square", "count": 1, "color": "blue"}]}

`tag` is one of CATEGORIES; each include clause has a shape `class`, an exact `count`, an optional `color`,
and optionally `"position": [relation, j]`, meaning "the objects of this clause are <relation> the objects
of clause j" (e.g. "a photo of a circle left of a square": clause 0 = circle with ["left of", 1]).

Grammar (case-insensitive; the "a photo of" prefix is optional):
    prompt   := ["a photo of"] phrase (" and " phrase | " " relation " " phrase)?
    phrase   := ("a" | "an" | number) [color] shape["s"]
    number   := one | two | three | four
    relation := "left of" | "right of" | "above" | "below"
"""

from __future__ import annotations

import re

SHAPES = ("circle", "square", "triangle")
# Six well-separated hues on a white background (RGB 0-255); the detector classifies by hue.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "yellow": (235, 205, 20),
    "green": (30, 170, 50),
    "cyan": (20, 185, 205),
    "blue": (35, 65, 225),
    "purple": (165, 40, 205),
}
BACKGROUND = (255, 255, 255)
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4}
NUMBER_WORDS = {v: k for k, v in NUMBERS.items()}
MAX_COUNT = 4
RELATIONS = ("left of", "right of", "above", "below")
CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
PREFIX = "a photo of"

# every word the grammar can produce (the tokenizer's vocabulary)
WORDS = tuple(
    dict.fromkeys(
        ["a", "an", "photo", "of", "and", "left", "right", "above", "below", *NUMBERS, *COLORS, *SHAPES]
        + [s + "s" for s in SHAPES]
    )
)

_GRAMMAR_HINT = (
    "write prompts like 'a photo of two red circles', 'a photo of a blue square and a green triangle' or "
    "'a photo of a circle left of a square' (shapes: " + ", ".join(SHAPES) + "; colors: " + ", ".join(COLORS) + ")"
)


def phrase(obj: dict, use_number: bool = False) -> str:
    """Text for one include clause: 'a red circle', 'two squares', 'one triangle' (use_number=True)."""
    n = int(obj["count"])
    det = NUMBER_WORDS[n] if (n > 1 or use_number) else "a"
    words = [det] + ([obj["color"]] if obj.get("color") else []) + [obj["class"] + ("s" if n > 1 else "")]
    return " ".join(words)


def spec_to_prompt(spec: dict) -> str:
    """The canonical prompt of a spec (inverse of parse_prompt)."""
    inc = spec["include"]
    if len(inc) == 2 and inc[0].get("position"):
        return f"{PREFIX} {phrase(inc[0])} {inc[0]['position'][0]} {phrase(inc[1])}"
    use_number = spec.get("tag") == "counting"
    return f"{PREFIX} " + " and ".join(phrase(o, use_number) for o in inc)


def make_spec(tag: str, include: list[dict]) -> dict:
    """A validated spec with its canonical prompt."""
    spec = {"tag": tag, "include": [dict(o) for o in include]}
    validate_spec(spec)
    spec["prompt"] = spec_to_prompt(spec)
    return spec


def validate_spec(spec: dict) -> None:
    if not isinstance(spec, dict) or not isinstance(spec.get("include"), list) or not spec["include"]:
        raise ValueError(f"shapes spec must be a dict with a non-empty 'include' list, got {spec!r}")
    if spec.get("tag") not in CATEGORIES:
        raise ValueError(f"shapes spec tag {spec.get('tag')!r} is not one of {', '.join(CATEGORIES)}")
    for o in spec["include"]:
        if o.get("class") not in SHAPES:
            raise ValueError(f"shapes spec class {o.get('class')!r} is not one of {', '.join(SHAPES)}")
        if not isinstance(o.get("count"), int) or not 1 <= o["count"] <= MAX_COUNT:
            raise ValueError(f"shapes spec count {o.get('count')!r} must be an int in 1..{MAX_COUNT}")
        if o.get("color") is not None and o["color"] not in COLORS:
            raise ValueError(f"shapes spec color {o['color']!r} is not one of {', '.join(COLORS)}")
        pos = o.get("position")
        if pos is not None:
            if len(pos) != 2 or pos[0] not in RELATIONS or not 0 <= int(pos[1]) < len(spec["include"]):
                raise ValueError(f"shapes spec position {pos!r} must be [relation, clause index]")
    classes = [o["class"] for o in spec["include"]]
    if len(set(classes)) != len(classes):
        raise ValueError(f"shapes spec names shape(s) {classes} more than once; use one clause per shape")


def _short(text: str, limit: int = 60) -> str:
    """repr of `text`, cut to `limit` characters (error messages stay one readable line for huge prompts)."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 3] + "...") + f" ({len(text)} characters)"


def _parse_phrase(text: str, prompt: str) -> tuple[dict, bool]:
    words = text.split()
    if len(words) not in (2, 3):
        raise ValueError(f"cannot parse {_short(text)} in prompt {_short(prompt)}; {_GRAMMAR_HINT}")
    det, *rest = words
    if det in ("a", "an"):
        count, numbered = 1, False
    elif det in NUMBERS:
        count, numbered = NUMBERS[det], True
    else:
        raise ValueError(f"expected 'a' or a number (one..four) before {_short(' '.join(rest))} in {_short(prompt)}")
    color = None
    if len(rest) == 2:
        color = rest[0]
        if color not in COLORS:
            raise ValueError(f"unknown color {_short(color)} in {_short(prompt)}; colors are {', '.join(COLORS)}")
    noun = rest[-1]
    shape = noun[:-1] if noun.endswith("s") and noun[:-1] in SHAPES else noun
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {_short(noun)} in {_short(prompt)}; shapes are {', '.join(SHAPES)}")
    if (noun != shape) != (count > 1):
        raise ValueError(f"number and noun disagree in {_short(text)} (prompt {_short(prompt)})")
    obj = {"class": shape, "count": count}
    if color:
        obj["color"] = color
    return obj, numbered


def parse_prompt(prompt: str) -> dict:
    """Parse a prompt written in the world's grammar into a spec (tag inferred as GenEval would)."""
    text = re.sub(r"[^a-z ]", " ", prompt.lower())
    text = " ".join(text.split())
    for pre in (PREFIX, "a picture of", "an image of"):
        if text.startswith(pre + " "):
            text = text[len(pre) + 1 :]
            break
    for rel in RELATIONS:
        m = re.fullmatch(rf"(.+) {rel} (.+)", text)
        if m:
            (a, _), (b, _) = _parse_phrase(m.group(1), prompt), _parse_phrase(m.group(2), prompt)
            a["position"] = [rel, 1]
            return _finish("position", [a, b], prompt)
    parts = text.split(" and ")
    if len(parts) > 2:
        raise ValueError(f"prompt {_short(prompt)} names more than two kinds of object; {_GRAMMAR_HINT}")
    parsed = [_parse_phrase(p, prompt) for p in parts]
    objs = [o for o, _ in parsed]
    if len(objs) == 2:
        tag = "color_attr" if all(o.get("color") for o in objs) else "two_object"
    elif objs[0]["count"] > 1 or parsed[0][1]:
        tag = "counting"
    else:
        tag = "colors" if objs[0].get("color") else "single_object"
    return _finish(tag, objs, prompt)


def _finish(tag: str, objs: list[dict], prompt: str) -> dict:
    spec = {"tag": tag, "include": objs}
    try:
        validate_spec(spec)
    except ValueError as e:
        raise ValueError(f"prompt {_short(prompt)}: {e}") from None
    spec["prompt"] = prompt
    return spec
