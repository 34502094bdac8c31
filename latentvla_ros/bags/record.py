"""Write rosbag2 recordings from raw CDR bytes (pure: rosbags, no rclpy).

``BagWriter(path, storage='mcap'|'sqlite3')`` creates a rosbag2 directory
(``metadata.yaml`` + storage file, format version 9 by default, 8 for
Humble-era readers). Each topic is declared once with its type; the message
definition stored in the bag (which makes it self-describing) comes from, in
order: ``msgdef_text`` passed to ``add_topic``; the rosbags type store of the
configured distro; ``.msg`` files found by ``find_msg_definition`` (this
package's ``msg/`` directory for ``latentvla_ros/msg/*``, then
``<prefix>/share/<pkg>/msg/<Name>.msg`` for every prefix in
``AMENT_PREFIX_PATH`` and ``sys.prefix``). Nested types are resolved the same
way, recursively.

``close()`` must run for the bag to be complete (MCAP summary + metadata.yaml);
a writer killed before that leaves a bag that ``bags.replay.BagReader`` still
reads in recovery mode up to the last flushed chunk (~1 MiB).
"""
from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "BagWriter",
    "MsgTypeNotFoundError",
    "default_msg_search_paths",
    "find_msg_definition",
    "register_msgtype",
    "make_qos",
]

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
_OWN_PACKAGE = "latentvla_ros"


class MsgTypeNotFoundError(ValueError):
    """No definition for a message type could be found."""


def default_msg_search_paths() -> list[Path]:
    """Directories searched as ``<dir>/<pkg>/msg/<Name>.msg`` (share directories)."""
    prefixes: list[str] = []
    for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if p:
            prefixes.append(p)
    prefixes.append(sys.prefix)
    out: list[Path] = []
    for p in prefixes:
        share = Path(p) / "share"
        if share.is_dir() and share not in out:
            out.append(share)
    return out


def find_msg_definition(msgtype: str, search_paths: Sequence[Path] | None = None) -> str | None:
    """The ``.msg`` text of ``pkg/msg/Name`` (or ``pkg/Name``), or ``None``."""
    parts = msgtype.split("/")
    if len(parts) == 3:
        pkg, _, name = parts
    elif len(parts) == 2:
        pkg, name = parts
    else:
        return None
    candidates: list[Path] = []
    if pkg == _OWN_PACKAGE:
        candidates.append(_PACKAGE_ROOT / "msg" / f"{name}.msg")
    for share in (search_paths if search_paths is not None else default_msg_search_paths()):
        candidates.append(Path(share) / pkg / "msg" / f"{name}.msg")
    for c in candidates:
        if c.is_file():
            return c.read_text()
    return None


def _normalize(msgtype: str) -> str:
    parts = msgtype.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else msgtype


def _referenced_types(fielddef) -> list[str]:
    _consts, fields = fielddef
    out = []
    for _name, (nodetype, detail) in fields:
        kind = getattr(nodetype, "name", str(nodetype))
        if kind == "NAME":
            out.append(detail)
        elif kind in ("ARRAY", "SEQUENCE"):
            sub_type, sub_detail = detail[0]
            if getattr(sub_type, "name", str(sub_type)) == "NAME":
                out.append(sub_detail)
    return out


def register_msgtype(typestore, msgtype: str, search_paths: Sequence[Path] | None = None,
                     msgdef_text: str | None = None) -> None:
    """Make ``msgtype`` and everything it references known to ``typestore``.

    Raises ``MsgTypeNotFoundError`` when some definition cannot be found.
    """
    from rosbags.typesys import get_types_from_msg

    msgtype = _normalize(msgtype)
    pending = [msgtype]
    new: dict[str, Any] = {}
    if msgdef_text is not None and msgtype not in typestore.fielddefs:
        new.update(get_types_from_msg(msgdef_text, msgtype))
    seen: set[str] = set()
    while pending:
        name = _normalize(pending.pop())
        if name in seen:
            continue
        seen.add(name)
        if name in typestore.fielddefs:
            fielddef = typestore.fielddefs[name]
        elif name in new:
            fielddef = new[name]
        else:
            text = find_msg_definition(name, search_paths)
            if text is None:
                raise MsgTypeNotFoundError(
                    f"no definition for message type {name!r} (needed by {msgtype!r}); "
                    "searched the rosbags type store and share/<pkg>/msg/*.msg")
            new.update(get_types_from_msg(text, name))
            fielddef = new[name]
        pending.extend(_referenced_types(fielddef))
    if new:
        typestore.register(new)


def make_qos(reliability: str = "reliable", durability: str = "volatile", depth: int = 10,
             history: str = "keep_last"):
    """A rosbags ``Qos`` (for the offered_qos_profiles metadata) from plain names."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(
        QosHistory[history.upper()], int(depth), QosReliability[reliability.upper()],
        QosDurability[durability.upper()], zero, zero, QosLiveliness.AUTOMATIC, zero, False)


class BagWriter:
    """Thread-safe writer of raw CDR messages into a new rosbag2 directory.

    All storage I/O runs on one dedicated thread (sqlite3 connections may only be
    used by the thread that made them, and callers such as subscription callbacks
    should not block on disk). ``write`` only enqueues (FIFO, so order is kept);
    ``flush()`` waits for the queue, ``close()`` drains it and finishes the bag.
    Failed writes are counted in ``write_errors`` (first message in ``last_error``).

    Args:
        path: bag directory to create (must not exist).
        storage: ``'mcap'`` or ``'sqlite3'``.
        version: rosbag2 metadata version (9, or 8 for Humble).
        distro: rosbags type store used for standard types (``Stores`` member name).
        msg_search_paths: share directories searched for ``.msg`` files (default:
            ``default_msg_search_paths()``).
    """

    def __init__(self, path: str | Path, storage: str = "mcap", *, version: int = 9,
                 distro: str = "ROS2_KILTED", msg_search_paths: Sequence[Path] | None = None) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"storage must be one of {sorted(plugins)}, got {storage!r}")
        self.path = Path(path)
        self.storage = storage
        self.msg_search_paths = msg_search_paths
        self.typestore = get_typestore(getattr(Stores, distro))
        self._lock = threading.Lock()
        self._writer = Writer(self.path, version=version, storage_plugin=plugins[storage])
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bag_writer")
        try:
            self._io.submit(self._writer.open).result()
        except BaseException:
            self._io.shutdown(wait=False)
            raise
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.write_errors = 0
        self.last_error: str | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def topics(self) -> dict[str, str]:
        return {t: c.msgtype for t, c in self._connections.items()}

    def add_topic(self, topic: str, msgtype: str, *, msgdef_text: str | None = None,
                  qos: Iterable[Mapping[str, Any]] | None = None) -> None:
        """Declare a topic. ``qos``: offered profiles as dicts with ``reliability``,
        ``durability``, ``depth``, ``history`` (names like 'reliable', 'transient_local')."""
        msgtype = _normalize(msgtype)
        with self._lock:
            if self._closed:
                raise RuntimeError("BagWriter is closed")
            if topic in self._connections:
                return
            register_msgtype(self.typestore, msgtype, self.msg_search_paths, msgdef_text)
            profiles = []
            for q in qos or []:
                try:
                    profiles.append(make_qos(**{k: v for k, v in q.items() if k in
                                                ("reliability", "durability", "depth", "history")}))
                except (KeyError, TypeError, ValueError):
                    continue  # unknown policy names: leave that profile out of the metadata
            self._connections[topic] = self._io.submit(
                self._writer.add_connection, topic, msgtype, typestore=self.typestore,
                offered_qos_profiles=profiles).result()
            self.counts[topic] = 0

    def write(self, topic: str, log_time_ns: int, data: bytes | bytearray | memoryview) -> bool:
        """Queue one raw message; returns False (and writes nothing) once closed."""
        with self._lock:
            if self._closed:
                return False
            conn = self._connections.get(topic)
            if conn is None:
                raise KeyError(f"topic {topic!r} was not added")
            fut = self._io.submit(self._writer.write, conn, int(log_time_ns), bytes(data))
            fut.add_done_callback(self._check_write)
            self.counts[topic] += 1
            return True

    def _check_write(self, fut: Future) -> None:
        err = fut.exception()
        if err is not None:
            with self._lock:
                self.write_errors += 1
                if self.last_error is None:
                    self.last_error = f"{type(err).__name__}: {err}"

    def flush(self) -> None:
        """Wait until every queued message has been handed to the storage."""
        with self._lock:
            if self._closed:
                return
            fut = self._io.submit(lambda: None)
        fut.result()

    def close(self) -> None:
        """Drain the queue and finish the bag (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            fut = self._io.submit(self._writer.close)
        try:
            fut.result()
        finally:
            self._io.shutdown(wait=True)

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
