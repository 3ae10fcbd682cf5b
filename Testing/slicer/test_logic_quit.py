"""Quitting never waits for the network (issue 17, item 6): with requests in flight to a backend that
never answers, the interpreter ends at once, as Slicer's must when the user quits.

A child Python loads the module's Logic package as Slicer does, starts a batch (its submission),
a background call and a serial worker's call against a port that accepts and never answers,
then reaches its end. Thread-pool workers would be joined at exit and hold it for the calls'
timeouts (here 600 s); the module's workers are daemon threads, abandoned at once.
"""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import time

from conftest import REPO

CHILD = """
import sys, time
sys.path.insert(0, {module_folder!r})
from AttUMambaSegLib.logic.batch import BatchRun
from AttUMambaSegLib.logic.client import BackendClient
from AttUMambaSegLib.logic.workers import SerialWorker, in_background

client = BackendClient({url!r}, "token", timeout=600)
batch = BatchRun(client, "/studies", "/out")
call = in_background(client.models)
worker = SerialWorker()
queued = worker.submit(client.health)
time.sleep(0.5)  # every request is on the wire
assert not (batch.poll()["state"] != "submitting" or call.done() or queued.done()), "a request was answered"
print("in flight", flush=True)
"""


def test_quitting_with_transfers_in_flight_ends_within_two_seconds(logic, tmp_path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        script = CHILD.format(module_folder=str(REPO / "AttUMambaSeg"), url=url)
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        try:
            ready, _, _ = select.select([child.stdout], [], [], 30)  # comes only if making the batch did not wait
            line = child.stdout.readline() if ready else "(nothing within 30 s)"
            assert line.strip() == "in flight", child.stderr.read() if child.poll() is not None else line
            reached = time.monotonic()
            child.wait(10)
            assert time.monotonic() - reached < 2.0, "quitting waited for the requests in flight"
            assert child.returncode == 0, child.stderr.read()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
