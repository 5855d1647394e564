"""Benchmark of components/netcheck. Prints figures; not a test.

    venv/bin/python bench/netcheck_bench.py

1. precision: STUN RTT reported by netcheck vs a raw UDP echo through the same 40 ms delay
   relay, interleaved in one run (target: median error <= 1 ms);
2. concurrency: a full report with 30 regions each 40 ms away vs probing them one by one
   (target: full report <= 0.3 s);
3. peak memory (max RSS) of one CLI run, as shipped and with netcheck alone;
4. the price of the IPv6 STUN second listen (unconnected socket) on a silent port: the extra
   wall time of one stun check, bounded by stun.RETRY_WAIT.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.netcheck import check_relay  # noqa: E402
from components.netcheck.regions import parse_regions, probe_region  # noqa: E402
from components.netcheck.stun import RETRY_WAIT, check_stun, stun_probe  # noqa: E402
from tests.peers.aio import background_loop  # noqa: E402
from tests.peers.delay import UdpEcho, delay_relay  # noqa: E402
from tests.peers.relay import local_relay  # noqa: E402
from tests.peers.stun_server import stun_server  # noqa: E402

RTT_MS = 40.0
ROUNDS = 10
REGIONS = 30


def echo_rtt_ms(port: int) -> float:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        start = time.perf_counter()
        s.sendto(b"x" * 40, ("127.0.0.1", port))  # same size as a STUN request
        s.recvfrom(2048)
        return (time.perf_counter() - start) * 1000.0


def precision() -> None:
    with background_loop() as bg, stun_server() as stun, delay_relay(RTT_MS, bg) as relay:
        echo = UdpEcho()
        stun_port = relay.add_udp("127.0.0.1", ("127.0.0.1", stun.port))
        echo_port = relay.add_udp("127.0.0.1", ("127.0.0.1", echo.port))
        errors, stun_ms, echo_ms = [], [], []
        for _ in range(ROUNDS):
            res = asyncio.run(stun_probe("127.0.0.1", stun_port, timeout=1))
            raw = statistics.median(echo_rtt_ms(echo_port) for _ in range(3))
            assert res.median_ms is not None
            stun_ms.append(res.median_ms)
            echo_ms.append(raw)
            errors.append(abs(res.median_ms - raw))
        echo.close()
    print(f"[precision] delay relay RTT {RTT_MS:.0f} ms, {ROUNDS} interleaved rounds")
    print(f"  netcheck STUN median RTT : {statistics.median(stun_ms):7.3f} ms")
    print(f"  raw UDP echo median RTT  : {statistics.median(echo_ms):7.3f} ms")
    verdict = "OK" if statistics.median(errors) <= 1.0 else "MISSED"
    med = statistics.median(errors)
    print(f"  median |error|           : {med:7.3f} ms  (target <= 1 ms: {verdict})")
    print(f"  max |error|              : {max(errors):7.3f} ms")


def concurrency() -> None:
    with background_loop() as bg, stun_server() as stun, delay_relay(RTT_MS, bg) as relay:
        regions = {}
        for rid in range(1, REGIONS + 1):
            port = relay.add_udp("127.0.0.1", ("127.0.0.1", stun.port))
            regions[str(rid)] = {
                "RegionID": rid,
                "RegionCode": f"r{rid}",
                "Nodes": [
                    {
                        "Name": f"{rid}a",
                        "RegionID": rid,
                        "HostName": f"r{rid}.test",
                        "IPv4": "127.0.0.1",
                        "IPv6": "none",  # empty would mean: resolve HostName (tailcfg)
                        "STUNPort": port,
                    }
                ],
            }
        derp_map = {"Regions": regions}
        with local_relay(bg=bg) as home:
            check_relay(home.target(), derp_map=derp_map)  # warm-up (imports, first TLS)
            start = time.perf_counter()
            report = check_relay(home.target(), derp_map=derp_map)
            full = time.perf_counter() - start

        async def one_by_one() -> None:
            for region in parse_regions(derp_map):
                await probe_region(region, 3.0)

        start = time.perf_counter()
        asyncio.run(one_by_one())
        serial = time.perf_counter() - start
    answered = sum(r.latency_ms is not None for r in report.regions)
    lat = [r.latency_ms for r in report.regions if r.latency_ms is not None]
    print(f"[concurrency] {REGIONS} regions, each {RTT_MS:.0f} ms away (+ the relay's own checks)")
    print(
        f"  full report wall time    : {full * 1000:7.1f} ms  ({answered}/{REGIONS} answered, "
        f"median region {statistics.median(lat):.1f} ms; target <= 300 ms: "
        f"{'OK' if full <= 0.3 else 'MISSED'})"
    )
    print(f"  regions one by one       : {serial * 1000:7.1f} ms  ({serial / full:.1f}x slower)")
    print(
        f"  report ok={report.ok}, nearest={report.nearest.code if report.nearest else None}, "
        f"relay rank {report.relay_rank} of {report.relay_rank_of}"
    )


# ru_maxrss of a child counts the parent's pages it had before exec; VmHWM read at exit does not.
PEAK = (
    "import atexit, runpy, sys, types\n"
    "def peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('PEAK ' + line.split()[1] + '\\n')\n"
    "atexit.register(peak)\n"
    "if sys.argv[1] == 'alone':\n"
    "    pkg = types.ModuleType('components'); pkg.__path__ = ['components']\n"
    "    sys.modules['components'] = pkg\n"
    "sys.argv = ['netcheck'] + sys.argv[2:]\n"
    "runpy.run_module('components.netcheck', run_name='__main__')\n"
)


def _peak_mb(mode: str, args: list[str]) -> tuple[float, int]:
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, mode, *args], cwd=ROOT, capture_output=True, text=True
    )
    kb = next(int(x.split()[1]) for x in proc.stderr.splitlines() if x.startswith("PEAK "))
    return kb / 1024.0, proc.returncode


def memory() -> None:
    with local_relay() as home:
        args = [*home.cli_args(), "--resolver", home.resolver]
        alone, code_a = _peak_mb("alone", args)
        start = time.perf_counter()
        shipped, code_s = _peak_mb("shipped", args)
        wall = time.perf_counter() - start
    print("[memory] one CLI run against the local relay (peak RSS of the process)")
    print(f"  python -m components.netcheck : {shipped:6.1f} MB (exit {code_s}, {wall:.1f} s wall)")
    print(
        f"  netcheck package alone        : {alone:6.1f} MB (exit {code_a}; components/__init__ "
        "not executed)"
    )


def stun_retry_cost() -> None:
    async def timed(server_port: int, retry: bool) -> float:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        deadline = loop.time() + 3.0 if retry else None
        await check_stun("::1", server_port, 1.0, deadline=deadline)
        return time.perf_counter() - start

    with stun_server(silent=True) as silent:
        plain = asyncio.run(timed(silent.port, False))
        retried = asyncio.run(timed(silent.port, True))
    print("[stun retry] silent IPv6 STUN port, 1.0 s STUN phase")
    print(f"  connected socket only    : {plain * 1000:7.1f} ms")
    print(
        f"  + unconnected listen     : {retried * 1000:7.1f} ms  "
        f"(extra {1000 * (retried - plain):.0f} ms; cap {RETRY_WAIT * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    t0 = time.perf_counter()
    precision()
    concurrency()
    memory()
    stun_retry_cost()
    print(f"[bench] total {time.perf_counter() - t0:.1f} s")
