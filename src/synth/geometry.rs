//! Vector geometry of a synthetic world: random unit feature maps and the type directions
//! theta_t built from a regular simplex (METHOD.md §2, "Distance knob").
//!
//! This module owns only plain `f64` vector arithmetic and the simplex construction; it knows
//! nothing about tokens, rewards or labels.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// Inner product `<a, b>`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Euclidean norm `|a|`.
pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Cosine similarity `<a, b> / (|a| |b|)`, in [-1, 1].
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    dot(a, b) / (norm(a) * norm(b))
}

/// Divide `a` by its norm in place. A zero vector is left unchanged.
pub fn normalise(a: &mut [f64]) {
    let n = norm(a);
    if n > 0.0 {
        a.iter_mut().for_each(|x| *x /= n);
    }
}

/// `n` independent unit vectors in R^m: each a standard normal draw divided by its norm,
/// i.e. uniform on the sphere S^{m-1}. Consumes exactly `n * m` normal draws (a zero draw,
/// which has probability 0, is redrawn).
pub fn random_unit_rows<R: Rng + ?Sized>(n: usize, m: usize, rng: &mut R) -> Vec<Vec<f64>> {
    (0..n)
        .map(|_| {
            loop {
                let mut v: Vec<f64> = (0..m).map(|_| StandardNormal.sample(rng)).collect();
                if norm(&v) > 1e-12 {
                    normalise(&mut v);
                    break v;
                }
            }
        })
        .collect()
}

/// `k <= m` random orthonormal vectors in R^m: Gaussian draws orthonormalised by modified
/// Gram–Schmidt, applied twice for accuracy at the 1e-15 level. The first vector is uniform on
/// the sphere and each next one is uniform on the sphere of the complement of the previous ones.
pub fn orthonormal_frame<R: Rng + ?Sized>(k: usize, m: usize, rng: &mut R) -> Vec<Vec<f64>> {
    assert!(
        k <= m,
        "an orthonormal frame of {k} vectors needs dimension >= {k}, got {m}"
    );
    let mut frame: Vec<Vec<f64>> = Vec::with_capacity(k);
    while frame.len() < k {
        let mut v: Vec<f64> = (0..m).map(|_| StandardNormal.sample(rng)).collect();
        for _ in 0..2 {
            for q in &frame {
                let p = dot(&v, q);
                v.iter_mut().zip(q).for_each(|(x, y)| *x -= p * y);
            }
        }
        // A draw (numerically) inside the span of the frame has probability 0; redraw it.
        if norm(&v) > 1e-9 {
            normalise(&mut v);
            frame.push(v);
        }
    }
    frame
}

/// Coordinates of the T vertices of a centred regular simplex with unit-norm vertices, in
/// R^{T-1} (row t is vertex t). Built from the standard basis of R^T:
///
/// ```text
/// u_t    = (e_t - 1/T) / sqrt((T-1)/T)              unit norm, <u_i, u_j> = -1/(T-1)
/// h_k    = (e_0 + .. + e_{k-1} - k e_k) / sqrt(k(k+1)),  k = 1..T-1  (Helmert basis of 1^⊥)
/// coord  = <u_t, h_k> = h_k[t] / sqrt((T-1)/T)
/// ```
///
/// The Helmert vectors are an orthonormal basis of the sum-zero subspace that holds every u_t,
/// so the coordinates keep all inner products exactly. T = 1 gives one empty row.
pub fn simplex_coordinates(types: usize) -> Vec<Vec<f64>> {
    let t_f = types as f64;
    let scale = ((t_f - 1.0) / t_f).sqrt();
    (0..types)
        .map(|t| {
            (1..types)
                .map(|k| {
                    let h = if t < k {
                        1.0
                    } else if t == k {
                        -(k as f64)
                    } else {
                        0.0
                    };
                    h / ((k * (k + 1)) as f64).sqrt() / scale
                })
                .collect()
        })
        .collect()
}

/// The shared direction c and the T type directions theta_t in R^m (needs m >= T):
///
/// ```text
/// (c, q_1 .. q_{T-1})  a random orthonormal frame of R^m
/// v_t      = sum_k simplex_coordinates[t][k] q_k      unit, <v_i, v_j> = -1/(T-1), v_t ⊥ c
/// theta_t  = normalise(sqrt(1 - d) c + sqrt(d) v_t)
/// cos(theta_i, theta_j) = 1 - d T / (T - 1)             (i != j)
/// ```
///
/// T = 1: theta_0 = c whatever d. The random draws depend only on (T, m), never on d, so worlds
/// that differ only in d share c and the frame.
pub fn type_directions<R: Rng + ?Sized>(
    types: usize,
    dim: usize,
    distance: f64,
    rng: &mut R,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let frame = orthonormal_frame(types, dim, rng);
    let c = frame[0].clone();
    if types == 1 {
        return (c.clone(), vec![c]);
    }
    let (a, b) = ((1.0 - distance).sqrt(), distance.sqrt());
    let thetas = simplex_coordinates(types)
        .iter()
        .map(|coords| {
            let mut v = vec![0.0; dim];
            for (k, w) in coords.iter().enumerate() {
                v.iter_mut()
                    .zip(&frame[k + 1])
                    .for_each(|(x, q)| *x += w * q);
            }
            let mut theta: Vec<f64> = c.iter().zip(&v).map(|(ci, vi)| a * ci + b * vi).collect();
            normalise(&mut theta);
            theta
        })
        .collect();
    (c, thetas)
}

/// Pairwise cosine matrix of the rows of `vectors`.
pub fn cosine_matrix(vectors: &[Vec<f64>]) -> Vec<Vec<f64>> {
    vectors
        .iter()
        .map(|a| vectors.iter().map(|b| cosine(a, b)).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    #[test]
    fn simplex_is_regular_and_centred() {
        // Expected values from the definition: unit vertices, pairwise <u_i,u_j> = -1/(T-1),
        // and the vertices sum to 0.
        for t in 2..9 {
            let s = simplex_coordinates(t);
            for i in 0..t {
                assert!((norm(&s[i]) - 1.0).abs() < 1e-14);
                for j in 0..i {
                    assert!((dot(&s[i], &s[j]) + 1.0 / (t as f64 - 1.0)).abs() < 1e-14);
                }
            }
            for k in 0..t - 1 {
                assert!(s.iter().map(|r| r[k]).sum::<f64>().abs() < 1e-14);
            }
        }
    }

    #[test]
    fn frame_is_orthonormal() {
        let f = orthonormal_frame(5, 7, &mut stream(3, "frame"));
        for i in 0..5 {
            for j in 0..5 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot(&f[i], &f[j]) - want).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn two_types_at_distance_one_are_exact_opposites() {
        // d = 1, T = 2: cos = 1 - 2 = -1, and the construction negates bit for bit.
        let (_, th) = type_directions(2, 4, 1.0, &mut stream(0, "t"));
        for (a, b) in th[0].iter().zip(&th[1]) {
            assert_eq!(*a, -*b);
        }
    }
}
