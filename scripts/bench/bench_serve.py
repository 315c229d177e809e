#!/usr/bin/env python
"""What the live page costs a run: the main job with and without a watched ``--serve`` page.

The main job with ``--serve`` and a browser watching the page, against the main job without it,
in alternating pairs; prints a table and writes JSON.

Each run is a fresh process (``python scripts/transfer.py --config CONFIG``, its output in a
temporary folder). Its time is the report's ``run_s`` (start of the optimisation to its end) and
the wall time from the process's start to the run's last line. With ``--serve`` a headless chromium
(Debian's chromium and chromium-driver, driven by selenium) keeps the page open, so the page polls
its state every second and fetches each new image, as a user's would.

    python scripts/bench/bench_serve.py                      # 5 pairs of the README's main job
    python scripts/bench/bench_serve.py --pairs 3 --set size=128
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "scripts" / "transfer.py")


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def one_run(config: str, sets: list[str], out: Path, serve: bool) -> dict:
    """One run of the job; with ``serve`` a browser opens the page as soon as it is up."""
    args = [sys.executable, SCRIPT, "--config", config, "--set", f"output={out}", *sum((["--set", s] for s in sets), [])]
    if serve:
        args += ["--serve", "0"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    ended, driver, lines = None, None, []
    err: list[str] = []
    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()
    for line in proc.stdout:
        lines.append(line)
        if serve and line.startswith("live page: "):
            driver = browser()
            driver.get(line.split()[-1])
        if line.startswith("wrote ") or line.startswith("serving the results"):
            ended = time.perf_counter() - t0
            if serve:
                polls = driver.execute_script("return window.jaxstyle.polls") if driver else 0
                updates = driver.execute_script("return window.jaxstyle.imageUpdates") if driver else 0
                driver.quit()
                proc.send_signal(2)  # SIGINT ends the serving
            break
    proc.communicate(timeout=120)
    if proc.returncode != 0 or ended is None:
        raise SystemExit(f"run failed ({proc.returncode}): {''.join(err)[-500:]}")
    report = json.loads((out / "report.json").read_text())
    row = {"serve": serve, "run_s": report["timing"]["run_s"], "wall_s": round(ended, 2)}
    if serve:
        row.update(page_polls=polls, page_image_updates=updates)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="examples/config.yaml", help="relative to the repository")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--json", default="bench_serve.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="jaxstyle-bench-serve-") as tmp:
        for i in range(args.pairs):
            # Alternate which goes first, so a drift of the machine's speed favours neither.
            for serve in ((False, True) if i % 2 == 0 else (True, False)):
                rows.append({"pair": i, **one_run(args.config, args.sets, Path(tmp) / f"{i}-{serve}", serve)})
                print(json.dumps(rows[-1]), flush=True)
    ratios = {}
    for key in ("run_s", "wall_s"):
        pairs = [(next(r[key] for r in rows if r["pair"] == i and r["serve"]),
                  next(r[key] for r in rows if r["pair"] == i and not r["serve"])) for i in range(args.pairs)]
        ratios[key] = statistics.median(a / b for a, b in pairs)
    print(f"\nmedian ratio with --serve and a browser / without, over {args.pairs} pairs: "
          f"run_s {ratios['run_s']:.4f}, wall {ratios['wall_s']:.4f}")
    Path(args.json).write_text(json.dumps({
        "date": datetime.date.today().isoformat(), "machine": platform.node(), "cpus": os.cpu_count(),
        "config": args.config, "sets": args.sets, "rows": rows, "median_ratio": ratios}, indent=2) + "\n")


if __name__ == "__main__":
    main()
