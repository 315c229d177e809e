"""The studio's API: the token and Host checks, uploads, the path rules, the queue and its worker
(start, order, stop, resume, delete), the queue kept across a restart, and a studio run's config
giving the same image bytes from the command line."""

from __future__ import annotations

import http.client
import json
import os
import struct
import time
import uuid
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from PIL import Image

from conftest import EXAMPLES
from jaxstyle import cli
from jaxstyle.engine.progress import RunHooks
from jaxstyle.engine.presets import QUICK_ITERATIONS
from jaxstyle.serve import studio as st
from jaxstyle.serve.server import AppServer
from jaxstyle.engine.progress import PAUSE_ENV

TOKEN = "test-token-123"
#: A run that takes a few seconds at most: 32 px, one stage, 3 iterations.
SMALL = {"size": 32, "seeds": "0", "advanced": "optimizer: {iterations: 3}\nprint_every: 0"}


def _png(w: int = 40, h: int = 30, colour=(200, 30, 30)) -> bytes:
    import io
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png(w: int, h: int) -> bytes:
    """A PNG whose header declares ``w`` x ``h`` pixels around a tiny body (never decodable)."""
    data = _png(1, 1)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


def _multipart(filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Client:
    """Requests to one studio, with the token's cookie unless told otherwise, and the paths sent
    exactly as given."""

    def __init__(self, server: AppServer):
        self.host, self.port = server.server_address

    def __call__(self, method: str, path: str, body=None, *, token: str | None = TOKEN, host: str | None = None,
                 content_type: str | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
        """``headers`` replace the page's own (for a POST: its Origin and the studio's header)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        host = host or f"127.0.0.1:{self.port}"
        own = {"Origin": f"http://{host}", st.STUDIO_HEADER: "1"} if method == "POST" else {}
        headers = {"Host": host, **(own if headers is None else headers)}
        if token is not None:
            headers["Cookie"] = f"{st.cookie_name(self.port)}={token}"
        if isinstance(body, (dict, list)):
            body, content_type = json.dumps(body).encode(), "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, dict(r.getheaders()), data

    def json(self, method: str, path: str, body=None, **kw) -> tuple[int, dict]:
        status, _, data = self(method, path, body, **kw)
        return status, json.loads(data)

    def state(self) -> dict:
        return self.json("GET", "/api/state")[1]

    def card(self, name: str) -> dict:
        return next(c for c in self.state()["cards"] if c["name"] == name)

    def wait(self, condition, timeout: float, what: str):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}: {self.state()['cards']}")


def _examples(folder: Path) -> Path:
    folder.mkdir()
    for name, src in (("photo.png", "leuvenA.jpg"), ("art.png", "starry_night.jpg")):
        Image.open(EXAMPLES / src).convert("RGB").resize((48, 36)).save(folder / name)
    return folder


@pytest.fixture
def held(tmp_path):
    """A studio whose queue is held (no worker), so what is queued stays queued."""
    s = st.Studio(tmp_path / "runs", _examples(tmp_path / "examples"))
    server = AppServer(st.make_app(s, TOKEN, "127.0.0.1", run_queue=False))
    yield SimpleNamespace(studio=s, client=Client(server), tmp=tmp_path)
    server.stop()


@pytest.fixture
def working(tmp_path, monkeypatch):
    """A studio with its worker; a run pauses after each chunk while ``pause`` exists."""
    pause = tmp_path / "pause"
    monkeypatch.setenv(PAUSE_ENV, str(pause))  # inherited by the worker's processes
    s = st.Studio(tmp_path / "runs", _examples(tmp_path / "examples"))
    server = AppServer(st.make_app(s, TOKEN, "127.0.0.1"))
    yield SimpleNamespace(studio=s, client=Client(server), tmp=tmp_path, pause=pause)
    pause.unlink(missing_ok=True)
    server.stop()


def _form(**kw) -> dict:
    return {"content": "examples/photo.png", "styles": ["examples/art.png"], **SMALL, **kw}


# ---- token and Host -------------------------------------------------------------------------------
def test_every_request_needs_the_token_and_a_host_naming_this_address(held):
    c = held.client
    for method, path in (("GET", "/"), ("GET", "/api/state"), ("POST", "/api/runs"), ("GET", "/runs/x/config.yaml")):
        status, _, body = c(method, path, token=None)
        assert status == 403 and b"token" in body
    assert c("GET", "/", token="wrong")[0] == 403
    assert c("GET", "/?token=wrong", token=None)[0] == 403
    # The printed address: the token goes into a strict, script-hidden cookie and out of the address bar.
    status, headers, _ = c("GET", f"/?token={TOKEN}", token=None)
    assert status == 302 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert f"{st.cookie_name(c.port)}={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, _, page = c("GET", "/")
    assert status == 200 and b"jaxstyle studio" in page and b"https://" not in page and b"http://" not in page
    # DNS rebinding: another name for this machine is refused even with the token.
    for host in ("evil.example", f"evil.example:{c.port}", "127.0.0.1.evil.example"):
        status, _, body = c("GET", "/api/state", host=host)
        assert status == 403 and b"Host" in body
    for host in (f"localhost:{c.port}", f"127.0.0.1:{c.port}"):
        assert c("GET", "/api/state", host=host)[0] == 200
    # A refused submission queued nothing.
    c("POST", "/api/runs", _form(), token=None)
    assert held.studio.jobs == []


# ---- uploads --------------------------------------------------------------------------------------
def test_an_upload_is_decoded_and_kept_under_a_generated_name(held):
    c = held.client
    body, ctype = _multipart("../../escape.png", _png())
    status, answer = c.json("POST", "/api/upload", body, content_type=ctype)
    assert status == 200 and answer["id"].startswith("uploads/") and answer["id"].endswith(".png")
    stored = held.studio.uploads / answer["id"].split("/")[1]
    assert stored.read_bytes() == _png() and "escape" not in stored.name
    assert not (held.tmp / "escape.png").exists() and not (held.tmp.parent / "escape.png").exists()
    assert answer["id"] in c.state()["inputs"]["uploads"]
    status, _, data = c("GET", "/inputs/" + answer["id"])
    assert status == 200 and data == _png()
    # A JPEG named .png is kept as what it is.
    import io
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG")
    body, ctype = _multipart("photo.png", buf.getvalue())
    assert c.json("POST", "/api/upload", body, content_type=ctype)[1]["id"].endswith(".jpg")
    # A clip is decoded too (its first frame) and kept as a clip.
    body, ctype = _multipart("clip.png", (EXAMPLES / "home_still.mp4").read_bytes())
    assert c.json("POST", "/api/upload", body, content_type=ctype)[1]["id"].endswith(".mp4")


@pytest.mark.parametrize("data, message", [
    (b"#!/bin/sh\nrm -rf ~\n", "not an image"),
    (_png()[:60], "not an image"),  # a truncated PNG
    (_bomb_png(20000, 20000), "more than the studio's"),  # beyond Pillow's own limit
    (_bomb_png(7000, 7000), "more than the studio's"),  # within Pillow's, beyond the studio's
])
def test_an_upload_that_is_not_a_whole_small_image_is_refused_with_a_message(held, data, message):
    body, ctype = _multipart("x.png", data)
    status, answer = held.client.json("POST", "/api/upload", body, content_type=ctype)
    assert status == 400 and message in answer["error"] and "\n" not in answer["error"]
    assert [p for p in held.studio.uploads.iterdir()] == []


def test_an_upload_over_the_byte_cap_is_refused(held):
    data = _png() + b"\0" * (st.UPLOAD_BYTES + 10)
    with pytest.raises(st.StudioError, match="larger than"):
        st.check_upload(data)
    body, ctype = _multipart("x.png", data)
    status, _, _ = held.client("POST", "/api/upload", body, content_type=ctype)
    assert status in (400, 413) and list(held.studio.uploads.iterdir()) == []


# ---- submissions: the form, the config module's messages, the path rules -------------------------------
@pytest.mark.parametrize("form, message", [
    (_form(advanced="sizee: 3"), "unknown config key 'sizee'"),
    (_form(advanced="optimizer: [1"), "advanced settings: invalid YAML"),
    (_form(advanced="- a list"), "must be a YAML mapping"),
    (_form(size=-5), "size"),
    (_form(balance=4), "between -3 and 1"),
    (_form(balance=-1, advanced="alpha: lots"), "alpha must be a number"),
    (_form(seeds="one two"), "seeds must be whole numbers"),
    (_form(preset="slow"), "preset must be one of"),
    (_form(preset=["quick"]), "preset must be one of"),
    (_form(content="examples/../../secret.png"), "unknown input"),
    (_form(content="/etc/passwd"), "unknown input"),
    (_form(styles=[]), "choose at least one artwork"),
    (_form(advanced="init: /etc/hosts"), "init: /etc/hosts is not an example"),
    (_form(advanced="masks: [/tmp/m.png]"), "is not an example"),
    (_form(advanced="weights: /tmp/w.h5"), "weights cannot be set"),
    (_form(advanced="terms: {'evil.py:f': 1.0}"), "term files are code"),
    (_form(advanced="sweep: {terms: [{'evil.py:f': 1.0}]}"), "term files are code"),
])
def test_a_refused_submission_says_why_in_one_line_and_queues_nothing(held, form, message):
    status, answer = held.client.json("POST", "/api/runs", form)
    assert status == 400 and message in answer["error"] and "\n" not in answer["error"]
    assert held.studio.jobs == [] and not list(held.studio.jobs_dir.iterdir())


def test_the_output_always_goes_to_a_new_folder_inside_the_studio_folder(held):
    elsewhere = held.tmp / "elsewhere"
    status, answer = held.client.json("POST", "/api/runs", _form(advanced=f"output: {elsewhere}\noverwrite: true"))
    assert status == 200 and any("output from the page is ignored" in n for n in answer["notes"])
    assert any("overwrite" in n for n in answer["notes"])
    saved = yaml.safe_load((held.studio.jobs_dir / f"{answer['name']}.yaml").read_text())
    assert Path(saved["output"]) == held.studio.folder / answer["name"] and "overwrite" not in saved
    assert not elsewhere.exists()


def test_the_form_knobs_make_the_config_they_name(held):
    resolve = lambda ident: "/x/" + ident  # noqa: E731
    raw = st.apply_preset(st.form_config({"content": "a.png", "styles": ["b.png", "c.png"], "balance": -2,
                                          "seeds": "3, 5", "style_loss": "mean_cov", "advanced": "alpha: 4"},
                                         resolve), "quick")
    assert raw["beta"] == pytest.approx(400.0) and raw["alpha"] == 4  # alpha/beta = 10^-2
    assert raw["style"] == ["/x/b.png", "/x/c.png"] and raw["seeds"] == [3, 5]
    assert raw["optimizer"] == {"iterations": QUICK_ITERATIONS} and raw["style_loss"] == "mean_cov"
    # fine: twice the default's iterations for that size (60 after coarser stages, 500 for one stage)
    fine = lambda size: st.apply_preset(st.form_config({"content": "a", "styles": ["b"], "size": size}, resolve),  # noqa: E731
                                        "fine")["optimizer"]
    assert fine(512) == {"iterations": 120} and fine(64) == {"iterations": 1000}


def test_term_files_are_accepted_with_allow_terms(tmp_path):
    inside = lambda p: True  # noqa: E731
    raw, _ = st.studio_rules({"content": "a", "style": "b", "terms": {"mine.py:f": 1.0}}, inside, allow_terms=True)
    assert raw["terms"] == {"mine.py:f": 1.0}
    with pytest.raises(st.StudioError):
        st.studio_rules({"content": "a", "style": "b", "terms": {"mine.py:f": 1.0}}, inside, allow_terms=False)
    assert st.studio_rules({"content": "a", "style": "b", "terms": {"tv": 1.0}}, inside, allow_terms=False)[0]


def test_queued_runs_wait_in_order_and_a_waiting_one_can_be_removed(held):
    c = held.client
    names = [c.json("POST", "/api/runs", _form(seeds=str(i)))[1]["name"] for i in range(3)]
    s = c.state()
    assert s["queue"] == names and s["running"] is None
    assert [c.card(n)["state"] for n in names] == ["waiting"] * 3
    assert c.json("POST", f"/api/runs/{names[1]}/remove")[0] == 200
    assert c.state()["queue"] == [names[0], names[2]]
    status, answer = c.json("POST", f"/api/runs/{names[1]}/remove")
    assert status == 400 and "not waiting" in answer["error"]
    for what in ("stop", "resume", "delete"):  # none of these applies to a waiting run
        assert c.json("POST", f"/api/runs/{names[0]}/{what}")[0] == 400
    # Stored in the folder: a new studio on it has the same queue.
    again = st.Studio(held.studio.folder, held.studio.examples)
    assert [j["name"] for j in again.jobs if j["state"] == "waiting"] == [names[0], names[2]]


def test_a_run_going_when_the_studio_died_shows_as_interrupted_or_failed(tmp_path):
    folder = tmp_path / "runs"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "checkpoint.npz").write_bytes(b"x")
    (folder / "b").mkdir()
    (folder / st.STATE_DIR).mkdir()
    (folder / st.STATE_DIR / "queue.json").write_text(json.dumps(
        [{"name": n, "state": "running", "submitted": 1.0} for n in ("a", "b")]))
    s = st.Studio(folder, tmp_path)
    assert [(j["name"], j["state"]) for j in s.jobs] == [("a", "interrupted"), ("b", "failed")]
    assert {c["name"]: c["state"] for c in s.views.cards()} == {"a": "interrupted", "b": "failed"}


@pytest.mark.parametrize("path", [
    "/runs/../runs/x/report.json", "/runs/%2e%2e/report.json", "/runs/.studio/queue.json",
    "/runs/done/..%2f..%2fsecret.png",
    "/runs/done/checkpoint.npz", "/runs/done/link.png", "/inputs/examples/..%2f..%2fsecret.png",
    "/inputs/uploads/../../secret.png", "/inputs/other/photo.png", "/runs/done/%2e%2e", "/runs//etc/passwd",
])
def test_no_path_leaves_the_folders_the_studio_serves(held, path):
    run = held.studio.folder / "done"
    run.mkdir()
    (run / "report.json").write_text("{}")
    (run / "checkpoint.npz").write_bytes(b"ckpt")
    Image.new("RGB", (2, 2)).save(held.tmp / "secret.png")
    os.symlink(held.tmp / "secret.png", run / "link.png")
    status, _, body = held.client("GET", path)
    assert status in (400, 403, 404) and b"ckpt" not in body and b"PNG" not in body
    assert held.client("GET", "/runs/done/report.json")[0] == 200


def test_delete_refuses_names_outside_the_folder(held):
    outside = held.tmp / "keep"
    outside.mkdir()
    for name in ("..", "../keep", ".studio", "%2e%2e"):
        held.client("POST", f"/api/runs/{name}/delete")
    assert outside.is_dir() and held.studio.state_dir.is_dir()


# ---- the worker ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_runs_go_one_at_a_time_finish_and_give_their_bytes_back_from_the_command_line(working, tmp_path):
    c = working.client
    a = c.json("POST", "/api/runs", _form(seeds="0"))[1]["name"]
    b = c.json("POST", "/api/runs", _form(seeds="1", style_loss="mean_cov"))[1]["name"]
    seen: set[tuple] = set()

    def both_done():
        s = c.state()
        states = {x["name"]: x["state"] for x in s["cards"]}
        seen.add((states[a], states[b]))
        return states[a] == states[b] == "finished"
    c.wait(both_done, 240, "both runs to finish")
    assert ("running", "running") not in seen and ("waiting", "running") not in seen  # one at a time, in order
    card = c.card(b)
    assert card["settings"] == {"size": 32, "seeds": [1], "style_loss": "mean_cov", "optimizer.iterations": 3,
                                "print_every": 0}
    assert card["content"] == "examples/photo.png" and card["styles"] == ["examples/art.png"]
    assert card["images"] and card["sheet"] in card["files"]
    status, _, image = c("GET", f"/runs/{b}/{card['images'][0]}")
    assert status == 200 and image[:4] == b"\x89PNG"
    # Use these settings: the form that gives the same config back.
    form = card["form"]
    assert form["content"] == "examples/photo.png" and form["style_loss"] == "mean_cov" and form["seeds"] == "1"
    assert yaml.safe_load(form["advanced"]) == {"optimizer": {"iterations": 3}, "print_every": 0}
    # config.yaml, then the command line with another output: the same image bytes.
    status, headers, config = c("GET", f"/runs/{b}/config.yaml")
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    (tmp_path / "config.yaml").write_bytes(config)
    again = tmp_path / "again"
    assert cli.main(["--config", str(tmp_path / "config.yaml"), "--set", f"output={again}"]) == 0
    assert (again / card["images"][0]).read_bytes() == image
    # Delete removes the folder, after which the card is gone.
    assert c.json("POST", f"/api/runs/{a}/delete")[0] == 200
    assert not (working.studio.folder / a).exists() and a not in [x["name"] for x in c.state()["cards"]]


@pytest.mark.slow
def test_a_running_run_stops_cleanly_and_resumes_from_its_card(working):
    c = working.client
    working.pause.touch()  # the run waits after its first chunk until this is removed
    name = c.json("POST", "/api/runs", _form(advanced="optimizer: {iterations: 40}\nprint_every: 10"))[1]["name"]
    c.wait(lambda: c("GET", "/watch/state.json")[0] == 200 and json.loads(c("GET", "/watch/state.json")[2])
           ["status"] == "running", 120, "the run's live page")
    assert c.card(name)["state"] == "running"
    status, _, page = c("GET", "/watch/")
    assert status == 200 and b"<canvas" in page  # the live page, relayed
    assert c.json("POST", f"/api/runs/{name}/stop")[0] == 200
    working.pause.unlink()
    c.wait(lambda: c.card(name)["state"] == "interrupted", 120, "the run to stop")
    assert (working.studio.folder / name / "checkpoint.npz").exists()
    assert c.card(name)["message"].startswith("stopped")
    assert c.json("POST", f"/api/runs/{name}/resume")[0] == 200
    c.wait(lambda: c.card(name)["state"] == "finished", 120, "the resumed run to finish")
    report = json.loads((working.studio.folder / name / "report.json").read_text())
    assert report["iterations"] == 40 and not (working.studio.folder / name / "checkpoint.npz").exists()


# ---- the command ----------------------------------------------------------------------------------
def test_jaxstyle_studio_prints_its_address_serves_and_stops_on_ctrl_c(tmp_path):
    import signal
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "jaxstyle.cli", "studio", "--port", "0", "--folder",
                             str(tmp_path / "runs"), "--examples", str(_examples(tmp_path / "examples"))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("studio: http://127.0.0.1:") and "/?token=" in line, line
        address = line.split()[-1]
        port, token = int(address.split(":")[2].split("/")[0]), address.split("token=")[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", f"/?token={token}")
        r = conn.getresponse()
        assert r.status == 302 and token in r.getheader("Set-Cookie")
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert (tmp_path / "runs" / st.STATE_DIR / "uploads").is_dir()


@pytest.mark.parametrize("args, message", [
    (["--folder", "{file}"], "exists and is not a directory"),
    (["--port", "{busy}"], "cannot serve on 127.0.0.1:"),
    (["--host", "203.0.113.7"], "cannot serve on 203.0.113.7:"),  # an address this machine does not have
])
def test_jaxstyle_studio_bad_options_are_one_line_and_exit_2(tmp_path, args, message):
    import socket
    import subprocess
    import sys
    (tmp_path / "file").write_text("x")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [a.format(file=tmp_path / "file", busy=busy.getsockname()[1]) for a in args]
        r = subprocess.run([sys.executable, "-m", "jaxstyle.cli", "studio", "--folder", str(tmp_path / "runs"), *args],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


@pytest.mark.slow
def test_a_run_that_fails_shows_the_command_lines_one_line_message_on_its_card(working):
    c = working.client
    name = c.json("POST", "/api/runs", _form(advanced="max_pixels: 100"))[1]["name"]  # valid, but the photo is larger
    card = c.wait(lambda: (lambda x: x if x["state"] == "failed" else None)(c.card(name)), 120, "the run to fail")
    assert "pixels" in card["message"] and "\n" not in card["message"]
    assert c.state()["running"] is None
    assert not (working.studio.folder / name).exists()  # it failed before making its folder
    assert c.json("POST", f"/api/runs/{name}/delete")[0] == 200  # its card goes all the same
    assert name not in [x["name"] for x in c.state()["cards"]] and working.studio.jobs == []


@pytest.mark.slow
def test_a_command_line_run_interrupted_elsewhere_resumes_from_its_card(working):
    """A run the command line started in the studio's folder and that was interrupted there: its
    card offers resume, which continues it from its checkpoint through its report's config."""
    from jaxstyle.engine.config import validate
    from jaxstyle.driver.job import run_and_save
    folder = working.studio.folder / "from-the-command-line"
    cfg = validate({"content": str(working.studio.examples / "photo.png"), "style": str(working.studio.examples /
                    "art.png"), "size": 32, "output": str(folder), "print_every": 4, "optimizer": {"iterations": 12}})
    cut = run_and_save(cfg, hooks=RunHooks(log=lambda line: None, should_stop=lambda: True))
    assert cut.checkpoint is not None and (folder / "checkpoint.npz").exists()
    c = working.client
    assert c.card(folder.name)["state"] == "interrupted"
    assert c.json("POST", f"/api/runs/{folder.name}/resume")[0] == 200
    c.wait(lambda: c.card(folder.name)["state"] == "finished", 120, "the resumed run to finish")
    report = json.loads((folder / "report.json").read_text())
    assert report["iterations"] == 12 and report["resumed_from"].startswith("stage 1")
