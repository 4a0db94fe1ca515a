//! Writes the seeds of the `custody_wire` fuzz target (node/fuzz): one file per sample message
//! of `mcp_custody::wire::samples` (every kind), each the kind byte followed by the encoded
//! body — the input layout the target reads.
//!
//! ```text
//! cargo run -p mcp-custody --example fuzz_seeds -- node/fuzz/seeds/custody_wire
//! ```

use std::path::PathBuf;

use mcp_custody::wire::samples;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz_seeds DIR");
        std::process::exit(64);
    };
    std::fs::create_dir_all(&dir)?;
    for (i, m) in samples().iter().enumerate() {
        let mut bytes = vec![m.kind()];
        bytes.extend(m.encode());
        let path = dir.join(format!("sample_{i}_kind_{}", m.kind()));
        std::fs::write(&path, bytes)?;
        println!("{}", path.display());
    }
    Ok(())
}
