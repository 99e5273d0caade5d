//! The pass manager: runs a pipeline over a graph with verification, dumps, disabling, a pass
//! limit, timing and fixpoint groups.
//!
//! Semantics:
//! - A *pass application* is one run of one pass (inside a fixpoint, every iteration counts).
//!   Applications are numbered from 1 in execution order; disabled passes are skipped without
//!   being counted.
//! - Verification: the input graph is verified first; then the graph is verified after every
//!   application that changed it (and after every application, changed or not, when
//!   `verify_each` is set, which catches a pass that mutates while reporting no change), and
//!   always at the end of the pipeline.
//! - Dumps: with a [`DumpSink`], the input is written as `000-input.kir` and, after every
//!   application that changed the graph, the graph as `NNN-<pass>.kir` (NNN = application number),
//!   so the "before" of a dump is the preceding file. With a dump filter only applications of that
//!   pass are written (and not the input). Text is the IR printer's with weights elided.
//! - `pass_limit = Some(n)`: stop after `n` applications (bisecting a miscompile: the smallest
//!   `n` whose output is wrong names the guilty application in the report).
//! - Fixpoint groups run their items repeatedly until one whole iteration changes nothing. When
//!   `max_iters` iterations all changed something, the group stops and a **warning** is recorded
//!   in [`Report::warnings`]: the graph is still valid and equivalent, only not fully simplified,
//!   so compilation goes on.

use crate::check::{dump_text, verify_graph};
use crate::pipeline::{Pipeline, PipelineItem, DEFAULT_MAX_ITERS};
use crate::registry::{create_pass, group, is_pass};
use crate::{Pass, PassContext, PassError};
use kestrel_ir::Graph;
use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where dumps go.
pub trait DumpSink {
    /// Stores `text` under `file_name` (`003-cse.kir`).
    fn write(&mut self, file_name: &str, text: &str) -> std::io::Result<()>;
}

/// Writes dumps as files in a directory (created if missing).
#[derive(Clone, Debug)]
pub struct DirSink(pub PathBuf);

impl DumpSink for DirSink {
    fn write(&mut self, file_name: &str, text: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.0)?;
        std::fs::write(self.0.join(file_name), text)
    }
}

/// Keeps dumps in memory, in write order.
#[derive(Clone, Debug, Default)]
pub struct MemorySink(pub Vec<(String, String)>);

impl DumpSink for MemorySink {
    fn write(&mut self, file_name: &str, text: &str) -> std::io::Result<()> {
        self.0.push((file_name.to_string(), text.to_string()));
        Ok(())
    }
}

/// One pass application.
#[derive(Clone, Debug)]
pub struct PassRun {
    /// Application number, from 1.
    pub index: usize,
    pub pass: &'static str,
    pub changed: bool,
    pub time: Duration,
    /// Node count after the application.
    pub nodes: usize,
}

/// What a pipeline run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The pipeline as run (groups expanded).
    pub pipeline: String,
    pub runs: Vec<PassRun>,
    /// Non-fatal problems (fixpoint caps hit).
    pub warnings: Vec<String>,
    /// The pass limit stopped the pipeline early.
    pub stopped_by_limit: bool,
    pub nodes_before: usize,
    pub nodes_after: usize,
    /// Time spent verifying.
    pub verify_time: Duration,
    pub total_time: Duration,
    /// Dumps kept in memory by [`run_pipeline`] when `dump_after` is set without `dump_dir`.
    pub dumps: Vec<(String, String)>,
    /// Notes passes recorded (e.g. an e-graph's stop reason), each prefixed `NNN-pass: `.
    pub notes: Vec<String>,
}

impl Report {
    /// The `--time-passes` table: one row per pass (applications, how many changed the graph,
    /// total time, share of the pipeline), slowest first, then verification and the total.
    pub fn timing_table(&self) -> String {
        let mut rows: Vec<(&str, usize, usize, Duration)> = Vec::new();
        for r in &self.runs {
            match rows.iter_mut().find(|row| row.0 == r.pass) {
                Some(row) => {
                    row.1 += 1;
                    row.2 += r.changed as usize;
                    row.3 += r.time;
                }
                None => rows.push((r.pass, 1, r.changed as usize, r.time)),
            }
        }
        rows.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.cmp(b.0)));
        let total = self.total_time.as_secs_f64().max(1e-12);
        let mut s = format!(
            "{:<28} {:>5} {:>8} {:>12} {:>7}\n",
            "pass", "runs", "changed", "time (ms)", "share"
        );
        let mut line = |name: &str, runs: String, changed: String, d: Duration| {
            s.push_str(&format!(
                "{:<28} {:>5} {:>8} {:>12.3} {:>6.1}%\n",
                name,
                runs,
                changed,
                d.as_secs_f64() * 1e3,
                100.0 * d.as_secs_f64() / total
            ));
        };
        for (name, runs, changed, d) in rows {
            line(name, runs.to_string(), changed.to_string(), d);
        }
        line("(verify)", String::new(), String::new(), self.verify_time);
        line(
            "total",
            self.runs.len().to_string(),
            String::new(),
            self.total_time,
        );
        s
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pipeline {}: {} pass applications, {} changed the graph; nodes {} -> {}",
            if self.pipeline.is_empty() {
                "(empty)"
            } else {
                &self.pipeline
            },
            self.runs.len(),
            self.runs.iter().filter(|r| r.changed).count(),
            self.nodes_before,
            self.nodes_after
        )?;
        if self.stopped_by_limit {
            writeln!(
                f,
                "stopped by the pass limit after application {}",
                self.runs.len()
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

enum Step {
    Pass(Box<dyn Pass>),
    Fixpoint {
        label: String,
        steps: Vec<Step>,
        max_iters: usize,
    },
}

/// Runs a pipeline; see the module docs for the semantics of each setting.
pub struct PassManager {
    pipeline: String,
    steps: Vec<Step>,
    disabled: HashSet<String>,
    pass_limit: Option<usize>,
    verify_each: bool,
    dump: Option<Box<dyn DumpSink>>,
    dump_only: Option<String>,
}

fn build(items: &[PipelineItem]) -> Result<Vec<Step>, PassError> {
    items
        .iter()
        .map(|item| match item {
            PipelineItem::Pass { name, options } => create_pass(name, options).map(Step::Pass),
            PipelineItem::Fixpoint { items, max_iters } => Ok(Step::Fixpoint {
                label: item.to_string(),
                steps: build(items)?,
                max_iters: max_iters.unwrap_or(DEFAULT_MAX_ITERS),
            }),
        })
        .collect()
}

struct RunState<'a> {
    report: Report,
    cx: &'a PassContext,
    stop: bool,
    start: Instant,
}

impl PassManager {
    /// A manager for `pipeline` (groups are expanded); fails on unknown passes or options.
    pub fn new(pipeline: &Pipeline) -> Result<Self, PassError> {
        let expanded = pipeline.expanded();
        Ok(PassManager {
            pipeline: expanded.to_string(),
            steps: build(&expanded.items)?,
            disabled: HashSet::new(),
            pass_limit: None,
            verify_each: false,
            dump: None,
            dump_only: None,
        })
    }

    /// Appends a pass object (passes outside the registry, tests).
    pub fn add_pass(&mut self, pass: Box<dyn Pass>) -> &mut Self {
        self.pipeline = join(&self.pipeline, pass.name());
        self.steps.push(Step::Pass(pass));
        self
    }

    /// Appends a fixpoint group of pass objects with an iteration cap.
    pub fn add_fixpoint(&mut self, passes: Vec<Box<dyn Pass>>, max_iters: usize) -> &mut Self {
        let names: Vec<&str> = passes.iter().map(|p| p.name()).collect();
        let label = format!("fixpoint(max_iters={max_iters},{})", names.join(","));
        self.pipeline = join(&self.pipeline, &label);
        self.steps.push(Step::Fixpoint {
            label,
            steps: passes.into_iter().map(Step::Pass).collect(),
            max_iters,
        });
        self
    }

    /// Skips every application of pass `name`. Unknown names are an error.
    pub fn disable(&mut self, name: &str) -> Result<&mut Self, PassError> {
        if !is_pass(name) && group(name).is_none() {
            return Err(PassError::UnknownPass {
                name: name.to_string(),
                known: crate::registry::known_names(),
            });
        }
        match group(name) {
            Some(p) => {
                // A group is disabled by disabling its passes.
                fn names(items: &[PipelineItem], out: &mut HashSet<String>) {
                    for i in items {
                        match i {
                            PipelineItem::Pass { name, .. } => {
                                out.insert(name.clone());
                            }
                            PipelineItem::Fixpoint { items, .. } => names(items, out),
                        }
                    }
                }
                names(&p.expanded().items, &mut self.disabled);
            }
            None => {
                self.disabled.insert(name.to_string());
            }
        }
        Ok(self)
    }

    /// Stops after `limit` pass applications (`None`: no limit).
    pub fn pass_limit(&mut self, limit: Option<usize>) -> &mut Self {
        self.pass_limit = limit;
        self
    }

    /// Verifies after every pass application, not only at the end.
    pub fn verify_each(&mut self, on: bool) -> &mut Self {
        self.verify_each = on;
        self
    }

    /// Dumps to `sink`; with `only = Some(pass)`, only after applications of that pass.
    pub fn dump(&mut self, sink: Box<dyn DumpSink>, only: Option<String>) -> &mut Self {
        self.dump = Some(sink);
        self.dump_only = only;
        self
    }

    /// Takes back the dump sink (to read a [`MemorySink`]).
    pub fn take_dump(&mut self) -> Option<Box<dyn DumpSink>> {
        self.dump.take()
    }

    /// Runs the pipeline on `g`.
    pub fn run(&mut self, g: &mut Graph, cx: &PassContext) -> Result<Report, PassError> {
        let mut st = RunState {
            report: Report {
                pipeline: self.pipeline.clone(),
                nodes_before: g.nodes.len(),
                stopped_by_limit: self.pass_limit == Some(0) && !self.steps.is_empty(),
                ..Report::default()
            },
            cx,
            stop: self.pass_limit == Some(0),
            start: Instant::now(),
        };
        let t = Instant::now();
        verify_graph(g).map_err(|errors| PassError::VerifyInput { errors })?;
        st.report.verify_time += t.elapsed();
        if self.dump_only.is_none() {
            self.write_dump("000-input.kir", g)?;
        }
        let steps = std::mem::take(&mut self.steps);
        let result = self.run_steps(&steps, g, &mut st);
        self.steps = steps;
        result?;
        if !self.verify_each || st.report.runs.is_empty() {
            let t = Instant::now();
            verify_graph(g).map_err(|errors| PassError::VerifyEnd { errors })?;
            st.report.verify_time += t.elapsed();
        }
        st.report.nodes_after = g.nodes.len();
        st.report.total_time = st.start.elapsed();
        Ok(st.report)
    }

    fn write_dump(&mut self, file: &str, g: &Graph) -> Result<(), PassError> {
        self.write_dump_notes(file, g, &[])
    }

    fn write_dump_notes(
        &mut self,
        file: &str,
        g: &Graph,
        notes: &[String],
    ) -> Result<(), PassError> {
        if let Some(sink) = &mut self.dump {
            let mut text = String::new();
            for n in notes {
                text.push_str("// ");
                text.push_str(n);
                text.push('\n');
            }
            text.push_str(&dump_text(g));
            sink.write(file, &text).map_err(|source| PassError::Dump {
                file: file.to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// Runs `steps` once; returns whether any application changed the graph.
    fn run_steps(
        &mut self,
        steps: &[Step],
        g: &mut Graph,
        st: &mut RunState,
    ) -> Result<bool, PassError> {
        let mut changed = false;
        for step in steps {
            if st.stop {
                break;
            }
            match step {
                Step::Pass(pass) => changed |= self.apply(pass.as_ref(), g, st)?,
                Step::Fixpoint {
                    label,
                    steps,
                    max_iters,
                } => {
                    let mut converged = false;
                    for _ in 0..*max_iters {
                        let c = self.run_steps(steps, g, st)?;
                        changed |= c;
                        if !c || st.stop {
                            converged = true;
                            break;
                        }
                    }
                    if !converged {
                        st.report.warnings.push(format!(
                            "{label} still changed the graph after {max_iters} iterations; continuing with the graph as it is"
                        ));
                    }
                }
            }
        }
        Ok(changed)
    }

    fn apply(
        &mut self,
        pass: &dyn Pass,
        g: &mut Graph,
        st: &mut RunState,
    ) -> Result<bool, PassError> {
        let name = pass.name();
        if self.disabled.contains(name) {
            return Ok(false);
        }
        let index = st.report.runs.len() + 1;
        let t = Instant::now();
        let changed = pass.run(g, st.cx)?;
        let time = t.elapsed();
        let notes = st.cx.take_notes();
        for n in &notes {
            st.report.notes.push(format!("{index:03}-{name}: {n}"));
        }
        st.report.runs.push(PassRun {
            index,
            pass: name,
            changed,
            time,
            nodes: g.nodes.len(),
        });
        // Every application that changed the graph is verified; `verify_each` also checks the
        // ones that claim they changed nothing.
        if changed || self.verify_each {
            let t = Instant::now();
            verify_graph(g).map_err(|errors| PassError::Verify {
                pass: name.to_string(),
                index,
                errors,
            })?;
            st.report.verify_time += t.elapsed();
        }
        if changed && self.dump_only.as_deref().is_none_or(|only| only == name) {
            self.write_dump_notes(&format!("{index:03}-{name}.kir"), g, &notes)?;
        }
        if self.pass_limit.is_some_and(|l| index >= l) {
            st.stop = true;
            st.report.stopped_by_limit = true;
        }
        Ok(changed)
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a},{b}")
    }
}

/// What the CLI passes to [`run_pipeline`].
#[derive(Clone, Debug, Default)]
pub struct PipelineOptions {
    /// A named pipeline (`O0`, `O1`) or a textual pipeline.
    pub pipeline: String,
    /// Pass (or group) names to skip.
    pub disable: Vec<String>,
    /// Stop after this many pass applications.
    pub pass_limit: Option<usize>,
    /// Collect per-pass timing for printing (`Report::timing_table`); timing is always measured,
    /// this only records the request for the caller.
    pub time_passes: bool,
    pub verify_each: bool,
    /// Write numbered dumps into this directory.
    pub dump_dir: Option<PathBuf>,
    /// Dump only after applications of this pass; `all` (or `None` with `dump_dir`) dumps every
    /// application that changed the graph. Without `dump_dir` the dumps are kept in
    /// [`Report::dumps`].
    pub dump_after: Option<String>,
    /// Calibration data for the `quantize` pass (`.npy`, `.npz` or a folder of them): the
    /// driver loads it and puts a calibrator into the [`PassContext`]; the pass manager itself
    /// does not read it.
    pub calibration: Option<PathBuf>,
}

/// Resolves `opts.pipeline`, runs it on `g` with the other options, and returns the report.
pub fn run_pipeline(
    g: &mut Graph,
    opts: &PipelineOptions,
    cx: &PassContext,
) -> Result<Report, PassError> {
    let pipeline = crate::pipeline::resolve_pipeline(&opts.pipeline)?;
    let mut pm = PassManager::new(&pipeline)?;
    for d in &opts.disable {
        pm.disable(d)?;
    }
    pm.pass_limit(opts.pass_limit).verify_each(opts.verify_each);
    let only = match opts.dump_after.as_deref() {
        None | Some("all") => None,
        Some(p) => {
            if !is_pass(p) {
                return Err(PassError::UnknownPass {
                    name: p.to_string(),
                    known: crate::registry::known_names(),
                });
            }
            Some(p.to_string())
        }
    };
    let in_memory = opts.dump_dir.is_none() && opts.dump_after.is_some();
    let memory = std::rc::Rc::new(std::cell::RefCell::new(MemorySink::default()));
    if let Some(dir) = &opts.dump_dir {
        pm.dump(Box::new(DirSink(dir.clone())), only);
    } else if in_memory {
        pm.dump(Box::new(SharedSink(memory.clone())), only);
    }
    let mut report = pm.run(g, cx)?;
    if in_memory {
        report.dumps = std::mem::take(&mut memory.borrow_mut().0);
    }
    Ok(report)
}

struct SharedSink(std::rc::Rc<std::cell::RefCell<MemorySink>>);

impl DumpSink for SharedSink {
    fn write(&mut self, file_name: &str, text: &str) -> std::io::Result<()> {
        self.0.borrow_mut().write(file_name, text)
    }
}
