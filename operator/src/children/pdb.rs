//! The PodDisruptionBudget over the node pods (`spec.podDisruptionBudget`).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use mcpcluster_api::McpCluster;

use super::meta;
use crate::names::Names;

/// The PDB, or `None` when the spec disables it (the reconciler then deletes an old one).
pub fn pdb(cluster: &McpCluster, names: &Names) -> Option<PodDisruptionBudget> {
    let spec = &cluster.spec.pod_disruption_budget;
    spec.enabled.then(|| PodDisruptionBudget {
        metadata: meta(cluster, names, &names.cluster),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(spec.max_unavailable.clone()),
            selector: Some(LabelSelector {
                match_labels: Some(names.selector()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::test_support::cluster;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use mcpcluster_api::McpClusterSpec;

    #[test]
    fn follows_the_spec() {
        let mut spec = McpClusterSpec::default();
        spec.pod_disruption_budget.max_unavailable = IntOrString::String("25%".into());
        let c = cluster(spec);
        let p = pdb(&c, &Names::of(&c)).expect("enabled by default");
        let s = p.spec.expect("spec");
        assert_eq!(s.max_unavailable, Some(IntOrString::String("25%".into())));
        assert_eq!(
            s.selector.and_then(|l| l.match_labels),
            Some(Names::of(&c).selector())
        );

        let mut off = McpClusterSpec::default();
        off.pod_disruption_budget.enabled = false;
        let c = cluster(off);
        assert!(pdb(&c, &Names::of(&c)).is_none());
    }
}
