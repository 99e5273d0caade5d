//! `dce`: dead-code elimination.
//!
//! Removes every node none of whose outputs is needed (transitively) by a graph output, and drops
//! constants that nothing references; values are renumbered densely. Ops have no side effects, so
//! the function computed is unchanged. Graph inputs are kept even when unused (they are the
//! graph's interface).

use crate::{Pass, PassContext, PassError};
use kestrel_ir::Graph;

pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<bool, PassError> {
        let values = g.values.len();
        let removed = g.remove_dead_nodes();
        Ok(removed > 0 || g.values.len() != values)
    }
}
