//! Membership soak on 127.0.0.1 with the CPUs saturated: N nodes in one process, B threads
//! spinning, T seconds; prints every false `Down` (no node is stopped, so every `Down` is
//! false) and every rejoin.
//!
//! `cargo run -p mcp-cluster --release --example soak -- [nodes] [busy threads] [seconds]
//! [probe period ms] [suspect-to-down ms] [udp|quic] [dedicated|shared]` (defaults 10 4 30
//! 150 300 udp dedicated: the membership defaults). The real test, with separate processes
//! and MCP load, is `make bench-detector`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mcp_cluster::membership::{self, Event, MemberState, Membership, NodeId, NodeMeta};
use mcp_cluster::transport::{
    Config, DriverOptions, DriverThread, GossipKey, GossipLink, LocalCa, Seeds, Transport,
    bind_with_gossip, spawn_membership,
};

fn word(n: usize, default: &str) -> String {
    std::env::args()
        .nth(n)
        .unwrap_or_else(|| default.to_owned())
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let (nodes, busy, secs) = (arg(1, 10), arg(2, 4), arg(3, 30));
    let (probe, suspect) = (arg(4, 150), arg(5, 300));
    let udp = word(6, "udp") == "udp";
    let thread = if word(7, "dedicated") == "shared" {
        DriverThread::Shared
    } else {
        DriverThread::Dedicated
    };
    let key = GossipKey::from_secret(b"soak");
    let ca = LocalCa::generate()?;
    let mcfg = membership::Config {
        max_packet_size: 1100,
        probe_period: Duration::from_millis(probe),
        probe_rtt: Duration::from_millis(probe / 3),
        suspect_to_down: Duration::from_millis(suspect),
        ..membership::Config::default()
    };
    let mut handles = Vec::new();
    let mut first: Option<SocketAddr> = None;
    for i in 0..nodes {
        let cfg = Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        let tls = ca.issue(&["mcp-peer"])?;
        let (t, link) = if udp {
            let (t, _rx, g) = bind_with_gossip(cfg, &tls, key.clone())?;
            (t, GossipLink::udp(g))
        } else {
            let (t, rx) = Transport::bind(cfg, &tls)?;
            (t.clone(), GossipLink::quic(t, rx.gossip))
        };
        let id = NodeId::new(t.local_addr(), 1);
        let meta = NodeMeta {
            name: format!("node-{i}"),
            ..NodeMeta::default()
        };
        let m = Membership::new(id, meta, mcfg.clone(), i, Instant::now())?;
        let seeds = first.map(|a| Seeds::addrs([a])).unwrap_or_default();
        first.get_or_insert(t.local_addr());
        handles.push((
            t.clone(),
            spawn_membership(
                m,
                link,
                seeds,
                DriverOptions {
                    thread,
                    observe: None,
                },
            ),
        ));
    }
    let start = Instant::now();
    loop {
        let all = handles.iter().all(|(_, h)| {
            h.view
                .borrow()
                .iter()
                .filter(|r| r.state == MemberState::Alive)
                .count()
                == nodes as usize
        });
        if all {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(20),
            "no convergence in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("{nodes} nodes converged in {:?}", start.elapsed());

    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..busy)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let mut events: Vec<_> = handles.iter().map(|(_, h)| h.events()).collect();
    let until = Instant::now() + Duration::from_secs(secs);
    let (mut downs, mut rejoins, mut suspects_seen) = (0, 0, 0);
    while Instant::now() < until {
        for (i, rx) in events.iter_mut().enumerate() {
            while let Ok(e) = rx.try_recv() {
                match e {
                    Event::Down(id) => {
                        downs += 1;
                        println!(
                            "{:>6.2?} node {i} declared {id} down (false positive)",
                            start.elapsed()
                        );
                    }
                    Event::Rejoined(id) => {
                        rejoins += 1;
                        println!("{:>6.2?} node {i} rejoined as {id}", start.elapsed());
                    }
                    _ => {}
                }
            }
        }
        suspects_seen += handles
            .iter()
            .map(|(_, h)| {
                h.view
                    .borrow()
                    .iter()
                    .filter(|r| r.state == MemberState::Suspect)
                    .count()
            })
            .sum::<usize>();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    println!(
        "{nodes} nodes ({}, {thread:?} thread), probe {probe} ms, suspect {suspect} ms, {busy} spinning threads on {} cores, {secs} s: {downs} false down events, {rejoins} rejoins, {suspects_seen} suspect sightings (sampled every 10 ms)",
        if udp {
            "own UDP sockets"
        } else {
            "QUIC datagrams"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (t, h) in &handles {
        h.abort();
        t.close();
    }
    Ok(())
}
