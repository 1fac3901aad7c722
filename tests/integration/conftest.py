"""Fixtures for the Python integration tests: a real `tessera serve` on a free loopback port.

The binary comes from TESSERA_BIN (ctest sets it); the default model must be fetched
(scripts/fetch_model.py).
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python"))


class Server:
    def __init__(self, process, port, http_port, log):
        self.process = process
        self.port = port
        self.http_port = http_port
        self.log = log

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"


def start_server(extra_args=()):
    binary = os.environ.get("TESSERA_BIN")
    if not binary:
        pytest.skip("TESSERA_BIN is not set (run through ctest)")
    workdir = tempfile.mkdtemp(prefix="tessera_serve_")
    port_file = os.path.join(workdir, "port")
    http_port_file = os.path.join(workdir, "http_port")
    log = open(os.path.join(workdir, "serve.log"), "w+")
    process = subprocess.Popen(
        [binary, "serve", "--model", "default", "--host", "127.0.0.1", "--port", "0",
         "--http-port", "0", "--http-port-file", http_port_file,
         "--port-file", port_file, "--threads", "2", "--kv-cache-mb", "64",
         "--default-max-new-tokens", "16", *extra_args],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"tessera serve exited with {process.returncode}: {log.read()}")
        if os.path.exists(port_file) and open(port_file).read().strip():
            return Server(process, int(open(port_file).read()), int(open(http_port_file).read()),
                          log)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("tessera serve did not start within 120 s")


def stop_server(server):
    server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise
    server.log.seek(0)
    return code, server.log.read()


@pytest.fixture(scope="module")
def server():
    s = start_server()
    yield s
    code, log = stop_server(s)
    assert code == 0, log
