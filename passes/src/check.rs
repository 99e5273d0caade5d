//! Verification and dump text for the pass manager.

use kestrel_ir::text::{print, PrintOptions, WeightStyle};
use kestrel_ir::Graph;

/// Verifies `g`, returning every problem as a message.
pub fn verify_graph(g: &Graph) -> Result<(), Vec<String>> {
    kestrel_ir::verify(g).map_err(|errs| errs.into_iter().map(|e| e.to_string()).collect())
}

/// The text form of `g` with constants larger than the inline limit elided.
pub fn dump_text(g: &Graph) -> String {
    print(g, &PrintOptions::new(WeightStyle::Elided)).text
}
