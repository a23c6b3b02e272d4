"""A fake C compiler that hangs, for the tests of compile time-outs and signals."""

import time
from pathlib import Path


def hanging_compiler(monkeypatch, tmp_path):
    """A fake ``cc`` whose child sleeps (as cc1 under cc); the file its child's pid is written to."""
    pid_file = tmp_path / "child.pid"
    fake = tmp_path / "fake-cc"
    fake.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pid_file}\nwait\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setenv("TURNPIKE_CACHE", str(tmp_path / "cache"))
    return pid_file


def compiler_gone(pid_file: Path) -> bool:
    """The process is gone (or a zombie waiting for init to reap it)."""
    for _ in range(50):
        status = Path(f"/proc/{int(pid_file.read_text())}/status")
        if not status.exists() or "\tZ" in status.read_text().split("State:")[1].splitlines()[0]:
            return True
        time.sleep(0.1)
    return False
