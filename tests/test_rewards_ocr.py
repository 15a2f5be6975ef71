"""OCR reward: Flow-GRPO's formula as pure functions, and the real rapidocr models (bundled in the wheel) on text
rendered with DejaVu fonts."""

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

import rewards
from rewards.ocr import levenshtein, ocr_score, quoted_target

FONT_DIRS = ["/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF"]


def _font(size=56):
    for d in FONT_DIRS:
        path = os.path.join(d, "DejaVuSans-Bold.ttf")
        if os.path.isfile(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)  # Pillow >= 10.1 ships a scalable default font


def render(text, size=(640, 160)):
    im = Image.new("RGB", size, "white")
    ImageDraw.Draw(im).text((30, 40), text, fill="black", font=_font())
    return im


# ---------- formula ----------

def test_quoted_target():
    assert quoted_target('a neon sign that says "Open Late" at night') == "Open Late"
    assert quoted_target('two "first" and "second"') == "first"
    assert quoted_target("no quotes here") is None
    assert quoted_target('empty "" quotes') is None


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("abc", "abc") == 0


def test_ocr_score_formula():
    assert ocr_score("Hello World", "hello world") == 1.0  # case and spaces ignored
    assert ocr_score("Sign: HELLO WORLD!!", "Hello World") == 1.0  # substring shortcut
    assert ocr_score("hellp world", "hello world") == pytest.approx(1 - 1 / 10)  # 10 chars without the space
    assert ocr_score("", "hello") == 0.0  # distance clamped at len(target)
    assert ocr_score("a completely different long string", "abc") == 0.0
    assert ocr_score("abd", "abcd") == pytest.approx(0.75)


class FakeEngine:
    """rapidocr-shaped engine returning canned lines."""

    def __init__(self, lines):
        self.lines = lines

    def __call__(self, image, use_cls=False):
        return ([[None, t, c] for t, c in self.lines] or None), 0.0


def test_missing_quotes_behaviour():
    img = [Image.new("RGB", (8, 8))] * 2
    prompts = ['a sign "OPEN"', "a sign without quotes"]
    with pytest.raises(ValueError, match="no text in double quotes.*missing='zero'"):
        rewards.load("ocr", engine=FakeEngine([("OPEN", 0.9)]))(img, prompts)
    out = rewards.load("ocr", engine=FakeEngine([("OPEN", 0.9)]), missing="zero")(img, prompts)
    assert out.scores.tolist() == [1.0, 0.0] and out.details["target"] == ["OPEN", None]
    out = rewards.load("ocr", engine=FakeEngine([("OPEN", 0.9)]), missing="nan")(img, prompts)
    assert out.scores[0] == 1.0 and math.isnan(out.scores[1])
    with pytest.raises(ValueError, match="missing must be"):
        rewards.load("ocr", engine=FakeEngine([]), missing="skip")


def test_lines_are_concatenated_and_empty_result_scores_zero():
    img = [Image.new("RGB", (8, 8))]
    out = rewards.load("ocr", engine=FakeEngine([("Hello", 0.99), (" World", 0.9)]))(img, ['"hello world"'])
    assert out.scores.tolist() == [1.0] and out.details["text"] == ["Hello World"]
    assert rewards.load("ocr", engine=FakeEngine([]))(img, ['"hello"']).scores.tolist() == [0.0]


def test_paddleocr_backend_adapter(monkeypatch):
    """backend='paddleocr' builds PaddleOCR as Flow-GRPO does and reads its [[box, (text, conf)], ...] output."""
    import sys
    import types

    made = {}

    class FakePaddleOCR:
        def __init__(self, **kwargs):
            made.update(kwargs)

        def ocr(self, arr, cls=False):
            assert arr.dtype == np.uint8 and arr.shape[2] == 3 and cls is False
            return [[[[[0, 0]], ("Hello", 0.98)], [[[0, 0]], ("World", 0.97)]]]  # one page of lines

    monkeypatch.setitem(sys.modules, "paddleocr", types.SimpleNamespace(PaddleOCR=FakePaddleOCR))
    r = rewards.load("ocr", backend="paddleocr")
    assert made == {"use_angle_cls": False, "lang": "en", "use_gpu": False, "show_log": False}
    out = r([Image.new("RGB", (8, 8))], ['"hello world"'])
    assert out.scores.tolist() == [1.0] and out.details["text"] == ["HelloWorld"]
    with pytest.raises(ValueError, match="backend must be"):
        rewards.load("ocr", backend="tesseract")


# ---------- real rapidocr model (offline, weights ship in the wheel) ----------

@pytest.fixture(scope="module")
def ocr():
    pytest.importorskip("rapidocr_onnxruntime")
    return rewards.load("ocr", missing="zero")


def test_real_ocr_on_rendered_text(ocr):
    images = [render("Hello World"), render("Hello World"), render("NASA 2049"), render("GENRL")]
    prompts = ['A storefront sign that reads "Hello World"', 'a poster saying "Quantum Banana Express"',
               'a mission patch with "nasa 2049" on it', "a photo of a cat"]
    out = ocr(images, prompts)
    assert out.scores.dtype == torch.float32 and out.scores.shape == (4,)
    assert out.scores[0] >= 0.9, out.details["text"]
    assert out.scores[1] <= 0.3, out.details["text"]
    assert out.scores[2] >= 0.9, out.details["text"]
    assert out.scores[3] == 0.0 and out.details["target"][3] is None  # no quoted text, missing="zero"


def test_real_ocr_accepts_float_tensors(ocr):
    x = torch.from_numpy(np.array(render("OPEN"))).permute(2, 0, 1)[None].float() / 255
    assert ocr(x, ['a sign "open"']).scores.item() >= 0.9


def test_video_ocr_on_every_fourth_frame(ocr):
    """flow_grpo's video OCR reward (the Wan recipe's): OCR on frames 0, 4, 8 of a clip, averaged."""
    text = torch.from_numpy(np.array(render("OPEN"))).permute(2, 0, 1).float() / 255
    clip = torch.ones(9, *text.shape)
    clip[::4] = text  # the text is on frames 0, 4 and 8 only
    every4 = rewards.load("per_frame", reward=ocr, every=4)
    out = every4(clip[None], ['a sign "open"'])
    assert out.details["frame_scores"].shape == (1, 3) and out.scores.item() >= 0.9
    every1 = rewards.load("per_frame", reward=ocr, every=1)(clip[None], ['a sign "open"'])
    assert every1.scores.item() == pytest.approx(out.scores.item() * 3 / 9, abs=1e-5)  # blank frames score 0
