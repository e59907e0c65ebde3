#!/usr/bin/env python3
"""Helpers of tests/netns/expose.sh (stdlib only).

serve   --bind ADDR --port P --ready FILE --seconds S
        A backend on ADDR:P (TCP and UDP). TCP: reads a PROXY v2 header if one comes, answers one
        line "proxy=SRC_IP:SRC_PORT dst=DST_IP:DST_PORT" (or "proxy=none peer=IP:PORT"), then echoes.
        UDP: answers every datagram with the same line, then its payload.
tcp     --src IP --dst IP --port P --timeout T
        Connect from IP, send "hello\\n", read the first line; prints JSON
        {"result": "line"|"closed"|"refused"|"timeout", "line": ..., "local": "IP:PORT", "ms": ...}.
udp     --src IP --dst IP --port P --timeout T
        One datagram "hello" from IP; prints JSON {"result": "reply"|"silence", "line": ..., "local": ...}.
burst   --src IP --dst IP --port P --count N --timeout T
        N TCP connections one after the other; prints JSON {"through": N1, "refused": N2}.
status-get FIELD.PATH   (status JSON on stdin) e.g. exposures.0.refused.block_listed
"""
import argparse
import json
import select
import socket
import struct
import sys
import threading
import time

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def parse_v2(b):
    """(header length, "src", "dst") or None."""
    if len(b) < 16 or b[:12] != SIG or b[12] >> 4 != 2:
        return None
    fam = b[13]
    ln = struct.unpack("!H", b[14:16])[0]
    if len(b) < 16 + ln:
        return None
    body = b[16 : 16 + ln]
    if fam >> 4 == 1 and ln >= 12:
        src = socket.inet_ntop(socket.AF_INET, body[0:4])
        dst = socket.inet_ntop(socket.AF_INET, body[4:8])
        sp, dp = struct.unpack("!HH", body[8:12])
    elif fam >> 4 == 2 and ln >= 36:
        src = socket.inet_ntop(socket.AF_INET6, body[0:16])
        dst = socket.inet_ntop(socket.AF_INET6, body[16:32])
        sp, dp = struct.unpack("!HH", body[32:36])
    else:
        return (16 + ln, "local", "local")
    transport = "tcp" if fam & 0x0F == 1 else "udp"
    return (16 + ln, f"{src}:{sp}", f"{dst}:{dp} transport={transport}")


def serve_tcp_conn(c, peer):
    c.settimeout(10)
    try:
        buf = b""
        while len(buf) < 16 or (buf[:12] == SIG and parse_v2(buf) is None and len(buf) < 300):
            d = c.recv(4096)
            if not d:
                return
            buf += d
            if buf[: min(len(buf), 12)] != SIG[: min(len(buf), 12)]:
                break
        h = parse_v2(buf)
        if h:
            c.sendall(f"proxy={h[1]} dst={h[2]}\n".encode())
            buf = buf[h[0] :]
        else:
            c.sendall(f"proxy=none peer={peer[0]}:{peer[1]}\n".encode())
        if buf:
            c.sendall(buf)
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)
    except OSError:
        pass
    finally:
        c.close()


def serve(a):
    fam = socket.AF_INET6 if ":" in a.bind else socket.AF_INET
    t = socket.socket(fam, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((a.bind, a.port))
    t.listen(128)
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.bind((a.bind, a.port))
    open(a.ready, "w").close()
    deadline = time.time() + a.seconds
    while time.time() < deadline:
        r, _, _ = select.select([t, u], [], [], 0.5)
        if t in r:
            c, peer = t.accept()
            threading.Thread(target=serve_tcp_conn, args=(c, peer), daemon=True).start()
        if u in r:
            d, peer = u.recvfrom(65535)
            h = parse_v2(d)
            if h:
                line = f"proxy={h[1]} dst={h[2]}\n".encode() + d[h[0] :]
            else:
                line = f"proxy=none peer={peer[0]}:{peer[1]}\n".encode() + d
            u.sendto(line, peer)


def tcp_once(src, dst, port, timeout):
    t0 = time.time()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    local = ""
    try:
        s.bind((src, 0))
        local = "%s:%d" % s.getsockname()
        s.connect((dst, port))
        s.sendall(b"hello\n")
        buf = b""
        while b"\n" not in buf:
            d = s.recv(4096)
            if not d:
                return {"result": "closed", "line": buf.decode(errors="replace"), "local": local, "ms": int((time.time() - t0) * 1000)}
            buf += d
        return {"result": "line", "line": buf.split(b"\n")[0].decode(errors="replace"), "local": local, "ms": int((time.time() - t0) * 1000)}
    except ConnectionRefusedError:
        return {"result": "refused", "line": "", "local": local, "ms": int((time.time() - t0) * 1000)}
    except ConnectionResetError:
        return {"result": "closed", "line": "", "local": local, "ms": int((time.time() - t0) * 1000)}
    except (socket.timeout, TimeoutError):
        return {"result": "timeout", "line": "", "local": local, "ms": int((time.time() - t0) * 1000)}
    except OSError as e:
        return {"result": "error", "line": str(e), "local": local, "ms": int((time.time() - t0) * 1000)}
    finally:
        s.close()


def udp_once(src, dst, port, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    local = "%s:%d" % s.getsockname()
    try:
        s.sendto(b"hello", (dst, port))
        d, _ = s.recvfrom(65535)
        return {"result": "reply", "line": d.split(b"\n")[0].decode(errors="replace"), "local": local}
    except (socket.timeout, TimeoutError, ConnectionRefusedError):
        return {"result": "silence", "line": "", "local": local}
    finally:
        s.close()


def burst(a):
    through = refused = 0
    for _ in range(a.count):
        r = tcp_once(a.src, a.dst, a.port, a.timeout)
        if r["result"] == "line":
            through += 1
        else:
            refused += 1
    return {"through": through, "refused": refused}


def status_get(path):
    v = json.load(sys.stdin)
    for part in path.split("."):
        if isinstance(v, list) and part.isdigit():
            v = v[int(part)]
        elif isinstance(v, list):
            # A list of [name, value] pairs (refusals by reason).
            v = dict((x[0], x[1]) for x in v)[part]
        else:
            v = v[part]
    print(v if not isinstance(v, (dict, list)) else json.dumps(v))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--ready", required=True)
    s.add_argument("--seconds", type=float, default=600)
    for name in ("tcp", "udp", "burst"):
        c = sub.add_parser(name)
        c.add_argument("--src", required=True)
        c.add_argument("--dst", required=True)
        c.add_argument("--port", type=int, required=True)
        c.add_argument("--timeout", type=float, default=3)
        if name == "burst":
            c.add_argument("--count", type=int, default=10)
    g = sub.add_parser("status-get")
    g.add_argument("path")
    a = p.parse_args()
    if a.cmd == "serve":
        serve(a)
    elif a.cmd == "tcp":
        print(json.dumps(tcp_once(a.src, a.dst, a.port, a.timeout)))
    elif a.cmd == "udp":
        print(json.dumps(udp_once(a.src, a.dst, a.port, a.timeout)))
    elif a.cmd == "burst":
        print(json.dumps(burst(a)))
    else:
        status_get(a.path)


if __name__ == "__main__":
    main()
