//! Reading a Hugging Face folder's weights: one `model.safetensors`, or the shards
//! `model-0000k-of-0000n.safetensors` that `model.safetensors.index.json` maps each tensor to —
//! memory-mapped, converted from F32, F16 or BF16 to f32 one tensor at a time.
//!
//! The files are memory-mapped, so a tensor's bytes are read straight from the page cache into
//! its parameter, and each tensor's pages are given back once converted: the process never holds
//! a second full copy of the weights (a 1B-parameter BF16 file peaks at its f32 parameters plus
//! one tensor).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::data::text_file::read_text;
use crate::error::{Error, Result};

/// IEEE half precision → f32 (exact: every f16 is an f32). Sign, 5 exponent bits (bias 15), 10
/// mantissa bits; subnormals are m·2⁻²⁴, exponent 31 is infinity/NaN.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if mant == 0 => sign,
        0 => {
            // subnormal: value = mant · 2⁻²⁴ — exact in f32
            let v = mant as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        31 => sign | 0x7f80_0000 | (mant << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

/// bfloat16 → f32: bf16 is the top half of an f32.
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// f32 → bfloat16, rounded to nearest even (NaN stays NaN), as PyTorch's `.to(torch.bfloat16)`.
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x40;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    ((bits + round) >> 16) as u16
}

/// A tensor of the file as f32 values, converted from F32, F16 or BF16 — in parallel: the time
/// goes to faulting in the new pages and the file's, and two cores fault twice as fast as one.
pub(crate) fn to_f32(
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
    what: &str,
) -> Result<Vec<f32>> {
    use rayon::prelude::*;
    let data = view.data();
    let width = match view.dtype() {
        Dtype::F32 => 4,
        Dtype::F16 | Dtype::BF16 => 2,
        other => {
            return Err(Error::parse(
                what,
                format!("tensor {name} has dtype {other:?}; weights must be F32, F16 or BF16"),
            ))
        }
    };
    let dtype = view.dtype();
    let n = data.len() / width;
    let mut out = vec![0f32; n];
    const CHUNK: usize = 1 << 16;
    // One conversion per dtype, chosen once (not per value).
    let convert: fn(&[u8]) -> f32 = match dtype {
        Dtype::F32 => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        Dtype::F16 => |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
        _ => |b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])),
    };
    out.par_chunks_mut(CHUNK)
        .zip(data.par_chunks(CHUNK * width))
        .for_each(|(o, bytes)| {
            for (x, b) in o.iter_mut().zip(bytes.chunks_exact(width)) {
                *x = convert(b);
            }
        });
    Ok(out)
}

/// The memory maps of a folder's weight files (opened, not yet parsed).
pub(crate) struct WeightMaps {
    maps: Vec<memmap2::Mmap>,
    paths: Vec<PathBuf>,
    /// Sharded: tensor name → file index, from the index file.
    index: Option<HashMap<String, usize>>,
}

/// The index file of a sharded checkpoint.
pub(crate) const INDEX_FILE: &str = "model.safetensors.index.json";

impl WeightMaps {
    /// Opens `dir/model.safetensors`, or every shard `dir/model.safetensors.index.json` names.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join(INDEX_FILE);
        if single.is_file() {
            return Ok(WeightMaps {
                maps: vec![map(&single)?],
                paths: vec![single],
                index: None,
            });
        }
        if !index_path.is_file() {
            return Err(Error::parse(
                dir.display().to_string(),
                format!("no weights: neither model.safetensors nor {INDEX_FILE} is here"),
            ));
        }
        let what = index_path.display().to_string();
        let v: Value = serde_json::from_str(&read_text(&index_path)?)
            .map_err(|e| Error::parse(what.clone(), format!("not valid JSON: {e}")))?;
        let weight_map = v["weight_map"]
            .as_object()
            .ok_or_else(|| Error::parse(what.clone(), "no \"weight_map\" object"))?;
        let (mut paths, mut index) = (Vec::<PathBuf>::new(), HashMap::new());
        for (name, file) in weight_map {
            let file = file.as_str().ok_or_else(|| {
                Error::parse(
                    what.clone(),
                    format!("{name}: the file name is not a string"),
                )
            })?;
            // A shard is a plain file name in this folder: nothing may point elsewhere.
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(Error::parse(
                    what.clone(),
                    format!("{name}: shard {file:?} is not a file name in this folder"),
                ));
            }
            let path = dir.join(file);
            let k = match paths.iter().position(|p| *p == path) {
                Some(k) => k,
                None => {
                    paths.push(path);
                    paths.len() - 1
                }
            };
            index.insert(name.clone(), k);
        }
        if paths.is_empty() {
            return Err(Error::parse(what, "the weight_map is empty"));
        }
        let maps = paths.iter().map(|p| map(p)).collect::<Result<_>>()?;
        Ok(WeightMaps {
            maps,
            paths,
            index: Some(index),
        })
    }

    /// Parses every file's header.
    pub(crate) fn tensors(&self) -> Result<Weights<'_>> {
        let mut files = Vec::with_capacity(self.maps.len());
        let mut names = HashMap::new();
        for (k, (m, p)) in self.maps.iter().zip(&self.paths).enumerate() {
            let what = p.display().to_string();
            let st = SafeTensors::deserialize(m).map_err(|e| {
                Error::parse(
                    what.clone(),
                    format!("not a valid safetensors file (corrupt or truncated header?): {e}"),
                )
            })?;
            for name in st.names() {
                if let Some(index) = &self.index {
                    match index.get(name) {
                        Some(&j) if j == k => {}
                        // Listed in another shard too: the index decides which copy is read.
                        Some(_) => continue,
                        None => {
                            return Err(Error::parse(
                                what,
                                format!("tensor {name} is in this shard but not in the index"),
                            ))
                        }
                    }
                }
                names.insert(name.to_string(), k);
            }
            files.push((st, m, what));
        }
        if let Some(index) = &self.index {
            if let Some(name) = index.keys().find(|n| !names.contains_key(n.as_str())) {
                return Err(Error::parse(
                    self.paths[index[name]].display().to_string(),
                    format!("tensor {name} is in the index but not in its shard"),
                ));
            }
        }
        Ok(Weights { files, names })
    }
}

fn map(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only and lives only as long as this loader; the file is opened
    // read-only. If another process truncated it meanwhile, reads could fault — the standard
    // caveat of memory-mapping, accepted by every safetensors loader (and the reason the weights
    // are copied into owned parameters before the map is dropped).
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

/// The parsed headers of a folder's weight files: every tensor by name.
pub(crate) struct Weights<'a> {
    files: Vec<(SafeTensors<'a>, &'a memmap2::Mmap, String)>,
    names: HashMap<String, usize>,
}

impl Weights<'_> {
    /// Whether the folder has a tensor `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// Every tensor name.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    /// The file that holds `name` (for messages), or the first file.
    pub(crate) fn what(&self, name: &str) -> &str {
        let k = self.names.get(name).copied().unwrap_or(0);
        &self.files[k].2
    }

    /// The number of values of tensor `name`.
    pub(crate) fn numel(&self, name: &str) -> Option<usize> {
        let &k = self.names.get(name)?;
        let view = self.files[k].0.tensor(name).ok()?;
        Some(view.shape().iter().product())
    }

    /// Tensor `name` as f32, checked against `shape`.
    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let &k = self.names.get(name).ok_or_else(|| {
            Error::parse(self.files[0].2.clone(), format!("missing tensor {name}"))
        })?;
        let (st, map, what) = &self.files[k];
        let view = st
            .tensor(name)
            .map_err(|_| Error::parse(what.clone(), format!("missing tensor {name}")))?;
        if view.shape() != shape {
            return Err(Error::parse(
                what.clone(),
                format!(
                    "tensor {name} has shape {:?}, expected {shape:?}",
                    view.shape()
                ),
            ));
        }
        let out = to_f32(name, &view, what)?;
        release(map, view.data());
        Ok(out)
    }
}

/// Tell the kernel we are done with these bytes of the map: the pages are dropped from this
/// process (they are still in the page cache, and re-read from the file if touched again), so
/// loading never holds the file's bytes and the model's parameters at the same time — only the
/// tensor being converted.
fn release(map: &memmap2::Mmap, bytes: &[u8]) {
    let page = 4096;
    let start = bytes.as_ptr() as usize - map.as_ptr() as usize;
    let (first, end) = (
        start.div_ceil(page) * page,
        (start + bytes.len()) / page * page,
    );
    if end > first {
        // SAFETY: MADV_DONTNEED on a read-only, file-backed private mapping only discards
        // pages; later reads see the file's contents again. `bytes` (and every other view)
        // stays valid, and this range lies inside the map.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, end - first)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_conversions_are_exact() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0); // largest f16
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24)); // smallest subnormal
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14)); // smallest normal
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95); // 1/3 rounded to f16
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc0a0), -5.0);
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to the even mantissa (1.0).
        assert_eq!(f32_to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶ (even): up.
        assert_eq!(f32_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        for x in [0.1f32, -3.7, 1e-20, 6.5e4] {
            let back = bf16_to_f32(f32_to_bf16(x));
            assert!((back - x).abs() <= x.abs() * 2f32.powi(-8), "{x} → {back}");
        }
    }
}
