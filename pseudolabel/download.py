"""Video acquisition: Sports-1M JSON lists, CSV lists of URLs, or local folders -> ``out_dir/<id>.<ext>``.

Downloads go through yt-dlp's Python API (``yt_dlp.YoutubeDL``; no shell, no subprocess, no
post-processor that runs commands). Every video gets one record in ``out_dir/manifest.json``::

    {"id", "video_id", "url", "source", "labels", "start", "end",
     "status": "ok" | "unavailable" | "filtered" | "error", "reason", "path"}

``id`` is the source's id as given; ``video_id`` is the file name stem, the id made safe with
:func:`pseudolabel.frames.safe_video_id` (plus ``-<sha1[:8]>`` of the raw id when sanitising
changed it, so two ids can never share a file). A yt-dlp download archive
(``out_dir/download_archive.txt``) records finished downloads, so a rerun skips them without any
network request. One bad video never stops the run; only an unreadable list file raises
:class:`DownloadInputError`.

CLI::

    python -m pseudolabel.download --sports1m sports1m_train.json --labels 54 359 370 --out data/videos
    python -m pseudolabel.download --csv urls.csv --out data/videos
    python -m pseudolabel.download --folder my_videos --out data/videos
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pseudolabel.files import atomic_write_bytes, atomic_write_json, read_json
from pseudolabel.frames import VIDEO_EXTENSIONS, safe_video_id

log = logging.getLogger("pseudolabel")

MANIFEST_NAME = "manifest.json"
ARCHIVE_NAME = "download_archive.txt"
STATUSES = ("ok", "unavailable", "filtered", "error")
REFERENCE_LABELS = (54, 359, 370)  # Sports-1M: tennis, volleyball, streetball (the reference's choice)
_YT_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_YT_URL = re.compile(r"(?:youtube\.com/(?:watch\?(?:.*&)?v=|shorts/|embed/)|youtu\.be/)([A-Za-z0-9_-]{11})")
# yt-dlp messages meaning the video itself is gone or closed to us (not a transient failure)
_UNAVAILABLE = re.compile(
    r"HTTP Error (?:404|410)|video unavailable|this video is unavailable|private video|has been removed|"
    r"no longer available|account associated with this video has been terminated|copyright|"
    r"not available in your country|confirm your age|members[- ]only", re.I)


class DownloadInputError(RuntimeError):
    """A list of videos (JSON/CSV file, folder) cannot be read at all."""


@dataclass
class DownloadConfig:
    """How videos are fetched.

    Attributes
    ----------
    max_duration : float or None
        Videos longer than this (seconds, as reported by the site) are not downloaded: status
        ``filtered``. With a time section, the section's length is tested. Unknown durations pass.
    min_height, max_height : int or None
        Preferred resolution range for the default format selection (H.264 in mp4 first, since
        OpenCV decodes it everywhere). A preference, not a filter: when no format fits, the best
        available one is taken. No audio is fetched (frames only need video), so no ffmpeg merge.
    format : str or None
        A yt-dlp format string; when set it replaces the selection built from the heights.
    rate_limit : int, str or None
        Maximum download rate in bytes/s (``"2M"`` style strings accepted).
    retries : int
        yt-dlp retries for HTTP errors and fragments (0: fail at once).
    socket_timeout : float
        Seconds before a silent connection is abandoned.
    max_videos : int or None
        Stop once this many videos are ``ok`` (downloaded now or earlier); failures do not count.
    """

    max_duration: float | None = 1200.0
    min_height: int | None = 360
    max_height: int | None = 1080
    format: str | None = None
    rate_limit: int | str | None = None
    retries: int = 3
    socket_timeout: float = 20.0
    max_videos: int | None = None

    def format_string(self) -> str:
        if self.format:
            return self.format
        h = "".join(f"[height{op}{v}]" for op, v in ((">=", self.min_height), ("<=", self.max_height)) if v)
        return (f"bestvideo{h}[ext=mp4][vcodec^=avc1]/best{h}[ext=mp4][vcodec^=avc1]/"
                f"bestvideo{h}[ext=mp4]/best{h}[ext=mp4]/best[ext=mp4]/best")


@dataclass(frozen=True)
class VideoEntry:
    """One video to fetch.

    ``error`` marks a malformed input row: it is recorded with status ``error`` and never fetched.
    ``path`` is set for local files (``source="local"``), which are only listed.
    """

    id: str
    url: str | None
    source: str
    labels: tuple = ()
    start: float | None = None
    end: float | None = None
    path: str | None = None
    error: str | None = None


def file_id(raw_id: str) -> str:
    """File name stem for a source id: safe, deterministic, and distinct for distinct ids."""
    safe = safe_video_id(raw_id)
    if safe == raw_id:
        return safe
    return f"{safe[:80]}-{hashlib.sha1(raw_id.encode()).hexdigest()[:8]}"


def youtube_url(source: str) -> str:
    """A full URL for a Sports-1M ``source``: bare 11-character YouTube ids become watch URLs."""
    source = source.strip()
    return f"https://www.youtube.com/watch?v={source}" if _YT_ID.match(source) else source


def _id_from_url(url: str) -> str:
    m = _YT_URL.search(url)
    if m:
        return m.group(1)
    from urllib.parse import unquote, urlsplit

    stem = Path(unquote(urlsplit(url).path)).stem
    return stem or hashlib.sha1(url.encode()).hexdigest()[:12]


def _check_url(url: str) -> str:
    """Reason why ``url`` is not fetched, or "" (only http/https; no file://, ftp:// ...)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return f"unsupported URL {url!r} (only http:// and https:// URLs or YouTube ids)"
    if not parts.netloc:
        return f"URL {url!r} has no host"
    return ""


# ---------------------------------------------------------------- readers
def read_sports1m(path: str | Path, *, labels: Iterable[int] | None = REFERENCE_LABELS,
                  max_videos: int | None = None) -> list[VideoEntry]:
    """Entries of a Sports-1M JSON file (``sports1m_train.json`` style) with one of ``labels``.

    The file is a list of objects, or an object whose values are such lists, each with ``source``
    (URL or YouTube id), ``id`` (optional: taken from the URL) and label indices in ``label487``
    or ``labels``. Entries that cannot be used (missing keys, wrong types) come back with ``error``
    set, naming the file and the entry index; they do not count towards ``max_videos``.
    ``labels=None`` keeps every entry.

    Raises
    ------
    DownloadInputError
        The file is missing, is not JSON, or is neither a list nor an object of lists.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DownloadInputError(f"cannot read Sports-1M JSON {path}: {e}") from e
    if isinstance(data, list):
        groups = [("", data)]
    elif isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        groups = [(f"{k}", v) for k, v in data.items()]
    else:
        raise DownloadInputError(f"Sports-1M JSON {path}: expected a list of entries or an object of lists, "
                                 f"got {type(data).__name__}")
    wanted = None if labels is None else {int(x) for x in labels}
    out: list[VideoEntry] = []
    n_ok = 0
    for group, items in groups:
        for i, item in enumerate(items):
            where = f"{path.name} entry {group}[{i}]" if group else f"{path.name} entry {i}"
            entry = _sports1m_entry(item, where, wanted)
            if entry is None:
                continue
            out.append(entry)
            if entry.error is None:
                n_ok += 1
                if max_videos is not None and n_ok >= max_videos:
                    return out
    return out


def _sports1m_entry(item: Any, where: str, wanted: set[int] | None) -> VideoEntry | None:
    def bad(msg: str, raw_id: str | None = None) -> VideoEntry:
        return VideoEntry(id=raw_id or where.replace(" ", "_"), url=None, source="sports1m", error=f"{where}: {msg}")

    if not isinstance(item, dict):
        return bad(f"not an object ({type(item).__name__})")
    raw_id = item.get("id")
    raw_id = None if raw_id is None else str(raw_id)
    key = "label487" if "label487" in item else "labels" if "labels" in item else None
    if key is None:
        return bad("missing 'label487' or 'labels'", raw_id)
    raw_labels = item[key] if isinstance(item[key], list) else [item[key]]
    try:
        labels = tuple(int(x) for x in raw_labels)
    except (TypeError, ValueError):
        return bad(f"{key} {item[key]!r} is not a list of label indices", raw_id)
    if wanted is not None and not wanted.intersection(labels):
        return None
    source = item.get("source")
    if not isinstance(source, str) or not source.strip():
        return bad("missing 'source' (URL or YouTube id)", raw_id)
    url = youtube_url(source)
    reason = _check_url(url)
    if reason:
        return bad(reason, raw_id)
    return VideoEntry(id=raw_id or _id_from_url(url), url=url, source="sports1m", labels=labels)


def read_url_csv(path: str | Path) -> list[VideoEntry]:
    """Entries of a CSV file with header ``url`` and optional ``id, labels, start, end``.

    ``start``/``end`` are seconds (a time section, downloaded through yt-dlp ``download_ranges``,
    which needs ffmpeg); ``labels`` are separated by ``;``, ``|`` or spaces. ``url`` may also be a
    bare YouTube id. A malformed row comes back with ``error`` naming the file and line.

    Raises
    ------
    DownloadInputError
        The file is missing, unreadable, empty, or has no ``url`` column.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            if "url" not in header:
                raise DownloadInputError(
                    f"CSV {path}: no 'url' column in the header (found: {', '.join(header) or 'nothing'}); "
                    f"expected url[,id,labels,start,end]")
            reader.fieldnames = header
            out = []
            for row in reader:
                if not any((v or "").strip() for k, v in row.items() if k is not None):
                    continue  # blank line
                out.append(_csv_entry(row, f"{path.name} line {reader.line_num}"))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DownloadInputError(f"cannot read CSV {path}: {e}") from e
    return out


def _csv_entry(row: dict, where: str) -> VideoEntry:
    def val(k: str) -> str:
        v = row.get(k)
        return v.strip() if isinstance(v, str) else ""

    raw_id = val("id") or None
    labels = tuple(x for x in re.split(r"[;| ]+", val("labels")) if x)

    def bad(msg: str) -> VideoEntry:
        return VideoEntry(id=raw_id or where.replace(" ", "_"), url=val("url") or None, source="csv",
                          labels=labels, error=f"{where}: {msg}")

    if None in row:
        return bad(f"{len(row[None])} more field(s) than the header")
    url = val("url")
    if not url:
        return bad("missing url")
    url = youtube_url(url)
    reason = _check_url(url)
    if reason:
        return bad(reason)
    times = {}
    for k in ("start", "end"):
        s = val(k)
        if not s:
            times[k] = None
            continue
        try:
            t = float(s)
        except ValueError:
            return bad(f"{k} {s!r} is not a number of seconds")
        if not math.isfinite(t) or t < 0:
            return bad(f"{k} {s!r} must be a finite number of seconds >= 0")
        times[k] = t
    if times["start"] is not None and times["end"] is not None and times["end"] <= times["start"]:
        return bad(f"end {times['end']:g} is not after start {times['start']:g}")
    return VideoEntry(id=raw_id or _id_from_url(url), url=url, source="csv", labels=labels, **times)


def list_folder(path: str | Path) -> list[VideoEntry]:
    """Local video files of a folder (direct children with a video extension), as entries."""
    path = Path(path)
    try:
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith("."))
    except OSError as e:
        raise DownloadInputError(f"cannot list video folder {path}: {e}") from e
    return [VideoEntry(id=p.stem, url=None, source="local", path=str(p.resolve())) for p in files]


# ---------------------------------------------------------------- yt-dlp
class _Collector:
    """yt-dlp logger: keeps warnings and errors for the record, sends the rest to debug logging."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = debug

    def warning(self, msg: str) -> None:
        self.warnings.append(msg)
        log.debug("yt-dlp warning: %s", msg)

    def error(self, msg: str) -> None:
        self.errors.append(msg)


def ydl_options(config: DownloadConfig, *, out_dir: Path, video_id: str, entry: VideoEntry | None = None,
                logger: Any = None, verdict: dict | None = None) -> dict[str, Any]:
    """yt-dlp parameters for one video: output ``out_dir/<video_id>.<ext>``, the shared archive, no playlists,
    no post-processors (nothing that runs commands), duration / live-stream filter, optional time section."""
    from yt_dlp.utils import download_range_func, parse_bytes

    start = entry.start if entry else None
    end = entry.end if entry else None
    opts: dict[str, Any] = {
        "outtmpl": {"default": str(out_dir / f"{video_id}.%(ext)s")},
        "download_archive": str(out_dir / ARCHIVE_NAME),
        "format": config.format_string(),
        "noplaylist": True,
        "retries": int(config.retries),
        "fragment_retries": int(config.retries),
        "extractor_retries": int(config.retries),
        "file_access_retries": 1,
        "socket_timeout": float(config.socket_timeout),
        "match_filter": _match_filter(config, start=start, end=end, verdict=verdict if verdict is not None else {}),
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "logger": logger or _Collector(),
        "overwrites": False,
        "continuedl": True,
        "writethumbnail": False,
        "writesubtitles": False,
        "postprocessors": [],
    }
    if config.rate_limit:
        rl = config.rate_limit
        opts["ratelimit"] = int(rl) if isinstance(rl, (int, float)) else parse_bytes(str(rl))
    if start is not None or end is not None:
        opts["download_ranges"] = download_range_func(None, [(start or 0.0, end if end is not None else math.inf)])
    return opts


def _match_filter(config: DownloadConfig, *, start: float | None, end: float | None, verdict: dict):
    def check(info: dict, *, incomplete: bool = False) -> str | None:
        reason = None
        if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
            reason = "live stream or upcoming premiere"
        elif config.max_duration is not None and info.get("duration") is not None:
            dur = float(info["duration"])
            length = min(dur, end if end is not None else dur) - (start or 0.0)
            if length > config.max_duration:
                what = "section" if start is not None or end is not None else "duration"
                reason = f"{what} {length:g} s > max_duration {config.max_duration:g} s"
        if reason:
            verdict["filtered"] = reason
        return reason

    return check


def _fetch_url(entry: VideoEntry, url: str, video_id: str, *, out_dir: Path, config: DownloadConfig) -> dict:
    """Download one URL; returns ``status, reason, path`` (never raises for a bad video)."""
    import yt_dlp
    from yt_dlp.utils import make_archive_id, smuggle_url

    generic = _is_generic(url)
    if generic:  # the generic extractor names videos after the URL's basename: give it ours
        url = smuggle_url(url, {"force_videoid": video_id})
    collector, verdict = _Collector(), {}
    opts = ydl_options(config, out_dir=out_dir, video_id=video_id, entry=entry, logger=collector, verdict=verdict)
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            if generic and ydl.in_download_archive({"id": video_id, "ie_key": "Generic"}):
                return _already_done(out_dir, video_id, archive_id=make_archive_id("Generic", video_id))
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.DownloadError as e:
        msg = _clean(str(e)) or "; ".join(map(_clean, collector.errors)) or type(e).__name__
        return {"status": "unavailable" if _UNAVAILABLE.search(msg) else "error", "reason": msg, "path": None}
    except Exception as e:  # noqa: BLE001 - one bad video must never stop the run
        return {"status": "error", "reason": f"{type(e).__name__}: {_clean(str(e))}", "path": None}
    if verdict.get("filtered"):
        return {"status": "filtered", "reason": verdict["filtered"], "path": None}
    if info is None:  # yt-dlp found the id in the archive before any request
        return _already_done(out_dir, video_id, archive_id=_archive_id(url))
    files = [d.get("filepath") for d in info.get("requested_downloads") or [] if d.get("filepath")]
    if not files or not Path(files[0]).is_file():
        why = "; ".join(map(_clean, collector.errors + collector.warnings)) or "yt-dlp wrote no file"
        return {"status": "error", "reason": why, "path": None}
    path = Path(files[0])
    bad = _not_a_video(path)
    if bad:
        path.unlink(missing_ok=True)
        _unarchive(out_dir / ARCHIVE_NAME, make_archive_id(info.get("extractor_key") or "Generic", info["id"]))
        return {"status": "error", "reason": bad, "path": None}
    return {"status": "ok", "reason": "", "path": str(path)}


def _is_generic(url: str) -> bool:
    from yt_dlp.extractor import gen_extractor_classes

    for ie in gen_extractor_classes():
        if ie.suitable(url):
            return ie.ie_key() == "Generic"
    return True


def _archive_id(url: str) -> str | None:
    """The download-archive line yt-dlp checks for ``url`` before any request (``"youtube <id>"``)."""
    from yt_dlp.extractor import gen_extractor_classes
    from yt_dlp.utils import make_archive_id

    for ie in gen_extractor_classes():
        if ie.suitable(url):
            temp_id = ie.get_temp_id(url)
            return make_archive_id(ie.ie_key(), temp_id) if temp_id else None
    return None


def _already_done(out_dir: Path, video_id: str, *, archive_id: str | None) -> dict:
    """Record of a video the archive lists as downloaded. Its file is checked again like a fresh
    download: a process killed between yt-dlp's archive write and the decodability check would
    otherwise leave a non-video trusted as ``ok`` for ever."""
    found = _existing_file(out_dir, video_id)
    if found is None:
        return {"status": "error", "path": None,
                "reason": f"recorded in {out_dir / ARCHIVE_NAME} but no file {video_id}.* in {out_dir}; "
                          f"delete its line from the archive to download it again"}
    bad = _not_a_video(found)
    if bad:
        found.unlink(missing_ok=True)
        if archive_id:
            _unarchive(out_dir / ARCHIVE_NAME, archive_id)
        return {"status": "error", "reason": bad, "path": None}
    return {"status": "ok", "reason": "already downloaded (download archive)", "path": str(found)}


def _existing_file(out_dir: Path, video_id: str) -> Path | None:
    for p in sorted(out_dir.glob(f"{video_id}.*")):
        if p.suffix.lower() not in (".part", ".ytdl", ".tmp") and p.stem == video_id and p.is_file():
            return p
    return None


def _not_a_video(path: Path) -> str:
    """Reason why OpenCV cannot read a frame of ``path`` (e.g. an HTML page served as video/mp4), or ""."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        ok = cap.isOpened() and cap.read()[0]
    finally:
        cap.release()
    return "" if ok else (f"downloaded file is not a decodable video (OpenCV cannot read a frame; "
                          f"{path.stat().st_size} bytes); removed")


def _unarchive(archive: Path, line: str) -> None:
    try:
        lines = archive.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    atomic_write_bytes(archive, "".join(f"{x}\n" for x in lines if x.strip() != line).encode())


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _clean(msg: str) -> str:
    return re.sub(r"^(ERROR|WARNING):\s*", "", _ANSI.sub("", msg).strip())


# ---------------------------------------------------------------- driver
def download_videos(entries: Sequence[VideoEntry], *, out_dir: str | Path,
                    config: DownloadConfig | None = None) -> list[dict]:
    """Fetch every entry into ``out_dir``; never raises for one bad video.

    Each video is written to ``out_dir/<file_id(id)>.<ext>``; the record of each entry is merged
    into ``out_dir/manifest.json`` (atomically, after every video, keyed by ``video_id``).
    Two entries whose ids map to the same file but name different URLs: the later one is an error.

    Returns
    -------
    list of dict
        One record per entry handled (see the module docstring), in input order; entries after
        ``config.max_videos`` ok videos are not handled.
    """
    config = config or DownloadConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST_NAME
    known = _read_manifest(manifest)
    urls_seen: dict[str, str | None] = {}
    records: list[dict] = []
    n_ok = 0
    for entry in entries:
        if config.max_videos is not None and n_ok >= config.max_videos:
            break
        vid = file_id(entry.id)
        rec = {"id": entry.id, "video_id": vid, "url": entry.url, "source": entry.source,
               "labels": list(entry.labels), "start": entry.start, "end": entry.end}
        if not entry.error and vid in urls_seen and urls_seen[vid] == entry.url:
            continue  # the same video listed twice
        prev = known.get(vid, {})
        other = urls_seen.get(vid, prev.get("url") if prev.get("status") == "ok" else None)
        if entry.error:
            result = {"status": "error", "reason": entry.error, "path": None}
        elif entry.source == "local":
            p = Path(entry.path or "")
            result = ({"status": "ok", "reason": "local file", "path": str(p)} if p.is_file()
                      else {"status": "error", "reason": f"local file {p} does not exist", "path": None})
        elif vid in urls_seen or (other is not None and other != entry.url):
            result = {"status": "error", "path": None,
                      "reason": f"id {entry.id!r} (file {vid}) is already used for {other}; give this video its own id"}
        else:
            log.info("download %s <- %s", vid, entry.url)
            result = _fetch_url(entry, entry.url, vid, out_dir=out_dir, config=config)
        if not entry.error:
            urls_seen.setdefault(vid, entry.url)
        rec.update(result)
        records.append(rec)
        n_ok += rec["status"] == "ok"
        if rec["status"] != "ok":
            log.warning("%s %s: %s", rec["status"], entry.url or entry.id, rec["reason"])
        if not (entry.error and vid in known):  # a malformed row must not erase a good record
            known[vid] = rec
        atomic_write_json(manifest, {"videos": list(known.values())})
    return records


def _read_manifest(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    try:
        data = read_json(path)
        return {r["video_id"]: r for r in data["videos"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DownloadInputError(f"existing manifest {path} is unreadable ({e}); move it away to start a new one") \
            from e


def read_source(kind: str, path: str | Path, *, labels: Iterable[int] | None = None,
                max_videos: int | None = None) -> list[VideoEntry]:
    """Entries of a source ``kind`` (``sports1m`` | ``csv`` | ``folder``)."""
    if kind == "sports1m":
        return read_sports1m(path, labels=labels, max_videos=max_videos)
    if kind == "csv":
        return read_url_csv(path)
    if kind == "folder":
        return list_folder(path)
    raise DownloadInputError(f"unknown download source kind {kind!r}; one of sports1m, csv, folder")


def run_from_config(cfg: Mapping[str, Any]) -> list[dict]:
    """The ``download`` stage from a plain mapping (``conf/download/default.yaml`` resolved)."""
    cfg = dict(cfg)
    source = dict(cfg.pop("source", None) or {})
    out_dir = cfg.pop("out_dir", None)
    if not source.get("path"):
        raise DownloadInputError("download.source.path is not set: e.g. download.source.kind=csv "
                                 "download.source.path=urls.csv")
    if not out_dir:
        raise DownloadInputError("download.out_dir is not set")
    known = {f.name for f in fields(DownloadConfig)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise DownloadInputError(f"unknown download option(s) {unknown}; known: {sorted(known)}")
    config = DownloadConfig(**cfg)
    labels = source.get("labels")
    entries = read_source(str(source.get("kind", "csv")), source["path"], labels=labels,
                          max_videos=config.max_videos)
    records = download_videos(entries, out_dir=out_dir, config=config)
    log.info("download: %s", summary(records))
    return records


def summary(records: Sequence[dict]) -> str:
    counts = {s: sum(r["status"] == s for r in records) for s in STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing to do"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pseudolabel.download", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sports1m", metavar="JSON", help="Sports-1M JSON list (sports1m_train.json style)")
    src.add_argument("--csv", metavar="CSV", help="CSV with header url[,id,labels,start,end]")
    src.add_argument("--folder", metavar="DIR", help="local folder of videos (listed, nothing downloaded)")
    p.add_argument("--labels", type=int, nargs="*", default=list(REFERENCE_LABELS),
                   help="Sports-1M label indices to keep (default: 54 359 370 = tennis, volleyball, streetball)")
    p.add_argument("--out", default="data/videos", help="output folder (default: data/videos)")
    d = DownloadConfig()
    p.add_argument("--max-videos", type=int, default=d.max_videos)
    p.add_argument("--max-duration", type=float, default=d.max_duration, help="seconds (default: %(default)s)")
    p.add_argument("--min-height", type=int, default=d.min_height)
    p.add_argument("--max-height", type=int, default=d.max_height)
    p.add_argument("--format", default=None, help="yt-dlp format string (replaces the height preference)")
    p.add_argument("--rate-limit", default=None, help="bytes/s, e.g. 2M")
    p.add_argument("--retries", type=int, default=d.retries)
    p.add_argument("--socket-timeout", type=float, default=d.socket_timeout)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = DownloadConfig(max_duration=a.max_duration, min_height=a.min_height, max_height=a.max_height,
                            format=a.format, rate_limit=a.rate_limit, retries=a.retries,
                            socket_timeout=a.socket_timeout, max_videos=a.max_videos)
    try:
        if a.sports1m:
            entries = read_sports1m(a.sports1m, labels=a.labels, max_videos=a.max_videos)
        elif a.csv:
            entries = read_url_csv(a.csv)
        else:
            entries = list_folder(a.folder)
        records = download_videos(entries, out_dir=a.out, config=config)
    except DownloadInputError as e:
        print(f"pseudolabel.download: {e}", file=sys.stderr)
        return 2
    print(f"{summary(records)}; manifest: {Path(a.out) / MANIFEST_NAME}")
    return 0 if not records or any(r["status"] == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
