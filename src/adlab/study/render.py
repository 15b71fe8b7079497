"""The report's blocks rendered through jinja2 templates (adlab/study/templates): report.md for
GitHub, one self-contained report.html, and report.tex for students' LaTeX reports.

Every value a template prints is escaped for its format: HTML by jinja2's autoescaping, Markdown
and LaTeX by the environment's `finalize` hook, which jinja2 applies to every `{{ }}` output. What
must pass unescaped (an image's data URI, a figure path) is wrapped in `Raw` (or markupsafe's
Markup for HTML).
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from adlab.study.blocks import Block, Bullets, Figure, Gallery, Heading, Paragraph, Table


class Raw(str):
    """A template value printed as it is (already in the output's syntax)."""


def cell(value, column: str = "") -> str:
    from adlab.formatting import format_number  # the one number format (also adlab table, run summaries)

    return format_number(value, column)


# --- escaping --------------------------------------------------------------------------------------

def md_escape(value) -> str:
    """Text that GitHub's Markdown shows as written: table pipes, emphasis stars, backticks and
    backslashes escaped, '](' that would make a link, and '<' only where it would open an HTML tag
    ('p < 0.05' and '[0.91, 0.95]' stay as they are)."""
    if isinstance(value, Raw):
        return str(value)
    text = re.sub(r"([\\|*`])", r"\\\1", str(value)).replace("](", "]\\(")
    return re.sub(r"<(?=[A-Za-z/!?])", r"\\<", text)


TEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "<": r"\textless{}", ">": r"\textgreater{}", "±": r"$\pm$", "×": r"$\times$", "≥": r"$\geq$",
                "≤": r"$\leq$", "→": r"$\rightarrow$", "–": "--", "—": "---", "'": "'"}


def tex_escape(value) -> str:
    if isinstance(value, Raw):
        return str(value)
    return "".join(TEX_SPECIALS.get(ch, ch) for ch in str(value))


# --- environments ----------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _environment(kind: str):
    from jinja2 import Environment, PackageLoader, StrictUndefined

    options = dict(loader=PackageLoader("adlab.study", "templates"), undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    if kind == "html":
        env = Environment(autoescape=True, **options)
    elif kind == "md":
        env = Environment(autoescape=False, finalize=md_escape, **options)
    else:  # LaTeX: delimiters that do not clash with its braces
        env = Environment(autoescape=False, finalize=tex_escape, block_start_string="((*", block_end_string="*))",
                          variable_start_string="(((", variable_end_string=")))", comment_start_string="((=",
                          comment_end_string="=))", line_comment_prefix="%#", **options)
    env.filters["cell"] = cell
    env.filters["breakable"] = _breakable
    env.tests.update(heading=lambda b: isinstance(b, Heading), paragraph=lambda b: isinstance(b, Paragraph),
                     bullets=lambda b: isinstance(b, Bullets), table=lambda b: isinstance(b, Table),
                     figure=lambda b: isinstance(b, Figure), gallery=lambda b: isinstance(b, Gallery))
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
        # \detokenize keeps '_' and '=' of run folder names literal; the extension is given explicitly
        # because graphicx would otherwise take the first dot of 'lr=0.01' as the start of one
        return Raw(r"\detokenize{" + figure_file(figure).with_suffix("").as_posix() + "}")

    def extension(figure: Figure) -> Raw:
        return Raw(figure_file(figure).suffix.lstrip("."))

    return _environment("tex").get_template("report.tex.j2").render(blocks=blocks, title=title, graphic=graphic,
                                                                    extension=extension)
