"""Shell completion, asked of ``python -m labwire`` the way a shell asks it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Lab, environment, labwire

pytestmark = pytest.mark.timeout(40)


def complete(line: str, tmp_path: Path, registry: str | None = None) -> list[str]:
    """The completions a shell gets for the command ``line`` (the cursor at its end)."""
    out = tmp_path / "completions"
    env = {
        **environment(registry),
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_SHELL": "bash",
        "_ARGCOMPLETE_IFS": "\n",
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
    }
    subprocess.run(
        [sys.executable, "-m", "labwire"], env=env, capture_output=True, timeout=20, check=True
    )
    return [word.strip() for word in out.read_text().split("\n") if word.strip()]


def test_commands_complete(tmp_path: Path) -> None:
    assert complete("labwire ca", tmp_path) == ["call", "cancel"]
    assert "completion" in complete("labwire co", tmp_path)


def test_device_names_methods_properties_and_signals_complete(lab: Lab, tmp_path: Path) -> None:
    assert complete("labwire call sta", tmp_path, lab.url) == ["stage"]
    assert complete("labwire call stage move", tmp_path, lab.url) == ["move_to"]
    assert "speed" in complete("labwire get stage ", tmp_path, lab.url)
    assert complete("labwire watch stage moti", tmp_path, lab.url) == ["motionDone"]


def test_an_unreachable_registry_offers_nothing_and_says_nothing(tmp_path: Path) -> None:
    assert complete("labwire info --registry tcp://127.0.0.1:1 sta", tmp_path) == []


def test_the_shell_script_is_printed_for_each_shell() -> None:
    for shell in ("bash", "zsh", "fish"):
        result = labwire("completion", shell)
        assert result.returncode == 0, result.stderr
        assert "labwire" in result.stdout
