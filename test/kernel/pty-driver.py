#!/usr/bin/python3
"""
Plays an admin at a terminal, for the kernel tests of `lowport run`: starts a
command on a fresh pty (its controlling terminal, in a session of its own,
like a login shell's job), then follows the steps of a JSON script:

  {"wait": REGEX}       until the terminal output matches (from the start)
  {"send": TEXT}        type TEXT
  {"resize": [R, C]}    change the window size (the job gets SIGWINCH)
  {"sleep": SECONDS}
  {"exit": true}        until the command exits

Prints one JSON object: the output, the exit status (-N: signal N), the
terminal's name, whether its mode (termios) is the same after as before.
"""
import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time

spec = json.loads(sys.argv[1])
deadline = time.monotonic() + spec.get("timeout", 30)
master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", spec.get("rows", 24), spec.get("cols", 80), 0, 0))
before = termios.tcgetattr(slave)


def become_job():
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


proc = subprocess.Popen(spec["argv"], stdin=slave, stdout=slave, stderr=slave, preexec_fn=become_job, close_fds=True)
output = b""
failed = None


def pump(timeout):
    global output
    r, _, _ = select.select([master], [], [], timeout)
    if r:
        try:
            output += os.read(master, 65536)
        except OSError:
            pass


for step in spec["steps"]:
    if "wait" in step:
        pattern = re.compile(step["wait"].encode(), re.M)
        while not pattern.search(output):
            if time.monotonic() > deadline:
                failed = "timed out waiting for %r" % step["wait"]
                break
            pump(0.05)
    elif "send" in step:
        os.write(master, step["send"].encode())
    elif "resize" in step:
        rows, cols = step["resize"]
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    elif "sleep" in step:
        end = time.monotonic() + step["sleep"]
        while time.monotonic() < end:
            pump(0.05)
    elif "exit" in step:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                failed = "timed out waiting for the exit"
                break
            pump(0.05)
    if failed:
        break

status = proc.poll()
if status is None:
    proc.kill()
    proc.wait()
pump(0.1)
print(json.dumps({
    "output": output.decode("utf-8", "replace"),
    "status": status,
    "tty": os.ttyname(slave),
    "termiosRestored": termios.tcgetattr(slave) == before,
    "failed": failed,
}))
