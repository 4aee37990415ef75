"""Run many short `ganrun` invocations fast: each in a fresh forked child of one server process.

A `ganrun` process that fails on bad input, or trains a few steps, spends most of its time
importing torch (2 s or more on a shared two-core machine), so the dozens of CLI runs in the
fault and bad-input suites would take minutes. The server is a plain interpreter (not pytest:
default warning filters and signal handlers, no captured streams) that imports ganrun's CLI and
torch once, then forks a child per invocation. The child chdirs to the run's folder, reads
/dev/null as stdin, writes fds 1 and 2 to files, optionally lowers RLIMIT_FSIZE, and calls
`ganrun.cli.main(argv)`, exactly what `python -m ganrun` runs; its exit status is the run's exit
code. Nothing of Hydra or ganrun has run in the server before a fork, so every child starts from
the state of a new process (the random run-dir id is drawn in the child). Children are real
processes: they can be signalled and killed. `tests/test_bad_input.py::test_fork_server_is_faithful`
checks that cases give byte-identical output through `python -m ganrun`; the kill and signal
tests in `tests/test_faults.py` use `python -m ganrun` itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

SERVER = r"""
import importlib, json, os, resource, sys, traceback
import torch  # noqa: F401  the expensive imports, once, before any fork
import ganrun.cli, ganrun.commands.train  # noqa: F401
for name in sys.argv[1:]:  # more modules a suite needs warm (the ONNX exporter)
    importlib.import_module(name)

def child(job):
    code = 1
    try:
        os.chdir(job["cwd"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        out = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.environ.update(job.get("env") or {})  # e.g. the test hooks GANRUN_TEST_STALL_WRITE, GANRUN_TEST_PHASE
        if job.get("fsize"):  # a write past this many bytes fails with EFBIG, as on a full disk
            resource.setrlimit(resource.RLIMIT_FSIZE, (job["fsize"], job["fsize"]))
        sys.argv = ["ganrun", *job["args"]]
        try:
            ganrun.cli.main(job["args"])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)

for line in sys.stdin:
    job = json.loads(line)
    if job["op"] == "start":
        pid = os.fork()
        if pid == 0:
            child(job)
        reply = {"pid": pid}
    else:  # poll
        pid, status = os.waitpid(job["pid"], os.WNOHANG)
        reply = {"rc": os.waitstatus_to_exitcode(status) if pid else None}
    print(json.dumps(reply), flush=True)
"""


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Job:
    server: "ForkServer"
    args: list[str]
    pid: int
    out: Path
    err: Path

    rc: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.rc is None:  # once reaped, the pid is gone: keep the status
            self.rc = self.server._request({"op": "poll", "pid": self.pid})["rc"]
        return self.rc

    def stdout(self) -> str:
        return self.out.read_text() if self.out.exists() else ""

    def stderr(self) -> str:
        return self.err.read_text() if self.err.exists() else ""

    def wait(self, timeout: float = 180) -> Result:
        deadline = time.monotonic() + timeout
        while (rc := self.poll()) is None:
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                raise TimeoutError(f"ganrun {' '.join(self.args)} still running after {timeout} s (killed)")
            time.sleep(0.02)
        result = Result(self.args, rc, self.out.read_text(), self.err.read_text())
        self.out.unlink()
        self.err.unlink()
        return result


class ForkServer:
    def __init__(self, env: dict, preload: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, *preload], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self._lock = threading.Lock()
        self._count = 0

    def _request(self, message: dict) -> dict:
        with self._lock:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
            reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError("the ganrun fork server died")
        return json.loads(reply)

    def start(self, args, cwd: Path, *, fsize: Optional[int] = None, env: Optional[dict] = None) -> Job:
        """Start `ganrun <args>` in `cwd`; its stdout/stderr go to files beside `cwd`."""
        with self._lock:
            self._count += 1
            n = self._count
        out, err = (cwd.parent / f".{cwd.name}.{n}.stdout", cwd.parent / f".{cwd.name}.{n}.stderr")
        args = [str(a) for a in args]
        job = {"op": "start", "args": args, "cwd": str(cwd), "stdout": str(out), "stderr": str(err), "fsize": fsize,
               "env": env or {}}
        return Job(self, args, self._request(job)["pid"], out, err)

    def run(self, args, cwd: Path, *, fsize: Optional[int] = None, env: Optional[dict] = None,
            timeout: float = 180) -> Result:
        return self.start(args, cwd, fsize=fsize, env=env).wait(timeout)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
