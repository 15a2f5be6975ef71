"""`genrl data`: GenEval-style metadata the GenEval reward's rule engine accepts, OCR prompts the OCR reward reads,
disjoint train/test splits, determinism, refusals that write nothing, and the missing-prompt-file hints."""

import json
import os

import pytest

from genrl.cli import main
from genrl.data import load_prompts
from genrl.promptgen import geneval, ocr
from rewards.geneval_rules import COLORS, OBJECT_NAMES, TAGS, check_metadata
from rewards.ocr import quoted_target


def test_geneval_rows_follow_the_templates_and_validate():
    train, test = geneval.generate(3000, 553, seed=1)
    assert len(test) == 553 and len(train) == 3000
    assert {r["tag"] for r in test} == set(TAGS)
    assert sum(r["tag"] == "single_object" for r in test) == 80
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    assert len({r["prompt"] for r in train}) == 3000
    for r in train + test:
        check_metadata(r)  # the GenEval reward's own check
        for clause in r["include"]:
            assert clause["class"] in OBJECT_NAMES and clause.get("color", "red") in COLORS
        if r["tag"] == "counting":
            n = r["include"][0]["count"]
            assert 2 <= n <= 4 and r["exclude"] == [{"class": r["include"][0]["class"], "count": n + 1}]
        if r["tag"] == "position":
            a, b = r["include"][1]["class"], r["include"][0]["class"]
            assert r["prompt"].endswith(f"{r['include'][1]['position'][0]} {geneval.article(b)} {b}")
            assert a in r["prompt"] and r["include"][1]["position"][1] == 0
    assert geneval.generate(50, 20, seed=1) == geneval.generate(50, 20, seed=1)
    assert geneval.plural("person") == "people" and geneval.plural("bus") == "buses"
    assert geneval.plural("toothbrush") == "toothbrushes" and geneval.plural("cup") == "cups"
    assert geneval.article("orange") == "an"


def test_geneval_bad_options():
    with pytest.raises(ValueError, match="unknown GenEval category 'pets'"):
        geneval.generate(10, 10, categories=["pets"])
    with pytest.raises(ValueError, match="counts 2..10"):
        geneval.generate(10, 10, counts=(1, 2))
    with pytest.raises(ValueError, match="ask for fewer"):
        geneval.generate(1000, 0, categories=["single_object"])  # only 80 exist


def test_ocr_prompts_quote_their_text_and_splits_do_not_share_texts():
    train, test = ocr.generate(2000, 300, seed=0)
    assert len(train) == 2000 and len(test) == 300
    tt = [quoted_target(p) for p in train]
    te = [quoted_target(p) for p in test]
    assert all(tt) and all(te)
    assert not {t.lower() for t in tt} & {t.lower() for t in te}
    assert all(1 <= len(t.split()) <= 3 for t in tt)


def test_cli_writes_what_the_configs_read(tmp_path):
    g, o = str(tmp_path / "g"), str(tmp_path / "o")
    assert main(["data", "geneval", "--out", g, "--train", "200", "--test", "60"]) == 0
    assert sorted(os.listdir(g)) == ["test_metadata.jsonl", "train_metadata.jsonl"]
    ps = load_prompts(os.path.join(g, "train_metadata.jsonl"))
    assert len(ps) == 200 and ps.metadata[0]["prompt"] == ps.prompts[0]
    assert main(["data", "ocr", "--out", o, "--train", "50", "--test", "10"]) == 0
    assert len(load_prompts(os.path.join(o, "test.txt"))) == 10
    before = open(os.path.join(o, "test.txt")).read()
    assert main(["data", "ocr", "--out", o]) == 2  # refuses a non-empty directory, overwrites nothing
    assert open(os.path.join(o, "test.txt")).read() == before
    bad = str(tmp_path / "bad")
    assert main(["data", "geneval", "--out", bad, "--categories", "counting,pets"]) == 2
    assert main(["data", "geneval", "--out", bad, "--counts", "2,11"]) == 2
    assert not os.path.exists(bad)
    # the shipped recipes' default paths are where `genrl data` writes by default
    from genrl.config import load_config

    cfg = load_config("configs/sd35/geneval_grpo.yaml")
    assert cfg.data.prompts == "dataset/geneval/train_metadata.jsonl"
    assert cfg.eval.prompts == "dataset/geneval/test_metadata.jsonl"
    assert load_config("configs/sd35/ocr_grpo.yaml").data.prompts == "dataset/ocr/train.txt"
    assert json.loads(open(os.path.join(g, "test_metadata.jsonl")).readline())["tag"] in TAGS


@pytest.mark.parametrize("path,hint", [("dataset/geneval/train_metadata.jsonl", "genrl data geneval"),
                                       ("dataset/ocr/train.txt", "genrl data ocr"),
                                       ("dataset/pickscore/train.txt", "Pick-a-Pic")])
def test_missing_prompt_files_say_where_they_come_from(tmp_path, path, hint):
    with pytest.raises(FileNotFoundError, match=hint) as e:
        load_prompts(str(tmp_path / path))
    assert "\n" not in str(e.value)
