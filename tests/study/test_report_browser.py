"""The HTML report opened in a real headless Chromium: tables and figures are really shown."""

import re
import subprocess

import numpy as np
import pytest

from adlab.study.report import Figure, Heading, Table, render_html
from checks import chromium_command

CHROMIUM = chromium_command(5000)

PROBE = """<script>
window.addEventListener('load', () => {
  const shown = [...document.images].filter(i => i.complete && i.naturalWidth > 0 &&
                                                 i.getBoundingClientRect().width > 0);
  const tables = [...document.querySelectorAll('table')].filter(t => t.getBoundingClientRect().height > 0);
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = 'images=' + shown.length + ' of ' + document.images.length + ' tables=' + tables.length +
                    ' cells=' + document.querySelectorAll('td').length;
  document.body.appendChild(pre);
});
</script>"""


def rendered(html_text: str, tmp_path) -> str:
    page = tmp_path / "page.html"
    page.write_text(html_text.replace("</body>", PROBE + "</body>"))
    profile = tmp_path / "profile"
    proc = subprocess.run(
        [*CHROMIUM, f"--user-data-dir={profile}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'<pre id="probe">([^<]*)</pre>', proc.stdout)
    assert match, proc.stderr[-1500:]
    return match.group(1)


@pytest.mark.requires("chromium")
def test_report_tables_and_figures_are_shown(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name in ("a.png", "b.png"):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1], [1, 0])
        fig.savefig(tmp_path / name)
        plt.close(fig)
    blocks = [
        Heading(1, "Study <x>"),
        Table(["run", "accuracy"], [["a", 0.9], ["b", 0.8]], [[False, True], [False, False]]),
        Figure("a.png", "first"),
        Table(["k"], [["v"]], [[False]]),
        Figure("b.png", "second <b>"),
    ]
    probe = rendered(render_html(blocks, "t", tmp_path), tmp_path)
    assert probe == "images=2 of 2 tables=2 cells=5"


LAYOUT_PROBE = """<script>
window.addEventListener('load', () => {
  const body = document.body.getBoundingClientRect();
  const images = [...document.images];
  const gallery = [...document.querySelectorAll('.gallery img')].map(i => i.getBoundingClientRect());
  const facts = {
    page_scrolls_sideways: document.documentElement.scrollWidth > window.innerWidth,
    first_h2: document.querySelector('h2').textContent,
    summary_items: document.querySelectorAll('ul.summary li').length,
    images_shown: images.filter(i => i.complete && i.naturalWidth > 0).length,
    images: images.length,
    images_inside_body: images.every(i => i.getBoundingClientRect().right <= body.right + 1),
    tables_inside_body: [...document.querySelectorAll('.table-wrap')].every(
      t => t.getBoundingClientRect().right <= body.right + 1),
    bold_cells: document.querySelectorAll('td strong').length,
    gallery_rows: new Set(gallery.map(r => Math.round(r.top))).size,
    gallery_images: gallery.length,
  };
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(facts);
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.requires("chromium")
@pytest.mark.parametrize("width", [1280, 760])
def test_report_layout_in_a_browser(tmp_path, width):
    """A real study report at a laptop's and at a narrow window's width: the summary comes first,
    nothing makes the page scroll sideways (wide tables scroll inside their own box), every figure
    is shown within the page, and a gallery puts its figures side by side."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from handmade_study import make_study_folder

    from adlab.study.blocks import Gallery
    from adlab.study.report import collect
    from adlab.study.report_content import build_blocks
    from adlab.study.spec import load_study

    out = make_study_folder(tmp_path)
    study = load_study(out.parent / "study.yaml")
    blocks = build_blocks(out, study, collect(out, study))
    shots = []
    for i in range(4):  # a run's own figures, one per variant, as the autoencoder and detection sections show them
        fig, ax = plt.subplots(figsize=(3, 3))
        ax.imshow(np.random.default_rng(i).random((8, 8)))
        fig.savefig(out / f"shot{i}.png")
        plt.close(fig)
        shots.append(Figure(f"shot{i}.png", f"variant {i}", wide=False))
    blocks.append(Gallery(shots, "reconstructions"))
    page = tmp_path / "page.html"
    page.write_text(render_html(blocks, study.name, out).replace("</body>", LAYOUT_PROBE + "</body>"))
    proc = subprocess.run(
        [*CHROMIUM, f"--window-size={width},900", f"--user-data-dir={tmp_path / 'p'}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'<pre id="probe">([^<]*)</pre>', proc.stdout)
    assert match, proc.stderr[-1500:]
    facts = json.loads(match.group(1).replace("&quot;", '"'))
    assert facts["first_h2"] == "Summary" and facts["summary_items"] >= 3
    assert not facts["page_scrolls_sideways"]
    assert facts["images_shown"] == facts["images"] >= 8 and facts["images_inside_body"] and facts["tables_inside_body"]
    assert facts["bold_cells"] >= 3
    assert facts["gallery_images"] == 4
    assert facts["gallery_rows"] == (1 if width >= 1200 else 2)  # four across on a laptop, two by two when narrow


HOSTILE_PROBE = """<script>
window.addEventListener('load', () => {
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({ran: window.pwned === 1, scripts: document.scripts.length,
    imgs: document.images.length, h1: document.querySelector('h1').textContent,
    cell: [...document.querySelectorAll('td')].pop().textContent});
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.requires("chromium")
def test_hostile_names_are_shown_as_text_by_chromium_and_run_nothing(tmp_path):
    """Section titles, reference text and cells are user strings: in a real browser they are text,
    never markup that runs (issue 28: report.html escaped as rendered by Chromium)."""
    import json

    attack = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
    blocks = [Heading(1, attack), Table(["run", "note"], [["a", attack]], [[False, False]])]
    page = tmp_path / "page.html"
    page.write_text(render_html(blocks, attack, tmp_path).replace("</body>", HOSTILE_PROBE + "</body>"))
    proc = subprocess.run(
        [*CHROMIUM, f"--user-data-dir={tmp_path / 'profile'}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'<pre id="probe">([^<]*)</pre>', proc.stdout)
    assert match, proc.stderr[-1500:]
    seen = json.loads(
        match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )
    assert seen["ran"] is False and seen["imgs"] == 0
    assert seen["scripts"] == 1  # the probe itself
    assert seen["h1"] == attack and seen["cell"] == attack
