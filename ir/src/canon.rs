//! Canonical attribute spelling: one spelling per meaning, so that equal ops compare equal (CSE,
//! the e-graph) and dumps stay short.

use crate::op::{AutoPad, Op};

/// Rewrites attributes that spell the default out (`strides=[1,1]`, `dilations=[1,1]`,
/// `pads=[0,0,0,0]`, `auto_pad=VALID`) into the canonical empty form, which every consumer reads
/// as the same default, and map programs into [`crate::MapProgram::canonical`] form.
/// [`crate::Graph::add_node`] applies it to every node it adds.
pub fn canonicalize_attrs(op: &mut Op) {
    match op {
        Op::Conv(a) => canonical_window(
            &mut a.strides,
            &mut a.dilations,
            &mut a.pads,
            &mut a.auto_pad,
        ),
        Op::Pool(a) => canonical_window(
            &mut a.strides,
            &mut a.dilations,
            &mut a.pads,
            &mut a.auto_pad,
        ),
        Op::Map(p) => *p = p.canonical(),
        _ => {}
    }
}

/// The sliding-window attributes shared by convolutions and pools.
fn canonical_window(
    strides: &mut Vec<usize>,
    dilations: &mut Vec<usize>,
    pads: &mut Vec<usize>,
    auto_pad: &mut AutoPad,
) {
    let clear_if = |v: &mut Vec<usize>, default: usize| {
        if v.iter().all(|&x| x == default) {
            v.clear();
        }
    };
    clear_if(strides, 1);
    clear_if(dilations, 1);
    if *auto_pad == AutoPad::Valid {
        *auto_pad = AutoPad::NotSet;
        pads.clear();
    }
    if *auto_pad == AutoPad::NotSet {
        clear_if(pads, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::ConvAttrs;

    #[test]
    fn explicit_defaults_become_empty() {
        let mut op = Op::Conv(ConvAttrs {
            strides: vec![1, 1],
            pads: vec![0, 0, 0, 0],
            dilations: vec![1, 1],
            group: 1,
            auto_pad: AutoPad::NotSet,
            epilogue: Default::default(),
            integer: None,
        });
        canonicalize_attrs(&mut op);
        assert_eq!(
            op,
            Op::Conv(ConvAttrs {
                group: 1,
                ..Default::default()
            })
        );
        let mut valid = Op::Conv(ConvAttrs {
            strides: vec![2, 1],
            pads: vec![1, 1, 1, 1],
            group: 1,
            auto_pad: AutoPad::Valid,
            ..Default::default()
        });
        canonicalize_attrs(&mut valid);
        let Op::Conv(a) = valid else { unreachable!() };
        assert_eq!(
            (a.strides, a.pads, a.auto_pad),
            (vec![2, 1], vec![], AutoPad::NotSet)
        );
    }
}
