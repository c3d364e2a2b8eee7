"""The document renderer (common.document): Markdown and self-contained HTML from the same blocks."""
import base64
import re

from common.document import (
    CSS,
    Cell,
    Figure,
    Heading,
    Missing,
    Para,
    Table,
    markdown_table,
    number_figures,
    to_html,
    to_markdown,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(32))


def test_markdown_table_escapes_pipes_and_newlines():
    text = markdown_table(["a|b", "c"], [["x | y", Cell("two\nlines", "num")], [1, ""]])
    assert text.splitlines() == ["| a\\|b | c |", "|---|---|", "| x \\| y | two lines |", "| 1 |  |"]


def test_html_escapes_text_and_renders_code_spans():
    blocks = [Heading("A & <B>", "a-b"), Para("use `x<y` & <script>alert(1)</script>", "finding"),
              Table(["h<1>"], [[Cell("`a|b`", "num")]], "see `c&d`"),
              Missing("part <1>", "python run.py --out 'a b' <x>", "note `n`")]
    page = to_html(blocks, "T<itle>", "/nowhere")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<p class="finding">use <code>x&lt;y</code> &amp; ' in page
    assert '<h2 id="a-b">A &amp; &lt;B&gt;</h2>' in page and '<li><a href="#a-b">A &amp; &lt;B&gt;</a></li>' in page
    assert '<th>h&lt;1&gt;</th>' in page and '<td class="num"><code>a|b</code></td>' in page
    assert '<p class="caption">see <code>c&amp;d</code></p>' in page
    assert "<code>python run.py --out &#x27;a b&#x27; &lt;x&gt;</code>" in page  # the command: escaped, verbatim
    assert "(note <code>n</code>)" in page and "<title>T&lt;itle&gt;</title>" in page


def test_figures_are_numbered_and_embedded_as_data_uris(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/one.png", "two.png", "three.png"):
        (tmp_path / name).write_bytes(PNG)
    blocks = number_figures([Heading("H", "h"), Figure("a/one.png", "First."),
                             Figure("two.png", "Second.", half=True), Figure("three.png", "Third.", half=True)])
    assert [b.number for b in blocks[1:]] == [1, 2, 3]
    page = to_html(blocks, "T", str(tmp_path))
    srcs = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="Figure (\d)">', page)
    assert [(base64.b64decode(s), n) for s, n in srcs] == [(PNG, "1"), (PNG, "2"), (PNG, "3")]
    assert not re.search(r'(?:src|href)="(?!data:|#)', page)  # nothing outside the page is needed
    # the two half-size figures share one grid, closed at the end of the page
    assert page.count('<div class="grid">') == 1 and page.index('<div class="grid">') < page.index('"figure-2"')
    assert page.rstrip().endswith("</div></body></html>")
    md = to_markdown(blocks, "T")
    assert "![Figure 1](a/one.png)\n\n**Figure 1.** First. (`a/one.png`)" in md and md.startswith("# T\n")


def test_markdown_blocks():
    md = to_markdown([Para("a finding", "finding"), Table(["h"], [["v"]], "cap"),
                      Missing("what", "cmd --x", "why")], "Title")
    assert "> a finding" in md and "*cap*" in md
    assert "- **Missing:** what (why). Make it with: `cmd --x`" in md


def test_code_wraps_between_characters_only_where_needed():
    # break-all split every long word mid-word; overflow-wrap breaks a line only when it would overflow.
    assert "break-all" not in CSS
    code_rule = re.search(r"code \{[^}]*\}", CSS).group(0)
    assert "overflow-wrap: anywhere" in code_rule
