#!/usr/bin/env python3
"""Small network tools for tests/netns/e2e.sh (Python 3 standard library only).

Every command is bounded in time and exits non-zero when its check fails.

  capture IFACE OUT --seconds S [--udp-port P] [--max-frames N] [--ready FILE]
        AF_PACKET capture of IFACE into a pcap file (Ethernet, or raw IP for a TUN device).
  analyze PCAP --marker M --port P [--min-payload N] [--min-datagrams K] [--expect-marker]
        Counts UDP datagrams to/from port P with a payload of at least N bytes and looks for the
        marker; fails if the marker is found (or, with --expect-marker, if it is not).
  marker-serve PORT --marker M --seconds S       TCP: accept one connection, read to EOF, count markers.
  marker-send HOST PORT --marker M --bytes N     TCP: send N bytes of the repeated marker.
  garbage HOST PORT --pcap P... [--random N] [--truncated N] [--replayed N] [--spoof-src IP]
        Random datagrams, truncated and verbatim replays of captured datagrams to HOST:PORT
        (with --spoof-src, replays are also sent with their original source address forged).
  spoof --src IP --dst IP --dport P --payload TEXT [--count N]
        IPv4/UDP datagram with an arbitrary source address, through a raw socket (IP_HDRINCL).
  listen --port P --seconds S --out FILE         UDP listener: one line "SRC PAYLOAD" per datagram.
  udp-recover HOST PORT --timeout S [--interval S]
        UDP echo probes until one comes back; prints the seconds it took.
  drops [REASON]       reads `privnet status --json` on stdin; prints drop counters (or one of them)
  established [--peers N]  reads `privnet status --json`; exit 0 if at least N peers are up
  http-get URL [--timeout S]                      prints the body; fails unless HTTP 200.
"""

import argparse
import json
import os
import random
import signal
import socket
import struct
import sys
import time
import urllib.request

ETH_P_ALL = 0x0003
ARPHRD_ETHER = 1
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101


def die(msg):
    print(f"e2e_helper: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# capture / pcap


def iface_is_ethernet(iface):
    try:
        with open(f"/sys/class/net/{iface}/type", encoding="ascii") as f:
            return int(f.read().strip()) == ARPHRD_ETHER
    except OSError:
        return True


def l3_offset(frame, ethernet):
    """Offset of the IP header in a captured frame, or None when not IP."""
    if not ethernet:
        return 0
    if len(frame) < 14:
        return None
    (ethertype,) = struct.unpack("!H", frame[12:14])
    off = 14
    if ethertype == 0x8100 and len(frame) >= 18:
        (ethertype,) = struct.unpack("!H", frame[16:18])
        off = 18
    return off if ethertype in (0x0800, 0x86DD) else None


def parse_udp(frame, ethernet):
    """(src_ip, src_port, dst_ip, dst_port, payload) of a UDP frame, else None."""
    off = l3_offset(frame, ethernet)
    if off is None or len(frame) < off + 1:
        return None
    version = frame[off] >> 4
    if version == 4:
        if len(frame) < off + 20:
            return None
        ihl = (frame[off] & 0x0F) * 4
        if frame[off + 9] != 17:
            return None
        src = socket.inet_ntop(socket.AF_INET, frame[off + 12 : off + 16])
        dst = socket.inet_ntop(socket.AF_INET, frame[off + 16 : off + 20])
        u = off + ihl
    elif version == 6:
        if len(frame) < off + 40 or frame[off + 6] != 17:
            return None
        src = socket.inet_ntop(socket.AF_INET6, frame[off + 8 : off + 24])
        dst = socket.inet_ntop(socket.AF_INET6, frame[off + 24 : off + 40])
        u = off + 40
    else:
        return None
    if len(frame) < u + 8:
        return None
    sport, dport, ulen = struct.unpack("!HHH", frame[u : u + 6])
    payload = frame[u + 8 : u + max(ulen, 8)]
    return src, sport, dst, dport, payload


def write_pcap_header(f, linktype):
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))


def read_pcap(path):
    """Yields (linktype, frame) for every record of a pcap file."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return
        magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", head)
        if magic != 0xA1B2C3D4:
            die(f"{path}: not a little-endian pcap file")
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            _, _, incl, _ = struct.unpack("<IIII", rec)
            data = f.read(incl)
            if len(data) < incl:
                return
            yield linktype, data


SOL_PACKET = 263
PACKET_VNET_HDR = 15
VNET_HDR_LEN = 10
VIRTIO_NET_HDR_GSO_UDP_L4 = 5
SO_RCVBUFFORCE = 33


def segment_udp_gso(frame, ethernet, gso_size):
    """Split a UDP GSO super-frame (as a veth hands it to AF_PACKET) into the datagrams the wire
    carries: each with gso_size bytes of payload (the last one shorter) and fixed-up lengths."""
    off = l3_offset(frame, ethernet)
    if off is None or gso_size <= 0:
        return [frame]
    version = frame[off] >> 4
    if version == 4:
        u = off + (frame[off] & 0x0F) * 4
    elif version == 6:
        u = off + 40
    else:
        return [frame]
    head, udp, payload = frame[:u], frame[u : u + 8], frame[u + 8 :]
    out = []
    for i in range(0, len(payload), gso_size):
        chunk = payload[i : i + gso_size]
        h = bytearray(head)
        if version == 4:
            struct.pack_into("!H", h, off + 2, u - off + 8 + len(chunk))
        else:
            struct.pack_into("!H", h, off + 4, 8 + len(chunk))
        uh = bytearray(udp)
        struct.pack_into("!H", uh, 4, 8 + len(chunk))
        out.append(bytes(h) + bytes(uh) + chunk)
    return out


def cmd_capture(a):
    ethernet = iface_is_ethernet(a.iface)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    # With a virtio-net header on every frame we learn about GSO super-frames (UDP GSO sends are
    # not segmented on a veth) and write the datagrams the wire would carry instead.
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.bind((a.iface, 0))
    s.settimeout(0.2)
    stop = {"now": False}

    def on_term(_sig, _frm):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    deadline = time.monotonic() + a.seconds
    frames = kept = gso_frames = 0
    with open(a.out, "wb") as f:
        write_pcap_header(f, LINKTYPE_ETHERNET if ethernet else LINKTYPE_RAW)
        f.flush()
        if a.ready:
            with open(a.ready, "w", encoding="ascii") as r:
                r.write("ready\n")
        while not stop["now"] and time.monotonic() < deadline:
            try:
                raw = s.recv(VNET_HDR_LEN + 262144)
            except socket.timeout:
                continue
            except InterruptedError:
                continue
            _, gso_type, _, gso_size = struct.unpack("<BBHH", raw[:6])
            frame = raw[VNET_HDR_LEN:]
            frames += 1
            if a.udp_port:
                u = parse_udp(frame, ethernet)
                if u is None or a.udp_port not in (u[1], u[3]):
                    continue
            if (gso_type & 0x7F) == VIRTIO_NET_HDR_GSO_UDP_L4:
                gso_frames += 1
                parts = segment_udp_gso(frame, ethernet, gso_size)
            else:
                parts = [frame]
            for part in parts:
                if a.max_frames and kept >= a.max_frames:
                    break
                kept += 1
                now = time.time()
                f.write(struct.pack("<IIII", int(now), int((now % 1) * 1e6), len(part), len(part)))
                f.write(part)
            f.flush()
    print(
        f"capture {a.iface}: {frames} frames seen ({gso_frames} UDP GSO super-frames, split into "
        f"wire datagrams), {kept} frames kept in {os.path.basename(a.out)}"
    )


def cmd_analyze(a):
    marker = a.marker.encode()
    frames = datagrams = big = hits = 0
    sizes = {}
    for linktype, frame in read_pcap(a.pcap):
        frames += 1
        if marker in frame:
            hits += 1
        u = parse_udp(frame, linktype == LINKTYPE_ETHERNET)
        if u is None or a.port not in (u[1], u[3]):
            continue
        datagrams += 1
        n = len(u[4])
        if n >= a.min_payload:
            big += 1
            sizes[n] = sizes.get(n, 0) + 1
    common = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    print(
        f"analyze {os.path.basename(a.pcap)}: {frames} frames, {datagrams} UDP datagrams on port "
        f"{a.port}, {big} with payload >= {a.min_payload} B (most common sizes "
        f"{', '.join(f'{k} B x{v}' for k, v in common) or '-'}), marker found in {hits} frames"
    )
    largest = max((k for k in sizes), default=0)
    if a.max_payload and largest > a.max_payload:
        die(f"a UDP datagram on port {a.port} carries {largest} B, more than {a.max_payload} B (underlay MTU)")
    if big < a.min_datagrams:
        die(f"expected at least {a.min_datagrams} UDP datagrams of >= {a.min_payload} B on port {a.port}")
    if a.expect_marker and hits == 0:
        die("the marker was expected in this capture and is not there")
    if not a.expect_marker and hits:
        die(f"PLAINTEXT LEAK: the marker appears in {hits} captured frames")


# ---------------------------------------------------------------------------------------------
# TCP marker transfer


def cmd_marker_serve(a):
    marker = a.marker.encode()
    ls = socket.socket(socket.AF_INET6 if ":" in a.bind else socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.bind, a.port))
    ls.listen(1)
    ls.settimeout(a.seconds)
    conn, peer = ls.accept()
    conn.settimeout(a.seconds)
    total = 0
    tail = b""
    count = 0
    while True:
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        total += len(chunk)
        buf = tail + chunk
        count += buf.count(marker)
        tail = buf[-(len(marker) - 1) :] if len(marker) > 1 else b""
    conn.close()
    print(f"marker-serve: {total} bytes from {peer[0]}, {count} markers")
    if total == 0 or count == 0:
        die("received no marker")


def cmd_marker_send(a):
    marker = a.marker.encode()
    block = marker * (65536 // len(marker))
    s = socket.create_connection((a.host, a.port), timeout=a.timeout)
    s.settimeout(a.timeout)
    left = a.bytes
    t0 = time.monotonic()
    while left > 0:
        n = min(left, len(block))
        s.sendall(block[:n])
        left -= n
    s.shutdown(socket.SHUT_WR)
    while s.recv(4096):
        pass
    s.close()
    dt = time.monotonic() - t0
    print(f"marker-send: {a.bytes} bytes in {dt:.2f} s ({a.bytes * 8 / dt / 1e6:.0f} Mbit/s)")


# ---------------------------------------------------------------------------------------------
# garbage / spoofing


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_udp(src, dst, sport, dport, payload, ident=0):
    srcb = socket.inet_aton(src)
    dstb = socket.inet_aton(dst)
    ulen = 8 + len(payload)
    pseudo = srcb + dstb + struct.pack("!BBH", 0, 17, ulen)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    c = checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    total = 20 + ulen
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident & 0xFFFF, 0x4000, 64, 17, 0, srcb, dstb)
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + udp


def raw_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    return s


def captured_datagrams(paths, port):
    out = []
    for path in paths:
        for linktype, frame in read_pcap(path):
            u = parse_udp(frame, linktype == LINKTYPE_ETHERNET)
            if u and u[3] == port and u[4]:
                out.append(u)
    return out


def cmd_garbage(a):
    rng = random.Random(a.seed)
    captured = captured_datagrams(a.pcap, a.port)
    captured = [u for u in captured if u[2] == a.host] or captured
    if a.replayed and not captured:
        die("no captured datagram to the target port to replay")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw = raw_socket() if a.spoof_src else None
    dst = (a.host, a.port)
    sent = {"random": 0, "truncated": 0, "replayed": 0, "replayed-spoofed": 0}
    deadline = time.monotonic() + a.seconds
    plan = ["random"] * a.random + ["truncated"] * a.truncated + ["replayed"] * a.replayed
    rng.shuffle(plan)
    kinds = {b[4][0] for b in captured}
    for i, kind in enumerate(plan):
        if time.monotonic() > deadline:
            break
        if kind == "random":
            payload = rng.randbytes(rng.choice([1, 3, 4, 16, 31, 32, 33, 64, 148, 92, 500, 1400]))
            if rng.random() < 0.5:  # plausible header: a real message type, reserved zero
                payload = bytes([rng.choice([1, 2, 3, 4]), 1, 0, 0]) + payload[4:]
            s.sendto(payload, dst)
        elif kind == "truncated":
            p = rng.choice(captured)[4]
            s.sendto(p[: rng.randrange(0, len(p))], dst)
        else:
            src_ip, sport, _, _, p = rng.choice(captured)
            s.sendto(p, dst)
            if raw is not None and ":" not in src_ip:
                raw.sendto(ipv4_udp(src_ip, a.host, sport, a.port, p, ident=i), (a.host, 0))
                sent["replayed-spoofed"] += 1
        sent[kind] += 1
        if a.pace and i % a.pace == a.pace - 1:
            time.sleep(0.005)
    print(
        f"garbage -> {a.host}:{a.port}: "
        + ", ".join(f"{v} {k}" for k, v in sent.items())
        + f" (replays drawn from {len(captured)} captured datagrams, message types {sorted(kinds)})"
    )


def cmd_spoof(a):
    raw = raw_socket()
    for i in range(a.count):
        pkt = ipv4_udp(a.src, a.dst, a.sport, a.dport, f"{a.payload} #{i}".encode(), ident=i + 1)
        raw.sendto(pkt, (a.dst, 0))
        time.sleep(0.02)
    print(f"spoof: sent {a.count} IPv4/UDP packets {a.src} -> {a.dst}:{a.dport}")


def cmd_listen(a):
    fam = socket.AF_INET6 if ":" in a.bind else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((a.bind, a.port))
    s.settimeout(0.2)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    deadline = time.monotonic() + a.seconds
    with open(a.out, "w", encoding="utf-8") as f:
        if a.ready:
            with open(a.ready, "w", encoding="ascii") as r:
                r.write("ready\n")
        while not stop["now"] and time.monotonic() < deadline:
            try:
                data, peer = s.recvfrom(65535)
            except socket.timeout:
                continue
            f.write(f"{peer[0]} {data.decode(errors='replace')}\n")
            f.flush()


BURST_MAGIC = b"PNB1"
UDP_SEGMENT = 103  # linux/udp.h


def burst_datagram(seq, size):
    """Datagram `seq` of a burst test: magic, sequence number, length, then bytes derived from both."""
    body = bytes((seq * 31 + i) & 0xFF for i in range(size - 12))
    return BURST_MAGIC + struct.pack(">II", seq, size) + body


def burst_plan(bursts, per_burst):
    """(seq, size) of every datagram: each burst one size, its last datagram shorter."""
    sizes = [64, 200, 1000, 1300]
    plan, seq = [], 0
    for b in range(bursts):
        size = sizes[b % len(sizes)]
        for i in range(per_burst):
            plan.append((seq, size if i + 1 < per_burst else size // 2))
            seq += 1
    return plan


def cmd_udp_burst_send(a):
    fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    plan = burst_plan(a.bursts, a.per_burst)
    gso_bursts = 0
    for k in range(a.bursts):
        burst = [burst_datagram(seq, size) for seq, size in plan[k * a.per_burst:(k + 1) * a.per_burst]]
        # Even bursts as one UDP_SEGMENT send (the way QUIC stacks send), odd ones one by one.
        if k % 2 == 0:
            try:
                s.sendmsg([b"".join(burst)], [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", len(burst[0])))],
                          0, (a.host, a.port))
                gso_bursts += 1
                time.sleep(a.gap)
                continue
            except OSError:
                pass
        for d in burst:
            s.sendto(d, (a.host, a.port))
        time.sleep(a.gap)
    print(f"sent {len(plan)} datagrams in {a.bursts} bursts, {gso_bursts} of them with UDP_SEGMENT")


def cmd_udp_burst_recv(a):
    """Receive a burst test for at most --seconds; print a JSON verdict (exit 1 on any corruption)."""
    fam = socket.AF_INET6 if ":" in a.bind else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((a.bind, a.port))
    s.settimeout(0.2)
    if a.ready:
        with open(a.ready, "w", encoding="ascii") as r:
            r.write("ready\n")
    expected = dict(burst_plan(a.bursts, a.per_burst))
    seen, corrupt, dup = set(), 0, 0
    deadline = time.monotonic() + a.seconds
    idle_after_first = None
    while time.monotonic() < deadline and len(seen) < len(expected):
        try:
            data, _ = s.recvfrom(65535)
        except socket.timeout:
            if seen and idle_after_first is not None and time.monotonic() - idle_after_first > 2:
                break
            continue
        idle_after_first = time.monotonic()
        if len(data) < 12 or data[:4] != BURST_MAGIC:
            corrupt += 1
            continue
        seq, size = struct.unpack(">II", data[4:12])
        if expected.get(seq) != size or len(data) != size or data != burst_datagram(seq, size):
            corrupt += 1
        elif seq in seen:
            dup += 1
        else:
            seen.add(seq)
    verdict = {"expected": len(expected), "received": len(seen), "corrupt": corrupt, "duplicates": dup}
    print(json.dumps(verdict))
    sys.exit(1 if corrupt or dup else 0)


def cmd_udp_recover(a):
    fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(a.interval)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < a.timeout:
        n += 1
        probe = f"recover {n}".encode()
        try:
            s.sendto(probe, (a.host, a.port))
        except OSError:
            time.sleep(a.interval)
            continue
        end = time.monotonic() + a.interval
        while time.monotonic() < end:
            try:
                data, _ = s.recvfrom(2048)
            except (socket.timeout, OSError):
                break
            if data == probe:
                print(f"{time.monotonic() - t0:.2f}")
                return
    die(f"no UDP echo from {a.host}:{a.port} within {a.timeout} s ({n} probes)")


# ---------------------------------------------------------------------------------------------
# status / metrics


def load_status():
    try:
        return json.load(sys.stdin)
    except json.JSONDecodeError as e:
        die(f"privnet status --json: invalid JSON: {e}")


def all_drops(nets):
    d = {}
    for n in nets:
        for reason, count in n.get("drops", []):
            d[reason] = d.get(reason, 0) + count
        for p in n.get("peers", []):
            if p.get("spoofed"):
                d["peer_spoofed"] = d.get("peer_spoofed", 0) + p["spoofed"]
    return d


def cmd_drops(a):
    d = all_drops(load_status())
    if a.reason:
        print(d.get(a.reason, 0))
    elif a.total:
        print(sum(v for k, v in d.items() if k != "peer_spoofed"))
    else:
        print(" ".join(f"{k}={v}" for k, v in sorted(d.items())) or "none")


def cmd_established(a):
    nets = load_status()
    up = [p["name"] for n in nets for p in n.get("peers", []) if p.get("established")]
    print(",".join(up))
    sys.exit(0 if len(up) >= a.peers else 1)


def cmd_http_get(a):
    with urllib.request.urlopen(a.url, timeout=a.timeout) as r:
        if r.status != 200:
            die(f"{a.url}: HTTP {r.status}")
        sys.stdout.write(r.read().decode())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("capture")
    p.add_argument("iface")
    p.add_argument("out")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--udp-port", type=int, default=0)
    p.add_argument("--max-frames", type=int, default=0)
    p.add_argument("--ready")
    p.set_defaults(fn=cmd_capture)

    p = sub.add_parser("analyze")
    p.add_argument("pcap")
    p.add_argument("--marker", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--min-payload", type=int, default=0)
    p.add_argument("--min-datagrams", type=int, default=1)
    p.add_argument("--max-payload", type=int, default=0, help="fail if a datagram's payload is larger")
    p.add_argument("--expect-marker", action="store_true")
    p.set_defaults(fn=cmd_analyze)

    p = sub.add_parser("marker-serve")
    p.add_argument("port", type=int)
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--marker", required=True)
    p.add_argument("--seconds", type=float, default=30)
    p.set_defaults(fn=cmd_marker_serve)

    p = sub.add_parser("marker-send")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--marker", required=True)
    p.add_argument("--bytes", type=int, required=True)
    p.add_argument("--timeout", type=float, default=20)
    p.set_defaults(fn=cmd_marker_send)

    p = sub.add_parser("garbage")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--pcap", nargs="+", default=[])
    p.add_argument("--random", type=int, default=2000)
    p.add_argument("--truncated", type=int, default=1000)
    p.add_argument("--replayed", type=int, default=1000)
    p.add_argument("--spoof-src", action="store_true")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--pace", type=int, default=50, help="sleep 5 ms after every N datagrams")
    p.add_argument("--seed", type=int, default=4)
    p.set_defaults(fn=cmd_garbage)

    p = sub.add_parser("spoof")
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--sport", type=int, default=40000)
    p.add_argument("--dport", type=int, required=True)
    p.add_argument("--payload", required=True)
    p.add_argument("--count", type=int, default=5)
    p.set_defaults(fn=cmd_spoof)

    p = sub.add_parser("listen")
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ready")
    p.set_defaults(fn=cmd_listen)

    p = sub.add_parser("udp-burst-send")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--bursts", type=int, default=64)
    p.add_argument("--per-burst", type=int, default=32)
    p.add_argument("--gap", type=float, default=0.005)
    p.set_defaults(fn=cmd_udp_burst_send)

    p = sub.add_parser("udp-burst-recv")
    p.add_argument("port", type=int)
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--bursts", type=int, default=64)
    p.add_argument("--per-burst", type=int, default=32)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--ready")
    p.set_defaults(fn=cmd_udp_burst_recv)

    p = sub.add_parser("udp-recover")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--interval", type=float, default=0.1)
    p.set_defaults(fn=cmd_udp_recover)

    p = sub.add_parser("drops")
    p.add_argument("reason", nargs="?")
    p.add_argument("--total", action="store_true")
    p.set_defaults(fn=cmd_drops)

    p = sub.add_parser("established")
    p.add_argument("--peers", type=int, default=1)
    p.set_defaults(fn=cmd_established)

    p = sub.add_parser("http-get")
    p.add_argument("url")
    p.add_argument("--timeout", type=float, default=5)
    p.set_defaults(fn=cmd_http_get)

    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
