//! Runs scratchgpt's CUDA kernels on the CPU, for tests on machines without a GPU.
//!
//! The build script compiles every unmodified `kernels/*.cu` with g++ under the emulator header
//! `kernels/emu/cuda_emu.h` (one fiber per CUDA thread, one OS thread per block in flight). This
//! crate only exposes the launch: "device memory" here is ordinary host memory, so a device
//! pointer is a host address. scratchgpt's tests wrap it in the same `GpuBackend` trait the CUDA
//! driver implements, so the emulator exercises the very host code that launches the kernels on a GPU.

use std::ffi::{c_char, c_void, CStr, CString};

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn emu_launch(
        name: *const c_char,
        gx: u32,
        gy: u32,
        gz: u32,
        bx: u32,
        by: u32,
        bz: u32,
        args: *mut *mut c_void,
        arg_kinds: *const c_char,
        workers: u32,
        schedule: u32,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn emu_kernel_name(index: u32) -> *const c_char;
}

/// The order in which a block's ready threads run between synchronisation points. A correct
/// kernel gives the same result under every schedule; one missing a `__syncthreads` does not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schedule {
    /// Thread 0 first.
    #[default]
    Forward = 0,
    /// The last thread first.
    Reverse = 1,
    /// A seeded shuffle (per block).
    ShuffleA = 2,
    /// Another seeded shuffle.
    ShuffleB = 3,
}

impl Schedule {
    /// All four, for tests that run a kernel under each.
    pub const ALL: [Schedule; 4] = [
        Schedule::Forward,
        Schedule::Reverse,
        Schedule::ShuffleA,
        Schedule::ShuffleB,
    ];
}

/// Launch kernel `name` over `grid` blocks of `block` threads. `args` holds one pointer to each
/// kernel argument's value, in order, exactly as `cuLaunchKernel` takes them; `arg_kinds` says
/// what each is (`p` pointer, `i` 32-bit integer, `l` 64-bit integer, `f` float), and the
/// launch fails with a message naming the first argument that does not match the kernel's
/// parameter list.
///
/// # Safety
/// Each pointer in `args` must point to a live value of the type the kernel's parameter has, and
/// every pointer-typed argument must point to host memory large enough for what the kernel
/// touches (the emulator runs the kernel's code as is, with no bounds checks).
pub unsafe fn launch(
    name: &str,
    grid: [u32; 3],
    block: [u32; 3],
    args: &mut [*mut c_void],
    arg_kinds: &str,
    workers: u32,
    schedule: Schedule,
) -> Result<(), String> {
    let cname = CString::new(name).map_err(|_| format!("kernel name {name:?} contains NUL"))?;
    let ckinds =
        CString::new(arg_kinds).map_err(|_| format!("argument kinds {arg_kinds:?} contain NUL"))?;
    if ckinds.as_bytes().len() != args.len() {
        return Err(format!(
            "{name}: {} argument kinds for {} arguments",
            arg_kinds.len(),
            args.len()
        ));
    }
    let mut err = vec![0 as c_char; 1024];
    // SAFETY: forwarded from the caller's contract; the error buffer is valid for its length.
    let rc = unsafe {
        emu_launch(
            cname.as_ptr(),
            grid[0],
            grid[1],
            grid[2],
            block[0],
            block[1],
            block[2],
            args.as_mut_ptr(),
            ckinds.as_ptr(),
            workers,
            schedule as u32,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        // SAFETY: emu_launch NUL-terminates the buffer.
        Err(unsafe { CStr::from_ptr(err.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }
}

/// The names of every kernel compiled into the emulator.
pub fn kernel_names() -> Vec<String> {
    let mut out = Vec::new();
    for i in 0.. {
        // SAFETY: returns a pointer to a static NUL-terminated name, or null past the end.
        let p = unsafe { emu_kernel_name(i) };
        if p.is_null() {
            break;
        }
        // SAFETY: non-null pointers are static C strings.
        out.push(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned());
    }
    out
}
