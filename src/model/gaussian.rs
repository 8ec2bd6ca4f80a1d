//! The continuous-latent ablation (VPL-style): a diagonal Gaussian posterior and prior.
//!
//! This module owns the Gaussian counterpart of the LPC heads (METHOD.md §1, "a continuous
//! Gaussian latent"): the posterior reads the same pair features as LPC's
//! (`latent::posterior_features`, optionally pooled with annotator context), the prior reads
//! `h_x` or is fixed to N(0, I), a sample is drawn with the reparameterisation trick from
//! host-drawn noise, and a linear projection maps it to the backbone width, where it is added at
//! the same injection point as an LPC code. It also owns the analytic KL between two diagonal
//! Gaussians. Losses (how the KL is weighted) live in `objective`.
//!
//! ```text
//! q(u | x, yw > yl) = N(mu_q, diag exp(logvar_q)),   [mu_q; logvar_q] = MLP_post(features)
//! p(u | x)          = N(mu_p, diag exp(logvar_p)),   [mu_p; logvar_p] = MLP_prior(h_x)  or N(0, I)
//! u = mu_q + exp(logvar_q / 2) * eps,  eps ~ N(0, I)        (training)
//! u = mu_p                                                    (inference)
//! z = P u,  P in R^{d x m}                                    (added to every h_t)
//! ```

use super::backbone::materialise;
use super::latent::{Mlp, MlpConfig, mean_pool_groups};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// Which prior the Gaussian latent is regularised toward.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum GaussianPrior {
    /// `p(u|x)` from an MLP on `h_x` (the analogue of LPC's prior).
    Learned,
    /// The fixed standard normal N(0, I) (VPL).
    Standard,
}

/// Shape of the Gaussian heads.
#[derive(Config, Debug)]
pub struct GaussianConfig {
    /// Backbone hidden size d.
    pub d_model: usize,
    /// Latent dimension m.
    pub latent_dim: usize,
    /// Hidden width of the prior and posterior MLPs. Default: `d_model`.
    #[config(default = "None")]
    pub d_hidden: Option<usize>,
    /// Learned prior or N(0, I).
    #[config(default = "GaussianPrior::Learned")]
    pub prior: GaussianPrior,
    /// Standard deviation of each coordinate of `z = P u` at initialisation when
    /// `u ~ N(0, I)` (P's entries are drawn from N(0, code_init_std^2 / m)); the LPC codebook's
    /// `code_init_std` (0.5), so a posterior sample perturbs the policy as much as a code does.
    #[config(default = 0.5)]
    pub code_init_std: f64,
}

impl GaussianConfig {
    /// Fresh heads on `device`, initialised as the fields describe.
    pub fn init<B: Backend>(&self, device: &B::Device) -> GaussianHeads<B> {
        let (d, m) = (self.d_model, self.latent_dim);
        let hidden = self.d_hidden.unwrap_or(d);
        let heads = GaussianHeads {
            // Zero output layers: q = p = N(0, I) for every input at the start, so KL(q||p) and
            // its gradient start at exactly 0 and the latent begins as pure noise around the
            // bare policy (as the discrete posterior and prior start near uniform).
            posterior: MlpConfig::new(2 * d, hidden, 2 * m)
                .with_zero_output(true)
                .init(device),
            prior: match self.prior {
                GaussianPrior::Learned => Some(
                    MlpConfig::new(d, hidden, 2 * m)
                        .with_zero_output(true)
                        .init(device),
                ),
                GaussianPrior::Standard => None,
            },
            projection: LinearConfig::new(m, d)
                .with_bias(false)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: self.code_init_std / (m as f64).sqrt(),
                })
                .init(device),
            latent_dim: m,
        };
        materialise(heads)
    }
}

/// Posterior and prior heads of the Gaussian latent, and its projection to the backbone width.
#[derive(Module, Debug)]
pub struct GaussianHeads<B: Backend> {
    posterior: Mlp<B>,
    /// `None` for the fixed N(0, I) prior.
    prior: Option<Mlp<B>>,
    projection: Linear<B>,
    latent_dim: usize,
}

/// A batch of diagonal Gaussians, `[N, m]` each.
#[derive(Debug, Clone)]
pub struct DiagGaussian<B: Backend> {
    /// Means `[N, m]`.
    pub mean: Tensor<B, 2>,
    /// Log-variances `[N, m]`.
    pub log_var: Tensor<B, 2>,
}

impl<B: Backend> GaussianHeads<B> {
    /// `q(u | x, yw > yl)` from pair features `[N, 2d]` (`latent::posterior_features`, or
    /// `latent::pool_context` of them).
    pub fn posterior(&self, features: Tensor<B, 2>) -> DiagGaussian<B> {
        self.split(self.posterior.forward(features))
    }

    /// `q` with annotator context: features `[N*(C+1), 2d]` in groups of `C+1` rows,
    /// mean-pooled per group before the MLP (as `LatentHeads::posterior_logits_pooled`).
    pub fn posterior_pooled(&self, features: Tensor<B, 2>, group: usize) -> DiagGaussian<B> {
        self.posterior(mean_pool_groups(features, group))
    }

    /// `p(u | x)` from `h_x` `[N, d]`; for the standard prior, zeros (mean 0, log-variance 0).
    pub fn prior(&self, h_x: Tensor<B, 2>) -> DiagGaussian<B> {
        match &self.prior {
            Some(mlp) => self.split(mlp.forward(h_x)),
            None => {
                let [n, _] = h_x.dims();
                let zeros = Tensor::zeros([n, self.latent_dim], &h_x.device());
                DiagGaussian {
                    mean: zeros.clone(),
                    log_var: zeros,
                }
            }
        }
    }

    /// `z = P u`, `[N, d]`, from latents `u` `[N, m]`.
    pub fn project(&self, u: Tensor<B, 2>) -> Tensor<B, 2> {
        self.projection.forward(u)
    }

    /// Latent dimension m.
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    fn split(&self, out: Tensor<B, 2>) -> DiagGaussian<B> {
        let m = self.latent_dim;
        DiagGaussian {
            mean: out.clone().narrow(1, 0, m),
            log_var: out.narrow(1, m, m),
        }
    }
}

/// Standard normal noise `eps ~ N(0, I)`, `[rows, m]`, drawn on the host from `rng`.
pub fn standard_normal_noise<B: Backend>(
    rng: &mut impl Rng,
    rows: usize,
    m: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let values: Vec<f32> = (0..rows * m)
        .map(|_| {
            let x: f64 = StandardNormal.sample(rng);
            x as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [rows, m]), device)
}

/// Reparameterised sample `u = mean + exp(log_var / 2) * eps`, `[N, m]`, differentiable in
/// `mean` and `log_var`; `eps` is [`standard_normal_noise`].
pub fn reparameterise<B: Backend>(q: &DiagGaussian<B>, eps: Tensor<B, 2>) -> Tensor<B, 2> {
    q.mean.clone() + q.log_var.clone().mul_scalar(0.5).exp() * eps
}

/// Analytic `KL(q || p)` per row, `[N]`, for diagonal Gaussians: [`crate::objective::gaussian_kl`]
/// (which gives the formula) applied to two [`DiagGaussian`]s.
pub fn gaussian_kl<B: Backend>(q: &DiagGaussian<B>, p: &DiagGaussian<B>) -> Tensor<B, 1> {
    crate::objective::gaussian_kl(
        q.mean.clone(),
        q.log_var.clone(),
        p.mean.clone(),
        p.log_var.clone(),
    )
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::model::{CpuAutodiff, CpuBackend};
    use crate::rng::stream;

    type B = CpuBackend;

    fn floats<const D: usize, BB: Backend>(t: Tensor<BB, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
    }

    fn gauss(mean: [[f32; 2]; 2], log_var: [[f32; 2]; 2]) -> DiagGaussian<B> {
        let device = Default::default();
        DiagGaussian {
            mean: Tensor::from_floats(mean, &device),
            log_var: Tensor::from_floats(log_var, &device),
        }
    }

    #[test]
    fn kl_matches_closed_form_on_hand_values() {
        // Row 0: q = N([1, 0], diag[1, e^1]), p = N(0, I):
        //   dim 0: 0 - 0 + (1 + 1)/1 - 1 = 1;  dim 1: 0 - 1 + (e + 0)/1 - 1 = e - 2
        //   KL = (1 + e - 2)/2 = (e - 1)/2.
        // Row 1: q = N([0, 0], I), p = N([2, -1], diag[e^2, 1]):
        //   dim 0: 2 - 0 + (1 + 4)/e^2 - 1 = 1 + 5 e^-2;  dim 1: 0 + (1 + 1)/1 - 1 = 1
        //   KL = (2 + 5 e^-2)/2.
        let q = gauss([[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]);
        let p = gauss([[0.0, 0.0], [2.0, -1.0]], [[0.0, 0.0], [2.0, 0.0]]);
        let kl = floats(gaussian_kl(&q, &p));
        let e = std::f32::consts::E;
        assert!((kl[0] - (e - 1.0) / 2.0).abs() < 1e-5, "{kl:?}");
        assert!((kl[1] - (2.0 + 5.0 / (e * e)) / 2.0).abs() < 1e-5, "{kl:?}");
        // q = p gives exactly 0.
        let kl0 = floats(gaussian_kl(&q, &q.clone()));
        assert!(kl0.iter().all(|&k| k.abs() < 1e-6), "{kl0:?}");
    }

    #[test]
    fn kl_is_non_negative_on_random_gaussians() {
        let device = Default::default();
        let mut rng = stream(9, "kl");
        for _ in 0..20 {
            let mk = |rng: &mut _| DiagGaussian::<B> {
                mean: standard_normal_noise(rng, 4, 3, &device),
                log_var: standard_normal_noise(rng, 4, 3, &device),
            };
            let (q, p) = (mk(&mut rng), mk(&mut rng));
            assert!(floats(gaussian_kl(&q, &p)).iter().all(|&k| k >= 0.0));
        }
    }

    #[test]
    fn reparameterised_samples_have_the_posterior_moments() {
        let _rng = crate::rng::backend_rng_lock();
        // u = mu + sigma eps: with 20000 draws the sample mean is within 5 sigma/sqrt(n) of mu
        // and the sample variance within 5 * sigma^2 sqrt(2/n) of sigma^2 (normal theory).
        let device = Default::default();
        let n = 20_000;
        let q = DiagGaussian::<B> {
            mean: Tensor::<B, 2>::full([n, 1], 1.5, &device),
            log_var: Tensor::<B, 2>::full([n, 1], (0.25f32).ln(), &device),
        };
        let u = floats(reparameterise(
            &q,
            standard_normal_noise(&mut stream(1, "u"), n, 1, &device),
        ));
        let mean = u.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let var = u.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 1.5).abs() < 5.0 * 0.5 / (n as f64).sqrt(), "{mean}");
        assert!(
            (var - 0.25).abs() < 5.0 * 0.25 * (2.0 / n as f64).sqrt(),
            "{var}"
        );
    }

    #[test]
    fn heads_have_the_documented_shapes_and_standard_prior() {
        let _rng = crate::rng::backend_rng_lock();
        let device = Default::default();
        B::seed(&device, 1);
        let learned = GaussianConfig::new(8, 3).init::<B>(&device);
        let standard = GaussianConfig::new(8, 3)
            .with_prior(GaussianPrior::Standard)
            .init::<B>(&device);
        let h_x = Tensor::<B, 2>::ones([5, 8], &device);
        let feats = Tensor::<B, 2>::ones([5, 16], &device);
        let q = learned.posterior(feats);
        assert_eq!((q.mean.dims(), q.log_var.dims()), ([5, 3], [5, 3]));
        assert_eq!(learned.prior(h_x.clone()).mean.dims(), [5, 3]);
        let p0 = standard.prior(h_x);
        assert!(
            floats(p0.mean)
                .iter()
                .chain(&floats(p0.log_var))
                .all(|&v| v == 0.0)
        );
        assert_eq!(learned.project(q.mean).dims(), [5, 8]);
    }

    #[test]
    fn kl_gradient_reaches_both_heads() {
        let _rng = crate::rng::backend_rng_lock();
        // The KL depends on every parameter of both MLPs (the projection is not involved).
        use burn::optim::GradientsParams;
        type A = CpuAutodiff;
        let device = Default::default();
        A::seed(&device, 2);
        let heads = GaussianConfig::new(4, 2).init::<A>(&device);
        let feats = standard_normal_noise::<A>(&mut stream(3, "f"), 3, 8, &device);
        let h_x = standard_normal_noise::<A>(&mut stream(4, "h"), 3, 4, &device);
        let kl = gaussian_kl(&heads.posterior(feats), &heads.prior(h_x));
        let grads = GradientsParams::from_grads(kl.sum().backward(), &heads);
        // 2 MLPs x 2 linear layers x (weight, bias) = 8 tensors.
        assert_eq!(grads.len(), 8);
    }
}
