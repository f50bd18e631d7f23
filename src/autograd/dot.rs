//! Drawing the graph: Graphviz DOT export of the autograd graph behind a tensor (micrograd's
//! `draw_dot`, for tensors). Render with `dot -Tsvg graph.dot > graph.svg`.

use std::collections::HashSet;
use std::fmt::Write;

use crate::tensor::{Element, Tensor};

impl<T: Element> Tensor<T> {
    /// The graph behind this tensor as Graphviz DOT: one box per tensor (the op that made it or
    /// its name, shape, whether it requires grad, whether a gradient is stored), one edge per
    /// input. Ops are drawn as ellipses between their inputs and their output.
    pub fn graph_dot(&self) -> String {
        let mut out = String::from(
            "digraph autograd {\n  rankdir=LR;\n  node [fontname=\"monospace\", fontsize=10];\n",
        );
        let mut seen = HashSet::new();
        let mut stack = vec![self.clone()];
        while let Some(t) = stack.pop() {
            if !seen.insert(t.id()) {
                continue;
            }
            let id = t.id();
            let title = match (t.name(), t.op_name()) {
                (Some(n), _) => n,
                (None, Some(op)) => format!("{op} output"),
                (None, None) => "leaf".to_string(),
            };
            let mut flags = Vec::new();
            if t.requires_grad() {
                flags.push("requires_grad");
            }
            if t.retains_grad() {
                flags.push("retain_grad");
            }
            let grad = match t.grad() {
                Some(g) => format!("grad {:?}", g.shape()),
                None => "no grad".to_string(),
            };
            let fill = if t.is_leaf() && t.requires_grad() {
                "lightblue"
            } else if t.is_leaf() {
                "white"
            } else {
                "lightyellow"
            };
            let _ = writeln!(
                out,
                "  t{id} [shape=record, style=filled, fillcolor={fill}, label=\"{{ {} | {:?} {}{} | {} | {} }}\"];",
                escape(&title),
                t.shape(),
                t.dtype(),
                match t.device() {
                    crate::tensor::Device::Cpu => String::new(),
                    d => format!(" {d}"),
                },
                flags.join(" "),
                grad
            );
            if let Some(op) = t.op_name() {
                let inputs = t.graph_inputs();
                let _ = writeln!(out, "  op{id} [shape=ellipse, label=\"{}\"];", escape(op));
                let _ = writeln!(out, "  op{id} -> t{id};");
                if inputs.is_empty() {
                    let _ = writeln!(
                        out,
                        "  freed{id} [shape=plaintext, label=\"(history freed by backward)\"];"
                    );
                    let _ = writeln!(out, "  freed{id} -> op{id} [style=dashed];");
                }
                for input in inputs {
                    let _ = writeln!(out, "  t{} -> op{id};", input.id());
                    stack.push(input);
                }
            }
        }
        out.push_str("}\n");
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('{', "\\{")
        .replace('}', "\\}")
        .replace('|', "\\|")
        .replace('<', "\\<")
        .replace('>', "\\>")
}
