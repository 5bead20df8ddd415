"""Every command through its real entry point, ``python -m labwire``, against real devices."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from labwire.registry import DeviceRegistry, RegistryClient, register_device
from labwire.rpc import RPCProperty, RPCServer, RPCSignal
from labwire.sim import CameraClient, SimStage, StageClient
from labwire.transport.security import public_key_of

from .conftest import Lab, Running, environment, labwire

pytestmark = pytest.mark.timeout(40)

UNREACHABLE = "tcp://127.0.0.1:1"  # nobody listens on port 1
LOCAL = "tcp://127.0.0.1:0"

COMMANDS = [
    "registry",
    "ls",
    "info",
    "call",
    "ping",
    "stop",
    "get",
    "set",
    "watch",
    "sim",
    "keys",
    "demo",
    "rigs",
    "cluster",
    "broker",
    "completion",
    "ops",
    "cancel",
    "dashboard",
]


# --------------------------------------------------------------------------- help


def test_every_command_has_help_with_an_example() -> None:
    helps = {
        command: subprocess.Popen(
            [sys.executable, "-m", "labwire", *command.split(), "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(None),
        )
        for command in ["", *COMMANDS, "keys new", "keys show"]
    }
    for command, process in helps.items():
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, (command, err)
        assert "example:" in out, command
        assert "usage: labwire" in out


def test_a_usage_error_exits_2() -> None:
    result = labwire("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


# --------------------------------------------------------------------------- ls


def test_ls_lists_the_devices(lab: Lab) -> None:
    result = labwire("ls", registry=lab.url)
    assert result.returncode == 0, result.stderr
    for name in ("camera", "stage", "controller", lab.camera.endpoint):
        assert name in result.stdout
    result = labwire("ls", "--json", "--type", "stage", registry=lab.url)
    devices = json.loads(result.stdout)
    assert [(d["name"], d["address"]) for d in devices] == [("stage", lab.stage.endpoint)]


def test_ls_says_which_registry_is_unreachable_and_what_to_try() -> None:
    result = labwire("ls", "--registry", UNREACHABLE, "--timeout", "0.5")
    assert result.returncode == 4
    assert UNREACHABLE in result.stderr
    assert "labwire registry" in result.stderr
    assert "LABWIRE_REGISTRY" in result.stderr


# --------------------------------------------------------------------------- info


def test_info_shows_methods_properties_and_signals(lab: Lab) -> None:
    result = labwire("info", "stage", registry=lab.url)
    assert result.returncode == 0, result.stderr
    for text in ("move_to", "60000 ms", "refuses targets outside", "speed", "motionDone"):
        assert text in result.stdout
    data = json.loads(labwire("info", lab.camera.endpoint, "--json").stdout)
    assert data["methods"]["get_image"]["kind"] == "buffer"
    assert data["methods"]["get_image"]["timeout_ms"] == 10000
    assert "lores" in data["methods"]["get_image"]["signature"]
    assert data["properties"]["encoding"]["writable"] is True
    assert data["properties"]["resolution"]["value"] == [640, 480]
    assert "modeChanged" in data["signals"]


def test_info_of_an_unknown_device_exits_3(lab: Lab) -> None:
    result = labwire("info", "microscope", registry=lab.url)
    assert result.returncode == 3
    assert "no device named 'microscope'" in result.stderr
    assert lab.url in result.stderr


def test_a_device_url_nobody_answers_exits_4() -> None:
    result = labwire("info", UNREACHABLE, "--timeout", "0.5")
    assert result.returncode == 4
    assert UNREACHABLE in result.stderr


# --------------------------------------------------------------------------- call


def test_call_passes_json_arguments_and_prints_the_result(lab: Lab) -> None:
    result = labwire("call", "stage", "move_to", "100", "200.5", "z=50", registry=lab.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [100.0, 200.5, 50.0]
    assert lab.stage.position == [100.0, 200.5, 50.0]


def test_call_saves_a_buffer_result(lab: Lab, tmp_path: Path) -> None:
    result = labwire("call", "camera", "get_image", "lores=true", registry=lab.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "png" and info["size"] == [320, 240]
    saved = tmp_path / "camera_get_image.png"
    with Image.open(saved) as image:
        assert image.size == (320, 240)
    assert "saved" in result.stderr and "camera_get_image.png" in result.stderr
    target = tmp_path / "full.png"
    result = labwire("call", "camera", "get_image", "--out", str(target), registry=lab.url)
    assert result.returncode == 0, result.stderr
    with Image.open(target) as image:
        assert image.size == (640, 480)


def test_call_reports_a_remote_error_with_exit_1(lab: Lab) -> None:
    result = labwire("call", "stage", "move_to", "0", "0", "999", registry=lab.url)
    assert result.returncode == 1
    assert "ValueError" in result.stderr
    assert "travel limits of axis z" in result.stderr


def test_call_of_an_unknown_method_exits_3(lab: Lab) -> None:
    result = labwire("call", "stage", "fly", registry=lab.url)
    assert result.returncode == 3
    assert "no method named 'fly'" in result.stderr
    assert "move_to" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["NaN", "0", "0"], "JSON has no NaN or Infinity"),
        (["1e999", "0", "0"], "too large for a JSON number"),
        (["[1, 2", "0", "0"], "is not valid JSON"),
        (["1", "2"], "missing a required argument: 'z'"),
        (["1", "2", "3", "4"], "too many positional arguments"),
        (["1", "2", "3", "w=4"], "unexpected keyword argument 'w'"),
    ],
)
def test_a_value_or_argument_count_the_device_cannot_take_is_a_usage_error(
    lab: Lab, arguments: list[str], message: str
) -> None:
    result = labwire("call", "stage", "move_to", *arguments, registry=lab.url)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    if "argument" in message:  # the signature, as the device describes it, without self
        assert "move_to(x: float, y: float, z: float)" in result.stderr


def test_python_spellings_of_true_false_and_none_are_taken_as_such(
    lab: Lab, tmp_path: Path
) -> None:
    for spelling, size in (("False", [640, 480]), ("True", [320, 240])):
        out = str(tmp_path / f"{spelling}.png")
        result = labwire(
            "call", "camera", "get_image", f"lores={spelling}", "--out", out, registry=lab.url
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["size"] == size


# --------------------------------------------------------------------------- get / set


def test_get_one_property_or_all(lab: Lab) -> None:
    result = labwire("get", "stage", "limits", registry=lab.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["z"] == [0.0, 400.0]
    values = json.loads(labwire("get", "camera", registry=lab.url).stdout)
    assert {"mode", "resolution", "rotation", "encoding", "config"} <= set(values)


def test_get_of_an_unknown_property_exits_3(lab: Lab) -> None:
    result = labwire("get", "camera", "zoom", registry=lab.url)
    assert result.returncode == 3
    assert "no property named 'zoom'" in result.stderr


def test_set_writes_and_reads_back(lab: Lab) -> None:
    try:
        result = labwire("set", "camera", "rotation", "180", registry=lab.url)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == 180
        result = labwire("set", "camera", "resolution", "800x600", registry=lab.url)
        assert json.loads(result.stdout) == [800, 600]
    finally:
        with CameraClient(None, lab.camera.endpoint) as camera:
            camera.rotation = 0
            camera.resolution = [640, 480]


def test_set_of_a_non_finite_number_or_broken_json_is_a_usage_error(lab: Lab) -> None:
    for value, message in (("NaN", "NaN"), ("{bad json", "is not valid JSON")):
        result = labwire("set", "stage", "speed", value, registry=lab.url)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


def test_set_refuses_a_bad_value_with_exit_1(lab: Lab) -> None:
    result = labwire("set", "camera", "mode", "SLOW", registry=lab.url)
    assert result.returncode == 1
    assert "STILL or VIDEO" in result.stderr
    result = labwire("set", "stage", "position", "[1, 2, 3]", registry=lab.url)
    assert result.returncode == 1
    assert "read-only" in result.stderr


# --------------------------------------------------------------------------- watch


def test_watch_prints_signals_as_json_lines(lab: Lab, running: Callable[..., Running]) -> None:
    watch = running("watch", "stage", "motionDone", "--json", "--count", "2", registry=lab.url)
    watch.line("stderr", lambda line: line.startswith("watching"))
    with StageClient(None, lab.stage.endpoint) as stage:
        x = 0.0
        deadline = time.monotonic() + 20
        while watch.process.poll() is None:  # the subscription takes a moment to reach the stage
            assert time.monotonic() < deadline, f"watch printed {watch.seen}"
            x = (x + 10.0) % 800
            stage.move_to(x, 0, 0)
    assert watch.wait() == 0
    events = [json.loads(watch.line("stdout")) for _ in range(2)]
    assert all(event["signal"] == "motionDone" for event in events)
    assert events[0]["device"] == "stage"
    assert len(events[0]["args"][0]) == 3


def test_watch_of_an_unknown_signal_exits_3(lab: Lab) -> None:
    result = labwire("watch", "stage", "explode", registry=lab.url)
    assert result.returncode == 3
    assert "no signal named 'explode'" in result.stderr


def test_watch_registry_prints_changes(lab: Lab, running: Callable[..., Running]) -> None:
    watch = running("watch", "--registry", lab.url, "--json", "--count", "3")
    snapshot = json.loads(watch.line())
    assert snapshot["event"] == "snapshot"
    assert {d["name"] for d in snapshot["devices"]} >= {"camera", "stage"}
    with SimStage(None, "tcp://127.0.0.1:0") as extra:
        extra.register_to_registry("stage", "extra-stage", lab.url)
        added = json.loads(watch.line())
    removed = json.loads(watch.line())
    assert (added["event"], added["name"], added["address"]) == (
        "added",
        "extra-stage",
        extra.endpoint,
    )
    assert (removed["event"], removed["reason"]) == ("removed", "unregistered")
    assert watch.wait() == 0


def test_watch_needs_a_device_or_the_registry() -> None:
    result = labwire("watch")
    assert result.returncode == 2
    assert "--registry" in result.stderr


def test_watch_of_an_unreachable_registry_exits_4() -> None:
    result = labwire("watch", "--registry", UNREACHABLE, "--timeout", "0.5")
    assert result.returncode == 4
    assert UNREACHABLE in result.stderr


# --------------------------------------------------------------------------- registry


def test_registry_serves_until_terminated(running: Callable[..., Running]) -> None:
    registry = running("registry", "--bind", "tcp://127.0.0.1:0", "--json")
    ready = json.loads(registry.line())
    assert ready["event"] == "ready" and ready["secure"] is False
    with SimStage(None, "tcp://127.0.0.1:0") as stage:
        stage.register_to_registry("stage", "stage", ready["url"])
        with RegistryClient(ready["url"]) as client:
            assert client.lookup("stage").address == stage.endpoint
        assert json.loads(registry.line())["event"] == "added"
    registry.process.send_signal(signal.SIGTERM)
    assert registry.wait() == 0


def test_registry_on_a_busy_port_exits_1(lab: Lab) -> None:
    result = labwire("registry", "--bind", lab.url)
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
    assert "--bind" in result.stderr


# --------------------------------------------------------------------------- sim


def test_sim_serves_and_registers_a_device(lab: Lab, running: Callable[..., Running]) -> None:
    device = running(
        "sim", "stage", "--name", "stage-2", "--json", "--speed", "500", registry=lab.url
    )
    ready = json.loads(device.line())
    assert (ready["role"], ready["name"], ready["registry"]) == ("stage", "stage-2", lab.url)
    with RegistryClient(lab.url) as registry:
        assert registry.lookup("stage-2").address == ready["endpoint"]
        with StageClient(None, ready["endpoint"]) as stage:
            assert stage.speed == 500.0
        device.process.send_signal(signal.SIGTERM)
        assert device.wait() == 0
        assert "stage-2" not in registry.get_devices()  # unregistered on the way out


def test_sim_controller_scans_with_devices_found_by_name(
    lab: Lab, running: Callable[..., Running], tmp_path: Path
) -> None:
    controller = running("sim", "controller", "--name", "scanner", "--json", registry=lab.url)
    assert json.loads(controller.line())["name"] == "scanner"
    config = json.dumps({"positions": 2, "output": str(tmp_path), "lores": True})
    result = labwire("call", "scanner", "run_scan", config, registry=lab.url)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["images"]) == ("done", 2)
    assert summary["camera"] == lab.camera.endpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "image_000.png",
        "image_001.png",
        "metadata.json",
    ]


def test_sim_stops_when_stdin_closes(lab: Lab, running: Callable[..., Running]) -> None:
    device = running("sim", "camera", "--no-register", "--json", "--stop-on-eof")
    ready = json.loads(device.line())
    assert ready["registry"] is None
    assert device.process.stdin is not None
    device.process.stdin.close()
    assert device.wait() == 0


def test_sim_refuses_a_bad_option_with_exit_2() -> None:
    result = labwire("sim", "camera", "--resolution", "5x5", "--no-register")
    assert result.returncode == 2
    assert "outside" in result.stderr


# --------------------------------------------------------------------------- keys


def test_keys_new_and_show(tmp_path: Path) -> None:
    result = labwire("keys", "new", "rig-3", "--dir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    assert Path(made["public"]) == tmp_path / "rig-3.key"
    assert os.stat(made["secret"]).st_mode & 0o777 == 0o600
    shown = labwire("keys", "show", made["public"])
    assert shown.stdout.strip() == made["key"] == public_key_of(tmp_path / "rig-3.key")
    assert labwire("keys", "show", made["secret"]).stdout.strip() == made["key"]


def test_keys_never_overwrite_and_show_needs_a_key_file(tmp_path: Path) -> None:
    assert labwire("keys", "new", "a", "--dir", str(tmp_path)).returncode == 0
    again = labwire("keys", "new", "a", "--dir", str(tmp_path))
    assert again.returncode == 1
    assert "already exists" in again.stderr
    (tmp_path / "notes.txt").write_text("hello\n")
    shown = labwire("keys", "show", str(tmp_path / "notes.txt"))
    assert shown.returncode == 1
    assert "no key" in shown.stderr


def test_an_out_of_range_key_in_the_environment_exits_5_with_a_clear_message() -> None:
    env = {**environment(UNREACHABLE), "LABWIRE_SECRET_KEY": "#" * 40}
    result = subprocess.run(
        [sys.executable, "-m", "labwire", "ls"], capture_output=True, text=True, env=env, timeout=20
    )
    assert result.returncode == 5
    assert "LABWIRE_SECRET_KEY" in result.stderr and "decodes out of range" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------ network text is never markup


class _Hostile(RPCServer):
    """A device whose names, docstrings and values look like markup and escape sequences."""

    noticed = RPCSignal(str)

    @RPCServer.register_method_json()
    def describe(self, size: list[int]) -> str:
        """Shows [/x] and [red]red[/red] and a [width, height] list; \x1b[2J clears."""
        return "[/x]"

    def _label(self) -> str:
        return "[red]\x1b[31mlabel\u202e"

    label = RPCProperty(_label)


def test_text_from_the_network_is_shown_as_text(tmp_path: Path) -> None:
    with DeviceRegistry(None, "127.0.0.1", "0") as registry, _Hostile(None, LOCAL) as device:
        register_device(None, "[bold]type", device.endpoint, "[bold]cam[red]", registry.url)
        listed = labwire("ls", registry=registry.url)
        assert listed.returncode == 0, listed.stderr
        assert "[bold]cam[red]" in listed.stdout and "[bold]type" in listed.stdout
        info = labwire("info", device.endpoint)
    assert info.returncode == 0, info.stderr
    for shown in ("[/x]", "[red]red[/red]", "[width, height]", "\\x1b[2J", "[red]\\u001b[31mlabel"):
        assert shown in info.stdout
    assert "\x1b" not in info.stdout and "\u202e" not in info.stdout


def test_a_secure_folder_that_does_not_exist_is_refused_not_made(tmp_path: Path) -> None:
    typo = tmp_path / "lab-kyes"
    result = labwire("ls", "--secure", str(typo), "--registry", UNREACHABLE)
    assert result.returncode == 5
    assert f"no key folder {typo}" in result.stderr and "labwire keys new" in result.stderr
    assert not typo.exists()
    assert labwire("keys", "new", "labwire", "--dir", str(typo)).returncode == 0
    made = labwire("ls", "--secure", str(typo), "--registry", UNREACHABLE, "--timeout", "0.3")
    assert made.returncode == 4, made.stderr


# ------------------------------------------------------------------------------ ping / stop


def test_ping_reports_round_trips_and_the_labwire_version(lab: Lab) -> None:
    result = labwire("ping", "stage", "--count", "3", "--json", registry=lab.url)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["round_trips_ms"]) == 3 and report["server"].startswith("labwire 0.")
    text = labwire("ping", "stage", registry=lab.url)
    assert "5 round trips, median" in text.stdout
    assert labwire("ping", "stage", "--count", "0", registry=lab.url).returncode == 2


def test_stop_ends_a_device(running: Callable[..., Running]) -> None:
    device = running("sim", "stage", "--no-register", "--json")
    endpoint = json.loads(device.line())["endpoint"]
    result = labwire("stop", endpoint, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stopped"] is True
    assert device.wait() == 0


def test_stop_without_an_admin_key_is_refused_with_exit_5(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    lab_keys, own_keys = tmp_path / "lab", tmp_path / "alice"
    assert labwire("keys", "new", "labwire", "--dir", str(lab_keys)).returncode == 0
    assert labwire("keys", "new", "alice", "--dir", str(own_keys)).returncode == 0
    (lab_keys / "alice.key").write_text((own_keys / "alice.key").read_text())  # accepted
    device = running("sim", "stage", "--no-register", "--json", "--secure", str(lab_keys))
    endpoint = json.loads(device.line())["endpoint"]
    env = {
        **environment(None),
        "LABWIRE_SECRET_KEY": str(own_keys / "alice.key_secret"),
        "LABWIRE_SERVER_KEY": str(lab_keys / "labwire.key"),
    }

    def as_alice(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "labwire", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=20)

    result = as_alice("stop", endpoint)
    assert result.returncode == 5, result.stderr
    assert "refused to stop" in result.stderr and "admin key" in result.stderr
    assert as_alice("ping", endpoint, "--count", "1").returncode == 0


def test_a_call_with_no_answer_in_time_says_what_in_words_and_exits_4() -> None:
    with SimStage(None, LOCAL, speed=100.0) as stage:  # 7 s to travel 700 mm
        result = labwire("call", stage.endpoint, "move_to", "700", "0", "0", "--timeout", "0.2")
        stage.halt()
    assert result.returncode == 4, result.stderr
    assert "no reply from" in result.stderr and "call of move_to()" in result.stderr
    assert "METHOD_CALL" not in result.stderr and "Traceback" not in result.stderr


def test_a_secured_registry_tells_an_unsecured_command_so_and_failures_print_once(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    lab_keys, other_keys = tmp_path / "lab", tmp_path / "other"
    for folder in (lab_keys, other_keys):
        assert labwire("keys", "new", "labwire", "--dir", str(folder)).returncode == 0
    registry = running(
        "registry", "--bind", "tcp://127.0.0.1:0", "--json", "--secure", str(lab_keys)
    )
    ready = json.loads(registry.line())
    assert ready["secure"] is True
    plain = labwire("ls", "--registry", ready["url"], "--timeout", "1")
    assert plain.returncode == 5, plain.stderr
    assert "requires security (CurveZMQ)" in plain.stderr and "--secure DIR" in plain.stderr
    wrong = labwire("ls", "--registry", ready["url"], "--timeout", "1", "--secure", str(other_keys))
    assert wrong.returncode == 5, wrong.stderr
    assert wrong.stderr.count("security handshake failed") == 1


# --------------------------------------------------------------------------- operations


@pytest.fixture
def slow_stage() -> Iterator[SimStage]:
    stage = SimStage(None, LOCAL, speed=20.0).start()
    yield stage
    stage.close()


def test_ops_and_cancel_have_help() -> None:
    for command in ("ops", "cancel"):
        result = labwire(command, "--help")
        assert result.returncode == 0 and "example:" in result.stdout


def test_ctrl_c_in_call_cancels_the_move_and_the_stage_stops(slow_stage: SimStage) -> None:
    move = ["call", slow_stage.endpoint, "move_to", "700", "700", "300"]
    call = subprocess.Popen(
        [sys.executable, "-m", "labwire", *move],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(None),
    )
    try:
        deadline = time.monotonic() + 20
        while not slow_stage.is_moving:  # the move is under way
            assert call.poll() is None, call.communicate()
            assert time.monotonic() < deadline, "the move did not start"
            time.sleep(0.02)
        call.send_signal(signal.SIGINT)
        _, stderr = call.communicate(timeout=20)
    finally:
        if call.poll() is None:
            call.kill()
            call.communicate()
    assert call.returncode == 130, stderr
    assert "cancelled on the device" in stderr and "is cancelled" in stderr
    assert not slow_stage.is_moving
    stopped = slow_stage.position
    time.sleep(0.2)  # the stage stays where it stopped: a move would change it within a tick
    assert slow_stage.position == stopped
    assert stopped != [700.0, 700.0, 300.0]


def test_ops_lists_and_cancel_cancels_an_operation(slow_stage: SimStage) -> None:
    from labwire.rpc import OperationCancelled

    with StageClient(None, slow_stage.endpoint) as client:
        handle = client.start_operation("move_to", 700, 700, 300)
        listed = labwire("ops", slow_stage.endpoint)
        assert listed.returncode == 0, listed.stderr
        assert handle.id in listed.stdout and "move_to" in listed.stdout
        assert "running" in listed.stdout
        as_json = json.loads(labwire("ops", slow_stage.endpoint, "--json").stdout)
        assert [op["id"] for op in as_json] == [handle.id]
        cancelled = labwire("cancel", slow_stage.endpoint, handle.id)
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"operation {handle.id} (move_to) is cancel" in cancelled.stderr
        with pytest.raises(OperationCancelled):
            handle.result(10)
        handle.close()
        unknown = labwire("cancel", slow_stage.endpoint, handle.id + "0")
        assert unknown.returncode == 3
        assert "no operation" in unknown.stderr
