"""What outputs cost a probe: storing them by content, and comparing them with a reference
in the candidate's environment (``--diverge-from``).

    .venv/bin/python bench/bench_outputs.py [--sizes 256 1024 2048] [--repeat 5]

Builds one environment with a real numpy wheel (``tests/support/numpy_wheel.py``) with uv,
writes a float64 N x N reference array and a candidate that differs by 1e-3 relative, and
times (median of ``--repeat``): :func:`envbisect.outputs.collect` (hash and store one
array), :func:`envbisect.outputs.compare_in_env` (the comparison script: interpreter start,
numpy import, two loads, max abs/rel), and the judging of a stored row under a new rtol
(pure, what a re-judge costs per probe). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.numpy_wheel import numpy_wheel  # noqa: E402
from uv import find_uv_bin  # noqa: E402

from envbisect.compare import Reference, Tolerance  # noqa: E402
from envbisect.outputs import collect, compare_in_env, store_root  # noqa: E402
from envbisect.requests_model import Judging  # noqa: E402
from envbisect.runner import scrubbed_environ  # noqa: E402

MAKE = ("import sys, numpy as np\n"
        "n = int(sys.argv[1]); x = np.random.default_rng(0).standard_normal((n, n))\n"
        "np.save(sys.argv[2] + '/logits.npy', x); np.save(sys.argv[3] + '/logits.npy', x * (1 + 1e-3))\n")


def median_time(fn, repeat: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    wheel = numpy_wheel()
    if wheel is None:
        print("no numpy wheel for this interpreter: nothing measured")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        uv = find_uv_bin()
        subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(tmp / "env")], check=True)
        python = tmp / "env" / "bin" / "python"
        subprocess.run([uv, "pip", "install", "-q", "--offline", "-p", str(python), str(wheel)], check=True)
        root = store_root(tmp / "cache")
        environ = scrubbed_environ(env_bin=python.parent)
        print(f"numpy {wheel.name.split('-')[1]}, median of {args.repeat}")
        print(f"| N x N float64 | size | collect (hash + store) | compare in env | re-judge (pure) |")
        print("|---|---|---|---|---|")
        for n in args.sizes:
            ref_dir, cand_dir = tmp / f"ref{n}", tmp / f"cand{n}"
            ref_dir.mkdir(), cand_dir.mkdir()
            subprocess.run([str(python), "-c", MAKE, str(n), str(ref_dir), str(cand_dir)], check=True)
            ref, _ = collect(ref_dir, root)
            t_collect, (cand, _) = median_time(lambda: collect(cand_dir, root), args.repeat)
            t_compare, (measured, note) = median_time(
                lambda: compare_in_env(python, ["logits"], cand, ref, root, environ), args.repeat)
            assert note is None, note
            reference = Reference("1.0", ref)
            row = {"exit_code": 0, "outputs": cand, "comparison": {"reference": reference.digest, "outputs": measured}}
            judging = Judging(reference=reference, tolerance=Tolerance(1e-2, 0))
            t_judge, verdict = median_time(lambda: judging.judge(row), args.repeat)
            size = (ref_dir / "logits.npy").stat().st_size / 2**20
            print(f"| {n} | {size:.1f} MiB | {t_collect * 1e3:.1f} ms | {t_compare * 1e3:.0f} ms | "
                  f"{t_judge * 1e6:.0f} µs ({verdict.outcome.value}) |")


if __name__ == "__main__":
    main()
