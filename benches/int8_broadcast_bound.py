#!/usr/bin/env python3
"""Measured bound of the int8 VNNI micro-kernel's instruction mixes (docs/PERFORMANCE.md, "Int8 kernels").

    python3 benches/int8_broadcast_bound.py

Writes a Rust program with hand-written `asm!` loops of the 4x12 `vpdpbusd` tile (x86-64 with
AVX-512 VNNI and VL; 4 steps per trip, k = 1024, A and B from L1, 12 `vpdpbusd` per step) in four
ways of broadcasting a row's A quad, compiles it with `rustc -O` into a temporary folder, runs it,
and prints each loop's speed against a register-only `vpdpbusd` loop measured in the same process
(median of 11 runs, thread CPU time):

- `cur`: `mov` + `vmovd` + `vpbroadcastd` per row and step (the kernel before 2026-12-07);
- `pshufd`: a 16-byte load of the row's four steps and a `vpshufd` of the step's quad (the kernel
  since);
- `membcast`: `vpbroadcastd xmm, m32`; `embcast`: `vpdpbusd` with an `{1to4}` memory operand
  (neither is reachable from CLIF: the broadcast has two uses in the dot-product tree).
"""
import os
import subprocess
import sys
import tempfile
def body(variant):
    lines=[]
    for u in range(4):
        for v in range(3):
            lines.append(f"vmovdqu xmm{12+v}, [{{b}} + {u*48+16*v}]")
        for r in range(4):
            aoff = r*1024 + 4*u
            if variant=="cur":
                lines.append(f"mov {{t:e}}, dword ptr [{{a}} + {aoff}]")
                lines.append("vmovd xmm15, {t:e}")
                lines.append("vpbroadcastd xmm15, xmm15")
            elif variant=="pshufd":
                lines.append(f"vmovdqu xmm15, [{{a}} + {r*1024}]")
                lines.append(f"vpshufd xmm15, xmm15, {u*0x55}")
            elif variant=="membcast":
                lines.append(f"vpbroadcastd xmm15, dword ptr [{{a}} + {aoff}]")
            if variant=="embcast":
                for v in range(3):
                    lines.append(f"vpdpbusd xmm{r*3+v}, xmm{12+v}, dword ptr [{{a}} + {aoff}]{{{{1to4}}}}")
            else:
                for v in range(3):
                    lines.append(f"vpdpbusd xmm{r*3+v}, xmm15, xmm{12+v}")
    return lines
out=[]
for var in ["cur","pshufd","membcast","embcast"]:
    ls=body(var)
    asm="\n".join(f'            "{l}",' for l in ls)
    out.append(f'''
#[inline(never)]
unsafe fn run_{var}(a: *const u8, b: *const u8, trips: usize, reps: usize) {{
    for _ in 0..reps {{
        let (mut ap, mut bp, mut n) = (a, b, trips);
        core::arch::asm!(
            "/* {{t}} */", "2:",
{asm}
            "add {{a}}, 16",
            "add {{b}}, 192",
            "dec {{n}}",
            "jnz 2b",
            a = inout(reg) ap, b = inout(reg) bp, n = inout(reg) n, t = out(reg) _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _,
            out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nostack),
        );
        let _ = (ap, bp, n);
    }}
}}''')
main='''
fn cpu() -> f64 { let mut ts = libc_ts{s:0,n:0}; unsafe { clock_gettime(3, &mut ts) }; ts.s as f64 + ts.n as f64*1e-9 }
#[repr(C)] struct libc_ts { s: i64, n: i64 }
extern "C" { fn clock_gettime(c: i32, t: *mut libc_ts) -> i32; }
// register-only: 12 vpdpbusd x 2 per iteration
#[inline(never)]
unsafe fn run_regs(iters: usize) {
    let mut n = iters;
    core::arch::asm!("vpxor xmm15, xmm15, xmm15", "vpxor xmm14, xmm14, xmm14", "2:",
REGS
        "dec {n}", "jnz 2b", n = inout(reg) n,
        out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _,
        out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
        out("xmm14") _, out("xmm15") _, options(nostack));
    let _ = n;
}
fn med(mut f: impl FnMut()) -> f64 { f(); let mut t: Vec<f64> = (0..11).map(|_| { let s = cpu(); f(); cpu()-s }).collect(); t.sort_by(f64::total_cmp); t[5] }
fn main() {
    if !(std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512vl")) {
        eprintln!("needs AVX-512 VNNI and VL");
        std::process::exit(2);
    }
    let a = vec![1u8; 4*1024 + 64]; let b = vec![1u8; 256*48 + 64];
    let trips = 256usize; let reps = 20000usize; // k = 1024
    let iters = 20_000_000usize;
    let t = med(|| unsafe { run_regs(iters) });
    let regs = (iters * 24 * 32) as f64 / t; // ops/s: 16 MAC*2 = 32 ops per vpdpbusd
    println!("register-only vpdpbusd xmm: {:.1} GOP/s (= 64 ops/cycle by definition)", regs/1e9);
    for (name, f) in [("cur (mov+vmovd+vpbroadcastd)", run_cur as unsafe fn(*const u8,*const u8,usize,usize)), ("pshufd (vmovdqu+vpshufd)", run_pshufd), ("membcast (vpbroadcastd m32)", run_membcast), ("embcast (vpdpbusd m32bcst)", run_embcast)] {
        let t = med(|| unsafe { f(a.as_ptr(), b.as_ptr(), trips, reps) });
        let ops = (reps * trips * 4 * 12 * 32) as f64 / t;
        println!("{name:<32} {:.1} GOP/s = {:.1} % of the register-only loop", ops/1e9, 100.0*ops/regs);
    }
}
'''
regs="\n".join(f'        "vpdpbusd xmm{i}, xmm15, xmm14",' for _ in range(2) for i in range(12))
SOURCE = "\n".join(out)+main.replace("REGS",regs)

with tempfile.TemporaryDirectory() as tmp:
    src, exe = os.path.join(tmp, "bound.rs"), os.path.join(tmp, "bound")
    with open(src, "w") as f:
        f.write(SOURCE)
    subprocess.run(["rustc", "-O", "-C", "target-cpu=native", src, "-o", exe], check=True)
    sys.exit(subprocess.run([exe]).returncode)
