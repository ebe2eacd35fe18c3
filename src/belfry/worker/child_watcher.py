"""Cheaper child-process bookkeeping on Python 3.11.

Python 3.11's default ThreadedChildWatcher starts a thread per child; at hundreds of runs a
second that is a third of the worker's spawn cost. A pidfd watcher (Linux >= 5.3) waits on
the event loop instead. Python 3.12+ picks it by itself.
"""

from __future__ import annotations

import asyncio
import sys
import warnings

__all__ = ["use_pidfd_child_watcher"]


def use_pidfd_child_watcher() -> bool:
    """Install a pidfd child watcher on the running loop if this Python needs it."""
    if sys.version_info >= (3, 12) or not sys.platform.startswith("linux"):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            watcher = asyncio.PidfdChildWatcher()
            watcher.attach_loop(asyncio.get_running_loop())
            asyncio.set_child_watcher(watcher)
        except (OSError, AttributeError, RuntimeError):
            return False
    return True
