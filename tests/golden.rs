//! The engine's strongest test: the book's GPTModel recomputed from PyTorch's weights and batch —
//! logits, loss, every parameter's gradient, ten AdamW steps and greedy generations — within the
//! fixture's f32 tolerances (tests/fixtures/book-gpt-tiny, written by PyTorch 2.15).

use scratchgpt::gpt::reference_check::check_book_fixture;

#[test]
fn book_gpt_tiny_matches_pytorch() {
    let lines = check_book_fixture(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/book-gpt-tiny"
    ))
    .unwrap();
    assert_eq!(
        lines.len(),
        38,
        "names, logits, loss, 31 gradients, 2 AdamW, 2 generations"
    );
    for l in &lines {
        assert!(
            l.ok,
            "{}: max abs err {:e} > tolerance {:e}",
            l.quantity, l.max_abs_err, l.tolerance
        );
    }
}

#[test]
fn check_reference_cli_passes_and_rejects_a_missing_fixture() {
    let exe = env!("CARGO_BIN_EXE_scratchgpt");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/book-gpt-tiny");
    let o = std::process::Command::new(exe)
        .args(["check-reference", dir])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("38 checked, 0 failed"));
    let o = std::process::Command::new(exe)
        .args(["check-reference", "/no/such/dir"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/no/such/dir") && err.trim().lines().count() == 1,
        "{err}"
    );
}
