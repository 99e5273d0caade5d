//! Linking the object file into a shared object with LLD, and checking the result.
//!
//! The linker is, in this order: `$KESTREL_LINKER` (a path to `rust-lld` or `ld.lld`), the
//! `rust-lld` of the Rust toolchain (`$(rustc --print sysroot)/lib/rustlib/*/bin/rust-lld`),
//! or `ld.lld` on `PATH`. No C library is linked: the object imports nothing.

use anyhow::{anyhow, bail, Context, Result};
use kestrel_backends::aot::Arch;
use object::read::elf::{Dyn, FileHeader, SectionHeader};
use object::{elf, Object, ObjectSection, ObjectSymbol};
use std::path::{Path, PathBuf};
use std::process::Command;

/// An LLD executable, and whether it needs `-flavor gnu` (`rust-lld` does, `ld.lld` does not).
#[derive(Clone, Debug)]
pub struct Linker {
    pub path: PathBuf,
    pub flavor_gnu: bool,
}

fn is_rust_lld(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("rust-lld"))
}

/// Finds LLD (see the module documentation); the error says what was tried.
pub fn find_linker() -> Result<Linker> {
    if let Some(p) = std::env::var_os("KESTREL_LINKER") {
        let path = PathBuf::from(p);
        if !path.is_file() {
            bail!(
                "KESTREL_LINKER={} does not exist (it must name rust-lld or ld.lld)",
                path.display()
            );
        }
        let flavor_gnu = is_rust_lld(&path);
        return Ok(Linker { path, flavor_gnu });
    }
    let mut tried = Vec::new();
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    match Command::new(&rustc).args(["--print", "sysroot"]).output() {
        Ok(out) if out.status.success() => {
            let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            let rustlib = sysroot.join("lib").join("rustlib");
            let mut found: Vec<PathBuf> = std::fs::read_dir(&rustlib)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.path().join("bin").join("rust-lld"))
                        .filter(|p| p.is_file())
                        .collect()
                })
                .unwrap_or_default();
            found.sort();
            // Prefer the host's own toolchain directory when several are installed.
            let host = format!("{}-", std::env::consts::ARCH);
            found.sort_by_key(|p| {
                !p.parent()
                    .and_then(|b| b.parent())
                    .and_then(|d| d.file_name())
                    .is_some_and(|n| n.to_string_lossy().starts_with(&host))
            });
            if let Some(path) = found.into_iter().next() {
                return Ok(Linker {
                    path,
                    flavor_gnu: true,
                });
            }
            tried.push(format!("no rust-lld under {}/*/bin", rustlib.display()));
        }
        Ok(_) => tried.push(format!(
            "`{} --print sysroot` failed",
            rustc.to_string_lossy()
        )),
        Err(e) => tried.push(format!("cannot run `{}`: {e}", rustc.to_string_lossy())),
    }
    if let Some(path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("ld.lld"))
            .find(|p| p.is_file())
    }) {
        return Ok(Linker {
            path,
            flavor_gnu: false,
        });
    }
    tried.push("no ld.lld on PATH".into());
    bail!(
        "no linker found to write the shared object ({}); install a Rust toolchain with rustup \
         (it ships rust-lld) or LLD (`apt-get install lld`), or set KESTREL_LINKER to rust-lld or ld.lld",
        tried.join("; ")
    )
}

/// Links `object` into the shared object `out` (soname `soname`).
pub fn link(linker: &Linker, object: &Path, out: &Path, soname: &str) -> Result<()> {
    let mut cmd = Command::new(&linker.path);
    if linker.flavor_gnu {
        cmd.args(["-flavor", "gnu"]);
    }
    cmd.args([
        "-shared",
        // References to the model's own exported symbols bind inside the object: no PLT slots.
        "-Bsymbolic",
        "--no-undefined",
        // Drops data objects nothing references (exported symbols are roots).
        "--gc-sections",
        "-z",
        "text",
        "-z",
        "noexecstack",
        "-z",
        "relro",
        "-z",
        "now",
        "--hash-style=both",
        "--build-id=none",
        "-soname",
        soname,
        "-o",
    ]);
    cmd.arg(out).arg(object);
    let output = cmd
        .output()
        .with_context(|| format!("running the linker {}", linker.path.display()))?;
    if !output.status.success() {
        bail!(
            "the linker {} failed: {}",
            linker.path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Sizes of a linked shared object, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoSizes {
    pub file: u64,
    /// `.text`: machine code.
    pub code: u64,
    /// `.rodata`: weights, packed weights and tables.
    pub rodata: u64,
    /// `.data.rel.ro` and `.data`: descriptors and the CPU-check word.
    pub descriptors: u64,
}

/// Checks what `kestrel compile` promises about a shared object: an ELF shared object for
/// `arch`, no `DT_NEEDED`, no undefined symbol, only relative dynamic relocations (no PLT or
/// symbol lookups), and the exported symbols of the ABI. Returns its sizes.
pub fn check_shared_object(bytes: &[u8], arch: Arch, prefix: &str) -> Result<SoSizes> {
    let file = object::File::parse(bytes).map_err(|e| anyhow!("not an ELF file: {e}"))?;
    let want = match arch {
        Arch::X86_64 => object::Architecture::X86_64,
        Arch::Aarch64 => object::Architecture::Aarch64,
        Arch::Riscv64 => object::Architecture::Riscv64,
    };
    if file.architecture() != want {
        bail!("architecture is {:?}, not {want:?}", file.architecture());
    }
    if file.kind() != object::ObjectKind::Dynamic {
        bail!("not a shared object ({:?})", file.kind());
    }
    let undefined: Vec<String> = file
        .dynamic_symbols()
        .filter(|s| s.is_undefined())
        .filter_map(|s| s.name().ok().map(str::to_string))
        .filter(|n| !n.is_empty())
        .collect();
    if !undefined.is_empty() {
        bail!("undefined symbols: {}", undefined.join(", "));
    }
    for name in ["model", "run", "run_parallel", "check_cpu", "entry"] {
        let want = format!("{prefix}_{name}");
        if !file
            .dynamic_symbols()
            .any(|s| !s.is_undefined() && s.name() == Ok(want.as_str()))
        {
            bail!("exported symbol {want} is missing");
        }
    }
    let needed = dynamic_needed_and_relocs(bytes, arch)?;
    if !needed.0.is_empty() {
        bail!("DT_NEEDED entries: {}", needed.0.join(", "));
    }
    if let Some(bad) = needed.1 {
        bail!("a dynamic relocation of type {bad} that is not relative");
    }
    let size = |names: &[&str]| -> u64 {
        file.sections()
            .filter(|s| s.name().is_ok_and(|n| names.contains(&n)))
            .map(|s| s.size())
            .sum()
    };
    Ok(SoSizes {
        file: bytes.len() as u64,
        code: size(&[".text"]),
        rodata: size(&[".rodata"]),
        descriptors: size(&[".data.rel.ro", ".data"]),
    })
}

/// The `DT_NEEDED` names and the first non-relative dynamic relocation type, if any.
fn dynamic_needed_and_relocs(bytes: &[u8], arch: Arch) -> Result<(Vec<String>, Option<u32>)> {
    let header = elf::FileHeader64::<object::Endianness>::parse(bytes)
        .map_err(|e| anyhow!("ELF header: {e}"))?;
    let endian = header.endian().map_err(|e| anyhow!("ELF header: {e}"))?;
    let sections = header
        .sections(endian, bytes)
        .map_err(|e| anyhow!("ELF sections: {e}"))?;
    let relative = match arch {
        Arch::X86_64 => elf::R_X86_64_RELATIVE,
        Arch::Aarch64 => elf::R_AARCH64_RELATIVE,
        Arch::Riscv64 => elf::R_RISCV_RELATIVE,
    };
    let mut needed = Vec::new();
    let mut bad = None;
    for section in sections.iter() {
        if let Some((dyns, link)) = section
            .dynamic(endian, bytes)
            .map_err(|e| anyhow!("dynamic section: {e}"))?
        {
            let strings = sections
                .strings(endian, bytes, link)
                .map_err(|e| anyhow!("dynamic strings: {e}"))?;
            for d in dyns {
                if d.tag32(endian) == Some(elf::DT_NEEDED as i32) {
                    let name = d
                        .string(endian, strings)
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .unwrap_or_else(|_| "?".into());
                    needed.push(name);
                }
            }
        }
        if let Some((relas, _)) = section
            .rela(endian, bytes)
            .map_err(|e| anyhow!("relocations: {e}"))?
        {
            for r in relas {
                let ty = r.r_type(endian, false);
                if ty != relative && bad.is_none() {
                    bad = Some(ty);
                }
            }
        }
    }
    Ok((needed, bad))
}
