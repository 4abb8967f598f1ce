"""What the window remembers between sessions, in one place.

A thin typed wrapper over :class:`QSettings` (the application's organisation and name decide
where it lives; tests point it at a temporary folder). Lists and hyperparameters are stored
as JSON text, so they read back with the same types on every platform and in every QSettings
backend (INI files would otherwise turn a one-element list into a plain string).
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

__all__ = ["AppSettings", "MAX_RECENT"]

MAX_RECENT = 10

_GEOMETRY = "window/geometry"
_STATE = "window/state"
_SPLITTERS = "window/splitters"
_CURRENT_TAB = "window/currentTab"
_RECENT_MODELS = "recent/models"
_RECENT_FOLDERS = "recent/folders"
_HYPERPARAMETERS = "training/lastHyperparameters"
_HEAD_DESIGN = "head/lastDesign"
_DOWNLOAD = "model/downloadPretrained"


class AppSettings:
    """Window layout, recent models and folders, and the last hyperparameters."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self._settings = settings if settings is not None else QSettings()

    @property
    def qsettings(self) -> QSettings:
        return self._settings

    def sync(self) -> None:
        self._settings.sync()

    # -- layout -----------------------------------------------------------------------------

    def window_geometry(self) -> QByteArray | None:
        return self._bytes(_GEOMETRY)

    def set_window_geometry(self, data: QByteArray) -> None:
        self._settings.setValue(_GEOMETRY, data)

    def window_state(self) -> QByteArray | None:
        return self._bytes(_STATE)

    def set_window_state(self, data: QByteArray) -> None:
        self._settings.setValue(_STATE, data)

    def splitter_state(self, name: str) -> QByteArray | None:
        return self._bytes(f"{_SPLITTERS}/{name}")

    def set_splitter_state(self, name: str, data: QByteArray) -> None:
        self._settings.setValue(f"{_SPLITTERS}/{name}", data)

    def current_tab(self) -> str | None:
        value = self._settings.value(_CURRENT_TAB)
        return str(value) if value else None

    def set_current_tab(self, name: str) -> None:
        self._settings.setValue(_CURRENT_TAB, name)

    # -- recents ----------------------------------------------------------------------------

    def recent_models(self) -> list[str]:
        return self._string_list(_RECENT_MODELS)

    def add_recent_model(self, source: str) -> list[str]:
        return self._push_recent(_RECENT_MODELS, source)

    def remove_recent_model(self, source: str) -> list[str]:
        return self._remove_recent(_RECENT_MODELS, source)

    def recent_folders(self) -> list[str]:
        return self._string_list(_RECENT_FOLDERS)

    def add_recent_folder(self, folder: str) -> list[str]:
        return self._push_recent(_RECENT_FOLDERS, folder)

    def remove_recent_folder(self, folder: str) -> list[str]:
        return self._remove_recent(_RECENT_FOLDERS, folder)

    def clear_recents(self) -> None:
        self._settings.remove(_RECENT_MODELS)
        self._settings.remove(_RECENT_FOLDERS)

    # -- training and heads -------------------------------------------------------------------

    def last_hyperparameters(self) -> dict[str, Any] | None:
        """The hyperparameters of the last run started, as a plain dict (or None)."""
        data = self._json(_HYPERPARAMETERS)
        return data if isinstance(data, dict) else None

    def set_last_hyperparameters(self, values: dict[str, Any]) -> None:
        self._settings.setValue(_HYPERPARAMETERS, json.dumps(values, default=_json_default))

    def last_head_design(self) -> dict[str, Any] | None:
        data = self._json(_HEAD_DESIGN)
        return data if isinstance(data, dict) else None

    def set_last_head_design(self, values: dict[str, Any]) -> None:
        self._settings.setValue(_HEAD_DESIGN, json.dumps(values, default=_json_default))

    def download_pretrained(self) -> bool:
        return _truthy(self._settings.value(_DOWNLOAD, False))

    def set_download_pretrained(self, enabled: bool) -> None:
        self._settings.setValue(_DOWNLOAD, bool(enabled))

    # -- helpers ----------------------------------------------------------------------------

    def _bytes(self, key: str) -> QByteArray | None:
        value = self._settings.value(key)
        if isinstance(value, QByteArray) and not value.isEmpty():
            return value
        if isinstance(value, (bytes, bytearray)) and value:
            return QByteArray(bytes(value))
        return None

    def _json(self, key: str) -> Any:
        value = self._settings.value(key)
        if not value:
            return None
        try:
            return json.loads(str(value))
        except ValueError:
            return None

    def _string_list(self, key: str) -> list[str]:
        data = self._json(key)
        if not isinstance(data, list):
            return []
        return [str(item) for item in data if isinstance(item, str) and item]

    def _push_recent(self, key: str, item: str) -> list[str]:
        items = [item] + [existing for existing in self._string_list(key) if existing != item]
        items = items[:MAX_RECENT]
        self._settings.setValue(key, json.dumps(items))
        return items

    def _remove_recent(self, key: str, item: str) -> list[str]:
        items = [existing for existing in self._string_list(key) if existing != item]
        self._settings.setValue(key, json.dumps(items))
        return items


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)
