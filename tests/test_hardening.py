"""Tried as an attacker and as a careless user would: term files never imported where they were not
allowed, no state change from another origin, YAML and JSON that cannot blow up, a folder of
foreign files that never breaks the studio, one line and exit 2 for every bad command line, and
outputs that stay consistent when a run replaces another."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from conftest import EXAMPLES
from jaxstyle import cli
from jaxstyle.serve import studio as st
from jaxstyle.engine.config import load_config, validate
from jaxstyle.core.errors import ConfigError, JaxstyleError, OutputError
from jaxstyle.serve.server import AppServer
from test_studio import TOKEN, Client, _bomb_png, _examples, _form, _multipart, _png

#: A term file that leaves a marker when it is imported (and would kill a server that imports it).
MARKER_TERM = """
import pathlib
pathlib.Path(__file__).with_name("imported").write_text("yes")
raise SystemExit(0)

def f(image, features, targets):
    return 0.0
"""


@pytest.fixture
def lab(tmp_path):
    """A held studio (no worker) with a marker term file beside its folder."""
    term = tmp_path / "evil.py"
    term.write_text(MARKER_TERM)
    s = st.Studio(tmp_path / "runs", _examples(tmp_path / "examples"))
    server = AppServer(st.make_app(s, TOKEN, "127.0.0.1", run_queue=False))
    yield SimpleNamespace(studio=s, client=Client(server), tmp=tmp_path, term=term, marker=tmp_path / "imported")
    server.stop()


# ---- term files are code: imported only where allowed, and only by the run ------------------------
@pytest.mark.parametrize("preset", ["default", "quick", "fine"])
def test_a_term_file_is_never_imported_by_a_studio_without_allow_terms(lab, preset):
    for advanced in (f"terms: {{'{lab.term}:f': 1.0}}", f"sweep: {{terms: [{{'{lab.term}:f': 1.0}}]}}"):
        status, answer = lab.client.json("POST", "/api/runs", _form(preset=preset, advanced=advanced))
        assert status == 400 and "term files are code" in answer["error"]
    assert not lab.marker.exists() and lab.studio.jobs == []


def test_a_studio_with_allow_terms_queues_a_term_file_without_importing_it(lab):
    lab.studio.allow_terms = True
    status, answer = lab.client.json("POST", "/api/runs", _form(preset="fine", advanced=f"terms: {{'{lab.term}:f': 1.0}}"))
    assert status == 200, answer
    assert not lab.marker.exists()  # validation checked the name and the path; the worker imports it


def test_validating_a_config_never_imports_its_term_files(lab):
    cfg = validate({"content": "a.png", "style": "b.png", "terms": {f"{lab.term}:f": 1.0}})
    assert f"{lab.term}:f" in cfg.terms and not lab.marker.exists()
    with pytest.raises(ConfigError, match="not found"):
        validate({"content": "a.png", "style": "b.png", "terms": {f"{lab.tmp}/missing.py:f": 1.0}})


def test_the_command_line_imports_a_term_file_before_writing_and_reports_its_exit_in_one_line(lab):
    out = lab.tmp / "out"
    with pytest.raises(ConfigError, match="cannot load .*SystemExit"):
        cli.main([str(EXAMPLES / "leuvenA.jpg"), str(EXAMPLES / "starry_night.jpg"), "-o", str(out),
                  "--set", f"terms={{'{lab.term}:f': 1.0}}"])
    assert lab.marker.exists() and not out.exists()  # the command line is where a term runs


def test_resume_of_a_crafted_command_line_folder_passes_the_studio_rules(lab):
    folder = lab.studio.folder / "crafted"
    folder.mkdir()
    (folder / "checkpoint.npz").write_bytes(b"x")
    base = {"content": str(lab.studio.examples / "photo.png"), "style": str(lab.studio.examples / "art.png"), "size": 32}
    for config, message in (({**base, "terms": {f"{lab.term}:f": 1.0}}, "term files are code"),
                            ({**base, "content": "/etc/hostname"}, "is not an example"),
                            ({**base, "weights": str(lab.tmp / "w.h5")}, "weights cannot be set"),
                            ({**base, "size": 100000}, "--max-size"),
                            ("not a mapping", "no config the studio can read")):
        (folder / "report.json").write_text(json.dumps({"config": config}))
        status, answer = lab.client.json("POST", "/api/runs/crafted/resume")
        assert status == 400 and message in answer["error"], answer
    assert not lab.marker.exists() and lab.studio.jobs == [] and not list(lab.studio.jobs_dir.iterdir())
    (folder / "report.json").write_text(json.dumps({"config": base}))  # a clean one resumes
    assert lab.client.json("POST", "/api/runs/crafted/resume")[0] == 200


# ---- cross-site requests ----------------------------------------------------------------------------
def _routes(lab) -> list[str]:
    (lab.studio.folder / "victim").mkdir()
    return ["/api/upload", "/api/runs", *(f"/api/runs/victim/{a}" for a in ("remove", "stop", "resume", "delete"))]


@pytest.mark.parametrize("case", ["no token", "foreign origin", "other port", "no origin", "same-site fetch",
                                  "form", "plain", "multipart"])
def test_every_post_route_refuses_what_another_page_could_send(lab, case):
    c, own = lab.client, f"http://127.0.0.1:{lab.client.port}"
    body, ctype, headers, token = json.dumps(_form()).encode(), "application/json", None, TOKEN
    page = {"Origin": own, st.STUDIO_HEADER: "1"}
    if case == "no token":
        token = None
    elif case == "foreign origin":
        headers = {**page, "Origin": "http://evil.example"}
    elif case == "other port":  # a notebook or dev server on this machine: same site, another origin
        headers = {**page, "Origin": "http://127.0.0.1:8000"}
    elif case == "no origin":
        headers = {st.STUDIO_HEADER: "1"}
    elif case == "same-site fetch":
        headers = {**page, "Sec-Fetch-Site": "same-site"}
    elif case == "form":
        body, ctype, headers = b"content=examples%2Fphoto.png", "application/x-www-form-urlencoded", {"Origin": own}
    elif case == "plain":
        body, ctype, headers = json.dumps(_form()).encode(), "text/plain", {"Origin": own}
    else:
        (body, ctype), headers = _multipart("x.png", _png()), {"Origin": own}
    for route in _routes(lab):
        status, _, answer = c("POST", route, body, token=token, content_type=ctype, headers=headers)
        assert status == 403, (route, answer)
    assert (lab.studio.folder / "victim").is_dir() and lab.studio.jobs == []
    assert list(lab.studio.uploads.iterdir()) == []


def test_a_cors_preflight_is_refused(lab):
    status, headers, _ = lab.client("OPTIONS", "/api/runs", headers={
        "Origin": "http://127.0.0.1:8000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": st.STUDIO_HEADER})
    assert status in (403, 405) and "Access-Control-Allow-Origin" not in headers


def test_the_token_cookie_is_named_by_port_and_any_token_text_is_only_refused(lab):
    c = lab.client
    status, headers, _ = c("GET", f"/?token={TOKEN}", token=None)
    assert headers["Set-Cookie"].startswith(f"jaxstyle_studio_{c.port}=")
    # Another studio's cookie (another port's name) is not this one's.
    conn_headers = {"Cookie": f"jaxstyle_studio_{c.port + 1}={TOKEN}"}
    assert c("GET", "/api/state", token=None, headers=conn_headers)[0] == 403
    for bad in ("t\u00e9st", "\u2603" * 30, "%00"):
        assert c("GET", f"/api/state?token={urllib.parse.quote(bad)}", token=None)[0] == 403
        assert c("GET", "/api/state", token=bad.encode("utf-8").decode("latin-1"))[0] == 403


def test_every_answer_carries_the_security_headers_and_the_page_scripts_by_hash(lab):
    c = lab.client
    status, headers, page = c("GET", "/")
    csp = headers["Content-Security-Policy"]
    scripts = re.findall(rb"<script>(.*?)</script>", page, re.S)
    assert status == 200 and scripts
    script_src = re.search(r"script-src ([^;]*)", csp).group(1)
    assert "unsafe-inline" not in script_src and "frame-ancestors 'none'" in csp
    for script in scripts:  # each inline script is allowed by its own hash, and by nothing looser
        assert f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'" in script_src
    assert b" onsubmit=" not in page and b" onclick=" not in page  # inline handlers would not run
    for path in ("/api/state", "/runs/none/report.json", "/nothing"):
        h = c("GET", path)[1]
        assert h["X-Content-Type-Options"] == "nosniff" and "frame-ancestors 'none'" in h["Content-Security-Policy"]
    assert c("GET", "/", token=None)[1]["X-Content-Type-Options"] == "nosniff"  # a refusal too


# ---- YAML and JSON that cannot blow up ------------------------------------------------------------
BILLION = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" \
          "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\nsize: [*d, *d]\n"


@pytest.mark.parametrize("text, message", [
    (BILLION, "aliases"), ("size: " + "[" * 200 + "]" * 200, "nested more than"),
    ("seeds: [" + ", ".join(str(i) for i in range(30000)) + "]", "more than 20,000 values"),
    ("size: !!python/object/apply:os.system [echo hi]", "invalid YAML"),
])
def test_yaml_that_would_blow_up_is_one_short_line_everywhere(lab, tmp_path, text, message):
    start = time.monotonic()
    config = tmp_path / "cfg.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(config)
    assert len(str(caught.value)) < 200
    key, _, value = text.partition(": ") if text.startswith(("size", "seeds")) else ("size", "", "[*x]")
    with pytest.raises(ConfigError) as caught:
        load_config(None, [f"{key}={value}"])
    assert len(str(caught.value)) < 200
    status, answer = lab.client.json("POST", "/api/runs", _form(advanced=text))
    assert status == 400 and message in answer["error"] and len(answer["error"]) < 200
    assert time.monotonic() - start < 10


def test_a_long_value_is_quoted_in_at_most_80_characters():
    with pytest.raises(ConfigError) as caught:
        validate({"content": "a", "style": "b", "size": "x" * 100000})
    assert len(str(caught.value)) < 140 and "..." in str(caught.value)


@pytest.mark.parametrize("body", [b"[" * 50000 + b"]" * 50000, b'{"a":' * 100 + b"1" + b"}" * 100,
                                  b"x" * (st.JSON_BYTES + 10), b"\xff\xfe", b"null", b"[]"])
def test_json_bodies_that_would_blow_up_are_refused_in_one_line(lab, body):
    status, _, answer = lab.client("POST", "/api/runs", body, content_type="application/json")
    assert status == 400 and b"\n" not in answer.strip() and len(answer) < 300, answer[:200]


# ---- whatever is in the folder, the studio stays up and loses nothing --------------------------------
@pytest.mark.parametrize("report", ["[]", '{"timing": 5}', '{"variants": [1, 2]}', '{"config": "x"}',
                                    '{"sheet": 3}', "not json", '{"config": {"size": "huge"}}', "[" * 5000])
def test_a_foreign_report_becomes_an_unreadable_card_never_a_500(lab, report):
    folder = lab.studio.folder / "foreign"
    folder.mkdir()
    (folder / "report.json").write_text(report)
    status, state = lab.client.json("GET", "/api/state")
    assert status == 200
    card = next(c for c in state["cards"] if c["name"] == "foreign")
    assert card["state"] in ("unreadable", "failed") and card["form"] == {}
    for what in ("resume", "delete"):
        assert lab.client("POST", f"/api/runs/foreign/{what}")[0] < 500
    assert lab.client("GET", "/runs/foreign/config.yaml")[0] == 404


@pytest.mark.parametrize("text", ["{not json", '{"name": "a"}', '[{"name": 5, "state": "waiting"}]',
                                  '[{"name": "../x", "state": "waiting"}]', '[{"name": "a", "state": "odd"}]', "[" * 5000])
def test_an_unreadable_queue_file_is_moved_aside_with_one_warning_never_overwritten(tmp_path, capsys, text):
    folder = tmp_path / "runs"
    (folder / st.STATE_DIR).mkdir(parents=True)
    (folder / st.STATE_DIR / "queue.json").write_text(text)
    s = st.Studio(folder, tmp_path)
    assert s.jobs == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ") and "moved to queue.unreadable-" in err
    aside = list((folder / st.STATE_DIR).glob("queue.unreadable-*.json"))
    assert len(aside) == 1 and aside[0].read_text() == text
    s.queue.save()
    assert aside[0].read_text() == text


# ---- caps -----------------------------------------------------------------------------------------------
def test_the_studio_caps_are_one_line_each(lab):
    lab.studio.caps = st.Caps(queue=2, variants=3, size=40, iterations=50, frames=5, uploads_mb=1)
    c = lab.client
    for form, message in ((_form(seeds="0 1 2 3"), "--max-variants"), (_form(size=48), "--max-size"),
                          (_form(advanced="optimizer: {iterations: 60}"), "--max-iterations"),
                          (_form(content="examples/clip.mp4"), "--max-frames")):
        status, answer = c.json("POST", "/api/runs", form)
        assert status == 400 and message in answer["error"], answer
    for _ in range(2):
        assert c.json("POST", "/api/runs", _form())[0] == 200
    status, answer = c.json("POST", "/api/runs", _form())
    assert status == 400 and "--max-queue" in answer["error"] and len(lab.studio.jobs) == 2
    big = np.random.default_rng(0).integers(0, 255, (700, 700, 3), np.uint8)  # ~1.4 MB as PNG
    import io
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, "PNG")
    body, ctype = _multipart("x.png", buf.getvalue())
    status, answer = c.json("POST", "/api/upload", body, content_type=ctype)
    assert status == 400 and "--max-uploads-mb" in answer["error"]


@pytest.fixture(autouse=True)
def _clip_example(request):
    """The caps test offers a clip among the examples."""
    if request.node.name.startswith("test_the_studio_caps"):
        lab = request.getfixturevalue("lab")
        (lab.studio.examples / "clip.mp4").write_bytes((EXAMPLES / "home_still.mp4").read_bytes())


# ---- the command line: one line, exit 2, nothing written ---------------------------------------------
def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jaxstyle.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.mark.parametrize("args, message", [
    (["PHOTO", "ART", "--serve", "99999", "-o", "out"], "--serve must be a port"),
    (["studio", "--port", "99999", "--folder", "out"], "--port must be from 0 to 65535"),
    (["studio", "--max-queue", "0", "--folder", "out"], "--max-queue must be at least 1"),
    (["PHOTO", "ART", "-o", "out", "--num-processes", "2"], "needs --coordinator HOST:PORT"),
    (["PHOTO", "ART", "-o", "out", "--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"],
     "--coordinator must be HOST:PORT"),
    (["PHOTO", "ART", "-o", "out", "--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be from 0 to 1"),
    (["PHOTO", "ART", "-o", "out", "--set", "size=" + "[" * 3000 + "]" * 3000], "nested more than"),
    (["PHOTO", "ART", "-o", "out.png", "--seeds", "0", "1"], "names one image"),
])
def test_bad_command_lines_are_one_line_exit_2_and_write_nothing(tmp_path, args, message):
    args = [str(EXAMPLES / "leuvenA.jpg") if a == "PHOTO" else str(EXAMPLES / "starry_night.jpg") if a == "ART"
            else a for a in args]
    r = _cli(args, tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_multi_host_start_that_fails_is_one_line(tmp_path, monkeypatch):
    import jax

    def refuse(**kw):
        raise RuntimeError("UNAVAILABLE: failed to connect to all addresses\nmore detail")
    monkeypatch.setattr(jax.distributed, "initialize", refuse)
    with pytest.raises(ConfigError, match="cannot start the multi-host run: UNAVAILABLE: failed to connect") as e:
        cli.main([str(EXAMPLES / "leuvenA.jpg"), str(EXAMPLES / "starry_night.jpg"), "-o", str(tmp_path / "o"),
                  "--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "1"])
    assert "\n" not in str(e.value) and not (tmp_path / "o").exists()


def test_a_frame_folder_holding_a_decompression_bomb_is_one_line(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.new("RGB", (40, 30)).save(frames / f"{i:03d}.png")
    (frames / "002.png").write_bytes(_bomb_png(30000, 30000))
    with pytest.raises(JaxstyleError, match="002.png: .*(exceeds the limit|too large)"):
        cli.main([str(frames), str(EXAMPLES / "starry_night.jpg"), "-o", str(tmp_path / "o"), "--size", "32"])
    assert not (tmp_path / "o").exists()


# ---- outputs stay consistent -------------------------------------------------------------------------
TINY = ["--size", "32", "--set", "optimizer.iterations=2", "--set", "scales=[]", "--set", "print_every=0"]


def test_an_overwrite_removes_the_earlier_runs_files_only_and_keeps_the_users(tmp_path):
    out = tmp_path / "out"
    photo, art = str(EXAMPLES / "leuvenA.jpg"), str(EXAMPLES / "starry_night.jpg")
    assert cli.main([photo, art, "-o", str(out), "--seeds", "0", "1", "2", *TINY]) == 0
    first = json.loads((out / "report.json").read_text())["files"]
    assert {"000_seed0.png", "002_seed2.png", "sheet.png", "report.json"} <= set(first)
    (out / "notes.txt").write_text("mine")
    (out / "003_seed3.png").write_bytes(b"also mine: no run recorded it")
    assert cli.main([photo, art, "-o", str(out), "--seeds", "5", *TINY, "--set", "overwrite=true"]) == 0
    left = sorted(p.name for p in out.iterdir())
    assert left == ["000_seed5.png", "003_seed3.png", "losses.png", "notes.txt", "report.json", "result.npz"], left
    assert json.loads((out / "report.json").read_text())["files"] == ["000_seed5.png", "losses.png", "result.npz",
                                                                      "report.json"]


def test_o_name_png_writes_that_file_and_the_runs_other_files_beside_it(tmp_path):
    target = tmp_path / "result.png"
    assert cli.main([str(EXAMPLES / "leuvenA.jpg"), str(EXAMPLES / "starry_night.jpg"), "-o", str(target), *TINY]) == 0
    assert target.is_file() and Image.open(target).format == "PNG"
    folder = tmp_path / "result"
    assert target.read_bytes() == (folder / "000_seed0.png").read_bytes() and (folder / "report.json").is_file()
    with pytest.raises(OutputError, match="already exists"):  # nothing a user had is replaced unasked
        cli.main([str(EXAMPLES / "leuvenA.jpg"), str(EXAMPLES / "starry_night.jpg"), "-o", str(target), *TINY])


# ---- fuzz: the validator and the studio's JSON endpoints -----------------------------------------------
from hypothesis import HealthCheck, given, settings, strategies as hs  # noqa: E402

from jaxstyle.engine.config import KEYS  # noqa: E402

SCALARS = hs.one_of(hs.none(), hs.booleans(), hs.integers(-10**12, 10**12), hs.integers(), hs.floats(),
                    hs.text(max_size=40), hs.sampled_from(["auto", "mean", "paper", "gram", "conv1_1", "tv",
                                                           "a.py:f", "noise", "content", "/", "\0", "png"]))
VALUES = hs.recursive(SCALARS, lambda inner: hs.one_of(hs.lists(inner, max_size=4),
                                                       hs.dictionaries(hs.one_of(hs.text(max_size=12), hs.sampled_from(
                                                           ["conv4_2", "iterations", "tv", "alpha", "start"])),
                                                           inner, max_size=4)), max_leaves=12)
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(hs.dictionaries(hs.sampled_from([k for k in KEYS if k not in ("content", "style")]), VALUES, max_size=4))
def test_fuzz_any_config_validates_or_is_one_config_error(values):
    raw = {"content": str(EXAMPLES / "leuvenA.jpg"), "style": str(EXAMPLES / "starry_night.jpg"), **values}
    try:
        validate(raw)
    except ConfigError as exc:
        assert "\n" not in str(exc) and len(str(exc)) <= 600


@FUZZ
@given(hs.sampled_from(["/api/runs", "/api/runs/x/remove", "/api/runs/x/resume", "/api/runs/x/delete",
                        "/api/runs/x/stop"]),
       hs.one_of(VALUES, hs.dictionaries(hs.sampled_from(["content", "styles", "size", "seeds", "balance", "preset",
                                                          "advanced", "style_loss", "preserve_colors", "style_scale"]),
                                         VALUES, max_size=6)))
def test_fuzz_the_studio_answers_any_json_with_a_4xx_or_2xx_and_logs_no_exception(fuzzed, route, body):
    status, _, answer = fuzzed.client("POST", route, json.dumps(body).encode(), content_type="application/json")
    assert status < 500, answer
    assert fuzzed.errors == [], fuzzed.errors


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """One held studio for the fuzz test, with a handler catching whatever aiohttp logs as an error."""
    import logging
    tmp = tmp_path_factory.mktemp("fuzz")
    s = st.Studio(tmp / "runs", _examples(tmp / "examples"), caps=st.Caps(queue=10**6))
    (s.folder / "x").mkdir()
    server = AppServer(st.make_app(s, TOKEN, "127.0.0.1", run_queue=False))
    errors: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record):
            errors.append(record.getMessage())
    handler = Catch(level=logging.ERROR)
    logging.getLogger("aiohttp").addHandler(handler)
    yield SimpleNamespace(client=Client(server), errors=errors)
    logging.getLogger("aiohttp").removeHandler(handler)
    server.stop()
