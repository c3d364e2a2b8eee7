"""Publishes a finished results root under docs/results/: its REPORT.md, the figures it links (downscaled PNGs)
and reference.json (the headline claims, which a shrunk report shows beside its own rows).

    python tools/publish_results.py RESULTS_ROOT --commit C --machine "..." --command "..." --wall "..." \
        [--copy ablation/ablation.json ...]

Run `python run.py --task report --out RESULTS_ROOT` first. Never copies checkpoints, data files or anything
the page does not link, except the small text files named with --copy (e.g. the ablation's per-seed numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.parse

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import report  # noqa: E402
from common.cli.run_all import experiments, task_command  # noqa: E402
from run import TASKS  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "results")
MAX_WIDTH = 1100  # pixels: legible on GitHub, a few hundred KB a figure
COPY_SUFFIXES = (".json", ".csv", ".md")  # what --copy publishes: results a reader can recompute from
MAX_COPY_BYTES = 2_000_000


def linked_figures(markdown: str) -> list[str]:
    """The relative .png paths a REPORT.md links (its figure links are percent-encoded)."""
    return sorted({urllib.parse.unquote(m) for m in re.findall(r"\]\(([^)#]+\.png)\)", markdown)})


def downscaled(src: str, dst: str) -> None:
    with Image.open(src) as im:
        im.load()
        if im.width > MAX_WIDTH:
            im = im.resize((MAX_WIDTH, round(im.height * MAX_WIDTH / im.width)), Image.LANCZOS)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        im.convert("RGB").quantize(256).save(dst, optimize=True)


def copy_source(root: str, rel: str) -> str:
    """The path of the small text result `rel` (a regular file inside `root`, never a link), checked."""
    src = os.path.join(root, rel)
    inside = os.path.realpath(src).startswith(os.path.realpath(root) + os.sep)
    if os.path.isabs(rel) or not inside or os.path.islink(src) or not os.path.isfile(src):
        raise SystemExit(f"--copy {rel}: not a regular file inside {root}")
    if not rel.endswith(COPY_SUFFIXES) or os.path.getsize(src) > MAX_COPY_BYTES:
        raise SystemExit(f"--copy {rel}: only {', '.join(COPY_SUFFIXES)} files under {MAX_COPY_BYTES:,} bytes")
    return src


def copy_text(src: str, rel: str, out: str) -> int:
    """Copies `src` to `out/rel`; its size."""
    dst = os.path.join(out, rel)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read())
    return os.path.getsize(dst)


def claims(root: str) -> dict:
    """{reference key: {'measured', 'verdict'}} of every headline claim of the report over `root`."""
    tasks = [TASKS.get(n) for n in experiments(TASKS)]
    sections = [t.report for t in tasks if t.report is not None and (t.in_all or report.is_present(root, t.report))]
    out = {}
    for s in sections:
        for c in s.claims(root, task_command(TASKS, s.key, root)):
            if c.ref:
                out[c.ref] = {"measured": c.measured, "verdict": c.verdict}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root")
    p.add_argument("--out", default=OUT, help="where to publish (default: docs/results)")
    for name in ("commit", "machine", "command", "wall", "seeds"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--copy", action="append", default=[], metavar="REL",
                   help="also publish this small .json/.csv/.md result (relative to the root); repeatable")
    a = p.parse_args(argv)
    sources = {rel: copy_source(a.root, rel) for rel in a.copy}  # every --copy checked before anything is written
    md_path = os.path.join(a.root, report.MD_NAME)
    with open(md_path, encoding="utf-8") as f:
        markdown = f.read()
    figures = linked_figures(markdown)
    for rel in figures:
        downscaled(os.path.join(a.root, rel), os.path.join(a.out, rel))
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "REPORT.md"), "w", encoding="utf-8") as f:
        f.write(markdown)
    reference = {"about": "The published full run's headline numbers (docs/results/REPORT.md), shown by `--task "
                          "report` beside each row of a shrunk or smaller report (docs/report.md).",
                 "commit": a.commit, "seeds": int(a.seeds), "machine": a.machine, "command": a.command,
                 "wall": a.wall, "report": "docs/results/REPORT.md", "note": "", "claims": claims(a.root)}
    with open(os.path.join(a.out, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(reference, f, indent=2, ensure_ascii=False)
        f.write("\n")
    copied = [(rel, copy_text(src, rel, a.out)) for rel, src in sources.items()]
    size = sum(os.path.getsize(os.path.join(a.out, r)) for r in figures)
    print(f"published {len(figures)} figures ({size / 1e6:.1f} MB), REPORT.md, reference.json"
          + "".join(f", {rel} ({n:,} bytes)" for rel, n in copied) + f" into {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
