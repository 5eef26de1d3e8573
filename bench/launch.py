"""Run a command and write its process tree's wall time, CPU and peak RSS as JSON to OUT.

    python -I -S launch.py OUT argv...

Why a launcher: Linux seeds a forked child's peak RSS with its parent's, and keeps it across exec, so a
command forked straight from the bench (tens of MB of hash cache) would report the bench's size. This
process starts small (no site, stdlib only), forks the command and reads RUSAGE_CHILDREN, which leaves
its own usage out: the floor of what it can report is this launcher's few MB.
"""

import json
import os
import resource
import sys
import time


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(2, f"launch.py: {argv[0]}: {exc}\n".encode())
        os._exit(127)
    _, status = os.waitpid(pid, 0)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    with open(out, "w") as f:
        json.dump({"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kib": ru.ru_maxrss,
                   "returncode": code}, f)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
