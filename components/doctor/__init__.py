"""``python -m components.doctor [-s STACK] [--json] [-C DIR]``: check a stack before ``pulumi up``.

Needs no Pulumi CLI and no account. It reads ``Pulumi.yaml`` and ``Pulumi.<stack>.yaml`` the way
the CLI hands them to the program, runs every rule of the program (``settings.parse_settings``
with the live relay host), then asks the relay host (through the program's own channel), its
Docker engine, Cloudflare and the Tailscale API what would stop the relay from working. It never
changes anything: only read-only commands (``ip``, ``ss``, ``tailscale status``/``version``,
``test -S``, ``systemctl show``, ``grep /proc/<pid>/cgroup``, ``df``, ``cat /proc/self/mounts``)
and ``GET`` requests (plus, for a Tailscale OAuth client, the token exchange that any API call
starts with).

Rows, in order (``id``: what passes):

* ``stack.secrets`` — every encrypted (``secure:``) value the doctor needs is carried by an
  environment variable (``CLOUDFLARE_API_TOKEN``, ``TAILSCALE_API_KEY`` …); else not checked;
* ``settings`` — what ``pulumi up`` stops on before a resource: the Pulumi CLI's own check of
  typed and required keys, in its words (every message; the CLI prints the first:
  ``components.stack_config.cli_config_problems``), then the program's rules — less a problem a
  row below shows with what it read (``run.ROW_OF_KEY``): each cause is said once;
* ``host.channel`` — commands run on the relay host (``unix://`` here, ``ssh://`` there);
* ``docker.engine`` — the Docker engine answers (version, API version);
* ``tailscaled.daemon`` / ``tailscaled.socket`` — tailscaled is Running and logged in; its
  socket is where ``tailscaleSocket`` says (with ``verifyClients``);
* ``host.ipv6`` — the static ``ipv6`` is the host's, neither temporary nor deprecated (or what
  ``auto`` picks);
* ``ports.derp`` / ``ports.stun`` — TCP ``derpPort`` and UDP ``stunPort`` are free on the host or
  held by this stack's derper;
* ``docker.derper`` — no hand-made derper container (not labelled by home-derp) runs;
* ``docker.space`` / ``derper.state`` — Docker's data root has room for a derper build (2 GiB,
  10,000 inodes) and the filesystem of derper's state volume room for its key, neither read-only
  (``df -Pk``, ``df -Pi``, ``/proc/self/mounts`` on the host; a volume with driver options is
  measured while it is mounted);
* ``cloudflare.token`` / ``cloudflare.zone`` / ``cloudflare.records`` — the token is active, the
  zone active, existing records adoptable (one per type; a round-robin or a CNAME fails);
* ``tailnet.policy`` / ``tailnet.region`` — the policy is readable with the credentials, the
  region id free, this stack's, or ``adoptRegion`` set;
* ``reach.ipv4`` — how devices without IPv6 reach the region: ``ipv4`` (dual stack), a companion
  node, or IPv6-only by choice with what it costs and the devices whose last endpoints show no
  IPv6 (docs/guide/reach.md);
* ``reach.mesh`` (only with a companion node) — each node has a route to the other (both must
  dial).

A row is ``pass``, ``fail`` (with ``fix``) or ``not_checked`` (``summary`` says why: no
credentials, a ``tcp://`` host, the network, or an earlier row it depends on). Exit codes: 0
nothing failed, 1 something failed, 2 usage error, 3 could not run.

``--json`` prints (fields may be added, never renamed)::

    {"stack": "home", "project": "home-derp", "stack_file": "/…/Pulumi.home.yaml",
     "docker_host": "unix:///var/run/docker.sock", "ok": false,
     "checks": [{"id": "host.ipv6", "status": "fail",
                 "summary": "2a01:4f8:10::10 is held as temporary privacy address …",
                 "detail": "2a01:4f8:10::10/64 on eth0 (dynamic temporary)",
                 "fix": "publish the stable address instead (…), or set home-derp:ipv6 auto"}],
     "warnings": ["networkMode=bridge: …"]}

``detail`` and ``fix`` are null when empty. Secrets never appear: every secret value the doctor
read is replaced by ``***`` in the report.
"""
