"""tools/publish_results.py: a results root's page, its figures and the --copy text results, nothing else."""
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))

import publish_results  # noqa: E402

ARGS = ["--commit", "abc", "--machine", "m", "--command", "c", "--wall", "1 s", "--seeds", "3"]


def results_root(tmp_path):
    root = tmp_path / "root"
    (root / "ablation").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 1500, 3), np.uint8)).save(root / "ablation" / "fig_forest.png")
    (root / "REPORT.md").write_text("# r\n\n![forest](ablation/fig_forest.png)\n")
    (root / "ablation" / "ablation.json").write_text(json.dumps({"effects": {}}))
    (root / "ablation" / "checkpoint.msgpack").write_bytes(b"x" * 10)
    return root


def test_publishes_the_page_its_figures_and_the_named_text_results(tmp_path):
    root, out = results_root(tmp_path), tmp_path / "out"
    assert publish_results.main([str(root), "--out", str(out), *ARGS, "--copy", "ablation/ablation.json"]) == 0
    published = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert published == ["REPORT.md", "ablation/ablation.json", "ablation/fig_forest.png", "reference.json"]
    with Image.open(out / "ablation" / "fig_forest.png") as im:
        assert im.width == publish_results.MAX_WIDTH  # downscaled
    assert json.loads((out / "reference.json").read_text())["commit"] == "abc"


@pytest.mark.parametrize("rel", ["ablation/checkpoint.msgpack", "../outside.json", "ablation/link.json",
                                 "ablation/missing.json"])
def test_copy_refuses_anything_but_a_small_text_file_inside_the_root_before_writing(tmp_path, rel):
    root, out = results_root(tmp_path), tmp_path / "out"
    (tmp_path / "outside.json").write_text("{}")
    os.symlink(tmp_path / "outside.json", root / "ablation" / "link.json")
    with pytest.raises(SystemExit, match="--copy"):
        publish_results.main([str(root), "--out", str(out), *ARGS, "--copy", rel])
    assert not out.exists()
