"""The one way a number is written for people (study report cells, `adlab table`, the run summary
line), and the one escaper of user text for each output format (Markdown, LaTeX, matplotlib)."""

from __future__ import annotations

import numbers
import re
from typing import cast


def format_number(value, key: str = "") -> str:
    """`value` as text: None as '-'; a fractional number (Python or NumPy float) with 4 decimals,
    or 1 decimal when it is 100 or more in size or `key` (its metric or column name) ends in
    'seconds' (timings: a tenth of a second is plenty); anything else (ints, text) as str() writes it."""
    if value is None:
        return "-"
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        # typeshed's numbers.Real.__abs__ returns a protocol without comparisons; it is a real number
        if key.endswith("seconds") or not cast(float, abs(value)) < 100:
            return f"{value:.1f}"
        return f"{value:.4f}"
    return str(value)


def clock(seconds: float) -> str:
    """A duration as people read it on a progress line: 0m09s, 12m30s, 2h05m."""
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


# --- user text in each output format ----------------------------------------------------------------
# Every string a user or a run file chose (run, variant, class and section names, a reference's
# source) passes through the one escaper of the format it is written in: a name is shown as written,
# never read as markup, and never breaks the document.


class Raw(str):
    """Text already in the output's own syntax (a figure link, a LaTeX graphic path): printed as it is."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def one_line(value) -> str:
    """`value` as text on one line: line breaks, tabs and other control characters become one space."""
    return _CONTROL.sub(" ", str(value))


def md_escape(value) -> str:
    """Text that GitHub's Markdown shows as written, on one line: table pipes, emphasis stars and
    underscores (at a word's edge; mean_class_accuracy stays), backticks, backslashes, a pair of
    strike-through tildes, entities (&copy;), '](' that would make a link, '<' only where it would open an HTML tag or
    an autolink, and a block marker at the start ('# ', '> ', '- ', '1. ', '---', a link definition
    '[x]: ...'). 'p < 0.05' and '[0.91, 0.95]' stay as they are."""
    if isinstance(value, Raw):
        return str(value)
    text = re.sub(r"([\\|*`])", r"\\\1", one_line(value)).replace("](", "]\\(")
    if text.count("~") > 1:  # a pair strikes through ('~2' alone stays)
        text = text.replace("~", "\\~")
    text = re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)
    text = re.sub(r"&(?=#?[A-Za-z0-9]+;)", r"\\&", text)
    text = re.sub(r"<(?=[A-Za-z/!?])", r"\\<", text)
    lead = re.match(r"\s*(?:[#>]|[-+](?=\s)|-(?=(?:\s*-){2,}\s*$)|\[(?=[^\]]*\]:)|\d{1,9}(?=[.)](?:\s|$)))", text)
    if lead:  # escape the marker, or the '.' or ')' after a number
        at = lead.end() if lead.group().endswith(tuple("0123456789")) else lead.end() - 1
        text = text[:at] + "\\" + text[at:]
    return text


# Characters pdflatex sets with report.tex's default fonts (OT1, utf8 input): printable ASCII, and the
# Latin-1 and Latin Extended-A letters it has glyphs or accents for (checked letter by letter with
# TeX Live 2023: the others stop the compilation with 'not set up for use with LaTeX' or 'unavailable
# in encoding OT1'). Any other character is written as a visible box with its code point.
_TEX_RANGES = [
    (0x20, 0x7E),
    (0xA0, 0xAA),
    (0xAC, 0xBA),
    (0xBC, 0xCF),
    (0xD1, 0xDD),
    (0xDF, 0xEF),
    (0xF1, 0xFD),
    (0xFF, 0x103),
    (0x106, 0x10F),
    (0x112, 0x117),
    (0x11A, 0x125),
    (0x128, 0x12D),
    (0x130, 0x137),
    (0x139, 0x13E),
    (0x141, 0x148),
    (0x14C, 0x165),
    (0x168, 0x171),
    (0x174, 0x17E),
    (0x2018, 0x2019),
    (0x201C, 0x201D),
    (0x2020, 0x2022),
    (0x2026, 0x2026),
    (0x2030, 0x2030),
    (0x20AC, 0x20AC),
]
TEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "[": "{[}",
    "]": "{]}",
    "±": r"$\pm$",
    "×": r"$\times$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "→": r"$\rightarrow$",
    "–": "--",
    "—": "---",
    "'": "'",
}


def _tex_char(ch: str) -> str:
    special = TEX_SPECIALS.get(ch)
    if special is not None:
        return special
    code = ord(ch)
    if any(low <= code <= high for low, high in _TEX_RANGES):
        return ch
    if code < 0x20 or code == 0x7F or ch in "\u2028\u2029":
        return " "
    return rf"\fbox{{\scriptsize U+{code:04X}}}"


def tex_escape(value) -> str:
    """Text that pdflatex sets as written: its special characters as commands ('\\input' from a user
    is printed, never run), brackets braced (no optional argument after \\item or \\\\), line breaks
    as spaces, and a character the fonts lack as a box with its code point (a Hebrew or emoji title
    compiles)."""
    if isinstance(value, Raw):
        return str(value)
    return "".join(_tex_char(ch) for ch in str(value))


def figure_text(value) -> str:
    """Text that matplotlib draws as written: '$' escaped, so 'f$^$' never starts mathtext (which
    would fail, or set the name as a formula)."""
    return str(value).replace("$", r"\$")


def plural(count: int, noun: str) -> str:
    """'1 finished run', '2 finished runs': a count and its noun that agree."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
