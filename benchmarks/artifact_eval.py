"""The kinetic method (or any model) on the second phantom (:mod:`BreastDCESegLib.synth.empirical`)
acquired with each artifact of :mod:`BreastDCESegLib.synth.artifacts` (k-space truncation, ghosting,
view sharing, patient motion with a turn, coil shading, failed fat suppression, twice the noise). Per
artifact: mean Dice over the studies with a cancer, the studies without one given a mask, and each
study's Dice. Writes ``benchmarks/results/artifact_eval.json``. Phantom figures only.

Usage::

    python benchmarks/artifact_eval.py                       # seeds 0-19, every artifact, kinetic
    python benchmarks/artifact_eval.py --n 5 --artifacts none motion --output /tmp/a.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from BreastDCESegLib.io.atomic import write_json  # noqa: E402
from BreastDCESegLib.synth import artifacts  # noqa: E402
from signal_exports import arguments, evaluate  # noqa: E402


def main(argv=None) -> dict:
    args = arguments(argv, __doc__.splitlines()[0], "--artifacts", list(artifacts.ARTIFACTS), "artifact_eval.json")

    started = time.perf_counter()
    summary = evaluate(args.artifacts, lambda study, name, seed: artifacts.with_artifact(study, name, seed=seed),
                       args.n, args.first_seed, args.model)
    out = {"note": "the second phantom (synth.empirical) acquired with each artifact of synth.artifacts; phantom "
                   "figures, not accuracy on patient images", "model": args.model, "n": args.n,
           "first_seed": args.first_seed, "seconds": round(time.perf_counter() - started, 1), "artifacts": summary}
    write_json(args.output, out)
    return out


if __name__ == "__main__":
    main()
