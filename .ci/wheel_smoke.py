"""Installs the BUILT wheel into a fresh virtual environment and uses it from outside the checkout.

A module or package-data file left out of the wheel fails here (the tests run against the source
tree, where everything is present). Usage, after ``python -m build``::

    python .ci/wheel_smoke.py dist/stnkit-*.whl [--constraints constraints.txt]

The fresh environment sees the system site-packages only through pip's cache: it installs the wheel
with its dependencies (torch pinned by the constraints file), then, from a temporary folder, runs
``import stnkit`` (checking that it is the installed copy, and the version), ``stnkit list`` and a
one-batch warp through ``SpatialTransformer``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHECK = r"""
import pathlib, sys, torch, stnkit
where = pathlib.Path(stnkit.__file__).resolve()
assert "site-packages" in where.parts, f"stnkit imported from {where}, not from the installed wheel"
assert stnkit.__version__ == sys.argv[1], (stnkit.__version__, sys.argv[1])
st = stnkit.SpatialTransformer(stnkit.conv_localisation((1, 42, 42)), "affine").eval()
x = torch.rand(4, 1, 42, 42, generator=torch.Generator().manual_seed(0))
y = st(x)
assert y.shape == x.shape and torch.allclose(y, x, atol=1e-5), "a new transformer is the identity"
assert (where.parent / "py.typed").is_file(), "py.typed missing from the wheel"
import stnkit.experiments.cli, stnkit.experiments.data, stnkit.experiments.viz, stnkit.export
print(f"wheel smoke: stnkit {stnkit.__version__} from {where.parent}: import, warp ok")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--constraints", type=Path, default=Path(__file__).resolve().parent.parent / "constraints.txt")
    args = parser.parse_args()
    wheel = args.wheel.resolve()
    version = wheel.name.split("-")[1]
    with tempfile.TemporaryDirectory(prefix="stnkit-wheel-") as tmp:
        env_dir = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
        bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
        pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "-c", str(args.constraints.resolve())]
        subprocess.run([*pip, str(wheel)], check=True)
        run = Path(tmp) / "elsewhere"  # not the checkout: `import stnkit` must find the installed copy
        run.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([str(bin_dir / "python"), "-c", CHECK, version], check=True, cwd=run, env=env)
        listing = subprocess.run([str(bin_dir / "stnkit"), "list"], check=True, cwd=run, env=env,
                                 capture_output=True, text=True).stdout
        for word in ("st-cnn", "affine", "tps", "rts"):
            assert word in listing, f"`stnkit list` does not mention {word!r}:\n{listing}"
        print(f"wheel smoke: `stnkit list` ok ({len(listing.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
