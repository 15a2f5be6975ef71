"""GenEval-style prompt sets with the metadata the GenEval reward reads (rewards/geneval_rules.py).

The six GenEval categories over the 80 COCO object names (GenEval's object_names.txt), its ten colours and four
relations, with GenEval's prompt templates and metadata rows:

  single_object  "a photo of a bench"                     include [{class, count: 1}]
  two_object     "a photo of a bench and a cat"           include [{a, 1}, {b, 1}]
  counting       "a photo of three cats"                  include [{class, count: n}], exclude [{class, n + 1}]
  colors         "a photo of a red bench"                 include [{class, 1, color}]
  position       "a photo of a bench left of a cat"       include [{b, 1}, {a, 1, position: [relation, 0]}]
  color_attr     "a photo of a red bench and a blue cat"  include [{a, 1, color}, {b, 1, color}]

A set is drawn deterministically from `seed`: the test split first (GenEval's category mix by default: 80 / 99
/ 80 / 94 / 100 / 100 = 553 prompts), then a train split of distinct prompts that never repeats a test prompt.
This reproduces GenEval's distribution, not its exact prompt list (that file is the benchmark's own).
"""

from __future__ import annotations

import random

from rewards.geneval_rules import COLORS, OBJECT_NAMES, RELATIONS, TAGS

#: GenEval's test-set size per category (553 prompts in all)
GENEVAL_TEST_MIX = {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100,
                    "color_attr": 100}
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine",
                10: "ten"}
DEFAULT_COUNTS = (2, 3, 4)  # GenEval's counting prompts
_IRREGULAR = {"person": "people", "sheep": "sheep", "skis": "skis", "scissors": "scissors", "knife": "knives",
              "computer mouse": "computer mice", "wine glass": "wine glasses", "bus": "buses", "tie": "ties"}


def plural(name: str) -> str:
    if name in _IRREGULAR:
        return _IRREGULAR[name]
    if name.endswith(("s", "sh", "ch", "x")):
        return name + "es"
    if name.endswith("y") and name[-2] not in "aeiou":
        return name[:-1] + "ies"
    return name + "s"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _a(*words: str) -> str:
    phrase = " ".join(words)
    return f"{article(phrase)} {phrase}"


def make_row(tag: str, rng: random.Random, counts: tuple[int, ...] = DEFAULT_COUNTS) -> dict:
    """One random GenEval row of category `tag`: {"tag", "include", ["exclude"], "prompt"}."""
    a, b = rng.sample(OBJECT_NAMES, 2)
    if tag == "single_object":
        return {"tag": tag, "include": [{"class": a, "count": 1}], "prompt": f"a photo of {_a(a)}"}
    if tag == "two_object":
        return {"tag": tag, "include": [{"class": a, "count": 1}, {"class": b, "count": 1}],
                "prompt": f"a photo of {_a(a)} and {_a(b)}"}
    if tag == "counting":
        n = rng.choice(counts)
        return {"tag": tag, "include": [{"class": a, "count": n}], "exclude": [{"class": a, "count": n + 1}],
                "prompt": f"a photo of {NUMBER_WORDS[n]} {plural(a)}"}
    if tag == "colors":
        c = rng.choice(COLORS)
        return {"tag": tag, "include": [{"class": a, "count": 1, "color": c}], "prompt": f"a photo of {_a(c, a)}"}
    if tag == "position":
        rel = rng.choice(RELATIONS)
        return {"tag": tag, "include": [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [rel, 0]}],
                "prompt": f"a photo of {_a(a)} {rel} {_a(b)}"}
    if tag == "color_attr":
        c1, c2 = rng.sample(COLORS, 2)
        return {"tag": tag, "include": [{"class": a, "count": 1, "color": c1}, {"class": b, "count": 1, "color": c2}],
                "prompt": f"a photo of {_a(c1, a)} and {_a(c2, b)}"}
    raise ValueError(f"unknown GenEval category {tag!r}; choose from {', '.join(TAGS)}")


def capacity(tag: str, counts: tuple[int, ...] = DEFAULT_COUNTS) -> int:
    """Number of distinct prompts of a category."""
    n = len(OBJECT_NAMES)
    return {"single_object": n, "two_object": n * (n - 1), "counting": n * len(counts),
            "colors": n * len(COLORS), "position": n * (n - 1) * len(RELATIONS),
            "color_attr": n * (n - 1) * len(COLORS) * (len(COLORS) - 1)}[tag]


def check_options(categories: list[str], counts: tuple[int, ...]) -> None:
    for c in categories:
        if c not in TAGS:
            raise ValueError(f"unknown GenEval category {c!r}; choose from {', '.join(TAGS)}")
    bad = [n for n in counts if n not in NUMBER_WORDS]
    if bad or not counts:
        raise ValueError(f"counting prompts support counts {min(NUMBER_WORDS)}..{max(NUMBER_WORDS)}, got "
                         f"{list(counts) or 'none'}")


def split_counts(total: int, categories: list[str], mix: dict[str, int] | None = None) -> dict[str, int]:
    """`total` prompts over `categories` in proportion to `mix` (GenEval's test mix by default)."""
    mix = {c: (mix or GENEVAL_TEST_MIX)[c] for c in categories}
    s = sum(mix.values())
    out = {c: total * w // s for c, w in mix.items()}
    for c in sorted(mix, key=lambda c: -(total * mix[c] % s))[: total - sum(out.values())]:
        out[c] += 1
    return out


def _fill(size: int, categories: list[str], free: dict[str, int]) -> dict[str, int]:
    """`size` prompts split in GenEval's mix, capped by each category's free capacity; what a full category cannot
    take goes to the others in the same proportions (e.g. all 80 single-object prompts sit in the test split)."""
    take = dict.fromkeys(categories, 0)
    open_ = [c for c in categories if free[c] > 0]
    left = size
    while left > 0 and open_:
        share = split_counts(left, open_)
        for c in open_:
            take[c] += min(share[c], free[c] - take[c])
        left = size - sum(take.values())
        open_ = [c for c in open_ if take[c] < free[c]]
    if left > 0:
        raise ValueError(f"only {size - left} distinct GenEval prompts of categories {', '.join(categories)} are "
                         f"left for this split; ask for fewer than {size}")
    return take


def generate(train: int, test: int = 553, categories: list[str] | None = None, counts: tuple[int, ...] =
             DEFAULT_COUNTS, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train_rows, test_rows): distinct prompts per split, no test prompt in train, deterministic in `seed`."""
    categories = list(categories or TAGS)
    check_options(categories, counts)
    if train < 0 or test < 0:
        raise ValueError(f"split sizes must be >= 0, got train={train}, test={test}")
    rng = random.Random(seed)
    seen: set[str] = set()
    used = dict.fromkeys(categories, 0)
    splits = []
    for size in (test, train):
        rows = []
        for tag, n in _fill(size, categories, {c: capacity(c, counts) - used[c] for c in categories}).items():
            while n > 0:
                row = make_row(tag, rng, counts)
                if row["prompt"] in seen:
                    continue
                seen.add(row["prompt"])
                rows.append(row)
                used[tag] += 1
                n -= 1
        splits.append(rows)
    return splits[1], splits[0]
