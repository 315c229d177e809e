#!/usr/bin/env python
"""Quality benchmark: the default run against the paper's procedure, on several pairs at 512 px.

For each photograph/artwork pair, two whole commands of ``scripts/transfer.py`` are timed:

* **default**: only ``content``, ``style``, ``size`` and ``seeds: [0]`` set; everything else is
  the project's default (mean-normalised losses, faint noise around mid-grey, automatic
  coarse-to-fine pyramid);
* **paper**: the ``reference`` preset (:data:`jaxstyle.engine.presets.PRESETS`): the paper's
  procedure (white noise uniform on [0, 1], 500 L-BFGS iterations directly at full size, the whole
  artwork, zero padding, no lattice term) with the defaults' loss normalisation and alpha/beta,
  weighed by alpha/beta alone (:data:`REFERENCE`).

Runs are compared by the yardstick (:func:`jaxstyle.driver.lab.yardstick`: the mean-normalised
content loss plus 10 times the Gram style loss, VGG's own zero padding, the trimmed artwork), one
function for both, never by the runs' own totals, whose terms differ (the default's lattice term).
The table gives, per run: wall seconds of the whole command, the yardstick and its content and
style parts, and the speckle index
(:func:`jaxstyle.media.metrics.speckle_pair`) of the output, of the style image and of the photograph,
all at the same comparison size. A side-by-side sheet (photo, artwork, paper, default) is written.

The paper's procedure takes many minutes per pair on a CPU, so its results are kept in
``OUT/reference.json`` with their date and reused; ``--rerun-reference`` runs them again.

    python scripts/bench/quality.py                      # all pairs at 512 px
    python scripts/bench/quality.py --pairs leuvenA.jpg:starry_night.jpg --size 256
    python scripts/bench/quality.py --docs               # ... and write docs/quality.jpg and docs/gallery.jpg
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

from jaxstyle import load_vgg19
from jaxstyle.cli import run_main
from jaxstyle.core.errors import ConfigError
from jaxstyle.driver.bench import QUALITY_PAIR_TEXTS, parse_pairs
from jaxstyle.driver.lab import yardstick
from jaxstyle.engine.config import validate
from jaxstyle.engine.presets import PRESETS
from jaxstyle.media.images import contact_sheet, load_image, save_png
from jaxstyle.media.metrics import comparison_shape, speckle_index, speckle_pair
from jaxstyle.media.images import write_docs_jpeg

ROOT = Path(__file__).resolve().parents[2]

#: The reference: its preset (the paper's procedure in the default's normalisation).
REFERENCE = "reference"
#: How runs compare: the yardstick's content plus this times its style loss.
STYLE_WEIGHT = 10


def as_sets(settings: dict, prefix: str = "") -> list[str]:
    """A config's settings as ``--set key=value`` texts (nested keys dotted, values as YAML flow)."""
    out = []
    for key, value in settings.items():
        if isinstance(value, dict):
            out += as_sets(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out


PAPER = as_sets(PRESETS[REFERENCE].settings)


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


def measure(out: Path, content: Path, style: Path, wall: float, params) -> dict:
    """The yardstick of the run's image (the default's config for both runs), the run's own losses
    from its report, and speckle indices at the comparison size."""
    report = json.loads((out / "report.json").read_text())
    variant = report["variants"][0]
    image = Image.open(out / variant["image"]).convert("RGB")
    judge = validate({"content": str(content), "style": str(style), "output": str(out)})
    measured = yardstick(judge, params, np.asarray(image, np.float32)[None] / 255.0)
    y_content, y_style = float(measured["content"][0]), float(measured["style"][0])
    with Image.open(style) as s:
        speckle_out, speckle_style = speckle_pair(image, s)
    h, w = comparison_shape((image.height, image.width), Image.open(style).size[::-1])
    photo = load_image(content, shape=(h, w))
    loss = variant["final_loss"]
    return {"wall_s": round(wall, 1), "yardstick": y_content + STYLE_WEIGHT * y_style,
            "content": y_content, "style": y_style,
            "own_total": loss["total"], "speckle": round(speckle_out, 1), "speckle_style": round(speckle_style, 1),
            "speckle_photo": round(speckle_index(photo), 1), "image": str(out / variant["image"]),
            "shape": [image.height, image.width], "losses": report["config"]["losses"],
            "alpha": report["config"]["alpha"], "beta": report["config"]["beta"]}


def run_pairs(pairs, size: int, out_dir: Path, rerun_reference: bool) -> list[dict]:
    """Both runs of every pair (the reference from the cache where it is there); the table's rows."""
    params = load_vgg19()
    cache_path = out_dir / "reference.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    rows = []
    for name, content, style in pairs:
        key = f"{name}@{size}"
        slug = name.replace(":", "_").replace(".", "-")
        ref_out = out_dir / "paper" / f"{slug}_{size}"
        stale = key not in cache or cache[key].get("command_sets") != PAPER  # made with other settings
        if rerun_reference or stale or not Path(cache[key]["image"]).is_file():
            wall = run_command(content, style, size, ref_out, PAPER)
            cache[key] = {**measure(ref_out, content, style, wall, params), "date": datetime.date.today().isoformat(),
                          "machine": platform.node(), "command_sets": PAPER}
            cache_path.write_text(json.dumps(cache, indent=2) + "\n")
        ref = cache[key]
        out = out_dir / "default" / f"{slug}_{size}"
        wall = run_command(content, style, size, out, [])
        new = {**measure(out, content, style, wall, params), "date": datetime.date.today().isoformat()}
        ratio = {"yardstick": new["yardstick"] / ref["yardstick"], "time": new["wall_s"] / ref["wall_s"],
                 "speckle_vs_style": new["speckle"] / new["speckle_style"]}
        rows += [{"pair": name, "run": "paper", **ref},
                 {"pair": name, "run": "default", **new, "against_paper": {k: round(v, 3) for k, v in ratio.items()}}]
    return rows


def publish(rows: list[dict], pairs, size: int, date: str, out_dir: Path, docs: bool) -> None:
    """Print the table; write the side-by-side sheet (and, with ``docs``, the JPEGs in docs/)."""
    print(f"paper: the {REFERENCE} preset ({PRESETS[REFERENCE].about}); both runs measured by the yardstick, "
          f"content + {STYLE_WEIGHT} x style")
    cols = ["pair", "run", "wall_s", "yardstick", "content", "style", "speckle", "speckle_style", "speckle_photo"]
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        print("| " + " | ".join(cells) + " |")
    tiles, labels = [], []
    for name, content, style in pairs:
        ref, new = (next(r for r in rows if r["pair"] == name and r["run"] == run) for run in ("paper", "default"))
        a = new["against_paper"]
        print(f"{name}: default/paper yardstick {a['yardstick']:.2f}, time {a['time']:.2f}; "
              f"speckle / style's {a['speckle_vs_style']:.2f}")
        tiles += [load_image(content, shape=tuple(ref["shape"])), load_image(style, shape=tuple(ref["shape"])),
                  load_image(ref["image"]), load_image(new["image"])]
        labels += [f"{content.name}", f"{style.name}",
                   f"paper: {ref['yardstick']:.3g}, speckle {ref['speckle']:.0f}, {ref['wall_s']:.0f} s",
                   f"default: {new['yardstick']:.3g}, speckle {new['speckle']:.0f}, {new['wall_s']:.0f} s"]
    sheet = contact_sheet(tiles, labels, columns=4, tile=min(256, size),
                          title=f"photo, artwork, the paper's procedure, the default ({size} px, {date})")
    save_png(sheet, out_dir / "sheet.png")
    print(f"wrote {out_dir / 'sheet.png'}")
    if docs:
        write_docs_jpeg(sheet, ROOT / "docs" / "quality.jpg")
        gallery = contact_sheet(tiles[3::4], [f"{c.stem} in the style of {s.stem}" for _, c, s in pairs],
                                columns=len(pairs), tile=min(400, size))
        write_docs_jpeg(gallery, ROOT / "docs" / "gallery.jpg")
        print("wrote docs/quality.jpg and docs/gallery.jpg")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", nargs="+", default=list(QUALITY_PAIR_TEXTS), metavar="PHOTO:ARTWORK",
                    help="file names in examples/ (or paths), photo:artwork")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "quality")
    ap.add_argument("--rerun-reference", action="store_true", help="run the paper's procedure again")
    ap.add_argument("--no-run", action="store_true",
                    help="run nothing: print the table and write the sheets from OUT/quality.json")
    ap.add_argument("--docs", action="store_true",
                    help="also write the sheet as docs/quality.jpg and the default results as docs/gallery.jpg")
    args = ap.parse_args()
    if args.size < 32:
        raise ConfigError(f"--size must be at least 32, not {args.size}")
    pairs = parse_pairs(args.pairs)
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "quality.json"
    if args.no_run:
        if not results.is_file():
            raise ConfigError(f"--no-run needs {results}; run the benchmark first")
        saved = json.loads(results.read_text())
        rows, size, date = saved["rows"], saved["size"], saved["date"]
        pairs = [p for p in pairs if any(r["pair"] == p[0] for r in rows)]
    else:
        rows, size, date = run_pairs(pairs, args.size, args.out, args.rerun_reference), args.size, \
            datetime.date.today().isoformat()
        results.write_text(json.dumps({"date": date, "machine": platform.node(), "size": size, "rows": rows},
                                      indent=2) + "\n")
        print(f"wrote {results}")
    publish(rows, pairs, size, date, args.out, args.docs)
    return 0


if __name__ == "__main__":
    run_main(main)
