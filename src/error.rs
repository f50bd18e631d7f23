//! The library's typed errors. Every failure a caller can cause is one of these variants, each
//! naming the op and the values involved, so the CLI can print one clear line.

use thiserror::Error;

/// Result type of the whole library.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in scratchgpt's library.
#[derive(Debug, Error)]
pub enum Error {
    /// Two shapes that an op needs to agree do not.
    #[error("{op}: shape mismatch: {lhs:?} vs {rhs:?} ({why})")]
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
        why: String,
    },

    /// Shapes that cannot be broadcast together under NumPy/PyTorch rules.
    #[error("{op}: shapes {lhs:?} and {rhs:?} cannot be broadcast together")]
    Broadcast {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },

    /// An axis outside `-ndim..ndim`.
    #[error("{op}: axis {axis} is out of range for a tensor of rank {ndim}")]
    InvalidAxis {
        op: &'static str,
        axis: isize,
        ndim: usize,
    },

    /// An index (token id, target, position) outside its valid range.
    #[error("{op}: index {index} is out of range 0..{size}")]
    IndexOutOfRange {
        op: &'static str,
        index: i64,
        size: usize,
    },

    /// An argument with a value the op cannot accept.
    #[error("{op}: {msg}")]
    InvalidArgument { op: &'static str, msg: String },

    /// `backward()` on a tensor that does not require a gradient.
    #[error("backward: this tensor does not require grad (no parameter it depends on requires grad, or it was built under no_grad)")]
    NoGradRequired,

    /// `backward()` without an explicit gradient on a tensor that is not a scalar.
    #[error("backward: implicit gradient only for scalars; this tensor has shape {shape:?} (use backward_with(grad))")]
    NonScalarBackward { shape: Vec<usize> },

    /// The graph behind this tensor was already consumed by an earlier `backward()`.
    #[error("backward: the graph through op '{op}' was already freed by an earlier backward(); run the forward pass again")]
    GraphFreed { op: &'static str },

    /// An op's backward rule returned a gradient of the wrong shape (a bug in that op).
    #[error(
        "backward of '{op}' returned a gradient of shape {got:?} for an input of shape {want:?}"
    )]
    BadGradientShape {
        op: &'static str,
        got: Vec<usize>,
        want: Vec<usize>,
    },

    /// An op was asked to run on a device that does not implement it.
    #[error("{op}: not implemented on device {device}")]
    DeviceUnsupported { op: &'static str, device: String },

    /// An op was given tensors on different devices (move one with `to_device` first).
    #[error("{op}: tensors on different devices ({lhs} and {rhs}); move one with to_device first")]
    DeviceMismatch {
        op: &'static str,
        lhs: String,
        rhs: String,
    },

    /// A non-finite number where a finite one is required (a NaN loss, say).
    #[error("{what} is not finite ({value}){note}")]
    NonFinite {
        what: String,
        value: f64,
        /// What was done about it ("; …"), or empty.
        note: String,
    },

    /// A file whose contents do not parse (a vocabulary, a checkpoint, a dataset), with where and why.
    #[error("{what}: {msg}")]
    Parse { what: String, msg: String },

    /// A text file that is not valid UTF-8, with the byte offset of the first bad byte.
    #[error("{path}: not valid UTF-8 (first invalid byte at offset {offset})")]
    InvalidUtf8 { path: String, offset: usize },

    /// A CUDA failure: no driver or GPU, a kernel that did not compile (with NVRTC's log), an
    /// out-of-memory (with the requested size), an error reported by the device.
    #[error("CUDA: {0}")]
    Cuda(String),

    /// A request to a server failed: unreachable, timed out, an error status, or a reply too
    /// large or not JSON.
    #[error("{url}: {msg}")]
    Network { url: String, msg: String },

    /// Data-parallel training failed between processes: a transport error, ranks whose weights
    /// no longer agree, a rank that stopped answering.
    #[error("distributed: {0}")]
    Distributed(String),

    /// An I/O failure, with the path involved.
    #[error("{path}: {err}")]
    Io {
        path: String,
        /// Shown in the message rather than chained as a `source`, so the CLI prints it once.
        err: std::io::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::Parse`].
    pub fn parse(what: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Parse {
            what: what.into(),
            msg: msg.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            err: source,
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }
}
