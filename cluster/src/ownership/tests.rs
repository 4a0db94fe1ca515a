use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;

fn node(i: u16) -> NodeId {
    NodeId::new(
        SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7000)),
        1,
    )
}

fn nodes(ids: &BTreeSet<u16>) -> Vec<NodeId> {
    ids.iter().map(|i| node(*i)).collect()
}

fn holders(p: &Placement) -> BTreeSet<SocketAddr> {
    std::iter::once(p.owner.addr)
        .chain(p.replicas.iter().map(|m| m.addr))
        .collect()
}

fn members() -> impl Strategy<Value = BTreeSet<u16>> {
    proptest::collection::btree_set(0u16..64, 1..16)
}

proptest! {
    #[test]
    fn order_of_members_does_not_matter(session in any::<Vec<u8>>(), ids in members(), r in 1usize..5, seed in any::<u64>()) {
        let list = nodes(&ids);
        let mut shuffled = list.clone();
        let k = (seed as usize) % shuffled.len();
        shuffled.rotate_left(k);
        shuffled.reverse();
        prop_assert_eq!(placement(&session, &list, r), placement(&session, &shuffled, r));
    }

    #[test]
    fn owner_is_never_a_replica_and_r_is_capped(session in any::<Vec<u8>>(), ids in members(), r in 0usize..20) {
        let list = nodes(&ids);
        let p = placement(&session, &list, r).expect("non-empty");
        prop_assert!(!p.replicas.contains(&p.owner));
        prop_assert_eq!(holders(&p).len(), 1 + p.replicas.len());
        prop_assert_eq!(1 + p.replicas.len(), r.clamp(1, list.len()));
        let owner = list[0].addr;
        let reps = replicas(&session, owner, &list, r);
        prop_assert!(reps.iter().all(|m| m.addr != owner));
        prop_assert_eq!(reps.len(), r.saturating_sub(1).min(list.len() - 1));
    }

    #[test]
    fn removing_a_non_holder_moves_nothing(session in any::<Vec<u8>>(), ids in members(), r in 1usize..4, victim in 0u16..64) {
        let before = placement(&session, &nodes(&ids), r).expect("non-empty");
        let mut rest = ids.clone();
        if holders(&before).contains(&node(victim).addr) || !rest.remove(&victim) || rest.is_empty() {
            return Ok(());
        }
        prop_assert_eq!(placement(&session, &nodes(&rest), r), Some(before));
    }

    #[test]
    fn adding_a_member_moves_at_most_one_holder(session in any::<Vec<u8>>(), ids in members(), r in 1usize..4, newcomer in 0u16..64) {
        let before = holders(&placement(&session, &nodes(&ids), r).expect("non-empty"));
        let mut more = ids.clone();
        if !more.insert(newcomer) {
            return Ok(());
        }
        let after = holders(&placement(&session, &nodes(&more), r).expect("non-empty"));
        let gained: Vec<_> = after.difference(&before).collect();
        prop_assert!(gained.is_empty() || gained == vec![&node(newcomer).addr]);
        prop_assert!(before.difference(&after).count() <= 1);
    }

    #[test]
    fn successor_is_the_first_live_replica(session in any::<Vec<u8>>(), ids in members()) {
        let list = nodes(&ids);
        let owner = list[0].addr;
        let first = replicas(&session, owner, &list, 2).into_iter().next();
        let survivors: Vec<NodeId> = list.iter().copied().filter(|m| m.addr != owner).collect();
        prop_assert_eq!(successor(&session, owner, &survivors), first);
    }
}

#[test]
fn load_spreads_evenly_over_ten_members() {
    let list: Vec<NodeId> = (0..10).map(node).collect();
    let mut count: HashMap<SocketAddr, u32> = HashMap::new();
    let sessions = 100_000u32;
    for s in 0..sessions {
        let p = placement(format!("session-{s}").as_bytes(), &list, 2).expect("placed");
        *count.entry(p.owner.addr).or_default() += 1;
    }
    let (min, max) = (count.values().min().copied(), count.values().max().copied());
    println!("owners of 100k sessions over 10 members: min {min:?} max {max:?}");
    for c in count.values() {
        assert!((9_000..=11_000).contains(c), "{count:?}");
    }
}

#[test]
fn weights_are_stable_across_builds() {
    // Pinned: every node of every version must compute the same weights.
    let a = weight(b"abc", SocketAddr::from(([10, 0, 0, 1], 7000)));
    assert_eq!(a, 0xa81d_28f3_fd21_e2f9);
    assert_ne!(a, weight(b"abd", SocketAddr::from(([10, 0, 0, 1], 7000))));
    println!("weight(abc, 10.0.0.1:7000) = {a:#018x}");
}
