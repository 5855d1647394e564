"""How long a relay is down: DERP (a TLS handshake on its port) and STUN probed every few ms.

One prober thread per service runs inside the relay host's network namespace (its sockets are
made there) and records every probe's start, end and outcome; :meth:`Prober.outages` gives the
windows in which the service answered nothing. The DERP probe is what a client does first
(TCP, then TLS with the relay's name, trusting the CA bundle); the STUN probe is a
Tailscale-format binding request (components/netcheck/stun_codec.py) answered with the prober's
address. Used by
tests/engine/test_renewal.py and bench/renewal_downtime.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from components.netcheck import stun_codec

CLONE_NEWNET = 0x40000000


@dataclass
class Outage:
    service: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Prober:
    netns: str
    address: str
    hostname: str
    derp_port: int
    stun_port: int
    ca_file: str
    interval: float = 0.01
    timeout: float = 0.25
    """A TLS handshake takes 30-100 ms on a busy machine; a STUN answer on the host well under
    1 ms, so a STUN probe gives up after ``stun_timeout``."""
    stun_timeout: float = 0.05
    samples: dict[str, list[tuple[float, float, bool]]] = field(default_factory=dict)
    """Per service: (probe start, probe end, answered) in time.monotonic()."""
    _stop: threading.Event = field(default_factory=threading.Event)

    def _derp(self, context: ssl.SSLContext) -> bool:
        try:
            with (
                socket.create_connection((self.address, self.derp_port), self.timeout) as raw,
                context.wrap_socket(raw, server_hostname=self.hostname),
            ):
                return True
        except OSError:
            return False

    def _stun(self) -> bool:
        txid = stun_codec.new_txid()
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(self.stun_timeout)
            try:
                sock.sendto(stun_codec.binding_request(txid), (self.address, self.stun_port))
                data = sock.recv(2048)
                stun_codec.parse_response(data, txid)
            except (OSError, ValueError):
                return False
        return True

    def _enter_netns(self) -> None:
        fd = os.open(f"/var/run/netns/{self.netns}", os.O_RDONLY)
        try:
            if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns({self.netns})")
        finally:
            os.close(fd)

    def _loop(self, service: str) -> None:
        """One thread per service, so a slow probe of one never delays the other."""
        self._enter_netns()
        context = ssl.create_default_context(cafile=self.ca_file)
        context.set_alpn_protocols(["http/1.1"])
        samples = self.samples.setdefault(service, [])
        while not self._stop.is_set():
            start = time.monotonic()
            ok = self._derp(context) if service == "derp" else self._stun()
            samples.append((start, time.monotonic(), ok))
            time.sleep(self.interval)

    def outages(self, service: str) -> list[Outage]:
        """Each run of failed probes as the window from the end of the last answered probe
        before it to the start of the first answered probe after it: the service answered
        nothing in between (an upper bound within one probe interval)."""
        found: list[Outage] = []
        last_ok_end: float | None = None
        failing = False
        for start, end, ok in self.samples.get(service, []):
            if not ok:
                failing = True
                continue
            if failing and last_ok_end is not None:
                found.append(Outage(service, last_ok_end, start))
            failing = False
            last_ok_end = end
        if failing and last_ok_end is not None:
            found.append(Outage(service, last_ok_end, float("inf")))
        return found

    def longest(self, service: str) -> float:
        return max((o.seconds for o in self.outages(service)), default=0.0)


@contextlib.contextmanager
def probing(prober: Prober) -> Iterator[Prober]:
    threads = [
        threading.Thread(target=prober._loop, args=(service,), daemon=True)
        for service in ("derp", "stun")
    ]
    for thread in threads:
        thread.start()
    try:
        yield prober
    finally:
        prober._stop.set()
        for thread in threads:
            thread.join(5)
