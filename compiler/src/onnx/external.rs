//! External tensor data (`data_location = EXTERNAL`): files beside the model, memory-mapped.
//!
//! A tensor's `external_data` entries name a `location` relative to the model's folder, an optional
//! byte `offset` and an optional `length` (to the end of the file when absent). Locations that are
//! absolute, contain `..` or resolve (through symlinks) outside the model's folder are rejected, as
//! are byte ranges beyond the end of the file. Each file is mapped once per import and tensors are
//! zero-copy views of the mapping.

use super::error::Reason;
use super::proto::TensorProto;
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Component, Path, PathBuf};

/// Maps external data files, each once.
#[derive(Default)]
pub struct ExternalFiles {
    mapped: HashMap<PathBuf, Bytes>,
}

/// Where a tensor's external bytes are.
struct Location<'a> {
    location: &'a str,
    offset: Option<u64>,
    length: Option<u64>,
}

fn parse_location(t: &TensorProto) -> Result<Location<'_>, Reason> {
    let mut loc = Location {
        location: "",
        offset: None,
        length: None,
    };
    let num = |k: &str, v: &str| -> Result<u64, Reason> {
        v.trim().parse::<u64>().map_err(|_| {
            Reason::External(format!(
                "\"{k}\" must be a non-negative integer, got \"{v}\""
            ))
        })
    };
    for e in &t.external_data {
        match e.key.as_str() {
            "location" => loc.location = e.value.as_str(),
            "offset" => loc.offset = Some(num("offset", &e.value)?),
            "length" => loc.length = Some(num("length", &e.value)?),
            // `checksum` and unknown keys carry nothing the importer needs.
            _ => {}
        }
    }
    if loc.location.is_empty() {
        return Err(Reason::External("no \"location\" given".into()));
    }
    Ok(loc)
}

/// Resolves `location` inside `model_dir`, refusing anything that could leave it.
pub fn resolve_location(model_dir: &Path, location: &str) -> Result<PathBuf, Reason> {
    let rel = Path::new(location);
    if location.contains('\0') {
        return Err(Reason::External(format!(
            "location \"{location}\" contains a NUL byte"
        )));
    }
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(Reason::External(format!(
                    "location \"{location}\" must not contain \"..\""
                )))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Reason::External(format!(
                    "location \"{location}\" must be relative to the model's folder"
                )))
            }
        }
    }
    let dir = model_dir
        .canonicalize()
        .map_err(|source| Reason::ExternalIo {
            path: model_dir.display().to_string(),
            source,
        })?;
    let path = dir.join(rel);
    let real = path.canonicalize().map_err(|source| Reason::ExternalIo {
        path: path.display().to_string(),
        source,
    })?;
    if !real.starts_with(&dir) {
        return Err(Reason::External(format!(
            "location \"{location}\" resolves to {} outside the model's folder",
            real.display()
        )));
    }
    Ok(real)
}

fn map_file(path: &Path) -> Result<Bytes, Reason> {
    let io = |source| Reason::ExternalIo {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(Reason::External(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if meta.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the mapping is read-only. As with every memory-mapped input, the file must not be
    // truncated or modified while the model is in use; this is the documented contract of
    // `load_model`.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok(Bytes::from_owner(map))
}

impl ExternalFiles {
    pub fn new() -> Self {
        Self::default()
    }

    /// The external bytes of `t` (which must have `data_location = EXTERNAL`), checked to lie
    /// within the file.
    pub fn data(&mut self, t: &TensorProto, model_dir: Option<&Path>) -> Result<Bytes, Reason> {
        let loc = parse_location(t)?;
        let dir = model_dir.ok_or_else(|| {
            Reason::External(format!(
                "tensor data is in \"{}\" but the model's folder is unknown",
                loc.location
            ))
        })?;
        let path = resolve_location(dir, loc.location)?;
        let file = match self.mapped.get(&path) {
            Some(b) => b.clone(),
            None => {
                let b = map_file(&path)?;
                self.mapped.insert(path.clone(), b.clone());
                b
            }
        };
        let size = file.len() as u64;
        let offset = loc.offset.unwrap_or(0);
        let end = match loc.length {
            Some(len) => offset.checked_add(len),
            None => Some(size),
        };
        match end {
            Some(end) if offset <= end && end <= size => {
                // Both fit in usize since they are at most the mapped length.
                Ok(file.slice(offset as usize..end as usize))
            }
            _ => Err(Reason::External(format!(
                "range offset {offset} length {} lies beyond the end of \"{}\" ({size} bytes)",
                loc.length.map_or("(to end)".to_string(), |l| l.to_string()),
                loc.location
            ))),
        }
    }
}
