"""What a study report is made of: headings, paragraphs, bullet lists, tables and figures.

The content (adlab.study.report_content) is built once as a list of blocks; the templates in
adlab/study/templates render the same list as Markdown, HTML and LaTeX, so the three say the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    level: int  # 1, 2, 3
    text: str


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list]
    bold: list[list[bool]]  # which cells hold their column's best value
    note: str = ""  # a line under the table


@dataclass
class Figure:
    path: Path  # the PNG, relative to the study folder (report.tex takes the PDF beside it when there is one)
    caption: str
    wide: bool = True  # small multiples and curves span the page; a single run's figure does not need to


@dataclass
class Gallery:
    """Figures of the same kind side by side, one per variant."""

    figures: list[Figure] = field(default_factory=list)
    caption: str = ""


Block = Heading | Paragraph | Bullets | Table | Figure | Gallery
