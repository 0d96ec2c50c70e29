"""File integrity: sha256 checksums of model files, private copies (reflink when the filesystem can),
and the temporary names writers use, so leftovers of killed writers can be told from live ones.

Encoder files are copied, never hard-linked: a hard link shares one inode, so overwriting the file in
one index (read-only bits do not stop root) changed every index and the ONNX cache that linked it. A
reflink (FICLONE) shares blocks copy-on-write instead: free in space and time, yet private.

It sits in encoders/, the lowest package, because every layer writes files this way: encoders (the
ONNX cache), index (index directories and versions) and engine (event logs and snapshots).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

CHECKSUM_FILE = "vitrina_files.sha256"  # `sha256sum -c` format: "<hex>  <relative path>" per file
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
LEFTOVER_KINDS = ("tmp", "old", "edit")  # .NAME.KIND-... beside a target; versions/.build-... (index.versions)
LEFTOVER_AGE_S = 3600.0  # a leftover naming no process counts as abandoned after this long untouched
_CHUNK = 1 << 20


def file_identity(status: os.stat_result) -> tuple[int, ...]:
    """What changes whenever a file's bytes do: its device, inode, size and modification and change times (ns)."""
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


# (device, inode) -> (identity, sha256) of the files this process has hashed, or copied from a file it hashed: a
# build checks the exported model at load, copies it into the index and its calibration loads the copy; hashing
# those 124 MB once, not three times, saves `vitrina index` 0.08 s. Any write to a file changes its identity (its
# change time at least), so a changed file is hashed again; renaming it or its folder keeps it.
_DIGESTS: dict[tuple[int, int], tuple[tuple[int, ...], str]] = {}
_DIGESTS_LOCK = threading.Lock()


def digest_file(path: Path) -> str:
    """The sha256 of a file, hex (not read again while its identity is the one this process hashed)."""
    with open(path, "rb") as f:
        identity = file_identity(os.fstat(f.fileno()))
        key = identity[:2]
        with _DIGESTS_LOCK:
            known = _DIGESTS.get(key)
        if known is not None and known[0] == identity:
            return known[1]
        h = hashlib.sha256()
        while block := f.read(_CHUNK):
            h.update(block)
    digest = h.hexdigest()
    with _DIGESTS_LOCK:
        _DIGESTS[key] = (identity, digest)
    return digest


def _carry_digest(source_path: str | Path, before: os.stat_result, target: str | Path) -> None:
    """A byte-exact copy of a file this process hashed, unchanged while it was copied, has the same sha256."""
    source = file_identity(before)
    with _DIGESTS_LOCK:
        known = _DIGESTS.get(source[:2])
    try:
        after, copied = os.stat(source_path), file_identity(os.stat(target))
    except OSError:
        return
    if known is not None and known[0] == source == file_identity(after) and copied[2] == after.st_size:
        with _DIGESTS_LOCK:
            _DIGESTS[copied[:2]] = (copied, known[1])


def digest_tree(directory: Path) -> dict[str, str]:
    """relative path -> sha256 of every regular file under `directory` (the checksum file excepted)."""
    directory = Path(directory)
    return {
        p.relative_to(directory).as_posix(): digest_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != CHECKSUM_FILE
    }


def write_checksums(directory: Path, digests: dict[str, str] | None = None) -> dict[str, str]:
    """Record the sha256 of each file of `directory` in its checksum file; returns what was recorded."""
    digests = digest_tree(directory) if digests is None else digests
    (Path(directory) / CHECKSUM_FILE).write_text("".join(f"{h}  {name}\n" for name, h in sorted(digests.items())))
    return digests


def read_checksums(directory: Path) -> dict[str, str] | None:
    """The checksums recorded in `directory`'s checksum file, or None when it has none (or it is unreadable)."""
    path = Path(directory) / CHECKSUM_FILE
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    out: dict[str, str] = {}
    for line in lines:
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            return None
        out[name] = digest
    return out


def mismatches(directory: Path, recorded: dict[str, str]) -> list[tuple[str, str, str]]:
    """(relative path, recorded sha256, found sha256 or "missing") of each recorded file that differs."""
    out = []
    for name, expected in sorted(recorded.items()):
        path = Path(directory) / name
        try:
            found = digest_file(path)
        except FileNotFoundError:
            found = "missing"
        if found != expected:
            out.append((name, expected, found))
    return out


def copy_file(source: str | Path, target: str | Path) -> None:
    """A private copy of `source` at `target`: a reflink where the filesystem supports it, else an
    in-kernel copy (copy_file_range), else a plain one. Never a hard link. An OSError names `target`."""
    try:
        before = os.stat(source)
        _copy_file(source, target)
    except OSError as exc:
        if exc.filename or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(target)) from exc
    _carry_digest(source, before, target)


def _copy_file(source: str | Path, target: str | Path) -> None:
    with open(source, "rb") as src, open(target, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            return
        except OSError:
            pass
        size = os.fstat(src.fileno()).st_size
        try:
            copied = 0
            while copied < size:
                n = os.copy_file_range(src.fileno(), dst.fileno(), size - copied)
                if n == 0:
                    break
                copied += n
            if copied == size:
                return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
                raise
        src.seek(0)
        dst.seek(0)
        dst.truncate()
        shutil.copyfileobj(src, dst, _CHUNK)


def copy_tree(source: Path, target: Path) -> None:
    """Copy a directory with `copy_file` (private copies, never links); the first failure raises its own
    OSError (shutil.copytree would gather them into one message of tuples)."""
    source, target = Path(source), Path(target)
    target.mkdir(parents=True)
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(exist_ok=True)
        elif path.is_file():
            copy_file(path, dest)


def leftover_name(base: str, kind: str) -> str:
    """A hidden temporary name beside `base` that names this process: `.BASE.KIND-PID-RANDOM`."""
    return f".{base}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _owner_alive(pid: int, since: float) -> bool:
    """Whether process `pid` runs and started before `since` (a later start is another process reusing the pid)."""
    import psutil

    try:
        return psutil.Process(pid).create_time() <= since + 1.0
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.Error:
        return True  # cannot tell: assume a live writer


def is_abandoned(path: Path) -> bool:
    """Whether a writer's leftover at `path` belongs to no live writer: the process its name records is
    gone (or is another one that reused the pid), or, for names that record none, it is over an hour old."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    tail = path.name.rsplit("-", 2)
    if len(tail) == 3 and tail[1].isdigit():
        return not _owner_alive(int(tail[1]), st.st_ctime)
    return time.time() - st.st_mtime > LEFTOVER_AGE_S


def remove_path(path: Path) -> None:
    """Remove a file, link or directory tree, whichever `path` is; quietly."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def clean_leftovers(target: Path) -> list[Path]:
    """Remove the abandoned temporary siblings of `target` (`.NAME.tmp-*`, `.NAME.old-*`, `.NAME.edit-*`)
    left by killed writers; never `target` itself nor a live writer's. Returns what was removed."""
    target = Path(target)
    folder = target.parent
    prefixes = tuple(f".{target.name}.{kind}-" for kind in LEFTOVER_KINDS)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(prefixes) and is_abandoned(entry):
            remove_path(entry)
            removed.append(entry)
    return removed


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Put `data` at `path` whole or not at all: written beside (created with `mode`), fsync'd, renamed over,
    and the rename made durable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / leftover_name(path.name, "tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
