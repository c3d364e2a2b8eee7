"""A small document model rendered twice: to one self-contained HTML page and to GitHub Markdown.

Content is a list of blocks (Heading, Para, Table, Figure, Missing). `to_html` embeds each figure as a base64
data URI (one file, no network needed); `to_markdown` links figures by their path relative to the page. In the
text of paragraphs, cells and captions, `backticks` mark code. Nothing here knows what the document is about.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import os
import re


@dataclasses.dataclass
class Cell:
    """A table cell with a CSS class (e.g. 'missing', 'num', 'small')."""

    text: str
    css: str = ""


CellLike = str | Cell


@dataclasses.dataclass
class Heading:
    """A section heading; `anchor` is its HTML id and its entry in the page's table of contents."""

    text: str
    anchor: str
    level: int = 2


@dataclasses.dataclass
class Para:
    text: str  # `backticks` mark code
    css: str = ""


@dataclasses.dataclass
class Table:
    headers: list[str]
    rows: list[list[CellLike]]
    caption: str = ""


@dataclasses.dataclass
class Figure:
    path: str  # relative to the results root
    caption: str
    number: int = 0  # filled in by number_figures
    half: bool = False  # shown two to a row in HTML (the many small per-run curves)


@dataclasses.dataclass
class Missing:
    """Something the document should show but cannot, with the command that makes it."""

    what: str
    command: str
    note: str = ""


Block = Heading | Para | Table | Figure | Missing


def number_figures(blocks: list[Block]) -> list[Block]:
    """Numbers the figures 1, 2, ... in document order (in place); returns `blocks`."""
    n = 0
    for b in blocks:
        if isinstance(b, Figure):
            n += 1
            b.number = n
    return blocks


def natural_key(text: str) -> list:
    """'h16' before 'h128': digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def markdown_table(headers: list[str], rows: list[list[CellLike]]) -> str:
    """A GitHub-flavoured Markdown table; '|' in cells escaped."""
    def cell(c: CellLike) -> str:
        text = c.text if isinstance(c, Cell) else str(c)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(blocks: list[Block], title: str) -> str:
    """GitHub Markdown; figures are linked by `Figure.path` (so the file belongs beside the figures' root)."""
    out = [f"# {title}", ""]
    for b in blocks:
        if isinstance(b, Heading):
            out += [f"{'#' * b.level} {b.text}", ""]
        elif isinstance(b, Para):
            out += [("> " if b.css == "finding" else "") + b.text, ""]
        elif isinstance(b, Table):
            out += [markdown_table(b.headers, b.rows), ""] + ([f"*{b.caption}*", ""] if b.caption else [])
        elif isinstance(b, Figure):
            out += [f"![Figure {b.number}]({b.path})", "", f"**Figure {b.number}.** {b.caption} (`{b.path}`)", ""]
        elif isinstance(b, Missing):
            note = f" ({b.note})" if b.note else ""
            out += [f"- **Missing:** {b.what}{note}. Make it with: `{b.command}`", ""]
    return "\n".join(out).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escapes HTML and turns `code` spans into <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _data_uri(path: str) -> str:
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def _html_cell(c: CellLike, tag: str = "td") -> str:
    text, css = (c.text, c.css) if isinstance(c, Cell) else (str(c), "")
    cls = f' class="{css}"' if css else ""
    return f"<{tag}{cls}>{_inline(text)}</{tag}>"


def to_html(blocks: list[Block], title: str, root: str) -> str:
    """One self-contained HTML page: a table of contents of the headings, then the blocks; each figure is read
    from `root`/`Figure.path` and embedded. Consecutive half-size figures share one grid row."""
    toc = "".join(f'<li><a href="#{b.anchor}">{html.escape(b.text)}</a></li>'
                  for b in blocks if isinstance(b, Heading))
    body = []
    for i, b in enumerate(blocks):
        half = isinstance(b, Figure) and b.half
        prev_half = i > 0 and isinstance(blocks[i - 1], Figure) and blocks[i - 1].half
        if half and not prev_half:
            body.append('<div class="grid">')
        if prev_half and not half:
            body.append("</div>")
        if isinstance(b, Heading):
            body.append(f'<h{b.level} id="{b.anchor}">{html.escape(b.text)}</h{b.level}>')
        elif isinstance(b, Para):
            body.append(f'<p class="{b.css}">{_inline(b.text)}</p>' if b.css else f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(_html_cell(h, "th") for h in b.headers)
            rows = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in b.rows)
            # The caption goes below as a paragraph: a <caption> would wrap to the width of a narrow table.
            cap = f'<p class="caption">{_inline(b.caption)}</p>' if b.caption else ""
            body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
                        f"</table>{cap}</div>")
        elif isinstance(b, Figure):
            body.append(f'<figure id="figure-{b.number}"><img src="{_data_uri(os.path.join(root, b.path))}" '
                        f'alt="Figure {b.number}"><figcaption><b>Figure {b.number}.</b> {_inline(b.caption)} '
                        f"<code>{html.escape(b.path)}</code></figcaption></figure>")
        elif isinstance(b, Missing):
            note = f" ({_inline(b.note)})" if b.note else ""
            body.append(f'<div class="missing-box"><b>Missing:</b> {_inline(b.what)}{note}.<br>Make it with: '
                        f"<code>{html.escape(b.command)}</code></div>")
    if blocks and isinstance(blocks[-1], Figure) and blocks[-1].half:
        body.append("</div>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><nav><ul>{toc}</ul></nav>"
            + "\n".join(body) + "</body></html>\n")


CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #222;
       max-width: 1280px; margin: 2em auto; padding: 0 1.5em; }
h1 { font-size: 1.8em; margin-bottom: .2em; }
h2 { margin-top: 2.2em; padding-bottom: .2em; border-bottom: 2px solid #e3e6ea; }
nav ul { display: flex; flex-wrap: wrap; gap: .3em 1.2em; padding: 0; list-style: none; }
nav a { color: #1a5fb4; text-decoration: none; }
code { font: 12.5px/1.4 ui-monospace, Menlo, Consolas, monospace; background: #f3f4f6; padding: 0 .25em;
       border-radius: 3px; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 13.5px; }
p.caption { color: #555; font-size: 12.5px; margin: .4em 0 0; }
th, td { border: 1px solid #d8dbe0; padding: .35em .6em; vertical-align: top; text-align: left; }
th { background: #eef1f5; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.small { font-size: 12px; color: #444; }
td.missing, td.missing code { color: #a61b1b; background: #fdf0f0; }
td.warn { background: #fff7e0; }
figure { margin: 1.5em 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 0 1.5em; }
figure img { max-width: 100%; border: 1px solid #e3e6ea; }
figcaption { color: #444; font-size: 13.5px; margin-top: .3em; }
.missing-box { border-left: 4px solid #c01c28; background: #fdf0f0; padding: .5em .8em; margin: .6em 0; }
p.finding { border-left: 4px solid #1a5fb4; background: #f0f5fc; padding: .6em .9em; }
p.meta { color: #555; }
"""
