//! `scratchgpt study attention`: the book's chapter 3 numbers, reproduced — simplified attention,
//! v1 (seed 123), v2 (seed 789), the causal mask, the multi-head wrapper — and a gradient printed
//! for every parameter of each.

#[test]
fn study_attention_reproduces_the_books_numbers_and_prints_gradients() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_scratchgpt"))
        .args(["study", "attention"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let matches: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("the book prints the same to ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(matches.len(), 5, "{out}");
    for m in matches {
        // The book prints 4 decimals: agreement within its rounding.
        assert!(m <= 5e-5, "{out}");
    }
    for grad in ["dX", "dW_query", "dW_key", "dW_value", "dhead0.W_query"] {
        assert!(
            out.contains(&format!("  {grad} [")),
            "{grad} missing:\n{out}"
        );
    }
}
