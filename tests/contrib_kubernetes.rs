//! contrib/kubernetes/replisnap-cluster.yaml: the config it embeds is one `replisnap` accepts
//! (a cluster shared by as many instances as the StatefulSet has pods), and the pods pass
//! their ordinal as `--instance`.

use replisnap::config::Config;

#[test]
fn the_statefulset_example_embeds_a_valid_cluster_config() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/kubernetes/replisnap-cluster.yaml"
    );
    let yaml = std::fs::read_to_string(path).expect("the example");
    // The block scalar under `cluster.toml: |`, dedented.
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim() != "cluster.toml: |")
        .skip(1);
    let first = lines.next().expect("a config line");
    let indent = first.len() - first.trim_start().len();
    let mut toml = format!("{}\n", &first[indent..]);
    for l in lines {
        if !l.trim().is_empty() && l.len() - l.trim_start().len() < indent {
            break;
        }
        toml.push_str(l.get(indent..).unwrap_or(""));
        toml.push('\n');
    }
    let cfg = Config::parse(&toml, "cluster.toml").unwrap_or_else(|e| panic!("{e:#}\n{toml}"));
    assert!(cfg.source.cluster);
    let replicas: u32 = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("replicas: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("replicas");
    assert_eq!(cfg.source.cluster_instances, Some(replicas));
    assert!(yaml.contains("- --instance=$(POD_INDEX)"));
    assert!(yaml.contains("metadata.labels['apps.kubernetes.io/pod-index']"));
}
