//! `kestrel quantize`: int8 quantization (writes QDQ ONNX).
//!
//! Not available yet: the command parses its full option set, then says so.

use super::not_yet;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    pub model: PathBuf,
    #[arg(long)]
    pub calib: PathBuf,
    #[arg(long, default_value = "minmax")]
    pub method: String,
    #[arg(long = "per-channel")]
    pub per_channel: bool,
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

pub fn run(_args: QuantizeArgs) -> Result<()> {
    not_yet("`kestrel quantize`")
}
