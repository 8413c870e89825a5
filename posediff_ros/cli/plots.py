"""Plots with pillow (matplotlib is not installed): what RESULTS.md shows."""

import math
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
           (140, 86, 75), (23, 190, 207)]


def line_plot(path: Path, series: dict, xlabel: str, ylabel: str, title: str,
              ylim=(0.0, 100.0), size=(720, 440)) -> None:
    """series: name -> (xs, ys). A plain line plot with axes, ticks and a legend."""
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 70, size[0] - 20, 40, size[1] - 60
    xs_all = [x for xs, _ in series.values() for x in xs] or [0, 1]
    x0, x1 = min(xs_all), max(xs_all) if max(xs_all) > min(xs_all) else min(xs_all) + 1
    y0, y1 = ylim
    px = lambda x: left + (x - x0) / (x1 - x0) * (right - left)  # noqa: E731
    py = lambda y: bottom - (y - y0) / (y1 - y0) * (bottom - top)  # noqa: E731
    d.rectangle([left, top, right, bottom], outline="black")
    for k in range(6):
        yv = y0 + k * (y1 - y0) / 5
        d.line([left - 4, py(yv), left, py(yv)], fill="black")
        d.text((left - 40, py(yv) - 6), f"{yv:.0f}", fill="black")
        d.line([left, py(yv), right, py(yv)], fill=(230, 230, 230))
        xv = x0 + k * (x1 - x0) / 5
        d.line([px(xv), bottom, px(xv), bottom + 4], fill="black")
        d.text((px(xv) - 15, bottom + 8), f"{xv:.3g}", fill="black")
    d.text((left + (right - left) // 2 - 60, bottom + 30), xlabel, fill="black")
    d.text((8, top - 16), ylabel, fill="black")
    d.text((left + 10, 4), title, fill="black")
    for j, (name, (xs, ys)) in enumerate(series.items()):
        c = COLOURS[j % len(COLOURS)]
        pts = [(px(x), py(max(y0, min(y1, y)))) for x, y in zip(xs, ys, strict=True)]
        if len(pts) > 1:
            d.line(pts, fill=c, width=2)
        for p in pts:
            d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=c)
        d.line([right - 230, top + 12 + 16 * j, right - 210, top + 12 + 16 * j], fill=c, width=3)
        d.text((right - 205, top + 6 + 16 * j), name, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def scatter_grid(path: Path, panels: list[tuple[str, list, list]], cols: int = 4) -> None:
    """panels: (title, yaw_deg list, tilt_deg list); yaw in [-180, 180] x tilt in [0, 180]
    (tilt grows downward)."""
    w, h, pad = 250, 200, 30
    rows = math.ceil(len(panels) / cols)
    img = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + 2 * pad) + pad), "white")
    d = ImageDraw.Draw(img)
    for k, (title, yaw, tilt) in enumerate(panels):
        ox = pad + (k % cols) * (w + pad)
        oy = pad + (k // cols) * (h + 2 * pad) + 10
        d.rectangle([ox, oy, ox + w, oy + h], outline="black")
        d.line([ox + w / 2, oy, ox + w / 2, oy + h], fill=(220, 220, 220))
        d.text((ox, oy - 22), title, fill="black")
        d.text((ox, oy + h + 3), "-180", fill="black")
        d.text((ox + w - 22, oy + h + 3), "180", fill="black")
        d.text((ox + w / 2 - 30, oy + h + 3), "yaw error", fill="black")
        d.text((ox + 3, oy + 3), "tilt 0", fill="black")
        d.text((ox + 3, oy + h - 14), "tilt 180", fill="black")
        for a, b in zip(yaw, tilt, strict=True):
            x = ox + (a + 180) / 360 * w
            y = oy + min(b, 180) / 180 * h
            d.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=(214, 39, 40))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
