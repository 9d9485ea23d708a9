"""Writing files so that an interruption never leaves a half-written one, and a full disk is named.

Every file a run may read again (checkpoints, stamps, metrics, metadata) is written to a
temporary name beside it and renamed over it once complete: a process killed mid-write, or a
write that fails, leaves the previous file as it was. The temporary name carries the writer's
pid (`.<name>.tmp-<pid>`); what a killed process left behind is removed by the next write of that
file. A write that fails because the disk is full raises `DiskFullError`, which says where, and
that the previous file is kept.
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFullError(OSError):
    """A write failed because the disk (or the user's quota) is full."""


def disk_full(err: BaseException | None) -> OSError | None:
    """The 'no space left' error that `err` is, or was raised from or during (torch's writer turns
    an OSError of the file it writes into a RuntimeError, keeping it as context); else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _FULL:
            return err
        err = err.__cause__ or err.__context__
    return None


def disk_full_error(path: Path, kept: str, err: OSError) -> DiskFullError:
    """The error a full disk (`err`) gives while writing `path`; `kept` says what is left as it was."""
    where = Path(path).parent
    return DiskFullError(errno.ENOSPC, f"the disk is full (no space left on the disk holding {where}) while "
                                       f"writing {path}; {kept}. Free space there (df -h {where}) or point "
                                       f"ZF_WORKDIR at a disk with room, then rerun ({err})")


@contextmanager
def naming_disk_full(path: Path, kept: str) -> Iterator[None]:
    """Turn a full disk inside the block into a DiskFullError about `path`."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:
        full = disk_full(err)
        if full is not None:
            raise disk_full_error(path, kept, full) from err
        raise


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _remove_leftovers(path: Path) -> None:
    """Temporary files of `path` whose writer is gone (killed mid-write)."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def replacing(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """A file opened for writing under a temporary name; when the block ends without an error it
    replaces `path` (os.replace, atomic on one filesystem), otherwise it is removed and `path`
    stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    tmp = _temporary(path)
    kept = f"the previous {path.name} is kept as it was" if path.exists() else f"no {path.name} was written"
    try:
        with naming_disk_full(path, kept):
            with open(tmp, mode) as fh:
                yield fh
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> Path:
    with replacing(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with replacing(path, "wb") as fh:
        fh.write(data)
    return Path(path)
