#!/usr/bin/env python3
"""tcp_rtt.py: request/response latency over one TCP connection (the lab's `tcprtt` test).

  tcp_rtt.py serve PORT                 echo server on 0.0.0.0:PORT (run in namespace B)
  tcp_rtt.py probe HOST PORT [--count N] [--interval S] [--size B] [--timeout S]

`probe` opens one connection (TCP_NODELAY on), then N times: sends SIZE bytes, waits until all of
them came back, sleeps INTERVAL. It prints one `time=X ms` line per round trip and ping's summary
line (`N packets transmitted, M received`), so summarize.py reads it like ping's output. Unlike
ICMP ping it works through a port forward (onetun, privnet's userspace mode), and it is the latency
an application sees: for a forward, both loopback hops and the userspace stack are included.
`--count 1` with a short timeout is the readiness check of the port-forward systems. Exit status 0
only if every round trip completed.
"""
import argparse
import socket
import sys
import threading
import time


def serve(port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(64)

    def echo(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with c:
            while True:
                b = c.recv(65536)
                if not b:
                    return
                c.sendall(b)

    while True:
        c, _ = srv.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()


def probe(host, port, count, interval, size, timeout):
    try:
        c = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        print(f"connect {host}:{port}: {e}", file=sys.stderr)
        return 1
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.settimeout(timeout)
    msg = bytes(size)
    got = 0
    for i in range(count):
        t0 = time.perf_counter()
        try:
            c.sendall(msg)
            left = size
            while left:
                b = c.recv(left)
                if not b:
                    raise OSError("connection closed")
                left -= len(b)
        except OSError as e:
            print(f"round trip {i + 1}: {e}", file=sys.stderr)
            break
        rtt_ms = (time.perf_counter() - t0) * 1000
        print(f"{size} bytes from {host}:{port}: seq={i + 1} time={rtt_ms:.3f} ms")
        got += 1
        if interval > 0 and i + 1 < count:
            time.sleep(interval)
    c.close()
    print(f"{count} packets transmitted, {got} received")
    return 0 if got == count else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("port", type=int)
    p = sub.add_parser("probe")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--timeout", type=float, default=2.0)
    a = ap.parse_args()
    if a.cmd == "serve":
        serve(a.port)
        return 0
    return probe(a.host, a.port, a.count, a.interval, a.size, a.timeout)


if __name__ == "__main__":
    sys.exit(main())
