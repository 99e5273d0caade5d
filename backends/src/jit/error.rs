//! Why a graph could not be compiled or run ([`JitError`]).

/// Why a graph could not be compiled or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JitError {
    /// A node the JIT cannot compile (op, dtype or attribute combination).
    #[error("{node}: the JIT does not support {what}")]
    Unsupported { node: String, what: String },
    /// Dimensions that are not known at compile time (bind them from the inputs first).
    #[error("the JIT needs every dimension known; unbound: {dims}")]
    UnboundDims { dims: String },
    /// A constant without data (a dump with elided weights).
    #[error("constant \"{name}\" has no data (elided weights): the graph cannot be compiled")]
    ElidedConstant { name: String },
    /// A node the fold before code generation evaluates (constant inputs, or a shape query) is
    /// still in the graph: the caller skipped that fold, or it failed on this node.
    #[error("{node}: its result is known at compile time but was not folded (run fold-constants with fold_quant=true before code generation, as kestrel's driver does)")]
    NotFolded { node: String },
    /// Evaluating something at compile time failed.
    #[error("{node}: evaluating at compile time: {reason}")]
    Fold { node: String, reason: String },
    /// Cranelift rejected the generated code (a bug in the lowering).
    #[error("code generation failed{context}: {reason}")]
    Codegen { context: String, reason: String },
    #[error("graph expects {expected} inputs, got {actual}")]
    InputCount { expected: usize, actual: usize },
    #[error("input \"{input}\": expected {expected}, got {actual}")]
    InputType {
        input: String,
        expected: String,
        actual: String,
    },
    #[error("graph has {expected} outputs, got {actual} output buffers")]
    OutputCount { expected: usize, actual: usize },
    #[error("output \"{output}\": buffer has {actual} bytes, needs {expected}")]
    OutputSize {
        output: String,
        expected: usize,
        actual: usize,
    },
    /// The generated code reported an error (for example a runtime index out of range).
    #[error("{node}: {reason}")]
    Runtime { node: String, reason: String },
    /// The graph does not verify (the JIT compiles only well-formed graphs).
    #[error("the graph is malformed: {reason}")]
    InvalidGraph { reason: String },
    /// A tensor or the activation arena would need more memory than the limit allows.
    #[error("{what} would need {bytes} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: String,
        bytes: u128,
        limit: u128,
    },
}
