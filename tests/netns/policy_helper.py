#!/usr/bin/env python3
"""Traffic probes for tests/netns/policy.sh (Python 3 standard library only).

Every command is bounded in time. Probes print one JSON line saying what happened and how long it
took, and exit 1 when the outcome is not the one `--expect` names (0 when it is).

  serve --tcp P[,P...] --udp P[,P...] [--bind ADDR] --seconds S [--ready FILE]
        TCP echo (every connection echoes what it reads) and UDP echo on the given ports
        (dual-stack on `::`).
  tcp-connect HOST PORT --timeout S --expect connected|refused|timeout
        One TCP connect. `connected` also requires an echo of a short line (replies flow);
        `refused` is ECONNREFUSED (a RST); `timeout` is no answer within S.
  udp-probe HOST PORT --timeout S --expect echo|silence|icmp:TYPE/CODE
        One datagram on a connected socket with IP_RECVERR / IPV6_RECVERR: an echo, nothing, or
        the ICMP error the kernel queued (its type and code, from the error queue).
  tcp-hold HOST PORT --seconds S --out FILE [--interval S]
        A running flow: connects, then one line every INTERVAL, each waiting for its echo; FILE
        is rewritten after every event: {"connected", "echoes", "last_echo" (Unix time),
        "error"}. Ends after S seconds or on SIGTERM.
  status-get FIELD... (reads `privnet status --json` on stdin)
        Prints, space-separated: `drops.REASON` (summed over networks), `peer.NAME.KEY`
        (a peer's field, e.g. peer.web1.handshakes), `policy.KEY[.KEY]` (the first network's
        policy view, e.g. policy.hash, policy.totals.cut), `policy_refused`; values as JSON.
  audit FILE [KEY=VALUE...]
        Prints the audit log's (JSON lines) last line whose fields equal every KEY=VALUE
        (compared as text) and exits 1 if there is none.
"""

import argparse
import errno
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

IP_RECVERR = 11  # linux/in.h
IPV6_RECVERR = 25  # linux/in6.h
MSG_ERRQUEUE = 0x2000
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3


def die(msg):
    print(f"policy_helper: {msg}", file=sys.stderr)
    sys.exit(1)


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def report(result, t0, expect, **extra):
    ms = (time.monotonic() - t0) * 1000.0
    line = {"result": result, "ms": round(ms, 1)}
    line.update(extra)
    print(json.dumps(line))
    sys.exit(0 if expect is None or result == expect else 1)


# ---------------------------------------------------------------------------------------------
# serve


def tcp_echo(conn):
    conn.settimeout(30)
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)
    except OSError:
        return
    finally:
        conn.close()


def tcp_listener(sock):
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=tcp_echo, args=(conn,), daemon=True).start()


def udp_echo(sock):
    while True:
        try:
            data, peer = sock.recvfrom(65535)
            sock.sendto(data, peer)
        except OSError:
            continue


def bound(kind, addr, port):
    fam = family(addr)
    s = socket.socket(fam, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((addr, port))
    return s


def ports(text):
    return [int(p) for p in text.split(",") if p]


def cmd_serve(a):
    threads = []
    for port in ports(a.tcp):
        s = bound(socket.SOCK_STREAM, a.bind, port)
        s.listen(64)
        threads.append(threading.Thread(target=tcp_listener, args=(s,), daemon=True))
    for port in ports(a.udp):
        s = bound(socket.SOCK_DGRAM, a.bind, port)
        threads.append(threading.Thread(target=udp_echo, args=(s,), daemon=True))
    for t in threads:
        t.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if a.ready:
        with open(a.ready, "w", encoding="ascii") as r:
            r.write("ready\n")
    stop.wait(a.seconds)


# ---------------------------------------------------------------------------------------------
# probes


def cmd_tcp_connect(a):
    s = socket.socket(family(a.host), socket.SOCK_STREAM)
    s.settimeout(a.timeout)
    t0 = time.monotonic()
    try:
        s.connect((a.host, a.port))
    except socket.timeout:
        report("timeout", t0, a.expect)
    except ConnectionRefusedError:
        report("refused", t0, a.expect)
    except OSError as e:
        report("error", t0, a.expect, error=str(e))
    connect_ms = round((time.monotonic() - t0) * 1000.0, 1)
    line = b"policy-e2e hello\n"
    try:
        s.sendall(line)
        got = b""
        while len(got) < len(line):
            chunk = s.recv(len(line) - len(got))
            if not chunk:
                break
            got += chunk
    except OSError as e:
        report("no-echo", t0, a.expect, connect_ms=connect_ms, error=str(e))
    if got != line:
        report("no-echo", t0, a.expect, connect_ms=connect_ms, got=got.decode(errors="replace"))
    report("connected", t0, a.expect, connect_ms=connect_ms)


def icmp_error(s):
    """(origin, type, code) of a queued ICMP error, or None."""
    try:
        _, anc, _, _ = s.recvmsg(2048, 512, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    for level, kind, data in anc:
        if (level, kind) in ((socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)):
            if len(data) >= 16:
                _errno, origin, etype, code, _pad, _info, _data = struct.unpack("=IBBBBII", data[:16])
                return origin, etype, code
    return None


def cmd_udp_probe(a):
    fam = family(a.host)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    s.connect((a.host, a.port))
    probe = f"policy-e2e probe {os.getpid()}".encode()
    t0 = time.monotonic()
    s.send(probe)
    deadline = t0 + a.timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            report("silence", t0, a.expect)
        r, _, x = select.select([s], [], [s], left)
        if not r and not x:
            continue
        err = icmp_error(s)
        if err is not None:
            origin, etype, code = err
            if origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
                name = "icmp" if origin == SO_EE_ORIGIN_ICMP else "icmpv6"
                report(f"icmp:{etype}/{code}", t0, a.expect, origin=name)
            report(f"error-origin-{origin}", t0, a.expect)
        try:
            data = s.recv(65535, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as e:
            # The error was consumed by recv (it also reports it): say which.
            report(f"errno:{errno.errorcode.get(e.errno, e.errno)}", t0, a.expect)
        if data == probe:
            report("echo", t0, a.expect)


def cmd_tcp_hold(a):
    state = {"connected": False, "echoes": 0, "last_echo": None, "error": None}

    def save():
        tmp = a.out + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            json.dump(state, f)
        os.replace(tmp, a.out)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    end = time.monotonic() + a.seconds
    s = socket.socket(family(a.host), socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((a.host, a.port))
    except OSError as e:
        state["error"] = f"connect: {e}"
        save()
        sys.exit(1)
    state["connected"] = True
    save()
    s.settimeout(0.2)
    n = 0
    pending = b""
    while not stop.is_set() and time.monotonic() < end:
        if not pending:
            n += 1
            pending = f"hold {n}\n".encode()
            try:
                s.sendall(pending)
            except OSError as e:
                state["error"] = f"send: {e}"
                save()
                break
            got = b""
        try:
            chunk = s.recv(len(pending) - len(got))
        except socket.timeout:
            continue
        except OSError as e:
            state["error"] = f"recv: {e}"
            save()
            break
        if not chunk:
            state["error"] = "closed by the server"
            save()
            break
        got += chunk
        if got == pending:
            state["echoes"] += 1
            state["last_echo"] = time.time()
            save()
            pending = b""
            stop.wait(a.interval)
    s.close()


# ---------------------------------------------------------------------------------------------
# status


def cmd_status_get(a):
    try:
        nets = json.load(sys.stdin)
    except json.JSONDecodeError as e:
        die(f"privnet status --json: invalid JSON: {e}")
    out = []
    for field in a.fields:
        kind, _, rest = field.partition(".")
        if kind == "drops":
            out.append(sum(c for n in nets for r, c in n.get("drops", []) if r == rest))
        elif kind == "peer":
            name, _, key = rest.rpartition(".")
            peers = [p for n in nets for p in n.get("peers", []) if p.get("name") == name]
            if not peers:
                die(f"no peer {name!r} in the status")
            out.append(json.dumps(peers[0].get(key)))
        elif kind == "policy":
            # policy.KEY[.KEY...] in the first network's policy view; policy_refused for the
            # problems of the last refused version.
            view = nets[0] if nets else {}
            for key in ["policy"] + rest.split("."):
                view = view.get(key) if isinstance(view, dict) else None
            out.append(json.dumps(view))
        elif kind == "policy_refused":
            out.append(json.dumps(nets[0].get("policy_refused") if nets else None))
        else:
            die(f"unknown field {field!r}")
    print(" ".join(str(v) for v in out))


def cmd_audit(a):
    want = [kv.split("=", 1) for kv in a.match]
    found = None
    try:
        with open(a.file, encoding="utf-8") as f:
            for line in f:
                try:
                    v = json.loads(line)
                except json.JSONDecodeError:
                    die(f"{a.file}: not a JSON line: {line!r}")
                if all(str(v.get(k)).lower() == val.lower() for k, val in want):
                    found = v
    except OSError as e:
        die(f"{a.file}: {e}")
    if found is None:
        die(f"{a.file}: no line with {' '.join(a.match)}")
    print(json.dumps(found))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("serve")
    p.add_argument("--bind", default="::")
    p.add_argument("--tcp", default="")
    p.add_argument("--udp", default="")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--ready")
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("tcp-connect")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--expect", choices=["connected", "refused", "timeout"])
    p.set_defaults(fn=cmd_tcp_connect)

    p = sub.add_parser("udp-probe")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--expect")
    p.set_defaults(fn=cmd_udp_probe)

    p = sub.add_parser("tcp-hold")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--interval", type=float, default=0.1)
    p.set_defaults(fn=cmd_tcp_hold)

    p = sub.add_parser("status-get")
    p.add_argument("fields", nargs="+")
    p.set_defaults(fn=cmd_status_get)

    p = sub.add_parser("audit")
    p.add_argument("file")
    p.add_argument("match", nargs="*")
    p.set_defaults(fn=cmd_audit)

    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
