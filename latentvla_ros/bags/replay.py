"""Read rosbag2 recordings as raw CDR messages (pure: rosbags + mcap, no rclpy).

``BagReader(path)`` opens a rosbag2 directory (``metadata.yaml`` + MCAP or
sqlite3 storage files) or a single ``.mcap`` / ``.db3`` file, including MCAP
files written by other tools (``mcap_ros2``, Foxglove) as long as they use the
``ros2`` profile and ``cdr`` encoding. ``messages()`` yields
``BagMessage(topic, msgtype, log_time_ns, data)`` in log-time order with the
raw CDR bytes; nothing is deserialized, so types unknown to this machine are
fine. ``deserialize(msg)`` decodes with types rebuilt from the definitions
stored in the bag (custom types included), falling back to the rosbags store
for the configured distro.

A directory without ``metadata.yaml`` (a bag copied without it, or written by a tool that
makes none) is a normal case: its single storage file is opened like a ``.mcap`` / ``.db3``
path, with its index. Only several storage files without metadata are scanned.

Damaged recordings never raise from ``messages()``: the reader first tries
rosbags' indexed reader; if the bag cannot be opened that way (truncated MCAP
without summary/footer, missing ``metadata.yaml`` after a crash, broken sqlite
file) it switches to a *recovery* scan (MCAP: sequential record stream;
sqlite3: row by row) that yields everything readable up to the damage. Errors
are appended to ``report.errors`` and ``report.recovered`` says whether the
recovery path was used. In recovery mode MCAP messages are re-ordered through
a bounded heap (``reorder_window`` messages), so ordering is exact unless a
message is displaced by more than that in the file.
"""
from __future__ import annotations

import heapq
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = [
    "BagMessage",
    "BagTopic",
    "ReadReport",
    "BagReader",
    "read_bag",
    "bag_info",
    "PlaybackSchedule",
]


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes


@dataclass
class BagTopic:
    """One topic of a bag. ``qos``: offered QoS profiles as plain dicts
    (``reliability``: 'reliable'|'best_effort'|..., ``durability``:
    'transient_local'|'volatile'|..., ``history``, ``depth``)."""

    topic: str
    msgtype: str
    message_count: int | None = None
    msgdef: str = ""
    msgdef_format: str = ""  # 'ros2msg' | 'ros2idl' | ''
    qos: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ReadReport:
    messages_read: int = 0
    errors: list[str] = field(default_factory=list)
    recovered: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


_MCAP_MAGIC = b"\x89MCAP0\r\n"


def _storage_files(path: Path) -> tuple[str, list[Path]]:
    """('mcap'|'sqlite3', files) for recovery, from metadata if readable else by glob."""
    if path.is_file():
        return ("sqlite3" if path.suffix == ".db3" else "mcap"), [path]
    files: list[Path] = []
    storage = ""
    meta = path / "metadata.yaml"
    if meta.exists():
        try:
            from ruamel.yaml import YAML

            info = YAML(typ="safe").load(meta.read_text())["rosbag2_bagfile_information"]
            storage = str(info.get("storage_identifier", ""))
            files = [path / Path(x).name for x in info.get("relative_file_paths", [])]
            files = [f for f in files if f.exists()]
        except Exception:  # noqa: BLE001 - damaged metadata: fall back to glob
            files = []
    if not files:
        files = sorted(path.glob("*.mcap")) or sorted(path.glob("*.db3"))
    if not storage:
        storage = "sqlite3" if files and files[0].suffix == ".db3" else "mcap"
    return storage, files


def _qos_to_dicts(profiles: Iterable[Any]) -> list[dict[str, Any]]:
    out = []
    for q in profiles or []:
        try:
            out.append({
                "history": q.history.name.lower(),
                "depth": int(q.depth),
                "reliability": q.reliability.name.lower(),
                "durability": q.durability.name.lower(),
            })
        except AttributeError:
            continue
    return out


def _qos_from_channel_metadata(meta: dict[str, str]) -> list[dict[str, Any]]:
    text = meta.get("offered_qos_profiles", "") if meta else ""
    if not text:
        return []
    try:
        from rosbags.rosbag2.metadata import parse_qos

        return _qos_to_dicts(parse_qos(text))
    except Exception:  # noqa: BLE001 - unparseable QoS metadata: the topic just has no offered profiles
        return []


class BagReader:
    """Raw reader over one recording. Use as a context manager or ``open()``/``close()``.

    Args:
        path: rosbag2 directory or ``.mcap`` / ``.db3`` file.
        topics: only these topics (``None``: all).
        reorder_window: heap size used to restore time order in MCAP recovery mode.
    """

    def __init__(self, path: str | Path, topics: Iterable[str] | None = None,
                 reorder_window: int = 10000) -> None:
        self.path = Path(path)
        self.topic_filter = set(topics) if topics is not None else None
        self.reorder_window = int(reorder_window)
        self.report = ReadReport()
        self.topics: dict[str, BagTopic] = {}
        self.start_time_ns: int | None = None
        self.end_time_ns: int | None = None
        self.message_count: int | None = None
        self._reader = None  # rosbags.rosbag2.Reader in indexed mode
        self._recovery: tuple[str, list[Path]] | None = None
        self._typestore = None
        self._open = False

    # ---------------------------------------------------------------- open
    def open(self) -> "BagReader":
        if self._open:
            return self
        if not self.path.exists():
            raise FileNotFoundError(f"bag not found: {self.path}")
        from rosbags.rosbag2 import Reader

        try:
            reader = Reader(self.storage_path())
            reader.open()
        except Exception as err:  # noqa: BLE001 - damaged bag: recovery scan
            self.report.errors.append(f"indexed open failed: {type(err).__name__}: {err}")
            self.report.recovered = True
            self._recovery = _storage_files(self.path)
            self._scan_recovery_metadata()
        else:
            self._reader = reader
            for conn in reader.connections:
                self._add_topic(conn.topic, conn.msgtype, conn.msgcount,
                                getattr(conn.msgdef, "data", ""), conn.msgdef.format,
                                _qos_to_dicts(getattr(conn.ext, "offered_qos_profiles", [])))
            if reader.message_count:
                self.start_time_ns = int(reader.start_time)
                self.end_time_ns = int(reader.end_time) - 1
            self.message_count = int(reader.message_count)
        self._open = True
        return self

    def storage_path(self) -> Path:
        """What the indexed reader opens: the bag directory, or its only storage file when
        the directory has no ``metadata.yaml``."""
        if self.path.is_dir() and not (self.path / "metadata.yaml").exists():
            files = sorted(self.path.glob("*.mcap")) or sorted(self.path.glob("*.db3"))
            if len(files) == 1:
                return files[0]
        return self.path

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # noqa: BLE001 - closing a reader that may already be broken
                pass
            self._reader = None
        self._open = False

    def __enter__(self) -> "BagReader":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _add_topic(self, topic, msgtype, count, msgdef, fmt, qos) -> None:
        fmt_name = getattr(fmt, "name", str(fmt or "")).upper()
        fmt_str = {"MSG": "ros2msg", "IDL": "ros2idl"}.get(fmt_name, "")
        existing = self.topics.get(topic)
        if existing is not None:
            if count is not None and existing.message_count is not None:
                existing.message_count += count
            return
        self.topics[topic] = BagTopic(topic, msgtype, count, msgdef or "", fmt_str, qos)

    @property
    def selected_topics(self) -> list[str]:
        return [t for t in self.topics if self.topic_filter is None or t in self.topic_filter]

    @property
    def duration_ns(self) -> int:
        if self.start_time_ns is None or self.end_time_ns is None:
            return 0
        return self.end_time_ns - self.start_time_ns

    # ------------------------------------------------------------ messages
    def messages(self, start_ns: int | None = None, stop_ns: int | None = None) -> Iterator[BagMessage]:
        """Yield messages with ``start_ns <= log_time < stop_ns`` in time order. Never raises
        on damaged data: errors go to ``self.report``."""
        if not self._open:
            self.open()
        if self._reader is not None:
            yield from self._messages_indexed(start_ns, stop_ns)
        else:
            storage, files = self._recovery or ("mcap", [])
            gen = self._sqlite_scan(files) if storage == "sqlite3" else self._mcap_scan_sorted(files)
            for m in gen:
                if start_ns is not None and m.log_time_ns < start_ns:
                    continue
                if stop_ns is not None and m.log_time_ns >= stop_ns:
                    continue
                self.report.messages_read += 1
                yield m

    def _messages_indexed(self, start_ns, stop_ns) -> Iterator[BagMessage]:
        reader = self._reader
        conns = [c for c in reader.connections
                 if self.topic_filter is None or c.topic in self.topic_filter]
        if not conns:
            return
        try:
            for conn, t, data in reader.messages(connections=conns, start=start_ns, stop=stop_ns):
                self.report.messages_read += 1
                yield BagMessage(conn.topic, conn.msgtype, int(t), bytes(data))
        except GeneratorExit:
            raise
        except Exception as err:  # noqa: BLE001 - damaged chunk/row: stop here
            self.report.errors.append(f"read failed after {self.report.messages_read} "
                                      f"messages: {type(err).__name__}: {err}")

    # ------------------------------------------------------- recovery: mcap
    def _mcap_records(self, file: Path, collect_errors: bool):
        """Yield ('schema'|'channel'|'message', record) until the end or the damage."""
        from mcap.records import Channel, Message, Schema
        from mcap.stream_reader import StreamReader

        try:
            with file.open("rb") as f:
                if f.read(8) != _MCAP_MAGIC:
                    raise ValueError("not an MCAP file (bad magic)")
                f.seek(0)
                reader = StreamReader(f, record_size_limit=1 << 31)
                for rec in reader.records:
                    if isinstance(rec, Message):
                        yield "message", rec
                    elif isinstance(rec, Channel):
                        yield "channel", rec
                    elif isinstance(rec, Schema):
                        yield "schema", rec
        except GeneratorExit:
            raise
        except Exception as err:  # noqa: BLE001 - truncated/corrupt: stop at the damage
            if collect_errors:
                self.report.errors.append(f"{file.name}: stopped at damaged data: "
                                          f"{type(err).__name__}: {err}")

    def _scan_recovery_metadata(self) -> None:
        storage, files = self._recovery or ("mcap", [])
        if not files:
            self.report.errors.append(f"no storage files found in {self.path}")
            return
        if storage == "sqlite3":
            self._scan_sqlite_metadata(files)
            return
        counts: dict[str, int] = {}
        start = end = None
        for file in files:
            schemas: dict[int, Any] = {}
            channels: dict[int, tuple[str, str]] = {}
            for kind, rec in self._mcap_records(file, collect_errors=False):
                if kind == "schema":
                    schemas[rec.id] = rec
                elif kind == "channel":
                    schema = schemas.get(rec.schema_id)
                    msgtype = schema.name if schema is not None else ""
                    channels[rec.id] = (rec.topic, msgtype)
                    if rec.message_encoding != "cdr":
                        continue
                    self._add_topic(rec.topic, msgtype, None,
                                    schema.data.decode(errors="replace") if schema else "",
                                    "MSG" if schema and schema.encoding == "ros2msg" else
                                    ("IDL" if schema and schema.encoding == "ros2idl" else ""),
                                    _qos_from_channel_metadata(dict(rec.metadata)))
                else:
                    ch = channels.get(rec.channel_id)
                    if ch is None:
                        continue
                    counts[ch[0]] = counts.get(ch[0], 0) + 1
                    t = rec.log_time
                    start = t if start is None or t < start else start
                    end = t if end is None or t > end else end
        for name, topic in self.topics.items():
            topic.message_count = counts.get(name, 0)
        self.start_time_ns, self.end_time_ns = start, end
        self.message_count = sum(counts.values())

    def _mcap_scan(self, files: list[Path]) -> Iterator[BagMessage]:
        for file in files:
            schemas: dict[int, Any] = {}
            channels: dict[int, tuple[str, str]] = {}
            for kind, rec in self._mcap_records(file, collect_errors=True):
                if kind == "schema":
                    schemas[rec.id] = rec
                elif kind == "channel":
                    schema = schemas.get(rec.schema_id)
                    if rec.message_encoding == "cdr":
                        channels[rec.id] = (rec.topic, schema.name if schema else "")
                else:
                    ch = channels.get(rec.channel_id)
                    if ch is None:
                        continue
                    if self.topic_filter is not None and ch[0] not in self.topic_filter:
                        continue
                    yield BagMessage(ch[0], ch[1], int(rec.log_time), bytes(rec.data))

    def _mcap_scan_sorted(self, files: list[Path]) -> Iterator[BagMessage]:
        heap: list[tuple[int, int, BagMessage]] = []
        seq = 0
        for m in self._mcap_scan(files):
            heapq.heappush(heap, (m.log_time_ns, seq, m))
            seq += 1
            if len(heap) > self.reorder_window:
                yield heapq.heappop(heap)[2]
        while heap:
            yield heapq.heappop(heap)[2]

    # ----------------------------------------------------- recovery: sqlite
    def _scan_sqlite_metadata(self, files: list[Path]) -> None:
        counts: dict[str, int] = {}
        start = end = None
        for file in files:
            try:
                con = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
                try:
                    for _tid, name, typ, _fmt, qos in self._sqlite_topics(con):
                        from rosbags.rosbag2.metadata import parse_qos

                        try:
                            qd = _qos_to_dicts(parse_qos(qos or ""))
                        except Exception:  # noqa: BLE001 - unparseable QoS metadata: the topic just has no offered profiles
                            qd = []
                        self._add_topic(name, typ, None, "", "", qd)
                    for name, n, lo, hi in con.execute(
                        "SELECT t.name, COUNT(*), MIN(m.timestamp), MAX(m.timestamp) "
                        "FROM messages m JOIN topics t ON m.topic_id = t.id GROUP BY t.name"):
                        counts[name] = counts.get(name, 0) + int(n)
                        start = lo if start is None or lo < start else start
                        end = hi if end is None or hi > end else end
                finally:
                    con.close()
            except Exception as err:  # noqa: BLE001 - a damaged file: reported in the replay report, the others still play
                self.report.errors.append(f"{file.name}: metadata scan failed: "
                                          f"{type(err).__name__}: {err}")
        for name, topic in self.topics.items():
            topic.message_count = counts.get(name, 0)
        self.start_time_ns, self.end_time_ns = start, end
        self.message_count = sum(counts.values())

    @staticmethod
    def _sqlite_topics(con) -> list[tuple]:
        cols = {row[1] for row in con.execute("PRAGMA table_info(topics)")}
        qos_col = "offered_qos_profiles" if "offered_qos_profiles" in cols else "''"
        return list(con.execute(
            f"SELECT id, name, type, serialization_format, {qos_col} FROM topics"))

    def _sqlite_scan(self, files: list[Path]) -> Iterator[BagMessage]:
        for file in files:
            n_before = self.report.messages_read
            try:
                con = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
            except Exception as err:  # noqa: BLE001 - a damaged file: reported in the replay report, the others still play
                self.report.errors.append(f"{file.name}: {type(err).__name__}: {err}")
                continue
            try:
                topics = {tid: (name, typ) for tid, name, typ, fmt, _ in self._sqlite_topics(con)
                          if fmt == "cdr"}
                try:
                    rows = con.execute("SELECT topic_id, timestamp, data FROM messages "
                                       "ORDER BY timestamp, id")
                    for tid, t, data in rows:
                        if tid not in topics:
                            continue
                        name, typ = topics[tid]
                        if self.topic_filter is not None and name not in self.topic_filter:
                            continue
                        yield BagMessage(name, typ, int(t), bytes(data))
                except sqlite3.DatabaseError as err:
                    self.report.errors.append(
                        f"{file.name}: stopped after {self.report.messages_read - n_before} "
                        f"messages: {type(err).__name__}: {err}")
            except GeneratorExit:
                raise
            except Exception as err:  # noqa: BLE001 - a damaged file: reported in the replay report, the others still play
                self.report.errors.append(f"{file.name}: {type(err).__name__}: {err}")
            finally:
                con.close()

    # --------------------------------------------------------- deserialize
    def typestore(self, default_store: str = "ROS2_KILTED"):
        """A rosbags typestore with the types defined in the bag (plus the default store)."""
        if self._typestore is not None:
            return self._typestore
        from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

        store = get_typestore(getattr(Stores, default_store))
        types: dict = {}
        for topic in self.topics.values():
            try:
                if topic.msgdef_format == "ros2msg" and topic.msgdef:
                    types.update(get_types_from_msg(topic.msgdef, topic.msgtype))
                elif topic.msgdef_format == "ros2idl" and topic.msgdef:
                    sep = "=" * 80 + "\n"
                    if topic.msgdef.startswith(f"{sep}IDL: "):
                        for part in topic.msgdef.split(sep)[1:]:
                            types.update(get_types_from_idl(part.split("\n", 1)[1]))
                    else:
                        types.update(get_types_from_idl(topic.msgdef))
            except Exception as err:  # noqa: BLE001 - a bad type definition: reported, the other topics still decode
                self.report.errors.append(f"type {topic.msgtype}: {type(err).__name__}: {err}")
        # Bag definitions win over the default store (they describe the recorded bytes).
        for name in list(types):
            if name in store.fielddefs:
                del store.fielddefs[name]
        try:
            store.register(types)
        except Exception as err:  # noqa: BLE001 - reported; the default type store still decodes the standard types
            self.report.errors.append(f"type registration: {type(err).__name__}: {err}")
        self._typestore = store
        return store

    def deserialize(self, msg: BagMessage) -> Any:
        """Decode ``msg.data`` into a rosbags dataclass instance."""
        return self.typestore().deserialize_cdr(msg.data, msg.msgtype)


def read_bag(path: str | Path, topics: Iterable[str] | None = None,
             start_ns: int | None = None, stop_ns: int | None = None,
             report: ReadReport | None = None) -> Iterator[BagMessage]:
    """Yield the raw messages of a bag; pass ``report`` to receive the error report."""
    with BagReader(path, topics) as reader:
        if report is not None:
            report.errors.extend(reader.report.errors)
            report.recovered = reader.report.recovered
            reader.report = report
        yield from reader.messages(start_ns, stop_ns)


def bag_info(path: str | Path) -> dict[str, Any]:
    """Topics, types, counts, time range and open errors of a bag (does not read messages)."""
    with BagReader(path) as reader:
        return {
            "path": str(reader.path),
            "start_time_ns": reader.start_time_ns,
            "end_time_ns": reader.end_time_ns,
            "duration_s": reader.duration_ns / 1e9,
            "message_count": reader.message_count,
            "topics": {t.topic: {"type": t.msgtype, "count": t.message_count, "qos": t.qos}
                       for t in reader.topics.values()},
            "recovered": reader.report.recovered,
            "errors": list(reader.report.errors),
        }


class PlaybackSchedule:
    """Maps bag time to wall deadlines: ``wall0 + (t - bag0) / rate`` (absolute, so lateness
    on one message never shifts later ones)."""

    def __init__(self, rate: float, bag_start_ns: int, wall_start_ns: int) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        self.rate = float(rate)
        self.bag_start_ns = int(bag_start_ns)
        self.wall_start_ns = int(wall_start_ns)

    def deadline_ns(self, log_time_ns: int) -> int:
        return self.wall_start_ns + int((log_time_ns - self.bag_start_ns) / self.rate)

    def bag_time_ns(self, wall_ns: int) -> int:
        return self.bag_start_ns + int((wall_ns - self.wall_start_ns) * self.rate)
