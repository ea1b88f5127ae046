"""A real `text4vis serve` process on 127.0.0.1 for the service and browser tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

import text4vis

SRC = os.path.dirname(os.path.dirname(os.path.abspath(text4vis.__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m text4vis serve ...` with its own TMPDIR (to see what it leaves) and log file."""

    def __init__(self, folder, clip_file: str, *options: str):
        self.folder = folder
        self.tmp = folder / "tmp"
        self.tmp.mkdir()
        self.log_path = folder / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, TMPDIR=str(self.tmp), OMP_NUM_THREADS="1",
                   TORCHINDUCTOR_CACHE_DIR=str(folder / "inductor"),  # torch's own cache, not the server's files  # one thread: the tests' own numbers
                   PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "text4vis", "serve", "--clip", clip_file, "--labels", "ucf101", "--frames", "4",
             "--port", str(self.port), *options], env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 150.0) -> Server:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def leftovers(self) -> list[str]:
        """Every file and folder under the server's TMPDIR (its private upload folder and what is in it)."""
        return sorted(os.path.join(root, n) for root, dirs, files in os.walk(self.tmp) for n in dirs + files)

    def upload_folder(self) -> str:
        """The server's private upload folder (it has exactly one while it runs)."""
        (folder,) = [p for p in self.leftovers() if os.path.basename(p).startswith("text4vis-serve-")]
        return folder

    def uploads(self) -> list[str]:
        return sorted(os.listdir(self.upload_folder()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
