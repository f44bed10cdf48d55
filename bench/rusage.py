"""The rusage trampoline the benchmarks run every command through.

Why C: ru_maxrss of a process includes the memory it had *before* its exec, and os.posix_spawn
(vfork) or fork from a ~30 MiB Python process hands it that address space, so every call measured
directly would report >= 30 MiB. The trampoline (static, < 1 MiB) spawns the command, wait4()s it
and writes "status maxrss_kib user_us sys_us wall_ns" to fd 3.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TRAMPOLINE_C = r"""
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
static pid_t child;
static void on_alarm(int sig) { (void)sig; kill(child, SIGKILL); }
static long us(struct timeval t) { return t.tv_sec * 1000000L + t.tv_usec; }
int main(int argc, char **argv) {  /* rusage-exec TIMEOUT_S PROG ARGS... (report on fd 3) */
    struct timespec t0, t1;
    struct rusage ru;
    int status;
    if (argc < 3 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0) return 125;
    signal(SIGALRM, on_alarm);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (posix_spawn(&child, argv[2], NULL, NULL, argv + 2, environ) != 0) return 127;
    alarm(atoi(argv[1]));
    if (wait4(child, &status, 0, &ru) < 0) return 126;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    dprintf(3, "%d %ld %ld %ld %lld\n", status, ru.ru_maxrss, us(ru.ru_utime), us(ru.ru_stime),
            (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
    return 0;
}
"""


def build_trampoline(workdir: str, who: str) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit(f"{who}: needs a C compiler (cc) for the rusage trampoline")
    source, binary = os.path.join(workdir, "rusage-exec.c"), os.path.join(workdir, "rusage-exec")
    Path(source).write_text(TRAMPOLINE_C)
    for flags in (["-static"], []):  # static keeps its RSS well under 1 MiB; dynamic if no libc.a
        pid = os.posix_spawn(cc, [cc, "-O2", *flags, "-o", binary, source], os.environ)
        if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0:
            return binary
    raise SystemExit(f"{who}: {cc} could not build {source}")
