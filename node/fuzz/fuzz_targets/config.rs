//! The configuration loader: YAML text plus `MCP_NODE_*` environment variables, through the
//! same path `mcp-node` takes (`Cli` parsing, `Settings::from_text`: parse, overrides,
//! validation). Any input gives settings or an error naming the problem, never a panic; and
//! settings that validate survive a round trip: written as YAML, read back, they validate to
//! the same configuration.
//!
//! Input: the YAML text, then entries separated by NUL bytes, each one variable: its first
//! byte picks the name (from the list below), the rest is the value.
#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use mcp_node::settings::{Cli, Settings, parse_config};

/// Every variable `mcp-node` reads, but `MCP_NODE_CONFIG` (a path; the text comes from the input).
const VARS: &[&str] = &[
    "MCP_NODE_LISTEN", "MCP_NODE_ADMIN_LISTEN", "MCP_NODE_PACKS", "MCP_NODE_MAX_CONNECTIONS",
    "MCP_NODE_MAX_SESSIONS", "MCP_NODE_MAX_INFLIGHT_REQUESTS", "MCP_NODE_SESSION_RATE_PER_SEC",
    "MCP_NODE_SESSION_BURST", "MCP_NODE_ALLOWED_HOSTS", "MCP_NODE_LOG_LEVEL", "MCP_NODE_LOG_FORMAT",
    "MCP_NODE_CLUSTER", "MCP_NODE_NAME", "MCP_NODE_PEER_LISTEN", "MCP_NODE_ADVERTISE",
    "MCP_NODE_SEEDS", "MCP_NODE_SEED_DNS", "MCP_NODE_CLUSTER_CA_FILE", "MCP_NODE_CLUSTER_CERT_FILE",
    "MCP_NODE_CLUSTER_KEY_FILE", "MCP_NODE_CLUSTER_SERVER_NAME", "MCP_NODE_CLUSTER_LOAD_PUBLISH_MS",
    "MCP_NODE_CLUSTER_REPLICATION_FACTOR", "MCP_NODE_CLUSTER_FORWARD_TIMEOUT_MS",
    "MCP_NODE_CLUSTER_PROBE_PERIOD_MS", "MCP_NODE_CLUSTER_PROBE_RTT_MS",
    "MCP_NODE_CLUSTER_INDIRECT_PROBES", "MCP_NODE_CLUSTER_SUSPECT_TO_DOWN_MS",
    "MCP_NODE_CLUSTER_MAX_TRANSMISSIONS", "MCP_NODE_CLUSTER_GOSSIP_PERIOD_MS",
    "MCP_NODE_CLUSTER_GOSSIP_FANOUT", "MCP_NODE_CLUSTER_ANNOUNCE_PERIOD_MS",
    "MCP_NODE_CLUSTER_ANNOUNCE_DOWN_PERIOD_MS", "MCP_NODE_CLUSTER_REMOVE_DOWN_AFTER_SECS",
    "MCP_NODE_CLUSTER_MAX_PACKET_SIZE", "MCP_NODE_CLUSTER_META_REFRESH_MS", "POD_IP",
];

fn set_env(name: &str, value: Option<&str>) {
    // SAFETY: libFuzzer runs this target on one thread and nothing here starts another, so no
    // thread reads the environment while it changes.
    unsafe {
        match value {
            Some(v) => std::env::set_var(name, v),
            None => std::env::remove_var(name),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let Ok(yaml) = std::str::from_utf8(parts.next().unwrap_or_default()) else { return };
    let mut set = Vec::new();
    for entry in parts.take(8) {
        let Some((&pick, value)) = entry.split_first() else { continue };
        let Ok(value) = std::str::from_utf8(value) else { continue };
        let name = VARS[usize::from(pick) % VARS.len()];
        set_env(name, Some(value));
        set.push(name);
    }
    let loaded = Cli::try_parse_from(["mcp-node"])
        .ok()
        .map(|cli| Settings::from_text(Some(("fuzz.yaml", yaml)), &cli));
    for name in set {
        set_env(name, None);
    }
    let Some(Ok(settings)) = loaded else { return };
    let written = serde_yaml_ng::to_string(&settings.config).expect("a valid config serializes");
    let read = parse_config(&written)
        .unwrap_or_else(|e| panic!("a written config does not parse back ({e}):\n{written}"));
    assert_eq!(read, settings.config, "round trip changed the config:\n{written}");
    Settings::validate(read).expect("a config that validated validates again");
});
