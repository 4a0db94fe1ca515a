use super::*;
use crate::children::test_support::cluster;
use mcpcluster_api::McpClusterSpec;

fn pod_spec(s: &StatefulSet) -> &PodSpec {
    s.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

#[test]
fn stable_identities_config_probes_and_grace() {
    let c = cluster(McpClusterSpec::default());
    let names = Names::of(&c);
    let s = statefulset(&c, &names, 3, "abc");
    let spec = s.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("demo-peers"));
    assert_eq!(spec.selector.match_labels, Some(names.selector()));
    let meta = spec.template.metadata.as_ref().expect("meta");
    assert_eq!(
        meta.annotations.as_ref().expect("a")[CONFIG_HASH_ANNOTATION],
        "abc"
    );

    let pod = pod_spec(&s);
    assert_eq!(pod.service_account_name.as_deref(), Some("demo-node"));
    // preStop 5 s + shutdownGraceSecs 10 + the node's stop beyond it 15 + margin 5.
    assert_eq!(pod.termination_grace_period_seconds, Some(35));
    let c0 = &pod.containers[0];
    let ready = c0
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref());
    assert_eq!(ready.and_then(|h| h.path.as_deref()), Some("/readyz"));
    let live = c0.liveness_probe.as_ref().and_then(|p| p.http_get.as_ref());
    assert_eq!(live.and_then(|h| h.path.as_deref()), Some("/healthz"));
    let env = c0.env.as_ref().expect("env");
    let peer = env
        .iter()
        .find(|e| e.name == "MCP_PEER_SERVICE")
        .expect("peer env");
    assert_eq!(peer.value.as_deref(), Some("demo-peers"));
    let ports: Vec<_> = c0
        .ports
        .as_ref()
        .expect("ports")
        .iter()
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            ("mcp".into(), 8080),
            ("admin".into(), 9090),
            ("peer".into(), 7946),
            ("gossip".into(), 7947)
        ]
    );
    let args = c0.args.as_ref().expect("args");
    assert_eq!(args, &["--config", "/etc/mcp-node/config.yaml"]);
}

#[test]
fn pod_template_overrides_apply_but_the_selector_wins() {
    let mut spec = McpClusterSpec::default();
    let o = &mut spec.pod_template;
    o.labels.insert("team".into(), "platform".into());
    o.labels
        .insert("app.kubernetes.io/instance".into(), "hijack".into());
    o.annotations.insert("note".into(), "x".into());
    o.node_selector.insert("disk".into(), "ssd".into());
    o.priority_class_name = Some("high".into());
    o.service_account_name = Some("custom".into());
    let c = cluster(spec);
    let s = statefulset(&c, &Names::of(&c), 2, "h");
    let meta = s
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .expect("m");
    let labels = meta.labels.as_ref().expect("labels");
    assert_eq!(labels["team"], "platform");
    assert_eq!(labels["app.kubernetes.io/instance"], "demo");
    assert_eq!(meta.annotations.as_ref().expect("a")["note"], "x");
    let pod = pod_spec(&s);
    assert_eq!(pod.node_selector.as_ref().expect("ns")["disk"], "ssd");
    assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
    assert_eq!(pod.service_account_name.as_deref(), Some("custom"));
}

#[test]
fn serializes_with_kind_and_owner_for_server_side_apply() {
    let c = cluster(McpClusterSpec::default());
    let s = statefulset(&c, &Names::of(&c), 1, "h");
    let v = serde_json::to_value(&s).expect("serializes");
    assert_eq!(v["apiVersion"], "apps/v1");
    assert_eq!(v["kind"], "StatefulSet");
    assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "0000-uid");
    assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
}

#[test]
fn secrets_are_readable_by_the_node_user_and_only_the_admin_digest_is_mounted() {
    let c = cluster(McpClusterSpec::default());
    let names = Names::of(&c);
    let s = statefulset(&c, &names, 1, "h");
    let pod = pod_spec(&s);
    let sc = pod.security_context.as_ref().expect("security context");
    assert_eq!(sc.run_as_user, Some(65532));
    // Secret files are root-owned; fsGroup hands them to the node's group.
    assert_eq!(sc.fs_group, Some(65532));
    let volumes = pod.volumes.as_ref().expect("volumes");
    let secret_of = |name: &str| {
        volumes
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.secret.as_ref())
            .unwrap_or_else(|| panic!("volume {name}"))
    };
    let tls = secret_of("tls");
    assert_eq!(tls.secret_name.as_deref(), Some("demo-tls"));
    assert_eq!(tls.default_mode, Some(0o440));
    let admin = secret_of("admin-token");
    assert_eq!(admin.secret_name.as_deref(), Some("demo-admin-token"));
    assert_eq!(admin.default_mode, Some(0o440));
    let items = admin.items.as_ref().expect("only listed keys are mounted");
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("token.sha256", "token.sha256")
    );
    let mounts = pod.containers[0].volume_mounts.as_ref().expect("mounts");
    let admin_mount = mounts
        .iter()
        .find(|m| m.name == "admin-token")
        .expect("mount");
    assert_eq!(admin_mount.mount_path, "/etc/mcp-node/admin");
    assert_eq!(admin_mount.read_only, Some(true));
}

#[test]
fn only_the_secret_keys_upstream_headers_name_are_mounted() {
    let c = cluster(McpClusterSpec::default());
    assert!(
        super::upstream_secrets(&c).is_none(),
        "no reference, no volume"
    );
    let s = statefulset(&c, &Names::of(&c), 1, "h");
    assert!(
        !pod_spec(&s)
            .volumes
            .as_ref()
            .expect("volumes")
            .iter()
            .any(|v| v.name == "upstream-secrets")
    );
    let mut spec = McpClusterSpec::default();
    spec.node.upstreams = serde_yaml_ng::from_str(
        "- name: a\n  url: http://a/mcp\n  headers:\n    Authorization: {valueFrom: {secretKeyRef: {name: creds, key: token}}}\n    X-Other: {valueFrom: {secretKeyRef: {name: creds, key: other}}}\n    X-Plain: p\n- name: b\n  url: http://b/mcp\n  headers:\n    X-Key: {valueFrom: {secretKeyRef: {name: b-key, key: key}}}\n",
    )
    .expect("parses");
    let c = cluster(spec);
    let s = statefulset(&c, &Names::of(&c), 1, "h");
    let pod = pod_spec(&s);
    let v = pod
        .volumes
        .as_ref()
        .expect("volumes")
        .iter()
        .find(|v| v.name == "upstream-secrets")
        .expect("the volume");
    let projected = v.projected.as_ref().expect("projected");
    assert_eq!(projected.default_mode, Some(0o440));
    let mounted: Vec<(String, String, String)> = projected
        .sources
        .iter()
        .flatten()
        .filter_map(|p| p.secret.as_ref())
        .flat_map(|s| {
            s.items
                .iter()
                .flatten()
                .map(|i| (s.name.clone(), i.key.clone(), i.path.clone()))
        })
        .collect();
    let want = [
        ("b-key", "key", "b-key/key"),
        ("creds", "other", "creds/other"),
        ("creds", "token", "creds/token"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(mounted, want);
    let mount = pod.containers[0]
        .volume_mounts
        .as_ref()
        .expect("mounts")
        .iter()
        .find(|m| m.name == "upstream-secrets")
        .expect("mounted");
    assert_eq!(mount.mount_path, "/etc/mcp-node/secrets");
    assert_eq!(mount.read_only, Some(true));
}
