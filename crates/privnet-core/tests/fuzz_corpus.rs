//! The seed corpora of the fuzz targets (`fuzz/seeds/<target>/`), generated here, deterministically,
//! against the fixture the targets themselves use (`fuzz/fuzz_targets/common/mod.rs`, included
//! below): genuine initiations, responses, cookie replies and data messages with correct macs,
//! programs for the structure-aware and stateful targets that reach every refusal and every
//! success path, inner packets, TUN super-packets, certificates and configuration files.
//!
//! `cargo test -p privnet-core --test fuzz_corpus` checks that the checked-in seeds are the ones
//! generated here (so a change of the wire format, the fixture or the input layout of a target
//! is noticed); `PRIVNET_WRITE_SEEDS=1` (re)writes them. Files in `fuzz/seeds/` that the
//! generator does not make (regression inputs added by hand) are left alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../fuzz/fuzz_targets/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use common::{fixture, Output, Sender, Variant};
use privnet_core::credential::StandInCredential;
use privnet_core::crypto::{self, CipherSuite};
use privnet_core::identity::{MemberCertificate, MemberParams};
use privnet_core::testing::{ipv4_udp, LinkConfig, TestNetwork};
use privnet_core::wire;
use privnet_core::Decapsulated;

type Seeds = BTreeMap<(&'static str, String), Vec<u8>>;

fn add(s: &mut Seeds, target: &'static str, name: &str, bytes: Vec<u8>) {
    assert!(
        s.insert((target, name.to_string()), bytes).is_none(),
        "{target}/{name} twice"
    );
}

// ---------------------------------------------------------------------------------------------
// handshake_initiation_structured

#[derive(Clone)]
enum Ts {
    /// Seconds (and nanoseconds) relative to the node's wall clock.
    Rel(i32, u32),
    Raw([u8; 12]),
    /// Milliseconds relative to the skew limit.
    Skew(i16),
    Prev,
}

#[derive(Clone)]
enum Cred {
    Name(&'static [u8]),
    Raw(Vec<u8>),
    Empty,
    Own,
}

#[derive(Clone)]
enum Eph {
    Low(u8),
    Raw([u8; 32]),
}

#[derive(Clone)]
struct Init {
    advance: u16,
    who: Sender,
    other_suite: bool,
    bad_mac1: bool,
    /// 0 zero, 1 valid cookie, 2 another source's cookie, 3 garbage.
    mac2: u8,
    from: u8,
    ts: Ts,
    cred: Cred,
    eph: Option<Eph>,
    tamper: Option<(u16, u8)>,
    sender: u32,
    seed: u8,
}

impl Default for Init {
    fn default() -> Self {
        Self {
            advance: 0,
            who: Sender::Member1,
            other_suite: false,
            bad_mac1: false,
            mac2: 0,
            from: 0,
            ts: Ts::Rel(0, 0),
            cred: Cred::Own,
            eph: None,
            tamper: None,
            sender: 0x1111_2222,
            seed: 1,
        }
    }
}

fn who_index(w: Sender) -> u8 {
    Sender::ALL.iter().position(|s| *s == w).unwrap() as u8
}

fn encode_cred(o: &mut Output, c: &Cred) -> u8 {
    match c {
        Cred::Name(n) => {
            o.u8(n.len() as u8).bytes(n);
            0
        }
        Cred::Raw(b) => {
            o.u16(b.len() as u16).bytes(b);
            1
        }
        Cred::Empty => 2,
        Cred::Own => 3,
    }
}

fn encode_eph(o: &mut Output, e: &Eph) {
    match e {
        Eph::Low(i) => {
            o.u8(0).u8(*i);
        }
        Eph::Raw(k) => {
            o.u8(1).bytes(k);
        }
    }
}

fn initiations(config: Variant, msgs: &[Init]) -> Vec<u8> {
    let mut o = Output::default();
    o.u8(config.to_byte());
    for m in msgs {
        let ts_mode = match m.ts {
            Ts::Rel(..) => 0,
            Ts::Raw(_) => 1,
            Ts::Skew(_) => 2,
            Ts::Prev => 3,
        };
        let mut fields = Output::default();
        let cred_mode = encode_cred(&mut Output::default(), &m.cred);
        let flags = who_index(m.who)
            | (u8::from(m.other_suite) << 3)
            | (u8::from(m.bad_mac1) << 4)
            | (m.mac2 << 5)
            | (u8::from(m.eph.is_some()) << 7);
        let flags2 =
            m.from | (ts_mode << 3) | (cred_mode << 5) | (u8::from(m.tamper.is_some()) << 7);
        fields
            .u16(m.advance)
            .u8(flags)
            .u8(flags2)
            .u32(m.sender)
            .u8(m.seed);
        match &m.ts {
            Ts::Rel(s, n) => {
                fields.u32(*s as u32).u32(*n);
            }
            Ts::Raw(b) => {
                fields.bytes(b);
            }
            Ts::Skew(ms) => {
                fields.u16(*ms as u16);
            }
            Ts::Prev => {}
        }
        encode_cred(&mut fields, &m.cred);
        if let Some(e) = &m.eph {
            encode_eph(&mut fields, e);
        }
        if let Some((pos, x)) = m.tamper {
            fields.u16(pos).u8(x);
        }
        o.bytes(&fields.0);
    }
    o.0
}

fn initiation_seeds(s: &mut Seeds) {
    const T: &str = "handshake_initiation_structured";
    let aes = Variant::from_byte(0);
    let chacha = Variant::from_byte(1);
    let loaded = Variant::from_byte(2);
    let closed = Variant::from_byte(4);
    let ok = Init::default();
    let later = |advance: u16, secs: i32| Init {
        advance,
        ts: Ts::Rel(secs, 0),
        ..Init::default()
    };
    add(
        s,
        T,
        "ok-member1-aes",
        initiations(aes, std::slice::from_ref(&ok)),
    );
    add(
        s,
        T,
        "ok-member1-chacha",
        initiations(chacha, std::slice::from_ref(&ok)),
    );
    add(
        s,
        T,
        "ok-member2-learned",
        initiations(
            aes,
            &[Init {
                who: Sender::Member2,
                from: 4,
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "refused-member2-closed",
        initiations(
            closed,
            &[Init {
                who: Sender::Member2,
                from: 4,
                ..Init::default()
            }],
        ),
    );
    for (name, who) in [
        ("refused-stranger", Sender::Stranger),
        ("refused-other-network", Sender::Member1OtherNetwork),
        ("refused-other-suite-noise", Sender::Member1OtherSuite),
        ("own-key", Sender::Itself),
    ] {
        add(
            s,
            T,
            name,
            initiations(
                aes,
                &[Init {
                    who,
                    ..Init::default()
                }],
            ),
        );
    }
    add(
        s,
        T,
        "timestamp-at-skew-limit",
        initiations(
            aes,
            &[Init {
                ts: Ts::Skew(0),
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "timestamp-past-skew-limit",
        initiations(
            aes,
            &[Init {
                ts: Ts::Skew(17),
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "timestamp-raw-far-future",
        initiations(
            aes,
            &[Init {
                ts: Ts::Raw([0xff; 12]),
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "timestamp-an-hour-ago",
        initiations(
            aes,
            &[Init {
                ts: Ts::Rel(-3600, 5),
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "replayed-timestamp",
        initiations(
            aes,
            &[
                ok.clone(),
                Init {
                    advance: 50,
                    ts: Ts::Prev,
                    ..Init::default()
                },
            ],
        ),
    );
    add(
        s,
        T,
        "flood-within-20ms",
        initiations(aes, &[ok.clone(), later(5, 1)]),
    );
    add(
        s,
        T,
        "rekeys-every-30ms",
        initiations(aes, &[ok.clone(), later(30, 1), later(30, 2), later(30, 3)]),
    );
    add(
        s,
        T,
        "under-load-cookie-then-mac2",
        initiations(
            loaded,
            &[
                ok.clone(),
                later(30, 1),
                Init {
                    advance: 30,
                    ts: Ts::Rel(2, 0),
                    mac2: 1,
                    ..Init::default()
                },
                Init {
                    advance: 30,
                    ts: Ts::Rel(3, 0),
                    mac2: 2,
                    ..Init::default()
                },
                Init {
                    advance: 1500,
                    ts: Ts::Rel(5, 0),
                    ..Init::default()
                },
            ],
        ),
    );
    add(
        s,
        T,
        "under-load-from-every-source",
        initiations(
            loaded,
            &(0..5)
                .map(|i| Init {
                    advance: 30,
                    ts: Ts::Rel(i, 0),
                    from: i as u8,
                    mac2: if i % 2 == 0 { 1 } else { 3 },
                    ..Init::default()
                })
                .collect::<Vec<_>>(),
        ),
    );
    add(
        s,
        T,
        "low-order-ephemeral",
        initiations(
            aes,
            &[Init {
                eph: Some(Eph::Low(2)),
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "raw-ephemeral",
        initiations(
            aes,
            &[Init {
                eph: Some(Eph::Raw([0x42; 32])),
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "tampered-static",
        initiations(
            aes,
            &[Init {
                tamper: Some((40, 1)),
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "tampered-payload",
        initiations(
            aes,
            &[Init {
                tamper: Some((90, 0x81)),
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "bad-mac1",
        initiations(
            aes,
            &[Init {
                bad_mac1: true,
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "header-other-suite",
        initiations(
            aes,
            &[Init {
                other_suite: true,
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "from-inside-overlay",
        initiations(
            aes,
            &[Init {
                from: 3,
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "from-ipv6-then-home",
        initiations(
            aes,
            &[
                Init {
                    from: 2,
                    ..Init::default()
                },
                later(40, 1),
            ],
        ),
    );
    add(
        s,
        T,
        "credential-stand-in-name",
        initiations(
            aes,
            &[Init {
                cred: Cred::Name(b"member-one"),
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "credential-empty",
        initiations(
            aes,
            &[Init {
                cred: Cred::Empty,
                ..Init::default()
            }],
        ),
    );
    add(
        s,
        T,
        "credential-raw-max",
        initiations(
            aes,
            &[Init {
                cred: Cred::Raw(vec![0x61; 1024]),
                ..Init::default()
            }],
        ),
    );
    let mixed: Vec<Init> = (0..8)
        .map(|i| Init {
            advance: 300 * i as u16,
            who: Sender::ALL[i % Sender::ALL.len()],
            from: (i % 5) as u8,
            ts: Ts::Rel(i as i32, 0),
            mac2: (i % 4) as u8,
            sender: i as u32,
            seed: i as u8,
            ..Init::default()
        })
        .collect();
    add(s, T, "eight-mixed", initiations(loaded, &mixed));
}

// ---------------------------------------------------------------------------------------------
// handshake_response_structured

#[derive(Clone)]
enum Op {
    Response(Resp),
    Cookie {
        raw_receiver: Option<u32>,
        wrong_key: bool,
        wrong_ad: bool,
        cookie: [u8; 16],
    },
    Raw(Vec<u8>),
    Replay(u8),
    App(u8),
}

#[derive(Clone)]
struct Resp {
    /// 0 latest, 2 first, 3 the one before the latest.
    answer: u8,
    other_suite: bool,
    bad_mac1: bool,
    mac2: u8,
    eph: Option<Eph>,
    tamper: Option<(u16, u8)>,
    from: u8,
    cred: Cred,
    /// 0 answered initiation's index, 1 latest, 2 raw, 3 current session's.
    receiver: (u8, u32),
    sender: u32,
    seed: u8,
}

impl Default for Resp {
    fn default() -> Self {
        Self {
            answer: 0,
            other_suite: false,
            bad_mac1: false,
            mac2: 0,
            eph: None,
            tamper: None,
            from: 0,
            cred: Cred::Own,
            receiver: (0, 0),
            sender: 0x3333_4444,
            seed: 2,
        }
    }
}

fn responses(config: u8, ops: &[(u16, Op)]) -> Vec<u8> {
    let mut o = Output::default();
    o.u8(config);
    for (advance, op) in ops {
        o.u16(*advance);
        match op {
            Op::Response(r) => {
                let cred_mode = encode_cred(&mut Output::default(), &r.cred);
                let flags = r.answer
                    | (u8::from(r.other_suite) << 2)
                    | (u8::from(r.bad_mac1) << 3)
                    | (r.mac2 << 4)
                    | (u8::from(r.eph.is_some()) << 6)
                    | (u8::from(r.tamper.is_some()) << 7);
                let flags2 = r.from | (cred_mode << 2) | (r.receiver.0 << 4);
                o.u8(0).u8(flags).u8(flags2).u32(r.sender).u8(r.seed);
                if r.receiver.0 == 2 {
                    o.u32(r.receiver.1);
                }
                encode_cred(&mut o, &r.cred);
                if let Some(e) = &r.eph {
                    encode_eph(&mut o, e);
                }
                if let Some((pos, x)) = r.tamper {
                    o.u16(pos).u8(x);
                }
            }
            Op::Cookie {
                raw_receiver,
                wrong_key,
                wrong_ad,
                cookie,
            } => {
                let flags = u8::from(raw_receiver.is_some())
                    | (u8::from(*wrong_key) << 1)
                    | (u8::from(*wrong_ad) << 2);
                o.u8(4).u8(flags).bytes(cookie).u8(9);
                if let Some(r) = raw_receiver {
                    o.u32(*r);
                }
            }
            Op::Raw(b) => {
                o.u8(5).u8(b.len() as u8).bytes(b);
            }
            Op::Replay(i) => {
                o.u8(6).u8(*i);
            }
            Op::App(len) => {
                o.u8(7).u8(*len);
            }
        }
    }
    o.0
}

fn response_seeds(s: &mut Seeds) {
    const T: &str = "handshake_response_structured";
    let ok = || Op::Response(Resp::default());
    let with = |r: Resp| Op::Response(r);
    let cookie = |wrong_key, wrong_ad| Op::Cookie {
        raw_receiver: None,
        wrong_key,
        wrong_ad,
        cookie: [0x21; 16],
    };
    add(s, T, "ok-aes", responses(0, &[(0, ok())]));
    add(s, T, "ok-chacha", responses(1, &[(0, ok())]));
    add(
        s,
        T,
        "ok-then-replayed",
        responses(0, &[(0, ok()), (10, Op::Replay(0))]),
    );
    add(
        s,
        T,
        "regress-spent-after-bad-credential",
        responses(
            0,
            &[
                (
                    1,
                    with(Resp {
                        cred: Cred::Empty,
                        ..Resp::default()
                    }),
                ),
                (3956, ok()),
                (2000, ok()),
            ],
        ),
    );
    add(
        s,
        T,
        "garbage-raced-ahead-of-genuine",
        responses(
            0,
            &[
                (
                    0,
                    with(Resp {
                        tamper: Some((5, 1)),
                        ..Resp::default()
                    }),
                ),
                (0, ok()),
            ],
        ),
    );
    add(
        s,
        T,
        "low-order-ephemeral",
        responses(
            0,
            &[
                (
                    0,
                    with(Resp {
                        eph: Some(Eph::Low(3)),
                        ..Resp::default()
                    }),
                ),
                (0, ok()),
            ],
        ),
    );
    add(
        s,
        T,
        "raw-ephemeral",
        responses(
            0,
            &[(
                0,
                with(Resp {
                    eph: Some(Eph::Raw([7; 32])),
                    ..Resp::default()
                }),
            )],
        ),
    );
    add(
        s,
        T,
        "bad-mac1",
        responses(
            0,
            &[(
                0,
                with(Resp {
                    bad_mac1: true,
                    ..Resp::default()
                }),
            )],
        ),
    );
    add(
        s,
        T,
        "header-other-suite",
        responses(
            0,
            &[(
                0,
                with(Resp {
                    other_suite: true,
                    ..Resp::default()
                }),
            )],
        ),
    );
    add(
        s,
        T,
        "from-inside-overlay",
        responses(
            0,
            &[(
                0,
                with(Resp {
                    from: 3,
                    ..Resp::default()
                }),
            )],
        ),
    );
    add(
        s,
        T,
        "from-ipv6-endpoint-changes",
        responses(
            0,
            &[(
                0,
                with(Resp {
                    from: 2,
                    ..Resp::default()
                }),
            )],
        ),
    );
    add(
        s,
        T,
        "unknown-receiver",
        responses(
            0,
            &[(
                0,
                with(Resp {
                    receiver: (2, 0xdead_beef),
                    ..Resp::default()
                }),
            )],
        ),
    );
    add(
        s,
        T,
        "credential-stand-in-name",
        responses(
            0,
            &[(
                0,
                with(Resp {
                    cred: Cred::Name(b"zero"),
                    ..Resp::default()
                }),
            )],
        ),
    );
    add(
        s,
        T,
        "credential-raw",
        responses(
            0,
            &[(
                0,
                with(Resp {
                    cred: Cred::Raw(vec![0x10; 300]),
                    ..Resp::default()
                }),
            )],
        ),
    );
    add(
        s,
        T,
        "cookie-then-retry-answered",
        responses(0, &[(100, cookie(false, false)), (10, ok())]),
    );
    add(
        s,
        T,
        "cookie-wrong-key-and-ad",
        responses(
            0,
            &[
                (0, cookie(true, false)),
                (0, cookie(false, true)),
                (
                    0,
                    Op::Cookie {
                        raw_receiver: Some(7),
                        wrong_key: false,
                        wrong_ad: false,
                        cookie: [1; 16],
                    },
                ),
            ],
        ),
    );
    add(
        s,
        T,
        "queued-packets-flushed",
        responses(
            0,
            &[
                (0, Op::App(10)),
                (10, Op::App(200)),
                (10, Op::App(0)),
                (10, ok()),
                (10, Op::App(5)),
            ],
        ),
    );
    add(
        s,
        T,
        "retransmit-then-answer-the-first",
        responses(
            0,
            &[
                (6000, Op::App(1)),
                (
                    0,
                    with(Resp {
                        answer: 2,
                        receiver: (1, 0),
                        ..Resp::default()
                    }),
                ),
                (0, ok()),
            ],
        ),
    );
    add(
        s,
        T,
        "retransmit-then-answer-the-first-with-its-index",
        responses(
            0,
            &[
                (6000, Op::App(1)),
                (
                    0,
                    with(Resp {
                        answer: 2,
                        receiver: (0, 0),
                        ..Resp::default()
                    }),
                ),
            ],
        ),
    );
    add(
        s,
        T,
        "under-load-cookie-then-mac2",
        responses(
            2,
            &[
                (
                    0,
                    with(Resp {
                        tamper: Some((1, 2)),
                        ..Resp::default()
                    }),
                ),
                (10, ok()),
                (
                    10,
                    with(Resp {
                        mac2: 1,
                        ..Resp::default()
                    }),
                ),
            ],
        ),
    );
    add(
        s,
        T,
        "gives-up-after-90s",
        responses(0, &(0..8).map(|_| (12_000, Op::App(3))).collect::<Vec<_>>()),
    );
    add(
        s,
        T,
        "rekey-after-data",
        responses(
            0,
            &[
                (0, ok()),
                (10, Op::App(20)),
                (12_000, Op::App(1)),
                (6_000, Op::App(1)),
                (0, ok()),
                (
                    10,
                    with(Resp {
                        receiver: (3, 0),
                        ..Resp::default()
                    }),
                ),
            ],
        ),
    );
    let mut raw = vec![0u8; wire::RESPONSE_MIN_LEN];
    wire::write_handshake_header(&mut raw, wire::TYPE_RESPONSE, CipherSuite::ALL[0].wire_id());
    add(
        s,
        T,
        "raw-response",
        responses(0, &[(0, Op::Raw(raw)), (0, ok())]),
    );
}

// ---------------------------------------------------------------------------------------------
// data_session, decrypt_replay, node_sim (programs)

fn data_session_seeds(s: &mut Seeds) {
    const T: &str = "data_session";
    let seal = |o: &mut Output, off: u32, kind: u8| {
        o.u8(0).u32(off).u8(kind).u8(0);
    };
    let deliver = |o: &mut Output, i: u8| {
        o.u8(1).u8(i);
    };
    let mut o = Output::default();
    for i in 0..5 {
        seal(&mut o, i, 0);
    }
    for i in [0u8, 1, 2, 3, 4, 4, 2] {
        deliver(&mut o, i);
    }
    add(s, T, "in-order-then-duplicates", o.0);
    let mut o = Output::default();
    for (i, off) in [9000u32, 3, 8000, 9001, 808].iter().enumerate() {
        seal(&mut o, *off, (i % 2) as u8);
    }
    for i in [0u8, 1, 2, 3, 4] {
        deliver(&mut o, i);
    }
    add(s, T, "too-old-and-reordered", o.0);
    let mut o = Output::default();
    for (off, kind) in [(1u32, 2u8), (2, 3), (3, 1), (4, 0)] {
        seal(&mut o, off, kind);
    }
    o.u8(0).u32(5).u8(4).u8(24).bytes(&[0x45; 24]);
    for i in 0..5 {
        deliver(&mut o, i);
    }
    add(s, T, "inner-verdicts", o.0);
    let mut o = Output::default();
    for off in [10u32, 11, 12, 13] {
        seal(&mut o, off, 0);
    }
    o.u8(4).u8(0).u8(1); // from another address: roams
    o.u8(4).u8(1).u8(3); // from inside the overlay: refused, window advances
    o.u8(4).u8(2).u8(2); // IPv6
    o.u8(4).u8(0).u8(0); // an old one from home: does not move the endpoint back
    o.u8(4).u8(3).u8(0); // the newest from home
    add(s, T, "roaming", o.0);
    let mut o = Output::default();
    seal(&mut o, 1, 0);
    o.u8(2).u8(0).u16(9).u8(1); // counter byte
    o.u8(2).u8(0).u16(40).u8(1); // ciphertext
    o.u8(2).u8(0).u16(5).u8(1); // receiver index
    o.u8(2).u8(0).u16(0).u8(1); // type
    o.u8(3).u8(0).u16(31); // truncated
    o.u8(3).u8(0).u16(80); // extended
    deliver(&mut o, 0);
    add(s, T, "mutations-then-genuine", o.0);
    let mut o = Output::default();
    o.u8(5).u8(0).u32(100).u8(0);
    o.u8(5).u8(1).u32(0).u8(0);
    o.u8(5).u8(2).u32(0).u8(0);
    o.u8(6).u32(0x1234_5678).u32(0);
    seal(&mut o, 100, 0);
    deliver(&mut o, 0);
    o.u8(7).u8(0).u8(7);
    add(s, T, "forged-and-bursts", o.0);
}

fn decrypt_replay_seeds(s: &mut Seeds) {
    const T: &str = "decrypt_replay";
    add(
        s,
        T,
        "deliver-each-twice",
        [0u8, 0, 0, 0, 0, 1, 0, 1, 0, 2, 0, 63].to_vec(),
    );
    add(
        s,
        T,
        "mutate",
        [1u8, 0, 10, 1, 1, 0, 20, 0x80, 0, 0].to_vec(),
    );
    let mut raw = vec![2u8, 36];
    let mut d = vec![0u8; 36];
    wire::write_header(&mut d, wire::TYPE_DATA);
    raw.extend_from_slice(&d);
    add(s, T, "raw-data-message", raw);
}

fn node_sim_seeds(s: &mut Seeds) {
    const T: &str = "node_sim";
    // config: bit 0 three members, bit 1 skip liveness, bit 2 eager, bit 3 chacha
    let send = |o: &mut Output, a: u8, b: u8| {
        o.u8(0).u8(a).u8(b).u8(16);
    };
    let advance = |o: &mut Output, ms: u16| {
        o.u8(5).u8(0).u16(ms);
    };
    let advance_long = |o: &mut Output, tenths: u16| {
        o.u8(5).u8(1).u16(tenths);
    };
    add(s, T, "two-members-liveness-only", vec![0]);
    add(s, T, "three-members-eager", vec![5]);
    add(s, T, "chacha", vec![9]);
    let mut o = Output::default();
    o.u8(1);
    send(&mut o, 0, 0);
    o.u8(4);
    send(&mut o, 1, 1);
    o.u8(4);
    o.u8(2).u8(0).u8(7).u8(0); // duplicate, replay
    add(s, T, "exchange-duplicate-replay", o.0);
    let mut o = Output::default();
    o.u8(1);
    send(&mut o, 0, 0);
    o.u8(3).u8(0); // lose the initiation
    advance(&mut o, 5400); // retransmission
    o.u8(4);
    o.u8(6).u8(1); // restart member 1
    send(&mut o, 0, 0);
    o.u8(4);
    add(s, T, "loss-retransmit-restart", o.0);
    let mut o = Output::default();
    o.u8(1);
    send(&mut o, 0, 1);
    o.u8(4);
    advance_long(&mut o, 2000); // 200 s: session expiry
    send(&mut o, 0, 1);
    o.u8(4);
    advance_long(&mut o, 6000); // 600 s: key erasure
    send(&mut o, 1, 0);
    o.u8(4);
    add(s, T, "expiry-and-erasure", o.0);
    let mut o = Output::default();
    o.u8(1);
    send(&mut o, 0, 0);
    o.u8(8).u8(0).u16(3).u8(1); // mutate the initiation
    advance(&mut o, 6000);
    o.u8(4);
    send(&mut o, 0, 0);
    o.u8(8).u8(0).u16(20).u8(4); // mutate a data message
    o.u8(9).u8(1).u8(148).bytes(&{
        let mut m = vec![0u8; 148];
        wire::write_handshake_header(&mut m, wire::TYPE_INITIATION, 1);
        m
    });
    add(s, T, "mutations-and-junk", o.0);
    let mut o = Output::default();
    o.u8(3);
    send(&mut o, 0, 0);
    o.u8(4);
    o.u8(10).u8(1).u8(0); // forced rekey
    o.u8(4);
    o.u8(12).u8(2); // stop member 2
    send(&mut o, 0, 1);
    advance(&mut o, 20_000);
    o.u8(12).u8(2); // start it again
    o.u8(4);
    o.u8(11).u8(1).u16(3600); // +1 h wall-clock step
    o.u8(13).u8(0); // roam
    send(&mut o, 0, 0);
    o.u8(4);
    add(s, T, "rekey-stop-clock-step-roam", o.0);
}

// ---------------------------------------------------------------------------------------------
// raw-message targets: handshake_responder, outer_parse

/// Genuine messages between fixture members 1 and 0, checked against a fresh node.
fn genuine_initiation(suite: CipherSuite, credential: &[u8], sender: u32) -> Vec<u8> {
    let f = fixture();
    let kit = f.member_kit(1, suite);
    let msg = kit
        .initiation(
            &f.publics[0],
            sender,
            common::tai64n(f.unix),
            credential,
            None,
            [3; 32],
        )
        .unwrap();
    // It is accepted by the node handshake_responder builds.
    let mut node = f.node(Variant {
        suite,
        low_load_threshold: false,
        closed: false,
    });
    let mut out = vec![0u8; 2048];
    let r = node.decapsulate(f.sources[common::SRC_MEMBER1], &msg, &mut out, f.now);
    assert!(matches!(r, Ok(Decapsulated::Control)), "{r:?}");
    msg
}

fn responder_seeds(s: &mut Seeds) {
    const T: &str = "handshake_responder";
    let f = fixture();
    for suite in CipherSuite::ALL {
        add(
            s,
            T,
            &format!("initiation-{suite}"),
            genuine_initiation(suite, &f.credential[1], 1),
        );
        let named = StandInCredential {
            name: "a-longer-member-name".into(),
            addresses: vec![],
        }
        .encode();
        add(
            s,
            T,
            &format!("initiation-named-{suite}"),
            genuine_initiation(suite, &named, 2),
        );
    }
    let mut junk = vec![0u8; wire::INITIATION_MIN_LEN];
    wire::write_handshake_header(&mut junk, wire::TYPE_INITIATION, 1);
    add(s, T, "zero-initiation", junk);
}

fn outer_parse_seeds(s: &mut Seeds) {
    const T: &str = "outer_parse";
    let f = fixture();
    add(
        s,
        T,
        "initiation",
        genuine_initiation(CipherSuite::ALL[0], &f.credential[1], 5),
    );
    let init = genuine_initiation(CipherSuite::ALL[0], &f.credential[1], 5);
    let (_, resp) = f
        .member_kit(0, CipherSuite::ALL[0])
        .respond(&init, 6, &f.credential[0], None, [4; 32])
        .unwrap();
    add(s, T, "response", resp.clone());
    let mut cookie = vec![0u8; wire::COOKIE_REPLY_LEN];
    wire::write_header(&mut cookie, wire::TYPE_COOKIE_REPLY);
    cookie[4..8].copy_from_slice(&6u32.to_le_bytes());
    let sealed = crypto::seal_cookie(
        &f.cookie_key[1],
        &[5; 24],
        &[6; 16],
        &common::mac1_of(&resp),
    )
    .unwrap();
    cookie[8..32].copy_from_slice(&[5; 24]);
    cookie[32..].copy_from_slice(&sealed);
    add(s, T, "cookie-reply", cookie);
    for (name, bytes) in data_messages() {
        add(s, T, &name, bytes);
    }
    add(
        s,
        T,
        "inner-ipv4-udp",
        ipv4_udp(f.net.overlay[0], f.net.overlay[1], b"hello"),
    );
    add(s, T, "inner-ipv6-tcp", ipv6_tcp(&[], 4, b"hello"));
}

/// Genuine data messages (a keepalive and a packet) of a real session (tag 204).
fn data_messages() -> Vec<(String, Vec<u8>)> {
    let net = TestNetwork::new(2, 204);
    let mut sim = net.sim(5, LinkConfig::default());
    sim.run_for(Duration::from_millis(100));
    sim.capture = Some(Vec::new());
    sim.send_packet(0, &ipv4_udp(net.overlay[0], net.overlay[1], b"seed packet"))
        .unwrap();
    sim.run_for(Duration::from_secs(11)); // the keepalive answering it
    let captured = sim.capture.take().unwrap();
    let data: Vec<&Vec<u8>> = captured
        .iter()
        .map(|d| &d.bytes)
        .filter(|b| b[0] == wire::TYPE_DATA)
        .collect();
    let packet = data
        .iter()
        .find(|b| b.len() > wire::DATA_MIN_LEN)
        .expect("a data packet");
    let keepalive = data
        .iter()
        .find(|b| b.len() == wire::DATA_MIN_LEN)
        .expect("a keepalive");
    vec![
        ("data-packet".into(), packet.to_vec()),
        ("data-keepalive".into(), keepalive.to_vec()),
    ]
}

// ---------------------------------------------------------------------------------------------
// inner packets and TUN super-packets

fn checksum(data: &[u8], init: u32) -> u16 {
    let mut sum = init;
    for c in data.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn tcp_header(seq: u32, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&443u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t
}

fn ipv4_tcp(payload: &[u8], flags: u8) -> Vec<u8> {
    let total = 20 + 20 + payload.len();
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[10, 77, 0, 2]);
    p[16..20].copy_from_slice(&[10, 77, 0, 3]);
    let c = checksum(&p, 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&tcp_header(1000, flags));
    p.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&p[12..20]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    let c = checksum(&p[20..], u32::from(!checksum(&pseudo, 0)));
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

/// IPv6 with the given extension headers (each: next-header byte then 8-byte-multiple body).
fn ipv6_tcp(ext: &[(u8, Vec<u8>)], flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let first = ext.first().map_or(6, |e| e.0);
    for (i, (_, e)) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map_or(6, |n| n.0);
        let mut h = e.clone();
        h[0] = next;
        body.extend_from_slice(&h);
    }
    body.extend_from_slice(&tcp_header(7, flags));
    body.extend_from_slice(payload);
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
    p[6] = first;
    p[7] = 64;
    p[8..24].copy_from_slice(&Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2).octets());
    p[24..40].copy_from_slice(&Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 3).octets());
    p.extend_from_slice(&body);
    p
}

fn ipv4(proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
    let total = 20 + l4.len();
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&[10, 77, 0, 2]);
    p[16..20].copy_from_slice(&[10, 77, 0, 3]);
    let c = checksum(&p, 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(l4);
    p
}

fn inner_packet_seeds(s: &mut Seeds) {
    const T: &str = "inner_packet";
    let a = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
    let b = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 3));
    add(s, T, "ipv4-udp", ipv4_udp(a, b, b"payload"));
    add(s, T, "ipv4-tcp-syn", ipv4_tcp(&[], 0x02));
    add(s, T, "ipv4-tcp-data", ipv4_tcp(b"GET / HTTP/1.1\r\n", 0x18));
    add(
        s,
        T,
        "ipv4-icmp-echo",
        ipv4(1, 0, &[8, 0, 0, 0, 0, 1, 0, 1, 0xaa, 0xbb]),
    );
    add(
        s,
        T,
        "ipv4-first-fragment",
        ipv4(
            17,
            0x2000,
            &[0x1f, 0x90, 0, 53, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
        ),
    );
    add(s, T, "ipv4-later-fragment", ipv4(17, 0x0003, &[9; 16]));
    let mut opts = ipv4(6, 0, &tcp_header(1, 0x10));
    opts[0] = 0x46; // a 4-byte option
    opts.splice(20..20, [1, 1, 1, 0]);
    let len = opts.len() as u16;
    opts[2..4].copy_from_slice(&len.to_be_bytes());
    add(s, T, "ipv4-with-options", opts);
    add(s, T, "ipv6-tcp", ipv6_tcp(&[], 0x02, &[]));
    add(
        s,
        T,
        "ipv6-hop-by-hop-routing-tcp",
        ipv6_tcp(
            &[(0, vec![0; 8]), (43, vec![0, 0, 0, 0, 0, 0, 0, 0])],
            0x10,
            b"x",
        ),
    );
    add(
        s,
        T,
        "ipv6-fragment-header",
        ipv6_tcp(&[(44, vec![0, 0, 0, 1, 0, 0, 0, 9])], 0x10, b"x"),
    );
    let mut icmp6 = ipv6_tcp(&[], 0, &[]);
    icmp6.truncate(40);
    icmp6[6] = 58;
    icmp6.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
    icmp6[4..6].copy_from_slice(&8u16.to_be_bytes());
    add(s, T, "ipv6-icmp-echo", icmp6);
}

fn offload_seeds(s: &mut Seeds) {
    const T: &str = "offload";
    // data[0] % 4: TcpV4, TcpV6, Udp, None; data[1..3]: mss (LE); then the packet.
    let with = |kind: u8, mss: u16, pkt: Vec<u8>| {
        let mut v = vec![kind];
        v.extend_from_slice(&mss.to_le_bytes());
        v.extend_from_slice(&pkt);
        v
    };
    let payload: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
    add(
        s,
        T,
        "tcpv4-super-packet",
        with(0, 1400, ipv4_tcp(&payload, 0x18)),
    );
    add(
        s,
        T,
        "tcpv4-fin-psh-cwr",
        with(0, 1000, ipv4_tcp(&payload[..2500], 0x89)),
    );
    add(
        s,
        T,
        "tcpv4-one-segment",
        with(0, 1460, ipv4_tcp(&payload[..100], 0x10)),
    );
    add(
        s,
        T,
        "tcpv6-super-packet",
        with(1, 1380, ipv6_tcp(&[], 0x18, &payload)),
    );
    let a = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
    let b = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 3));
    add(
        s,
        T,
        "udp-gso",
        with(2, 1200, ipv4_udp(a, b, &payload[..3000])),
    );
    add(
        s,
        T,
        "plain-tcp",
        with(3, 0, ipv4_tcp(&payload[..64], 0x10)),
    );
    add(
        s,
        T,
        "coalesce-small",
        with(0, 8, ipv4_tcp(&payload[..40], 0x10)),
    );
}

// ---------------------------------------------------------------------------------------------
// certificates and configuration files

fn cert_seeds(s: &mut Seeds) {
    const T: &str = "cert_decode";
    let (key, ca) = common::fuzz_ca();
    add(s, T, "ca", ca.to_bytes());
    add(s, T, "ca.pem", ca.to_pem().into_bytes());
    let member =
        |name: &str, addresses: Vec<IpAddr>, routes: Vec<&str>, groups: Vec<&str>, pk: [u8; 32]| {
            MemberCertificate::issue(
                &ca,
                &key,
                &MemberParams {
                    name: name.into(),
                    addresses,
                    routes: routes.into_iter().map(|r| r.parse().unwrap()).collect(),
                    groups: groups.into_iter().map(String::from).collect(),
                    public_key: pk,
                    not_before: 0,
                    not_after: 2_000_000_000,
                },
            )
            .unwrap()
        };
    let pk = privnet_core::crypto::StaticSecret::from_bytes([8; 32]).public_key();
    assert_ne!(pk, common::CERT_PROBE_KEY);
    let minimal = member("m", vec!["10.0.0.1".parse().unwrap()], vec![], vec![], pk);
    let full = member(
        "gateway-1.example",
        vec!["10.1.2.3".parse().unwrap(), "fd00::1:2:3".parse().unwrap()],
        vec!["192.168.1.0/24", "192.168.2.0/24"],
        vec!["web", "db", "ops"],
        pk,
    );
    add(s, T, "member-minimal", minimal.to_bytes());
    add(s, T, "member-full", full.to_bytes());
    add(s, T, "member-full.pem", full.to_pem().into_bytes());
}

fn config_seeds(s: &mut Seeds) {
    const T: &str = "config_parse";
    add(
        s,
        T,
        "member-a.toml",
        include_bytes!("../../../examples/configs/member-a.toml").to_vec(),
    );
    add(
        s,
        T,
        "member-b.toml",
        include_bytes!("../../../examples/configs/member-b.toml").to_vec(),
    );
    let minimal = "[node]\nnetwork = \"demo\"\nprivate_key = \"k\"\ncertificate = \"c\"\nca_certificates = [\"ca\"]\nnetwork_psk = \"psk\"\nlisten = \"[::]:51820\"\n";
    add(s, T, "minimal.toml", minimal.as_bytes().to_vec());
    let problems = "[node]\nnetwork = 7\nlistne = \"0.0.0.0:1\"\n[tun]\nmtu = 99999\n[[peer]]\npublic_key = \"not base64\"\nendpoint = \"nowhere\"\npersistent_keepalive = -1\n";
    add(s, T, "problems.toml", problems.as_bytes().to_vec());
    let fp = "ab".repeat(32);
    add(
        s,
        T,
        "revocation-list",
        format!("# revoked\n{fp}\n\n{fp}  # again\n").into_bytes(),
    );
    add(s, T, "endpoint-v6", b"[2001:db8::1]:51820".to_vec());
    add(s, T, "endpoint-name", b"member-b.example:51820".to_vec());
}

fn list_seeds(s: &mut Seeds) {
    const T: &str = "list_parse";
    add(
        s,
        T,
        "firehol.netset",
        b"#\n# firehol_level1\n# Maintainer: FireHOL\n#\n0.0.0.0/8\n1.10.16.0/20\n5.6.7.8\n223.254.0.0/16\n"
            .to_vec(),
    );
    add(
        s,
        T,
        "spamhaus-drop.txt",
        b"; Spamhaus DROP List 2026/12/01 - (c) 2026 The Spamhaus Project\r\n; Expires: Wed, 02 Dec 2026\r\n1.10.16.0/20 ; SBL256894\r\n2.56.192.0/22 ; SBL459831\r\n"
            .to_vec(),
    );
    add(
        s,
        T,
        "spamhaus-dropv6.txt",
        b"; Spamhaus DROPv6\n2001:db8::/32 ; SBL1\n2a0d:8480::/32 ; SBL2\n::ffff:192.0.2.1\n"
            .to_vec(),
    );
    add(
        s,
        T,
        "bad-length",
        b"# ok\n10.0.0.0/8\n10.0.0.0/33\n".to_vec(),
    );
    add(s, T, "bad-words", b"10.0.0.0/8 10.1.0.0/16\n".to_vec());
    add(
        s,
        T,
        "bom-and-edges",
        b"\xEF\xBB\xBF0.0.0.0/0\n::/0\n255.255.255.255/32\n".to_vec(),
    );
}

// ---------------------------------------------------------------------------------------------

fn all() -> Seeds {
    let mut s = Seeds::new();
    initiation_seeds(&mut s);
    response_seeds(&mut s);
    data_session_seeds(&mut s);
    decrypt_replay_seeds(&mut s);
    node_sim_seeds(&mut s);
    responder_seeds(&mut s);
    outer_parse_seeds(&mut s);
    inner_packet_seeds(&mut s);
    offload_seeds(&mut s);
    cert_seeds(&mut s);
    config_seeds(&mut s);
    list_seeds(&mut s);
    directory_seeds(&mut s);
    dns_seeds(&mut s);
    s
}

// ---------------------------------------------------------------------------------------------
// dns_query

fn dns_seeds(s: &mut Seeds) {
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    const T: &str = "dns_query";
    let q = |name: &str, t: RecordType, edns: bool| {
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        if edns {
            m.set_edns(Edns::new());
        }
        m.to_vec().unwrap()
    };
    add(s, T, "a", q("db.neta.", RecordType::A, false));
    add(s, T, "aaaa-edns", q("DB.NETA.", RecordType::AAAA, true));
    add(s, T, "two-labels", q("web.eu.neta.", RecordType::A, false));
    add(s, T, "nxdomain", q("nope.neta.", RecordType::A, false));
    add(s, T, "nodata-mx", q("db.neta.", RecordType::MX, false));
    add(s, T, "apex", q("neta.", RecordType::SOA, true));
    add(s, T, "refused", q("example.com.", RecordType::A, false));
    let mut status = Message::from_vec(&q("db.neta.", RecordType::A, false)).unwrap();
    status.metadata.op_code = OpCode::Status;
    add(s, T, "notimp", status.to_vec().unwrap());
}

// ---------------------------------------------------------------------------------------------
// directory_decode

fn directory_seeds(s: &mut Seeds) {
    use privnet_core::directory::MemberRecord;
    use privnet_core::identity::{Bundle, BundleKind, RevocationList};
    const T: &str = "directory_decode";
    let (key, ca) = common::fuzz_ca();
    let pk = privnet_core::crypto::StaticSecret::from_bytes([8; 32]).public_key();
    let cert = MemberCertificate::issue(
        &ca,
        &key,
        &MemberParams {
            name: "m".into(),
            addresses: vec!["10.0.0.1".parse().unwrap()],
            routes: vec![],
            groups: vec![],
            public_key: pk,
            not_before: 0,
            not_after: 2_000_000_000,
        },
    )
    .unwrap();
    let mut record = MemberRecord::new(&cert, vec!["192.0.2.1:51820".parse().unwrap()]);
    add(s, T, "record", record.to_bytes().unwrap());
    record.capabilities = vec!["tun".into(), "gateway".into()];
    record.persistent_keepalive = Some(25);
    record
        .endpoints
        .push("[2001:db8::1]:51820".parse().unwrap());
    add(s, T, "record-full", record.to_bytes().unwrap());
    let policy = b"name = \"p\"\ndefault = \"allow\"\n".to_vec();
    let b = Bundle::sign_with_ca(&ca, &key, BundleKind::Policy, 1, 1_000_000, policy).unwrap();
    add(s, T, "policy-bundle", b.to_bytes());
    let mut list = RevocationList::new();
    list.insert(cert.fingerprint());
    let b = Bundle::sign_with_ca(
        &ca,
        &key,
        BundleKind::Revocations,
        7,
        1_000_000,
        list.to_text().into_bytes(),
    )
    .unwrap();
    add(s, T, "revocation-bundle", b.to_bytes());
}

#[test]
fn fuzz_seeds_are_current() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    let seeds = all();
    let write = std::env::var_os("PRIVNET_WRITE_SEEDS").is_some();
    let mut stale = Vec::new();
    for ((target, name), bytes) in &seeds {
        let path = root.join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        } else if std::fs::read(&path).ok().as_ref() != Some(bytes) {
            stale.push(format!("{target}/{name}"));
        }
    }
    assert!(
        stale.is_empty(),
        "fuzz/seeds is not what this generator makes ({} files, e.g. {:?}); regenerate with \
         PRIVNET_WRITE_SEEDS=1 cargo test -p privnet-core --test fuzz_corpus and commit fuzz/seeds",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
}

#[test]
fn the_generator_makes_deterministic_seeds() {
    // Everything above depends only on fixed keys, seeds and times: two runs agree.
    assert!(all() == all());
}
