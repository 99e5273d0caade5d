//! `kestrel prune`: structured pruning (writes a smaller float ONNX model).
//!
//! Not available yet: the command parses its full option set, then says so.

use super::not_yet;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PruneArgs {
    pub model: PathBuf,
    #[arg(long)]
    pub ratio: f32,
    #[arg(long, default_value = "l1")]
    pub importance: String,
    #[arg(long)]
    pub calib: Option<PathBuf>,
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

pub fn run(_args: PruneArgs) -> Result<()> {
    not_yet("`kestrel prune`")
}
