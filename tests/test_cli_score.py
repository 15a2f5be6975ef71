"""`genrl score`: JSONL output, weighted total, summary, and one-line errors."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from genrl.cli import main


def _kb(img):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.tell() / 1000


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {
        "b.png": Image.new("RGB", (64, 64), (200, 10, 10)),
        "a.png": Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)),
        "c.jpg": Image.new("RGB", (64, 64), (0, 0, 0)),
    }
    d = tmp_path / "imgs"
    d.mkdir()
    for n, im in imgs.items():
        im.save(d / n)
    (d / "notes.txt").write_text("not an image")
    (tmp_path / "prompts.txt").write_text("noise\nred\n\nblack\n")
    loaded = {n: Image.open(d / n).convert("RGB") for n in imgs}
    return tmp_path, d, loaded


def test_score_jsonl_total_and_summary(folder, capsys):
    root, d, imgs = folder
    out = root / "scores.jsonl"
    rc = main(["score", "--reward", "jpeg_incompressibility", "--reward", "jpeg_compressibility:2",
               "--images", str(d), "--prompts", str(root / "prompts.txt"), "--out", str(out), "--batch-size", "2"])
    assert rc == 0
    rows = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r["file"] for r in rows] == ["a.png", "b.png", "c.jpg"]  # sorted order, non-images skipped
    assert [r["prompt"] for r in rows] == ["noise", "red", "black"]
    for r in rows:
        kb = _kb(imgs[r["file"]])
        assert r["jpeg_incompressibility"] == pytest.approx(kb, rel=1e-5)
        assert r["jpeg_compressibility"] == pytest.approx(-kb / 500, rel=1e-5)
        assert r["total"] == pytest.approx(kb + 2 * (-kb / 500), rel=1e-5)
        assert r["jpeg_incompressibility/size_kb"] == pytest.approx(kb, rel=1e-5)
    text = capsys.readouterr().out
    assert "jpeg_incompressibility" in text and "total" in text and "3 images" in text
    kbs = [_kb(imgs[n]) for n in ("a.png", "b.png", "c.jpg")]
    assert f"{np.mean(kbs):.4f}" in text and f"{np.std(kbs):.4f}" in text


def test_score_jsonl_prompts_with_metadata_to_stdout(folder, capsys):
    root, d, _ = folder
    p = root / "p.jsonl"
    p.write_text(json.dumps({"file": "c.jpg", "prompt": "black", "metadata": {"k": 1}}) + "\n"
                 + json.dumps({"file": "a.png", "prompt": "noise"}) + "\n")
    assert main(["score", "--reward", "jpeg_incompressibility", "--images", str(d), "--prompts", str(p)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert [json.loads(ln)["file"] for ln in lines] == ["c.jpg", "a.png"]


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda r, d: ["--images", str(r / "missing"), "--prompts", str(r / "prompts.txt")], "no such directory"),
        (lambda r, d: ["--images", str(d), "--prompts", str(r / "two.txt")], "3 images"),
        (lambda r, d: ["--images", str(d), "--prompts", str(r / "empty.txt")], "is empty"),
        (lambda r, d: ["--images", str(d), "--prompts", str(r / "nofile.txt")], "no such file"),
        (lambda r, d: ["--images", str(d), "--prompts", str(r / "prompts.txt"), "--reward", "pikscore"],
         "unknown reward 'pikscore'"),
        (lambda r, d: ["--images", str(d), "--prompts", str(r / "prompts.txt"), "--reward", "ocr:x"],
         "not a number"),
        (lambda r, d: ["--images", str(d), "--prompts", str(r / "prompts.txt"), "--reward", "math_answer"],
         "not images"),
        (lambda r, d: ["--images", str(d), "--prompts", str(r / "prompts.txt"), "--option", "ocr.x=1"],
         "not one of the --reward names"),
    ],
)
def test_score_errors_are_one_line(folder, capsys, make_args, message):
    root, d, _ = folder
    (root / "two.txt").write_text("a\nb\n")
    (root / "empty.txt").write_text("\n\n")
    args = make_args(root, d)
    if "--reward" not in args:
        args += ["--reward", "jpeg_compressibility"]
    assert main(["score", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("genrl score: error:")
