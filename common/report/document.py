"""A small document model rendered twice: to one self-contained HTML page and to GitHub Markdown.

Content is a list of blocks (Heading, Para, Table, Figure, Missing). `to_html` embeds each figure as a base64
data URI (one file, no network needed); `to_markdown` links figures by their path relative to the page. In the
text of paragraphs, cells and captions, `backticks` mark code and **stars** bold; `code(s)` makes a code span of
any string, backticks included. Nothing here knows what the document is about.

Text may come from data and results (folder names, data sources, commands), so both renderers escape every
piece of it: the page HTML-escapes it; the Markdown puts code in a CommonMark code span that nothing inside can
close (`md_code`) and backslash- or entity-escapes the rest (`md_text`), so no string ever becomes raw HTML or a
link in REPORT.md, and no '<' of a string is ever written there.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import os
import re
import stat
import string
import urllib.parse


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

# A backtick inside a code span's content, as `code` writes it: a character of Unicode's private use area, so it
# never delimits a span; both renderers turn it back into a backtick.
BACKTICK = "\ue060"


def code(text: str) -> str:
    """`text` as one code span of the blocks' text, verbatim whatever it holds (its backticks included)."""
    return "`" + str(text).replace("`", BACKTICK) + "`"


def spans(text: str) -> list[tuple[bool, str]]:
    """The text's pieces in order, (is code, content), contents with their backticks restored."""
    parts = re.split(r"(`[^`]*`)", text)
    return [(True, p[1:-1].replace(BACKTICK, "`")) if len(p) > 1 and p[0] == p[-1] == "`"
            else (False, p.replace(BACKTICK, "`")) for p in parts if p]


_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\n": " ", "\r": " "}


def _md_escape(text: str, punctuation: str) -> str:
    """`text` on one line, '<', '>' and '&' as entities, each character of `punctuation` backslash-escaped."""
    return "".join(_MD_ENTITIES.get(ch) or ("\\" + ch if ch in punctuation else ch) for ch in str(text))


def md_text(text: str) -> str:
    """Plain Markdown text showing `text` literally as far as it matters: no raw HTML (`<`, `>`, `&` become
    entities), no code span, link or escape (backslash, backtick and brackets are backslash-escaped), one line.
    Stars are left alone: `**bold**` is the blocks' own markup, and a star in data only changes emphasis. A link to
    an anchor of the page, `[1b](#part-1b)`, stays a link (it can lead nowhere but the page itself)."""
    return _PAGE_LINK_ESCAPED.sub(r"[\1](#\2)", _md_escape(text, "\\`[]"))


# An escaped '[text](#anchor)': its text holds no bracket (escaped characters other than brackets are kept), its
# anchor only word characters and '-'.
_PAGE_LINK_ESCAPED = re.compile(r"\\\[((?:[^\\\]\[]|\\[^\[\]])*)\\\]\(#([\w-]+)\)")


def md_code(text: str) -> str:
    """`text` as Markdown code, verbatim: a CommonMark code span delimited by one backtick more than its longest
    run of backticks (so nothing inside closes it), padded with a space where it begins or ends with a backtick
    or a space (CommonMark strips one each side, except from spaces only), on one line (a blank line would end
    it and its paragraph). A text holding '<' is written as <code> with every character escaped instead, so
    that no '<' of the data is ever in the file (a code span would carry it verbatim)."""
    text = re.sub(r"[\r\n]", " ", str(text)) or " "  # an empty span would be two literal backticks
    if "<" in text:
        return f"<code>{_md_escape(text, string.punctuation)}</code>"
    fence = "`" * (1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    pad = " " if text.strip(" ") and (text[:1] in ("`", " ") or text[-1:] in ("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_inline(text: str) -> str:
    """The blocks' text as Markdown: code spans through `md_code`, the rest through `md_text`."""
    return "".join(md_code(part) if is_code else md_text(part) for is_code, part in spans(text))


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
    """A GitHub-flavoured Markdown table of escaped cells (`md_inline`); every '|' escaped, in code spans too
    (GFM splits cells before it parses code, and takes the backslash away again)."""
    def cell(c: CellLike) -> str:
        text = c.text if isinstance(c, Cell) else str(c)
        return md_inline(text).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _figure_title(b: Figure) -> str:
    return f"Figure {b.label}" + (" (the assignment's)" if b.assignment is not None else "")


def to_markdown(blocks: list[Block], title: str) -> str:
    """GitHub Markdown with the same content as `to_html`; figures are linked by `Figure.path`, relative to the
    page (so the file belongs in the figures' root, where GitHub shows them, each a link to the full size)."""
    out = [f"# {md_text(title)}", ""]
    for b in blocks:
        # Each heading and figure carries the HTML page's id, so the page's links ('[1b](#part-1b)', '#figure-1')
        # lead somewhere on GitHub too, whose own heading ids are made from the text.
        if isinstance(b, Heading):
            out += [f"{'#' * b.level} {_md_anchor(b.anchor)}{md_text(b.text)}", ""]
        elif isinstance(b, Para):
            out += [("> " if b.css == "finding" else "") + md_inline(b.text), ""]
        elif isinstance(b, Table):
            out += [markdown_table(b.headers, b.rows), ""] + ([f"*{md_inline(b.caption)}*", ""] if b.caption else [])
        elif isinstance(b, Figure):
            url = _url(b.path)
            out += [f"{_md_anchor('figure-' + b.label)}[![Figure {md_text(b.label)}]({url})]({url})", "",
                    f"**{md_text(_figure_title(b))}.** {md_inline(b.caption)} ({md_code(b.path)})", ""]
        elif isinstance(b, Missing):
            note = f" ({md_inline(b.note)})" if b.note else ""
            out += [f"- **Missing:** {md_inline(b.what)}{note}. Make it with: {md_code(b.command)}", ""]
    return "\n".join(out).rstrip() + "\n"


def _md_anchor(anchor: str) -> str:
    return f'<a id="{html.escape(anchor, quote=True)}"></a>' if anchor else ""


def _url(path: str) -> str:
    """A root-relative file path as a relative URL: every character that could end a Markdown link destination
    or an HTML attribute ('(', ')', '<', '"', spaces, ...) percent-encoded."""
    return urllib.parse.quote(path.replace(os.sep, "/"))


def _inline(text: str) -> str:
    """Escapes HTML, turns `code` spans into <code>, **bold** into <b> and [text](#anchor) into a link to the
    page's anchor (outside code)."""
    return "".join(f"<code>{html.escape(part)}</code>" if is_code
                   else _page_links(re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", html.escape(part)))
                   for is_code, part in spans(text))


def _page_links(escaped: str) -> str:
    """Markdown links to an anchor of the page, '[1b](#part-1b)', as HTML links (Markdown renders them itself)."""
    return re.sub(r"\[([^\]]+)\]\(#([\w-]+)\)", r'<a href="#\2">\1</a>', escaped)


def regular_file_inside(root: str, path: str) -> bool:
    """True when `path` is a regular file, not a link, whose real place lies inside the folder `root` (so no
    link, on the way or at the end, leads out of it)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root


def open_regular(path: str):
    """`path` opened for reading in binary when it is a regular file and not a link (checked on the open file,
    so it cannot be swapped in between; a FIFO never blocks), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return open(fd, "rb")


def _data_uri(root: str, rel: str) -> str:
    """The figure `root`/`rel` as a data URI; an empty image when it is not a regular file inside `root` (a
    link, or replaced since it was found): the page never carries bytes from outside its results folder."""
    path = os.path.join(root, rel)
    f = open_regular(path) if regular_file_inside(root, path) else None
    if f is None:
        return "data:,"
    with f:
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
        return (f'<figure id="figure-{b.label}"><a href="{html.escape(_url(b.path), quote=True)}" class="zoom">'
                f'<img src="{_data_uri(root, b.path)}" alt="{alt}"></a>'
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
