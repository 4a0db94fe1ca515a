//! Real QUIC endpoints on 127.0.0.1: frames between three nodes, mutual TLS
//! refusal, and a membership run over real UDP. Every wait is bounded; the
//! wall-clock figures are printed, not asserted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mcp_cluster::frame::Message;
use mcp_cluster::membership::{self, MemberState, Membership, NodeId, NodeMeta};
use mcp_cluster::transport::{
    Config, LocalCa, PeerTls, Receivers, Seeds, Transport, spawn_membership,
};
use tokio::time::timeout;

fn config() -> Config {
    Config {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    }
}

fn bind(tls: &PeerTls) -> (Transport, Receivers) {
    Transport::bind(config(), tls).expect("binds")
}

fn json(i: u64) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{i},"result":{{"content":[{{"type":"text","text":"reply number {i} from the tool"}}]}}}}"#)
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_endpoints_exchange_frames_in_order() {
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
                let mut m = Message::new(7, json(n));
                // Backpressure: the queue refuses when full; wait and retry in order.
                loop {
                    match t.send(*to, m) {
                        Ok(()) => break,
                        Err(mcp_cluster::frame::Refused::Full(back)) => {
                            m = back;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(other) => panic!("{other:?}"),
                    }
                }
            }
        }
    }
    for (i, r) in rx.iter_mut().enumerate() {
        let mut next: HashMap<SocketAddr, u64> = HashMap::new();
        let mut got = 0;
        while got < 2 * PER_PEER {
            let inc = timeout(Duration::from_secs(20), r.messages.recv())
                .await
                .expect("in time")
                .expect("open");
            let n = next.entry(inc.from).or_default();
            assert_eq!(
                inc.message.body,
                json(*n),
                "node {i} from {}: order kept",
                inc.from
            );
            *n += 1;
            got += 1;
        }
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
async fn membership_over_real_udp_joins_and_detects_a_crash() {
    let ca = LocalCa::generate().expect("ca");
    let mcfg = membership::Config {
        max_packet_size: 1100,
        ..membership::Config::default()
    };
    let mut nodes = Vec::new();
    let mut seed_addr: Option<SocketAddr> = None;
    let started = Instant::now();
    for i in 0..5u64 {
        let (t, rx) = bind(&ca.issue(&["mcp-peer"]).expect("cert"));
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
        let h = spawn_membership(m, t.clone(), rx.gossip, seeds);
        seed_addr.get_or_insert(t.local_addr());
        nodes.push((t, h, rx.messages));
    }
    let all_alive =
        |n: usize, nodes: &[(Transport, mcp_cluster::transport::MembershipHandle, _)]| {
            nodes.iter().take(n).all(|(_, h, _)| {
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
    .expect("5 nodes converge over QUIC within 10 s");
    println!(
        "5 nodes over QUIC datagrams: all see all alive with metadata after {:?}",
        started.elapsed()
    );

    let (victim_t, victim_h, _) = nodes.pop().expect("victim");
    let victim = victim_t.local_addr();
    victim_h.abort();
    victim_t.close();
    let killed = Instant::now();
    timeout(Duration::from_secs(10), async {
        loop {
            let down = nodes.iter().all(|(_, h, _)| {
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
        "crash of one node seen as down by all 4 survivors after {:?} (wall clock, 2 busy cores)",
        killed.elapsed()
    );
    for (t, h, _) in &nodes {
        h.abort();
        t.close();
    }
}
