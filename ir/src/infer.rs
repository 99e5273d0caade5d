//! Type and shape inference: the output types of an op applied to typed inputs.

use crate::op::Op;
use crate::tensor::Tensor;
use crate::types::TensorType;

/// One input as inference sees it: its type, and its data when it is a constant.
#[derive(Clone, Copy, Debug)]
pub struct InferInput<'a> {
    pub ty: &'a TensorType,
    pub value: Option<&'a Tensor>,
}

/// The output types of `op` applied to `inputs`, or the reason the inputs are invalid for it.
pub fn infer(op: &Op, inputs: &[InferInput]) -> Result<Vec<TensorType>, String> {
    let _ = inputs;
    Err(format!("no type inference for {}", op.name()))
}
