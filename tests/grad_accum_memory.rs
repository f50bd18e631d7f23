//! Gradient accumulation's point: a step over N micro-batches of B needs the memory of batch B,
//! not B·N — each micro-batch's graph is freed by its backward before the next forward. A
//! counting global allocator measures the peak bytes live during one step (its own test binary,
//! as the allocator is process-wide, with a single test).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use scratchgpt::data::dataset::Batch;
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::optim::{AdamW, AdamWConfig};
use scratchgpt::train::{Engine, StepEngine};
use scratchgpt::Ids;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; it only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size() as isize, Ordering::Relaxed) + l.size() as isize;
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` was allocated by `System` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn batch(rows: usize, t: usize, offset: usize) -> Batch {
    let ids = |shift: usize| {
        Ids::new(
            (0..rows * t)
                .map(|i| ((i + shift + offset) * 7919 % 50257) as i64)
                .collect(),
            &[rows, t],
        )
        .unwrap()
    };
    Batch {
        inputs: ids(0),
        targets: ids(1),
    }
}

/// Peak bytes above the live bytes before one step over `micro` micro-batches of `rows`.
fn step_peak(engine: &mut Engine, micro: usize, rows: usize) -> isize {
    let batches: Vec<Batch> = (0..micro).map(|k| batch(rows, 32, k * 1000)).collect();
    let seeds: Vec<u64> = (0..micro as u64).collect();
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    engine.train_step(&batches, &seeds, None, 1e-4).unwrap();
    PEAK.load(Ordering::SeqCst) - before
}

#[test]
fn accumulating_four_micro_batches_peaks_like_one() {
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.drop_rate = 0.0;
    let model = GptModel::new(&cfg, 1).unwrap();
    let mut opt = AdamW::new(model.named_parameters(), AdamWConfig::default());
    let mut engine = Engine::new(&model, &mut opt);
    // A first step creates the gradients and AdamW's moments, which every step then reuses.
    step_peak(&mut engine, 1, 8);
    let big = step_peak(&mut engine, 1, 8);
    let accumulated = step_peak(&mut engine, 4, 2);
    let small = step_peak(&mut engine, 1, 2);
    eprintln!("peak over a step: batch 8 {big} B, 4 × batch 2 {accumulated} B, batch 2 {small} B");
    // The activations of batch 8 are four times batch 2's. Accumulating 4 × 2 holds one micro-
    // batch's activations plus, while adding a micro-batch's gradients to the running sum, a
    // second set of gradients (measured: batch 8 96 MB, 4 × 2 36 MB, batch 2 17 MB; the
    // gradients are 20 MB) — well under the big batch's peak.
    let grads = (model.num_parameters() * 4) as isize;
    assert!(
        accumulated < small + grads + grads / 4 && accumulated < big / 2,
        "peak over the step: batch 8 {big} B, 4 × batch 2 {accumulated} B, batch 2 {small} B"
    );
}
