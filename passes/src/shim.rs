//! Temporary stand-ins for `kestrel_ir::verify` and the text printer until they land on main.

use kestrel_ir::Graph;

/// Verifies `g`, returning every problem as a message.
pub fn verify_graph(g: &Graph) -> Result<(), Vec<String>> {
    let _ = g;
    Ok(())
}

/// The text form of `g` with large constants elided.
pub fn dump_text(g: &Graph) -> String {
    format!("{g:#?}")
}
