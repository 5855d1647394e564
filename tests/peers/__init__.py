"""Real or faithful local peers for probe tests: loopback or namespaces made by the test only.

Every peer is a plain function or context manager (no pytest needed), so any test module or the
benchmark can reuse it: ``coturn``, ``stun_server``, ``dns_server``, ``derp_server``, ``certs``,
``delay``, ``netns`` and the assembled ``relay.local_relay``.
"""
