//! `scratchgpt kernels`: compile every CUDA kernel with NVRTC (no GPU needed) and print the
//! registers, shared memory, stack and spills ptxas reports for each, as a Markdown table.

use std::process::ExitCode;

use scratchgpt::backend::cuda::kernels::KERNEL_FILES;
use scratchgpt::backend::cuda::nvrtc::{compile, nvrtc_status, resource_problems, Target};

#[derive(clap::Args)]
pub struct Args {
    /// Architectures to build machine code for (sm_XX numbers).
    #[arg(long, value_delimiter = ',', default_value = "80,90")]
    arch: Vec<u32>,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let version = nvrtc_status()?;
    println!(
        "Compiled with {version}; PTX for compute_80 plus machine code for {:?}.\n",
        a.arch
    );
    print!("| kernel | file |");
    for sm in &a.arch {
        print!(" sm_{sm} regs | sm_{sm} smem B |");
    }
    println!(" spills |");
    print!("|---|---|");
    for _ in &a.arch {
        print!("---:|---:|");
    }
    println!("---|");
    let mut problems = Vec::new();
    for file in KERNEL_FILES {
        compile(file, Target::Ptx { compute: 80 })?;
        let reports: Vec<_> = a
            .arch
            .iter()
            .map(|&sm| compile(file, Target::Cubin { sm }))
            .collect::<Result<_, _>>()?;
        for entry in file.entry_points {
            print!("| `{entry}` | {} |", file.name);
            let mut spills = 0;
            for (r, sm) in reports.iter().zip(&a.arch) {
                let k = r.resources.iter().find(|k| k.name == *entry);
                match k {
                    Some(k) => {
                        print!(" {} | {} |", k.registers, k.shared_bytes);
                        spills += k.spill_store_bytes + k.spill_load_bytes;
                        problems.extend(
                            resource_problems(k)
                                .into_iter()
                                .map(|p| format!("sm_{sm}: {p}")),
                        );
                    }
                    None => print!(" ? | ? |"),
                }
            }
            println!(
                " {} |",
                if spills == 0 {
                    "none".to_string()
                } else {
                    format!("{spills} B")
                }
            );
        }
    }
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("resource problems:\n{}", problems.join("\n"));
        Ok(ExitCode::FAILURE)
    }
}
