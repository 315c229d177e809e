"""How consistent and how stylised a clip comes out, per schedule: the benchmark of docs/video.md.

For each schedule (per-frame stylisation, ``temporal: 0``; ``sequential``; ``multipass``) on the
same frames, seed and iterations, it measures:

* the warping error (Lai et al., ECCV 2018) with Farneback's flow on the original frames, also of
  the input clip itself;
* the mean yardstick style and content losses per frame (docs/loss-lab.md: mean-normalised Gram
  style loss and content loss, each frame against its own photograph);
* drift: over pixels that stay still in the source (after a 3 x 3 blur, frame-to-frame change
  under 4 levels throughout), the mean absolute change from the first to the last stylised frame,
  in 8-bit levels; skipped, and said, when under a tenth of the frame is still;
* seconds per frame (compilation left out), and the optical flow's share; ``per-frame-solo``
  runs the per-frame schedule's frames one at a time, to see what one batch saves.

    python scripts/bench/video_quality.py --clip examples/leuven_pan.mp4 --size 128 --frames 12 --every 2 \\
        [--temporal 100] [--schedules per-frame sequential multipass] [--json out.json] [--frames-out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from jaxstyle.driver.clip import load_clip, run_clip
from jaxstyle.engine.progress import RunHooks
from jaxstyle.engine.config import validate
from jaxstyle.media.flow import warping_error
from jaxstyle.driver.lab import yardstick
from jaxstyle.engine.progress import Watchers
from jaxstyle.model.weights import load_vgg19

ROOT = Path(__file__).resolve().parents[2]


def box3(a: np.ndarray) -> np.ndarray:
    """3 x 3 mean over the two spatial axes of ``(..., H, W, C)``, edges repeated."""
    p = np.pad(a, [(0, 0)] * (a.ndim - 3) + [(1, 1), (1, 1), (0, 0)], mode="edge")
    h, w = a.shape[-3:-1]
    return sum(p[..., dy:dy + h, dx:dx + w, :] for dy in range(3) for dx in range(3)) / 9.0


def drift(stylised: np.ndarray, original: np.ndarray) -> dict:
    """Mean |last - first| stylised frame, in levels, over the source's still pixels (or why not)."""
    levels = box3(np.asarray(original, np.float64)) * 255
    still = np.all(np.abs(np.diff(levels, axis=0)) < 4, axis=(0, -1))
    share = float(still.mean())
    if share < 0.1:
        return {"still_share": round(share, 3), "drift_levels": None,
                "note": f"skipped: only {100 * share:.1f} % of the frame is still in the source"}
    change = np.abs(np.asarray(stylised[-1], np.float64) - stylised[0]) * 255
    return {"still_share": round(share, 3), "drift_levels": round(float(change[still].mean()), 3)}


def later_frames(report: dict) -> dict:
    """A sequential clip's frames after the first: seconds a frame (the runs' own, compilation and
    flow left out) and iterations a frame; nothing for a schedule of other runs."""
    runs = report["clip"]["runs"][1:]
    if report["clip"].get("mode") != "sequential" or not runs:
        return {}
    return {"later_s_per_frame": sum(r["run_s"] - r["compile_s"] for r in runs) / len(runs),
            "later_iterations": sum(r["iterations"] for r in runs) / len(runs)}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=str(ROOT / "examples" / "leuven_pan.mp4"))
    ap.add_argument("--style", default=str(ROOT / "examples" / "starry_night.jpg"))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=100, help="multipass: the first pass's iterations; with --pass-iterations, per-frame stylisation's")
    ap.add_argument("--first-iterations", type=int, default=None,
                    help="sequential: the first frame's iterations (default: as many as per-frame stylisation "
                         "gives every frame, --iterations + (passes - 1) x --pass-iterations)")
    ap.add_argument("--frame-iterations", type=int, default=40, help="sequential: each later frame")
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--pass-iterations", type=int, default=20)
    ap.add_argument("--temporal", type=float, nargs="+", default=None,
                    help="default: the config's; several values run as one sweep (one batch)")
    ap.add_argument("--warp", default=None, help="video.warp (default: the config's)")
    ap.add_argument("--anchor", action="store_true", help="video.anchor: true (sequential)")
    ap.add_argument("--hold", type=float, default=None, help="video.hold (sequential; default: the config's)")
    ap.add_argument("--warm", choices=("true", "false"), default=None,
                    help="video.warm (sequential; default: the config's): start each frame's L-BFGS with the "
                         "frame before's memory")
    ap.add_argument("--settle", type=float, default=None,
                    help="video.settle (sequential; default: the config's; 0: every frame runs --frame-iterations)")
    ap.add_argument("--schedules", nargs="+", default=["per-frame", "sequential", "multipass"])
    ap.add_argument("--json", help="write the table as JSON here")
    ap.add_argument("--frames-out", help="save each schedule's frames as an .npy here")
    ap.add_argument("--preview", help="write an animated WebP of the input and each row's frames, side by side")
    return ap


def base_config(args) -> dict:
    """The config every schedule starts from."""
    base = {"content": args.clip, "style": args.style, "size": args.size, "output": "/nonexistent",
            "print_every": 0, "optimizer": {"iterations": args.iterations},
            "video": {"first": args.first, "frames": args.frames * args.every, "every": args.every,
                      "passes": args.passes, "pass_iterations": args.pass_iterations,
                      "frame_iterations": args.frame_iterations}}
    if args.warp is not None:
        base["video"]["warp"] = args.warp
    if args.anchor:
        base["video"]["anchor"] = True
    if args.hold is not None:
        base["video"]["hold"] = args.hold
    if args.settle is not None:
        base["video"]["settle"] = args.settle
    if args.warm is not None:
        base["video"]["warm"] = args.warm == "true"
    if args.temporal is not None and len(args.temporal) == 1:
        base["temporal"] = args.temporal[0]
    elif args.temporal is not None:
        base["sweep"] = {"temporal": args.temporal}
    return base


def solo_row(args, base: dict, clip, params) -> dict:
    """The same frames one at a time: what batching saves."""
    raw = json.loads(json.dumps(base))
    raw["temporal"] = 0
    raw.pop("sweep", None)
    raw["optimizer"]["iterations"] = args.iterations + (args.passes - 1) * args.pass_iterations
    cfg = validate(raw)
    spent = 0.0
    for i in range(len(clip.frames)):
        one = dataclasses.replace(clip, frames=clip.frames[i:i + 1], numbers=clip.numbers[i:i + 1])
        t0 = time.perf_counter()
        r = run_clip(cfg, one, params, hooks=RunHooks(log=lambda line: None, watch=Watchers()))
        spent += time.perf_counter() - t0 - r.report["timing"]["compile_s"]  # each solo run compiles anew
    return {"schedule": "per-frame-solo", "temporal": 0.0, "s_per_frame": spent / len(clip.frames)}


def schedule_config(args, base: dict, name: str) -> dict:
    """The config of one schedule: ``per-frame``, ``sequential`` or ``multipass``."""
    raw = json.loads(json.dumps(base))
    if name == "per-frame":
        raw["temporal"] = 0
        raw.pop("sweep", None)
        # The same iterations a frame as the multipass schedule gives it.
        raw["optimizer"]["iterations"] = args.iterations + (args.passes - 1) * args.pass_iterations
    else:
        raw["video"]["mode"] = name
        if name == "sequential":  # the first frame is stylised as per-frame stylisation does every frame
            raw["optimizer"]["iterations"] = args.first_iterations or \
                args.iterations + (args.passes - 1) * args.pass_iterations
    return raw


def schedule_rows(args, name: str, cfg, clip, params) -> list[tuple[dict, str, np.ndarray]]:
    """One schedule's run: per variant its row of the table, its label and its frames."""
    out = []
    t0 = time.perf_counter()
    result = run_clip(cfg, clip, params, hooks=RunHooks(log=lambda line: None, watch=Watchers()))
    seconds = time.perf_counter() - t0
    for v, frames in zip(result.variants, result.frames):
        measured = yardstick(cfg, params, frames, clip.frames)
        temporal = v.terms.get("temporal", 0.0)
        row = {"schedule": name, "temporal": temporal, "iterations": result.report["iterations"],
               "warping_error": warping_error(frames, clip.frames),
               "style": float(measured["style"].mean()), "content": float(measured["content"].mean()),
               "s_per_frame": (seconds - result.report["timing"]["compile_s"]) / frames.shape[0]
               / len(result.variants),
               "flow_share": result.report["clip"]["flow_s"] / seconds,
               "compile_s": result.report["timing"]["compile_s"], **later_frames(result.report),
               **drift(frames, clip.frames)}
        out.append((row, f"{name}" + (f", temporal {temporal:g}" if name != "per-frame" else ""), frames))
        if args.frames_out:
            Path(args.frames_out).mkdir(parents=True, exist_ok=True)
            np.save(Path(args.frames_out) / f"{name}-{temporal:g}.npy", frames)
    return out


def main() -> None:
    args = parser().parse_args()
    base = base_config(args)
    params = load_vgg19()
    clip = load_clip(validate(base))
    rows, shown = [], []
    if "per-frame-solo" in args.schedules:
        rows.append(solo_row(args, base, clip, params))
        print(json.dumps(rows[-1]), flush=True)
    for name in [n for n in args.schedules if n != "per-frame-solo"]:
        for row, label, frames in schedule_rows(args, name, validate(schedule_config(args, base, name)), clip, params):
            rows.append(row)
            shown.append((label, frames))
            print(json.dumps(row), flush=True)
    summary = {"clip": args.clip, "size": args.size, "frames": len(clip.frames), "every": args.every,
               "input_warping_error": warping_error(clip.frames, clip.frames), "rows": rows}
    print(f"\ninput clip: warping error {summary['input_warping_error']:.5f}; {len(clip.frames)} frames at "
          f"{clip.frames.shape[2]}x{clip.frames.shape[1]} px")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    if args.preview:
        write_preview([("input", clip.frames), *shown], clip.fps, args.preview)


def print_table(rows: list[dict]) -> None:
    print("| schedule | temporal | warping error | style | content | drift (levels) | s/frame/variant | flow share "
          "| later frames: s/frame, iterations |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "warping_error" not in r:
            print(f"| {r['schedule']} | 0 | | | | | {r['s_per_frame']:.2f} | | |")
            continue
        d = "n/a" if r["drift_levels"] is None else f"{r['drift_levels']:.2f}"
        later = f"{r['later_s_per_frame']:.2f}, {r['later_iterations']:.1f}" if "later_s_per_frame" in r else ""
        print(f"| {r['schedule']} | {r['temporal']:g} | {r['warping_error']:.5f} | {r['style']:.4f} | "
              f"{r['content']:.4f} | {d} | {r['s_per_frame']:.2f} | {100 * r['flow_share']:.1f} % | {later} |")


def write_preview(columns: list[tuple[str, np.ndarray]], fps: float, path: str) -> None:
    """An animated WebP: the clips side by side, each captioned, looping."""
    from PIL import Image, ImageDraw

    from jaxstyle.media.images import to_uint8

    h, w = columns[0][1].shape[1:3]
    pages = []
    for t in range(len(columns[0][1])):
        page = Image.new("RGB", (len(columns) * (w + 4) + 4, h + 18), "white")
        draw = ImageDraw.Draw(page)
        for i, (label, frames) in enumerate(columns):
            page.paste(Image.fromarray(to_uint8(frames[t])), (4 + i * (w + 4), 16))
            draw.text((4 + i * (w + 4), 2), label, fill="black")
        pages.append(page)
    pages[0].save(path, save_all=True, append_images=pages[1:], duration=int(1000 / fps), loop=0, quality=80)


if __name__ == "__main__":
    main()
