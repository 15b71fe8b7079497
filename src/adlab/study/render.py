"""The report's blocks rendered through jinja2 templates (adlab/study/templates): report.md for
GitHub, one self-contained report.html, and report.tex for students' LaTeX reports.

Every value a template prints is escaped for its format: HTML by jinja2's autoescaping, Markdown
and LaTeX by the environment's `finalize` hook, which jinja2 applies to every `{{ }}` output. What
must pass unescaped (an image's data URI, a figure path) is wrapped in `Raw` (or markupsafe's
Markup for HTML).
"""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import quote

from adlab.formatting import Raw, md_escape, tex_escape  # noqa: F401 (the one escaper of each format)
from adlab.study.blocks import Block, Bullets, Figure, Gallery, Heading, Paragraph, Table

if TYPE_CHECKING:
    from jinja2 import BaseLoader, Environment, Undefined


def cell(value, column: str = "") -> str:
    from adlab.formatting import format_number  # the one number format (also adlab table, run summaries)

    return format_number(value, column)


# --- environments ----------------------------------------------------------------------------------


class _Options(TypedDict):
    """The keyword arguments every format's jinja2 Environment shares."""

    loader: BaseLoader
    undefined: type[Undefined]
    trim_blocks: bool
    lstrip_blocks: bool
    keep_trailing_newline: bool


@cache
def _environment(kind: str) -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    options = _Options(
        loader=PackageLoader("adlab.study", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    if kind == "html":
        env = Environment(autoescape=True, **options)
    elif kind == "md":
        env = Environment(autoescape=False, finalize=md_escape, **options)
    else:  # LaTeX: delimiters that do not clash with its braces
        env = Environment(
            autoescape=False,
            finalize=tex_escape,
            block_start_string="((*",
            block_end_string="*))",
            variable_start_string="(((",
            variable_end_string=")))",
            comment_start_string="((=",
            comment_end_string="=))",
            line_comment_prefix="%#",
            **options,
        )
    env.filters["cell"] = cell
    env.filters["raw"] = Raw  # the template's own syntax (a heading's #), not a value to escape
    env.filters["breakable"] = _breakable
    env.tests.update(
        heading=lambda b: isinstance(b, Heading),
        paragraph=lambda b: isinstance(b, Paragraph),
        bullets=lambda b: isinstance(b, Bullets),
        table=lambda b: isinstance(b, Table),
        figure=lambda b: isinstance(b, Figure),
        gallery=lambda b: isinstance(b, Gallery),
    )
    return env


def _breakable(text):
    """A column name that may wrap after its underscores (mean_class_accuracy), never inside a word."""
    from markupsafe import Markup, escape

    return Markup(str(escape(text)).replace("_", "_<wbr>"))


def render_markdown(blocks: list[Block]) -> str:
    def link(figure: Figure) -> Raw:
        return Raw(quote(Path(figure.path).as_posix(), safe="/=,+"))

    return _environment("md").get_template("report.md.j2").render(blocks=blocks, link=link)


def render_html(blocks: list[Block], title: str, root: Path) -> str:
    from markupsafe import Markup

    def data_uri(figure: Figure) -> Markup:
        data = base64.b64encode((Path(root) / figure.path).read_bytes()).decode("ascii")
        return Markup(f"data:image/png;base64,{data}")

    return _environment("html").get_template("report.html.j2").render(blocks=blocks, title=title, data_uri=data_uri)


def render_tex(blocks: list[Block], title: str, root: Path) -> str:
    def figure_file(figure: Figure) -> Path:
        """The PDF beside the PNG where adlab drew one (its own figures), else the PNG (a run's figures)."""
        pdf = Path(figure.path).with_suffix(".pdf")
        return pdf if (Path(root) / pdf).is_file() else Path(figure.path)

    def graphic(figure: Figure) -> Raw:
        # the extension is given explicitly because graphicx would otherwise take the first dot of
        # 'lr=0.01' as the start of one
        return Raw(tex_path(figure_file(figure).with_suffix("").as_posix()))

    def extension(figure: Figure) -> Raw:
        return Raw(figure_file(figure).suffix.lstrip("."))

    return (
        _environment("tex")
        .get_template("report.tex.j2")
        .render(blocks=blocks, title=title, graphic=graphic, extension=extension)
    )


_TEX_PATH_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._=+,/-")


def tex_path(path: str) -> str:
    """A file name for \\includegraphics, read by pdflatex as the very characters of `path`: letters,
    digits and non-ASCII text inside \\detokenize, every other character as \\adlabchar\\<c> (the
    template's expandable 'this character, as a character'). So a run folder named 'p%q', 'c{d' or
    'x}^^5cinput...' is a file name, never a comment, a group or a command (no \\input, no ^^ escape)."""
    parts, chunk = [], ""
    for ch in path:
        if ch in _TEX_PATH_SAFE or ord(ch) > 127:
            chunk += ch
            continue
        if chunk:
            parts.append(r"\detokenize{" + chunk + "}")
            chunk = ""
        parts.append("\\adlabchar\\" + (ch if " " <= ch <= "~" else " "))
    if chunk:
        parts.append(r"\detokenize{" + chunk + "}")
    return "".join(parts)
