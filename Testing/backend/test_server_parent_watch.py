"""``serve --parent-pid``: a backend whose parent is gone (Slicer crashed) ends itself (issue 17, item 3)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from attumamba.server.parent_watch import parent_check, watch_parent


def test_the_watch_notices_a_parent_that_ends(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = threading.Event()
    watch_parent(parent.pid, on_gone=lambda pid: gone.set(), interval_s=0.05)
    assert parent_check(parent.pid)() and not gone.wait(0.3)  # alive: nothing happens
    parent.kill()
    parent.wait()
    assert gone.wait(2), "the watch did not notice the parent had ended"
    assert parent_check(os.getppid())()  # the direct parent: checked by os.getppid()


def test_serve_rejects_a_parent_pid_that_is_not_a_process_id():
    from attumamba.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--parent-pid", "slicer"])
    assert exited.value.code == 2


PARENT = """
import subprocess, sys, time, os
token = {token!r}
child = subprocess.Popen([sys.executable, "-m", "attumamba.cli", "serve", "--port", "0", "--device", "cpu",
                          "--token-file", token, "--parent-pid", str(os.getpid())],
                         stdout=open({log!r}, "w"), stderr=subprocess.STDOUT)
deadline = time.monotonic() + 120
while not os.path.exists(token):
    if child.poll() is not None or time.monotonic() > deadline:
        print("no-serve", flush=True)
        sys.exit(1)
    time.sleep(0.05)
print(child.pid, flush=True)
os._exit(0)  # as a crash: nothing stops the child
"""


def test_a_backend_whose_parent_dies_exits_within_seconds(tmp_path):
    script = textwrap.dedent(PARENT).format(token=str(tmp_path / "token"), log=str(tmp_path / "serve.log"))
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert parent.returncode == 0, (parent.stdout, (tmp_path / "serve.log").read_text())
    pid, died = int(parent.stdout.strip()), time.monotonic()
    while _exists(pid):
        assert time.monotonic() - died < 5, "the backend outlived its parent"
        time.sleep(0.1)
    assert "is gone; exiting" in (tmp_path / "serve.log").read_text()


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for init to reap it has ended too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except OSError:
        return False
