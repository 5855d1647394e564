"""How long `pulumi preview/up` spends evaluating the program, against the floor of its imports.

Prints, for N fresh interpreters each: the bare import time of the SDKs the program uses (the
floor: nothing we write can be faster), the time to evaluate ``__main__.py`` under Pulumi mocks
with the home stack's config (imports included), their ratio (target ≤ 1.2), and peak RSS.

    venv/bin/python bench/program_eval.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SDKS = "import pulumi, pulumi_cloudflare, pulumi_docker, pulumi_tls, pulumiverse_acme"

FLOOR = f"""
import resource, time
t0 = time.perf_counter()
{SDKS}
elapsed = time.perf_counter() - t0
print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

EVALUATE = f"""
import resource, sys, time
t0 = time.perf_counter()
{SDKS}
import pulumi
sys.path.insert(0, {str(ROOT)!r})
from tests.mocks import evaluate, home_config, install_mocks
mocks = install_mocks()
evaluate(home_config())
elapsed = time.perf_counter() - t0
assert any(r.typ == "docker:index/container:Container" for r in mocks.resources)
print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def measure(code: str) -> tuple[float, int]:
    """(seconds, peak RSS KiB) of one fresh interpreter running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    return float(out[-2]), int(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    floor, evaluation = [], []
    for _ in range(args.runs):  # interleaved so machine noise hits both alike
        floor.append(measure(FLOOR))
        evaluation.append(measure(EVALUATE))
    floor_s = statistics.median(t for t, _ in floor)
    eval_s = statistics.median(t for t, _ in evaluation)
    result = {
        "runs": args.runs,
        "sdk_import_s": round(floor_s, 3),
        "program_eval_s": round(eval_s, 3),
        "ratio": round(eval_s / floor_s, 3),
        "target_ratio": 1.2,
        "sdk_import_peak_rss_mib": round(max(m for _, m in floor) / 1024, 1),
        "program_eval_peak_rss_mib": round(max(m for _, m in evaluation) / 1024, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"runs                      {result['runs']}")
    print(f"SDK import (floor)        {result['sdk_import_s']:.3f} s (median)")
    print(f"program evaluation        {result['program_eval_s']:.3f} s (median, imports included)")
    print(f"ratio                     {result['ratio']:.3f} (target <= 1.2)")
    print(f"peak RSS, imports only    {result['sdk_import_peak_rss_mib']} MiB")
    print(f"peak RSS, evaluation      {result['program_eval_peak_rss_mib']} MiB")


if __name__ == "__main__":
    main()
