"""Text-rendering prompts for the OCR reward: each prompt carries its target text between the first pair of double
quotes, which is what `rewards.load("ocr")` reads (Flow-GRPO's OCR prompts have the same shape, e.g.
'A storefront sign that says "OPEN LATE"').

Texts are one to three words from a built-in vocabulary (no downloads); a scene template puts each text on a sign,
label, poster, cake, screen, .... Train and test never share a text, so the test split measures rendering new
words, not memorised ones. Deterministic in `seed`.
"""

from __future__ import annotations

import random

TEMPLATES = (
    'A storefront sign that says "{t}"', 'A neon sign glowing with the words "{t}"',
    'A handwritten note on a fridge that reads "{t}"', 'A chalkboard menu outside a cafe with "{t}" written on it',
    'A vintage poster with the title "{t}"', 'A birthday cake with "{t}" written in icing',
    'A wooden road sign pointing left that says "{t}"', 'A T-shirt printed with the slogan "{t}"',
    'A book cover with the title "{t}"', 'A coffee mug with the text "{t}"',
    'A laptop screen showing the word "{t}"', 'A street banner across the road reading "{t}"',
    'A license plate that reads "{t}"', 'A protest placard held up high saying "{t}"',
    'A billboard on a highway advertising "{t}"', 'A cereal box on a kitchen table labelled "{t}"',
    'A graffiti mural on a brick wall spelling "{t}"', 'A glass door with "{t}" painted in gold letters',
    'A greeting card with the message "{t}"', 'A movie theatre marquee announcing "{t}"',
    'A street sign on a pole that reads "{t}"', 'A jar of jam with a paper label saying "{t}"',
    'A tote bag printed with "{t}"', 'A sand beach with "{t}" written in the sand',
)

WORDS = (
    "open", "closed", "late", "fresh", "coffee", "bakery", "garden", "river", "mountain", "ocean", "sunrise",
    "welcome", "home", "kitchen", "library", "market", "station", "harbor", "museum", "theatre", "festival",
    "summer", "winter", "autumn", "spring", "happy", "birthday", "love", "hope", "dream", "believe", "create",
    "explore", "discover", "adventure", "journey", "travel", "north", "south", "east", "west", "city", "village",
    "forest", "desert", "island", "valley", "bridge", "tower", "castle", "palace", "cottage", "cabin", "farm",
    "orchard", "honey", "apple", "lemon", "cherry", "mango", "peach", "plum", "berry", "bread", "butter",
    "cheese", "pizza", "pasta", "noodle", "soup", "salad", "tea", "juice", "milk", "sugar", "spice", "salt",
    "pepper", "silver", "golden", "crystal", "velvet", "cotton", "paper", "stone", "iron", "copper", "marble",
    "electric", "digital", "cosmic", "lunar", "solar", "stellar", "rocket", "planet", "galaxy", "comet",
    "thunder", "lightning", "rain", "snow", "storm", "breeze", "cloud", "shadow", "light", "fire", "water",
    "earth", "wind", "quiet", "loud", "slow", "fast", "brave", "bold", "calm", "wild", "gentle", "kind",
    "clever", "lucky", "jolly", "sunny", "cozy", "shiny", "sweet", "sour", "bitter", "smooth", "sharp",
    "sale", "free", "new", "best", "daily", "news", "music", "jazz", "blues", "dance", "party", "club", "game",
    "play", "stop", "go", "exit", "enter", "push", "pull", "caution", "danger", "parking", "taxi", "hotel",
    "pharmacy", "bank", "school", "office", "studio", "gallery", "cinema", "arcade", "bistro", "diner", "grill",
    "tiger", "eagle", "wolf", "fox", "bear", "owl", "panda", "koala", "otter", "whale", "dolphin", "falcon",
)


def random_text(rng: random.Random, max_words: int = 3) -> str:
    words = rng.sample(WORDS, rng.randint(1, max_words))
    style = rng.random()
    text = " ".join(words)
    return text.upper() if style < 0.4 else text.title() if style < 0.8 else text


def generate(train: int = 20000, test: int = 1000, seed: int = 0, max_words: int = 3) -> tuple[list[str], list[str]]:
    """(train_prompts, test_prompts) with disjoint target texts (case-insensitive)."""
    if train < 0 or test < 0:
        raise ValueError(f"split sizes must be >= 0, got train={train}, test={test}")
    if not 1 <= max_words <= 5:
        raise ValueError(f"max_words must be in 1..5, got {max_words}")
    rng = random.Random(seed)
    texts: dict[str, str] = {}
    splits = []
    for size in (test, train):
        out, tries = [], 0
        while len(out) < size:
            tries += 1
            if tries > 50 * (size + 100):
                raise ValueError(f"cannot draw {size} prompts with distinct texts from the built-in vocabulary; "
                                 "ask for fewer or allow more words per text")
            t = random_text(rng, max_words)
            if t.lower() in texts:
                continue
            texts[t.lower()] = t
            out.append(rng.choice(TEMPLATES).format(t=t))
        splits.append(out)
    return splits[1], splits[0]
