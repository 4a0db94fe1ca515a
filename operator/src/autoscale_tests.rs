use super::*;

fn spec(up: i32, down: i32, step: i32) -> AutoscalingSpec {
    AutoscalingSpec {
        enabled: true,
        min_replicas: 2,
        max_replicas: 8,
        target_connections_per_node: 100,
        scale_up_stabilization_seconds: up,
        scale_down_stabilization_seconds: down,
        max_step_replicas: step,
    }
}

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("valid time")
}

#[test]
fn sizes_toward_the_per_node_target_within_bounds() {
    let s = spec(0, 0, 10);
    let mut a = Autoscaler::default();
    let d = a.decide(&s, 2, Some(450), at(0));
    assert_eq!(
        (d.desired, d.recommendation, d.reason),
        (5, 5, Reason::ScaleUp)
    );
    let d = a.decide(&s, 5, Some(5_000), at(1));
    assert_eq!((d.desired, d.reason), (8, Reason::ScaleUp));
    let d = a.decide(&s, 8, Some(5_000), at(2));
    assert_eq!((d.desired, d.reason), (8, Reason::AtMax));
    let d = a.decide(&s, 8, Some(0), at(3));
    assert_eq!((d.desired, d.reason), (2, Reason::ScaleDown));
    let d = a.decide(&s, 2, Some(0), at(4));
    assert_eq!((d.desired, d.reason), (2, Reason::AtMin));
    let d = a.decide(&s, 2, Some(150), at(5));
    assert_eq!((d.desired, d.reason), (2, Reason::Stable));
}

#[test]
fn missing_metrics_hold_the_current_size() {
    let mut a = Autoscaler::default();
    let d = a.decide(&spec(0, 0, 4), 5, None, at(0));
    assert_eq!((d.desired, d.reason), (5, Reason::NoMetrics));
}

#[test]
fn scale_up_waits_out_its_window_and_takes_the_lowest_recommendation() {
    let s = spec(30, 300, 10);
    let mut a = Autoscaler::default();
    assert_eq!(
        a.decide(&s, 2, Some(600), at(0)).reason,
        Reason::Stabilizing
    );
    assert_eq!(
        a.decide(&s, 2, Some(400), at(15)).reason,
        Reason::Stabilizing
    );
    // Window covered: the lowest recommendation of the last 30 s is 4.
    let d = a.decide(&s, 2, Some(700), at(30));
    assert_eq!(
        (d.desired, d.recommendation, d.reason),
        (4, 7, Reason::ScaleUp)
    );
}

#[test]
fn a_short_spike_does_not_scale_up() {
    let s = spec(30, 300, 10);
    let mut a = Autoscaler::default();
    for t in (0..=30).step_by(10) {
        a.decide(&s, 2, Some(100), at(t));
    }
    let d = a.decide(&s, 2, Some(900), at(40));
    assert_eq!((d.desired, d.reason), (2, Reason::Stabilizing));
}

#[test]
fn scale_down_takes_the_highest_recommendation_of_its_window() {
    let s = spec(0, 60, 10);
    let mut a = Autoscaler::default();
    assert_eq!(
        a.decide(&s, 6, Some(500), at(0)).reason,
        Reason::Stabilizing
    );
    assert_eq!(
        a.decide(&s, 6, Some(300), at(30)).reason,
        Reason::Stabilizing
    );
    // 60 s covered: the highest recommendation since t=0 is 5.
    let d = a.decide(&s, 6, Some(100), at(60));
    assert_eq!((d.desired, d.reason), (5, Reason::ScaleDown));
    // t=0 left the window: the highest since t=30 is 3.
    let d = a.decide(&s, 5, Some(100), at(90));
    assert_eq!((d.desired, d.reason), (3, Reason::ScaleDown));
}

#[test]
fn no_scale_down_right_after_a_scale_up() {
    let s = spec(0, 60, 10);
    let mut a = Autoscaler::default();
    for t in 0..=60 {
        a.decide(&s, 2, Some(150), at(t));
    }
    assert_eq!(a.decide(&s, 2, Some(600), at(61)).desired, 6);
    // Load vanishes at once: the window since the scale-up must pass first.
    for t in 62..121 {
        let d = a.decide(&s, 6, Some(0), at(t));
        assert_eq!((d.desired, d.reason), (6, Reason::Stabilizing), "t={t}");
    }
    assert_eq!(a.decide(&s, 6, Some(0), at(122)).reason, Reason::ScaleDown);
}

#[test]
fn steps_are_limited_both_ways() {
    let s = spec(0, 0, 2);
    let mut a = Autoscaler::default();
    assert_eq!(a.decide(&s, 2, Some(800), at(0)).desired, 4);
    assert_eq!(a.decide(&s, 4, Some(800), at(1)).desired, 6);
    assert_eq!(a.decide(&s, 6, Some(800), at(2)).desired, 8);
    assert_eq!(a.decide(&s, 8, Some(0), at(3)).desired, 6);
    assert_eq!(a.decide(&s, 6, Some(0), at(4)).desired, 4);
}

#[test]
fn a_size_outside_the_bounds_is_clamped_at_once() {
    let mut a = Autoscaler::default();
    let d = a.decide(&spec(300, 300, 1), 12, Some(0), at(0));
    assert_eq!((d.desired, d.reason), (8, Reason::ScaleDown));
}

#[test]
fn reasons_map_to_condition_reasons() {
    assert_eq!(Reason::AtMax.condition_reason(), "AtMaxReplicas");
    assert_eq!(Reason::Stabilizing.condition_reason(), "Stabilizing");
}
