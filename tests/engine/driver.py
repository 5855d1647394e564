"""One Pulumi operation on the project, run by the real CLI with the project's own program.

    python -m tests.engine.driver REQUEST.json RESULT.json

The engine tests start this in the relay host's network namespace (tests/engine/world.py), so the
machine running `pulumi` is the relay host, as on a self-hosted runner beside derper: the Docker
host ``unix://…`` is the namespace's dockerd, the host reads (``ip``, ``tailscale``) see the
namespace, and validation probes the relay from there.

The CLI cannot run a Python program itself here: its language host (``pulumi-language-python``)
is not published as a Go module. So the program is served the way the Automation API serves an
inline program: the SDK's own ``LanguageServer`` (pulumi/automation/_server.py) in this process,
given to the CLI as ``--client=127.0.0.1:<port> --exec-kind auto.inline``. The program it runs is
the project's ``__main__.py``, executed as ``__main__`` from the project directory, which is also
the CLI's working directory: the real ``Pulumi.yaml`` (typed config, defaults, required keys) and
the real stack file are read by the real CLI. ``stack.up()``/``preview()``/``destroy()`` of the
Automation API are used as they are; ``cli`` runs exactly the arguments the request gives (a
workflow's command line) with the same program server added.

A request (JSON)::

    {"op": "up" | "preview" | "destroy" | "refresh" | "cli" | "stack_rm" | "outputs" | "export"
           | "config",
     "work_dir": "<project copy>", "stack": "<name>", "env": {...},
     "config": {"k": [value, secret]}, "remove_config": ["k"], "args": {...}, "argv": [...]}

The result (JSON): ``ok``, ``stdout``, ``stderr``, ``outputs`` (plain values), ``summary``
(resource changes) and, for failures, ``error`` (the CLI's own words).
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import traceback
from concurrent import futures
from typing import Any

PROJECT = "home-derp"


def _program(work_dir: str) -> Any:
    def run() -> None:
        # The program as `pulumi up` runs it: __main__.py of the project, cwd the project.
        os.chdir(work_dir)
        if sys.path[0] != work_dir:
            sys.path.insert(0, work_dir)
        runpy.run_path(os.path.join(work_dir, "__main__.py"), run_name="__main__")

    return run


def _plain(value: Any) -> Any:
    from pulumi.automation import OutputValue

    if isinstance(value, OutputValue):
        return value.value
    return value


def _serve_program(work_dir: str) -> tuple[Any, int]:
    import grpc
    from pulumi.automation._server import LanguageServer
    from pulumi.runtime.proto import language_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(
        LanguageServer(_program(work_dir)), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def run(request: dict[str, Any]) -> dict[str, Any]:
    from pulumi import automation as auto

    work_dir = request["work_dir"]
    os.environ.update(request.get("env") or {})
    sys.path.insert(0, work_dir)
    stack_name = request["stack"]
    workspace = auto.LocalWorkspace(
        work_dir=work_dir,
        program=_program(work_dir),
        env_vars=request.get("env") or {},
    )
    op = request["op"]
    if op == "stack_rm":
        workspace.remove_stack(stack_name, force=bool(request.get("force")))
        return {"ok": True}
    stack = auto.Stack.create_or_select(stack_name, workspace)
    for key, (value, secret) in (request.get("config") or {}).items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        stack.set_config(key, auto.ConfigValue(value=text, secret=bool(secret)))
    for key in request.get("remove_config") or []:
        stack.remove_config(key)
    out: list[str] = []
    err: list[str] = []
    args = dict(request.get("args") or {})
    if op == "config":
        return {"ok": True}
    if op == "outputs":
        return {"ok": True, "outputs": {k: _plain(v) for k, v in stack.outputs().items()}}
    if op == "export":
        return {"ok": True, "deployment": stack.export_stack().deployment}
    if op == "cli":
        return _cli(request, work_dir)
    common = {"on_output": out.append, "on_error": err.append, "color": "never"}
    result: Any
    if op == "up":
        result = stack.up(**common, **args)
    elif op == "preview":
        result = stack.preview(**common, **args)
    elif op == "destroy":
        result = stack.destroy(**common, **args)
    elif op == "refresh":
        result = stack.refresh(**common, **args)
    else:
        raise ValueError(f"unknown op {op!r}")
    reply: dict[str, Any] = {"ok": True, "stdout": result.stdout, "stderr": result.stderr}
    if op == "up":
        reply["outputs"] = {k: _plain(v) for k, v in result.outputs.items()}
    summary = getattr(result, "summary", None)
    if summary is not None:
        reply["summary"] = summary.resource_changes
    change_summary = getattr(result, "change_summary", None)
    if change_summary is not None:
        reply["summary"] = change_summary
    return reply


def _cli(request: dict[str, Any], work_dir: str) -> dict[str, Any]:
    """The CLI with exactly ``argv``, serving the project's program (see the module doc)."""
    server, port = _serve_program(work_dir)
    try:
        argv = ["pulumi", *request["argv"], f"--client=127.0.0.1:{port}", "--exec-kind=auto.inline"]
        done = subprocess.run(
            argv,
            cwd=work_dir,
            env={**os.environ, **(request.get("env") or {})},
            capture_output=True,
            text=True,
            timeout=float(request.get("timeout", 900)),
            check=False,
        )
    finally:
        server.stop(0)
    return {
        "ok": done.returncode == 0,
        "returncode": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr,
    }


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as handle:
        request = json.load(handle)
    try:
        reply = run(request)
    except Exception as exc:  # the CLI's failure is the result the test reads
        from pulumi.automation.errors import CommandError

        reply = {"ok": False, "error": str(exc), "type": type(exc).__name__}
        if isinstance(exc, CommandError):
            reply["stdout"] = getattr(exc, "stdout", "")
            reply["stderr"] = getattr(exc, "stderr", "")
        else:
            reply["traceback"] = traceback.format_exc()
    with open(argv[2], "w", encoding="utf-8") as handle:
        json.dump(reply, handle, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
