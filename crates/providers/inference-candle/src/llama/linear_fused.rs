//! Matrices that read the same input (q/k/v, gate/up) joined into one product.

use candle_core::{Device, Result, Tensor};

use super::{GROUP, Linear, Packed, linear_half};

/// Matrices that read the same input, multiplied as one where their layout allows: q/k/v
/// and gate/up. One pass streams all their weights with a single quantization of the input
/// and a single round trip through the thread pool, where separate products would each end
/// in a barrier that idles the threads finishing first.
#[derive(Debug, Clone)]
pub(crate) struct Fused {
    /// One matrix holding every part's rows in turn, or the parts as they were.
    pub(super) kind: FusedKind,
    /// Output rows of each part, when joined.
    pub(super) rows: Vec<usize>,
}

#[derive(Debug, Clone)]
pub(super) enum FusedKind {
    One(Linear),
    Separate(Vec<Linear>),
}

impl Fused {
    pub fn new(parts: Vec<Linear>) -> Fused {
        if let Some(joined) = linear_half::join(&parts) {
            return joined;
        }
        let packed: Vec<&Packed> = parts
            .iter()
            .filter_map(|p| match p {
                Linear::Quant(p) => Some(p.as_ref()),
                Linear::Candle(_) | Linear::Half(_) => None,
            })
            .collect();
        let fusable = packed.len() == parts.len()
            && packed.len() > 1
            && packed.iter().all(|p| {
                p.kind == packed[0].kind && p.cols == packed[0].cols && p.rows % GROUP == 0
            });
        if !fusable {
            return Fused {
                rows: Vec::new(),
                kind: FusedKind::Separate(parts),
            };
        }
        let rows: Vec<usize> = packed.iter().map(|p| p.rows).collect();
        // Rows are grouped by eight and groups are stored one after another, so stacking
        // matrices whose rows fill whole groups is concatenating their buffers.
        let joined = Packed {
            kind: packed[0].kind,
            rows: rows.iter().sum(),
            cols: packed[0].cols,
            scales: packed
                .iter()
                .map(|p| &p.scales[..])
                .collect::<Vec<_>>()
                .concat(),
            quants: packed
                .iter()
                .map(|p| &p.quants[..])
                .collect::<Vec<_>>()
                .concat(),
        };
        Fused {
            rows,
            kind: FusedKind::One(Linear::Quant(std::sync::Arc::new(joined))),
        }
    }

    /// Parts already stacked into one matrix, `rows` rows each.
    pub fn joined(rows: Vec<usize>, all: Linear) -> Fused {
        Fused {
            rows,
            kind: FusedKind::One(all),
        }
    }

    /// Each part's product with `x` (`(m, cols)`), in the order the parts were given.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match &self.kind {
            FusedKind::Separate(parts) => parts.iter().map(|p| p.forward(x)).collect(),
            FusedKind::One(all) => {
                let out = all.forward(x)?;
                let mut start = 0;
                self.rows
                    .iter()
                    .map(|&n| {
                        let part = out.narrow(1, start, n);
                        start += n;
                        part
                    })
                    .collect()
            }
        }
    }

    /// `silu(gate) * up` for a gate/up pair (`(m, rows)`), computed on the joined product's
    /// buffer in one pass instead of as separate tensor operations over strided halves.
    pub fn forward_swiglu(&self, x: &Tensor) -> Result<Tensor> {
        match (&self.kind, &self.rows[..]) {
            (FusedKind::One(all @ (Linear::Quant(_) | Linear::Half(_))), &[gate_rows, up_rows])
                if gate_rows == up_rows =>
            {
                let m = x.dim(0)?;
                let both = match all {
                    Linear::Quant(p) => p.products(x)?,
                    Linear::Half(h) => h.products(x)?,
                    Linear::Candle(_) => unreachable!(),
                };
                let mut out = Vec::with_capacity(m * gate_rows);
                for row in both.chunks_exact(2 * gate_rows) {
                    let (gate, up) = row.split_at(gate_rows);
                    out.extend(
                        gate.iter()
                            .zip(up)
                            .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u),
                    );
                }
                Tensor::from_vec(out, (m, gate_rows), &Device::Cpu)
            }
            _ => {
                let parts = self.forward(x)?;
                let [gate, up] = &parts[..] else {
                    candle_core::bail!("a gate/up projection has two parts, not {}", parts.len())
                };
                candle_nn::ops::silu(gate)? * up
            }
        }
    }

    /// Whether the parts run as one product.
    #[cfg(test)]
    pub fn is_joined(&self) -> bool {
        matches!(self.kind, FusedKind::One(_))
    }
}
