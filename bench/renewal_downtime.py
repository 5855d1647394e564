"""How long derper's DERP and STUN are down while a renewed certificate is rolled out.

The whole path runs for real (tests/engine/renewal.py): the real Pulumi engine runs the program
against the tests' world (tests/engine/world.py: a relay host namespace with a real dockerd, real
tailscaled, pebble validating dns-01), deploys a relay whose certificate pebble issued for 25 days,
then runs the `up` that renews it (min_days_remaining is 30) while a prober in the relay host
checks DERP (a TLS handshake on derpPort) and STUN (a Tailscale binding request) every 20 ms. The
figure is the longest window between two successful probes around a failure: an upper bound of
the outage, within one probe interval.

    sudo venv/bin/python bench/renewal_downtime.py [--runs 1] [--project DIR] [--json]

``--project DIR`` deploys another tree of the project (e.g. an older release:
``git archive <rev> __main__.py Pulumi.yaml requirements.txt components policy | tar -x -C DIR``),
to compare how releases roll a certificate out.

Needs root and the tools of tests/tools/install (the Pulumi CLI, tailscaled, headscale, Go).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.engine.renewal import renew
from tests.engine.world import world


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--project", type=Path, help="deploy this tree of the project instead")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="hde-bench-") as tmp, world(Path(tmp)) as w:
        for run in range(args.runs):
            r = renew(w, f"renew{run}", 920 + run, 12420 + run, 3520 + run, project=args.project)
            replaced = r.container_before["Id"] != r.container_after["Id"]
            results.append(
                {
                    "derp_down_s": round(r.derp_down, 3),
                    "stun_down_s": round(r.stun_down, 3),
                    "renewal_up_s": round(r.up_seconds, 1),
                    "serial_changed": r.before["certificateSerial"] != r.after["certificateSerial"],
                    "container_replaced": replaced,
                    "changes": r.changes,
                    "probes": r.probes,
                }
            )
            r.stack.destroy(check=False)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for i, res in enumerate(results):
        print(
            f"run {i}: DERP down {res['derp_down_s']:.3f} s, STUN down {res['stun_down_s']:.3f} s "
            f"(renewal `up` {res['renewal_up_s']:.1f} s, container "
            f"{'replaced' if res['container_replaced'] else 'kept and restarted'}, "
            f"changes {res['changes']}, {res['probes']} probes per service)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
