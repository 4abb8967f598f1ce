"""Render the app icon's PNG from its SVG (the PNG is committed; rerun after editing the SVG).

    QT_QPA_PLATFORM=offscreen python packaging/render_icon.py

Writes ``headswap_gui/resources/headswap.png`` (256×256, transparent corners). The window
loads the PNG, not the SVG, so the icon needs no Qt SVG plugin at run time, and PyInstaller
can turn the PNG into a Windows or macOS icon file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "headswap_gui" / "resources"
SIZE = 256


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    renderer = QSvgRenderer(str(RESOURCES / "headswap.svg"))
    if not renderer.isValid():
        print("headswap.svg could not be read", file=sys.stderr)
        return 1
    image = QImage(SIZE, SIZE, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    target = RESOURCES / "headswap.png"
    if not image.save(str(target), "PNG"):
        print(f"could not write {target}", file=sys.stderr)
        return 1
    print(f"wrote {target} ({target.stat().st_size:,} bytes)")
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
