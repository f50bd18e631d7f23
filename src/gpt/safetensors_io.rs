//! Reading tensors from safetensors files (book-named weights, fixtures, checkpoints).

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A tensor read from a file: f32 data or i64 ids, with its shape.
#[derive(Clone, Debug)]
pub enum Loaded {
    F32(Vec<f32>, Vec<usize>),
    I64(Vec<i64>, Vec<usize>),
}

impl Loaded {
    /// As an f32 tensor (errors for integer data).
    pub fn to_tensor(&self, name: &str) -> Result<Tensor> {
        match self {
            Loaded::F32(v, s) => Tensor::from_vec(v.clone(), s),
            Loaded::I64(..) => Err(Error::parse(
                name.to_string(),
                "expected F32 data, found I64",
            )),
        }
    }
}

/// Every tensor of a safetensors file by name. Supports F32 and I64 (F16/BF16 arrive with the
/// GPT-2 weights issue); anything else is an error naming the tensor and its dtype.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<HashMap<String, Loaded>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let what = path.display().to_string();
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::parse(what.clone(), format!("not a valid safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let data = view.data();
        let loaded = match view.dtype() {
            Dtype::F32 => Loaded::F32(
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                    .collect(),
                shape,
            ),
            Dtype::I64 => Loaded::I64(
                data.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
                    .collect(),
                shape,
            ),
            other => {
                return Err(Error::parse(
                    what,
                    format!("tensor {name} has unsupported dtype {other:?}"),
                ))
            }
        };
        out.insert(name, loaded);
    }
    Ok(out)
}
