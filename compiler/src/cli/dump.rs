//! `kestrel dump`: the IR after import or after passes, as text or graphviz.

use super::{print_pass_report, InputArgs, PipelineArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use kestrel::driver;
use std::path::PathBuf;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpFormat {
    Text,
    Dot,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// An .onnx model or a .kir dump.
    pub model: PathBuf,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Dump after this pass (or `all`: one file per pass that changed the graph).
    #[arg(long)]
    pub after: Option<String>,
    /// Folder for `--after all` dumps.
    #[arg(long = "dump-dir")]
    pub dump_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DumpFormat::Text)]
    pub format: DumpFormat,
    /// Write the dump to FILE, and large constants to the sidecar FILE's stem + `.weights.npz`
    /// (without -o, large constants print as `elided`). A FILE ending in `.onnx` receives the
    /// graph as a standard ONNX model instead.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: DumpArgs) -> Result<()> {
    if args.dump_dir.is_some() && args.after.is_none() {
        bail!("--dump-dir needs --after PASS or --after all");
    }
    if args.after.is_some() && args.pipeline.pipeline.is_none() {
        bail!("--after needs --pipeline (the passes whose results to dump)");
    }
    if args.format == DumpFormat::Dot && args.output.is_some() {
        bail!("--format dot prints to stdout; redirect it instead of -o");
    }
    let onnx_output = args
        .output
        .as_deref()
        .filter(|p| kestrel::tensor_io::extension(p).as_deref() == Some("onnx"));
    if onnx_output.is_some() && args.after.is_some() {
        bail!("--after prints dumps of passes; -o FILE.onnx writes the final graph: give one");
    }
    if let Some(out) = &args.output {
        driver::check_output_path(&args.model, out, args.force)?;
    }
    let model = kestrel::load(&args.model)?;
    let spec = args.inputs.spec()?;
    let mut pipeline = args.pipeline.options().resolve("O0");
    pipeline.dump_dir = args.dump_dir.clone();
    pipeline.dump_after = args.after.clone();
    let time_passes = args.pipeline.time_passes;
    let prepared = driver::prepare(
        model,
        &spec,
        driver::InputPolicy::ShapesOnly,
        &pipeline,
        &mut |r| print_pass_report(r, time_passes),
    )?;
    let report = &prepared.report;
    if let Some(dir) = &args.dump_dir {
        eprintln!(
            "kestrel: wrote {} dumps to {}",
            report.runs.iter().filter(|r| r.changed).count() + 1,
            dir.display()
        );
        return Ok(());
    }
    if args.after.is_some() {
        // Each dump is a whole graph; a comment line names the pass application it follows.
        let mut out = String::new();
        for (file, text) in &report.dumps {
            out.push_str(&format!("// ---- {file}\n{text}"));
        }
        say_raw!("{out}");
        return Ok(());
    }
    match args.format {
        DumpFormat::Dot => {
            say_raw!("{}", kestrel_ir::dot::to_dot(&prepared.graph));
            Ok(())
        }
        DumpFormat::Text => match &args.output {
            Some(path) if onnx_output.is_some() => {
                kestrel::onnx::write_model(&prepared.graph, &Default::default(), path).with_context(
                    || format!("exporting {} to {}", args.model.display(), path.display()),
                )
            }
            Some(path) => kestrel::dump::write_kir(&prepared.graph, path, args.force),
            None => {
                // A closed pipe (`kestrel dump m.onnx | head`) is not an error worth reporting.
                let text = kestrel::dump::to_text(&prepared.graph);
                let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
                Ok(())
            }
        },
    }
}
