"""The built documentation as a browser shows it: no broken image, no missing gallery figure.

The slow test builds the docs with the command of ``make docs`` (the session
fixture ``docs_html`` of conftest.py), then opens the home page, a gallery
page and the PTB-XL results page in headless Chromium (Debian's ``chromium``
package; installed with apt-get when missing and possible, else the test
skips and says why).  Two checks per page, both needed:

* :func:`static_image_problems` reads a page's HTML and checks that every
  ``<img src>`` (and every ``srcset`` entry) points at an existing, non-empty
  file that Pillow can decode (SVG files: parsed as XML);
* :func:`rendered_image_problems` opens the page in headless Chromium with a
  small script appended that waits until every image has loaded or failed, then records
  every ``<img>`` whose ``naturalWidth`` is 0 (not loaded, or not decodable by
  the browser), dumping the DOM so that the result can be read back.

The unit tests feed both checks a deliberately broken page, to prove that
they fail when they should.
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
RESULT_ID = "ecgsoup-image-check"

# Appended before </body>: once every <img> has loaded or failed, write the list of
# images that did not decode into a <div> that the dumped DOM carries.
_CHECK_SCRIPT = """
<script>
(function () {
  var images = Array.prototype.slice.call(document.images);
  function settled(img) {
    return new Promise(function (resolve) {
      if (img.complete) { resolve(); return; }
      img.addEventListener("load", resolve);
      img.addEventListener("error", resolve);
    });
  }
  Promise.all(images.map(settled)).then(function () {
    var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); })
                       .map(function (img) { return img.getAttribute("src"); });
    var out = document.createElement("div");
    out.id = "%s";
    out.textContent = JSON.stringify({n_images: images.length, broken: broken,
                                      srcs: images.map(function (img) { return img.getAttribute("src"); })});
    document.body.appendChild(out);
  });
})();
</script>
""" % RESULT_ID  # noqa: UP031 (the script's braces would all need doubling for format())


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) executable on PATH, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium(timeout: float = 900) -> tuple[str | None, str]:
    """``(path, note)``: Chromium, installed with apt-get (as root) when missing.

    Debian's ``chromium`` package is what ``make docs-browser`` installs.  When
    it cannot be installed (not root, no apt-get, no package index), returns
    ``(None, reason)``.
    """
    found = find_chromium()
    if found:
        return found, "found on PATH"
    apt = shutil.which("apt-get")
    if apt is None:
        return None, "chromium is not installed and there is no apt-get to install it"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return None, "chromium is not installed (install it with `sudo apt-get install -y chromium`)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = []
    for command in ([apt, "install", "-y", "--no-install-recommends", "chromium"], [apt, "update"],
                    [apt, "install", "-y", "--no-install-recommends", "chromium"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        log.append(f"$ {' '.join(command)} -> {result.returncode}: {result.stderr.strip()[-300:]}")
        if command[-1] == "chromium" and result.returncode == 0 and find_chromium():
            return find_chromium(), "installed with apt-get"
    return None, "chromium could not be installed with apt-get:\n" + "\n".join(log)


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))


def image_sources(page: Path) -> list[str]:
    """Every image URL of a page: each ``<img>``'s ``src`` and its ``srcset`` entries."""
    parser = _Images()
    parser.feed(page.read_text(encoding="utf-8"))
    sources = []
    for attrs in parser.images:
        sources.append(attrs.get("src") or "")
        for entry in (attrs.get("srcset") or "").split(","):
            if entry.strip():
                sources.append(entry.strip().split()[0])
    return sources


def _decodes(path: Path) -> str | None:
    """None when ``path`` is a decodable image, else what is wrong with it."""
    if path.suffix.lower() == ".svg":
        import xml.etree.ElementTree as ElementTree

        try:
            root = ElementTree.parse(path).getroot()
        except ElementTree.ParseError as error:
            return f"not a valid SVG ({error})"
        return None if root.tag.endswith("svg") else "not an SVG document"
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.width == 0 or image.height == 0:
                return "an image of size 0"
    except Exception as error:  # Pillow raises many kinds
        return f"not a decodable image ({type(error).__name__}: {error})"
    return None


def static_image_problems(page: Path) -> list[str]:
    """Problems with the local images a page links: missing, empty or undecodable files.

    Remote (``http:``/``https:``) and inline (``data:``) images are not
    checked here; the rendered check covers them.
    """
    problems = []
    for src in image_sources(page):
        if not src:
            problems.append("<img> without a src")
            continue
        url = urlparse(src)
        if url.scheme in ("http", "https", "data"):
            continue
        target = (page.parent / unquote(url.path)).resolve()
        if not target.is_file():
            problems.append(f"{src}: no such file ({target})")
        elif target.stat().st_size == 0:
            problems.append(f"{src}: empty file")
        else:
            wrong = _decodes(target)
            if wrong:
                problems.append(f"{src}: {wrong}")
    return problems


def render(page: Path, chromium: str, *, width: int = 1280, height: int = 900,
           budget_ms: int = 10000, timeout: float = 120) -> str:
    """The DOM of ``page`` after headless Chromium loaded it (``--dump-dom``)."""
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--hide-scrollbars", "--allow-file-access-from-files",
        "--run-all-compositor-stages-before-draw", f"--virtual-time-budget={budget_ms}",
        f"--window-size={width},{height}", "--dump-dom", page.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0 or "<html" not in result.stdout.lower():
        raise RuntimeError(
            f"chromium failed on {page} (exit {result.returncode}):\n{result.stderr[-2000:]}"
        )
    return result.stdout


def rendered_image_problems(page: Path, chromium: str, **render_options) -> tuple[list[str], dict]:
    """``(problems, result)``: the images Chromium could not show on ``page``.

    A copy of the page with the check script (and with lazy loading turned
    off, so images below the fold load too) is written beside it, rendered,
    and removed.  ``result`` holds ``n_images``, ``broken`` and ``srcs``.
    """
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"""\sloading=(["'])lazy\1""", "", text)
    if "</body>" not in text:
        raise ValueError(f"{page} has no </body>")
    probe = page.with_name(f".{page.stem}.image-check.html")
    probe.write_text(text.replace("</body>", _CHECK_SCRIPT + "</body>", 1), encoding="utf-8")
    try:
        dom = render(probe, chromium, **render_options)
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(rf'<div[^>]*\bid="{RESULT_ID}"[^>]*>(.*?)</div>', dom, re.DOTALL)
    if found is None:
        return [f"{page.name}: the image check did not finish (images still loading when the time budget ran out)"], {}
    result = json.loads(html.unescape(found.group(1)))
    return [f"{src}: not shown by the browser (naturalWidth 0)" for src in result["broken"]], result


# --- the tests --------------------------------------------------------------------------------

# Page -> the figures it must show (file-name prefixes under _images/): a gallery page
# whose example stopped drawing, or a results page whose figure went missing, fails.
PAGES = {
    "index.html": (),
    "auto_examples/plot_02_layer_grid_search.html": ("sphx_glr_plot_02_layer_grid_search_001",),
    "auto_examples/plot_01_files_to_score.html": ("sphx_glr_plot_01_files_to_score_001",
                                                  "sphx_glr_plot_01_files_to_score_002"),
    "results/ptbxl.html": ("ptbxl_super", "ptbxl_all"),
}


@pytest.fixture(scope="module")
def chromium():
    path, note = ensure_chromium()
    if path is None:
        pytest.skip(f"no headless browser: {note}")
    return path


def _png(path: Path, size=(4, 3)):
    from PIL import Image

    Image.new("RGB", size, (200, 30, 30)).save(path)


@pytest.fixture
def broken_site(tmp_path):
    """A page with one good image and three broken ones (missing, empty, not an image)."""
    (tmp_path / "img").mkdir()
    _png(tmp_path / "img" / "good.png")
    (tmp_path / "img" / "empty.png").write_bytes(b"")
    (tmp_path / "img" / "garbage.png").write_bytes(b"this is not a PNG file at all")
    page = tmp_path / "page.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>t</title></head><body>"
        '<p>text</p><img src="img/good.png" alt="good">'
        '<img src="img/missing.png" alt="missing">'
        '<img src="img/empty.png" alt="empty" loading="lazy">'
        '<img src="img/garbage.png" alt="garbage">'
        '<div style="height: 3000px"></div><img src="img/good.png" loading="lazy" alt="below the fold">'
        "</body></html>",
        encoding="utf-8",
    )
    return page


def test_static_check_flags_missing_empty_and_undecodable_images(broken_site):
    problems = static_image_problems(broken_site)
    assert len(problems) == 3, problems
    assert any("missing.png: no such file" in p for p in problems)
    assert any("empty.png: empty file" in p for p in problems)
    assert any("garbage.png: not a decodable image" in p for p in problems)
    assert not any("good.png" in p for p in problems)


def test_browser_check_flags_images_that_do_not_render(broken_site, chromium):
    problems, result = rendered_image_problems(broken_site, chromium)
    assert result["n_images"] == 5
    assert sorted(result["broken"]) == ["img/empty.png", "img/garbage.png", "img/missing.png"], problems
    assert not broken_site.with_name(".page.image-check.html").exists()  # the probe copy is removed


def test_browser_check_passes_a_clean_page(tmp_path, chromium):
    _png(tmp_path / "a.png")
    page = tmp_path / "clean.html"
    page.write_text('<html><body><img src="a.png" alt="a"></body></html>', encoding="utf-8")
    assert static_image_problems(page) == []
    problems, result = rendered_image_problems(page, chromium)
    assert problems == [] and result["n_images"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PAGES))
def test_built_pages_show_every_image(docs_html, chromium, name):
    page = docs_html / name
    assert page.is_file(), f"{name} was not built"
    sources = image_sources(page)
    for figure in PAGES[name]:
        assert any(Path(unquote(urlparse(src).path)).name.startswith(figure) for src in sources), (
            f"{name} does not show the figure {figure}*: the example or benchmark that draws it "
            f"did not produce it (images on the page: {sources})"
        )
    problems = static_image_problems(page)
    assert not problems, f"{name}: broken images in the HTML:\n" + "\n".join(problems)
    rendered, result = rendered_image_problems(page, chromium)
    assert not rendered, f"{name}: images the browser could not show:\n" + "\n".join(rendered)
    assert result["n_images"] >= len(PAGES[name])


@pytest.mark.slow
def test_gallery_has_every_example_with_its_figures(docs_html):
    examples = sorted((Path(__file__).resolve().parents[1] / "docs" / "examples").glob("plot_*.py"))
    assert examples, "the gallery has no examples"
    index = (docs_html / "auto_examples" / "index.html").read_text(encoding="utf-8")
    for example in examples:
        built = docs_html / "auto_examples" / f"{example.stem}.html"
        assert built.is_file(), f"{example.name} has no gallery page"
        assert f"{example.stem}.html" in index, f"the gallery index does not link {example.name}"
        text = built.read_text(encoding="utf-8")
        draws = "plt.subplots" in example.read_text(encoding="utf-8")
        figures = [s for s in image_sources(built) if "sphx_glr_" + example.stem in s]
        assert figures or not draws, f"{example.name} draws figures but its page shows none"
        assert "Traceback (most recent call last)" not in text, f"{example.name} printed a traceback"
