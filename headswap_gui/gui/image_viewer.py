"""One image, large: what a double-click on a thumbnail anywhere in the window opens.

A thumbnail is 64 px; a user who wonders why an image was misclassified (or whether a sample
belongs to its class) needs to see it whole. The image is decoded the way training reads it
(:func:`headswap_gui.core.images.load_image`: EXIF orientation, palette and alpha flattened),
so what the viewer shows is what the model saw before resizing. Small images (the 8×8 digits)
are enlarged with hard pixel edges rather than blurred, since the blur is not in the data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QSizePolicy, QVBoxLayout, QWidget

__all__ = ["ImageViewer"]

_CRISP_FROM = 2.0  # enlarged this much or more: nearest-neighbour, so pixels stay pixels


class ImageViewer(QDialog):
    """A non-modal window with the image fitted to it, its name, size and folder, and a way to
    the folder; ``on_try`` (when given) adds "Classify in Try it" for the shown image."""

    def __init__(self, parent: QWidget | None, on_try: Callable[[str], None] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageViewer")
        self.setWindowTitle(self.tr("Image"))
        self._path = ""
        self._original = QPixmap()
        self._picture = QLabel(self)
        self._picture.setObjectName("imageViewerPicture")
        self._picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._picture.setMinimumSize(QSize(160, 160))
        self._picture.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self._caption = QLabel(self)
        self._caption.setObjectName("imageViewerCaption")
        self._caption.setWordWrap(True)
        self._caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        folder = buttons.addButton(self.tr("Show in folder"), QDialogButtonBox.ButtonRole.ActionRole)
        folder.setObjectName("imageViewerFolderButton")
        folder.clicked.connect(self._on_folder_clicked)
        self.try_button = None
        if on_try is not None:
            self.try_button = buttons.addButton(self.tr("Classify in Try it"), QDialogButtonBox.ButtonRole.ActionRole)
            self.try_button.setObjectName("imageViewerTryButton")
            self.try_button.clicked.connect(lambda: on_try(self._path))
        layout = QVBoxLayout(self)
        layout.addWidget(self._picture, 1)
        layout.addWidget(self._caption)
        layout.addWidget(buttons)
        self.resize(560, 600)

    def show_image(self, path: str, note: str = "") -> None:
        """Show ``path`` (``note``, e.g. "true 3 → predicted 9", under it) and raise the window."""
        self._path = path
        self._original, problem = _decode(path)
        name = Path(path).name
        self.setWindowTitle(name)
        if self._original.isNull():
            self._caption.setText(self.tr("{name} cannot be shown: {problem}").format(name=name, problem=problem))
        else:
            size = f"{self._original.width()}×{self._original.height()} px"
            parts = [f"<b>{name}</b> · {size}", str(Path(path).parent)] + ([note] if note else [])
            self._caption.setText("<br>".join(parts))
        self._fit()
        self.show()
        self.raise_()
        self.activateWindow()

    def path(self) -> str:
        return self._path

    def shown_size(self) -> QSize:
        """The picture's size on screen (the image fitted to the window)."""
        pixmap = self._picture.pixmap()
        return pixmap.size() if pixmap is not None and not pixmap.isNull() else QSize()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self._original.isNull():
            self._picture.clear()
            return
        room = self._picture.contentsRect().size()
        scale = min(room.width() / self._original.width(), room.height() / self._original.height())
        mode = Qt.TransformationMode.FastTransformation if scale >= _CRISP_FROM else Qt.TransformationMode.SmoothTransformation
        self._picture.setPixmap(self._original.scaled(room, Qt.AspectRatioMode.KeepAspectRatio, mode))

    def _on_folder_clicked(self) -> None:
        if self._path:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self._path).parent)))


def _decode(path: str) -> tuple[QPixmap, str]:
    """The image as training reads it, or a null pixmap and why it cannot be read."""
    from headswap_gui.core.errors import HeadswapError
    from headswap_gui.core.images import load_image
    from headswap_gui.gui.messages import explain

    try:
        image = load_image(path)
    except (OSError, ValueError, HeadswapError) as error:  # unreadable, truncated, a bomb
        return QPixmap(), explain(error) if isinstance(error, HeadswapError) else "it is not an image headswap can read"
    data = image.tobytes()
    qimage = QImage(data, image.width, image.height, 3 * image.width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimage.copy()), ""  # copy: ``data`` is freed when this returns
