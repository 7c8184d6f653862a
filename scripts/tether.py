#!/usr/bin/env python3
"""Runs a command until this process's standard input closes, then stops it.

Tests start servers through it with a pipe as standard input, so the servers stop when the
test process ends, however it ends (panic, timeout, Ctrl-C), and a test can stop a server on
purpose by closing the pipe.
"""
import os
import signal
import subprocess
import sys

# A signal to this process (CI cancelling a job, `timeout`) must still stop the child: turn it
# into a normal exit so that the clean-up below runs.
def _exit_cleanly(signum, _frame):
    raise SystemExit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _exit_cleanly)

child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, start_new_session=True)
try:
    while sys.stdin.buffer.read(4096):
        pass
except (KeyboardInterrupt, SystemExit):
    pass
finally:
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
