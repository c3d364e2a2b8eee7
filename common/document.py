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
    path: str  # relative to the results root (and to the page, which is written there)
    caption: str
    assignment: int | None = None  # the assignment's number of this figure, when it has one
    label: str = ""  # filled in by number_figures: the assignment's number, or S1, S2, ... for the others


@dataclasses.dataclass
class Missing:
    """Something the document should show but cannot, with the command that makes it."""

    what: str
    command: str
    note: str = ""


Block = Heading | Para | Table | Figure | Missing


def number_figures(blocks: list[Block]) -> list[Block]:
    """Labels the figures (in place): a figure of the assignment keeps its number there ('4' for the
    assignment's Figure 4), every other one is S1, S2, ... in document order; returns `blocks`."""
    n = 0
    for b in blocks:
        if isinstance(b, Figure):
            if b.assignment is not None:
                b.label = str(b.assignment)
            else:
                n += 1
                b.label = f"S{n}"
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


def _figure_title(b: Figure) -> str:
    return f"Figure {b.label}" + (" (the assignment's)" if b.assignment is not None else "")


def to_markdown(blocks: list[Block], title: str) -> str:
    """GitHub Markdown with the same content as `to_html`; figures are linked by `Figure.path`, relative to the
    page (so the file belongs in the figures' root, where GitHub shows them, each a link to the full size)."""
    out = [f"# {title}", ""]
    for b in blocks:
        if isinstance(b, Heading):
            out += [f"{'#' * b.level} {b.text}", ""]
        elif isinstance(b, Para):
            out += [("> " if b.css == "finding" else "") + b.text, ""]
        elif isinstance(b, Table):
            out += [markdown_table(b.headers, b.rows), ""] + ([f"*{b.caption}*", ""] if b.caption else [])
        elif isinstance(b, Figure):
            out += [f"[![Figure {b.label}]({b.path})]({b.path})", "",
                    f"**{_figure_title(b)}.** {b.caption} (`{b.path}`)", ""]
        elif isinstance(b, Missing):
            note = f" ({b.note})" if b.note else ""
            out += [f"- **Missing:** {b.what}{note}. Make it with: `{b.command}`", ""]
    return "\n".join(out).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escapes HTML, turns `code` spans into <code>, **bold** into <b> and [text](#anchor) into a link to
    the page's anchor (outside code)."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(f"<code>{html.escape(p[1:-1])}</code>" if p.startswith("`") and p.endswith("`") and len(p) > 1
                   else _page_links(re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", html.escape(p))) for p in parts)


def _page_links(escaped: str) -> str:
    """Markdown links to an anchor of the page, '[1b](#part-1b)', as HTML links (Markdown renders them itself)."""
    return re.sub(r"\[([^\]]+)\]\(#([\w-]+)\)", r'<a href="#\2">\1</a>', escaped)


def _data_uri(path: str) -> str:
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def _html_cell(c: CellLike, tag: str = "td") -> str:
    text, css = (c.text, c.css) if isinstance(c, Cell) else (str(c), "")
    cls = f' class="{css}"' if css else ""
    return f"<{tag}{cls}>{_inline(text)}</{tag}>"


def _html_block(b: Block, root: str) -> str:
    if isinstance(b, Heading):
        top = ' <a class="top" href="#top">\u2191 contents</a>' if b.level == 2 else ""
        return f'<h{b.level} id="{b.anchor}">{html.escape(b.text)}{top}</h{b.level}>'
    if isinstance(b, Para):
        return f'<p class="{b.css}">{_inline(b.text)}</p>' if b.css else f"<p>{_inline(b.text)}</p>"
    if isinstance(b, Table):
        head = "".join(_html_cell(h, "th") for h in b.headers)
        rows = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in b.rows)
        # The caption goes below as a paragraph: a <caption> would wrap to the width of a narrow table.
        cap = f'<p class="caption">{_inline(b.caption)}</p>' if b.caption else ""
        return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{cap}</div>'
    if isinstance(b, Figure):
        # A link to the file beside the page; the script opens the embedded copy at full size instead, so a
        # click works even when the page travels alone.
        alt = html.escape(f"Figure {b.label}: {b.caption}", quote=True)
        return (f'<figure id="figure-{b.label}"><a href="{html.escape(b.path, quote=True)}" class="zoom">'
                f'<img src="{_data_uri(os.path.join(root, b.path))}" alt="{alt}"></a>'
                f"<figcaption><b>{html.escape(_figure_title(b))}.</b> {_inline(b.caption)} "
                f"<code>{html.escape(b.path)}</code> (click to enlarge)</figcaption></figure>")
    note = f" ({_inline(b.note)})" if b.note else ""
    return (f'<div class="missing-box"><b>Missing:</b> {_inline(b.what)}{note}.<br>Make it with: '
            f"<code>{html.escape(b.command)}</code></div>")


def _contents(blocks: list[Block]) -> str:
    """The table of contents: every heading, then one line of links to the figures."""
    toc = "".join(f'<li><a href="#{b.anchor}">{html.escape(b.text)}</a></li>'
                  for b in blocks if isinstance(b, Heading))
    figures = " ".join(f'<a href="#figure-{b.label}">{html.escape(b.label)}</a>'
                       for b in blocks if isinstance(b, Figure))
    figlist = f'<p class="figlist">Figures: {figures}</p>' if figures else ""
    return f'<nav id="top"><ul>{toc}</ul>{figlist}</nav>'


def to_html(blocks: list[Block], title: str, root: str) -> str:
    """One self-contained HTML page: the blocks before the first heading (the page's lead), a table of
    contents, then the rest; each figure is read from `root`/`Figure.path` and embedded."""
    lead = next((i for i, b in enumerate(blocks) if isinstance(b, Heading)), len(blocks))
    body = [_html_block(b, root) for b in blocks]
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            + "\n".join(body[:lead]) + _contents(blocks) + "\n".join(body[lead:])
            + f'<div id="lightbox" hidden></div><script>{SCRIPT}</script></body></html>\n')


# Click a figure: its embedded image at full size in an overlay (scroll to pan); click again or Esc to close.
SCRIPT = """
const box = document.getElementById('lightbox'), big = box.appendChild(document.createElement('img'));
document.querySelectorAll('a.zoom').forEach(a => a.addEventListener('click', e => {
  e.preventDefault(); big.src = a.querySelector('img').src; box.hidden = false; }));
box.addEventListener('click', () => { box.hidden = true; });
document.addEventListener('keydown', e => { if (e.key === 'Escape') box.hidden = true; });
"""

CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #222;
       max-width: 1240px; margin: 1.5em auto; padding: 0 1.2em; }
h1 { font-size: 1.8em; margin-bottom: .2em; }
h2 { margin-top: 2.2em; padding-bottom: .2em; border-bottom: 2px solid #e3e6ea; }
h2 a.top { font-size: 12px; font-weight: normal; margin-left: .8em; color: #1a5fb4; text-decoration: none; }
nav ul { display: flex; flex-wrap: wrap; gap: .2em 1.2em; padding: 0; margin: .6em 0 .2em; list-style: none; }
nav a { color: #1a5fb4; text-decoration: none; }
p.figlist { font-size: 13px; margin: .2em 0 1em; }
p.figlist a { margin-right: .35em; }
code { font: 12.5px/1.4 ui-monospace, Menlo, Consolas, monospace; background: #f3f4f6; padding: 0 .25em;
       border-radius: 3px; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 13.5px; }
p.caption { color: #555; font-size: 12.5px; margin: .4em 0 0; }
th, td { border: 1px solid #d8dbe0; padding: .35em .6em; vertical-align: top; text-align: left; }
th { background: #eef1f5; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.small { font-size: 12.5px; color: #333; }
td.verdict { min-width: 11.5em; }
td.judged { font-weight: 600; }
td.missing, td.missing code { color: #a61b1b; background: #fdf0f0; }
td.warn { background: #fff7e0; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e6ea; cursor: zoom-in; }
figcaption { color: #444; font-size: 13.5px; margin-top: .3em; }
#lightbox { position: fixed; inset: 0; background: rgba(0, 0, 0, .85); overflow: auto; z-index: 10;
            cursor: zoom-out; }
#lightbox img { display: block; margin: 1em auto; max-width: none; background: white; }
.missing-box { border-left: 4px solid #c01c28; background: #fdf0f0; padding: .5em .8em; margin: .6em 0; }
p.finding { border-left: 4px solid #1a5fb4; background: #f0f5fc; padding: .6em .9em; }
p.lead { font-size: 15.5px; margin: .4em 0; }
p.meta { color: #555; font-size: 13.5px; }
"""
