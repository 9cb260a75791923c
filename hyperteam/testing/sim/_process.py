"""Running the simulated server in a child process (benchmarks keep it off their own cores)."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from hyperteam.errors import HyperteamError

_URL = re.compile(r"serving on (http://\S+/v1)")
# The package root, so that the child imports this hyperteam even when it is
# not installed.
_ROOT = str(Path(__file__).resolve().parents[3])


def start_sim_subprocess(
    *args: str, python: str = sys.executable, timeout: float = 30.0
) -> tuple[subprocess.Popen[str], str]:
    """Starts ``python -m hyperteam.testing.sim.cli --port 0 ARGS`` and waits for its URL.

    Args:
        *args: more ``hyperteam sim`` options, e.g. ``"--latency-ms", "0"``.
        python: the interpreter to run.
        timeout: seconds to wait for the server to print its URL.

    Returns:
        The process and the server's base URL (``http://127.0.0.1:PORT/v1``).
        Stop it with ``stop_sim_subprocess(process)``.

    Raises:
        HyperteamError: the server exited or did not start in time.

    Example:
        >>> proc, url = start_sim_subprocess("--latency-ms", "0")  # doctest: +SKIP
        >>> stop_sim_subprocess(proc)  # doctest: +SKIP
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
    command = [python, "-m", "hyperteam.testing.sim.cli", "--port", "0", *args]
    # stderr is inherited: the child's logs and errors show where the caller's do.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            stop_sim_subprocess(proc)
            raise HyperteamError(f"simulated server did not start within {timeout:g} s: {command}")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        if ready:
            line = proc.stdout.readline()
            match = _URL.search(line)
            if match:
                return proc, match.group(1)
            if not line:  # end of output: the child exited
                code = proc.wait()
                raise HyperteamError(f"simulated server exited with code {code}: {command}")


def stop_sim_subprocess(proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
    """Stops a server started by ``start_sim_subprocess`` (SIGTERM, then SIGKILL).

    Returns:
        The process's exit code.
    """
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode
