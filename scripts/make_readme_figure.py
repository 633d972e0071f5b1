"""Makes the README's picture (a small PNG under docs/images/) from a trained run directory.

Usage (after a full-MNIST run, e.g. ``stnkit train --config configs/<experiment>.json --out runs/st-cnn-rts``)::

    python scripts/make_readme_figure.py runs/st-cnn-rts --out docs/images/st-cnn-rts.png \
        [--gif docs/images/st-cnn-rts.gif] [--n 12] [--ncols 6] [--seed 0] [--data-dir DIR]

The PNG is the ``stnkit show`` panel of ``--n`` test images (inputs with the sampling region, and the
transformer's outputs), reduced to a 64-colour palette so it stays small (typically < 100 kB).
``--gif`` also writes the run's training animation with at most ``--gif-frames`` evenly spaced
epochs (the first and last included), reusing the frames the run saved (no re-rendering).
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from pathlib import Path

log = logging.getLogger("make_readme_figure")


def make_png(run: Path, out: Path, *, n: int, ncols: int, seed: int, data_dir: str | None, colors: int) -> Path:
    from PIL import Image

    from stnkit.experiments.train import load_run
    from stnkit.experiments.viz import figure_to_array, plot_transformer
    from stnkit.experiments.viz._files import atomic_write
    from stnkit.experiments.viz.show import run_title, sample_test_images

    model, config = load_run(run)
    if data_dir is not None:
        config = config.replace(data_dir=data_dir)
    images = sample_test_images(config, n, seed)
    title = f"{run_title(config)}, test set"
    frame = figure_to_array(plot_transformer(model, images, title=title, ncols=ncols, cell=0.9, dpi=100))
    small = Image.fromarray(frame).quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    return atomic_write(out, buffer.getvalue())


def make_gif(run: Path, out: Path, *, frames: int) -> Path:
    from stnkit.experiments.viz._files import atomic_write
    from stnkit.experiments.viz._gif import assemble, parse_frame
    from stnkit.experiments.viz.animation import frame_durations, frame_files

    saved = list(frame_files(run).values())
    if not saved:
        raise SystemExit(f"--gif: {run} has no saved animation frames (was it trained with the animation on?)")
    count = min(frames, len(saved))
    picks = sorted({round(i * (len(saved) - 1) / max(count - 1, 1)) for i in range(count)})
    parsed = [parse_frame(saved[i].read_bytes()) for i in picks]
    return atomic_write(out, assemble(parsed, frame_durations(len(parsed))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory (or checkpoint) of `stnkit train`")
    parser.add_argument("--out", type=Path, default=Path("docs/images/panel.png"), help="PNG to write")
    parser.add_argument("--gif", type=Path, help="also write the training animation here")
    parser.add_argument("--gif-frames", type=int, default=40, help="most epochs in the GIF (default: 40)")
    parser.add_argument("--n", type=int, default=12, help="number of test images (default: 12)")
    parser.add_argument("--ncols", type=int, default=6, help="images per row (default: 6)")
    parser.add_argument("--seed", type=int, default=0, help="which test images (default: 0)")
    parser.add_argument("--colors", type=int, default=64, help="palette size of the PNG (default: 64)")
    parser.add_argument("--data-dir", help="where the digits are, if not where the run found them")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    png = make_png(args.run, args.out, n=args.n, ncols=args.ncols, seed=args.seed, data_dir=args.data_dir,
                   colors=args.colors)
    log.info("wrote %s (%.0f kB)", png, png.stat().st_size / 1024)
    if args.gif is not None:
        run_dir = args.run if args.run.is_dir() else args.run.parent
        gif = make_gif(run_dir, args.gif, frames=args.gif_frames)
        log.info("wrote %s (%.0f kB)", gif, gif.stat().st_size / 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
