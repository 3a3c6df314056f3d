"""Run a command confined: it may write only beneath named folders and reach no network but its own loopback.

The grader (`book.grade`) executes student notebooks, that is, code nobody has read. Each kernel it starts goes
through this launcher::

    python -m book.confine --write WORK [--write DIR ...] -- python -m ipykernel_launcher -f CONN

Two Linux mechanisms do the work, both available to an unprivileged user and both inherited by every process
the command starts (a ``subprocess``, ``torchrun`` workers), so Python-level tricks cannot undo them:

* **Filesystem: Landlock** (Linux >= 5.13). A ruleset that *handles* every write-like right (write, truncate,
  create, remove, rename, link) and grants them only beneath the ``--write`` folders, plus ``/dev/null`` and
  ``/dev/shm`` (shared memory for multiprocessing). Reading stays allowed everywhere: the kernel must import
  torch, minillm and the book. With Landlock ABI >= 6 the command also cannot signal processes outside its
  sandbox (no ``os.kill`` of the grader) nor connect to abstract Unix sockets (a desktop session's bus).
* **Network: a new network namespace** (unprivileged user namespaces), in which only the loopback device
  exists; it is brought up so that ``torchrun``'s gloo rendezvous on 127.0.0.1 still works (lab 05), while no
  packet can leave the machine. Where user namespaces are disabled (e.g. Ubuntu >= 23.10's AppArmor default),
  Landlock ABI >= 4 refuses every TCP ``connect`` and ``bind`` instead: outside traffic is blocked, but so is
  loopback TCP, and UDP is not covered. The Jupyter client then reaches the kernel over Unix sockets
  (``transport="ipc"``), which a namespace does not cut.

The command is also made the out-of-memory killer's first choice (``oom_score_adj`` 1000), so a notebook that
allocates without bound dies alone, not the grader or the other submissions' kernels.

`available()` reports what this machine supports; `book.grade` refuses to run unconfined unless asked.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import platform
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

# Landlock's syscall numbers are the same in the generic table (arm64) and on x86_64.
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_VERSION_FLAG, _RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 1, 2
_PR_SET_NO_NEW_PRIVS = 38
# Write-like filesystem rights (include/uapi/linux/landlock.h); reading and executing are left unhandled.
_WRITE_FILE, _REMOVE_DIR, _REMOVE_FILE, _MAKE_CHAR, _MAKE_DIR, _MAKE_REG = 1 << 1, 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8
_MAKE_SOCK, _MAKE_FIFO, _MAKE_BLOCK, _MAKE_SYM, _REFER, _TRUNCATE = 1 << 9, 1 << 10, 1 << 11, 1 << 12, 1 << 13, 1 << 14
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
ALWAYS_WRITABLE = ("/dev/null", "/dev/shm")  # kept writable even when confined (if they exist)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is __attribute__((packed)): 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The running kernel's Landlock ABI version (0 when Landlock is absent, disabled, or this is not Linux)."""
    if platform.system() != "Linux":
        return 0
    version = _libc().syscall(ctypes.c_long(_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(_VERSION_FLAG))
    return max(int(version), 0)


def _fs_rights(abi: int) -> int:
    rights = (_WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_CHAR | _MAKE_DIR | _MAKE_REG | _MAKE_SOCK
              | _MAKE_FIFO | _MAKE_BLOCK | _MAKE_SYM)
    return rights | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what} failed: {os.strerror(err)}")
    return result


def restrict_writes(writable: list[str], block_tcp: bool = False) -> int:
    """Landlock this process: writes only beneath ``writable``; with ``block_tcp``, no TCP connect/bind. -> ABI."""
    abi = landlock_abi()
    if abi < 1:
        raise OSError("Landlock is not available on this kernel (Linux >= 5.13 with landlock in the LSM list)")
    if block_tcp and abi < 4:
        raise OSError(f"blocking TCP needs Landlock ABI >= 4 (Linux >= 6.7); this kernel has ABI {abi}")
    libc, rights = _libc(), _fs_rights(abi)
    attr = _RulesetAttr(rights, (_NET_BIND_TCP | _NET_CONNECT_TCP) if block_tcp else 0,
                        (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # older kernels reject fields they do not know
    ruleset = _check(libc.syscall(ctypes.c_long(_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
                                  ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        for path in [*writable, *ALWAYS_WRITABLE]:
            if not os.path.exists(path):
                continue
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:  # a regular file or device takes only the file rights; a folder takes them all
                allowed = rights if os.path.isdir(path) else rights & (_WRITE_FILE | _TRUNCATE)
                rule = _PathBeneath(allowed, fd)
                _check(libc.syscall(ctypes.c_long(_ADD_RULE), ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                                    ctypes.byref(rule), ctypes.c_uint32(0)), f"landlock_add_rule({path})")
            finally:
                os.close(fd)
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        _check(libc.syscall(ctypes.c_long(_RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)),
               "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def die_first_on_oom() -> None:
    """Make this process (and what it starts) the OOM killer's first victim; raising one's own score needs no
    privilege. Silently skipped where /proc has no oom_score_adj (not Linux)."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except FileNotFoundError:
        pass


def isolate_network() -> None:
    """Move this (single-threaded) process into new user + network namespaces with only loopback up.

    The user namespace maps our own uid/gid onto themselves, so files and ``os.getuid()`` look unchanged.
    """
    uid, gid = os.getuid(), os.getgid()
    _check(_libc().unshare(_CLONE_NEWUSER | _CLONE_NEWNET), "unshare(CLONE_NEWUSER | CLONE_NEWNET)")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    import fcntl
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # ifreq: 16-byte name, short flags, padding
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sh22x", b"lo", 0)))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | _IFF_UP))


@dataclass(frozen=True)
class Support:
    """What confinement this machine offers: Landlock's ABI and whether network namespaces can be made."""

    landlock: int
    netns: bool

    @property
    def network(self) -> str:
        """'namespace' (loopback only), 'landlock-tcp' (no TCP at all) or '' (none)."""
        return "namespace" if self.netns else "landlock-tcp" if self.landlock >= 4 else ""

    def describe(self) -> str:
        if not self.landlock:
            return "unconfined: Landlock is not available here"
        net = {"namespace": "network namespace (loopback only)", "landlock-tcp": "no TCP (Landlock)",
               "": "network NOT confined"}[self.network]
        return f"writes confined to the copy (Landlock ABI {self.landlock}); {net}"


def available() -> Support:
    """Probe, in throw-away child processes, what this machine supports (cheap: about 0.1 s)."""
    import subprocess

    probe = "import book.confine as c; c.isolate_network()"
    try:
        ok = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return Support(landlock=landlock_abi(), netns=ok)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m book.confine", description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="append", default=[], metavar="DIR", help="a folder the command may write in")
    p.add_argument("--net", choices=("namespace", "landlock-tcp", "none"), default="namespace",
                   help="how to cut the network (default: %(default)s); 'none' leaves it as it is")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    a = p.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        p.error("no command given; usage: python -m book.confine --write DIR -- CMD ...")
    missing = [d for d in a.write if not os.path.isdir(d)]
    if missing:
        p.error(f"--write folders must exist: {missing}")
    try:
        die_first_on_oom()
        if a.net == "namespace":
            isolate_network()  # first: unshare needs a single-threaded process, and Landlock may block /proc writes
        restrict_writes([os.path.abspath(d) for d in a.write], block_tcp=a.net == "landlock-tcp")
    except OSError as err:
        print(f"book.confine: cannot confine the command: {err}", file=sys.stderr)
        return 126
    os.execvp(command[0], command)  # the confinement is inherited across exec; never returns
    return 127


if __name__ == "__main__":
    sys.exit(main())
