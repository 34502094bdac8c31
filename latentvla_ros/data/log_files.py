"""Reading a log directory's files: the one meta reader and array loader.

``DrivingLog`` (``data/log_format.py``, a whole validated log) and the training readers
that take part of a log (the teacher: camera, ego status, command, latent codes; the LAM:
the camera and whatever else is there; the ego-MLP and the atlas: a meta key) all read
``meta.json`` with ``read_meta`` and arrays with ``load_array`` (never unpickling), so a
missing or unreadable file gives the same ``LogFormatError`` everywhere.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

META_FILE = "meta.json"


class LogFormatError(ValueError):
    """A driving log that is missing files or whose arrays do not match the format."""


def read_meta(log_dir: str | Path, required: bool = False) -> dict[str, Any]:
    """The log's ``meta.json``; ``{}`` for a directory without one unless ``required``.
    Unreadable, not JSON or not an object: ``LogFormatError``."""
    path = Path(log_dir) / META_FILE
    if not path.is_file():
        if required:
            raise LogFormatError(f"{log_dir}: missing {META_FILE}")
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LogFormatError(f"{log_dir}: {META_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise LogFormatError(f"{log_dir}: {META_FILE} is not a JSON object")
    return meta


def load_array(log_dir: str | Path, file_name: str, mmap: bool = False) -> np.ndarray:
    """``<log_dir>/<file_name>`` (a ``.npy``; memory-mapped with ``mmap``), no pickle."""
    path = Path(log_dir) / file_name
    if not path.is_file():
        raise LogFormatError(f"{log_dir}: missing {file_name}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise LogFormatError(f"{path}: cannot read: {exc}") from exc


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` through a hidden temporary sibling and a rename (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
