//! Ahead-of-time compilation: a graph into a self-contained shared object and its C header
//! (`kestrel compile`; the ABI is `docs/ABI.md`, the command line `docs/CLI.md`).
//!
//! The code is the JIT's: [`kestrel_backends::aot::emit_object`] lowers the graph into an object
//! file for the target ISA (PIC, every ISA flag set explicitly, see
//! [`kestrel_backends::aot::target`]; on riscv64 without V the vector code is rewritten lane by
//! lane, [`kestrel_backends::aot::scalarize`]) with the model descriptor and the run wrappers;
//! [`link`] links the object with LLD and checks that the result imports nothing; [`header`]
//! writes the C header. Files appear only when complete: everything is written under temporary
//! names in the output folder and renamed at the end.

pub mod header;
pub mod link;

use crate::driver::{self, InputPolicy, InputSpec, LoadedModel, PassOptions};
use crate::inprocess::Backend;
use crate::tensor_io::write_atomically;
use anyhow::{bail, Context, Result};
use kestrel_backends::jit::{self, JitOptions};
use kestrel_ir::Graph;
use kestrel_passes::Report;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use kestrel_backends::aot::{Arch, CpuFeatures, IoInfo, ModelInfo, TARGETS};
pub use link::SoSizes;

/// Options of [`compile_graph`].
#[derive(Clone, Debug)]
pub struct AotOptions {
    /// Target triple (one of [`TARGETS`]); `None` is the host.
    pub target: Option<String>,
    /// `--cpu`: `native`, `generic` or a feature list (`None`: native for the host, generic
    /// otherwise).
    pub cpu: Option<String>,
    /// Prefix of every exported symbol (a C identifier).
    pub prefix: String,
    /// Most parallel tasks a node is split into (the JIT's `threads`).
    pub tasks: usize,
    /// Fewest multiply-adds worth a task of their own.
    pub min_task_macs: usize,
    /// Rewrite vector code lane by lane ([`kestrel_backends::aot::scalarize`]) even for targets
    /// with vector registers (it is always done for riscv64 without V). For tests: the rewrite
    /// then runs natively.
    pub scalarize: bool,
}

impl Default for AotOptions {
    fn default() -> Self {
        AotOptions {
            target: None,
            cpu: None,
            prefix: "kestrel".into(),
            tasks: 1,
            min_task_macs: JitOptions::default().min_task_macs,
            scalarize: false,
        }
    }
}

/// What [`compile_graph`] wrote.
#[derive(Debug)]
pub struct AotOutput {
    pub so: PathBuf,
    pub header: PathBuf,
    pub info: ModelInfo,
    pub sizes: SoSizes,
    /// Code generation (lowering, wrappers, object file) and linking times.
    pub codegen_time: Duration,
    pub link_time: Duration,
}

/// Checks that `prefix` can start C identifiers.
pub fn check_prefix(prefix: &str) -> Result<()> {
    let mut chars = prefix.chars();
    let ok = prefix.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        bail!(
            "--symbol-prefix {prefix:?} is not a C identifier (letters, digits and _, not \
             starting with a digit, at most 64 characters)"
        );
    }
    Ok(())
}

/// Checks a task count: at least 1.
pub fn check_tasks(tasks: usize) -> Result<()> {
    if tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    Ok(())
}

/// The header path of a shared object path: `m.so` → `m.h`.
pub fn header_path(so: &Path) -> PathBuf {
    so.with_extension("h")
}

/// The graph `lower` sees, exactly as the JIT's path prepares it (so that host `.so` files and the
/// JIT run the same code): verified, folded for code generation, every dimension known.
pub fn prepare(g: &Graph, source: &str) -> Result<Graph> {
    kestrel_ir::verify(g).map_err(|errors| {
        anyhow::anyhow!(
            "the graph is malformed: {}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let mut g = g.clone();
    crate::driver::fold_for_codegen(&mut g, Path::new(source))?;
    jit::check_known_dims(&g)?;
    jit::check_sizes(&g)?;
    Ok(g)
}

/// Removes the listed files when dropped (temporaries of a failed compile).
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Compiles `g` (passes already run, every dimension bound) into the shared object `out` and
/// the header beside it. `source` names the model in messages and in the header.
pub fn compile_graph(g: &Graph, opts: &AotOptions, out: &Path, source: &str) -> Result<AotOutput> {
    check_prefix(&opts.prefix)?;
    check_tasks(opts.tasks)?;
    let arch = match &opts.target {
        Some(t) => Arch::from_triple(t)?,
        None => Arch::host().ok_or_else(|| {
            anyhow::anyhow!(
                "this machine is not one of the supported targets; give --target ({})",
                TARGETS.join(", ")
            )
        })?,
    };
    let cpu = CpuFeatures::parse(arch, opts.cpu.as_deref())?;
    let file_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow::anyhow!("-o {}: not a file name", out.display()))?;
    if out.extension().is_some_and(|e| e == "h") {
        bail!(
            "-o {}: the header is written beside the shared object as NAME.h; name the shared object NAME.so",
            out.display()
        );
    }
    if out.is_dir() {
        bail!("-o {}: is a folder", out.display());
    }
    let header_out = header_path(out);
    let linker = link::find_linker()?;

    let start = Instant::now();
    let g = prepare(g, source).with_context(|| format!("{source}: compiling"))?;
    let jit_opts = JitOptions {
        threads: opts.tasks,
        min_task_macs: opts.min_task_macs,
        ..JitOptions::default()
    };
    let emitted =
        kestrel_backends::aot::emit_object(&g, &cpu, &opts.prefix, &jit_opts, opts.scalarize)
            .with_context(|| format!("{source}: compiling for {}", arch.triple()))?;
    let codegen_time = start.elapsed();

    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let pid = std::process::id();
    let obj_tmp = dir.join(format!(".{file_name}.tmp-{pid}.o"));
    let so_tmp = dir.join(format!(".{file_name}.tmp-{pid}"));
    let mut cleanup = Cleanup(vec![obj_tmp.clone(), so_tmp.clone()]);
    let _pending = [&obj_tmp, &so_tmp].map(|p| crate::interrupt::Pending::new(p));
    std::fs::write(&obj_tmp, &emitted.object)
        .with_context(|| format!("-o {}: cannot write in {}", out.display(), dir.display()))?;
    let start = Instant::now();
    link::link(&linker, &obj_tmp, &so_tmp, &file_name)?;
    let link_time = start.elapsed();
    let bytes = std::fs::read(&so_tmp).with_context(|| format!("reading {}", so_tmp.display()))?;
    let sizes = link::check_shared_object(&bytes, arch, &opts.prefix).context(
        "the linked shared object breaks Kestrel's guarantees (a bug; please report it)",
    )?;
    let text = header::header(&emitted.info, &file_name, source);
    write_atomically(&header_out, |f| {
        std::io::Write::write_all(f, text.as_bytes())
    })
    .with_context(|| format!("writing {}", header_out.display()))?;
    // Until the shared object is in place, the header alone is an unfinished output.
    let header_pending = crate::interrupt::Pending::new(&header_out);
    if let Err(e) = std::fs::rename(&so_tmp, out) {
        let _ = std::fs::remove_file(&header_out);
        return Err(e).with_context(|| format!("writing {}", out.display()));
    }
    drop(header_pending);
    let _ = std::fs::remove_file(&obj_tmp);
    cleanup.0.clear();
    Ok(AotOutput {
        so: out.to_path_buf(),
        header: header_out,
        info: emitted.info,
        sizes,
        codegen_time,
        link_time,
    })
}

/// Options of [`compile_so`].
#[derive(Clone, Debug, Default)]
pub struct CompileSoOptions {
    /// The pipeline; without one, the JIT's default (`O2`), so that a host `.so` computes bit
    /// for bit what the JIT computes.
    pub passes: PassOptions,
    /// Input shapes, and optionally sample arrays whose shapes bind the symbolic dimensions.
    pub inputs: InputSpec,
    pub aot: AotOptions,
}

/// `kestrel compile MODEL -o OUT.so`: binds the input shapes ([`InputPolicy::DefaultBatch`]: a
/// leading dimension left symbolic becomes 1, any other is an error), runs the pipeline and
/// writes `out` and its header ([`compile_graph`]), neither of which may be the model file.
/// `on_passes` sees the pass report before code generation ([`driver::prepare`]).
pub fn compile_so(
    model: LoadedModel,
    out: &Path,
    opts: &CompileSoOptions,
    on_passes: &mut dyn FnMut(&Report),
) -> Result<AotOutput> {
    check_tasks(opts.aot.tasks)?;
    driver::refuse_overwriting_inputs(&[out, &header_path(out)], &[&model.path])?;
    let pipeline = opts.passes.resolve(Backend::Jit.default_pipeline());
    let prepared = driver::prepare(
        model,
        &opts.inputs,
        InputPolicy::DefaultBatch,
        &pipeline,
        on_passes,
    )?;
    compile_graph(
        &prepared.graph,
        &opts.aot,
        out,
        &prepared.path.display().to_string(),
    )
}

/// The `--symbol-prefix` a shared object was compiled with: the `P` of its exported `P_model`
/// and `P_run_parallel` symbols (an error unless exactly one model is found).
pub fn detect_prefix(path: &Path) -> Result<String> {
    use object::{Object, ObjectSymbol};
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = object::File::parse(&*bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a shared object: {e}", path.display()))?;
    let names: Vec<String> = file
        .dynamic_symbols()
        .filter(|s| !s.is_undefined())
        .filter_map(|s| s.name().ok().map(str::to_string))
        .collect();
    let prefixes: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix("_model"))
        .filter(|p| names.iter().any(|n| *n == format!("{p}_run_parallel")))
        .map(str::to_string)
        .collect();
    match prefixes.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "{}: not a Kestrel model (no exported PREFIX_model and PREFIX_run_parallel symbols)",
            path.display()
        ),
        many => bail!(
            "{}: holds several models ({}); not supported by `kestrel run`",
            path.display(),
            many.join(", ")
        ),
    }
}

/// Converts a runtime dtype into the IR's.
pub fn runtime_dtype(dt: kestrel_runtime::DType) -> kestrel_ir::DType {
    use kestrel_ir::DType as D;
    use kestrel_runtime::DType as R;
    match dt {
        R::F32 => D::F32,
        R::U8 => D::U8,
        R::I8 => D::I8,
        R::U16 => D::U16,
        R::I16 => D::I16,
        R::I32 => D::I32,
        R::I64 => D::I64,
        R::Bool => D::Bool,
        R::F16 => D::F16,
        R::F64 => D::F64,
        R::U32 => D::U32,
        R::U64 => D::U64,
        R::BF16 => D::BF16,
    }
}

/// Loads a shared object with `kestrel_runtime::Model` (symbol prefix detected).
pub fn load_so(path: &Path) -> Result<kestrel_runtime::Model> {
    let prefix = detect_prefix(path)?;
    Ok(kestrel_runtime::Model::load_with_prefix(path, &prefix)?)
}

/// `kestrel run m.so`: binds the inputs as for ONNX models (the spec's shapes must be empty: a
/// compiled model's are fixed), runs the shared object's code (on `threads` pool workers when
/// above 1) and returns the named outputs.
pub fn run_so(
    path: &Path,
    specs: &InputSpec,
    threads: usize,
) -> Result<Vec<(String, kestrel_ir::Tensor)>> {
    let model = load_so(path)?;
    // The inputs as a graph, so binding checks and reports exactly as for ONNX models.
    let mut g = Graph::new(model.name());
    for t in model.inputs() {
        g.add_input(
            t.name.clone(),
            kestrel_ir::TensorType::known(runtime_dtype(t.dtype), &t.shape),
        );
    }
    let inputs = driver::bind_inputs(&g, specs, path)?;
    let refs: Vec<kestrel_runtime::TensorRef> = model
        .inputs()
        .iter()
        .zip(&inputs)
        .map(|(info, t)| kestrel_runtime::TensorRef {
            dtype: info.dtype,
            shape: &info.shape,
            data: &t.bytes()[..],
        })
        .collect();
    let pool = if threads > 1 {
        Some(kestrel_runtime::ThreadPool::new(threads)?)
    } else {
        None
    };
    let outs = model
        .run_to_vec(pool.as_ref(), &refs)
        .with_context(|| format!("running {}", path.display()))?;
    model
        .outputs()
        .iter()
        .zip(outs)
        .map(|(info, bytes)| {
            let t = kestrel_ir::Tensor::from_bytes(
                runtime_dtype(info.dtype),
                info.shape.clone(),
                bytes.into(),
            )?;
            Ok((info.name.clone(), t))
        })
        .collect()
}
