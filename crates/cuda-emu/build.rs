//! Compiles every `kernels/*.cu` with g++ under `kernels/emu/cuda_emu.h`, and generates the table
//! that maps kernel names to callable trampolines.
//!
//! Kernel names are found by preprocessing each file (so kernels stamped out by macros are found
//! too) and collecting the `extern "C" void NAME(` definitions that come from the kernels folder.
//! Set `CUDA_EMU_ASAN=1` to build with AddressSanitizer (out-of-bounds kernel accesses then abort).
//!
//! Each file is compiled from a copy in which every `__shared__` declaration is followed by
//! `EMU_POISON_SHARED(name)` (a `#line` directive keeps diagnostics and the name scan pointing at
//! the original): the emulator then fills shared memory with NaN bits at the start of every block.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let kernels = manifest
        .join("../../kernels")
        .canonicalize()
        .expect("kernels/ folder");
    let emu = kernels.join("emu");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed={}", kernels.display());
    println!("cargo:rerun-if-env-changed=CUDA_EMU_ASAN");
    let asan = std::env::var("CUDA_EMU_ASAN").is_ok_and(|v| v == "1");

    // kernels/*.cu, plus the emulator's own self-test kernels in kernels/emu/.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&kernels)
        .unwrap()
        .chain(std::fs::read_dir(&emu).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        emu.join("cuda_emu.h").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        kernels.join("common.cuh").display()
    );

    let base = || {
        let mut b = cc::Build::new();
        b.cpp(true)
            .std("c++17")
            .include(&emu)
            .include(&kernels)
            .opt_level(2)
            .warnings(false)
            .flag_if_supported("-fno-strict-aliasing");
        if asan {
            b.flag("-fsanitize=address").flag("-fno-omit-frame-pointer");
        }
        b
    };

    let mut registry =
        String::from("#define EMU_DEFINE_RUNTIME\n#include \"cuda_emu.h\"\n#include <cstring>\n");
    let mut tables = Vec::new();
    let mut build = base();
    for f in &files {
        let stem = f
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .replace(['-', '.'], "_");
        let source = std::fs::read_to_string(f).unwrap();
        let poisoned_path = out.join(format!("poisoned_{stem}.cu"));
        std::fs::write(
            &poisoned_path,
            format!(
                "#line 1 \"{}\"\n{}",
                f.display(),
                poison_shared_declarations(&source)
            ),
        )
        .unwrap();
        let prelude = format!(
            "#include \"cuda_emu.h\"\n#include \"common.cuh\"\n#include \"{}\"\n",
            poisoned_path.display()
        );
        let pre_path = out.join(format!("pre_{stem}.cpp"));
        std::fs::write(&pre_path, &prelude).unwrap();
        let expanded = base().file(&pre_path).expand();
        let names = kernel_names(&String::from_utf8_lossy(&expanded), &kernels);
        assert!(!names.is_empty(), "no kernels found in {}", f.display());
        let mut wrap = prelude.clone();
        writeln!(
            wrap,
            "extern \"C\" const emu::KernelEntry* emu_table_{stem}(unsigned* n) {{\n  static const emu::KernelEntry t[] = {{"
        )
        .unwrap();
        for n in &names {
            writeln!(
                wrap,
                "    {{\"{n}\", (void*)&{n}, emu::trampoline_of(&{n}), emu::kinds_of(&{n})}},"
            )
            .unwrap();
        }
        writeln!(
            wrap,
            "  }};\n  *n = sizeof t / sizeof t[0];\n  return t;\n}}"
        )
        .unwrap();
        let wrap_path = out.join(format!("wrap_{stem}.cpp"));
        std::fs::write(&wrap_path, wrap).unwrap();
        build.file(&wrap_path);
        tables.push(stem);
    }
    for t in &tables {
        writeln!(
            registry,
            "extern \"C\" const emu::KernelEntry* emu_table_{t}(unsigned* n);"
        )
        .unwrap();
    }
    registry.push_str(
        "typedef const emu::KernelEntry* (*TableFn)(unsigned*);\nstatic const TableFn kTables[] = {",
    );
    for t in &tables {
        write!(registry, "emu_table_{t}, ").unwrap();
    }
    registry.push_str(
        r#"};

static const emu::KernelEntry* find(const char* name) {
    for (TableFn f : kTables) {
        unsigned n = 0;
        const emu::KernelEntry* t = f(&n);
        for (unsigned i = 0; i < n; i++) if (std::strcmp(t[i].name, name) == 0) return &t[i];
    }
    return nullptr;
}

// 0 on success; otherwise writes a message into err (NUL-terminated, truncated to err_len).
extern "C" int emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                          unsigned bz, void** args, const char* arg_kinds, unsigned workers, unsigned schedule,
                          char* err, unsigned long err_len) {
    const emu::KernelEntry* k = find(name);
    std::string e = k ? emu::launch(*k, dim3(gx, gy, gz), dim3(bx, by, bz), args, arg_kinds, workers, schedule)
                      : std::string("no kernel named ") + name;
    if (e.empty()) return 0;
    std::strncpy(err, e.c_str(), err_len - 1);
    err[err_len - 1] = 0;
    return 1;
}

// Kernel names, one per call: returns nullptr past the end.
extern "C" const char* emu_kernel_name(unsigned index) {
    for (TableFn f : kTables) {
        unsigned n = 0;
        const emu::KernelEntry* t = f(&n);
        if (index < n) return t[index].name;
        index -= n;
    }
    return nullptr;
}
"#,
    );
    let reg_path = out.join("registry.cpp");
    std::fs::write(&reg_path, registry).unwrap();
    build.file(&reg_path);
    build.compile("cuda_emu_kernels");
    if asan {
        println!("cargo:rustc-link-lib=asan");
    }
}

/// `extern "C" void NAME(` definitions whose preprocessor line marker points into `kernels`.
fn kernel_names(expanded: &str, kernels: &Path) -> Vec<String> {
    let dir = kernels.to_string_lossy().to_string();
    let mut in_kernels = false;
    let mut names = Vec::new();
    for line in expanded.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            // Line marker: # <line> "<file>" flags
            in_kernels = rest
                .split('"')
                .nth(1)
                .is_some_and(|f| f.starts_with(&dir) && f.ends_with(".cu"));
            continue;
        }
        if !in_kernels {
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find("extern \"C\"") {
            rest = &rest[pos + "extern \"C\"".len()..];
            let t = rest.trim_start();
            if let Some(after) = t.strip_prefix("void") {
                let after = after.trim_start();
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && after[name.len()..].trim_start().starts_with('(') {
                    names.push(name);
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// `source` with `EMU_POISON_SHARED(name);` after every `__shared__` declaration (outside
/// comments), on the same line so line numbers stay right. The kernels declare one array per
/// statement, on one line; anything else (several declarators, `extern __shared__`, a
/// declaration across lines or inside a block comment) stops the build with a message rather
/// than leaving a variable unpoisoned.
fn poison_shared_declarations(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + 256);
    let mut in_block_comment = false;
    for line in source.lines() {
        // Blank out comments, keeping columns, to find code only.
        let mut code = String::with_capacity(line.len());
        let mut rest = line;
        while !rest.is_empty() {
            if in_block_comment {
                match rest.find("*/") {
                    Some(i) => {
                        code.push_str(&" ".repeat(i + 2));
                        rest = &rest[i + 2..];
                        in_block_comment = false;
                    }
                    None => {
                        code.push_str(&" ".repeat(rest.len()));
                        rest = "";
                    }
                }
            } else {
                let (line_c, block_c) = (rest.find("//"), rest.find("/*"));
                match (line_c, block_c) {
                    (Some(l), b) if b.is_none_or(|b| l < b) => {
                        code.push_str(&rest[..l]);
                        rest = "";
                    }
                    (_, Some(b)) => {
                        code.push_str(&rest[..b]);
                        code.push_str("  ");
                        rest = &rest[b + 2..];
                        in_block_comment = true;
                    }
                    _ => {
                        code.push_str(rest);
                        rest = "";
                    }
                }
            }
        }
        let Some(start) = code.find("__shared__") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        assert!(
            !code[..start].contains("extern"),
            "cuda-emu: dynamic `extern __shared__` memory is not supported: {line}"
        );
        let decl_end = code[start..]
            .find(';')
            .map(|i| start + i)
            .unwrap_or_else(|| {
                panic!("cuda-emu: a __shared__ declaration must end on its line: {line}")
            });
        let decl = &code[start + "__shared__".len()..decl_end];
        let mut depth = 0i32;
        for c in decl.chars() {
            match c {
                '[' | '(' => depth += 1,
                ']' | ')' => depth -= 1,
                ',' if depth == 0 => panic!(
                    "cuda-emu: declare one __shared__ variable per statement (each is poisoned by name): {line}"
                ),
                _ => {}
            }
        }
        let before_dims = decl.split(['[', '=']).next().unwrap();
        let name: String = before_dims
            .trim_end()
            .chars()
            .rev()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert!(!name.is_empty(), "cuda-emu: no variable name in: {line}");
        out.push_str(&line[..=decl_end]);
        out.push_str(&format!(" EMU_POISON_SHARED({name});"));
        out.push_str(&line[decl_end + 1..]);
        out.push('\n');
    }
    out
}
