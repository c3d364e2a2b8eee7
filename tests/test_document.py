"""The document renderer (common.report.document): Markdown and self-contained HTML from the same blocks."""
import base64
import re

from common.report.document import (
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
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<p class="finding">use <code>x&lt;y</code> &amp; ' in page
    assert '<h2 id="a-b">A &amp; &lt;B&gt; <a class="top" href="#top">' in page
    assert '<li><a href="#a-b">A &amp; &lt;B&gt;</a></li>' in page
    assert '<th>h&lt;1&gt;</th>' in page and '<td class="num"><code>a|b</code></td>' in page
    assert '<p class="caption">see <code>c&amp;d</code></p>' in page
    assert "<code>python run.py --out &#x27;a b&#x27; &lt;x&gt;</code>" in page  # the command: escaped, verbatim
    assert "(note <code>n</code>)" in page and "<title>T&lt;itle&gt;</title>" in page


def test_figures_keep_the_assignments_numbers_are_embedded_and_open_full_size(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/one.png", "two.png", "three.png"):
        (tmp_path / name).write_bytes(PNG)
    blocks = number_figures([Para("lead"), Heading("H", "h"), Figure("a/one.png", "First.", assignment=4),
                             Figure("two.png", "Second."), Figure("three.png", "Third.")])
    assert [b.label for b in blocks[2:]] == ["4", "S1", "S2"]  # the assignment's number, else S1, S2, ...
    page = to_html(blocks, "T", str(tmp_path))
    srcs = re.findall(r'<a href="([^"]+)" class="zoom"><img src="data:image/png;base64,([^"]+)" alt="Figure (\w+): ',
                      page)
    assert [(href, base64.b64decode(s), n) for href, s, n in srcs] == [
        ("a/one.png", PNG, "4"), ("two.png", PNG, "S1"), ("three.png", PNG, "S2")]  # click: the file, full size
    assert not re.search(r'src="(?!data:)', page)  # nothing outside the page is needed to show it
    assert '<figure id="figure-4">' in page and "<b>Figure 4 (the assignment&#x27;s).</b>" in page
    assert 'id="lightbox"' in page and "<script>" in page  # the embedded copy opens full size in the page
    # the lead comes before the contents, which list every heading and every figure
    assert page.index("<p>lead</p>") < page.index('<nav id="top">') < page.index('<h2 id="h">')
    assert '<a href="#figure-S2">S2</a>' in page and 'href="#top"' in page
    md = to_markdown(blocks, "T")
    assert "[![Figure 4](a/one.png)](a/one.png)\n\n**Figure 4 (the assignment's).** First. (`a/one.png`)" in md
    assert md.startswith("# T\n\nlead\n")
    # the page's links lead somewhere in REPORT.md on GitHub too: each heading and figure carries its id
    assert '## <a id="h"></a>H\n' in md and '<a id="figure-4"></a>[![Figure 4](a/one.png)]' in md


def test_bold_outside_code_only():
    page = to_html([Para("a **kind** and `x**y**`")], "T", "/nowhere")
    assert "a <b>kind</b> and <code>x**y**</code>" in page


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


def test_markdown_keeps_links_to_the_page_and_no_other():
    """The headline's '[1b](#part-1b)' stays a link in REPORT.md; a link to anywhere else, from data, is text."""
    from common.report.document import md_text

    assert md_text("[1b](#part-1b) ([Fig. 1](#figure-1))") == "[1b](#part-1b) ([Fig. 1](#figure-1))"
    assert md_text("[x](http://evil.example)") == "\\[x\\](http://evil.example)"
    assert md_text("[a](#b) <b>") == "[a](#b) &lt;b&gt;"
