//! `kestrel dump`: the IR in its textual form, with large weights in a sidecar `.npz`.

use crate::tensor_io;
use anyhow::{bail, Context, Result};
use kestrel_ir::text::{self, PrintOptions, WeightStyle};
use kestrel_ir::{Graph, Tensor};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The weights file that accompanies a dump: `m.kir` → `m.weights.npz`.
pub fn sidecar_path(kir: &Path) -> PathBuf {
    kir.with_extension("weights.npz")
}

/// The textual form of `g` with large constants printed as `elided` (what `kestrel dump` prints
/// without `-o`).
pub fn to_text(g: &Graph) -> String {
    text::print(
        g,
        &PrintOptions {
            weights: WeightStyle::Elided,
        },
    )
    .text
}

/// Writes the textual form of `g` to `path`, large constants referenced by name and stored in
/// the sidecar ([`sidecar_path`]). Existing files are kept (an error) unless `force`; on failure
/// neither file is left behind.
pub fn write_kir(g: &Graph, path: &Path, force: bool) -> Result<()> {
    let sidecar = sidecar_path(path);
    for p in [path, sidecar.as_path()] {
        if p.exists() && !force {
            bail!("{} exists; pass --force to overwrite it", p.display());
        }
    }
    let printed = text::print(
        g,
        &PrintOptions {
            weights: WeightStyle::Reference,
        },
    );
    let weights: Vec<(String, Tensor)> = printed
        .weights
        .iter()
        .map(|(name, t)| (name.clone(), (*t).clone()))
        .collect();
    if !weights.is_empty() {
        tensor_io::write_npz(&sidecar, &weights)?;
    }
    // Nothing is left behind on failure: the sidecar goes again if the dump cannot be written.
    tensor_io::write_atomically(path, |f| f.write_all(printed.text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
        .inspect_err(|_| {
            if !weights.is_empty() {
                let _ = std::fs::remove_file(&sidecar);
            }
        })?;
    Ok(())
}

/// Reads a `.kir` dump; `@"name"` constants come from its sidecar.
pub fn read_kir(path: &Path) -> Result<Graph> {
    let source =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let sidecar = sidecar_path(path);
    let weights: HashMap<String, Tensor> = if sidecar.exists() {
        tensor_io::read_npz(&sidecar)?.into_iter().collect()
    } else {
        HashMap::new()
    };
    text::parse(&source, &|name: &str| weights.get(name).cloned())
        .map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))
}
