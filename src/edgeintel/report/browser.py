"""Look at a report the way a reader does: headless Chromium checks the layout and takes
screenshots (Debian's ``chromium`` package; ``make test`` installs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from edgeintel.errors import EdgeIntelError

__all__ = [
    "LAYOUT_SCRIPT",
    "MAX_SCREENSHOT_PX",
    "TILE_PX",
    "check_layout",
    "find_chromium",
    "screenshot",
]

#: The tallest window headless Chromium renders in one shot (px): a taller one comes out
#: blank or fails, so a longer page is shot in tiles of this height and stacked.
TILE_PX = 20000
#: The tallest screenshot taken (px; 200,000 x 1280 px is ~770 MB of RGB while stacking).
MAX_SCREENSHOT_PX = 200_000

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: Runs in the page: lists the sections and every element whose box spills out of its
#: section (or the page) without a scrolling/clipping ancestor, and every scroll box that
#: hides part of its content (a table too wide for the page).
LAYOUT_SCRIPT = """
<script>
(function () {
  function clips(el) {
    const o = getComputedStyle(el).overflowX;
    return o === 'auto' || o === 'scroll' || o === 'hidden' || o === 'clip';
  }
  function describe(el) {
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    if (el.className && typeof el.className === 'string') s += '.' + el.className.split(' ')[0];
    const t = (el.textContent || '').trim().slice(0, 40);
    return s + (t ? ' "' + t + '"' : '');
  }
  const out = {sections: [], overflow: [], hidden: [], page_overflow: false,
               width: document.documentElement.clientWidth,
               height: document.documentElement.scrollHeight};
  const doc = document.documentElement;
  out.page_overflow = doc.scrollWidth > doc.clientWidth + 1;
  document.querySelectorAll('details').forEach(d => d.open = true);
  document.querySelectorAll('[data-section]').forEach(sec => {
    out.sections.push(sec.getAttribute('data-section'));
    const box = sec.getBoundingClientRect();
    sec.querySelectorAll('*').forEach(el => {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) return;
      if (clips(el) && el.scrollWidth > el.clientWidth + 1) {
        out.hidden.push(sec.getAttribute('data-section') + ': ' + describe(el) +
                        ' (' + el.scrollWidth + ' > ' + el.clientWidth + ' px)');
      }
      if (r.right > box.right + 1 || r.left < box.left - 1) {
        for (let a = el.parentElement; a && a !== sec; a = a.parentElement) {
          if (clips(a)) return;
        }
        out.overflow.push(sec.getAttribute('data-section') + ': ' + describe(el) +
                          ' (right ' + Math.round(r.right) + ' > ' + Math.round(box.right) + ')');
      }
    });
  });
  const pre = document.createElement('pre');
  pre.id = 'layout-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable (``$CHROMIUM`` first), or None."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    exe = find_chromium()
    if exe is None:
        raise EdgeIntelError("chromium not found; install Debian's `chromium` package")
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-dev-shm-usage", "--mute-audio"]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgeintel-chromium-") as profile:
        return subprocess.run(
            [*base, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


def check_layout(html_path: str | Path, width: int = 1280, timeout_s: float = 60) -> dict[str, Any]:
    """Render ``html_path`` at ``width`` px with every <details> open and report the layout.

    Returns ``sections`` (the ``data-section`` names in page order), ``overflow``
    (elements spilling out of their section), ``hidden`` (scroll boxes hiding
    content), ``page_overflow`` (a horizontal page scrollbar) and ``height`` (px).
    """
    src = Path(html_path)
    text = src.read_text(encoding="utf-8")
    probe = src.with_name(src.stem + ".layout-check.html")
    probe.write_text(text.replace("</body>", LAYOUT_SCRIPT + "</body>"), encoding="utf-8")
    try:
        proc = _run(
            [f"--window-size={width},900", "--virtual-time-budget=3000", "--dump-dom",
             probe.resolve().as_uri()],
            timeout_s,
        )  # fmt: skip
    finally:
        probe.unlink(missing_ok=True)
    start = proc.stdout.find('<pre id="layout-check">')
    if start < 0:
        raise EdgeIntelError(f"chromium did not run the layout check: {proc.stderr[-300:]}")
    body = proc.stdout[start + len('<pre id="layout-check">') :]
    import html

    return json.loads(html.unescape(body[: body.find("</pre>")]))


def _tile_page(text: str, top: int) -> str:
    """The page with every <details> open (as ``check_layout`` measures it) and shifted up
    by ``top`` px, so that a window's first row is the page's row ``top``."""
    shift = f"<style>html{{overflow:hidden}}body{{transform:translateY(-{top}px)}}</style>"
    opener = "<script>document.querySelectorAll('details').forEach(d => d.open = true)</script>"
    return text.replace("</head>", shift + "</head>", 1).replace("</body>", opener + "</body>", 1)


def _shoot(page: Path, png: Path, width: int, height: int, timeout_s: float) -> None:
    proc = _run(
        [f"--window-size={width},{height}", "--virtual-time-budget=2000",
         f"--screenshot={png.resolve()}", page.resolve().as_uri()],
        timeout_s,
    )  # fmt: skip
    if not png.exists():
        raise EdgeIntelError(f"chromium wrote no screenshot: {proc.stderr[-300:]}")


def screenshot(
    html_path: str | Path,
    png_path: str | Path,
    width: int = 1280,
    height: int | None = None,
    timeout_s: float = 60,
) -> Path:
    """PNG of the page at ``width`` px with every <details> open; ``height`` None = the
    whole page (up to ``MAX_SCREENSHOT_PX``). A picture taller than Chromium renders at once
    (``TILE_PX``) is shot in tiles of the page shifted up, stacked with Pillow."""
    if height is not None and not 1 <= height <= MAX_SCREENSHOT_PX:
        raise EdgeIntelError(f"--height: expected 1..{MAX_SCREENSHOT_PX} px, got {height}")
    if height is None:
        page = int(check_layout(html_path, width, timeout_s)["height"]) + 20
        height = min(page, MAX_SCREENSHOT_PX)
    src = Path(html_path)
    out = Path(png_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = src.read_text(encoding="utf-8")
    tops = list(range(0, height, TILE_PX))
    with tempfile.TemporaryDirectory(prefix="edgeintel-shot-") as tmp:
        shots = []
        for i, top in enumerate(tops):
            probe = src.with_name(f"{src.stem}.shot-{i}.html")  # beside it: relative links
            probe.write_text(_tile_page(text, top), encoding="utf-8")
            png = out if len(tops) == 1 else Path(tmp) / f"{i}.png"
            try:
                _shoot(probe, png, width, min(TILE_PX, height - top), timeout_s)
            finally:
                probe.unlink(missing_ok=True)
            shots.append(png)
        if len(shots) > 1:
            from PIL import Image

            sheet = Image.new("RGB", (width, height), "white")
            for top, png in zip(tops, shots, strict=True):
                with Image.open(png) as tile:
                    sheet.paste(tile.convert("RGB"), (0, top))
            sheet.save(out)
    return out
