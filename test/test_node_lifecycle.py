"""posediff_node as a managed (lifecycle) node over real DDS: this test drives the transitions
with lifecycle_msgs service calls, as a lifecycle manager or `ros2 lifecycle set` would, while
a synthetic camera publishes. Unconfigured and inactive: no subscriptions, no outputs;
active: poses; deactivated: nothing more; a configure that fails says why and stays
unconfigured."""

import time

import pytest
from test_node_e2e import BUNDLED, Pipeline

pytestmark = [pytest.mark.ros, pytest.mark.skipif(not BUNDLED.exists(),
                                                  reason="needs the bundled model")]


class Lifecycle:
    """ChangeState / GetState clients of /<namespace>/posediff_node."""

    def __init__(self, pipe: Pipeline):
        from lifecycle_msgs.srv import ChangeState, GetState

        self.pipe = pipe
        node = f"/{pipe.namespace}/posediff_node"
        self.change = pipe.collector.create_client(ChangeState, f"{node}/change_state")
        self.get = pipe.collector.create_client(GetState, f"{node}/get_state")
        self._types = ChangeState, GetState
        assert self.change.wait_for_service(timeout_sec=60) and self.get.wait_for_service(
            timeout_sec=10), "no lifecycle services"

    def _call(self, client, request, timeout: float = 120.0):
        future = client.call_async(request)
        self.pipe.executor.spin_until_future_complete(future, timeout_sec=timeout)
        assert future.done(), "no answer from the lifecycle service"
        return future.result()

    def state(self) -> str:
        return self._call(self.get, self._types[1].Request()).current_state.label

    def transition(self, name: str) -> tuple[bool, float]:
        """(success, seconds until the answer) of the transition `name`."""
        from lifecycle_msgs.msg import Transition

        request = self._types[0].Request()
        request.transition.id = getattr(Transition, f"TRANSITION_{name.upper()}")
        start = time.monotonic()
        ok = self._call(self.change, request).success
        return ok, time.monotonic() - start


def _io(pipe) -> tuple[int, int]:
    """(subscribers of the node's depth input, publishers of its object_poses)."""
    ns = pipe.namespace
    return (pipe.collector.count_subscribers(f"/{ns}/depth"),
            pipe.collector.count_publishers(f"/{ns}/object_poses"))


def _wait(pipe, condition, timeout: float) -> bool:
    return pipe.collector.spin_until(pipe.executor, condition, timeout)


def test_transitions_driven_by_a_lifecycle_client():
    pipe = Pipeline("", num_objects=2, namespace="life", node_params=("managed:=true",))
    c = pipe.collector
    try:
        life = Lifecycle(pipe)
        assert life.state() == "unconfigured"
        _wait(pipe, lambda: False, 2.0)  # discovery settles: nothing of the node's I/O exists
        assert _io(pipe) == (0, 0) and not c.poses

        ok, configure_s = life.transition("configure")  # model load + warm-up
        assert ok and life.state() == "inactive"
        _wait(pipe, lambda: False, 2.0)
        assert _io(pipe) == (0, 0) and not c.poses  # configured, not yet processing

        ok, activate_s = life.transition("activate")
        assert ok and life.state() == "active"
        assert _wait(pipe, lambda: len(c.poses) >= 2, 60), "no poses while active"
        assert _io(pipe)[0] == 1

        ok, _ = life.transition("deactivate")
        assert ok and life.state() == "inactive"
        _wait(pipe, lambda: False, 1.0)  # what was on the wire before the answer
        seen = len(c.poses)
        _wait(pipe, lambda: False, 3.0)  # the camera goes on publishing ...
        assert len(c.poses) == seen, "outputs while inactive"  # ... the node does nothing
        assert _io(pipe) == (0, 0)

        ok, reactivate_s = life.transition("activate")  # the model is still loaded
        assert ok and _wait(pipe, lambda: len(c.poses) > seen, 60), "no poses after re-activate"

        assert life.transition("deactivate")[0] and life.transition("cleanup")[0]
        assert life.state() == "unconfigured"
        ok, reconfigure_s = life.transition("configure")  # loads again after the cleanup
        assert ok and life.state() == "inactive"
        assert life.transition("unconfigured_shutdown")[0] is False  # not from inactive
        assert life.transition("inactive_shutdown")[0] and life.state() == "finalized"
    finally:
        logs = pipe.close()
    print(f"configure {configure_s:.2f} s (model load + warm-up), activate "
          f"{1e3 * activate_s:.0f} ms, re-activate {1e3 * reactivate_s:.0f} ms, configure "
          f"after cleanup {reconfigure_s:.2f} s")
    print("\n".join(x for x in logs.splitlines() if "configured in" in x or "activated in" in x))
    assert "configured in" in logs and "deactivated" in logs and "cleaned up" in logs, logs
    assert "Traceback" not in logs, logs


def test_a_failing_configure_says_why_and_stays_unconfigured():
    pipe = Pipeline("/nonexistent/model.json", num_objects=1, namespace="lifefail",
                    node_params=("managed:=true",))
    try:
        life = Lifecycle(pipe)
        ok, _ = life.transition("configure")
        assert not ok and life.state() == "unconfigured"
        assert life.transition("activate")[0] is False  # not from unconfigured
        alive = pipe.node.poll() is None  # a failed transition does not end the node
    finally:
        logs = pipe.close()
    assert alive, logs
    lines = [x for x in logs.splitlines() if "configure failed" in x]
    assert len(lines) == 1 and "/nonexistent/model.json" in lines[0], logs


@pytest.mark.ros2launch
def test_pose_launch_managed_true_starts_a_lifecycle_node(rclpy_context):
    """`ros2 launch posediff_ros pose.launch.py managed:=true`: the node waits unconfigured
    until a lifecycle client configures and activates it; Ctrl-C ends the launch cleanly."""
    import subprocess

    import rclpy
    from conftest import REPO, ros2_cli, stop_group
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rclpy.executors import SingleThreadedExecutor

    ros2 = ros2_cli()
    if ros2 is None:
        pytest.skip("no `ros2` command: launch stack not installed")
    launch = subprocess.Popen(
        [ros2, "launch", "posediff_ros", "pose.launch.py", "managed:=true", "model:=random",
         "namespace:=lifelaunch"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=REPO, start_new_session=True)
    node = rclpy.create_node("lifecycle_launch_client", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)

    def call(client, request):
        future = client.call_async(request)
        executor.spin_until_future_complete(future, timeout_sec=120)
        return future.result()

    try:
        get = node.create_client(GetState, "/lifelaunch/posediff_node/get_state")
        change = node.create_client(ChangeState, "/lifelaunch/posediff_node/change_state")
        assert get.wait_for_service(timeout_sec=90), "no lifecycle services after launch"
        states = [call(get, GetState.Request()).current_state.label]
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            request = ChangeState.Request()
            request.transition.id = transition
            assert call(change, request).success
            states.append(call(get, GetState.Request()).current_state.label)
    finally:
        node.destroy_node()
        output = stop_group(launch)
    assert states == ["unconfigured", "inactive", "active"], output
    assert launch.returncode == 0 and "Traceback" not in output, output
