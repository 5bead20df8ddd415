"""The dashboard in a real headless chromium, against a real registry and simulated devices."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labwire.rpc import RPCClient
from tests.web.conftest import HOSTILE_NAME, Lab, wait_for

pytestmark = pytest.mark.timeout(60)

DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "dashboard.png"


@pytest.fixture(scope="module")
def page(browser: Any, lab: Lab) -> Any:
    browser.get(lab.dashboard.url)
    wait_for(lambda: len(cards(browser)) >= 4, what="the device panels")
    return browser


def cards(driver: Any) -> dict[str, Any]:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, "section.device")
    return {card.get_attribute("data-device"): card for card in found}


def card(driver: Any, name: str) -> Any:
    return wait_for(lambda: cards(driver).get(name), what=f"the panel of {name!r}")


def up(driver: Any, name: str) -> Any:
    return wait_for(
        lambda: (c := card(driver, name)).get_attribute("data-status") == "up" and c,
        what=f"{name!r} connected",
        shown=lambda: f"panel {card(driver, name).text[:300]!r}",
    )


def form(panel: Any, method: str) -> Any:
    from selenium.webdriver.common.by import By

    for found in panel.find_elements(By.CSS_SELECTOR, "form.method"):
        if found.get_attribute("data-method") == method:
            return found
    raise AssertionError(f"no form for {method}")


def test_the_device_list_appears(page: Any, lab: Lab) -> None:
    from selenium.webdriver.common.by import By

    listed = wait_for(
        lambda: (
            {item.text for item in page.find_elements(By.CSS_SELECTOR, "#device-list li")}
            >= {"camera", "stage", "victim", HOSTILE_NAME}
            and [item.text for item in page.find_elements(By.CSS_SELECTOR, "#device-list li")]
        ),
        what="every device listed",
    )
    assert listed == sorted(listed)
    assert lab.registry.url in page.find_element(By.ID, "registry").text


def test_a_hostile_device_name_shows_as_text(page: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    panel = up(page, HOSTILE_NAME)
    assert panel.find_element(By.CSS_SELECTOR, "h2.name").text == HOSTILE_NAME
    assert page.find_elements(By.CSS_SELECTOR, "img[src=x]") == []
    with pytest.raises(NoAlertPresentException):
        page.switch_to.alert.text  # noqa: B018


def test_a_method_call_from_its_form_returns_the_result(page: Any) -> None:
    from selenium.webdriver.common.by import By

    move = form(up(page, "stage"), "move_to")
    for name, value in (("x", "12.5"), ("y", "20"), ("z", "5")):
        field = move.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    move.find_element(By.CSS_SELECTOR, "button").click()
    shown = wait_for(
        lambda: move.find_element(By.CSS_SELECTOR, ".result pre").text, what="the result"
    )
    assert [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", shown)] == [12.5, 20.0, 5.0]


def test_a_remote_error_shows_next_to_the_form(page: Any) -> None:
    from selenium.webdriver.common.by import By

    move = form(up(page, "stage"), "move_to")
    for name, value in (("x", "1e9"), ("y", "0"), ("z", "0")):
        field = move.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    move.find_element(By.CSS_SELECTOR, "button").click()
    error = wait_for(lambda: move.find_element(By.CSS_SELECTOR, ".result .error").text)
    assert "limit" in error.lower() or "outside" in error.lower()


def test_a_property_set_from_the_page_changes_on_the_device(page: Any, lab: Lab) -> None:
    from selenium.webdriver.common.by import By

    panel = up(page, "stage")
    row = panel.find_element(By.CSS_SELECTOR, "tr[data-property=speed]")
    field = row.find_element(By.CSS_SELECTOR, "input")
    field.clear()
    field.send_keys("1234.5")
    row.find_element(By.CSS_SELECTOR, "button").click()
    with RPCClient(None, lab.stage.endpoint) as client:
        wait_for(lambda: client.get_property("speed") == 1234.5, what="the new speed")
    wait_for(lambda: "1234.5" in row.find_element(By.CSS_SELECTOR, "td.value code").text)


def test_a_signal_from_the_device_shows_up_in_the_page(page: Any, lab: Lab) -> None:
    from selenium.webdriver.common.by import By

    panel = up(page, "stage")
    lab.stage.motionDone.emit([7.25, 8.5, 9.75])
    line = wait_for(
        lambda: [
            li.text
            for li in panel.find_elements(By.CSS_SELECTOR, "ol.log li")
            if "motionDone" in li.text and "7.25" in li.text
        ],
        timeout=5,
        what="the signal in the log",
    )
    assert "8.5" in line[0]
    wait_for(lambda: "motionDone[0]" in panel.find_element(By.CSS_SELECTOR, ".legend").text)


def test_an_image_from_the_camera_is_displayed(page: Any) -> None:
    from selenium.webdriver.common.by import By

    grab = form(up(page, "camera"), "get_image")
    grab.find_element(By.CSS_SELECTOR, "button").click()
    image = wait_for(lambda: grab.find_element(By.CSS_SELECTOR, ".result img"), what="an image")
    width = wait_for(
        lambda: page.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", image
        ),
        what="the image loaded",
    )
    assert width == 640
    assert '"format"' in grab.find_element(By.CSS_SELECTOR, ".result pre").text


def test_a_buffer_that_is_no_image_is_offered_as_a_download(page: Any, lab: Lab) -> None:
    import urllib.request

    from selenium.webdriver.common.by import By

    grab = form(up(page, "camera"), "get_image")
    with RPCClient(None, lab.camera.endpoint) as client:
        client.set_property("encoding", "raw")
        try:
            grab.find_element(By.NAME, "lores").click()
            grab.find_element(By.CSS_SELECTOR, "button").click()
            link = wait_for(
                lambda: grab.find_element(By.CSS_SELECTOR, ".result a[download]"), what="a link"
            )
        finally:
            client.set_property("encoding", "png")
    assert link.text == "download 230400 bytes"
    with urllib.request.urlopen(link.get_attribute("href"), timeout=10) as response:
        assert len(response.read()) == 320 * 240 * 3
        assert "attachment" in response.headers["Content-Disposition"]


def test_a_running_operation_shows_its_progress_and_is_cancelled(page: Any, lab: Lab) -> None:
    from selenium.webdriver.common.by import By

    panel = up(page, "slow")
    operations = panel.find_element(By.CSS_SELECTOR, ".operations")
    move = form(panel, "move_to")
    assert move.find_element(By.CSS_SELECTOR, "button").text == "Start"
    for name, value in (("x", "50"), ("y", "0"), ("z", "0")):
        field = move.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    move.find_element(By.CSS_SELECTOR, "button").click()
    wait_for(
        lambda: "% at" in move.find_element(By.CSS_SELECTOR, ".result .progress").text,
        what="the progress under the form",
    )
    row = wait_for(
        lambda: operations.find_element(By.CSS_SELECTOR, "li[data-state=running]"),
        what="the running operation listed",
    )
    assert row.find_element(By.CSS_SELECTOR, "code.mname").text == "move_to"
    wait_for(lambda: "% at" in row.find_element(By.CSS_SELECTOR, ".op-message").text)
    wait_for(lambda: "s left" in row.find_element(By.CSS_SELECTOR, ".elapsed").text)
    with RPCClient(None, lab.slow.endpoint) as client:
        assert client.get_property("is_moving") is True
        row.find_element(By.CSS_SELECTOR, "button.cancel").click()
        wait_for(
            lambda: row.get_attribute("data-state") == "cancelled",
            what="the operation cancelled",
            shown=lambda: f"operations {operations.text!r}, form {move.text!r}",
        )
        assert (
            "cancelled from the dashboard" in row.find_element(By.CSS_SELECTOR, ".op-outcome").text
        )
        error = wait_for(lambda: move.find_element(By.CSS_SELECTOR, ".result .error").text)
        assert "cancelled" in error
        wait_for(lambda: client.get_property("is_moving") is False, what="the stage stopped")
        stopped = client.get_property("position")
        assert 0 < stopped[0] < 50
        assert client.get_property("position") == stopped


def test_a_killed_device_greys_out(page: Any, lab: Lab, tmp_path: Path) -> None:
    panel = up(page, "victim")
    assert "gone" not in panel.get_attribute("class")
    lab.victim.send_signal(signal.SIGKILL)
    lab.victim.wait(timeout=10)
    wait_for(
        lambda: "gone" in card(page, "victim").get_attribute("class"),
        what="greyed out",
        shown=lambda: f"status {card(page, 'victim').get_attribute('data-status')!r}",
    )
    assert card(page, "victim").get_attribute("data-status") in ("unreachable", "removed")
    assert "gone" not in card(page, "stage").get_attribute("class")


def test_a_screenshot_of_the_page_during_the_demo(browser: Any, tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labwire",
            "demo",
            "--dashboard",
            "127.0.0.1:0",
            "--positions",
            "400",
            "--lores",
            "--out",
            str(tmp_path / "scan"),
            "--keep-running",  # the page is used after the scan too, on a slow machine
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("LABWIRE_")},
            "COLUMNS": "200",
        },
    )
    try:
        assert demo.stderr is not None
        address = None
        for line in demo.stderr:
            found = re.search(r"dashboard at (http://\S+)", line)
            if found:
                address = found.group(1)
                break
        assert address, "the demo printed no dashboard address"
        browser.get(address)
        for name in ("camera", "stage"):
            up(browser, name)
        from selenium.webdriver.common.by import By

        grab = form(card(browser, "camera"), "get_image")
        grab.find_element(By.NAME, "lores").click()
        grab.find_element(By.CSS_SELECTOR, "button").click()
        wait_for(lambda: grab.find_element(By.CSS_SELECTOR, ".result img"), what="an image")
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "ol.log li"), what="signals")
        shot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("LABWIRE_DOCS_SCREENSHOT"):
            browser.set_window_size(1200, 800)
            browser.execute_script("document.body.style.zoom = '0.6'")
            browser.save_screenshot(str(DOCS_SCREENSHOT))
            browser.execute_script("document.body.style.zoom = ''")
            browser.set_window_size(1400, 1000)
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=20)
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
            if demo.stderr is not None:
                demo.stderr.close()
