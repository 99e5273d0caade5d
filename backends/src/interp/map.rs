//! `map`: an element-wise program over broadcast inputs. Each instruction is evaluated like the
//! op it stands for (f64, rounded once to the dtype), so a map is bit-identical to the chain.

use super::*;
use kestrel_ir::{MapInstr, MapProgram};

pub(crate) fn map(p: &MapProgram, inputs: &[&Tensor]) -> Res<Tensor> {
    let name = "map";
    p.check(inputs.len()).map_err(|e| invalid(name, e))?;
    let dt = inputs[0].dtype();
    if !matches!(dt, DType::F32 | DType::F64) {
        return Err(unsupported_dtype(name, dt));
    }
    // Broadcast shape and per-input strides (0 on broadcast axes).
    let rank = inputs.iter().map(|t| t.dims().len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for t in inputs {
        if t.dtype() != dt {
            return Err(invalid(name, "inputs differ in dtype"));
        }
        let d = t.dims();
        for (i, &x) in d.iter().enumerate() {
            let o = &mut out[rank - d.len() + i];
            if *o == 1 {
                *o = x;
            } else if x != 1 && x != *o {
                return Err(invalid(name, format!("cannot broadcast {d:?} to {out:?}")));
            }
        }
    }
    let strides: Vec<Vec<usize>> = inputs
        .iter()
        .map(|t| {
            let d = t.dims();
            let mut s = vec![0usize; rank];
            let mut acc = 1;
            for i in (0..d.len()).rev() {
                s[rank - d.len() + i] = if d[i] == 1 { 0 } else { acc };
                acc *= d[i];
            }
            s
        })
        .collect();
    let vals: Vec<Vec<f64>> = inputs.iter().map(|t| t.to_f64_vec()).collect();
    let n: usize = out.iter().product();
    let round = |x: f64| if dt == DType::F32 { x as f32 as f64 } else { x };
    let mut idx = vec![0usize; rank];
    let mut res = Vec::with_capacity(n);
    let mut regs: Vec<f64> = Vec::with_capacity(p.code.len());
    for _ in 0..n {
        regs.clear();
        for ins in &p.code {
            let v = match *ins {
                MapInstr::Input(k) => {
                    let k = k as usize;
                    let off: usize = idx.iter().zip(&strides[k]).map(|(i, s)| i * s).sum();
                    vals[k][off]
                }
                MapInstr::Const(c) => round(c.0 as f64),
                MapInstr::Unary(u, a) => {
                    round(elementwise::unary_float(u, regs[a as usize], round))
                }
                MapInstr::Binary(b, x, y) => round(elementwise::binary_float(
                    b,
                    regs[x as usize],
                    regs[y as usize],
                )),
            };
            regs.push(v);
        }
        res.push(*regs.last().expect("non-empty program"));
        for a in (0..rank).rev() {
            idx[a] += 1;
            if idx[a] < out[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    if dt == DType::F32 {
        let v: Vec<f32> = res.iter().map(|&x| x as f32).collect();
        tensor_from_f32(dt, out, &v)
    } else {
        tensor_from_f64(dt, out, &res)
    }
}
