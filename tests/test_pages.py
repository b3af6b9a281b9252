"""The leaderboard page and a run's report.html in headless Chromium: a screenshot, and every text inside its box.

The layout probe (mema.leaderboard.browser.LAYOUT_JS) runs in the page after the page's own script and
measures where the browser put each text: HTML text must lie inside its (block) box and not be clipped,
SVG text inside its SVG, and no two SVG texts (plot labels, ticks, axis titles) may overlap. The pages are
rendered from synthetic results (tests/board_fixtures.py) whose points crowd like the real board's, and the
committed board page is checked as it is.
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from mema.corpus.schema import DISEASES
from mema.evaluation.report import write_report
from mema.imageio import write_png
from mema.leaderboard.board import BOARD_DIR
from mema.leaderboard.browser import WINDOW, check_page, find_browser, layout_problems, measure_layout, screenshot
from mema.leaderboard.render import render
from tests import board_fixtures as bf

pytestmark = pytest.mark.skipif(find_browser() is None, reason="Chromium is not installed (apt-get install chromium, or set "
                                "MEMA_CHROMIUM); .ci/run installs it, so CI runs these checks")


def _screenshot_is_a_page(page: Path, tmp_path: Path) -> None:
    shot = screenshot(page, tmp_path / f"{page.stem}.png")
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (WINDOW[1], WINDOW[0])
    assert img.std() > 10 and (img < 128).mean() > 0.005  # drawn, with dark text on it, not a blank window


@pytest.fixture(scope="module")
def board_page(tmp_path_factory):
    """A board with a current suite (the attacker zoo, both categories, on mema-tiny) and history (the
    built-ins' suite-0.1 figures on mema-mini, where eye-crop sat right beside rofi in the plot)."""
    runs = bf.builtin_legacy_runs("mema-mini") + [
        bf.zoo("rofi-with-a-long-name", {"sface": 0.99, "dlib-resnet": 0.99, "periocular": 0.41, "adaptive": 0.62, "deanon": 0.7,
                                         "linkability": 0.8}, kappa=0.970, face=0.99, reversible=True, params={"reversibility": "sealed"}),
        bf.zoo("eye-crop", dict.fromkeys(bf.ATTACKERS6, 0.40), kappa=0.967, face=0.42),
        bf.zoo("faceswap", dict(zip(bf.ATTACKERS6, (0.95, 0.96, 0.90, 0.85, 0.88, 0.93))), kappa=0.968, face=0.98),
        bf.zoo("identity", dict.fromkeys(bf.ATTACKERS6, 0.02), kappa=1.0, face=0.995),
        bf.zoo("dp-pix", dict.fromkeys(bf.ATTACKERS6, 0.999), kappa=0.002, face=0.0),
        bf.zoo("mosaic", dict.fromkeys(bf.ATTACKERS6, 0.976), kappa=0.051, face=0.08),
        bf.zoo("mask-out", dict.fromkeys(bf.ATTACKERS6, 0.925), kappa=0.003, face=0.01),
    ]
    runs[-7].metrics["reversibility.learned.psnr"] = bf.metric("reversibility.learned.psnr", 17.5)
    board = bf.make_board(tmp_path_factory.mktemp("pages") / "board", runs)
    _, page = render(board, board.root)
    return page


def test_the_board_page_is_readable(board_page, tmp_path):
    info = measure_layout(board_page)
    assert info["problems"] == [], info["problems"]
    assert info["svgs"] == 4 and info["svgTexts"] > 40 and info["texts"] > 300  # both sections' plots, with labels
    result = check_page(board_page, "kappa")  # sorting and plot points too, and the same layout check
    assert result["tables"] == 4 and result["rows"] == 14 and result["points"] == 14
    _screenshot_is_a_page(board_page, tmp_path)


def test_the_committed_board_page_is_readable(tmp_path):
    page = BOARD_DIR / "index.html"
    assert layout_problems(page) == []
    _screenshot_is_a_page(page, tmp_path)


def _evaluation(out: Path):
    """What write_report reads from an Evaluation: the output folder, the records and their images."""
    rng = np.random.default_rng(0)
    records, images = [], {}
    for i, d in enumerate(DISEASES):
        rid = f"t{i:03d}"
        records.append(SimpleNamespace(id=rid, disease=d, severity="none" if d == "Normal" else "mild"))
        images[rid] = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
        write_png(out / "outputs" / f"{rid}.png", 255 - images[rid])
    return SimpleNamespace(out=out, records=records, corpus=SimpleNamespace(load_image=lambda r: images[r.id]))


def test_the_report_page_is_readable(tmp_path):
    runs = tmp_path / "runs"
    others = bf.builtin_legacy_runs()
    for res in others[:-1]:
        (runs / res.method["name"]).mkdir(parents=True)
        (runs / res.method["name"] / "results.json").write_bytes(bf.raw(res))
    me = bf.zoo("blur", dict(zip(bf.ATTACKERS6, (0.29, 0.90, 0.2, 0.1, 0.3, 0.5))), kappa=-0.006, face=0.6, suite="0.1")
    out = runs / "blur"
    out.mkdir()
    (out / "outputs").mkdir()
    page = write_report(out, me, _evaluation(out))
    html = page.read_text()
    assert html.count('<g class="point') == len(others) and "<svg" in html and "data:image/png" in html
    info = measure_layout(page)
    assert info["problems"] == [], info["problems"]
    assert info["svgTexts"] >= len(others) + 8  # labels, ticks and both axis titles
    _screenshot_is_a_page(page, tmp_path)


def test_the_layout_probe_finds_overlaps_and_overflow(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body>"
        '<svg width="200" height="100"><text x="10" y="50">eye-crop</text><text x="14" y="52">rofi</text>'
        '<text x="170" y="50">outside the plot</text></svg>'
        '<div style="width:60px;white-space:nowrap">a label much wider than its box</div>'
        '<div style="width:60px;white-space:nowrap;overflow:hidden">clipped by its box</div>'
        "<details><summary>shown</summary><div style='width:10px;white-space:nowrap'>folded away</div></details>"
        "</body></html>")
    problems = layout_problems(page, open_details=False)
    kinds = sorted(p.split(":")[0] for p in problems)
    assert kinds == ["SVG text outside its SVG", "SVG texts overlap", "text clipped by its overflow-hidden box",
                     "text outside its box", "text outside its box"], problems
    assert any("'eye-crop / rofi'" in p for p in problems)
    opened = layout_problems(page)  # the default: <details> are opened and their content measured
    assert len(opened) == 6 and any("'folded away'" in p for p in opened)
