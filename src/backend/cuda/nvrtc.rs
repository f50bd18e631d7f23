//! Run-time compilation of the kernel files with NVRTC (through cudarc), and the resource report
//! ptxas gives for each kernel: registers, shared memory, stack, spills.
//!
//! NVRTC is loaded dynamically: nothing here needs a CUDA toolkit at build time. Where libnvrtc is
//! missing, [`nvrtc_status`] says so (cudarc itself would panic, so we probe first).

use std::ffi::{c_char, CStr, CString};

use cudarc::nvrtc::{result, sys};

use super::kernels::KernelFile;
use crate::error::{Error, Result};

/// What to compile to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Virtual-architecture PTX, e.g. compute_80 (JIT-compiled by the driver for newer GPUs).
    Ptx { compute: u32 },
    /// Machine code for one architecture, e.g. sm_90, with ptxas's verbose resource report.
    Cubin { sm: u32 },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Ptx { compute } => write!(f, "compute_{compute} (PTX)"),
            Target::Cubin { sm } => write!(f, "sm_{sm}"),
        }
    }
}

/// Resources of one compiled kernel, from ptxas's `--verbose` log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelResources {
    pub name: String,
    pub registers: u32,
    pub shared_bytes: u32,
    pub stack_bytes: u32,
    pub spill_store_bytes: u32,
    pub spill_load_bytes: u32,
}

/// One compiled kernel file.
pub struct CompiledFile {
    pub file: &'static str,
    pub target: Target,
    /// PTX text (NUL-terminated) or a cubin image.
    pub image: Vec<u8>,
    /// The compiler's log (warnings, and ptxas info for cubins).
    pub log: String,
    /// Per-kernel resources (cubin targets only).
    pub resources: Vec<KernelResources>,
}

/// Where libnvrtc comes from, or why it cannot be used.
pub fn nvrtc_status() -> Result<String> {
    // SAFETY: only tries to dlopen the library by its candidate names.
    let present = std::panic::catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false);
    if !present {
        return Err(Error::Cuda(format!(
            "NVRTC (libnvrtc.so) not found; searched {:?}. Install the CUDA toolkit or `pip install nvidia-cuda-nvrtc==13.0.88` and put its nvidia/cu13/lib folder on LD_LIBRARY_PATH",
            cudarc::get_lib_name_candidates("nvrtc")
        )));
    }
    let mut major = 0;
    let mut minor = 0;
    // SAFETY: the library is present; nvrtcVersion writes two ints.
    let ok = std::panic::catch_unwind(move || unsafe {
        let r = sys::nvrtcVersion(&mut major, &mut minor);
        (r, major, minor)
    });
    match ok {
        Ok((sys::nvrtcResult::NVRTC_SUCCESS, major, minor)) => Ok(format!("NVRTC {major}.{minor}")),
        _ => Err(Error::Cuda(
            "libnvrtc was found but nvrtcVersion failed".into(),
        )),
    }
}

/// Compile `file` for `target`. A compile error carries NVRTC's log.
pub fn compile(file: &KernelFile, target: Target) -> Result<CompiledFile> {
    nvrtc_status()?;
    let src = CString::new(file.full_source())
        .map_err(|_| Error::Cuda(format!("{}: source contains a NUL byte", file.name)))?;
    let name = CString::new(file.name).expect("file names have no NUL");
    let prog = result::create_program(&src, Some(&name))
        .map_err(|e| Error::Cuda(format!("{}: nvrtcCreateProgram failed: {e:?}", file.name)))?;
    let mut options = vec!["--std=c++17".to_string()];
    match target {
        Target::Ptx { compute } => options.push(format!("--gpu-architecture=compute_{compute}")),
        Target::Cubin { sm } => {
            options.push(format!("--gpu-architecture=sm_{sm}"));
            options.push("--ptxas-options=--verbose".into());
        }
    }
    // SAFETY: `prog` was just created and is destroyed once below; `src`/`name` outlive it.
    let compiled = unsafe { result::compile_program(prog, &options) };
    // SAFETY: as above.
    let log = unsafe { result::get_program_log(prog) }
        .map(|l| c_chars_to_string(&l))
        .unwrap_or_default();
    let out = compiled
        .map_err(|e| {
            Error::Cuda(format!(
                "{} failed to compile for {target} ({e:?}); NVRTC log:\n{log}",
                file.name
            ))
        })
        .and_then(|()| match target {
            // SAFETY: compiled successfully; `prog` is live.
            Target::Ptx { .. } => unsafe { result::get_ptx(prog) }
                .map(|p| p.iter().map(|&c| c as u8).collect())
                .map_err(|e| Error::Cuda(format!("{}: nvrtcGetPTX: {e:?}", file.name))),
            Target::Cubin { .. } => unsafe { get_cubin(prog) }
                .map_err(|e| Error::Cuda(format!("{}: nvrtcGetCUBIN: {e:?}", file.name))),
        });
    // SAFETY: destroyed exactly once.
    unsafe {
        let _ = result::destroy_program(prog);
    }
    let image = out?;
    let resources = match target {
        Target::Cubin { .. } => parse_ptxas_log(&log),
        Target::Ptx { .. } => Vec::new(),
    };
    Ok(CompiledFile {
        file: file.name,
        target,
        image,
        log,
        resources,
    })
}

/// # Safety
/// `prog` is a live, successfully compiled program for an sm_XX target.
unsafe fn get_cubin(prog: sys::nvrtcProgram) -> std::result::Result<Vec<u8>, result::NvrtcError> {
    let mut size = 0usize;
    // SAFETY: per the function contract.
    unsafe {
        sys::nvrtcGetCUBINSize(prog, &mut size).result()?;
        let mut buf = vec![0u8; size];
        sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char).result()?;
        Ok(buf)
    }
}

fn c_chars_to_string(v: &[c_char]) -> String {
    if v.is_empty() {
        return String::new();
    }
    // SAFETY: NVRTC logs are NUL-terminated; fall back to a lossy copy otherwise.
    match CStr::from_bytes_until_nul(unsafe {
        std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len())
    }) {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => v.iter().map(|&c| c as u8 as char).collect(),
    }
}

fn number_before(line: &str, unit: &str) -> Option<u32> {
    let pos = line.find(unit)?;
    line[..pos].split_whitespace().last()?.parse().ok()
}

/// Parse ptxas's `--verbose` output:
/// ```text
/// ptxas info    : Compiling entry function 'matmul' for 'sm_90'
/// ptxas info    : Function properties for matmul
///     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
/// ptxas info    : Used 128 registers, used 1 barriers, 8192 bytes smem, 464 bytes cmem[0]
/// ```
pub fn parse_ptxas_log(log: &str) -> Vec<KernelResources> {
    let mut out: Vec<KernelResources> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            out.push(KernelResources {
                name,
                ..Default::default()
            });
        } else if let Some(k) = out.last_mut() {
            if line.contains("bytes stack frame") {
                k.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
                k.spill_store_bytes = number_before(line, "bytes spill stores").unwrap_or(0);
                k.spill_load_bytes = number_before(line, "bytes spill loads").unwrap_or(0);
            } else if line.contains("Used") && line.contains("registers") {
                k.registers = number_before(line, "registers").unwrap_or(0);
                k.shared_bytes = number_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    out
}

/// Static shared memory a block may use without opting in (48 KiB on every architecture).
pub const SHARED_LIMIT_BYTES: u32 = 48 * 1024;

/// Problems in a resource report: spills, or shared memory over the static limit.
pub fn resource_problems(r: &KernelResources) -> Vec<String> {
    let mut p = Vec::new();
    if r.spill_store_bytes > 0 || r.spill_load_bytes > 0 {
        p.push(format!(
            "{} spills registers ({} bytes stored, {} loaded)",
            r.name, r.spill_store_bytes, r.spill_load_bytes
        ));
    }
    if r.shared_bytes > SHARED_LIMIT_BYTES {
        p.push(format!(
            "{} uses {} bytes of shared memory (limit {SHARED_LIMIT_BYTES})",
            r.name, r.shared_bytes
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_ptxas_report() {
        let log = "ptxas info    : 0 bytes gmem\nptxas info    : Compiling entry function 'matmul' for 'sm_90'\nptxas info    : Function properties for matmul\n    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\nptxas info    : Used 128 registers, used 1 barriers, 8192 bytes smem, 464 bytes cmem[0]\nptxas info    : Compiling entry function 'fill' for 'sm_90'\nptxas info    : Function properties for fill\n    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\nptxas info    : Used 8 registers, 380 bytes cmem[0]\n";
        let r = parse_ptxas_log(log);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            KernelResources {
                name: "matmul".into(),
                registers: 128,
                shared_bytes: 8192,
                stack_bytes: 8,
                spill_store_bytes: 4,
                spill_load_bytes: 12
            }
        );
        assert_eq!(r[1].registers, 8);
        assert_eq!(r[1].shared_bytes, 0);
        assert_eq!(resource_problems(&r[0]).len(), 1);
        assert!(resource_problems(&r[1]).is_empty());
    }
}
