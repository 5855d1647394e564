"""``tailnetPolicy: file`` through the real Pulumi engine: the repository's policy file, with the
relay's region spliced in, goes to the tailnet through ``tailscale.Acl`` (the tailscale plugin,
backed by the Tailscale API peer), and a health run as health.yml runs it targets that resource.
"""

from __future__ import annotations

from pathlib import Path

from components import derpmap
from tests.engine.stacks import Stack
from tests.engine.workflow import operation, recorded_calls, replay
from tests.engine.world import USER_POLICY, World

POLICY_FILE = "tailnet-policy.hujson"


# The whole policy is the file's text with the region spliced in, comments kept; a green health
# run loads only the provider of the resource it targets (tailscale) and keeps the outputs.
def test_file_mode_publishes_the_file_and_health_runs_target_it(
    engine_world: World, tmp_path: Path
) -> None:
    stack = Stack.new(
        engine_world, "filemode", 918, 12318, 3418, tailnetPolicy="file", policyFile=POLICY_FILE
    )
    (stack.work_dir / POLICY_FILE).write_text(USER_POLICY)
    stack.configure()
    try:
        first = stack.up()
        policy = engine_world.tailscale.policy
        assert policy.startswith("// The tailnet policy file, as its owner keeps it.")
        assert derpmap.find_region(policy, 918) == first["outputs"]["derpRegion"]
        before = len(engine_world.plugin_calls())
        call = operation(recorded_calls(stack, "up", health=True, run_id="901"))
        assert any(
            t.endswith("$tailscale:index/acl:Acl::relay-918-tailnet-policy") for t in call.args
        )
        reply = replay(stack, call, tmp_path / "events.jsonl")
        assert reply["ok"], reply["stdout"] + reply["stderr"]
        calls = engine_world.plugin_calls()[before:]
        assert {c["plugin"] for c in calls if c["method"] == "start"} == {"tailscale"}
        assert engine_world.tailscale.policy == policy
        outputs = stack.outputs()
        assert outputs["certificateSerial"] == first["outputs"]["certificateSerial"]
    finally:
        stack.destroy(check=False)
    # Destroy forgets the Acl without resetting the tailnet's policy (reset_acl_on_destroy unset).
    assert derpmap.find_region(engine_world.tailscale.policy, 918) is not None
    engine_world.tailscale.edit(USER_POLICY)
