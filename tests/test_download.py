"""yt-dlp run for real against a loopback HTTP server serving real mp4 files (no other address is reachable)."""
from __future__ import annotations

import dataclasses
import functools
import http.server
import ipaddress
import json
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from pseudolabel import download as dl
from pseudolabel.download import DownloadConfig, DownloadInputError, VideoEntry, download_videos

REPO = Path(__file__).resolve().parents[1]
FAST = DownloadConfig(retries=0, socket_timeout=2, max_duration=600)


def _loopback(host) -> bool:
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return str(host) == "localhost"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Any attempt to resolve or connect to a non-loopback address fails the test."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise AssertionError(f"test tried to reach {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _loopback(host):
            raise AssertionError(f"test tried to resolve {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _write_mp4(path: Path, n: int = 12) -> None:
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((48, 64, 3), 20 * i, np.uint8))
    w.release()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base_url, request_log, served_dir): a ThreadingHTTPServer on 127.0.0.1, random port."""
    root = tmp_path_factory.mktemp("www")
    _write_mp4(root / "clip.mp4")
    shutil.copy(root / "clip.mp4", root / "other.mp4")
    (root / "page.html").write_text("<html><head><title>Not a video</title></head><body>hello</body></html>")
    (root / "fake.mp4").write_text("<html><body>an error page served as video/mp4</body></html>")
    requests: list[tuple[str, str]] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(("GET", self.path))
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    # a page whose schema.org metadata says the embedded video lasts 30 minutes
    (root / "long.html").write_text(
        '<html><head><title>Long match</title><script type="application/ld+json">{"@context": '
        '"https://schema.org", "@type": "VideoObject", "name": "Long match", "contentUrl": '
        f'"{base}/clip.mp4", "duration": "PT30M", "uploadDate": "2020-01-01", "description": "x"}}'
        "</script></head><body>match</body></html>")
    yield base, requests, root
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _entry(vid, url, **kw):
    return VideoEntry(id=vid, url=url, source="csv", **kw)


def _frames(path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_download_ok_named_by_id_and_rerun_skips_via_archive(server, tmp_path):
    base, requests, _ = server
    out = tmp_path / "videos"
    recs = download_videos([_entry("rally_01", f"{base}/clip.mp4")], out_dir=out, config=FAST)
    assert [(r["status"], r["video_id"], r["reason"]) for r in recs] == [("ok", "rally_01", "")]
    assert recs[0]["path"] == str(out / "rally_01.mp4")
    assert _frames(out / "rally_01.mp4") == 12
    assert (out / "download_archive.txt").read_text() == "generic rally_01\n"
    gets = requests.count(("GET", "/clip.mp4"))

    again = download_videos([_entry("rally_01", f"{base}/clip.mp4")], out_dir=out, config=FAST)
    assert [(r["status"], r["reason"]) for r in again] == [("ok", "already downloaded (download archive)")]
    assert requests.count(("GET", "/clip.mp4")) == gets  # no request at all on the rerun
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(v["video_id"], v["status"]) for v in manifest["videos"]] == [("rally_01", "ok")]


def test_bad_videos_are_recorded_not_raised(server, tmp_path):
    base, _, _ = server
    port = _closed_port()
    entries = [
        _entry("missing", f"{base}/nope.mp4"),
        _entry("page", f"{base}/page.html"),
        _entry("fake", f"{base}/fake.mp4"),
        _entry("closed", f"http://127.0.0.1:{port}/clip.mp4"),
        _entry("good", f"{base}/other.mp4"),
    ]
    recs = {r["id"]: r for r in download_videos(entries, out_dir=tmp_path, config=FAST)}
    assert recs["missing"]["status"] == "unavailable"
    assert "HTTP Error 404" in recs["missing"]["reason"]
    assert recs["page"]["status"] == "error"
    assert recs["page"]["reason"] == f"Unsupported URL: {base}/page.html"
    assert recs["fake"]["status"] == "error"
    assert recs["fake"]["reason"].startswith("downloaded file is not a decodable video")
    assert not list(tmp_path.glob("fake.*"))  # removed, and out of the archive so a rerun retries it
    assert recs["closed"]["status"] == "error"
    assert "Connection refused" in recs["closed"]["reason"]
    assert recs["good"]["status"] == "ok"
    assert (tmp_path / "download_archive.txt").read_text() == "generic good\n"
    assert all(r["path"] is None for k, r in recs.items() if k != "good")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [v["status"] for v in manifest["videos"]] == ["unavailable", "error", "error", "error", "ok"]


def test_max_duration_filters_before_download(server, tmp_path):
    base, _, _ = server
    long_video = [_entry("long", f"{base}/long.html")]
    recs = download_videos(long_video, out_dir=tmp_path, config=FAST)
    assert [(r["status"], r["reason"]) for r in recs] == [("filtered", "duration 1800 s > max_duration 600 s")]
    assert not list(tmp_path.glob("long.*"))
    recs = download_videos(long_video, out_dir=tmp_path, config=DownloadConfig(retries=0, socket_timeout=2,
                                                                               max_duration=None))
    assert [r["status"] for r in recs] == ["ok"]
    assert _frames(tmp_path / "long.mp4") == 12


def test_path_traversal_ids_stay_inside_out_dir(server, tmp_path):
    base, _, _ = server
    out = tmp_path / "a" / "videos"
    recs = download_videos([_entry("../../x", f"{base}/clip.mp4"), _entry("/etc/passwd", f"{base}/other.mp4")],
                           out_dir=out, config=FAST)
    assert [r["status"] for r in recs] == ["ok", "ok"]
    names = sorted(p.name for p in out.glob("*.mp4"))
    assert names == sorted(f"{dl.file_id(i)}.mp4" for i in ("../../x", "/etc/passwd"))
    assert all(Path(r["path"]).resolve().parent == out.resolve() for r in recs)
    assert dl.file_id("../../x").startswith("x-") and dl.file_id("x") == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # nothing written next to out_dir
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["videos"]


def test_same_file_id_for_another_url_is_an_error(server, tmp_path):
    base, _, _ = server
    recs = download_videos([_entry("a/b", f"{base}/clip.mp4"), _entry("a/b", f"{base}/other.mp4"),
                            _entry("a/b", f"{base}/clip.mp4")], out_dir=tmp_path, config=FAST)
    assert [r["status"] for r in recs] == ["ok", "error"]  # the exact duplicate is dropped
    assert recs[1]["reason"] == f"id 'a/b' (file {dl.file_id('a/b')}) is already used for {base}/clip.mp4; " \
                                "give this video its own id"


def test_csv_malformed_rows_are_errors_others_download(server, tmp_path):
    base, _, _ = server
    csv_path = tmp_path / "urls.csv"
    csv_path.write_text(
        "url,id,labels,start,end\n"
        f"{base}/clip.mp4,c1,tennis;ball,,\n"
        ",c2,,,\n"
        f"{base}/other.mp4,c3,,abc,\n"
        "file:///etc/passwd,c4,,,\n"
        f"{base}/other.mp4,c5,,5,2\n"
        "\n"
        f"{base}/other.mp4,,,,\n")
    entries = dl.read_url_csv(csv_path)
    assert [e.id for e in entries] == ["c1", "c2", "c3", "c4", "c5", "other"]
    assert entries[0].labels == ("tennis", "ball")
    recs = download_videos(entries, out_dir=tmp_path / "v", config=FAST)
    assert [(r["id"], r["status"], r["reason"]) for r in recs] == [
        ("c1", "ok", ""),
        ("c2", "error", "urls.csv line 3: missing url"),
        ("c3", "error", "urls.csv line 4: start 'abc' is not a number of seconds"),
        ("c4", "error", "urls.csv line 5: unsupported URL 'file:///etc/passwd' "
                        "(only http:// and https:// URLs or YouTube ids)"),
        ("c5", "error", "urls.csv line 6: end 2 is not after start 5"),
        ("other", "ok", ""),
    ]


def _has_ffmpeg() -> bool:
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

    return bool(FFmpegPostProcessor().available)


def _section_entries(base, tmp_path):
    (tmp_path / "s.csv").write_text(f"url,id,start,end\n{base}/clip.mp4,sec,0.2,0.9\n")
    entries = dl.read_url_csv(tmp_path / "s.csv")
    assert (entries[0].start, entries[0].end) == (0.2, 0.9)
    assert "download_ranges" in dl.ydl_options(FAST, out_dir=tmp_path, video_id="sec", entry=entries[0])
    return entries


def test_csv_time_section_cuts_the_video(server, tmp_path):
    """clip.mp4: 12 frames at 10 fps, frame i of grey level 20 i; the section [0.2 s, 0.9 s) is frames 2..8."""
    if not _has_ffmpeg():
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg): yt-dlp needs it to download a time section")
    import cv2

    base, _, _ = server
    recs = download_videos(_section_entries(base, tmp_path), out_dir=tmp_path / "v", config=FAST)
    assert [(r["status"], r["reason"]) for r in recs] == [("ok", "")]
    cap = cv2.VideoCapture(recs[0]["path"])
    levels = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        levels.append(float(img.mean()))
    cap.release()
    assert len(levels) == 7  # cut, not the whole 12-frame clip
    assert [round(v / 20) for v in levels] == list(range(2, 9))


def test_csv_time_section_without_ffmpeg_is_an_error(server, tmp_path):
    """Run where ffmpeg cannot be found (a subprocess whose PATH leaves out every folder holding one)."""
    import os
    import subprocess
    import sys

    base, _, _ = server
    _section_entries(base, tmp_path)
    path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not any((Path(d) / x).exists() for x in ("ffmpeg", "ffprobe", "avconv")))
    code = ("import json, sys\nfrom pseudolabel import download as dl\n"
            "recs = dl.download_videos(dl.read_url_csv(sys.argv[1]), out_dir=sys.argv[2],\n"
            "                          config=dl.DownloadConfig(retries=0, socket_timeout=2, max_duration=600))\n"
            "print(json.dumps([(r['status'], r['reason']) for r in recs]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.csv"), str(tmp_path / "v")],
                         capture_output=True, text=True, env={**os.environ, "PATH": path}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [
        ["error", "You have requested downloading the video partially, but ffmpeg is not installed. Aborting"]]


def test_csv_unreadable_files_raise(tmp_path):
    with pytest.raises(DownloadInputError, match="no 'url' column"):
        (tmp_path / "a.csv").write_text("link,id\nhttp://127.0.0.1/x.mp4,x\n")
        dl.read_url_csv(tmp_path / "a.csv")
    with pytest.raises(DownloadInputError, match="cannot read CSV"):
        dl.read_url_csv(tmp_path / "absent.csv")


def test_sports1m_filter_by_label_and_missing_keys(server, tmp_path):
    base, _, _ = server
    data = [
        {"id": "t1", "source": f"{base}/clip.mp4", "label487": [54]},
        {"id": "skip", "source": f"{base}/other.mp4", "label487": [3, 4]},
        {"id": "nosrc", "label487": [359]},
        {"id": "nolab", "source": "abcdefghijk"},
        {"source": "dQw4w9WgXcQ", "labels": [370, 12]},
        "junk",
        {"id": "v2", "source": f"{base}/other.mp4", "label487": [359]},
    ]
    path = tmp_path / "sports1m_train.json"
    path.write_text(json.dumps(data))
    entries = dl.read_sports1m(path, labels=[54, 359, 370])
    assert [(e.id, e.url, e.labels, e.error) for e in entries] == [
        ("t1", f"{base}/clip.mp4", (54,), None),
        ("nosrc", None, (), "sports1m_train.json entry 2: missing 'source' (URL or YouTube id)"),
        ("nolab", None, (), "sports1m_train.json entry 3: missing 'label487' or 'labels'"),
        ("dQw4w9WgXcQ", "https://www.youtube.com/watch?v=dQw4w9WgXcQ", (370, 12), None),
        ("sports1m_train.json_entry_5", None, (), "sports1m_train.json entry 5: not an object (str)"),
        ("v2", f"{base}/other.mp4", (359,), None),
    ]
    assert [e.id for e in dl.read_sports1m(path, labels=[54, 359, 370], max_videos=2) if not e.error] == \
        ["t1", "dQw4w9WgXcQ"]
    local = [e for e in entries if e.error or "127.0.0.1" in e.url]  # never reach YouTube from a test
    recs = download_videos(local, out_dir=tmp_path / "v", config=FAST)
    assert [(r["id"], r["status"], r["source"]) for r in recs] == [
        ("t1", "ok", "sports1m"), ("nosrc", "error", "sports1m"), ("nolab", "error", "sports1m"),
        ("sports1m_train.json_entry_5", "error", "sports1m"), ("v2", "ok", "sports1m")]
    assert recs[0]["labels"] == [54]

    path.write_text(json.dumps({"train": data[:2]}))
    assert [e.id for e in dl.read_sports1m(path, labels=[3])] == ["skip"]
    path.write_text("{not json")
    with pytest.raises(DownloadInputError, match="cannot read Sports-1M JSON"):
        dl.read_sports1m(path, labels=[54])
    path.write_text('"a string"')
    with pytest.raises(DownloadInputError, match="expected a list of entries or an object of lists, got str"):
        dl.read_sports1m(path, labels=[54])


def test_max_videos_counts_ok_videos_only(server, tmp_path):
    base, _, _ = server
    entries = [_entry("gone", f"{base}/nope.mp4"), _entry("a", f"{base}/clip.mp4"), _entry("b", f"{base}/other.mp4")]
    cfg = DownloadConfig(retries=0, socket_timeout=2, max_videos=1)
    assert [(r["id"], r["status"]) for r in download_videos(entries, out_dir=tmp_path, config=cfg)] == \
        [("gone", "unavailable"), ("a", "ok")]


def test_youtube_id_in_archive_is_skipped_without_network(server, tmp_path):
    _, _, root = server
    (tmp_path / "download_archive.txt").write_text("youtube dQw4w9WgXcQ\n")
    shutil.copy(root / "clip.mp4", tmp_path / "dQw4w9WgXcQ.mp4")
    entries = [VideoEntry(id="dQw4w9WgXcQ", url="https://www.youtube.com/watch?v=dQw4w9WgXcQ", source="sports1m")]
    recs = download_videos(entries, out_dir=tmp_path, config=FAST)  # loopback_only fails any real request
    assert [(r["status"], r["path"]) for r in recs] == [("ok", str(tmp_path / "dQw4w9WgXcQ.mp4"))]


def test_folder_source_and_config_stage(server, tmp_path):
    _, _, root = server
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(root / "clip.mp4", folder / "b.mp4")
    shutil.copy(root / "clip.mp4", folder / "a.MOV")
    (folder / "notes.txt").write_text("x")
    from omegaconf import OmegaConf

    conf = OmegaConf.load(REPO / "conf" / "download" / "default.yaml")
    assert set(conf) - {"source", "out_dir"} == {f.name for f in dataclasses.fields(DownloadConfig)}
    cfg = OmegaConf.to_container(conf)
    cfg.update(source={"kind": "folder", "path": str(folder)}, out_dir=str(tmp_path / "out"))
    recs = dl.run_from_config(cfg)
    assert [(r["id"], r["status"], r["source"], r["path"]) for r in recs] == [
        ("a", "ok", "local", str((folder / "a.MOV").resolve())),
        ("b", "ok", "local", str((folder / "b.mp4").resolve()))]
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["videos"][0]["id"] == "a"
    with pytest.raises(DownloadInputError, match="download.source.path is not set"):
        dl.run_from_config({**cfg, "source": {"kind": "csv", "path": None}})
    with pytest.raises(DownloadInputError, match="cannot list video folder"):
        dl.list_folder(tmp_path / "absent")


def test_cli(server, tmp_path, capsys):
    base, _, _ = server
    (tmp_path / "u.csv").write_text(f"url,id\n{base}/clip.mp4,cli1\n{base}/nope.mp4,cli2\n")
    rc = dl.main(["--csv", str(tmp_path / "u.csv"), "--out", str(tmp_path / "v"), "--retries", "0",
                  "--socket-timeout", "2"])
    assert rc == 0
    assert capsys.readouterr().out.startswith("1 ok, 1 unavailable; manifest: ")
    assert (tmp_path / "v" / "cli1.mp4").is_file()
    assert dl.main(["--csv", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "v")]) == 2
    assert "cannot read CSV" in capsys.readouterr().err
