//! A long loop of forward passes under `no_grad` must not grow memory or the graph. A counting
//! global allocator measures the bytes live on the heap (its own test binary, since the
//! allocator is process-wide, with a single test so nothing else allocates concurrently).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use scratchgpt::autograd::live_graph_nodes;
use scratchgpt::ops::attention::AttentionOptions;
use scratchgpt::{no_grad, Ids, Tensor};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; it only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
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

/// A small GPT-like forward pass: embedding, layer norm, attention, MLP, cross-entropy.
fn forward(w: &[Tensor<f32>], ids: &Ids) -> Tensor<f32> {
    let (b, t, c, h) = (2, 8, 16, 2);
    let x = w[0].embedding(ids).unwrap();
    let x = x.layer_norm(&w[1], &w[2], 1e-5).unwrap();
    let q = x
        .matmul(&w[3])
        .unwrap()
        .reshape(&[b, t, h, c / h])
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    let a = Tensor::attention(&q, &q, &q, &AttentionOptions::default()).unwrap();
    let a = a.transpose(1, 2).unwrap().reshape(&[b, t, c]).unwrap();
    let y = a.add(&x).unwrap().gelu().unwrap().matmul(&w[4]).unwrap();
    y.cross_entropy(ids).unwrap()
}

#[test]
fn no_grad_forward_loop_does_not_grow_memory_or_graph() {
    let w = vec![
        Tensor::<f32>::randn(&[32, 16], 1).requires_grad_(true),
        Tensor::<f32>::ones(&[16]).requires_grad_(true),
        Tensor::<f32>::zeros(&[16]).requires_grad_(true),
        Tensor::<f32>::randn(&[16, 16], 2).requires_grad_(true),
        Tensor::<f32>::randn(&[16, 32], 3).requires_grad_(true),
    ];
    let ids = Ids::new((0..16).map(|i| (i * 7 % 32) as i64).collect(), &[2, 8]).unwrap();
    // warm up (thread pools, lazily allocated statics)
    for _ in 0..5 {
        no_grad(|| forward(&w, &ids));
    }
    let before = LIVE.load(Ordering::Relaxed);
    let mut losses = Vec::new();
    for _ in 0..2000 {
        let loss = no_grad(|| forward(&w, &ids));
        assert!(!loss.requires_grad());
        assert_eq!(live_graph_nodes(), 0);
        losses.push(loss.item().unwrap());
        losses.pop();
    }
    let grown = LIVE.load(Ordering::Relaxed) - before;
    assert!(
        grown < 64 * 1024,
        "heap grew by {grown} bytes over 2000 no_grad forward passes"
    );

    // Contrast: with grad on, keeping the losses keeps their graphs alive.
    let kept: Vec<_> = (0..10).map(|_| forward(&w, &ids)).collect();
    assert!(
        live_graph_nodes() > 10 * 10,
        "graph nodes: {}",
        live_graph_nodes()
    );
    drop(kept);
    assert_eq!(live_graph_nodes(), 0);
}
