//! A study graph recorded before backward and drawn after it: every node's op, shape and
//! module, then its gradient's norm. Backward frees the graph as it goes (that is how memory is
//! returned early), so the structure is copied out first and every intermediate is asked to
//! retain its gradient.
//!
//! The drawing puts each module (embedding, each block's attention and feed-forward halves,
//! head, loss) in its own Graphviz cluster, laid out top to bottom, and draws the edges between
//! modules without letting them constrain the layout: the clusters then stand side by side, one
//! column per module, and the whole tiny GPT reads on one screen instead of one 20,000-pixel row.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write;

use crate::tensor::Tensor;

use super::tiny_gpt::{module_of_parameter, Taps};

/// One tensor of the recorded graph.
pub struct GraphNode {
    pub id: u64,
    /// The op that made it (`None` for a parameter).
    pub op: Option<&'static str>,
    /// The parameter's book name, or the boundary's name for a tapped tensor.
    pub name: Option<String>,
    pub shape: Vec<usize>,
    /// The ids of its inputs that take part in backward.
    pub inputs: Vec<u64>,
    /// The module it belongs to (a cluster of the drawing).
    pub module: String,
    tensor: Tensor<f64>,
}

impl GraphNode {
    /// The Frobenius norm of its gradient (after backward), if one reached it.
    pub fn grad_norm(&self) -> Option<f64> {
        let g = self.tensor.grad()?;
        let g = g.value().ok()?;
        Some(g.iter().map(|x| x * x).sum::<f64>().sqrt())
    }
}

/// The differentiable part of a forward graph: every tensor behind the loss that requires grad.
pub struct RecordedGraph {
    /// In the order the walk met them (loss first).
    pub nodes: Vec<GraphNode>,
}

impl RecordedGraph {
    /// Records the graph behind `loss` — call it before `backward()`. Turns `retain_grad` on for
    /// every intermediate, so their gradients can be read afterwards.
    pub fn record(loss: &Tensor<f64>, taps: &Taps, params: &[(String, Tensor<f64>)]) -> Self {
        let param_names: HashMap<u64, &str> =
            params.iter().map(|(n, p)| (p.id(), n.as_str())).collect();
        let tap_names: HashMap<u64, &str> = taps
            .boundaries
            .iter()
            .map(|(n, t)| (t.id(), n.as_str()))
            .collect();
        let mut nodes = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![loss.clone()];
        while let Some(t) = stack.pop() {
            if !t.requires_grad() || !seen.insert(t.id()) {
                continue;
            }
            let inputs: Vec<Tensor<f64>> = t
                .graph_inputs()
                .into_iter()
                .filter(|i| i.requires_grad())
                .collect();
            let (name, module) = match param_names.get(&t.id()) {
                Some(n) => (Some(n.to_string()), module_of_parameter(n)),
                None => (
                    tap_names.get(&t.id()).map(|n| n.to_string()),
                    taps.scope_of(t.id()).unwrap_or("inputs").to_string(),
                ),
            };
            if !t.is_leaf() {
                t.retain_grad();
            }
            nodes.push(GraphNode {
                id: t.id(),
                op: t.op_name(),
                name,
                shape: t.shape(),
                inputs: inputs.iter().map(|i| i.id()).collect(),
                module,
                tensor: t.clone(),
            });
            stack.extend(inputs);
        }
        RecordedGraph { nodes }
    }

    /// The distinct op names in the graph.
    pub fn op_names(&self) -> BTreeSet<&'static str> {
        self.nodes.iter().filter_map(|n| n.op).collect()
    }

    /// Graphviz DOT: one box per tensor (op or name, shape, gradient norm), one cluster per
    /// module, one row of clusters per transformer block.
    pub fn to_dot(&self, title: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "digraph study {{");
        let _ = writeln!(
            out,
            "  rankdir=TB; newrank=true; labelloc=t; fontname=\"monospace\"; label=\"{}\";",
            escape(title)
        );
        let _ = writeln!(
            out,
            "  node [shape=box, style=\"rounded,filled\", fillcolor=white, fontname=\"monospace\", fontsize=9, margin=\"0.04,0.02\", height=0.2];"
        );
        let _ = writeln!(out, "  edge [arrowsize=0.5];");
        let mut modules: Vec<&str> = Vec::new();
        for n in &self.nodes {
            if !modules.contains(&n.module.as_str()) {
                modules.push(&n.module);
            }
        }
        modules.sort_by_key(|m| module_rank(m));
        let module_of: HashMap<u64, &str> = self
            .nodes
            .iter()
            .map(|n| (n.id, n.module.as_str()))
            .collect();
        let same_module = |a: u64, m: &str| module_of.get(&a) == Some(&m);
        for (k, m) in modules.iter().enumerate() {
            let _ = writeln!(
                out,
                "  subgraph cluster_{k} {{\n    label=\"{}\"; style=rounded; color=gray50;",
                escape(m)
            );
            // An invisible anchor above the module's first nodes: the handle that places the
            // cluster in its row.
            let _ = writeln!(
                out,
                "    anchor{k} [style=invis, shape=point, width=0, height=0, label=\"\"];"
            );
            for n in self.nodes.iter().filter(|n| n.module == *m) {
                let head = match (&n.name, n.op) {
                    (Some(name), Some(op)) => format!("{op} → {name}"),
                    (Some(name), None) => short_param(name, m),
                    (None, Some(op)) => op.to_string(),
                    (None, None) => "input".into(),
                };
                let grad = match n.grad_norm() {
                    Some(g) => format!("|g| {g:.2e}"),
                    None => "no grad".into(),
                };
                let fill = if n.op.is_none() {
                    "lightblue"
                } else if n.name.is_some() {
                    "lightyellow"
                } else {
                    "white"
                };
                let shape: Vec<String> = n.shape.iter().map(usize::to_string).collect();
                let _ = writeln!(
                    out,
                    "    t{} [fillcolor={fill}, label=\"{}\\n({}) {grad}\"];",
                    n.id,
                    escape(&head),
                    shape.join(",")
                );
                if !n.inputs.iter().any(|&i| same_module(i, m)) {
                    let _ = writeln!(out, "    anchor{k} -> t{} [style=invis];", n.id);
                }
            }
            let _ = writeln!(out, "  }}");
        }
        // Rows: the embedding with block 0, each later block on its own row, the head and loss
        // with the last block. Anchors of a row share a rank (left to right in forward order);
        // each row hangs below the previous row's last nodes.
        let rows = row_groups(&modules);
        for (r, row) in rows.iter().enumerate() {
            let anchors: Vec<String> = row.iter().map(|k| format!("anchor{k}")).collect();
            let _ = writeln!(out, "  {{ rank=same; {}; }}", anchors.join("; "));
            for pair in anchors.windows(2) {
                let _ = writeln!(out, "  {} -> {} [style=invis];", pair[0], pair[1]);
            }
            if r > 0 {
                for &k in &rows[r - 1] {
                    for n in self.nodes.iter().filter(|n| n.module == modules[k]) {
                        let _ = writeln!(out, "  t{} -> {} [style=invis];", n.id, anchors[0]);
                    }
                }
            }
        }
        for n in &self.nodes {
            for &i in &n.inputs {
                if same_module(i, &n.module) {
                    let _ = writeln!(out, "  t{i} -> t{};", n.id);
                } else {
                    // Between modules: drawn, but free of the layout.
                    let _ = writeln!(
                        out,
                        "  t{i} -> t{} [constraint=false, color=gray60, style=dashed];",
                        n.id
                    );
                }
            }
        }
        out.push_str("}\n");
        out
    }
}

/// A parameter's name inside its module's cluster: `trf_blocks.0.att.W_query.weight` →
/// `W_query.weight`, `trf_blocks.0.norm1.scale` → `norm1.scale`.
fn short_param(name: &str, module: &str) -> String {
    match name.strip_prefix(module).and_then(|r| r.strip_prefix('.')) {
        Some(rest) => rest.to_string(),
        None => match name.strip_prefix("trf_blocks.") {
            Some(rest) => rest.split_once('.').map_or(name, |(_, r)| r).to_string(),
            None => name.to_string(),
        },
    }
}

/// Cluster indices (into the forward-ordered `modules`) grouped into rows, one per block.
fn row_groups(modules: &[&str]) -> Vec<Vec<usize>> {
    let block_of = |m: &str| module_rank(m);
    let last_block = modules
        .iter()
        .filter(|m| m.starts_with("trf_blocks."))
        .map(|m| block_of(m).1)
        .max()
        .unwrap_or(0);
    let mut rows = vec![Vec::new(); last_block + 1];
    for (k, m) in modules.iter().enumerate() {
        let (group, block, _) = block_of(m);
        let row = match group {
            0 | 1 => 0,
            2 => block,
            _ => last_block,
        };
        rows[row].push(k);
    }
    rows
}

/// Forward order of the study GPT's modules.
fn module_rank(m: &str) -> (usize, usize, usize) {
    let parts: Vec<&str> = m.split('.').collect();
    match parts.as_slice() {
        ["inputs"] => (0, 0, 0),
        ["embedding"] => (1, 0, 0),
        ["trf_blocks", i, half] => (2, i.parse().unwrap_or(0), usize::from(*half == "ff")),
        ["head"] => (3, 0, 0),
        ["loss"] => (4, 0, 0),
        _ => (5, 0, 0),
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
