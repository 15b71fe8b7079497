"""The HTML report opened in a real headless Chromium: tables and figures are really shown."""

import re
import shutil
import subprocess

import pytest

from adlab.study.report import Figure, Heading, Table, render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=5000", "--dump-dom"]

PROBE = """<script>
window.addEventListener('load', () => {
  const shown = [...document.images].filter(i => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0);
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
    proc = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="probe">([^<]*)</pre>', proc.stdout)
    assert match, proc.stderr[-1500:]
    return match.group(1)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make setup installs it as root)")
def test_report_tables_and_figures_are_shown(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name in ("a.png", "b.png"):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1], [1, 0])
        fig.savefig(tmp_path / name)
        plt.close(fig)
    blocks = [Heading(1, "Study <x>"), Table(["run", "accuracy"], [["a", 0.9], ["b", 0.8]], [[False, True], [False, False]]),
              Figure("a.png", "first"), Table(["k"], [["v"]], [[False]]), Figure("b.png", "second <b>")]
    probe = rendered(render_html(blocks, "t", tmp_path), tmp_path)
    assert probe == "images=2 of 2 tables=2 cells=5"
