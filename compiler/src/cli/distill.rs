//! `kestrel distill`: knowledge distillation (writes the trained student).
//!
//! Not available yet: the command parses its full option set, then says so.

use super::not_yet;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DistillArgs {
    #[arg(long)]
    pub teacher: PathBuf,
    #[arg(long)]
    pub student: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub labels: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 4.0)]
    pub temperature: f32,
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

pub fn run(_args: DistillArgs) -> Result<()> {
    not_yet("`kestrel distill`")
}
