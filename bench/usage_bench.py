"""What reading derper's counters and keeping the usage history cost: prints figures.

* parsing a real derper's ``/debug/varz`` page with prometheus_client's parser;
* one whole reading (TCP or ``ssh -W`` stream, TLS, GET, parse) over this machine's loopback and
  over ``ssh -W`` through a real sshd on loopback (a fresh ssh connection per reading, as the
  provider makes one per run);
* the size of a full history (``usageHistory`` = 60 and the 500 maximum) as the state keeps it
  (JSON), and the time to roll it and render the job summary.

The derper is the pinned real one (tests/tools/install); nothing leaves loopback.

    venv/bin/python bench/usage_bench.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.netcheck.usage import connect_local, fetch_varz, parse_varz, read_usage
from components.usage import read_counters, roll
from components.usage_summary import summary_lines
from tests.peers.certs import make_pki
from tests.peers.derper import start_derper
from tests.peers.ports import free_port
from tests.peers.sshd import sshd_factory
from tests.test_usage_summary import history, usage_output

HOSTNAME = "derp.test"


def timed(runs: int, fn: Callable[[], object]) -> tuple[float, float]:
    """(median, max) milliseconds of ``runs`` calls."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples), max(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="usage-bench-") as tmp, sshd_factory() as start:
        work = Path(tmp)
        files = make_pki(work / "pki", HOSTNAME).files("good")
        port = free_port(("127.0.0.1",), socket.SOCK_STREAM)
        derper = start_derper(
            work / "derper", hostname=HOSTNAME, cert_file=files.cert_file,
            key_file=files.key_file, derp_port=port,
            stun_port=free_port(("127.0.0.1",), socket.SOCK_DGRAM), listen_ip="127.0.0.1",
        )  # fmt: skip
        try:
            reading = read_usage(lambda: connect_local(port, timeout=5), HOSTNAME, port)
            assert reading.usage is not None, reading.error
            stream = connect_local(port, timeout=5)
            text = asyncio.run(fetch_varz(stream, HOSTNAME, port, timeout=5))
            stream.close()
            print(f"/debug/varz page: {len(text)} bytes, {text.count(chr(10))} lines")
            med, high = timed(args.runs * 5, lambda: parse_varz(text))
            print(f"parse (prometheus_client):      median {med:6.2f} ms, max {high:6.2f} ms")
            local = {"docker_host": "unix:///var/run/docker.sock", "derp_port": port,
                     "hostname": HOSTNAME}  # fmt: skip
            med, high = timed(args.runs, lambda: read_counters(local))
            print(f"read over loopback (TLS+GET):   median {med:6.2f} ms, max {high:6.2f} ms")
            sshd = start()
            os.environ["HOME_DERP_SSH_OPTS"] = shlex.join(sshd.client_options)
            over_ssh = {**local, "docker_host": sshd.docker_host}
            assert read_counters(over_ssh).usage is not None
            med, high = timed(args.runs, lambda: read_counters(over_ssh))
            print(f"read over ssh -W (new conn):    median {med:6.2f} ms, max {high:6.2f} ms")
        finally:
            derper.stop()
    for bound in (60, 500):
        full = history(bound)
        size = len(json.dumps(full))
        med, _ = timed(args.runs, lambda full=full, bound=bound: roll(full, full[-1], bound))
        print(f"history of {bound:3d} runs: {size:6d} bytes of state ({size / bound:.0f} a run), "
              f"roll {med:.3f} ms")  # fmt: skip
        text = "\n".join(summary_lines(usage_output(full)))
        med, _ = timed(args.runs, lambda full=full: summary_lines(usage_output(full)))
        print(f"  job summary: {len(text)} characters, rendered in {med:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
