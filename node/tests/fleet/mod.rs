//! Three real `mcp-node` processes on 127.0.0.1 for the process tests (`cluster_processes.rs`,
//! `relayed_streams.rs`, `upstream_failover.rs`): free ports, spawning (again after a port was lost before binding),
//! killing on drop, and reading their admin API (`/cluster`, `/metrics`).

#![allow(dead_code, unreachable_pub)]

pub mod stream;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_mcp-node");

pub struct Ports {
    pub mcp: SocketAddr,
    pub admin: SocketAddr,
    pub peer: SocketAddr,
}

/// Three sets of free ports; every socket stays bound until all are chosen, so no port is
/// handed out twice. The peer port's next port is free too (the gossip socket's).
pub fn free_ports() -> Vec<Ports> {
    let tcp = || TcpListener::bind("127.0.0.1:0").expect("bind");
    let udp_pair = || {
        for _ in 0..64 {
            let p = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let next = p.local_addr().expect("addr").port().checked_add(1);
            if let Some(g) = next.and_then(|n| UdpSocket::bind(("127.0.0.1", n)).ok()) {
                return (p, g);
            }
        }
        panic!("no free pair of UDP ports");
    };
    let held: Vec<_> = (0..3).map(|_| (tcp(), tcp(), udp_pair())).collect();
    held.iter()
        .map(|(m, a, (p, _))| Ports {
            mcp: m.local_addr().expect("addr"),
            admin: a.local_addr().expect("addr"),
            peer: p.local_addr().expect("addr"),
        })
        .collect()
}

/// Children killed on drop, whatever the test's outcome.
pub struct Fleet(pub Vec<Option<Child>>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawns the three nodes on free ports. A port chosen free can be taken by another process
/// (an outgoing connection's ephemeral port) before the node binds it: a node that exits with
/// "Address already in use" makes the whole fleet start again on fresh ports (at most five
/// times); any other early exit fails the test with the node's log.
pub fn start_fleet(certs: &Path, logs: &Path) -> (Fleet, Vec<Ports>) {
    start_fleet_with(certs, logs, None)
}

/// [`start_fleet`] with every node reading the configuration file `config` (`--config`).
pub fn start_fleet_with(certs: &Path, logs: &Path, config: Option<&Path>) -> (Fleet, Vec<Ports>) {
    for _ in 0..5 {
        let ports = free_ports();
        let mut fleet = Fleet(
            (0..3)
                .map(|i| Some(spawn_with(i, &ports, certs, logs, config)))
                .collect(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut retry = false;
        'wait: loop {
            for (i, c) in fleet.0.iter_mut().enumerate() {
                let Some(c) = c else { continue };
                if c.try_wait().expect("try_wait").is_some() {
                    let log = std::fs::read_to_string(logs.join(format!("node-{i}.log")))
                        .unwrap_or_default();
                    assert!(
                        log.contains("Address already in use"),
                        "node-{i} exited at start:\n{log}"
                    );
                    retry = true;
                    break 'wait;
                }
            }
            let listening = ports.iter().all(|p| {
                std::net::TcpStream::connect_timeout(&p.admin, Duration::from_millis(200)).is_ok()
            });
            if listening || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !retry {
            return (fleet, ports);
        }
        println!("a chosen port was taken before a node bound it: starting again on new ports");
    }
    panic!("five fleets in a row lost a port before binding it");
}

pub fn spawn(i: usize, ports: &[Ports], certs: &Path, logs: &Path) -> Child {
    spawn_with(i, ports, certs, logs, None)
}

pub fn spawn_with(
    i: usize,
    ports: &[Ports],
    certs: &Path,
    logs: &Path,
    config: Option<&Path>,
) -> Child {
    let p = &ports[i];
    let seeds: Vec<String> = ports.iter().map(|p| p.peer.to_string()).collect();
    let log = std::fs::File::create(logs.join(format!("node-{i}.log"))).expect("log file");
    let mut cmd = Command::new(BIN);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(["--listen", &p.mcp.to_string()])
        .args(["--admin-listen", &p.admin.to_string()])
        .arg("--admin-insecure-local") // the test reads /cluster anonymously (loopback)
        .arg("--cluster=true")
        .args(["--node-name", &format!("node-{i}")])
        .args(["--peer-listen", &p.peer.to_string()])
        .args(["--seeds", &seeds.join(",")])
        .args([
            "--cluster-ca-file",
            &certs.join("ca.crt").display().to_string(),
        ])
        .args([
            "--cluster-cert-file",
            &certs.join("tls.crt").display().to_string(),
        ])
        .args([
            "--cluster-key-file",
            &certs.join("tls.key").display().to_string(),
        ])
        .args(["--log-level", "info"])
        .env_remove("MCP_NODE_CONFIG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("mcp-node starts")
}

pub async fn view(admin: SocketAddr) -> Option<Value> {
    tokio::net::TcpStream::connect(admin).await.ok()?;
    let r =
        crate::common::send_with(admin, "GET", "/cluster", &[], "", Duration::from_secs(2)).await;
    (r.status == 200).then(|| r.json())
}

pub fn member<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["members"].as_array()?.iter().find(|m| m["name"] == name)
}

/// Polls the given admin addresses until `ok` holds for all, at most `limit`.
pub async fn until(
    admins: &[SocketAddr],
    limit: Duration,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for a in admins {
            all &= view(*a).await.is_some_and(|v| ok(&v));
        }
        if all {
            return started.elapsed();
        }
        if started.elapsed() > limit {
            let last = view(admins[0]).await;
            panic!("{what}: not within {limit:?}; last view {last:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Until every node lists all three alive with their MCP address (bounded: 30 s).
pub async fn converge(admins: &[SocketAddr]) {
    until(
        admins,
        Duration::from_secs(30),
        "3 processes converge",
        |v| {
            (0..3).all(|i| {
                member(v, &format!("node-{i}"))
                    .is_some_and(|m| m["state"] == "alive" && m["address"].is_string())
            })
        },
    )
    .await;
}

pub fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-node-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// One CA and certificate for the processes, written by the binary under test.
pub fn write_certs(name: &str) -> PathBuf {
    let certs = temp(name);
    let status = Command::new(BIN)
        .arg("--write-dev-certs")
        .arg(&certs)
        .stdout(Stdio::null())
        .status()
        .expect("runs");
    assert!(status.success());
    certs
}

pub fn sse_ids(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(str::to_owned)
        .collect()
}

pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig} {}", child.id());
}

/// `name` (a counter) on a node's admin `/metrics`; 0 when absent.
pub async fn counter(admin: SocketAddr, name: &str) -> u64 {
    let r =
        crate::common::send_with(admin, "GET", "/metrics", &[], "", Duration::from_secs(2)).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
