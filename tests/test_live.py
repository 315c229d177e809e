"""The live page's server, the progress display and its time estimate, the loss curves and the
history they are drawn from."""

from __future__ import annotations

import http.client
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxstyle.driver.curves import curve_points, stage_starts, write_loss_curves
from jaxstyle.serve.live import LiveServer, LiveState
from jaxstyle.engine.plan import Stage, pass_tiles, stage_work, tile_grid
from jaxstyle.engine.progress import Meter, Tick, clock, eta_seconds, progress_line


# ---- serving only what the run wrote ---------------------------------------------------------------
def _get(server: LiveServer, path: str) -> tuple[int, bytes]:
    """A GET with the path sent exactly as given (no client-side normalisation)."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    conn.endheaders()
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A server for a run whose output is the current directory, which holds the run's files and
    others it did not write; a secret lies one level up."""
    (tmp_path / "secret.txt").write_text("secret")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    Image.new("RGB", (4, 3), (200, 10, 10)).save("000_seed0.png")
    Path("report.json").write_text('{"ok": true}')
    Path("notes.txt").write_text("not the run's")  # in the folder, but not written by the run
    os.symlink(tmp_path / "secret.txt", "001_seed1.png")  # a file of the run replaced by a link out
    state = LiveState(["seed 0", "seed 1"], {"output": "."}, ".")
    state.end("finished", "done", report={"variants": [{"image": "000_seed0.png"}, {"image": "001_seed1.png"}]})
    server = LiveServer(state, "127.0.0.1", 0)
    yield server
    server.stop()


def test_the_server_binds_to_loopback_and_serves_the_page_state_and_written_files(served):
    assert served.server_address[0] == "127.0.0.1" and served.url.startswith("http://127.0.0.1:")
    status, page = _get(served, "/")
    assert status == 200 and b"<canvas" in page
    # Nothing on the page comes from elsewhere: no absolute URLs, no external scripts or fonts.
    assert b"http://" not in page and b"https://" not in page and b"//cdn" not in page
    status, body = _get(served, "/state.json")
    assert status == 200 and json.loads(body)["labels"] == ["seed 0", "seed 1"]
    assert _get(served, "/files/report.json") == (200, b'{"ok": true}')
    status, body = _get(served, "/files/000_seed0.png")
    assert status == 200 and Image.open(io.BytesIO(body)).size == (4, 3)


@pytest.mark.parametrize("path", [
    "/files/../secret.txt", "/files/..%2fsecret.txt", "/files/%2e%2e%2fsecret.txt", "/files/%2E%2E/secret.txt",
    "/files/..%5csecret.txt", "/files//etc/passwd", "/files/%2fetc%2fpasswd", "/../secret.txt",
    "/files/001_seed1.png",  # a symlink out of the folder, though its name is the run's
    "/files/notes.txt",  # in the folder but not written by this run
    "/files/", "/files/.", "/files/checkpoint.npz", "/secret.txt", "/live/full/7.png", "/live/full/-1.png",
    "/live/thumb/0.png",  # no image taken from the run yet
])
def test_anything_but_the_runs_own_files_is_404(served, path):
    status, body = _get(served, path)
    assert status == 404 and b"secret" not in body


def test_live_images_come_from_the_last_tick_and_thumbnails_are_small():
    state = LiveState(["a", "b", "c"], {}, ".")
    img = np.zeros((2, 500, 400, 3), np.float32)
    img[1] = 1.0
    tick = _tick(images=lambda: img, first=1)  # the second program of a sweep: variants 1 and 2
    state.tick(tick)
    snap = state.snapshot()
    assert snap["has_image"] == [False, True, True] and snap["status"] == "running"
    full = Image.open(io.BytesIO(state.png(2, thumb=False)))
    thumb = Image.open(io.BytesIO(state.png(2, thumb=True)))
    assert full.size == (400, 500) and max(thumb.size) == 320
    assert np.asarray(full).min() == 255 and np.asarray(Image.open(io.BytesIO(state.png(1, False)))).max() == 0
    state.record({"iteration": 1})
    state.record({"iteration": 2})
    assert [h["iteration"] for h in state.snapshot(since=1)["history"]] == [2]


# ---- the time estimate and the progress display ------------------------------------------------------
def _tick(**kw) -> Tick:
    base = dict(stage=1, stages=3, shape=(96, 128), pass_index=0, passes=1, tile=0, tiles=1, iteration=10,
                tile_iterations=40, stage_done=10, stage_total=40, parts={"total": np.array([2.0]),
                "content": np.array([1.0]), "style": np.array([0.1])}, elapsed_s=70.0, compile_s=10.0,
                work=300.0, work_total=1200.0)
    return Tick(**{**base, **kw})


def test_eta_counts_the_work_to_come_at_the_rate_so_far_without_compilation():
    # 60 s of optimisation for 300 units of work: 0.2 s a unit, 900 units to come.
    assert eta_seconds(70.0, 10.0, 300.0, 1200.0) == pytest.approx(180.0)
    assert eta_seconds(5.0, 0.0, 0.0, 10.0) is None
    assert (clock(180.4), clock(3725), clock(None)) == ("3:00", "1:02:05", "?")


def test_stage_work_counts_every_tile_of_every_pass():
    stage = Stage((100, 160), 40, (64, 64), passes=2)
    grids = [tile_grid(stage, 16, p) for p in range(2)]
    assert pass_tiles(stage, 16) == [len(g) for g in grids]
    assert stage_work(stage, 16) == sum(len(g) for g in grids) * 64 * 64 * 20  # 20 iterations a pass
    assert stage_work(Stage((30, 40), 7, (30, 40)), 16) == 30 * 40 * 7


def test_plain_progress_lines_carry_elapsed_time_and_eta():
    lines = []
    meter = Meter(tty=False, write=lines.append)
    meter.tick(_tick())
    meter.tick(_tick(report=False))
    assert lines == [progress_line(_tick())]
    assert lines[0].startswith("stage 2/3 128x96 px [#####") and "10/40" in lines[0]
    assert lines[0].endswith("(70.0 s, ETA 3:00)")


def test_the_terminal_bar_shows_rate_run_time_and_eta():
    stream = io.StringIO()
    meter = Meter(stream=stream, tty=True)
    meter.tick(_tick())
    meter.log("a line above the bar")
    meter.tick(_tick(iteration=20, stage_done=20, elapsed_s=130.0, work=600.0))
    meter.close()
    text = stream.getvalue()
    assert "stage 2/3 128x96" in text and "20/40" in text and "it/s" in text and "a line above the bar" in text
    assert "ETA 2:00" in text  # 120 s for 600 units: 600 to come take 120 s


# ---- the loss curves -------------------------------------------------------------------------------
HISTORY = [
    {"stage": 1, "scope": "image", "iteration": 5, "total": [4.0, 8.0], "content": [1.0, 2.0], "style": [3.0, 6.0]},
    {"stage": 1, "scope": "image", "iteration": 10, "total": [2.0, None], "content": [1.0, 1.0], "style": [1.0, 0.0]},
    {"stage": 2, "scope": "tile", "iteration": 12, "total": [99.0, 99.0], "content": [9, 9], "style": [9, 9]},
    {"stage": 2, "scope": "image", "iteration": 15, "total": [1.5, 3.0], "content": [0.5, 1.0], "style": [1.0, 2.0]},
]


def test_curve_points_keep_whole_image_entries_and_place_programs_by_first_variant():
    pts = curve_points(HISTORY, 2)
    x, y = pts["total"]
    assert x.tolist() == [5, 10, 15]
    assert np.allclose(y, [[4, 8], [2, np.nan], [1.5, 3]], equal_nan=True)
    swept = [{"stage": 1, "iteration": 3, "total": [7.0], "content": [1.0], "style": [1.0], "first": 1}]
    assert np.allclose(curve_points(swept, 3)["total"][1], [[np.nan, 7.0, np.nan]], equal_nan=True)
    assert stage_starts(HISTORY) == [10]


def test_loss_curves_are_written_as_png_and_skipped_without_history(tmp_path):
    path = write_loss_curves(HISTORY, ["seed 0", "seed 1"], tmp_path / "losses.png")
    im = Image.open(path)
    assert im.format == "PNG" and im.size[0] > 2 * im.size[1]
    assert write_loss_curves([], ["seed 0"], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    # A style reconstruction (no content layers: its content loss is 0 throughout) draws the other
    # panels and says so in the empty one, instead of failing at the end of the run.
    style_only = [{**h, "content": [0.0, 0.0]} for h in HISTORY]
    assert Image.open(write_loss_curves(style_only, ["a", "b"], tmp_path / "style.png")).format == "PNG"


def test_a_port_in_use_is_one_line_exit_2_and_leaves_no_folder(tmp_path, capsys):
    import socket

    from conftest import EXAMPLES
    from jaxstyle.cli import main, run_main

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    out = tmp_path / "out"
    try:
        with pytest.raises(SystemExit) as exc:
            run_main(lambda: main([str(EXAMPLES / "home.jpg"), str(EXAMPLES / "starry_night.jpg"), "-o", str(out),
                                   "--size", "32", "--serve", str(port)]))
    finally:
        busy.close()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot serve on 127.0.0.1:{port}")
    assert not out.exists()


def test_a_sweeps_later_program_counts_the_earlier_ones_in_its_eta():
    from jaxstyle.driver.job import program_watch
    from jaxstyle.engine.progress import Watchers

    ticks, records = [], []
    # Program 2 of 3 (0-based 1), its variants from index 4 on, after 100 s (10 of compilation).
    watch = program_watch(Watchers((ticks.append,), (records.append,)), 1, 3, 4, (100.0, 10.0))
    watch.tick(_tick(elapsed_s=70.0, compile_s=10.0, work=300.0, work_total=1200.0))
    watch.record({"iteration": 3})
    t = ticks[0]
    assert (t.first, t.elapsed_s, t.compile_s, t.work, t.work_total) == (4, 170.0, 20.0, 1500.0, 3600.0)
    # 150 s of optimisation for 1500 units: 2100 units to come take 210 s.
    assert eta_seconds(t.elapsed_s, t.compile_s, t.work, t.work_total) == pytest.approx(210.0)
    assert records == [{"iteration": 3, "program": 1, "first": 4}]


def _get_host(server: LiveServer, path: str, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host)
    conn.endheaders()
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.mark.parametrize("bound", ["127.0.0.1", "0.0.0.0"])
def test_a_host_header_naming_another_site_is_refused(bound):
    """DNS rebinding: a page on evil.example whose name resolves to this machine is refused; the
    bound address and localhost are served, and any IP address of the machine when bound to all."""
    server = LiveServer(LiveState(["a"], {}, "."), bound, 0)
    port = server.server_address[1]
    try:
        for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.nip.io:{port}"):
            assert _get_host(server, "/state.json", host) == 403
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
            assert _get_host(server, "/state.json", host) == 200
        assert _get_host(server, "/state.json", f"192.0.2.10:{port}") == (200 if bound == "0.0.0.0" else 403)
    finally:
        server.stop()


def test_one_safe_file_check_for_both_servers(tmp_path):
    """:func:`safe_file`: a file directly in its folder, by exact name and of an allowed suffix;
    never a link (to a file inside or out), a name with a separator, or a folder."""
    from jaxstyle.serve.server import safe_file
    folder, outside = tmp_path / "run", tmp_path / "secret"
    folder.mkdir()
    outside.mkdir()
    (folder / "a.png").write_bytes(b"png")
    (outside / "b.png").write_bytes(b"secret")
    (folder / "link.png").symlink_to(outside / "b.png")
    (folder / "inner.png").mkdir()
    (folder / "same.png").symlink_to(folder / "a.png")
    (tmp_path / "moved").symlink_to(outside, target_is_directory=True)
    assert safe_file(folder, "a.png", {".png"}) == folder / "a.png"
    for name in ["link.png", "same.png", "inner.png", "../secret/b.png", "sub/a.png", "a.png/", "..", "", "a.PNG"]:
        assert safe_file(folder, name, {".png"}) is None, name
    assert safe_file(folder, "a.png", {".jpg"}) is None
    assert safe_file(tmp_path / "moved", "b.png", {".png"}) == tmp_path / "moved" / "b.png"  # the folder as given
    assert safe_file(folder, "b.png", {".png"}) is None
