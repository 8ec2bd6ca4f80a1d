//! Principal components of a set of rows, by a cyclic-Jacobi eigen-decomposition of their
//! covariance: the 2-D projection the report's code scatter plots use (`report::folder`).
//!
//! Owns: the covariance, the symmetric eigen-solver and the projection. Does not own: which rows
//! are projected or how they are drawn (`report::folder`, `plots`).

/// The leading principal components of a set of rows (all of one length p).
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// Column means μ.
    pub mean: Vec<f64>,
    /// Unit eigenvectors of the covariance, largest eigenvalue first; each signed so that its
    /// largest-magnitude entry is positive.
    pub components: Vec<Vec<f64>>,
    /// Their eigenvalues: the variance of the data along each component.
    pub variances: Vec<f64>,
    /// Trace of the covariance: the total variance.
    pub total_variance: f64,
}

/// Principal components of `rows` (n rows, p columns), the `k` leading ones:
/// ```text
/// μ = (1/n) Σ_i x_i,   C = (1/(n-1)) Σ_i (x_i - μ)(x_i - μ)ᵀ   (1/n when n = 1)
/// C = V Λ Vᵀ by cyclic Jacobi rotations; components = the columns of V with the k largest λ
/// ```
/// Returns `None` for no rows, p = 0, or rows of unequal length. Variances are ≥ 0 up to
/// rounding; `total_variance = Σ_j C_jj`.
pub fn pca(rows: &[Vec<f64>], k: usize) -> Option<Pca> {
    let p = rows.first()?.len();
    if p == 0 || rows.iter().any(|r| r.len() != p) {
        return None;
    }
    let n = rows.len() as f64;
    let mean: Vec<f64> = (0..p)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let denom = if rows.len() > 1 { n - 1.0 } else { n };
    let mut cov = vec![vec![0.0; p]; p];
    for r in rows {
        let c: Vec<f64> = r.iter().zip(&mean).map(|(x, m)| x - m).collect();
        for (row, ca) in cov.iter_mut().zip(&c) {
            for (x, cb) in row.iter_mut().zip(&c) {
                *x += ca * cb;
            }
        }
    }
    cov.iter_mut().flatten().for_each(|x| *x /= denom);
    let total_variance = (0..p).map(|j| cov[j][j]).sum();
    let (values, vectors) = symmetric_eigen(cov);
    let mut order: Vec<usize> = (0..p).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let mut components = Vec::new();
    let mut variances = Vec::new();
    for &j in order.iter().take(k) {
        let mut v: Vec<f64> = (0..p).map(|i| vectors[i][j]).collect();
        let big = v
            .iter()
            .copied()
            .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
        if big < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        components.push(v);
        variances.push(values[j]);
    }
    Some(Pca {
        mean,
        components,
        variances,
        total_variance,
    })
}

impl Pca {
    /// Coordinates of `row` on the components: `(x - μ) · v_j`.
    pub fn project(&self, row: &[f64]) -> Vec<f64> {
        self.components
            .iter()
            .map(|v| {
                v.iter()
                    .zip(row.iter().zip(&self.mean))
                    .map(|(a, (x, m))| a * (x - m))
                    .sum()
            })
            .collect()
    }
}

/// Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations (Golub & Van Loan,
/// Matrix Computations, §8.5): returns the eigenvalues and the matrix whose column j is the unit
/// eigenvector of eigenvalue j. Sweeps until the off-diagonal mass is below 1e-22 of the
/// total (at most 100 sweeps).
pub fn symmetric_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let p = a.len();
    let mut v: Vec<Vec<f64>> = (0..p)
        .map(|i| (0..p).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    let total: f64 = a.iter().flatten().map(|x| x * x).sum();
    for _ in 0..100 {
        let off: f64 = (0..p)
            .flat_map(|i| (0..p).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off <= 1e-22 * total.max(f64::MIN_POSITIVE) {
            break;
        }
        for q in 0..p {
            for r in q + 1..p {
                if a[q][r] == 0.0 {
                    continue;
                }
                // The rotation that zeroes a[q][r]: θ = (a_rr - a_qq) / (2 a_qr),
                // t = sign(θ) / (|θ| + sqrt(θ² + 1)), c = 1 / sqrt(t² + 1), s = t c.
                let theta = (a[r][r] - a[q][q]) / (2.0 * a[q][r]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (x, y) = (row[q], row[r]);
                    row[q] = c * x - s * y;
                    row[r] = s * x + c * y;
                }
                let (upper, lower) = a.split_at_mut(r);
                for (x, y) in upper[q].iter_mut().zip(lower[0].iter_mut()) {
                    let (xq, yr) = (*x, *y);
                    *x = c * xq - s * yr;
                    *y = s * xq + c * yr;
                }
                for row in v.iter_mut() {
                    let (x, y) = (row[q], row[r]);
                    row[q] = c * x - s * y;
                    row[r] = s * x + c * y;
                }
            }
        }
    }
    ((0..p).map(|i| a[i][i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn jacobi_finds_the_eigenvalues_of_a_block_matrix() {
        // [[4, 1, 0], [1, 4, 0], [0, 0, 2]]: the 2×2 block [[4, 1], [1, 4]] has eigenvalues
        // 4 ± 1 = 5 and 3 (eigenvectors (1, 1)/√2 and (1, -1)/√2), and the last axis is its own
        // eigenvector with eigenvalue 2; the trace 10 = 5 + 3 + 2.
        let a = vec![
            vec![4.0, 1.0, 0.0],
            vec![1.0, 4.0, 0.0],
            vec![0.0, 0.0, 2.0],
        ];
        let (values, vectors) = symmetric_eigen(a);
        let mut sorted = values.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for (got, want) in sorted.iter().zip([5.0, 3.0, 2.0]) {
            assert!((got - want).abs() < 1e-12, "{values:?}");
        }
        let j2 = values.iter().position(|v| (v - 2.0).abs() < 1e-9).unwrap();
        assert!((vectors[2][j2].abs() - 1.0).abs() < 1e-12);
        assert!(vectors[0][j2].abs() < 1e-12 && vectors[1][j2].abs() < 1e-12);
    }

    #[test]
    fn pca_of_a_cross_finds_the_long_arm_first() {
        // Four points (±2, 0) and (0, ±1): mean 0, covariance diag(8/3, 2/3) with 1/(n-1) = 1/3,
        // so the first component is the x axis (variance 8/3), the second the y axis (2/3).
        let rows = vec![
            vec![2.0, 0.0],
            vec![-2.0, 0.0],
            vec![0.0, 1.0],
            vec![0.0, -1.0],
        ];
        let p = pca(&rows, 2).unwrap();
        assert_eq!(p.mean, vec![0.0, 0.0]);
        assert!((p.components[0][0] - 1.0).abs() < 1e-12 && p.components[0][1].abs() < 1e-12);
        assert!((p.components[1][1] - 1.0).abs() < 1e-12 && p.components[1][0].abs() < 1e-12);
        assert!((p.variances[0] - 8.0 / 3.0).abs() < 1e-12);
        assert!((p.variances[1] - 2.0 / 3.0).abs() < 1e-12);
        assert!((p.total_variance - 10.0 / 3.0).abs() < 1e-12);
        assert_eq!(p.project(&[2.0, 0.0]), vec![2.0, 0.0]);
    }

    #[test]
    fn jacobi_finds_the_eigenpairs_of_a_known_matrix() {
        // [[2, 1], [1, 2]] has eigenvalues 3 and 1 with eigenvectors (1, 1)/√2 and (1, -1)/√2.
        let (values, vectors) = symmetric_eigen(vec![vec![2.0, 1.0], vec![1.0, 2.0]]);
        let mut pairs: Vec<(f64, Vec<f64>)> = (0..2)
            .map(|j| (values[j], vec![vectors[0][j], vectors[1][j]]))
            .collect();
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        assert!((pairs[0].0 - 3.0).abs() < 1e-12);
        assert!((pairs[1].0 - 1.0).abs() < 1e-12);
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert!((pairs[0].1[0].abs() - h).abs() < 1e-12);
        assert!((pairs[0].1[0] - pairs[0].1[1]).abs() < 1e-12);
        assert!((pairs[1].1[0] + pairs[1].1[1]).abs() < 1e-12);
    }

    #[test]
    fn pca_of_points_on_a_line_has_one_component() {
        // x_i = i · (3, 4)/5 + (1, 1): all variance lies along (0.6, 0.8).
        let rows: Vec<Vec<f64>> = (0..10)
            .map(|i| vec![1.0 + 0.6 * i as f64, 1.0 + 0.8 * i as f64])
            .collect();
        let p = pca(&rows, 2).unwrap();
        assert!((p.components[0][0] - 0.6).abs() < 1e-12);
        assert!((p.components[0][1] - 0.8).abs() < 1e-12);
        // Var of 0..9 with 1/(n-1) is 55/6; the second direction has none.
        assert!((p.variances[0] - 55.0 / 6.0).abs() < 1e-9);
        assert!(p.variances[1].abs() < 1e-9);
        assert!((p.total_variance - 55.0 / 6.0).abs() < 1e-9);
        // Projection of the mean is 0, of the last point 4.5 (= 9 - mean index 4.5).
        assert!(p.project(&p.mean.clone())[0].abs() < 1e-12);
        assert!((p.project(&rows[9])[0] - 4.5).abs() < 1e-9);
    }

    #[test]
    fn pca_rejects_ragged_or_empty_input() {
        assert!(pca(&[], 2).is_none());
        assert!(pca(&[vec![1.0], vec![1.0, 2.0]], 2).is_none());
    }

    proptest! {
        #[test]
        fn jacobi_reconstructs_symmetric_matrices(
            entries in proptest::collection::vec(-5.0f64..5.0, 21)
        ) {
            // A random symmetric 6×6 matrix from its 21 upper-triangle entries.
            // Entry (lo, hi), lo <= hi, of the row-major upper triangle is at
            // lo (2p - lo + 1) / 2 + (hi - lo).
            let p = 6;
            let a: Vec<Vec<f64>> = (0..p)
                .map(|i| {
                    (0..p)
                        .map(|j| {
                            let (lo, hi) = (i.min(j), i.max(j));
                            entries[lo * (2 * p - lo + 1) / 2 + (hi - lo)]
                        })
                        .collect()
                })
                .collect();
            let (values, v) = symmetric_eigen(a.clone());
            for i in 0..p {
                for j in 0..p {
                    // A = V Λ Vᵀ and Vᵀ V = I.
                    let rebuilt: f64 = (0..p).map(|k| v[i][k] * values[k] * v[j][k]).sum();
                    prop_assert!((rebuilt - a[i][j]).abs() < 1e-9);
                    let dot: f64 = (0..p).map(|k| v[k][i] * v[k][j]).sum();
                    prop_assert!((dot - f64::from(u8::from(i == j))).abs() < 1e-9);
                }
            }
        }

        #[test]
        fn pca_variances_are_the_projected_variances(
            data in proptest::collection::vec(proptest::collection::vec(-1.0f64..1.0, 4), 3..30)
        ) {
            let p = pca(&data, 2).unwrap();
            for (j, var) in p.variances.iter().enumerate() {
                // Variance of the projections (1/(n-1)) equals the eigenvalue.
                let proj: Vec<f64> = data.iter().map(|r| p.project(r)[j]).collect();
                let n = proj.len() as f64;
                let m = proj.iter().sum::<f64>() / n;
                let v = proj.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
                prop_assert!((v - var).abs() < 1e-9);
            }
            prop_assert!(p.variances[0] + 1e-12 >= p.variances[1]);
            prop_assert!(p.variances.iter().sum::<f64>() <= p.total_variance + 1e-9);
        }
    }
}
