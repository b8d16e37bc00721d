"""The newest HTML experiment record renders in a real browser (headless Chromium): the
claim table is there, every image decodes, no script error. Runs after a suite run:
`pytest -m browser` (the README's test command does both)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPORTS = Path(__file__).resolve().parents[2] / "reports"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")]

# Runs in the page once it has loaded; the result is written into the DOM for --dump-dom.
CHECK = """
<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message)));
window.addEventListener('load', () => setTimeout(() => {
  // pytest-html keeps an empty <img src=""> in every result row for its media viewer; those
  // show nothing and are hidden, so only images with a source are checked.
  const imgs = [...document.querySelectorAll('img')].filter(i => i.getAttribute('src'));
  const out = {
    claims_rows: document.querySelectorAll('#claims-table tr.claim-row').length,
    findings: document.querySelectorAll('#findings li').length,
    matrix_rows: document.querySelectorAll('#verdict-matrix tr').length,
    images: imgs.length,
    plots: document.querySelectorAll('#experiment-record img.plot').length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    results_rows: document.querySelectorAll('#results-table tbody').length,
    errors: window.__errors,
  };
  const pre = document.createElement('pre'); pre.id = 'browser-check';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
}, 1500));
</script>
"""


def newest_report() -> Path:
    """The newest complete record: latest-cpu.html (a run that stopped early never replaces it),
    with the JSON record it was written from beside it."""
    latest = REPORTS / "latest-cpu.html"
    for path in (latest, latest.with_suffix(".json")):
        if not path.exists():
            pytest.fail(f"no complete experiment record at {path}: run the suite first")
    return latest


def run_chromium(*args, timeout=120):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--user-data-dir=/tmp/latent-city-chromium", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_newest_record_renders_with_claims_and_images(tmp_path):
    report = newest_report()
    page = tmp_path / "report.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</head>", CHECK + "</head>", 1), encoding="utf-8")
    dom = run_chromium("--virtual-time-budget=10000", "--dump-dom", page.as_uri()).stdout
    start = dom.find('<pre id="browser-check">')
    assert start >= 0, f"the page did not finish loading in Chromium: {dom[:500]}"
    check = json.loads(dom[start:].split(">", 1)[1].split("</pre>", 1)[0].replace("&quot;", '"'))
    claims = json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))["claims"]
    assert check["claims_rows"] == len(claims), (f"the page shows {check['claims_rows']} claim rows, its JSON "
                                                 f"record has {len(claims)} claims: {check}")
    assert check["findings"] >= 4 and check["matrix_rows"] >= 10, check
    assert check["plots"] >= 4 and not check["broken"], check
    assert check["results_rows"] > 0 and not check["errors"], check
    shot = REPORTS / "latest-cpu-screenshot.png"
    run_chromium("--window-size=1400,2200", f"--screenshot={shot}", report.as_uri())
    assert shot.exists() and shot.stat().st_size > 10_000
