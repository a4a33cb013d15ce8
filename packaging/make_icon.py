"""Draw the app icon (resources/icon.png, 1024x1024) and turn it into an .iconset or .icns.

The icon is a rounded square with a smooth curve over its quantized bars:
what the app does, in one picture. Drawn at 2x and downsampled for clean edges.

    python packaging/make_icon.py                       # (re)draw resources/icon.png
    python packaging/make_icon.py --iconset build/x.iconset   # PNGs for macOS iconutil
    python packaging/make_icon.py --icns build/x.icns         # .icns with Pillow (any OS)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
ICON_PNG = ROOT / "resources" / "icon.png"
SIZE = 1024
# iconutil's names: icon_<points>x<points>[@2x].png
ICONSET_SIZES = [(16, 1), (16, 2), (32, 1), (32, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2)]

TOP = (40, 52, 120)  # deep indigo
BOTTOM = (18, 150, 160)  # teal
STEPS = (255, 255, 255, 235)
ACCENT = (255, 196, 61, 255)  # amber: the float curve


def draw_icon(size: int = SIZE) -> Image.Image:
    """The icon as an RGBA image of ``size`` pixels square."""
    s = 2 * size  # supersample
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))

    # Background: a vertical gradient inside the macOS grid's rounded square (824/1024, radius ~185).
    margin = round(s * 100 / 1024)
    radius = round(s * 185 / 1024)
    gradient = Image.new("RGBA", (s, s))
    gd = ImageDraw.Draw(gradient)
    for y in range(s):
        t = y / (s - 1)
        gd.line([(0, y), (s, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(TOP, BOTTOM, strict=True)) + (255,))
    mask = Image.new("L", (s, s), 0)
    ImageDraw.Draw(mask).rounded_rectangle([margin, margin, s - margin, s - margin], radius=radius, fill=255)
    img.paste(gradient, (0, 0), mask)

    d = ImageDraw.Draw(img)
    left, right = margin + s * 0.13, s - margin - s * 0.13
    mid, amp = s * 0.5, s * 0.21

    def curve_y(x: float) -> float:
        t = (x - left) / (right - left)
        return mid - amp * math.sin(2 * math.pi * t)

    def polyline(points: list[tuple[float, float]], width: float, fill) -> None:
        # Segments plus round joins and caps: clean at any angle, unlike Pillow's joint="curve".
        for a, b in zip(points, points[1:], strict=False):
            d.line([a, b], fill=fill, width=round(width))
        r = width / 2
        for x, y in points:
            d.ellipse([x - r, y - r, x + r, y + r], fill=fill)

    # The quantized weights: 10 bars whose heights snap to 7 levels (-3..3), white.
    steps, levels = 10, 3
    pitch = (right - left) / steps
    bar = pitch * 0.62
    for i in range(steps):
        x = left + (i + 0.5) * pitch
        level = round((mid - curve_y(x)) / amp * levels)
        yq = mid - level * amp / levels
        top, bottom = min(yq, mid), max(yq, mid)
        if bottom - top < bar:  # level 0: a square dot on the axis
            top, bottom = mid - bar / 2, mid + bar / 2
        d.rounded_rectangle([x - bar / 2, top, x + bar / 2, bottom], radius=bar * 0.3, fill=STEPS)

    # The float signal they approximate: a smooth amber curve over the steps.
    points = [(x, curve_y(x)) for x in (left + (right - left) * i / 240 for i in range(241))]
    polyline(points, s * 0.026, ACCENT)

    return img.resize((size, size), Image.Resampling.LANCZOS)


def write_iconset(png: Path, out_dir: Path) -> Path:
    """The PNG sizes macOS ``iconutil -c icns`` expects, in ``out_dir`` (…/Name.iconset)."""
    base = Image.open(png).convert("RGBA")
    out_dir.mkdir(parents=True, exist_ok=True)
    for points, scale in ICONSET_SIZES:
        name = f"icon_{points}x{points}{'@2x' if scale == 2 else ''}.png"
        base.resize((points * scale,) * 2, Image.Resampling.LANCZOS).save(out_dir / name)
    return out_dir


def write_icns(png: Path, out: Path) -> Path:
    """An .icns written by Pillow (used where iconutil is not available, e.g. Linux builds)."""
    base = Image.open(png).convert("RGBA")
    out.parent.mkdir(parents=True, exist_ok=True)
    sizes = sorted({p * sc for p, sc in ICONSET_SIZES})
    base.save(out, format="ICNS", append_images=[base.resize((n, n), Image.Resampling.LANCZOS) for n in sizes])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", type=Path, default=ICON_PNG, help="the 1024 px source PNG")
    parser.add_argument("--redraw", action="store_true", help="redraw the PNG even if it exists")
    parser.add_argument("--iconset", type=Path, help="write an .iconset folder for iconutil")
    parser.add_argument("--icns", type=Path, help="write an .icns with Pillow")
    args = parser.parse_args(argv)
    if args.redraw or not args.png.exists() or not (args.iconset or args.icns):
        args.png.parent.mkdir(parents=True, exist_ok=True)
        draw_icon().save(args.png, optimize=True)
        print(f"wrote {args.png}")
    if args.iconset:
        print(f"wrote {write_iconset(args.png, args.iconset)}")
    if args.icns:
        print(f"wrote {write_icns(args.png, args.icns)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
