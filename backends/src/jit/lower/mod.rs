//! Lowering a graph to Cranelift functions, generic over `cranelift_module::Module` so the JIT
//! (`JITModule`) and the ahead-of-time path (`ObjectModule`) share every line.
//!
//! What [`lower`] produces in the module:
//! - one read-only data object per constant a kernel reads at run time, and per table or packed
//!   weight a kernel builds at compile time (alignment 16, referenced by symbol: no host address
//!   is baked into the code);
//! - one function per compiled node, `{prefix}_n{index}(env, task) -> i32`, where `env` points
//!   at the three pointers `[inputs, outputs, arena]` and `task` is the task index: a node split
//!   into `tasks > 1` parallel tasks (large convolutions and matrix products, see
//!   [`JitOptions::threads`]) does the part `task` of its work, and these functions are what the
//!   host's parallel-for runs;
//! - the exported entry function `{prefix}_entry(inputs, outputs, arena, parallel_for, pool) ->
//!   i32` of `kestrel_runtime::abi`, which calls the node functions in order (a split node through
//!   `parallel_for(pool, node_fn, env, tasks)`, or in a loop on the calling thread when
//!   `parallel_for` is null) and then copies the graph outputs that no node writes directly
//!   (outputs that are inputs, constants, or repeated).
//!
//! It returns 0, or the status `k` of the first node that failed at run time (an index out of
//! range); `Lowered::status_nodes[k - 1]` names that node. Split nodes never fail at run time.
//!
//! Three steps, one module each: [`placement`] classifies the nodes (views, kernels)
//! and places every value (graph input or output, constant, arena offset); [`functions`] emits
//! one function per kernel node; [`entry`] emits the entry function. [`data`] holds the module
//! side (data objects, signatures, value pointers), [`fold`] what is known at compile time (the graph's constants: the
//! graph must come folded).

mod data;
mod entry;
mod fold;
mod functions;
mod placement;

pub use fold::{check_folded, constant_values, should_be_folded};
pub use placement::in_place_concats;

use super::error::JitError;
use super::isa::IsaFlags;
use super::options::JitOptions;
use super::plan::MemoryPlan;
use cranelift_frontend::FunctionBuilderContext;
use cranelift_module::{FuncId, Module};
use kestrel_ir::Graph;
use std::collections::HashMap;

/// What [`lower`] produced.
pub struct Lowered {
    /// The entry function (see the module documentation for its signature).
    pub entry: FuncId,
    /// The arena plan: the caller provides `plan.size` bytes aligned to 64.
    pub plan: MemoryPlan,
    /// Description of the node behind each non-zero status (index = status - 1).
    pub status_nodes: Vec<(String, &'static str)>,
    /// Machine-code bytes of all functions.
    pub code_bytes: usize,
    /// Every function of the module: its id, machine-code bytes and a label naming its node or
    /// kernel (for profilers: [`crate::jit::perf_map`]).
    pub symbols: Vec<(FuncId, usize, String)>,
}

/// Lowers `g` into `module` (see the module documentation). Every dimension must be known and
/// the graph folded for code generation ([`check_folded`]).
pub fn lower<M: Module>(
    module: &mut M,
    g: &Graph,
    flags: &IsaFlags,
    prefix: &str,
    opts: &JitOptions,
) -> Result<Lowered, JitError> {
    fold::check_folded(g)?;
    let consts = constant_values(g);
    let placement = placement::place(g, &consts, opts)?;
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut data = data::ModuleData {
        module,
        prefix: prefix.to_string(),
        count: 0,
        consts: HashMap::new(),
    };
    let nodes = functions::emit_node_functions(
        &mut data, g, &placement, &consts, flags, opts, &mut fctx, &mut ctx,
    )?;
    let (entry, entry_bytes) = entry::emit_entry(
        &mut data,
        g,
        &placement,
        &consts,
        flags,
        &nodes.calls,
        &mut fctx,
        &mut ctx,
    )?;
    let mut symbols = nodes.symbols;
    symbols.push((entry, entry_bytes, format!("{prefix}_entry")));
    Ok(Lowered {
        entry,
        plan: placement.mem,
        status_nodes: nodes.status_nodes,
        code_bytes: nodes.code_bytes + entry_bytes,
        symbols,
    })
}
