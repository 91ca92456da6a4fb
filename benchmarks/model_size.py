"""Parameters and compute of every network family, paper-size and small configurations.

The "paper" configurations are ours, sized like the papers' networks (``st_transformer``
"paper" is "st_transformer ours, 174.5 M params", not the Patterns authors' network, which
is ``models/zhang2023.py``: 175,606,467 parameters, checked against their code in
``Testing/test_zhang2023.py``).

Models are built on the meta device, so nothing is allocated and the paper
configurations are measured in seconds on any machine. Compute is counted by
``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matrix products,
attention) for one forward pass of a 96x96x48 patch (D, H, W = 48, 96, 96) with 6
phases, and of a 64x64x32 patch for the small configurations. ``gflops`` counts 2 per
multiply-accumulate; ``gmacs`` is half of it (papers' "FLOPs" are usually MACs)::

    python benchmarks/model_size.py                    # -> benchmarks/results/model_size.json
    python benchmarks/model_size.py --output sizes.json
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from BreastDCESegLib.models import FAMILIES, build_network  # noqa: E402
from BreastDCESegLib.models.blocks import count_flops, count_parameters  # noqa: E402
from BreastDCESegLib.io.atomic import write_json  # noqa: E402

PAPER = {  # what the source papers report for their own networks (ours are sized to match)
    "st_transformer": {"params_m": 175.5},  # the Patterns network; ours is a different design
    "tsesnet": {"params_m": 103.58, "gflops": 98.66},
    "rst2g": {"params_m": 85.24},
}
PAPER_PATCH = (48, 96, 96)
SMALL_PATCH = (32, 64, 64)
PHASES = 6


def measure(family: str, config: str) -> dict:
    with torch.device("meta"):
        net = build_network(family, config)
        row = {"params": count_parameters(net)}
        for name, patch in (("paper_patch", PAPER_PATCH), ("small_patch", SMALL_PATCH)):
            if name == "small_patch" and config != "small":
                continue
            flops = count_flops(net, torch.zeros(1, PHASES, *patch))
            row[name] = {"dhw": list(patch), "phases": PHASES, "gflops": round(flops / 1e9, 2),
                         "gmacs": round(flops / 2e9, 2)}
    row["params_m"] = round(row["params"] / 1e6, 3)
    if config == "paper" and family in PAPER:
        row["paper_reported"] = PAPER[family]
        row["params_rel_error"] = round(row["params_m"] / PAPER[family]["params_m"] - 1, 4)
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "model_size.json"))
    args = parser.parse_args(argv)
    results = {"torch": torch.__version__, "python": platform.python_version(),
               "counter": "torch.utils.flop_counter.FlopCounterMode on the meta device; gflops = 2 x gmacs",
               "families": {f: {c: measure(f, c) for c in ("paper", "small")} for f in FAMILIES}}
    out = write_json(args.output, results)
    for family, rows in results["families"].items():
        for config, row in rows.items():
            pp = row["paper_patch"]
            print(f"{family:15s} {config:6s} {row['params_m']:9.3f} M params  "
                  f"{pp['gflops']:9.2f} GFLOPs ({pp['gmacs']:.2f} GMACs) on 96x96x48x{PHASES}")
    print(f"written {out}")
    return results


if __name__ == "__main__":
    main()
