"""What `--task report` reads and writes: only regular files inside the results root (no link followed, no
loop walked, bounded walks), a user's REPORT.md and report.html kept, every string escaped in REPORT.md.
Tiny synthetic results roots, no training."""
import base64
import glob
import io
import json
import os
import time

import pytest

from common import report
from common.report.document import code, md_code, md_inline, md_text
from common.runtime import outputs
from recurrent.report import rnn_runs
from run import main

SECRET = b"TOPSECRET-ssh-key-0123456789-abcdefghijklmnop"


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (4, 4), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def _results(root, **metrics) -> str:
    """A results root with one finished lenet run (metrics.json, history.csv, its figure)."""
    os.makedirs(os.path.join(root, "lenet"))
    m = {"train_accuracy": 0.8, "val_accuracy": 0.61, "test_accuracy": 0.596, "epochs": 1, "seeds": [0],
         "config": {"epochs": 1, "batch_size": 50}, "command": "run.py --task lenet", "finished_at": "now",
         "data_source": "cifar", **metrics}
    with open(os.path.join(root, "lenet", "metrics.json"), "w") as f:
        json.dump(m, f)
    with open(os.path.join(root, "lenet", "history.csv"), "w") as f:
        f.write("epoch,train_seconds,epoch_seconds,train_images_per_sec,train_running_accuracy\n1,1.5,2,100,0.5\n")
    with open(os.path.join(root, "lenet", "fig1_curves.png"), "wb") as f:
        f.write(_png())
    return root


def _report(root):
    """`python run.py --task report --out root`: (exit code, REPORT.md, report.html)."""
    code_ = main(["--task", "report", "--out", root])
    with open(os.path.join(root, report.MD_NAME), encoding="utf-8") as f:
        md = f.read()
    with open(os.path.join(root, report.HTML_NAME), encoding="utf-8") as f:
        page = f.read()
    return code_, md, page


def _render(md: str) -> str:
    """REPORT.md as a CommonMark renderer with raw HTML on and GFM tables shows it (pandoc, MkDocs, editors)."""
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark").enable("table").render(md)


# --------------------------------------------------------------------------------------------- reading


def test_a_link_to_a_file_outside_is_never_embedded_nor_listed(tmp_path):
    root = _results(str(tmp_path / "results"))
    secret = tmp_path / "id_rsa"
    secret.write_bytes(SECRET)
    outside = tmp_path / "share"  # a folder of someone's pictures (/usr/share, a home folder)
    outside.mkdir()
    (outside / "holiday.png").write_bytes(_png())
    os.symlink(secret, os.path.join(root, "lenet", "fig_x.png"))
    os.symlink(secret, os.path.join(root, "lenet", "notes.json"))
    os.symlink(outside, os.path.join(root, "lenet", "share"))
    os.symlink(outside, os.path.join(root, "deconv"))  # a whole part that is a link
    rc, md, page = _report(root)
    assert rc == 0
    for text in (md, page):
        assert "TOPSECRET" not in text and base64.b64encode(SECRET)[:24].decode() not in text
        assert "fig_x" not in text and "holiday" not in text and "notes.json" not in text
    assert page.count("<figure ") == 1 and "lenet/fig1_curves.png" in md  # the real figure still is there
    assert "`deconv/` is a link, which the report does not follow" in md


def test_no_file_is_read_through_a_link(tmp_path):
    root = _results(str(tmp_path / "results"))
    lenet = os.path.join(root, "lenet")
    outside = tmp_path / "history.csv"
    outside.write_text("epoch,train_seconds,epoch_seconds,train_images_per_sec\n1,9,9,9\n")
    assert report.history_by_model(os.path.join(lenet, "history.csv"))  # the real one is read
    os.replace(os.path.join(lenet, "history.csv"), tmp_path / "kept.csv")
    os.symlink(outside, os.path.join(lenet, "history.csv"))
    assert report.history_by_model(os.path.join(lenet, "history.csv")) == []
    (tmp_path / "m.json").write_text('{"test_accuracy": 0.5}')
    os.symlink(tmp_path / "m.json", os.path.join(root, "run_all.json"))
    assert outputs.read_json(str(tmp_path / "m.json")) == {"test_accuracy": 0.5}
    assert outputs.read_json(os.path.join(root, "run_all.json")) is None  # a link counts as absent
    assert report.read_inside(root, "run_all.json") is None
    os.mkfifo(os.path.join(root, "lenet_fifo.json"))  # would block an ordinary open for ever
    assert outputs.read_json(os.path.join(root, "lenet_fifo.json")) is None
    os.symlink(tmp_path / "m.json", os.path.join(lenet, "other_metrics.json"))
    assert report.run_folders(root) == ["lenet"]
    elsewhere = tmp_path / "elsewhere" / "rnn_h8"  # a sweep member that is a link to another machine's result
    elsewhere.mkdir(parents=True)
    (elsewhere / "metrics.json").write_text('{"config": {"cell": "rnn", "hidden": 8}, "test_accuracy": 0.5}')
    os.makedirs(os.path.join(root, "rnn", "lstm_h4"))
    os.replace(elsewhere / "metrics.json", os.path.join(root, "rnn", "lstm_h4", "metrics.json"))
    assert [m["config"]["hidden"] for m in rnn_runs(root)] == [8]  # a real member is read
    os.replace(os.path.join(root, "rnn", "lstm_h4", "metrics.json"), elsewhere / "metrics.json")
    os.symlink(elsewhere, os.path.join(root, "rnn", "rnn_h8"))
    assert rnn_runs(root) == [] and report.run_folders(root) == ["lenet"]


def test_damaged_history_and_run_all_json_show_what_they_can(tmp_path):
    root = _results(str(tmp_path / "results"))
    with open(os.path.join(root, "lenet", "history.csv"), "wb") as f:
        f.write(b"epoch,train_seconds\nnot-a-number,1\n\xff\xfe")
    with open(os.path.join(root, "run_all.json"), "w") as f:
        json.dump({"command": 5, "wall_seconds": "long", "tasks": [1, {"task": "lenet", "seconds": "x"}]}, f)
    assert report.history_by_model(os.path.join(root, "lenet", "history.csv")) == []
    rc, md, _ = _report(root)
    assert rc == 0 and "| lenet | None |" in md


def test_link_loops_end_quickly_and_walks_are_bounded(tmp_path, monkeypatch, capsys):
    root = _results(str(tmp_path / "results"))
    for name in ("loopA", "loopB"):
        os.symlink("..", os.path.join(root, "lenet", name))
        os.symlink(".", os.path.join(root, name))
    t0 = time.perf_counter()
    rc, md, _ = _report(root)
    assert rc == 0 and time.perf_counter() - t0 < 20
    assert report.files_under(root, "lenet") == sorted(
        os.path.join("lenet", n) for n in ("fig1_curves.png", "history.csv", "metrics.json"))
    deep = os.path.join(root, "lenet", *["d"] * (report.MAX_DEPTH + 2))
    os.makedirs(deep)
    with open(os.path.join(deep, "fig_deep.png"), "wb") as f:
        f.write(_png())
    assert not [p for p in report.files_under(root, "lenet") if "fig_deep" in p]  # below MAX_DEPTH
    wide = os.path.join(root, "lenet", "wide")
    os.makedirs(wide)
    for i in range(60):
        open(os.path.join(wide, f"f{i}.txt"), "w").close()
    monkeypatch.setattr(report, "MAX_ENTRIES", 30)
    assert len(report.files_under(root, "lenet")) <= 30
    assert "read only the first 30 entries under" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- writing


def test_a_users_report_files_are_kept(tmp_path, capsys):
    root = _results(str(tmp_path / "results"))
    with open(os.path.join(root, "REPORT.md"), "w") as f:
        f.write("# my own notes 12345\n")
    with open(os.path.join(root, "report.html"), "w") as f:
        f.write("<p>my page</p>")
    rc, md, page = _report(root)
    assert rc == 0 and "my own notes" not in md and "Part 1b" in md
    err = capsys.readouterr().err
    for name, mine in (("REPORT.md", "# my own notes 12345\n"), ("report.html", "<p>my page</p>")):
        kept = glob.glob(os.path.join(root, f"{name}.replaced-*"))
        assert len(kept) == 1 and open(kept[0]).read() == mine
        assert f"it is kept as {kept[0]}" in err
    assert report.written_by_report(os.path.join(root, "REPORT.md"))


def test_a_report_of_ours_is_replaced_without_a_copy_and_an_edited_one_is_kept(tmp_path, capsys):
    root = _results(str(tmp_path / "results"))
    _report(root)
    _report(root)  # our own pages, unchanged: simply replaced
    assert sorted(os.listdir(root)) == ["REPORT.md", "lenet", "report.html"]
    assert "kept as" not in capsys.readouterr().err
    with open(os.path.join(root, "REPORT.md"), "a") as f:
        f.write("my comment on the run\n")  # the user edited our page: it is theirs now
    _report(root)
    kept = glob.glob(os.path.join(root, "REPORT.md.replaced-*"))
    assert len(kept) == 1 and "my comment on the run" in open(kept[0]).read()
    assert not glob.glob(os.path.join(root, "report.html.*"))


def test_a_link_or_folder_at_a_pages_name_is_moved_aside_not_written_through(tmp_path):
    root = _results(str(tmp_path / "results"))
    target = tmp_path / "elsewhere.md"
    target.write_text("not yours")
    os.symlink(target, os.path.join(root, "REPORT.md"))
    os.mkdir(os.path.join(root, "report.html"))
    rc, md, _ = _report(root)
    assert rc == 0 and target.read_text() == "not yours"
    assert os.path.islink(glob.glob(os.path.join(root, "REPORT.md.replaced-*"))[0])
    assert os.path.isdir(glob.glob(os.path.join(root, "report.html.replaced-*"))[0])


def test_stamp_tells_our_unchanged_page_apart():
    assert report.stamped("a\n").startswith(b"a\n<!-- written by elec576-jax --task report; sha256")
    assert report.stamped("a").startswith(b"a\n<!--")


# -------------------------------------------------------------------------------------------- escaping


@pytest.mark.parametrize("text", ["plain", "a`b", "``x", "y`", " lead", "a ``` b `", "", "<script>"])
def test_a_code_span_shows_its_text_verbatim(text):
    html = _render(md_code(text))
    shown = html.removeprefix("<p><code>").removesuffix("</code></p>\n")
    assert shown == (text or " ").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_markdown_text_carries_no_html_link_or_code():
    nasty = "a\\`<script>alert(1)</script>`[x](javascript:y) & <b>\n\n# h"
    html = _render(md_text(nasty))
    assert "<script" not in html and "<a " not in html and "<code>" not in html and "<b>" not in html
    assert "<h1>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert md_inline("run " + code("a`b|c") + " now") == "run ``a`b|c`` now"  # the content verbatim
    assert md_inline(code("a`b<i>")) == "<code>a\\`b&lt;i&gt;</code>"  # no '<' of a string in the file
    # strings the report builds from paths keep their backticks literal: a caption, a checkpoint in a code span
    assert md_inline(report.generic_caption("rnn/x`y/fig_a`b.png")) == "A\\`b (x\\`y)."
    assert md_inline(f"(`{report.under_root('/r', '/elsewhere/a`b')}`)") == "(``/elsewhere/a`b``)"


def test_backticks_and_script_in_names_and_data_never_become_raw_html(tmp_path):
    evil = "x`<script>alert(1)</script>`"
    root = _results(str(tmp_path / "results"), data_source=evil, command=f"run.py --task lenet --out '{evil}'")
    folder = os.path.join(root, "rnn", "x`<script>alert(2)`")  # a run folder named by a hostile sender
    os.makedirs(folder)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump({"test_accuracy": 0.9, "seeds": [0], "config": {}, "finished_at": "`<script>x</script>"}, f)
    with open(os.path.join(root, "rnn", "fig_a`)<script>b|c.png"), "wb") as f:
        f.write(_png())
    rc, md, page = _report(root)
    assert rc == 0 and "<script" not in md and "<img" not in md  # not even inside code
    html = _render(md)
    assert "<script" not in html and "alert(1)" in html
    assert "<script>alert" not in page and "<script>x" not in page
    assert "fig_a%60%29%3Cscript%3Eb%7Cc.png" in md  # the figure's link: percent-encoded
    assert "<code>rnn/x`&lt;script&gt;alert(2)`</code>" in html  # the folder: one code span, verbatim

