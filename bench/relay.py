"""A TCP relay that delays every chunk by a fixed time in each direction: the RTT half of a shaped link
when the kernel has no ``netem``. Usage: ``relay.py LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_SECONDS``.

Each direction has a reader thread that timestamps what it receives and a writer thread that forwards it
once its time has come, so pipelined data keeps flowing (the link delays, it does not serialise round
trips). A cap on what is held keeps TCP flow control working end to end.
"""

from __future__ import annotations

import collections
import socket
import sys
import threading
import time

CHUNK = 256 * 1024
HELD_MAX = 16 * 1024 * 1024


def pipe(src: socket.socket, dst: socket.socket, delay: float) -> None:
    queue: collections.deque = collections.deque()
    cond = threading.Condition()
    held = [0]

    def reader() -> None:
        while True:
            try:
                data = src.recv(CHUNK)
            except OSError:
                data = b""
            with cond:
                while held[0] > HELD_MAX:
                    cond.wait()
                queue.append((time.monotonic() + delay, data))
                held[0] += len(data)
                cond.notify_all()
            if not data:
                return

    def writer() -> None:
        while True:
            with cond:
                while not queue:
                    cond.wait()
                due, data = queue.popleft()
                held[0] -= len(data)
                cond.notify_all()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    threads = [threading.Thread(target=reader, daemon=True), threading.Thread(target=writer, daemon=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def serve(conn: socket.socket, target: tuple[str, int], delay: float) -> None:
    try:
        up = socket.create_connection(target)
    except OSError:
        conn.close()
        return
    for s in (conn, up):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    both = [threading.Thread(target=pipe, args=(conn, up, delay), daemon=True),
            threading.Thread(target=pipe, args=(up, conn, delay), daemon=True)]
    for t in both:
        t.start()
    for t in both:
        t.join()
    conn.close()
    up.close()


def main() -> None:
    (lhost, lport), (thost, tport) = (a.rsplit(":", 1) for a in sys.argv[1:3])
    delay = float(sys.argv[3])
    listener = socket.create_server((lhost, int(lport)), backlog=128)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, (thost, int(tport)), delay), daemon=True).start()


if __name__ == "__main__":
    main()
