//! Constant tensors: shape, element type and shared little-endian bytes.

use crate::dtype::DType;
use bytes::Bytes;
use std::fmt;

/// A dense constant tensor. The bytes are little-endian, row-major, and shared (`Bytes` is a
/// reference-counted view): cloning a tensor never copies its data, and a tensor imported from a
/// memory-mapped model points straight into the mapping. The bytes need not be aligned.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tensor {
    dtype: DType,
    dims: Vec<usize>,
    data: Bytes,
}

/// Why a tensor could not be built from the given parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    #[error("tensor of shape {dims:?} and type {dtype} needs {expected} bytes, got {actual}")]
    SizeMismatch {
        dtype: DType,
        dims: Vec<usize>,
        expected: usize,
        actual: usize,
    },
    #[error("tensor shape {dims:?} has more elements than fit in memory")]
    TooLarge { dims: Vec<usize> },
}

/// Number of bytes of a tensor with these dims, or `None` on overflow.
pub fn byte_len(dtype: DType, dims: &[usize]) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size()))
}

/// Element types that can be read from and written to tensor bytes.
pub trait Element: Copy + Default + Send + Sync + 'static {
    const DTYPE: DType;
    fn read_le(bytes: &[u8]) -> Self;
    fn write_le(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: DType = $d;
            fn read_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("element width"))
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}
element!(f32, DType::F32);
element!(f64, DType::F64);
element!(i8, DType::I8);
element!(u8, DType::U8);
element!(i16, DType::I16);
element!(u16, DType::U16);
element!(i32, DType::I32);
element!(u32, DType::U32);
element!(i64, DType::I64);
element!(u64, DType::U64);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn read_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
}

impl Tensor {
    /// Builds a tensor from raw little-endian bytes; the length must match the shape exactly.
    pub fn from_bytes(dtype: DType, dims: Vec<usize>, data: Bytes) -> Result<Tensor, TensorError> {
        let expected =
            byte_len(dtype, &dims).ok_or(TensorError::TooLarge { dims: dims.clone() })?;
        if expected != data.len() {
            return Err(TensorError::SizeMismatch {
                dtype,
                dims,
                expected,
                actual: data.len(),
            });
        }
        Ok(Tensor { dtype, dims, data })
    }

    /// Builds a tensor from typed values; panics if `values.len()` does not match `dims`
    /// (a programming error, not a user error).
    pub fn from_vec<T: Element>(dims: Vec<usize>, values: Vec<T>) -> Tensor {
        assert_eq!(
            dims.iter().product::<usize>(),
            values.len(),
            "Tensor::from_vec: {} values for shape {:?}",
            values.len(),
            dims
        );
        let mut out = Vec::with_capacity(values.len() * T::DTYPE.size());
        for v in values {
            v.write_le(&mut out);
        }
        Tensor {
            dtype: T::DTYPE,
            dims,
            data: Bytes::from(out),
        }
    }

    pub fn scalar<T: Element>(v: T) -> Tensor {
        Tensor::from_vec(vec![], vec![v])
    }

    /// A tensor of zero bytes (the zero value of every dtype).
    pub fn zeros(dtype: DType, dims: Vec<usize>) -> Result<Tensor, TensorError> {
        let n = byte_len(dtype, &dims).ok_or(TensorError::TooLarge { dims: dims.clone() })?;
        Ok(Tensor {
            dtype,
            dims,
            data: Bytes::from(vec![0u8; n]),
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// The same data under another shape with the same element count.
    pub fn reshaped(&self, dims: Vec<usize>) -> Option<Tensor> {
        (dims.iter().product::<usize>() == self.numel()).then(|| Tensor {
            dtype: self.dtype,
            dims,
            data: self.data.clone(),
        })
    }

    /// Element `i` (row-major) converted to f64. Integers convert exactly up to 2^53; f16/bf16 widen.
    pub fn get_f64(&self, i: usize) -> f64 {
        let s = self.dtype.size();
        let b = &self.data[i * s..(i + 1) * s];
        match self.dtype {
            DType::F32 => f32::read_le(b) as f64,
            DType::F64 => f64::read_le(b),
            DType::F16 => f16_to_f32(u16::read_le(b)) as f64,
            DType::BF16 => f32::from_bits((u16::read_le(b) as u32) << 16) as f64,
            DType::I8 => i8::read_le(b) as f64,
            DType::U8 => b[0] as f64,
            DType::I16 => i16::read_le(b) as f64,
            DType::U16 => u16::read_le(b) as f64,
            DType::I32 => i32::read_le(b) as f64,
            DType::U32 => u32::read_le(b) as f64,
            DType::I64 => i64::read_le(b) as f64,
            DType::U64 => u64::read_le(b) as f64,
            DType::Bool => (b[0] != 0) as u8 as f64,
        }
    }

    /// Element `i` as i64 when the dtype is an integer or bool (u64 wraps), else truncated from float.
    pub fn get_i64(&self, i: usize) -> i64 {
        let s = self.dtype.size();
        let b = &self.data[i * s..(i + 1) * s];
        match self.dtype {
            DType::I8 => i8::read_le(b) as i64,
            DType::U8 => b[0] as i64,
            DType::I16 => i16::read_le(b) as i64,
            DType::U16 => u16::read_le(b) as i64,
            DType::I32 => i32::read_le(b) as i64,
            DType::U32 => u32::read_le(b) as i64,
            DType::I64 => i64::read_le(b),
            DType::U64 => u64::read_le(b) as i64,
            DType::Bool => (b[0] != 0) as i64,
            _ => self.get_f64(i) as i64,
        }
    }

    /// All elements converted to f32.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        if self.dtype == DType::F32 {
            return self.data.chunks_exact(4).map(f32::read_le).collect();
        }
        (0..self.numel()).map(|i| self.get_f64(i) as f32).collect()
    }

    /// All elements converted to f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.numel()).map(|i| self.get_f64(i)).collect()
    }

    /// All elements as i64 (see [`Tensor::get_i64`]).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        (0..self.numel()).map(|i| self.get_i64(i)).collect()
    }

    /// Elements of exactly type `T`; `None` if the dtype differs.
    pub fn to_vec<T: Element>(&self) -> Option<Vec<T>> {
        (T::DTYPE == self.dtype).then(|| {
            self.data
                .chunks_exact(T::DTYPE.size())
                .map(T::read_le)
                .collect()
        })
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({}{:?}", self.dtype, self.dims)?;
        if self.numel() <= 8 {
            write!(f, " {:?}", self.to_f64_vec())?;
        }
        f.write_str(")")
    }
}

/// IEEE half to single precision (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if mant == 0 {
            sign
        } else {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut m = mant;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
    } else if exp == 0x1f {
        sign | 0x7f80_0000 | (mant << 13)
    } else {
        sign | ((exp + 127 - 15) << 23) | (mant << 13)
    };
    f32::from_bits(bits)
}

/// Single to IEEE half precision, rounding to nearest even.
pub fn f32_to_f16(v: f32) -> u16 {
    let x = v.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let mant = x & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rem = m & ((1 << shift) - 1);
        let mut r = m >> shift;
        if rem > half || (rem == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trips_every_finite_half() {
        for h in 0u16..=0xffff {
            let f = f16_to_f32(h);
            if f.is_nan() {
                continue;
            }
            assert_eq!(f32_to_f16(f), h, "half {h:#06x} -> {f}");
        }
    }

    #[test]
    fn from_bytes_checks_length() {
        assert!(Tensor::from_bytes(DType::F32, vec![2, 2], Bytes::from(vec![0u8; 15])).is_err());
        assert!(Tensor::from_bytes(DType::F32, vec![usize::MAX, 2], Bytes::new()).is_err());
        let t = Tensor::from_vec(vec![2], vec![1.5f32, -2.0]);
        assert_eq!(t.to_f32_vec(), vec![1.5, -2.0]);
        assert_eq!(t.get_i64(1), -2);
    }
}
