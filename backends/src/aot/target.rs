//! Targets and CPU features of `kestrel compile` (syntax: `docs/CLI.md`), and the Cranelift ISA
//! they describe.
//!
//! Every Cranelift ISA flag of the target is set explicitly, to true or false, from the feature
//! set: Cranelift's CPU presets are incomplete (`x86-64-v3` lacks `has_avx`, which turns every
//! `fma` into a libcall; see `docs/CRANELIFT.md`), so they are never used. Kernels read the flags back
//! from the ISA as [`crate::jit::IsaFlags`], the same way for the host ISA and for any target's.

use super::AotError;
use cranelift_codegen::isa::TargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use std::sync::Arc;
use target_lexicon::Triple;

/// The architectures `kestrel compile` writes shared objects for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
    Riscv64,
}

/// The target triples `kestrel compile --target` accepts.
pub const TARGETS: [&str; 3] = [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "riscv64gc-unknown-linux-gnu",
];

/// One CPU feature as the command line names it.
pub struct Feature {
    /// The name after `+` (LLVM/Rust spelling).
    pub name: &'static str,
    /// The Cranelift ISA flags it turns on.
    pub flags: &'static [&'static str],
    /// Features it needs (added with it, removed with it).
    pub implies: &'static [&'static str],
    /// x86-64: the CPUID bit proving it, `(leaf, subleaf, register, bit)` with register
    /// 0 = eax, 1 = ebx, 2 = ecx, 3 = edx.
    pub cpuid: Option<(u32, u32, usize, u32)>,
    /// x86-64: XCR0 bits the OS must enable (register state saved on context switches).
    pub xcr0: u64,
}

const fn x86(
    name: &'static str,
    flag: &'static [&'static str],
    implies: &'static [&'static str],
    cpuid: (u32, u32, usize, u32),
    xcr0: u64,
) -> Feature {
    Feature {
        name,
        flags: flag,
        implies,
        cpuid: Some(cpuid),
        xcr0,
    }
}

const fn plain(
    name: &'static str,
    flags: &'static [&'static str],
    implies: &'static [&'static str],
) -> Feature {
    Feature {
        name,
        flags,
        implies,
        cpuid: None,
        xcr0: 0,
    }
}

/// XCR0: SSE and AVX register state.
const XCR0_AVX: u64 = 0x6;
/// XCR0: SSE, AVX and the three AVX-512 state components.
const XCR0_AVX512: u64 = 0xe6;

const X86_FEATURES: &[Feature] = &[
    x86("sse3", &["has_sse3"], &[], (1, 0, 2, 0), 0),
    x86("ssse3", &["has_ssse3"], &["sse3"], (1, 0, 2, 9), 0),
    x86("sse4.1", &["has_sse41"], &["ssse3"], (1, 0, 2, 19), 0),
    x86("sse4.2", &["has_sse42"], &["sse4.1"], (1, 0, 2, 20), 0),
    x86("popcnt", &["has_popcnt"], &[], (1, 0, 2, 23), 0),
    x86("cmpxchg16b", &["has_cmpxchg16b"], &[], (1, 0, 2, 13), 0),
    x86("avx", &["has_avx"], &["sse4.2"], (1, 0, 2, 28), XCR0_AVX),
    x86("fma", &["has_fma"], &["avx"], (1, 0, 2, 12), XCR0_AVX),
    x86("avx2", &["has_avx2"], &["avx"], (7, 0, 1, 5), XCR0_AVX),
    x86("bmi1", &["has_bmi1"], &[], (7, 0, 1, 3), 0),
    x86("bmi2", &["has_bmi2"], &[], (7, 0, 1, 8), 0),
    x86("lzcnt", &["has_lzcnt"], &[], (0x8000_0001, 0, 2, 5), 0),
    x86(
        "avx512f",
        &["has_avx512f"],
        &["avx2", "fma"],
        (7, 0, 1, 16),
        XCR0_AVX512,
    ),
    x86(
        "avx512dq",
        &["has_avx512dq"],
        &["avx512f"],
        (7, 0, 1, 17),
        XCR0_AVX512,
    ),
    x86(
        "avx512vl",
        &["has_avx512vl"],
        &["avx512f"],
        (7, 0, 1, 31),
        XCR0_AVX512,
    ),
    x86(
        "avx512vbmi",
        &["has_avx512vbmi"],
        &["avx512f"],
        (7, 0, 2, 1),
        XCR0_AVX512,
    ),
    x86(
        "avx512vnni",
        &["has_avx512vnni"],
        &["avx512f"],
        (7, 0, 2, 11),
        XCR0_AVX512,
    ),
    x86(
        "avx512bitalg",
        &["has_avx512bitalg"],
        &["avx512f"],
        (7, 0, 2, 12),
        XCR0_AVX512,
    ),
    x86(
        "avxvnni",
        &["has_avx_vnni"],
        &["avx2"],
        (7, 1, 0, 4),
        XCR0_AVX,
    ),
];

/// x86-64-v2: the baseline of `--cpu generic` and of feature lists.
const X86_BASELINE: &[&str] = &["sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "cmpxchg16b"];

const AARCH64_FEATURES: &[Feature] = &[
    plain("lse", &["has_lse"], &[]),
    plain("pauth", &["has_pauth"], &[]),
    plain("fp16", &["has_fp16"], &[]),
    plain("dotprod", &["has_dotprod"], &[]),
    plain("i8mm", &["has_i8mm"], &[]),
];

/// armv8-a: nothing beyond the architecture (NEON and FP are part of it).
const AARCH64_BASELINE: &[&str] = &[];

const RISCV64_FEATURES: &[Feature] = &[
    plain("m", &["has_m"], &[]),
    plain("a", &["has_a"], &[]),
    plain("f", &["has_f"], &["zicsr"]),
    plain("d", &["has_d"], &["f"]),
    plain("c", &["has_zca", "has_zcd"], &[]),
    plain("zicsr", &["has_zicsr"], &[]),
    plain("zifencei", &["has_zifencei"], &[]),
    plain(
        "v",
        &["has_v", "has_zvl32b", "has_zvl64b", "has_zvl128b"],
        &["d"],
    ),
    plain("zba", &["has_zba"], &[]),
    plain("zbb", &["has_zbb"], &[]),
    plain("zbc", &["has_zbc"], &[]),
    plain("zbs", &["has_zbs"], &[]),
    plain("zbkb", &["has_zbkb"], &[]),
    plain("zicond", &["has_zicond"], &[]),
    plain("zfa", &["has_zfa"], &["f"]),
    plain("zcb", &["has_zcb"], &["c"]),
];

/// rv64gc: IMAFD, Zicsr, Zifencei and C.
const RISCV64_BASELINE: &[&str] = &["m", "a", "f", "d", "c", "zicsr", "zifencei"];

/// Cranelift boolean flags of each ISA that no feature controls; they are set to false.
const X86_OTHER_FLAGS: &[&str] = &[];
const AARCH64_OTHER_FLAGS: &[&str] = &[
    "sign_return_address",
    "sign_return_address_all",
    "sign_return_address_with_bkey",
    "use_bti",
];
const RISCV64_OTHER_FLAGS: &[&str] = &[
    "has_zfhmin",
    "has_zfh",
    "has_zvfh",
    "has_zvbb",
    "has_zvl256b",
    "has_zvl512b",
    "has_zvl1024b",
    "has_zvl2048b",
    "has_zvl4096b",
    "has_zvl8192b",
    "has_zvl16384b",
    "has_zvl32768b",
    "has_zvl65536b",
];

impl Arch {
    /// Parses a `--target` triple.
    pub fn from_triple(triple: &str) -> Result<Arch, AotError> {
        match triple {
            "x86_64-unknown-linux-gnu" => Ok(Arch::X86_64),
            "aarch64-unknown-linux-gnu" => Ok(Arch::Aarch64),
            "riscv64gc-unknown-linux-gnu" => Ok(Arch::Riscv64),
            _ => Err(AotError::UnsupportedTarget {
                triple: triple.to_string(),
            }),
        }
    }

    /// The architecture of the machine running Kestrel, if it is a supported target.
    pub fn host() -> Option<Arch> {
        if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            Some(Arch::X86_64)
        } else if cfg!(all(target_arch = "aarch64", target_os = "linux")) {
            Some(Arch::Aarch64)
        } else if cfg!(all(target_arch = "riscv64", target_os = "linux")) {
            Some(Arch::Riscv64)
        } else {
            None
        }
    }

    pub fn triple(self) -> &'static str {
        match self {
            Arch::X86_64 => TARGETS[0],
            Arch::Aarch64 => TARGETS[1],
            Arch::Riscv64 => TARGETS[2],
        }
    }

    /// Every feature `--cpu` may name for this architecture.
    pub fn features(self) -> &'static [Feature] {
        match self {
            Arch::X86_64 => X86_FEATURES,
            Arch::Aarch64 => AARCH64_FEATURES,
            Arch::Riscv64 => RISCV64_FEATURES,
        }
    }

    /// The features of `--cpu generic`.
    pub fn baseline(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => X86_BASELINE,
            Arch::Aarch64 => AARCH64_BASELINE,
            Arch::Riscv64 => RISCV64_BASELINE,
        }
    }

    fn other_flags(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => X86_OTHER_FLAGS,
            Arch::Aarch64 => AARCH64_OTHER_FLAGS,
            Arch::Riscv64 => RISCV64_OTHER_FLAGS,
        }
    }

    /// The name of the `--cpu generic` baseline.
    pub fn baseline_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86-64-v2",
            Arch::Aarch64 => "armv8-a",
            Arch::Riscv64 => "rv64gc",
        }
    }

    pub fn feature(self, name: &str) -> Option<&'static Feature> {
        self.features().iter().find(|f| f.name == name)
    }
}

/// CPUID tests of x86-64 features: per `(leaf, subleaf)`, the `(register, mask)` pairs whose bits
/// must all be set.
pub type CpuidTests = Vec<((u32, u32), Vec<(usize, u32)>)>;

/// A resolved feature set: names of [`Arch::features`], in table order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    pub arch: Arch,
    pub names: Vec<&'static str>,
}

impl CpuFeatures {
    /// Resolves `--cpu` (`native`, `generic`, or `+a,+b,-c` relative to the baseline); `None`
    /// means `native` for the host and `generic` for another target.
    pub fn parse(arch: Arch, cpu: Option<&str>) -> Result<CpuFeatures, AotError> {
        let spec = match cpu {
            Some(s) => s.trim(),
            None if Arch::host() == Some(arch) => "native",
            None => "generic",
        };
        let mut set: Vec<&'static str> = Vec::new();
        match spec {
            "native" => {
                if Arch::host() != Some(arch) {
                    return Err(AotError::NativeCpuForOtherTarget {
                        target: arch.triple(),
                        example: example_list(arch),
                    });
                }
                for f in arch.features() {
                    if host_has(f.name) {
                        add(arch, &mut set, f.name);
                    }
                }
            }
            "generic" => {
                for name in arch.baseline() {
                    add(arch, &mut set, name);
                }
            }
            list => {
                for name in arch.baseline() {
                    add(arch, &mut set, name);
                }
                for item in list.split(',') {
                    let item = item.trim();
                    let (on, name) = match item.split_at_checked(1) {
                        Some(("+", n)) => (true, n),
                        Some(("-", n)) => (false, n),
                        _ => {
                            return Err(AotError::NotAFeatureChange {
                                list: list.to_string(),
                                item: item.to_string(),
                                example: example_list(arch),
                            })
                        }
                    };
                    let Some(f) = arch.feature(name) else {
                        return Err(AotError::UnknownFeature {
                            list: list.to_string(),
                            target: arch.triple(),
                            name: name.to_string(),
                            known: arch
                                .features()
                                .iter()
                                .map(|f| f.name)
                                .collect::<Vec<_>>()
                                .join(", "),
                        });
                    };
                    if on {
                        add(arch, &mut set, f.name);
                    } else {
                        remove(arch, &mut set, f.name);
                    }
                }
            }
        }
        // Table order, so equal sets print and compare equal.
        let names = arch
            .features()
            .iter()
            .map(|f| f.name)
            .filter(|n| set.contains(n))
            .collect();
        Ok(CpuFeatures { arch, names })
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.contains(&name)
    }

    /// The set as `--cpu` would spell it relative to nothing: `+a,+b` (empty: none).
    pub fn describe(&self) -> String {
        self.names
            .iter()
            .map(|n| format!("+{n}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Builds the Cranelift ISA: `opt_level=none` (hand-scheduled kernels, as the JIT),
    /// `is_pic=true` (shared objects), and every ISA flag set explicitly.
    pub fn isa(&self) -> Result<Arc<dyn TargetIsa>, AotError> {
        let arch = self.arch;
        let triple: Triple = arch.triple().parse().map_err(|e| AotError::Isa {
            what: format!("target triple {}", arch.triple()),
            reason: format!("{e}"),
        })?;
        let mut fb = settings::builder();
        for (k, v) in [
            ("opt_level", "none"),
            ("enable_verifier", "false"),
            ("is_pic", "true"),
            ("enable_probestack", "false"),
        ] {
            fb.set(k, v).map_err(|e| AotError::Isa {
                what: format!("Cranelift setting {k}={v}"),
                reason: e.to_string(),
            })?;
        }
        let mut ib = cranelift_codegen::isa::lookup(triple).map_err(|e| AotError::Isa {
            what: format!("Cranelift has no backend for {}", arch.triple()),
            reason: e.to_string(),
        })?;
        let mut on: Vec<&str> = Vec::new();
        for f in arch.features() {
            if self.has(f.name) {
                on.extend_from_slice(f.flags);
            }
        }
        let all = arch
            .features()
            .iter()
            .flat_map(|f| f.flags.iter())
            .chain(arch.other_flags());
        for &flag in all {
            let value = if on.contains(&flag) { "true" } else { "false" };
            ib.set(flag, value).map_err(|e| AotError::Isa {
                what: format!("Cranelift ISA flag {flag}={value}"),
                reason: e.to_string(),
            })?;
        }
        ib.finish(settings::Flags::new(fb))
            .map_err(|e| AotError::Isa {
                what: format!("building the Cranelift ISA for {}", arch.triple()),
                reason: e.to_string(),
            })
    }

    /// x86-64: the CPUID bits to test, grouped by `(leaf, subleaf)` as `(register, mask)` pairs,
    /// and the XCR0 bits the OS must enable (0 when none).
    pub fn cpuid_requirements(&self) -> (CpuidTests, u64) {
        let mut groups: CpuidTests = Vec::new();
        let mut xcr0 = 0u64;
        for name in &self.names {
            let Some(f) = self.arch.feature(name) else {
                continue;
            };
            let Some((leaf, sub, reg, bit)) = f.cpuid else {
                continue;
            };
            xcr0 |= f.xcr0;
            let group = match groups.iter_mut().find(|(k, _)| *k == (leaf, sub)) {
                Some(g) => g,
                None => {
                    groups.push(((leaf, sub), Vec::new()));
                    groups.last_mut().expect("just pushed")
                }
            };
            match group.1.iter_mut().find(|(r, _)| *r == reg) {
                Some((_, mask)) => *mask |= 1 << bit,
                None => group.1.push((reg, 1 << bit)),
            }
        }
        if xcr0 != 0 {
            // XGETBV is only allowed when the OS has set CR4.OSXSAVE (CPUID.1:ECX bit 27).
            let osxsave = (2usize, 1u32 << 27);
            match groups.iter_mut().find(|(k, _)| *k == (1, 0)) {
                Some(g) => match g.1.iter_mut().find(|(r, _)| *r == 2) {
                    Some((_, mask)) => *mask |= osxsave.1,
                    None => g.1.push(osxsave),
                },
                None => groups.insert(0, ((1, 0), vec![osxsave])),
            }
        }
        groups.sort_by_key(|(k, _)| *k);
        (groups, xcr0)
    }
}

fn example_list(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "+avx2,+fma,+avx512vnni",
        Arch::Aarch64 => "+dotprod,+i8mm",
        Arch::Riscv64 => "+v",
    }
}

/// Adds `name` and everything it implies.
fn add(arch: Arch, set: &mut Vec<&'static str>, name: &str) {
    let Some(f) = arch.feature(name) else { return };
    if set.contains(&f.name) {
        return;
    }
    set.push(f.name);
    for dep in f.implies {
        add(arch, set, dep);
    }
}

/// Removes `name` and every feature that implies it.
fn remove(arch: Arch, set: &mut Vec<&'static str>, name: &str) {
    set.retain(|n| *n != name);
    for f in arch.features() {
        if f.implies.contains(&name) && set.contains(&f.name) {
            remove(arch, set, f.name);
        }
    }
}

/// Whether the machine running Kestrel has the feature (only asked for the host's arch).
fn host_has(name: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match name {
            "sse3" => std::is_x86_feature_detected!("sse3"),
            "ssse3" => std::is_x86_feature_detected!("ssse3"),
            "sse4.1" => std::is_x86_feature_detected!("sse4.1"),
            "sse4.2" => std::is_x86_feature_detected!("sse4.2"),
            "popcnt" => std::is_x86_feature_detected!("popcnt"),
            "cmpxchg16b" => std::is_x86_feature_detected!("cmpxchg16b"),
            "avx" => std::is_x86_feature_detected!("avx"),
            "fma" => std::is_x86_feature_detected!("fma"),
            "avx2" => std::is_x86_feature_detected!("avx2"),
            "bmi1" => std::is_x86_feature_detected!("bmi1"),
            "bmi2" => std::is_x86_feature_detected!("bmi2"),
            "lzcnt" => std::is_x86_feature_detected!("lzcnt"),
            "avx512f" => std::is_x86_feature_detected!("avx512f"),
            "avx512dq" => std::is_x86_feature_detected!("avx512dq"),
            "avx512vl" => std::is_x86_feature_detected!("avx512vl"),
            "avx512vbmi" => std::is_x86_feature_detected!("avx512vbmi"),
            "avx512vnni" => std::is_x86_feature_detected!("avx512vnni"),
            "avx512bitalg" => std::is_x86_feature_detected!("avx512bitalg"),
            "avxvnni" => std::is_x86_feature_detected!("avxvnni"),
            _ => false,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        match name {
            "lse" => std::arch::is_aarch64_feature_detected!("lse"),
            "pauth" => std::arch::is_aarch64_feature_detected!("paca"),
            "fp16" => std::arch::is_aarch64_feature_detected!("fp16"),
            "dotprod" => std::arch::is_aarch64_feature_detected!("dotprod"),
            "i8mm" => std::arch::is_aarch64_feature_detected!("i8mm"),
            _ => false,
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // No stable run-time detection: the baseline only.
        RISCV64_BASELINE.contains(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implications_are_added_and_removed() {
        let f = CpuFeatures::parse(Arch::X86_64, Some("+avx512vnni")).unwrap();
        for n in ["sse4.2", "avx", "avx2", "fma", "avx512f", "avx512vnni"] {
            assert!(f.has(n), "{n} missing from {:?}", f.names);
        }
        let f = CpuFeatures::parse(Arch::X86_64, Some("+avx512vnni,-avx")).unwrap();
        for n in ["avx", "avx2", "fma", "avx512f", "avx512vnni"] {
            assert!(!f.has(n), "{n} still in {:?}", f.names);
        }
        assert!(f.has("sse4.2"));
    }

    #[test]
    fn bad_specs_are_errors() {
        assert!(CpuFeatures::parse(Arch::X86_64, Some("+avx3")).is_err());
        assert!(CpuFeatures::parse(Arch::X86_64, Some("avx2")).is_err());
        assert!(CpuFeatures::parse(Arch::Aarch64, Some("+avx2")).is_err());
        if Arch::host() != Some(Arch::Riscv64) {
            assert!(CpuFeatures::parse(Arch::Riscv64, Some("native")).is_err());
        }
        assert!(Arch::from_triple("x86_64-pc-windows-msvc").is_err());
    }

    #[test]
    fn every_flag_name_exists_in_cranelift() {
        for arch in [Arch::X86_64, Arch::Aarch64, Arch::Riscv64] {
            let all: Vec<String> = arch
                .features()
                .iter()
                .map(|f| format!("+{}", f.name))
                .collect();
            let f = CpuFeatures::parse(arch, Some(&all.join(","))).unwrap();
            f.isa().unwrap();
            CpuFeatures::parse(arch, Some("generic"))
                .unwrap()
                .isa()
                .unwrap();
        }
    }
}
