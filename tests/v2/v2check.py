"""A tiny check runner shared by test_clients.py and test_remote.py (standard library only).

Each check is a named callable that passes by returning and fails by raising; an AssertionError's
message is the reason shown, any other exception is shown with its type. `Runner.summary()`
prints the failures again and the closing line `<title>: N passed, N failed` and returns the
process exit code (0 only when nothing failed and something ran).
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Callable


class Skip(Exception):
    """A check cannot run because something it needs failed earlier; it counts as failed."""


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise AssertionError(message)


class Runner:
    def __init__(self, title: str):
        self.title = title
        self.passed: list[str] = []
        self.failed: list[tuple[str, str]] = []

    def check(self, name: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run one check; returns fn's result when it passed, None when it failed."""
        started = time.monotonic()
        try:
            result = fn(*args, **kwargs)
        except AssertionError as e:
            self._fail(name, str(e) or "assertion failed", started)
            return None
        except Skip as e:
            self._fail(name, f"not run: {e}", started)
            return None
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            detail = f"{type(e).__name__}: {e}"
            if not str(e):
                detail += "\n" + traceback.format_exc(limit=4)
            self._fail(name, detail, started)
            return None
        ms = (time.monotonic() - started) * 1000
        self.passed.append(name)
        print(f"PASS  {name}  ({ms:.0f} ms)", flush=True)
        return result

    def _fail(self, name: str, reason: str, started: float) -> None:
        ms = (time.monotonic() - started) * 1000
        self.failed.append((name, reason))
        indented = reason.strip().replace("\n", "\n        ")
        print(f"FAIL  {name}  ({ms:.0f} ms)\n        {indented}", flush=True)

    def summary(self) -> int:
        print()
        if self.failed:
            print(f"{self.title}: failed checks:")
            for name, reason in self.failed:
                first = reason.strip().splitlines()[0] if reason.strip() else ""
                print(f"  - {name}: {first[:300]}")
        print(f"{self.title}: {len(self.passed)} passed, {len(self.failed)} failed", flush=True)
        return 0 if self.passed and not self.failed else 1
