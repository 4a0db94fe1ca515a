//! `crdgen`: prints the `McpCluster` CustomResourceDefinition as YAML.
//!
//! ```text
//! crdgen                  # print to stdout
//! crdgen --check FILE     # exit 1 (with a hint) when FILE differs from what would be printed
//! ```

use std::process::ExitCode;

use mcpcluster_api::mcpcluster::{GENERATED_CRD_PATH, crd_yaml};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let yaml = match crd_yaml() {
        Ok(yaml) => yaml,
        Err(err) => {
            eprintln!("crdgen: cannot serialize the CRD: {err}");
            return ExitCode::FAILURE;
        }
    };
    match args.as_slice() {
        [] => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        [flag, file] if flag == "--check" => check(file, &yaml),
        _ => {
            eprintln!("usage: crdgen [--check FILE]");
            ExitCode::from(64)
        }
    }
}

fn check(file: &str, yaml: &str) -> ExitCode {
    match std::fs::read_to_string(file) {
        Ok(committed) if committed == yaml => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!(
                "crdgen: {file} is out of date; regenerate it with\n  \
                 cargo run -q -p mcpcluster-api --features resource --bin crdgen > {GENERATED_CRD_PATH}"
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("crdgen: cannot read {file}: {err}");
            ExitCode::FAILURE
        }
    }
}
