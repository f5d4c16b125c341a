"""The report as a reader sees it: headless Chromium renders it, every section is there and
nothing spills out of its container (``make test`` installs Debian's chromium)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgeintel.pipeline  # noqa: F401  (registers every stage's section renderer)
from edgeintel.report import plots
from edgeintel.report.browser import check_layout, find_chromium, screenshot
from edgeintel.report.figures import figure_from_matplotlib
from edgeintel.report.html import write_report

from .test_sections import tiny_results

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no chromium/chrome on PATH (install Debian's `chromium`: `make chromium`)",
)

SECTIONS = ["headline", "topology", "data", "training", "edge_training", "model", "evaluation",
            "offloading", "compression", "caching", "runtime", "run"]  # fmt: skip


def _figures() -> list:
    res = tiny_results()
    ev = res["evaluation"]
    samples = ev["latency_samples_ms"]
    return [
        figure_from_matplotlib(
            "evaluation",
            "Confusion matrix",
            plots.confusion_matrix(ev["confusion_matrix"], res["data"]["classes"]),
            "held-out",
        ),
        figure_from_matplotlib(
            "evaluation",
            "Inference latency distribution",
            plots.latency_distribution({"here": samples, "phone": [4 * v for v in samples]}, "ms"),
        ),
    ]


def test_every_section_present_and_nothing_overflows(tmp_path: Path) -> None:
    page = write_report(tmp_path / "report.html", tiny_results(), _figures())
    layout = check_layout(page)
    assert layout["sections"] == SECTIONS
    assert layout["overflow"] == [], layout["overflow"]
    assert layout["hidden"] == [], layout["hidden"]
    assert not layout["page_overflow"]


def test_layout_check_catches_a_spilling_element(tmp_path: Path) -> None:
    """The check can fail: a fixed-width block wider than the page is reported."""
    page = write_report(tmp_path / "report.html", tiny_results(), [])
    html = page.read_text().replace(
        '<section id="run" data-section="run">',
        '<section id="run" data-section="run"><div id="wide" style="width:3000px">x</div>',
    )
    page.write_text(html)
    layout = check_layout(page)
    assert any("div#wide" in o for o in layout["overflow"]), layout
    assert layout["page_overflow"]


def test_layout_check_catches_content_hidden_in_a_scroll_box(tmp_path: Path) -> None:
    """A table too wide for its scrolling wrapper hides columns: reported as hidden."""
    page = write_report(tmp_path / "report.html", tiny_results(), [])
    html = page.read_text().replace(
        '<section id="run" data-section="run">',
        '<section id="run" data-section="run"><div class="tablewrap"><table id="wide" '
        'style="width:3000px"><tr><td>x</td></tr></table></div>',
    )
    page.write_text(html)
    layout = check_layout(page)
    assert any(h.startswith("run: div.tablewrap") for h in layout["hidden"]), layout
    assert layout["overflow"] == [] and not layout["page_overflow"]


def test_narrow_window_still_fits(tmp_path: Path) -> None:
    """At 600 px (a tablet) tables wrap their cells instead of spilling out."""
    page = write_report(tmp_path / "report.html", tiny_results(), [])
    layout = check_layout(page, width=600)
    assert layout["overflow"] == [] and not layout["page_overflow"], layout


def test_screenshot_writes_a_png(tmp_path: Path) -> None:
    page = write_report(tmp_path / "report.html", tiny_results(), [])
    png = screenshot(page, tmp_path / "shot.png", width=1000, height=700)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.slow
def test_real_run_report_in_browser(tiny_scenario_file: Path, tmp_path: Path) -> None:
    """End to end: a federated tiny run's report (with its real figures) lays out cleanly."""
    from typer.testing import CliRunner

    from edgeintel.cli import app

    res = CliRunner().invoke(
        app,
        ["run", str(tiny_scenario_file), "--runs-dir", str(tmp_path), "--run-id", "r", "-q",
         "--set", "settings.training.mode=federated", "--set", "settings.training.rounds=2",
         "--set", "settings.inference.compress.enabled=false"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    layout = check_layout(tmp_path / "r" / "report.html")
    expected = [s for s in SECTIONS if s not in ("compression", "runtime")]  # neither enabled
    expected.insert(expected.index("data"), "payoff")  # what each component bought
    assert layout["sections"] == expected
    assert layout["overflow"] == [] and layout["hidden"] == [] and not layout["page_overflow"]
    assert results["status"] == "completed"


@pytest.mark.slow
def test_a_page_taller_than_chromium_renders_is_shot_whole(tmp_path: Path) -> None:
    """The whole page, not the first 20,000 px: tiles of the shifted page, stacked, each
    row where it belongs (bands of 5,000 px in known colours, 45,000 px in all)."""
    from PIL import Image

    from edgeintel.report.browser import TILE_PX

    def colour(i: int) -> tuple[int, int, int]:
        return (i * 40 % 256, i * 90 % 256, (255 - i * 30) % 256)

    bands = "".join(
        f'<div style="height:5000px;background:rgb{colour(i)}"></div>' for i in range(9)
    )
    page = tmp_path / "tall.html"
    page.write_text(
        "<!doctype html><html><head><style>body{margin:0}</style></head>"
        f"<body>{bands}</body></html>"
    )
    png = screenshot(page, tmp_path / "tall.png", width=300)
    with Image.open(png) as im:
        assert im.size[0] == 300 and im.size[1] >= 45_000 > TILE_PX * 2
        rgb = im.convert("RGB")
        for y in (10, 4_990, 19_990, TILE_PX + 10, 39_990, 40_010, 44_990):
            assert rgb.getpixel((150, y)) == colour(y // 5000), y
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tall.html", "tall.png"]
