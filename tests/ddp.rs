//! Data-parallel training's arithmetic, in one process: which windows each rank reads, the
//! gradient average, the combined evaluation, the dropout seeds, and the whole claim — N ranks of
//! batch B train as one process of batch N·B — with the ranks as threads joined by a tiny
//! in-memory transport (a test double of the `Collective` trait; the real transports, MPI and
//! NCCL, are tested through `mpirun` in tests/ddp_mpi.rs).

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier, Mutex};

use scratchgpt::data::{split_train_val, BpeTokenizer, DataLoader, GptDataset};
use scratchgpt::dist::{
    all_gather_f64, check_in_sync, grads::all_reduce_gradients, mean_of_batch_means, Collective,
    SOLO,
};
use scratchgpt::gpt::{GptConfig, GptModel};
use scratchgpt::optim::{AdamW, AdamWConfig, LrSchedule};
use scratchgpt::train::{
    distributed_engine_for, dropout_seed, train_with_engine, Engine, StepEngine, TrainEvent,
    TrainOptions, TrainState,
};
use scratchgpt::{Device, Tensor};

const VERDICT: &str = include_str!("../data/the-verdict.txt");

/// Ranks as threads: each sum adds every rank's buffer into a shared accumulator (in f64, then
/// rounded once: for two ranks exactly the f32 sum MPI computes).
struct ThreadRank {
    rank: usize,
    world: usize,
    shared: Arc<(Mutex<Vec<f64>>, Barrier)>,
}

fn thread_ranks(world: usize) -> Vec<ThreadRank> {
    let shared = Arc::new((Mutex::new(Vec::new()), Barrier::new(world)));
    (0..world)
        .map(|rank| ThreadRank {
            rank,
            world,
            shared: Arc::clone(&shared),
        })
        .collect()
}

impl ThreadRank {
    fn sum(&self, buf: &mut [f64]) {
        let (acc, barrier) = &*self.shared;
        if barrier.wait().is_leader() {
            *acc.lock().unwrap() = vec![0.0; buf.len()];
        }
        barrier.wait();
        {
            let mut a = acc.lock().unwrap();
            for (s, x) in a.iter_mut().zip(buf.iter()) {
                *s += x;
            }
        }
        barrier.wait();
        buf.copy_from_slice(&acc.lock().unwrap());
        barrier.wait();
    }
}

impl Collective for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn describe(&self) -> String {
        format!("threads, {} ranks", self.world)
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> scratchgpt::Result<()> {
        let mut wide: Vec<f64> = buf.iter().map(|&x| x as f64).collect();
        self.sum(&mut wide);
        for (x, w) in buf.iter_mut().zip(wide) {
            *x = w as f32;
        }
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> scratchgpt::Result<()> {
        self.sum(buf);
        Ok(())
    }
}

/// Runs `f(rank)` on `world` threads and returns their results in rank order.
fn on_ranks<T: Send>(world: usize, f: impl Fn(&ThreadRank) -> T + Sync) -> Vec<T> {
    let ranks = thread_ranks(world);
    std::thread::scope(|s| {
        let handles: Vec<_> = ranks.iter().map(|r| s.spawn(|| f(r))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn dataset(ctx: usize, which: usize) -> GptDataset {
    let tok = BpeTokenizer::gpt2();
    let (train, val) = split_train_val(VERDICT, 0.9).unwrap();
    let text = if which == 0 { train } else { val };
    GptDataset::new(&tok.encode(text).unwrap(), ctx, ctx).unwrap()
}

/// The window ids of each batch of one pass, as sets.
fn pass(loader: &mut DataLoader) -> Vec<BTreeSet<usize>> {
    let order = loader.epoch_order();
    (0..order.len())
        .map(|i| order.batch(i).iter().copied().collect())
        .collect()
}

#[test]
fn the_ranks_stripes_make_up_the_big_batches_of_one_process() {
    let ds = dataset(32, 0);
    for (world, batch, shuffle, drop_last) in [
        (2, 1, true, true),
        (2, 3, true, true),
        (3, 2, true, true),
        (2, 2, false, false),
        (3, 2, false, false),
    ] {
        let seed = 7;
        let mut one = DataLoader::new(ds.clone(), world * batch, shuffle, drop_last, seed).unwrap();
        let mut ranks: Vec<DataLoader> = (0..world)
            .map(|r| {
                DataLoader::new(ds.clone(), batch, shuffle, drop_last, seed)
                    .unwrap()
                    .striped(r, world)
                    .unwrap()
            })
            .collect();
        // Two passes: the shuffling streams stay in step.
        for _ in 0..2 {
            let big = pass(&mut one);
            let parts: Vec<Vec<BTreeSet<usize>>> = ranks.iter_mut().map(pass).collect();
            if drop_last {
                for p in &parts {
                    assert_eq!(p.len(), big.len(), "every rank takes every step");
                }
            }
            for (i, b) in big.iter().enumerate() {
                let mut union = BTreeSet::new();
                for p in &parts {
                    if let Some(s) = p.get(i) {
                        assert!(union.is_disjoint(s), "ranks read disjoint windows");
                        union.extend(s.iter().copied());
                    }
                }
                assert_eq!(
                    &union, b,
                    "batch {i} (world {world}, batch {batch}, shuffle {shuffle})"
                );
            }
        }
    }
    // Ranks out of range, and stripes too short for a batch, are errors.
    let l = || DataLoader::new(ds.clone(), 1, false, true, 1).unwrap();
    assert!(l().striped(2, 2).is_err());
    assert!(l().striped(0, 0).is_err());
    let small = GptDataset::new(&(0..40).collect::<Vec<u32>>(), 8, 8).unwrap(); // 4 windows
    let e = DataLoader::new(small.clone(), 1, false, true, 1)
        .unwrap()
        .striped(0, 5)
        .unwrap_err();
    assert!(e.to_string().contains("rank 0 of 5"), "{e}");
    // An evaluation loader (keeping its last batch) may leave a rank with nothing: 4 windows
    // over 5 ranks make one global batch, and rank 4's share of it is empty.
    let val = DataLoader::new(small, 1, false, false, 1)
        .unwrap()
        .striped(4, 5)
        .unwrap();
    assert_eq!(val.num_batches(), 0);
    assert_eq!(val.global_num_batches(), 1);
    assert!(val.eval_batches(3).is_empty());
}

#[test]
fn the_gradient_average_is_exact_and_skips_frozen_parameters() {
    let results = on_ranks(2, |g| {
        // Rank r's gradient of p is (r + 1)·[1, 2, 3, …]; q is frozen.
        let p = Tensor::from_vec((0..7).map(|i| i as f32).collect(), &[7])
            .unwrap()
            .requires_grad_(true);
        let big = Tensor::from_vec(vec![0.0f32; 40], &[4, 10])
            .unwrap()
            .requires_grad_(true);
        let q = Tensor::from_vec(vec![1.0f32; 3], &[3]).unwrap();
        let loss = p
            .mul_scalar((g.rank + 1) as f64)
            .unwrap()
            .mul(&p)
            .unwrap()
            .sum_all()
            .unwrap()
            .add(&big.sum_all().unwrap().mul_scalar(g.rank as f64).unwrap())
            .unwrap();
        loss.backward().unwrap();
        // A bucket of 8 floats: p (7) alone, big (40) alone and in place.
        all_reduce_gradients(g, &[p.clone(), q.clone(), big.clone()], 32).unwrap();
        (
            p.grad().unwrap().to_vec().unwrap(),
            big.grad().unwrap().to_vec().unwrap(),
            q.grad().is_none(),
        )
    });
    for (gp, gbig, frozen) in results {
        // d/dp of (r+1)·p² is 2(r+1)p; the mean over r = 0, 1 is 3p.
        let want: Vec<f32> = (0..7).map(|i| 3.0 * i as f32).collect();
        assert_eq!(gp, want);
        assert_eq!(gbig, vec![0.5f32; 40]);
        assert!(frozen);
    }
}

#[test]
fn evaluation_shares_combine_into_the_whole_batches_losses() {
    // Global batch 0: rank 0 has 2 sequences at mean 1, rank 1 has 1 at mean 4 → (2+4)/3 = 2.
    // Global batch 1: only rank 0 has it (mean 5). The result is the mean of 2 and 5.
    let r = on_ranks(2, |g| {
        let mine: Vec<(f64, usize)> = if g.rank == 0 {
            vec![(1.0, 2), (5.0, 1)]
        } else {
            vec![(4.0, 1)]
        };
        mean_of_batch_means(g, &mine, 3).unwrap()
    });
    assert_eq!(r, vec![3.5, 3.5]);
    assert_eq!(
        mean_of_batch_means(&SOLO, &[(1.0, 2), (2.0, 2)], 3).unwrap(),
        1.5
    );
    assert!(mean_of_batch_means(&SOLO, &[], 3).is_err());
    let gathered = on_ranks(3, |g| all_gather_f64(g, g.rank as f64 * 1.5 + 0.1).unwrap());
    for v in gathered {
        assert_eq!(v, vec![0.1, 1.6, 3.1]);
    }
}

#[test]
fn ranks_that_start_from_different_weights_are_refused() {
    let cfg = GptConfig::preset("tiny").unwrap();
    let r = on_ranks(2, |g| {
        let model = GptModel::new(&cfg, 1 + g.rank as u64).unwrap();
        check_in_sync(g, &model.parameters(), "at the start")
            .map_err(|e| e.to_string())
            .unwrap_err()
    });
    assert!(r[0].contains("rank(s) [1] differ from rank 0"), "{}", r[0]);
    let same = on_ranks(2, |g| {
        let model = GptModel::new(&cfg, 1).unwrap();
        check_in_sync(g, &model.parameters(), "at the start").is_ok()
    });
    assert_eq!(same, vec![true, true]);
}

#[test]
fn dropout_seeds_depend_on_the_rank_and_rank_zero_keeps_the_single_process_seeds() {
    let mut seen = BTreeSet::new();
    for rank in 0..4 {
        for step in 0..50 {
            for micro in 0..3 {
                assert!(seen.insert(dropout_seed(123, rank, step, micro)));
            }
        }
    }
    // Rank 0's seeds are the ones single-process runs (and their checkpoints) always used.
    let mix = scratchgpt::tensor::rng::mix64;
    assert_eq!(dropout_seed(123, 0, 5, 0), mix(123 ^ 5));
    assert_eq!(
        dropout_seed(123, 0, 5, 2),
        mix(mix(123 ^ 5).wrapping_add(2))
    );
}

/// Trains the tiny GPT for `steps` steps as one rank of `group` with micro-batches of `batch`,
/// returning the step losses and gradient norms, the evaluations and the final weights. (The
/// norms matter: Adam is blind to the gradient's scale, so a sum where the mean belongs would
/// leave the weights right and only show in the norm.)
type Outcome = (Vec<f64>, Vec<(f64, f64)>, Vec<Vec<f32>>);

fn train_rank(
    group: &dyn Collective,
    batch: usize,
    accum: usize,
    drop_rate: f64,
    steps: usize,
) -> Outcome {
    train_rank_on(Device::Cpu, group, batch, accum, drop_rate, steps)
}

thread_local! {
    /// This thread-rank's bucket size and whether it averages after the whole backward (None:
    /// the defaults, 25 MiB, during the backward — one bucket for the tiny model).
    static BUCKETS: std::cell::Cell<Option<(usize, bool)>> = const { std::cell::Cell::new(None) };
}

fn train_rank_on(
    device: Device,
    group: &dyn Collective,
    batch: usize,
    accum: usize,
    drop_rate: f64,
    steps: usize,
) -> Outcome {
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.drop_rate = drop_rate;
    let model = GptModel::new(&cfg, 11).unwrap();
    let (rank, world) = (group.rank(), group.world_size());
    let ctx = cfg.context_length;
    let mut train = DataLoader::new(dataset(ctx, 0), batch, true, true, 5)
        .unwrap()
        .striped(rank, world)
        .unwrap();
    let mut val = DataLoader::new(dataset(ctx, 1), batch, false, false, 5)
        .unwrap()
        .striped(rank, world)
        .unwrap();
    let mut opt = AdamW::new(model.named_parameters(), AdamWConfig::default());
    let mut opts = TrainOptions::book(1, 4, 3, "Every effort", 9, LrSchedule::constant(1e-3));
    opts.max_steps = Some(steps);
    opts.clip = Some(1.0);
    opts.grad_accum = accum;
    let mut engine: Box<dyn StepEngine> = match BUCKETS.with(|a| a.get()) {
        None => distributed_engine_for(device, &model, &mut opt, group).unwrap(),
        Some((bytes, after)) => {
            model.to_device(device).unwrap();
            let e = Engine::new(&model, &mut opt)
                .with_collective(group)
                .with_bucket_bytes(bytes);
            Box::new(if after { e.reduce_after_backward() } else { e })
        }
    };
    let mut losses = Vec::new();
    let mut evals = Vec::new();
    let mut state = TrainState::default();
    train_with_engine(
        engine.as_mut(),
        &mut train,
        &mut val,
        &opts,
        BpeTokenizer::gpt2(),
        &mut state,
        |e| match e {
            TrainEvent::Step {
                loss,
                tokens,
                grad_norm,
                ..
            } => {
                assert_eq!(*tokens, 2 * accum * ctx, "tokens count every rank's");
                losses.push(*loss);
                losses.push(*grad_norm);
            }
            TrainEvent::Eval {
                train_loss,
                val_loss,
                ..
            } => evals.push((*train_loss, *val_loss)),
            _ => {}
        },
    )
    .unwrap();
    drop(engine);
    let weights = model
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect();
    (losses, evals, weights)
}

/// The largest absolute difference between two models' weights.
fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1e-12))
        .fold(0.0, f64::max)
}

#[test]
fn two_ranks_of_batch_one_train_as_one_process_of_batch_two() {
    two_ranks_match_one_process(1);
}

#[test]
fn averaging_bucket_by_bucket_during_the_backward_or_after_it_gives_the_same_bits() {
    // 64 KiB buckets: the tiny model's 4.9 M gradients make dozens, averaged in the order the
    // backward finishes them (the same on both ranks, or the sums would mix parameters).
    let run = |after: bool| {
        on_ranks(2, |g| {
            BUCKETS.with(|a| a.set(Some((64 << 10, after))));
            train_rank(g, 1, 2, 0.0, 4)
        })
    };
    let (during, after) = (run(false), run(true));
    assert_eq!(during[0].0, after[0].0);
    assert_eq!(during[0].2, after[0].2);
    assert_eq!(during[0].2, during[1].2);
    // And both are the single process's step (to rounding), as with one big bucket.
    let (losses, _, weights) = train_rank(&SOLO, 2, 2, 0.0, 4);
    assert!(max_rel_diff(&during[0].0, &losses) < 1e-5);
    let diff = max_abs_diff(&during[0].2, &weights);
    assert!(diff < 1e-4, "weights differ by {diff}");
}

#[test]
fn with_gradient_accumulation_too() {
    // The sum happens once per step, after the last micro-batch's backward.
    two_ranks_match_one_process(3);
}

fn two_ranks_match_one_process(accum: usize) {
    let steps = 10;
    let (losses, evals, weights) = train_rank(&SOLO, 2, accum, 0.0, steps);
    let ranks = on_ranks(2, |g| train_rank(g, 1, accum, 0.0, steps));
    for (rank, (l, e, w)) in ranks.iter().enumerate() {
        assert_eq!(l.len(), 2 * steps, "a loss and a gradient norm per step");
        assert!(
            max_rel_diff(l, &losses) < 1e-5,
            "rank {rank}: {l:?} vs {losses:?}"
        );
        let flat = |v: &[(f64, f64)]| v.iter().flat_map(|&(a, b)| [a, b]).collect::<Vec<_>>();
        assert!(
            max_rel_diff(&flat(e), &flat(&evals)) < 1e-5,
            "{e:?} vs {evals:?}"
        );
        // The same weights up to f32 rounding of the summation order (the update moved each by
        // ~10 × lr; rounding differences are orders of magnitude below).
        let diff = max_abs_diff(w, &weights);
        assert!(diff < 1e-4, "rank {rank}: weights differ by {diff}");
    }
    // Both ranks hold bit-identical weights.
    assert_eq!(ranks[0].2, ranks[1].2);
}

/// Device gradients take the other path: a private copy summed by the transport (here staged
/// through the host, as over MPI; NCCL sums it in device memory) and scaled by a kernel.
#[cfg(feature = "cuda-emu")]
#[test]
fn device_gradients_are_averaged_too() {
    let steps = 3;
    let (losses, _, weights) = on_ranks(1, |_| {
        scratchgpt::backend::cuda::install_emulator(0);
        train_rank_on(Device::Cuda(0), &SOLO, 2, 1, 0.0, steps)
    })
    .remove(0);
    let ranks = on_ranks(2, |g| {
        scratchgpt::backend::cuda::install_emulator(0);
        train_rank_on(Device::Cuda(0), g, 1, 1, 0.0, steps)
    });
    for (rank, (l, _, w)) in ranks.iter().enumerate() {
        assert!(
            max_rel_diff(l, &losses) < 1e-4,
            "rank {rank}: {l:?} vs {losses:?}"
        );
        let diff = max_abs_diff(w, &weights);
        assert!(diff < 1e-4, "rank {rank}: weights differ by {diff}");
    }
    assert_eq!(ranks[0].2, ranks[1].2);
}

#[test]
fn with_dropout_each_rank_draws_its_own_masks_and_the_run_repeats_exactly() {
    let a = on_ranks(2, |g| train_rank(g, 1, 1, 0.1, 4));
    let b = on_ranks(2, |g| train_rank(g, 1, 1, 0.1, 4));
    assert_eq!(a[0].0, b[0].0, "same seed, same losses");
    assert_eq!(a[0].2, b[0].2, "same seed, same weights");
    assert_eq!(a[0].2, a[1].2, "the ranks stay identical");
    let no_dropout = on_ranks(2, |g| train_rank(g, 1, 1, 0.0, 4));
    assert_ne!(a[0].0, no_dropout[0].0);
}

#[test]
fn ddp_flags_are_checked_and_a_build_without_mpi_says_how_to_get_it() {
    let bin = env!("CARGO_BIN_EXE_scratchgpt");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(!o.status.success(), "{args:?} must fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // The launch flags only mean something with --ddp.
    let e = run(&["train", "--rank", "1", "--max-steps", "1"]);
    assert!(e.contains("--ddp"), "{e}");
    let e = run(&["train", "--ddp", "--ddp-timeout", "0", "--max-steps", "1"]);
    assert!(e.contains("--ddp-timeout must be a positive"), "{e}");
    // NCCL's flags on the CPU.
    let e = run(&["train", "--ddp", "--world-size", "2", "--rank", "0"]);
    assert!(
        e.contains("need --device cuda") || e.contains("without MPI"),
        "{e}"
    );
    if !cfg!(feature = "mpi") {
        let e = run(&["train", "--ddp", "--max-steps", "1"]);
        assert!(
            e.contains("--features mpi") && e.contains("mpirun -np N"),
            "{e}"
        );
    }
}
