//! Real QUIC endpoints on 127.0.0.1: frames between three nodes, mutual TLS
//! refusal, and a membership run over real UDP. Every wait is bounded; the
//! wall-clock figures are printed, not asserted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mcp_cluster::frame::Message;
use mcp_cluster::membership::{self, MemberState, Membership, NodeId, NodeMeta};
use mcp_cluster::transport::Incoming;
use mcp_cluster::transport::{
    Config, DriverOptions, GossipKey, GossipLink, LocalCa, PeerTls, Receivers, Seeds, Transport,
    bind_with_gossip, spawn_membership,
};
use tokio::sync::mpsc;
use tokio::time::timeout;

fn config() -> Config {
    Config {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    }
}

/// Logs to the test output when `RUST_LOG` is set (shown for failed tests).
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Every link's figures, printed when a receiver gives up.
fn dump(transports: &[Transport]) {
    for (i, t) in transports.iter().enumerate() {
        for (j, u) in transports.iter().enumerate() {
            if i != j {
                println!("node {i} -> {j}: {:?}", t.peer_stats(u.local_addr()));
            }
        }
    }
}

fn bind(tls: &PeerTls) -> (Transport, Receivers) {
    Transport::bind(config(), tls).expect("binds")
}

/// How long a receiver waits for the next message before the test fails: a
/// bound against hanging, not a measurement (the machine may be loaded).
const PATIENCE: Duration = Duration::from_secs(60);

/// Sends `m` to `to`, waiting while the peer's queue is full (order kept).
async fn send_in_order(t: &Transport, to: SocketAddr, mut m: Message) {
    loop {
        match t.send(to, m) {
            Ok(()) => return,
            Err(mcp_cluster::frame::Refused::Full(back)) => {
                m = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
}

/// Nothing beyond the expected messages arrives (a duplicate would).
async fn assert_nothing_more(rx: &mut mpsc::Receiver<Incoming>, who: &str) {
    if let Ok(extra) = timeout(Duration::from_millis(200), rx.recv()).await {
        panic!("{who}: unexpected extra message {extra:?}");
    }
}

fn json(i: u64) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{i},"result":{{"content":[{{"type":"text","text":"reply number {i} from the tool"}}]}}}}"#)
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_endpoints_exchange_frames_in_order() {
    logs();
    let ca = LocalCa::generate().expect("ca");
    let (transports, mut rx): (Vec<Transport>, Vec<Receivers>) = (0..3)
        .map(|_| bind(&ca.issue(&["mcp-peer"]).expect("cert")))
        .unzip();
    let addrs: Vec<SocketAddr> = transports.iter().map(Transport::local_addr).collect();
    const PER_PEER: u64 = 5_000;
    let started = Instant::now();
    for (i, t) in transports.iter().enumerate() {
        for (j, to) in addrs.iter().enumerate() {
            if i == j {
                continue;
            }
            for n in 0..PER_PEER {
                // Backpressure: the queue refuses when full; wait and retry in order.
                send_in_order(t, *to, Message::new(7, json(n))).await;
            }
        }
    }
    for (i, r) in rx.iter_mut().enumerate() {
        let mut next: HashMap<SocketAddr, u64> = HashMap::new();
        let mut got = 0;
        while got < 2 * PER_PEER {
            let Ok(inc) = timeout(PATIENCE, r.messages.recv()).await else {
                dump(&transports);
                panic!(
                    "node {i}: {got} of {} messages ({next:?} by sender), then none",
                    2 * PER_PEER
                );
            };
            let inc = inc.expect("open");
            let n = next.entry(inc.from).or_default();
            assert!(
                *n < PER_PEER,
                "node {i} from {}: no message past the last",
                inc.from
            );
            assert_eq!(
                inc.message.body,
                json(*n),
                "node {i} from {}: every message once, in order",
                inc.from
            );
            *n += 1;
            got += 1;
        }
    }
    for (i, r) in rx.iter_mut().enumerate() {
        assert_nothing_more(&mut r.messages, &format!("node {i}")).await;
    }
    let took = started.elapsed();
    for (i, t) in transports.iter().enumerate() {
        for (j, a) in addrs.iter().enumerate() {
            if i != j {
                let s = t.peer_stats(*a).expect("used");
                println!(
                    "node {i} -> {j}: {} messages in {} frames ({:.1} msg/frame), {:.2}x zstd, rtt {:?}",
                    s.frames.messages,
                    s.frames.frames,
                    s.frames.messages_per_frame(),
                    s.frames.ratio(),
                    s.rtt
                );
            }
        }
    }
    println!("3 nodes x 2 peers x {PER_PEER} messages delivered in order in {took:?}");
    for t in &transports {
        t.close();
    }
}

/// Both ends of a pair start sending at the same instant, so both dial at
/// once (and, in half the rounds, both also call `connect` at once): two
/// connections come up and one is closed. Every message must still arrive
/// exactly once and in order, both ways, whichever connection survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dial_loses_and_reorders_nothing() {
    logs();
    const ROUNDS: usize = 24;
    const PER_SIDE: u64 = 300;
    let ca = LocalCa::generate().expect("ca");
    for round in 0..ROUNDS {
        let (a, mut a_rx) = bind(&ca.issue(&["mcp-peer"]).expect("cert"));
        let (b, mut b_rx) = bind(&ca.issue(&["mcp-peer"]).expect("cert"));
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let side =
            |from: Transport, to: SocketAddr, start: std::sync::Arc<tokio::sync::Barrier>| {
                tokio::spawn(async move {
                    start.wait().await;
                    if round % 2 == 1 {
                        // Errors are fine here (the other side's dial may win);
                        // what matters is that the messages below all arrive.
                        let _ = from.connect(to).await;
                    }
                    for n in 0..PER_SIDE {
                        send_in_order(&from, to, Message::new(3, json(n))).await;
                        if n % 50 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            };
        let sa = side(a.clone(), b.local_addr(), start.clone());
        let sb = side(b.clone(), a.local_addr(), start);
        sa.await.expect("a sends");
        sb.await.expect("b sends");
        for (who, rx, from) in [
            ("a", &mut a_rx, b.local_addr()),
            ("b", &mut b_rx, a.local_addr()),
        ] {
            for n in 0..PER_SIDE {
                let inc = timeout(PATIENCE, rx.messages.recv())
                    .await
                    .unwrap_or_else(|_| {
                        panic!("round {round}: {who} got {n} of {PER_SIDE} messages, then none")
                    })
                    .expect("open");
                assert_eq!(inc.from, from, "round {round}: {who}: sender");
                assert_eq!(
                    String::from_utf8_lossy(&inc.message.body),
                    String::from_utf8_lossy(&json(n)),
                    "round {round}: {who}: message {n} arrives once, in order"
                );
            }
            assert_nothing_more(&mut rx.messages, &format!("round {round}: {who}")).await;
        }
        a.close();
        b.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_bind_needs_advertise() {
    let ca = LocalCa::generate().expect("ca");
    let tls = ca.issue(&["mcp-peer"]).expect("cert");
    let wildcard = Config {
        bind: SocketAddr::from(([0, 0, 0, 0], 0)),
        ..Config::default()
    };
    let err = Transport::bind(wildcard.clone(), &tls).expect_err("no address to compare");
    println!("refused: {err}");
    let advertised = Config {
        advertise: Some(SocketAddr::from(([127, 0, 0, 1], 7946))),
        ..wildcard
    };
    let (t, _rx) = Transport::bind(advertised, &tls).expect("binds with advertise");
    t.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_from_another_ca_is_refused() {
    let ca = LocalCa::generate().expect("ca");
    let stranger_ca = LocalCa::generate().expect("other ca");
    let (member, mut member_rx) = bind(&ca.issue(&["mcp-peer"]).expect("cert"));
    let (stranger, _rx) = bind(&stranger_ca.issue(&["mcp-peer"]).expect("cert"));
    let err = stranger
        .connect(member.local_addr())
        .await
        .expect_err("refused");
    println!("stranger refused: {err}");
    let _ = stranger.send(member.local_addr(), Message::new(1, "hello"));
    let got = timeout(Duration::from_millis(500), member_rx.messages.recv()).await;
    assert!(got.is_err(), "nothing delivered from a stranger");
    member.close();
    stranger.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_over_quic_datagrams_joins_and_detects_a_crash() {
    membership_joins_and_detects_a_crash(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_over_its_own_udp_socket_joins_and_detects_a_crash() {
    membership_joins_and_detects_a_crash(true).await;
}

/// Five nodes join (half of them finding the seed by name), then one crashes; gossip on QUIC
/// datagrams or on each node's sealed UDP socket (one key for all, as from a shared Secret).
async fn membership_joins_and_detects_a_crash(udp: bool) {
    let how = if udp {
        "own UDP sockets"
    } else {
        "QUIC datagrams"
    };
    let key = GossipKey::from_secret(b"test cluster secret");
    let ca = LocalCa::generate().expect("ca");
    let mcfg = membership::Config {
        max_packet_size: 1100,
        ..membership::Config::default()
    };
    let mut nodes = Vec::new();
    let mut seed_addr: Option<SocketAddr> = None;
    let started = Instant::now();
    for i in 0..5u64 {
        let tls = ca.issue(&["mcp-peer"]).expect("cert");
        let (t, rx, gossip) = if udp {
            let (t, rx, g) = bind_with_gossip(config(), &tls, key.clone()).expect("binds");
            (t, rx, Some(g))
        } else {
            let (t, rx) = bind(&tls);
            (t, rx, None)
        };
        let link = match gossip {
            Some(g) => GossipLink::udp(g),
            None => GossipLink::quic(t.clone(), rx.gossip),
        };
        let id = NodeId::new(t.local_addr(), 1);
        let meta = NodeMeta {
            name: format!("node-{i}"),
            connections: i,
            sessions: 2 * i,
            draining: false,
            address: String::new(),
        };
        let m = Membership::new(id, meta, mcfg.clone(), i, Instant::now()).expect("membership");
        // Half the nodes find the seed by name (resolved like a headless Service).
        let seeds = match seed_addr {
            Some(a) if i % 2 == 0 => Seeds::new([format!("localhost:{}", a.port())]),
            Some(a) => Seeds::addrs([a]),
            None => Seeds::default(),
        };
        let h = spawn_membership(m, link, seeds, DriverOptions::default());
        seed_addr.get_or_insert(t.local_addr());
        nodes.push((t, h));
    }
    let all_alive = |n: usize, nodes: &[(Transport, mcp_cluster::transport::MembershipHandle)]| {
        nodes.iter().take(n).all(|(_, h)| {
            let v = h.view.borrow();
            v.iter()
                .filter(|r| r.state == MemberState::Alive && r.meta.is_some())
                .count()
                == n
        })
    };
    timeout(Duration::from_secs(10), async {
        while !all_alive(5, &nodes) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("5 nodes converge within 10 s");
    println!(
        "5 nodes over {how}: all see all alive with metadata after {:?}",
        started.elapsed()
    );

    let (victim_t, victim_h) = nodes.pop().expect("victim");
    let victim = victim_t.local_addr();
    victim_h.abort();
    victim_t.close();
    let killed = Instant::now();
    timeout(Duration::from_secs(10), async {
        loop {
            let down = nodes.iter().all(|(_, h)| {
                !h.view
                    .borrow()
                    .iter()
                    .any(|r| r.id.addr == victim && r.state.is_live())
            });
            if down {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("crash detected within 10 s");
    println!(
        "{how}: crash of one node seen as down by all 4 survivors after {:?} (wall clock, 2 busy cores)",
        killed.elapsed()
    );
    for (t, h) in &nodes {
        h.abort();
        t.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_sealed_with_another_key_is_refused() {
    let ca = LocalCa::generate().expect("ca");
    let mut nodes = Vec::new();
    let mut seed: Option<SocketAddr> = None;
    for (i, secret) in [&b"ours"[..], b"ours", b"theirs"].into_iter().enumerate() {
        let tls = ca.issue(&["mcp-peer"]).expect("cert");
        let (t, _rx, g) =
            bind_with_gossip(config(), &tls, GossipKey::from_secret(secret)).expect("binds");
        let m = Membership::new(
            NodeId::new(t.local_addr(), 1),
            NodeMeta {
                name: format!("node-{i}"),
                ..NodeMeta::default()
            },
            membership::Config::default(),
            i as u64,
            Instant::now(),
        )
        .expect("membership");
        let seeds = seed.map(|a| Seeds::addrs([a])).unwrap_or_default();
        seed.get_or_insert(t.local_addr());
        let h = spawn_membership(m, GossipLink::udp(g), seeds, DriverOptions::default());
        nodes.push((t, h));
    }
    let sees = |i: usize, j: usize| {
        let addr = nodes[j].0.local_addr();
        nodes[i].1.view.borrow().iter().any(|r| r.id.addr == addr)
    };
    timeout(Duration::from_secs(10), async {
        while !(sees(0, 1) && sees(1, 0)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the two nodes with the same key meet");
    // The stranger announces itself every second; give it three tries.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !sees(0, 2) && !sees(1, 2),
        "a node with another key was let in"
    );
    assert!(
        !sees(2, 0) && !sees(2, 1),
        "the stranger accepted our packets"
    );
    for (t, h) in &nodes {
        h.abort();
        t.close();
    }
}
