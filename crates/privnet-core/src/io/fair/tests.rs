use proptest::prelude::*;

use super::*;

const MTU: usize = 1_500;

/// One batch: `arrivals` in order, then the batch's end (`full`). Returns admitted bytes per peer.
fn batch(g: &mut FairGate<u32>, arrivals: &[(u32, usize)], full: bool) -> HashMap<u32, u64> {
    let mut got = HashMap::new();
    for &(p, len) in arrivals {
        if g.admit(p, len, false) {
            *got.entry(p).or_insert(0) += len as u64;
        }
    }
    g.end_batch(full);
    got
}

/// One batch of (peer, length, high-priority) arrivals. Returns per peer the admitted bytes and
/// the number of datagrams shorter than `MTU` admitted.
fn batch_classed(
    g: &mut FairGate<u32>,
    arrivals: &[(u32, usize, bool)],
    full: bool,
) -> HashMap<u32, (u64, u64)> {
    let mut got: HashMap<u32, (u64, u64)> = HashMap::new();
    for &(p, len, high) in arrivals {
        if g.admit(p, len, high) {
            let e = got.entry(p).or_default();
            e.0 += len as u64;
            e.1 += u64::from(len < MTU);
        }
    }
    g.end_batch(full);
    got
}

/// Peer 1 floods, peer 2 is a bulk sender too and has 40 health checks of 100 bytes at the end
/// of each batch, after its share is spent; `marked`: they are high-priority.
fn health_checks_behind_bulk(marked: bool) -> Vec<(u32, usize, bool)> {
    let mut v: Vec<(u32, usize, bool)> = Vec::new();
    for _ in 0..3_000 {
        v.push((1, MTU, false));
        v.push((2, MTU, false));
    }
    v.extend((0..40).map(|_| (2, 100, marked)));
    v
}

#[test]
fn high_priority_packets_pass_a_policed_batch_beyond_their_peers_share() {
    for marked in [true, false] {
        let mut g: FairGate<u32> = FairGate::new(true);
        let arrivals = health_checks_behind_bulk(marked);
        batch_classed(&mut g, &arrivals, true);
        assert!(g.policing());
        let mut checks_lost = 0;
        for _ in 0..20 {
            let got = batch_classed(&mut g, &arrivals, true);
            assert!(got[&2].0 < 3_000 * MTU as u64, "peer 2's bulk is cut");
            // Its health checks come last, after its deficit is spent.
            checks_lost += 40 - got[&2].1;
        }
        if marked {
            assert_eq!(checks_lost, 0, "every marked check passes");
            // Some batches leave peer 2 deficit for its checks; the others needed the lane.
            assert!((1..=20 * 40).contains(&g.priority_admitted()));
        } else {
            assert!(
                checks_lost > 0,
                "unmarked, the checks share the bulk's fate"
            );
            assert_eq!(g.priority_admitted(), 0);
        }
    }
}

#[test]
fn marking_everything_high_buys_at_most_the_priority_share() {
    let mut honest: FairGate<u32> = FairGate::new(true);
    let mut liar: FairGate<u32> = FairGate::new(true);
    let plain: Vec<(u32, usize, bool)> = (0..3_000)
        .flat_map(|_| [(1, MTU, false), (2, MTU, false)])
        .collect();
    let lying: Vec<(u32, usize, bool)> = plain.iter().map(|&(p, l, _)| (p, l, p == 2)).collect();
    for _ in 0..10 {
        let a = batch_classed(&mut honest, &plain, true);
        let b = batch_classed(&mut liar, &lying, true);
        let extra = b[&2].0.saturating_sub(a[&2].0);
        assert!(
            extra <= PRIORITY_SHARE,
            "the liar got {extra} bytes more than an honest peer"
        );
        assert!(b[&1].0 > 0, "the other peer still gets its share");
    }
}

/// A flood of `flood` datagrams from peer 1 with `light` datagrams of peer 2 spread among them.
fn flood_batch(flood: usize, light: usize) -> Vec<(u32, usize)> {
    let mut v: Vec<(u32, usize)> = (0..flood).map(|_| (1, MTU)).collect();
    let every = (flood / light.max(1)).max(1);
    for i in 0..light {
        v.insert((i * every + i).min(v.len()), (2, 100));
    }
    v
}

#[test]
fn water_level_is_max_min_fair() {
    assert_eq!(water_level(&mut [10, 10], 100), u64::MAX, "demands fit");
    assert_eq!(water_level(&mut [10, 1000], 100), 90);
    assert_eq!(water_level(&mut [1000, 1000, 1000], 300), 100);
    assert_eq!(water_level(&mut [5, 1000, 20, 1000], 225), 100);
    assert_eq!(water_level(&mut [], 100), u64::MAX);
}

#[test]
fn off_or_calm_admits_everything() {
    let mut off: FairGate<u32> = FairGate::new(false);
    for _ in 0..10 {
        let got = batch(&mut off, &flood_batch(2_000, 10), true);
        assert_eq!(got[&1], 2_000 * MTU as u64);
    }
    assert_eq!(off.total_drops(), FairDrops::default());
    let mut calm: FairGate<u32> = FairGate::new(true);
    for _ in 0..10 {
        let got = batch(&mut calm, &flood_batch(2_000, 10), false);
        assert_eq!(got[&1], 2_000 * MTU as u64);
        assert!(!calm.policing());
    }
    assert_eq!(calm.policed_batches(), 0);
}

#[test]
fn a_lone_sender_is_never_policed() {
    let mut g: FairGate<u32> = FairGate::new(true);
    for _ in 0..10 {
        let got = batch(&mut g, &[(1, MTU); 3_000], true);
        assert_eq!(got[&1], 3_000 * MTU as u64);
    }
    assert_eq!(g.policed_batches(), 0);
}

#[test]
fn the_flood_loses_its_excess_and_the_light_peer_nothing() {
    let mut g: FairGate<u32> = FairGate::new(true);
    let arrivals = flood_batch(5_000, 20);
    batch(&mut g, &arrivals, true); // detects the overload
    assert!(g.policing());
    let first_budget = g.budget();
    assert!(first_budget <= (5_000 * MTU as u64 + 2_000) / 2);
    for _ in 0..20 {
        let got = batch(&mut g, &arrivals, true);
        assert_eq!(got[&2], 20 * 100, "the light peer keeps all of its traffic");
        assert!(got[&1] < 5_000 * MTU as u64, "the flood is cut");
    }
    assert!(
        g.budget() < first_budget,
        "the budget shrank while batches stayed full"
    );
    let d = g.drops(1);
    assert!(d.packets > 0 && d.bytes == d.packets * MTU as u64);
    assert_eq!(g.drops(2), FairDrops::default());
    // The socket runs dry: policing stays while it still drops, with a growing budget, and ends
    // with the first batch that needed no drop.
    let b = g.budget();
    batch(&mut g, &arrivals, false);
    assert!(g.policing() && g.budget() > b, "additive increase");
    let mut calm_after = None;
    for i in 0..200 {
        batch(&mut g, &arrivals, false);
        if !g.policing() {
            calm_after = Some(i);
            break;
        }
    }
    assert!(
        calm_after.is_some(),
        "policing ends once the budget covers the demand"
    );
    let got = batch(&mut g, &arrivals, false);
    assert_eq!(got[&1], 5_000 * MTU as u64, "calm again: everything passes");
}

#[test]
fn the_table_is_bounded_and_idle_slots_leave() {
    let mut g: FairGate<u32> = FairGate::new(true);
    let many: Vec<(u32, usize)> = (0..(MAX_SLOTS as u32 + 500)).map(|p| (p, 100)).collect();
    batch(&mut g, &many, true);
    assert_eq!(g.slots(), MAX_SLOTS + 1, "the rest share the overflow slot");
    for _ in 0..IDLE_BATCHES {
        batch(&mut g, &[(1, 100), (2, 100)], false);
    }
    assert_eq!(g.slots(), 2);
}

#[test]
fn drop_counters_outlive_the_slot_and_a_removed_peer_is_forgotten() {
    let mut g: FairGate<u32> = FairGate::new(true);
    let arrivals = flood_batch(5_000, 20);
    for _ in 0..5 {
        batch(&mut g, &arrivals, true);
    }
    let d = g.drops(1);
    assert!(d.packets > 0);
    for _ in 0..IDLE_BATCHES {
        batch(&mut g, &[(2, 100)], false);
    }
    assert_eq!(g.slots(), 1, "the flood's slot is freed");
    assert_eq!(g.drops(1), d, "its counters are not");
    assert_eq!(g.all_drops().collect::<Vec<_>>(), vec![(Some(1), d)]);
    g.forget(1);
    assert_eq!(g.drops(1), FairDrops::default());
    assert_eq!(g.total_drops(), d, "the total keeps them");
}

/// Arrivals of one batch: per peer a number of datagrams and their size, interleaved round-robin
/// (the kernel's FIFO of several senders).
fn interleave(peers: &[(u16, u16)]) -> Vec<(u32, usize)> {
    let mut out = Vec::new();
    let most = peers.iter().map(|p| p.0).max().unwrap_or(0);
    for i in 0..most {
        for (p, &(n, size)) in peers.iter().enumerate() {
            if i < n {
                out.push((p as u32, usize::from(size)));
            }
        }
    }
    out
}

proptest! {
    /// No starvation, whatever the others send: in every batch each peer gets at least
    /// min(its demand, min_share - one datagram) through.
    #[test]
    fn no_peer_starves(
        batches in prop::collection::vec(
            (prop::collection::vec((0u16..400, 64u16..1500), 1..6), any::<bool>()),
            1..30,
        ),
    ) {
        let mut g: FairGate<u32> = FairGate::with_min_share(true, 16 * 1024);
        for (peers, full) in batches {
            let arrivals = interleave(&peers);
            let got = batch(&mut g, &arrivals, full);
            for (p, &(n, size)) in peers.iter().enumerate() {
                let demand = u64::from(n) * u64::from(size);
                let floor = demand.min(16 * 1024 - MTU as u64);
                let admitted = got.get(&(p as u32)).copied().unwrap_or(0);
                prop_assert!(admitted >= floor, "peer {} got {} of {}", p, admitted, demand);
            }
            prop_assert!(g.slots() <= MAX_SLOTS + 1);
        }
    }

    /// Byte shares within the quantum bound: in a policed batch, two peers that are both over the
    /// level get the same bytes within one datagram, and no peer gets more than the level.
    #[test]
    fn backlogged_peers_share_within_one_datagram(
        peers in prop::collection::vec((300u16..1000, 64u16..1500), 2..6),
        rounds in 2usize..8,
    ) {
        let mut g: FairGate<u32> = FairGate::with_min_share(true, 16 * 1024);
        let arrivals = interleave(&peers);
        batch(&mut g, &arrivals, true);
        for _ in 0..rounds {
            prop_assert!(g.policing());
            let quantum = g.level().max(16 * 1024);
            let got = batch(&mut g, &arrivals, true);
            let mut capped = Vec::new();
            for (p, &(n, size)) in peers.iter().enumerate() {
                let demand = u64::from(n) * u64::from(size);
                let admitted = got.get(&(p as u32)).copied().unwrap_or(0);
                prop_assert!(admitted <= quantum.min(demand));
                if demand > quantum {
                    prop_assert!(admitted + u64::from(size) > quantum);
                    capped.push(admitted);
                }
            }
            if let (Some(lo), Some(hi)) = (capped.iter().min(), capped.iter().max()) {
                prop_assert!(hi - lo < MTU as u64);
            }
        }
    }

    /// Against the naive model: with the gate off, or in batches that run dry, the gate admits
    /// exactly what arrived.
    #[test]
    fn work_conserving_when_not_overloaded(
        peers in prop::collection::vec((0u16..500, 64u16..1500), 1..6),
        on in any::<bool>(),
    ) {
        let mut g: FairGate<u32> = FairGate::new(on);
        let arrivals = interleave(&peers);
        for _ in 0..3 {
            let got = batch(&mut g, &arrivals, !on);
            for (p, &(n, size)) in peers.iter().enumerate() {
                let demand = u64::from(n) * u64::from(size);
                prop_assert_eq!(got.get(&(p as u32)).copied().unwrap_or(0), demand);
            }
        }
    }
}
