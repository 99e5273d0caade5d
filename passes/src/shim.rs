//! Verification and dump text for the pass manager. The dump text is a stand-in until the IR
//! text printer lands on main.

use kestrel_ir::Graph;

/// Verifies `g`, returning every problem as a message.
pub fn verify_graph(g: &Graph) -> Result<(), Vec<String>> {
    kestrel_ir::verify(g).map_err(|errs| errs.into_iter().map(|e| e.to_string()).collect())
}

/// The text form of `g` with large constants elided.
pub fn dump_text(g: &Graph) -> String {
    format!("{g:#?}")
}
