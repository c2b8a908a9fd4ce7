"""Atomic file replacement: readers see the old file or the new one, never a half-written one.

The new contents go to a temporary file in the destination's folder (same filesystem, so the rename is
atomic), which is flushed and fsynced, renamed over the destination with os.replace, and then the folder is
fsynced so the rename itself survives a crash. The rename gives the path a new inode: anything that still has
the old file open or memory-mapped keeps reading the old bytes. On any failure the temporary file is removed
and the destination is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from typing import BinaryIO


def atomic_write(path, write: Callable[[BinaryIO], None]) -> None:
    """Create or replace the file at path with what write(f) writes to a binary file object.

    A symlink at path is followed: its target is replaced, the link stays. A file that already exists keeps
    its permission bits; a new one gets 0o666 less the umask, as open() would give it.
    """
    target = os.path.realpath(os.fspath(path))
    folder, base = os.path.split(target)
    fd, tmp = _create_temp(folder, base)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        with open(fd, "wb", closefd=True) as f:
            fd = None  # owned by f from here on
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _create_temp(folder: str, base: str) -> tuple[int, str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp  # the kernel applies the umask
        except FileExistsError:
            continue


def _fsync_folder(folder: str) -> None:
    # NOTE: some filesystems (and all of Windows) cannot open or fsync a folder; the data itself is already
    # synced, only the durability of the rename is then up to the OS.
    try:
        dfd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
