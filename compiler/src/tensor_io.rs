//! Tensor files: `.npy`, `.npz` (numpy) and ONNX `TensorProto` `.pb`.
//!
//! Readers never trust sizes a file claims: the byte count a header implies is computed with
//! checked arithmetic and compared with the bytes actually present before anything is allocated.
//! Writers go through [`write_atomically`], so a failed write leaves no partial file behind.

use bytes::Bytes;
use kestrel_ir::{DType, Tensor};
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

/// Why a tensor file could not be read or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TensorIoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid .npy array: {reason}")]
    BadNpy { path: PathBuf, reason: String },
    #[error("{path}: not a valid .npz archive: {reason}")]
    BadNpz { path: PathBuf, reason: String },
    #[error("{path}: not a valid ONNX TensorProto: {reason}")]
    BadPb { path: PathBuf, reason: String },
    #[error("{path}: unsupported tensor file extension (expected .npy, .npz or .pb)")]
    UnknownExtension { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TensorIoError + '_ {
    move |source| TensorIoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The numpy dtype string (little-endian) of a Kestrel dtype.
pub fn npy_descr(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::F16 => "<f2",
        // numpy has no bfloat16; ml_dtypes writes it as 2-byte void. Kestrel writes raw u16 bits.
        DType::BF16 => "<u2",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::I16 => "<i2",
        DType::U16 => "<u2",
        DType::I32 => "<i4",
        DType::U32 => "<u4",
        DType::I64 => "<i8",
        DType::U64 => "<u8",
        DType::Bool => "|b1",
    }
}

fn dtype_from_npy(ty: &npyz::TypeStr) -> Result<(DType, bool), String> {
    use npyz::{Endianness, TypeChar};
    let size = ty.size_field();
    let dtype = match (ty.type_char(), size) {
        (TypeChar::Float, 4) => DType::F32,
        (TypeChar::Float, 8) => DType::F64,
        (TypeChar::Float, 2) => DType::F16,
        (TypeChar::Int, 1) => DType::I8,
        (TypeChar::Int, 2) => DType::I16,
        (TypeChar::Int, 4) => DType::I32,
        (TypeChar::Int, 8) => DType::I64,
        (TypeChar::Uint, 1) => DType::U8,
        (TypeChar::Uint, 2) => DType::U16,
        (TypeChar::Uint, 4) => DType::U32,
        (TypeChar::Uint, 8) => DType::U64,
        (TypeChar::Bool, 1) => DType::Bool,
        _ => return Err(format!("unsupported numpy dtype {ty}")),
    };
    let big_endian = ty.endianness() == Endianness::Big && dtype.size() > 1;
    Ok((dtype, big_endian))
}

/// What an `.npy` header says about the data that follows it.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyHeader {
    pub dtype: DType,
    pub dims: Vec<usize>,
    /// Elements are stored big-endian (multi-byte dtypes only).
    pub big_endian: bool,
    /// Elements are stored in column-major order (meaningful for two or more dims).
    pub fortran_order: bool,
    /// Bytes of magic, version and header before the first data byte.
    pub data_offset: u64,
    /// Bytes of data the shape implies.
    pub data_len: u64,
}

/// Reads the header of an `.npy` image from `r` (positioned at its magic), leaving `r` at the
/// first data byte. `available` is the size of the whole image: a header claiming more, or a
/// shape needing more data than follows the header, is an error before anything is allocated.
/// `path` only labels errors.
pub fn read_npy_header(
    r: &mut impl Read,
    available: u64,
    path: &Path,
) -> Result<NpyHeader, TensorIoError> {
    let bad = |reason: String| TensorIoError::BadNpy {
        path: path.to_path_buf(),
        reason,
    };
    // npyz allocates the header length the file states before reading it: check the claim
    // against the bytes present first (magic 6, version 2, then a u16 (v1) or u32 (v2, v3) length).
    let mut prefix = vec![0u8; 10];
    let got = read_up_to(r, &mut prefix).map_err(io_err(path))?;
    prefix.truncate(got);
    let mut header_len = 0usize;
    if got == 10 && prefix.starts_with(b"\x93NUMPY") {
        let len = if prefix[6] == 1 {
            u16::from_le_bytes([prefix[8], prefix[9]]) as u64
        } else {
            let mut more = [0u8; 2];
            let extra = read_up_to(r, &mut more).map_err(io_err(path))?;
            prefix.extend_from_slice(&more[..extra]);
            if extra < 2 {
                u64::MAX
            } else {
                u32::from_le_bytes([prefix[8], prefix[9], more[0], more[1]]) as u64
            }
        };
        if len > available.saturating_sub(prefix.len() as u64) {
            return Err(bad(format!(
                "the header claims {len} bytes, the file has {available}"
            )));
        }
        header_len = len as usize;
    }
    let mut image = prefix;
    let start = image.len();
    image.resize(start + header_len, 0);
    let got = read_up_to(r, &mut image[start..]).map_err(io_err(path))?;
    image.truncate(start + got);
    let mut cursor = Cursor::new(&image[..]);
    let header =
        npyz::NpyHeader::from_reader(&mut cursor).map_err(|e| bad(short_reason(&e.to_string())))?;
    let ty = match header.dtype() {
        npyz::DType::Plain(ty) => ty,
        other => {
            return Err(bad(format!(
                "structured dtype {} is not a tensor",
                other.descr()
            )))
        }
    };
    let (dtype, big_endian) = dtype_from_npy(&ty).map_err(bad)?;
    let dims: Vec<usize> = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("dimension {d} is too large"))))
        .collect::<Result<_, _>>()?;
    let need = kestrel_ir::tensor::byte_len(dtype, &dims)
        .ok_or_else(|| bad(format!("shape {dims:?} is too large")))? as u64;
    let data_offset = cursor.position();
    let have = available.saturating_sub(data_offset);
    if have < need {
        return Err(bad(format!(
            "shape {dims:?} of {dtype} needs {need} data bytes, the file has {have}"
        )));
    }
    Ok(NpyHeader {
        dtype,
        dims,
        big_endian,
        fortran_order: header.order() == npyz::Order::Fortran,
        data_offset,
        data_len: need,
    })
}

/// Fills `buf` from `r` as far as `r` has bytes; returns how many were read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reorders elements stored big-endian into the host's little-endian order, in place.
pub fn swap_to_little_endian(data: &mut [u8], dtype: DType) {
    for chunk in data.chunks_exact_mut(dtype.size()) {
        chunk.reverse();
    }
}

/// Parses an `.npy` image. `path` only labels errors.
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<Tensor, TensorIoError> {
    let bad = |reason: String| TensorIoError::BadNpy {
        path: path.to_path_buf(),
        reason,
    };
    let mut cursor = Cursor::new(bytes);
    let header = read_npy_header(&mut cursor, bytes.len() as u64, path)?;
    let start = header.data_offset as usize;
    let mut data = bytes[start..start + header.data_len as usize].to_vec();
    let (dtype, dims) = (header.dtype, header.dims);
    if header.big_endian {
        swap_to_little_endian(&mut data, dtype);
    }
    if header.fortran_order && dims.len() > 1 {
        data = fortran_to_c(&data, &dims, dtype.size());
    }
    if dtype == DType::Bool && data.iter().any(|&b| b > 1) {
        return Err(bad("bool array holds bytes other than 0 and 1".into()));
    }
    Tensor::from_bytes(dtype, dims, Bytes::from(data)).map_err(|e| bad(e.to_string()))
}

/// The first line of a parser's message, at most 200 characters: npyz's header parse errors
/// span several lines and quote the whole (file-controlled) header.
fn short_reason(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(200).collect();
    if out.len() < line.len() {
        out.push_str("...");
    }
    out
}

/// Reorders column-major element bytes into row-major order.
fn fortran_to_c(data: &[u8], dims: &[usize], elem: usize) -> Vec<u8> {
    let n: usize = dims.iter().product();
    let mut out = vec![0u8; data.len()];
    let mut index = vec![0usize; dims.len()];
    for c_pos in 0..n {
        // Column-major offset of the row-major multi-index.
        let mut f_pos = 0;
        let mut stride = 1;
        for (i, &d) in index.iter().zip(dims) {
            f_pos += i * stride;
            stride *= d;
        }
        out[c_pos * elem..(c_pos + 1) * elem]
            .copy_from_slice(&data[f_pos * elem..(f_pos + 1) * elem]);
        for axis in (0..dims.len()).rev() {
            index[axis] += 1;
            if index[axis] < dims[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// The `.npy` image of a tensor (format version 1.0, C order).
pub fn npy_bytes(t: &Tensor) -> Vec<u8> {
    let shape = match t.dims() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        npy_descr(t.dtype()),
        shape
    );
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.bytes().len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(t.bytes());
    out
}

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor, TensorIoError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    parse_npy(&bytes, path)
}

/// Reads every array of a `.npz` archive, in archive order.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>, TensorIoError> {
    let bad = |reason: String| TensorIoError::BadNpz {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut archive =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| bad(format!("entry {index}: {e}")))?;
        let name = match entry.name().strip_suffix(".npy") {
            Some(n) => n.to_string(),
            None => continue,
        };
        // Deflate can expand a lot, but never beyond what the entry claims; cap that claim by a
        // generous ratio of the archive size so a forged header cannot demand unbounded memory.
        let claimed = entry.size();
        let cap = file_len.saturating_mul(1100).max(1 << 20);
        if claimed > cap {
            return Err(bad(format!("array {name:?} claims {claimed} bytes")));
        }
        // Reserve only what is cheap; the buffer grows with the bytes that actually arrive.
        let mut bytes = Vec::with_capacity(claimed.min(1 << 24) as usize);
        (&mut entry)
            .take(claimed)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("array {name:?}: {e}")))?;
        let label = path.join(format!("{name}.npy"));
        out.push((name, parse_npy(&bytes, &label)?));
    }
    Ok(out)
}

/// One array of an `.npz` archive, located without reading its data: [`open_npz_member`]
/// reads it as a stream.
#[derive(Clone, Debug)]
pub struct NpzMember {
    /// The array's name (the member's file name without `.npy`).
    pub name: String,
    pub header: NpyHeader,
    /// Offset in the archive of the member's first (compressed or stored) byte.
    pub data_start: u64,
    pub compressed_size: u64,
    /// Stored (false) or deflated (true).
    pub deflated: bool,
}

/// The arrays of a `.npz` archive in archive order, each with its `.npy` header; only the
/// headers are decompressed. Members that are not `.npy` files are skipped.
pub fn npz_members(path: &Path) -> Result<Vec<NpzMember>, TensorIoError> {
    let bad = |reason: String| TensorIoError::BadNpz {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut archive =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| bad(format!("entry {index}: {e}")))?;
        let name = match entry.name().strip_suffix(".npy") {
            Some(n) => n.to_string(),
            None => continue,
        };
        let deflated = match entry.compression() {
            zip::CompressionMethod::Stored => false,
            zip::CompressionMethod::Deflated => true,
            other => {
                return Err(bad(format!(
                "array {name:?}: compression {other} (only stored and deflated members are read)"
            )))
            }
        };
        let label = path.join(format!("{name}.npy"));
        let size = entry.size();
        let header = read_npy_header(&mut entry, size, &label)?;
        out.push(NpzMember {
            name,
            header,
            data_start: entry.data_start(),
            compressed_size: entry.compressed_size(),
            deflated,
        });
    }
    Ok(out)
}

/// A reader of `member`'s data bytes (after its `.npy` header), from the archive at `path`,
/// decompressing as it goes: memory is the decompressor's window, whatever the array's size.
/// A stored member's data can be read in place instead: it starts at `data_start +
/// header.data_offset` in the archive.
pub fn open_npz_member(
    path: &Path,
    member: &NpzMember,
) -> Result<Box<dyn Read + Send>, TensorIoError> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    file.seek(SeekFrom::Start(member.data_start))
        .map_err(io_err(path))?;
    let raw = std::io::BufReader::new(file).take(member.compressed_size);
    let mut reader: Box<dyn Read + Send> = if member.deflated {
        Box::new(flate2::read::DeflateDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    std::io::copy(
        &mut (&mut reader).take(member.header.data_offset),
        &mut std::io::sink(),
    )
    .map_err(|e| TensorIoError::BadNpz {
        path: path.to_path_buf(),
        reason: format!("array {:?}: {e}", member.name),
    })?;
    Ok(reader)
}

/// Writes `path` through a temporary file in the same folder, renamed into place only when
/// `fill` succeeded: readers never see a partial file, and a failure, SIGINT or SIGTERM
/// (`crate::interrupt`) leaves nothing behind.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let _pending = crate::interrupt::Pending::new(&tmp);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        fill(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes one tensor as `.npy`.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<(), TensorIoError> {
    write_atomically(path, |f| f.write_all(&npy_bytes(t))).map_err(io_err(path))
}

/// Writes named tensors into one `.npz` archive (stored, uncompressed, as `numpy.savez` does).
pub fn write_npz(path: &Path, arrays: &[(String, Tensor)]) -> Result<(), TensorIoError> {
    write_atomically(path, |f| {
        let mut zip = zip::ZipWriter::new(f);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        for (name, t) in arrays {
            zip.start_file(format!("{name}.npy"), options)
                .map_err(std::io::Error::other)?;
            zip.write_all(&npy_bytes(t))?;
        }
        zip.finish().map_err(std::io::Error::other)?;
        Ok(())
    })
    .map_err(io_err(path))
}

/// Reads a tensor file by extension: `.npy`, or `.pb` (an ONNX `TensorProto`, as the ONNX backend
/// test data stores them). `.npz` archives hold several arrays: use [`read_npz`].
pub fn read_tensor_file(path: &Path) -> Result<Tensor, TensorIoError> {
    match extension(path).as_deref() {
        Some("npy") => read_npy(path),
        Some("pb") => crate::onnx::load_tensor_file(path).map_err(|e| TensorIoError::BadPb {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        _ => Err(TensorIoError::UnknownExtension {
            path: path.to_path_buf(),
        }),
    }
}

/// The lower-cased extension of a path.
pub fn extension(path: &Path) -> Option<String> {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trips_every_dtype() {
        let dir = tempfile::tempdir().unwrap();
        for dtype in DType::ALL {
            let t = Tensor::from_bytes(
                dtype,
                vec![2, 3],
                Bytes::from(
                    (0..6 * dtype.size() as u8)
                        .map(|b| b % 2)
                        .collect::<Vec<_>>(),
                ),
            )
            .unwrap();
            let path = dir.path().join(format!("{dtype}.npy"));
            write_npy(&path, &t).unwrap();
            let back = read_npy(&path).unwrap();
            let expect_dtype = if dtype == DType::BF16 {
                DType::U16
            } else {
                dtype
            };
            assert_eq!(back.dtype(), expect_dtype);
            assert_eq!(back.bytes(), t.bytes());
            assert_eq!(back.dims(), &[2, 3]);
        }
    }

    #[test]
    fn npz_round_trip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npz");
        let a = Tensor::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]);
        let b = Tensor::scalar(7i64);
        write_npz(&path, &[("a".into(), a.clone()), ("b".into(), b.clone())]).unwrap();
        let back = read_npz(&path).unwrap();
        assert_eq!(back, vec![("a".into(), a), ("b".into(), b)]);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(read_npz(&path).is_err(), "truncated at {cut}");
        }
    }

    #[test]
    fn npy_rejects_short_data_and_huge_shapes() {
        let t = Tensor::from_vec(vec![4], vec![1i32, 2, 3, 4]);
        let bytes = npy_bytes(&t);
        let p = Path::new("x.npy");
        assert!(parse_npy(&bytes[..bytes.len() - 1], p).is_err());
        let huge = String::from_utf8_lossy(&bytes).replace("(4,)", "(99999999999999,)");
        assert!(parse_npy(huge.as_bytes(), p).is_err());
        for cut in 0..bytes.len() {
            let _ = parse_npy(&bytes[..cut], p);
        }
    }

    #[test]
    fn fortran_order_is_transposed() {
        let data: Vec<u8> = vec![1, 4, 2, 5, 3, 6]; // column-major [[1,2,3],[4,5,6]]
        assert_eq!(fortran_to_c(&data, &[2, 3], 1), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn atomic_write_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        let r = write_atomically(&path, |_| Err(std::io::Error::other("boom")));
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
