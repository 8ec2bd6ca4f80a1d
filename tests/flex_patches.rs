//! The two changes lpc-bench makes to burn-flex 0.21.0 (`vendor/burn-flex`, `vendor/README.md`)
//! checked against plain index arithmetic:
//! - a permuted (non-collapsible, positive-stride) tensor made contiguous equals the element
//!   at the permuted index of the source, for every element (oracle: `src[perm⁻¹(index)]`
//!   computed by hand from row-major strides);
//! - new tensors (`zeros`, matmul outputs) start from zeros and have the right values.

use burn::tensor::{Tensor, TensorData};
use lpc_bench::model::CpuBackend as B;

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// `source.permute(axes)` read in row-major order, by hand: output index `o` holds the source
/// element whose index along `axes[k]` is `o[k]`.
fn permuted_by_hand(source: &[f32], shape: &[usize], axes: &[usize]) -> Vec<f32> {
    let out_shape: Vec<usize> = axes.iter().map(|&a| shape[a]).collect();
    let (src_strides, out_strides) = (strides(shape), strides(&out_shape));
    (0..source.len())
        .map(|flat| {
            let src_index: usize = (0..axes.len())
                .map(|k| (flat / out_strides[k]) % out_shape[k] * src_strides[axes[k]])
                .sum();
            source[src_index]
        })
        .collect()
}

#[test]
fn permuted_copies_match_index_arithmetic() {
    let device = Default::default();
    let shape = [3usize, 5, 4, 6];
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let source =
        Tensor::<B, 4>::from_data(TensorData::new(values.clone(), shape.to_vec()), &device);
    // Head split [N, L, H, D] -> [N, H, L, D], a batched transpose, a full reversal, a
    // rotation, and one that collapses to 2-D (the old tiled path) as a control.
    for axes in [
        [0, 2, 1, 3],
        [0, 1, 3, 2],
        [3, 2, 1, 0],
        [1, 3, 0, 2],
        [1, 0, 2, 3],
    ] {
        let got = source
            .clone()
            .permute(axes)
            .reshape([n])
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(
            got,
            permuted_by_hand(&values, &shape, &axes),
            "permute {axes:?}"
        );
    }
    // A narrowed, permuted view (non-zero offset into the buffer).
    let narrowed = source.clone().narrow(1, 1, 3).permute([0, 2, 1, 3]);
    let sliced: Vec<f32> = {
        let s = strides(&shape);
        let mut v = Vec::new();
        for a in 0..3 {
            for c in 0..4 {
                for b in 1..4 {
                    for d in 0..6 {
                        v.push(values[a * s[0] + b * s[1] + c * s[2] + d * s[3]]);
                    }
                }
            }
        }
        v
    };
    let got = narrowed
        .reshape([3 * 4 * 3 * 6])
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(got, sliced);
}

#[test]
fn new_tensors_start_from_zero_and_matmul_outputs_are_exact() {
    let device = Default::default();
    let zeros = Tensor::<B, 2>::zeros([7, 9], &device);
    assert!(
        zeros
            .into_data()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|&x| x == 0.0)
    );
    // Small integers: every product and sum is exact in f32, so the oracle is exact.
    let a: Vec<f32> = (0..12).map(|i| (i % 5) as f32 - 2.0).collect();
    let b: Vec<f32> = (0..20).map(|i| (i % 7) as f32 - 3.0).collect();
    let (ta, tb) = (
        Tensor::<B, 2>::from_data(TensorData::new(a.clone(), [3, 4]), &device),
        Tensor::<B, 2>::from_data(TensorData::new(b.clone(), [4, 5]), &device),
    );
    let got = ta.matmul(tb).into_data().to_vec::<f32>().unwrap();
    let want: Vec<f32> = (0..15)
        .map(|ij| {
            (0..4)
                .map(|k| a[(ij / 5) * 4 + k] * b[k * 5 + ij % 5])
                .sum()
        })
        .collect();
    assert_eq!(got, want);
}
