#!/usr/bin/env python
"""Quality benchmark: the default run against the paper's procedure, on several pairs at 512 px.

For each photograph/artwork pair, two whole commands of ``scripts/transfer.py`` are timed:

* **default**: only ``content``, ``style``, ``size`` and ``seeds: [0]`` set; everything else is
  the project's default (mean-normalised losses, faint noise around mid-grey, automatic
  coarse-to-fine pyramid);
* **paper**: the paper's procedure with the same losses and ratio: white noise uniform on [0, 1],
  500 L-BFGS iterations directly at full size (``noise: uniform``, ``scales: []``,
  ``optimizer.iterations: 500``).

The table gives, per run: wall seconds of the whole command, the full-size total, content and
style loss of the result (from its report.json), and the speckle index
(:func:`jaxstyle.metrics.speckle_pair`) of the output, of the style image and of the photograph,
all at the same comparison size. A side-by-side sheet (photo, artwork, paper, default) is written.

The paper's procedure takes many minutes per pair on a CPU, so its results are kept in
``OUT/reference.json`` with their date and reused; ``--rerun-reference`` runs them again.

    python scripts/quality.py                      # all pairs at 512 px
    python scripts/quality.py --pairs leuvenA.jpg:starry_night.jpg --size 256
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jaxstyle.cli import run_main  # noqa: E402
from jaxstyle.errors import ConfigError  # noqa: E402
from jaxstyle.images import contact_sheet, load_image, save_png  # noqa: E402
from jaxstyle.metrics import comparison_shape, speckle_index, speckle_pair  # noqa: E402

PAIRS = ("leuvenA.jpg:starry_night.jpg", "home.jpg:graf1.png", "fruits.jpg:starry_night.jpg")
#: The paper's procedure, on top of the defaults (same losses and alpha/beta).
PAPER = ["noise=uniform", "scales=[]", "optimizer.iterations=500"]


def run_command(content: Path, style: Path, size: int, out: Path, extra: list[str]) -> float:
    """Run scripts/transfer.py as a user would; the whole command's wall seconds."""
    sets = [f"content={content}", f"style={style}", f"size={size}", "seeds=[0]", f"output={out}",
            "overwrite=true", "print_every=0", *extra]
    cmd = [sys.executable, str(ROOT / "scripts" / "transfer.py")]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return wall


def measure(out: Path, content: Path, style: Path, wall: float) -> dict:
    """Losses from the run's report and speckle indices at the comparison size."""
    report = json.loads((out / "report.json").read_text())
    variant = report["variants"][0]
    image = Image.open(out / variant["image"]).convert("RGB")
    with Image.open(style) as s:
        speckle_out, speckle_style = speckle_pair(image, s)
    h, w = comparison_shape((image.height, image.width), Image.open(style).size[::-1])
    photo = load_image(content, shape=(h, w))
    loss = variant["final_loss"]
    return {"wall_s": round(wall, 1), "total": loss["total"], "content": loss["content"],
            "style": loss["style"], "speckle": round(speckle_out, 1), "speckle_style": round(speckle_style, 1),
            "speckle_photo": round(speckle_index(photo), 1), "image": str(out / variant["image"]),
            "shape": [image.height, image.width], "losses": report["config"]["losses"],
            "alpha": report["config"]["alpha"], "beta": report["config"]["beta"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", nargs="+", default=list(PAIRS), metavar="PHOTO:ARTWORK",
                    help="file names in examples/ (or paths), photo:artwork")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "quality")
    ap.add_argument("--rerun-reference", action="store_true", help="run the paper's procedure again")
    args = ap.parse_args()
    if args.size < 32:
        raise ConfigError(f"--size must be at least 32, not {args.size}")
    pairs = []
    for text in args.pairs:
        if text.count(":") != 1:
            raise ConfigError(f"--pairs takes photo:artwork, not {text!r}")
        paths = [Path(p) if Path(p).is_file() else ROOT / "examples" / p for p in text.split(":")]
        for p in paths:
            if not p.is_file():
                raise ConfigError(f"image not found: {p}")
        pairs.append((text, *paths))

    args.out.mkdir(parents=True, exist_ok=True)
    cache_path = args.out / "reference.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    rows, tiles, labels = [], [], []
    for name, content, style in pairs:
        key = f"{name}@{args.size}"
        slug = name.replace(":", "_").replace(".", "-")
        ref_out = args.out / "paper" / f"{slug}_{args.size}"
        if args.rerun_reference or key not in cache or not Path(cache[key]["image"]).is_file():
            wall = run_command(content, style, args.size, ref_out, PAPER)
            cache[key] = {**measure(ref_out, content, style, wall), "date": datetime.date.today().isoformat(),
                          "machine": platform.node(), "command_sets": PAPER}
            cache_path.write_text(json.dumps(cache, indent=2) + "\n")
        ref = cache[key]
        out = args.out / "default" / f"{slug}_{args.size}"
        wall = run_command(content, style, args.size, out, [])
        new = {**measure(out, content, style, wall), "date": datetime.date.today().isoformat()}
        for run, row in (("paper", ref), ("default", new)):
            rows.append({"pair": name, "run": run, **row})
        ratio = {"loss": new["total"] / ref["total"], "time": new["wall_s"] / ref["wall_s"],
                 "speckle_vs_style": new["speckle"] / new["speckle_style"]}
        rows[-1]["against_paper"] = {k: round(v, 3) for k, v in ratio.items()}
        h, w = ref["shape"]
        tiles += [load_image(content, shape=(h, w)), load_image(style, shape=(h, w)),
                  load_image(ref["image"]), load_image(new["image"])]
        labels += [f"{content.name}", f"{style.name}",
                   f"paper: {ref['total']:.3g}, speckle {ref['speckle']:.0f}, {ref['wall_s']:.0f} s",
                   f"default: {new['total']:.3g}, speckle {new['speckle']:.0f}, {new['wall_s']:.0f} s"]

    cols = ["pair", "run", "wall_s", "total", "content", "style", "speckle", "speckle_style", "speckle_photo"]
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        if "against_paper" in r:
            a = r["against_paper"]
            print(f"{r['pair']}: default/paper loss {a['loss']:.2f}, time {a['time']:.2f}; "
                  f"speckle / style's {a['speckle_vs_style']:.2f}")
    sheet = contact_sheet(tiles, labels, columns=4, tile=min(256, args.size),
                          title=f"photo, artwork, the paper's procedure, the default ({args.size} px, "
                                f"{datetime.date.today().isoformat()})")
    save_png(sheet, args.out / "sheet.png")
    (args.out / "quality.json").write_text(json.dumps(
        {"date": datetime.date.today().isoformat(), "machine": platform.node(), "size": args.size,
         "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out / 'sheet.png'} and {args.out / 'quality.json'}")
    return 0


if __name__ == "__main__":
    run_main(main)
