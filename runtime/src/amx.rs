//! Permission to use Intel AMX tiles. Linux hands a process the AMX tile-data state only after
//! it asks (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, Linux 5.16 and later); the
//! first AMX instruction of a process that did not ask ends it with SIGILL. The request is made
//! once per process ([`request_tile_permission`]), before any code with AMX kernels runs.

use std::sync::OnceLock;

/// Whether this process may use AMX tiles: the CPU has AMX-TILE and AMX-INT8 and the kernel
/// granted the tile-data permission (asked for on the first call only; later calls return the
/// first answer). The error says which is missing.
pub fn request_tile_permission() -> Result<(), String> {
    static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
    ANSWER.get_or_init(ask).clone()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn ask() -> Result<(), String> {
    // CPUID leaf 7, subleaf 0, EDX: bit 24 AMX-TILE, bit 25 AMX-INT8.
    let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
    if edx & (1 << 24) == 0 || edx & (1 << 25) == 0 {
        return Err("the CPU has no AMX-INT8".into());
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these arguments only changes this process's permitted state.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    if r != 0 {
        return Err(format!(
            "Linux refused the AMX tile-data permission ({})",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn ask() -> Result<(), String> {
    Err("AMX needs x86-64 Linux".into())
}
