"""The privacy-utility scatter plot as inline SVG, shared by ``report.html`` and the leaderboard page.

Text is real SVG ``<text>`` (no raster), so a browser can measure it: the page tests check that every
label lies inside the plot and that no two labels overlap. Labels are placed here, before the browser
sees them, from an estimate of their width that errs wide (DejaVu Sans advances, the widest common
sans-serif; Arial and Helvetica are narrower): a label goes next to its point where it collides with
nothing, further out with a leader line otherwise, and into a column right of the axes as a last resort.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

FONT_PX = 11
LINE_PX = 14  # a text box's height as browsers measure it (ascent + descent of an 11 px sans font)
FONT_CSS = "font-family:'DejaVu Sans',Verdana,Arial,sans-serif;font-size:11px"

# Advance widths in em of DejaVu Sans; anything else counts as the widest lower-case letter.
_WIDTHS = {**dict.fromkeys("il.,:;'|!", 0.30), **dict.fromkeys("fjt()[] ", 0.40), "r": 0.42, "-": 0.37,
           **dict.fromkeys("sz", 0.53), **dict.fromkeys("cvxyk", 0.60), **dict.fromkeys("abdeghnopqu0123456789", 0.64),
           "w": 0.82, "m": 0.98, "%": 0.95, "κ": 0.60}


def text_width(text: str, px: float = FONT_PX) -> float:
    """Estimated rendered width of ``text`` in pixels, on the wide side."""
    return 1.04 * px * sum(_WIDTHS.get(c, 0.78 if c.isupper() else 0.66) for c in text)


@dataclass
class Point:
    name: str  # data-method attribute (what tests and scripts look up)
    x: float
    y: float
    label: str
    title: str = ""  # hover text
    diamond: bool = False  # reversible methods
    highlight: bool = False  # frontier member, or the run the report is about
    x_ci: tuple[float, float] | None = None
    y_ci: tuple[float, float] | None = None


@dataclass
class _Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def hits(self, o: "_Box", pad: float = 2.0) -> bool:
        return self.x0 < o.x1 + pad and o.x0 < self.x1 + pad and self.y0 < o.y1 + pad and o.y0 < self.y1 + pad


def _label_box(x: float, y: float, w: float, anchor: str) -> _Box:
    """Box of a text whose baseline starts at (x, y) with ``text-anchor`` ``anchor``."""
    x0 = {"start": x, "middle": x - w / 2, "end": x - w}[anchor]
    return _Box(x0, y - 0.8 * LINE_PX, x0 + w, y + 0.2 * LINE_PX)


def _candidates(px: float, py: float):
    """(x, y, anchor, leader) positions around a point, nearest first."""
    for r, leader in ((1, False), (2.2, True), (3.6, True)):
        d = 8 * r
        yield px + d, py + 4, "start", leader  # right
        yield px - d, py + 4, "end", leader  # left
        yield px + d, py + d + 7, "start", leader  # right, below
        yield px - d, py + d + 7, "end", leader  # left, below
        yield px + d, py - d, "start", leader  # right, above
        yield px - d, py - d, "end", leader  # left, above
        yield px, py - d, "middle", leader  # above
        yield px, py + d + 9, "middle", leader  # below


def scatter_svg(points: list[Point], *, x_label: str, y_label: str, width: int = 720, height: int = 440,
                css_class: str = "frontier-plot", staircase: list[Point] | None = None,
                highlight_colour: str = "#c2410c", colour: str = "#2563eb") -> str:
    """Points with x in [0, 1] (shown as %) and y in [min(0, lowest y), 1]; labels placed without overlap.

    ``staircase``: points joined by a dashed step line (the Pareto frontier), sorted by x.
    """
    column_w = max([text_width(p.label) for p in points] + [60]) + 16
    ml, mt, mb = 58, 14, 46
    mr = int(min(column_w, 0.35 * width))
    pw, ph = width - ml - mr, height - mt - mb
    lows = [p.y for p in points] + [lo for p in points if p.y_ci for lo in p.y_ci[:1]]
    ymin = min([0.0] + lows)
    ymin = ymin - 0.02 * (1 - ymin) if ymin < 0 else 0.0
    sx = lambda x: ml + min(max(x, 0.0), 1.0) * pw
    sy = lambda y: mt + (1 - (min(y, 1.0) - ymin) / (1 - ymin)) * ph
    el = [f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" width="{width}" height="{height}" '
          f'viewBox="0 0 {width} {height}" style="{FONT_CSS}">',
          # a white halo keeps labels legible where they cross a line or an error bar
          "<style>text.label{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}</style>",
          f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        el.append(f'<line x1="{sx(t):.1f}" y1="{mt + ph}" x2="{sx(t):.1f}" y2="{mt + ph + 4}" stroke="#999"/>'
                  f'<line x1="{sx(t):.1f}" y1="{mt}" x2="{sx(t):.1f}" y2="{mt + ph}" stroke="#eee"/>'
                  f'<text class="tick" x="{sx(t):.1f}" y="{mt + ph + 16}" text-anchor="middle">{int(t * 100)}</text>')
    step = 0.25 if 1 - ymin <= 1.5 else 0.5
    for t in [i * step for i in range(int(-(-ymin // step)), int(1 / step) + 1)]:
        el.append(f'<line x1="{ml - 4}" y1="{sy(t):.1f}" x2="{ml}" y2="{sy(t):.1f}" stroke="#999"/>'
                  f'<text class="tick" x="{ml - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:.2f}</text>')
    el.append(f'<text class="axis-label" x="{ml + pw / 2:.1f}" y="{height - 8}" text-anchor="middle">{html.escape(x_label)}</text>')
    el.append(f'<text class="axis-label" transform="translate(14 {mt + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
              f'{html.escape(y_label)}</text>')
    if staircase and len(staircase) > 1:
        front = sorted(staircase, key=lambda p: p.x)
        path = []
        for a, b in zip(front, front[1:]):  # what is achievable is bounded by the dominating points
            path += [(a.x, a.y), (a.x, b.y)]
        path.append((front[-1].x, front[-1].y))
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in path)
        el.append(f'<polyline class="frontier-line" points="{d}" fill="none" stroke="{highlight_colour}" stroke-width="1.5" stroke-dasharray="4 3"/>')

    # Obstacles: every marker, then each label as it is placed.
    taken = [_Box(sx(p.x) - 6, sy(p.y) - 6, sx(p.x) + 6, sy(p.y) + 6) for p in points]
    area = _Box(ml + 1, mt + 1, ml + pw - 1, mt + ph - 1)
    column = _Box(ml + pw + 6, mt, width - 2, mt + ph)
    placed: dict[int, tuple[float, float, str, bool]] = {}
    # Crowded points first: they have the fewest free spots.
    crowd = [sum(abs(sx(p.x) - sx(q.x)) < 60 and abs(sy(p.y) - sy(q.y)) < 30 for q in points) for p in points]
    for i in sorted(range(len(points)), key=lambda i: (-crowd[i], -points[i].x)):
        p, w = points[i], text_width(points[i].label)
        for x, y, anchor, leader in _candidates(sx(p.x), sy(p.y)):
            b = _label_box(x, y, w, anchor)
            inside = area.x0 <= b.x0 and b.x1 <= area.x1 and area.y0 <= b.y0 and b.y1 <= area.y1
            if inside and not any(b.hits(o) for o in taken):
                placed[i] = (x, y, anchor, leader)
                taken.append(b)
                break
    # The rest go to the column right of the axes, in the order of their points' heights.
    rest = sorted((i for i in range(len(points)) if i not in placed), key=lambda i: sy(points[i].y))
    slot, ys = column.y0 + 0.8 * LINE_PX, []
    for i in rest:
        ys.append(max(slot, min(sy(points[i].y) + 4, column.y1)))
        slot = ys[-1] + LINE_PX + 2
    over = (ys[-1] if ys else 0) - column.y1
    if over > 0:  # pushed past the bottom: move the stack up as far as the top allows
        ys = [y - min(over, ys[0] - (column.y0 + 0.8 * LINE_PX)) for y in ys]
    for i, y in zip(rest, ys):
        placed[i] = (column.x0, y, "start", True)
    for i, p in enumerate(points):
        x, y = sx(p.x), sy(p.y)
        fill = highlight_colour if p.highlight else colour
        bars = []
        if p.x_ci:
            bars.append(f'<line class="ci" x1="{sx(p.x_ci[0]):.1f}" y1="{y:.1f}" x2="{sx(p.x_ci[1]):.1f}" y2="{y:.1f}" stroke="{fill}" stroke-opacity="0.5"/>')
        if p.y_ci:
            bars.append(f'<line class="ci" x1="{x:.1f}" y1="{sy(p.y_ci[0]):.1f}" x2="{x:.1f}" y2="{sy(p.y_ci[1]):.1f}" stroke="{fill}" stroke-opacity="0.5"/>')
        if p.diamond:
            shape = f'<polygon points="{x:.1f},{y - 6:.1f} {x + 6:.1f},{y:.1f} {x:.1f},{y + 6:.1f} {x - 6:.1f},{y:.1f}" fill="{fill}"/>'
        else:
            shape = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{fill}"/>'
        lx, ly, anchor, leader = placed[i]
        line = ""
        if leader:  # from the marker's edge to the label's nearest side
            tx = lx + {"start": -2, "end": 2, "middle": 0}[anchor]
            ty = ly - 4 if anchor != "middle" else (ly - 0.8 * LINE_PX if ly > y else ly + 0.2 * LINE_PX)
            line = f'<line class="leader" x1="{x:.1f}" y1="{y:.1f}" x2="{tx:.1f}" y2="{ty:.1f}" stroke="#888" stroke-width="0.8"/>'
        name = html.escape(p.name)
        el.append(f'<g class="point{" on-frontier" if p.highlight else ""}" data-method="{name}"><title>{html.escape(p.title or p.label)}</title>'
                  f'{"".join(bars)}{line}{shape}<text class="label" x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}">{html.escape(p.label)}</text></g>')
    el.append("</svg>")
    return "".join(el)
