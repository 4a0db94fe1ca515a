//! Three nodes in one process on 127.0.0.1, clustered over real QUIC: they converge on three
//! alive members with each other's load, and a graceful shutdown is seen as a leave. Every wait
//! is bounded; wall-clock figures are printed, not asserted tightly.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{peer_addr, send_with};
use serde_json::Value;

async fn start(name: &str, dir: &std::path::Path, seeds: &[SocketAddr]) -> mcp_node::Running {
    common::start_config(common::cluster_config(name, dir, seeds)).await
}

async fn cluster(n: &mcp_node::Running) -> Value {
    let r = send_with(
        n.admin_addr,
        "GET",
        "/cluster",
        &[],
        "",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

fn state_of<'a>(view: &'a Value, name: &str) -> Option<&'a str> {
    view["members"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)?["state"]
        .as_str()
}

/// Polls until `ok` holds for every node's `/cluster`, at most `limit`.
async fn until(
    nodes: &[&mcp_node::Running],
    limit: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for n in nodes {
            all &= ok(&cluster(n).await);
        }
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "not within {limit:?}: {}",
            cluster(nodes[0]).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_share_load_and_see_a_leave() {
    let dir = common::dev_certs("cluster-test");
    let started = Instant::now();
    let a = start("node-a", &dir, &[]).await;
    let seed = peer_addr(&a);
    let b = start("node-b", &dir, &[seed]).await;
    let c = start("node-c", &dir, &[seed]).await;
    let names = ["node-a", "node-b", "node-c"];
    let converged = until(&[&a, &b, &c], Duration::from_secs(10), |v| {
        names.iter().all(|n| state_of(v, n) == Some("alive"))
    })
    .await;
    println!(
        "3 nodes: all see 3 alive members {converged:?} after the last start ({:?} from the first)",
        started.elapsed()
    );

    // Load rides on gossip: a session opened on node-b shows up in node-a's view.
    let _session = common::initialize(b.mcp_addr).await;
    let seen = until(&[&a, &c], Duration::from_secs(10), |v| {
        v["members"].as_array().is_some_and(|m| {
            m.iter()
                .any(|m| m["name"] == "node-b" && m["sessions"] == 1)
        }) && v["sessions"] == 1
    })
    .await;
    println!("a session on node-b reached the other views after {seen:?}");
    let metrics = send_with(
        a.admin_addr,
        "GET",
        "/metrics",
        &[],
        "",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        metrics
            .body
            .contains("mcp_cluster_members{state=\"alive\"} 3"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("mcp_cluster_peer_rtt_seconds{peer=\"node-b\"}"),
        "{}",
        metrics.body
    );

    // A drain is gossiped: peers see node-c draining while it is still a member.
    let r = send_with(
        c.admin_addr,
        "POST",
        "/drain",
        &[],
        "",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.status, 202, "{r:?}");
    let seen = until(&[&a, &b], Duration::from_secs(5), |v| {
        v["members"].as_array().is_some_and(|m| {
            m.iter()
                .any(|m| m["name"] == "node-c" && m["draining"] == true && m["state"] == "alive")
        })
    })
    .await;
    println!("node-c's drain reached the other views after {seen:?}");

    let left = Instant::now();
    c.shutdown().await;
    let shut = left.elapsed();
    let seen = until(&[&a, &b], Duration::from_secs(5), |v| {
        state_of(v, "node-c") == Some("dead")
    })
    .await;
    println!("node-c shut down in {shut:?}; the others saw it leave {seen:?} later");
    let v = cluster(&a).await;
    let b_row = v["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "node-b"));
    assert_eq!(
        b_row.expect("node-b")["address"],
        b.mcp_addr.to_string(),
        "{v}"
    );
    assert_eq!(v["self"], "node-a");
    assert_eq!(v["members"][0]["name"], "node-a", "{v}");
    a.shutdown().await;
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
