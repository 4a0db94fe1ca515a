use super::*;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("valid time")
}

fn healthy() -> Observed {
    Observed {
        desired: 3,
        replicas: 3,
        ready: 3,
        updated: 3,
        rollout_complete: true,
        replication_factor: 2,
        ..Default::default()
    }
}

fn find<'a>(rs: &'a [Report], t: &str) -> &'a Report {
    rs.iter().find(|r| r.type_ == t).expect("reported")
}

#[test]
fn a_healthy_cluster_is_available_and_nothing_else() {
    let rs = reports(&healthy());
    assert_eq!(rs.len(), 4);
    assert!(find(&rs, "Available").status);
    assert!(!find(&rs, "Progressing").status);
    assert!(!find(&rs, "Degraded").status);
    assert!(!find(&rs, "Scaling").status);
}

#[test]
fn rollout_and_scale_are_reported() {
    let o = Observed {
        updated: 1,
        rollout_complete: false,
        desired: 5,
        ready: 2,
        ..healthy()
    };
    let rs = reports(&o);
    assert_eq!(find(&rs, "Progressing").reason, "RolloutInProgress");
    assert_eq!(find(&rs, "Scaling").reason, "ScalingUp");
    assert_eq!(find(&rs, "Degraded").reason, "ReplicasUnavailable");
    assert!(find(&rs, "Available").status, "2 ready hold 2 copies");
}

#[test]
fn degraded_reasons_in_priority_order() {
    let below = Observed {
        desired: 1,
        replicas: 1,
        ready: 1,
        ..healthy()
    };
    assert_eq!(
        find(&reports(&below), "Degraded").reason,
        "BelowReplicationFactor"
    );
    let split = Observed {
        diverged: Some("a sees [a, b]; b sees [b]".into()),
        ..below.clone()
    };
    assert_eq!(
        find(&reports(&split), "Degraded").reason,
        "MembershipDiverged"
    );
    let failed = Observed {
        failed: Some("boom".into()),
        ..below.clone()
    };
    assert_eq!(
        find(&reports(&failed), "Degraded").reason,
        "ReconcileFailed"
    );
    let invalid = Observed {
        invalid: Some("bad".into()),
        ..failed
    };
    let rs = reports(&invalid);
    assert_eq!(find(&rs, "Degraded").reason, "InvalidSpec");
    assert_eq!(find(&rs, "Degraded").message, "bad");
}

#[test]
fn zero_replicas_is_not_available() {
    let o = Observed {
        desired: 0,
        replicas: 0,
        ready: 0,
        updated: 0,
        ..healthy()
    };
    let a = reports(&o);
    assert_eq!(find(&a, "Available").reason, "ScaledToZero");
}

#[test]
fn transition_time_moves_only_when_status_flips() {
    let first = merge(&[], reports(&healthy()), 1, at(0));
    assert!(first.iter().all(|c| c.last_transition_time == Time(at(0))));
    assert!(first.iter().all(|c| c.observed_generation == Some(1)));
    let order: Vec<_> = first.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(order, ["Available", "Progressing", "Degraded", "Scaling"]);

    // Same statuses, new generation: times stay, generation follows.
    let second = merge(&first, reports(&healthy()), 2, at(10));
    assert!(second.iter().all(|c| c.last_transition_time == Time(at(0))));
    assert!(second.iter().all(|c| c.observed_generation == Some(2)));

    // Progressing flips: only its time moves.
    let rolling = Observed {
        rollout_complete: false,
        ..healthy()
    };
    let third = merge(&second, reports(&rolling), 3, at(20));
    for c in &third {
        let expect = if c.type_ == "Progressing" {
            at(20)
        } else {
            at(0)
        };
        assert_eq!(c.last_transition_time, Time(expect), "{}", c.type_);
    }
}

#[test]
fn foreign_conditions_are_kept() {
    let mut old = merge(&[], reports(&healthy()), 1, at(0));
    old.push(Condition {
        type_: "Custom".into(),
        status: "True".into(),
        reason: "Mine".into(),
        message: String::new(),
        observed_generation: None,
        last_transition_time: Time(at(0)),
    });
    let merged = merge(&old, reports(&healthy()), 2, at(5));
    assert_eq!(merged.len(), 5);
    assert_eq!(merged[4].type_, "Custom");
}
