//! Predictive customer value: the BG/NBD purchase model and the Gamma-Gamma spend model of
//! Fader, Hardie and Lee (2005), fitted by maximum likelihood. Per customer, over a
//! calibration window: x = repeat orders, t_x = time from the first to the last order, and
//! T = time from the first order to the end of the window, in the caller's time unit.

use super::fit::{Hypergeometric, ln_gamma, nelder_mead};

/// One customer's summary for BG/NBD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Repeat orders.
    pub x: u32,
    /// Time of the last order after the first.
    pub t_x: f64,
    /// Time from the first order to the end of calibration.
    pub t: f64,
}

/// Fitted BG/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    /// Shape of the purchase-rate gamma.
    pub r: f64,
    /// Scale of the purchase-rate gamma.
    pub alpha: f64,
    /// Beta dropout parameter a.
    pub a: f64,
    /// Beta dropout parameter b.
    pub b: f64,
}

/// The BG/NBD log-likelihood of a data set, arranged to be evaluated many times: identical
/// summaries are one term with their count (most customers have no repeat order and
/// differ only in when they first ordered), the terms that depend only on x are computed
/// once per x, and ln(alpha + t) once per distinct time.
struct Likelihood {
    /// (x, index of T, index of t_x, customers).
    groups: Vec<(u32, usize, usize, f64)>,
    /// Every distinct T and t_x.
    times: Vec<f64>,
    max_x: u32,
}

impl Likelihood {
    fn new(data: &[Summary]) -> Self {
        let groups = weighted(data);
        let mut times: Vec<f64> = groups.iter().flat_map(|(s, _)| [s.t, s.t_x]).collect();
        times.sort_by(f64::total_cmp);
        times.dedup();
        let index = |t: f64| times.partition_point(|u| *u < t);
        Self {
            groups: groups
                .iter()
                .map(|(s, w)| (s.x, index(s.t), index(s.t_x), *w))
                .collect(),
            max_x: data.iter().map(|s| s.x).max().unwrap_or(0),
            times,
        }
    }

    /// The sum of every customer's [`BgNbd::log_likelihood`] under `model`.
    fn of(&self, model: &BgNbd) -> f64 {
        let BgNbd { r, alpha, a, b } = *model;
        let ln_times: Vec<f64> = self.times.iter().map(|t| (alpha + t).ln()).collect();
        // Per x: r ln(alpha) + sum ln(r + i), sum ln(b + i) - ln(a + b + i) over i < x, and
        // ln(b + x - 1).
        let mut per_x = Vec::with_capacity(self.max_x as usize + 1);
        let (mut a1, mut a2) = (r * alpha.ln(), 0.0);
        for i in 0..=self.max_x {
            let i = f64::from(i);
            per_x.push((a1, a2, (b + i - 1.0).ln()));
            a1 += (r + i).ln();
            a2 += (b + i).ln() - (a + b + i).ln();
        }
        let ln_a = a.ln();
        self.groups
            .iter()
            .map(|&(x, t, t_x, w)| {
                let (a1, a2, ln_b) = per_x[x as usize];
                let rx = r + f64::from(x);
                let a3 = -rx * ln_times[t];
                let term = if x == 0 {
                    a1 + a2 + a3
                } else {
                    a1 + a2 + log_sum_exp(a3, ln_a - ln_b - rx * ln_times[t_x])
                };
                w * term
            })
            .sum()
    }
}

/// Identical summaries counted once with their number, in a deterministic order (so the
/// likelihood sums the same way every time).
fn weighted(data: &[Summary]) -> Vec<(Summary, f64)> {
    let mut sorted: Vec<Summary> = data.to_vec();
    sorted.sort_by(|p, q| {
        (p.x, p.t_x.to_bits(), p.t.to_bits()).cmp(&(q.x, q.t_x.to_bits(), q.t.to_bits()))
    });
    let mut groups: Vec<(Summary, f64)> = Vec::new();
    for s in sorted {
        match groups.last_mut() {
            Some((last, w)) if *last == s => *w += 1.0,
            _ => groups.push((s, 1.0)),
        }
    }
    groups
}

fn log_sum_exp(a: f64, b: f64) -> f64 {
    a.max(b) + (-(a - b).abs()).exp().ln_1p()
}

impl BgNbd {
    /// The log-likelihood of one customer (FHL 2005, eq. 6), with the gamma-function
    /// ratios written as sums of logs, exact for integer x.
    pub fn log_likelihood(&self, s: &Summary) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let x = f64::from(s.x);
        let (mut a1, mut a2) = (r * alpha.ln(), 0.0);
        for i in 0..s.x {
            let i = f64::from(i);
            a1 += (r + i).ln();
            a2 += (b + i).ln() - (a + b + i).ln();
        }
        let a3 = -(r + x) * (alpha + s.t).ln();
        if s.x == 0 {
            return a1 + a2 + a3;
        }
        let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + s.t_x).ln();
        a1 + a2 + log_sum_exp(a3, a4)
    }

    /// Fits the parameters to `data` by maximum likelihood (over their logarithms, so they
    /// stay positive). Deterministic: a fixed start and a deterministic simplex. Customers
    /// with the same summary are one weighted term of the likelihood: most have no repeat
    /// order and differ only in when they first ordered.
    pub fn fit(data: &[Summary]) -> Self {
        let n = data.len().max(1) as f64;
        let likelihood = Likelihood::new(data);
        let from = |p: &[f64]| Self {
            r: p[0].exp(),
            alpha: p[1].exp(),
            a: p[2].exp(),
            b: p[3].exp(),
        };
        let objective = |p: &[f64]| -likelihood.of(&from(p)) / n;
        let mut best = nelder_mead(objective, &[0.0, 0.0, 0.0, 0.0], 4000);
        // A restart from the optimum refines a simplex that collapsed early.
        best = nelder_mead(objective, &best, 4000);
        from(&best)
    }

    /// P(alive | x, t_x, T).
    pub fn p_alive(&self, s: &Summary) -> f64 {
        1.0 / self.tail(s)
    }

    /// Expected orders in the next `horizon` time units (FHL 2005, eq. 10).
    pub fn expected_purchases(&self, s: &Summary, horizon: f64) -> f64 {
        self.expected_purchases_with(&mut self.series(s), self.tail(s), s, horizon)
    }

    /// The denominator of eq. 10, which does not depend on the horizon.
    fn tail(&self, s: &Summary) -> f64 {
        if s.x == 0 {
            return 1.0;
        }
        let x = f64::from(s.x);
        1.0 + self.a / (self.b + x - 1.0)
            * ((self.alpha + s.t) / (self.alpha + s.t_x)).powf(self.r + x)
    }

    /// The hypergeometric function eq. 10 needs for `s` (it depends on x alone).
    fn series(&self, s: &Summary) -> Hypergeometric {
        let x = f64::from(s.x);
        Hypergeometric::new(self.r + x, self.b + x, self.a + self.b + x - 1.0)
    }

    /// [`BgNbd::expected_purchases`] with `s`'s series and tail at hand.
    fn expected_purchases_with(
        &self,
        series: &mut Hypergeometric,
        tail: f64,
        s: &Summary,
        horizon: f64,
    ) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let x = f64::from(s.x);
        let z = horizon / (alpha + s.t + horizon);
        let head = (a + b + x - 1.0) / (a - 1.0);
        let body = 1.0 - ((alpha + s.t) / (alpha + s.t + horizon)).powf(r + x) * series.at(z);
        head * body / tail
    }
}

/// Fitted Gamma-Gamma parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma {
    /// Shape of each order's value.
    pub p: f64,
    /// Shape of the customer's spend scale.
    pub q: f64,
    /// Scale of the customer's spend scale.
    pub gamma: f64,
}

impl GammaGamma {
    /// The log-likelihood of one customer with `x` orders of mean value `m`.
    pub fn log_likelihood(&self, x: u32, m: f64) -> f64 {
        let Self { p, q, gamma } = *self;
        let x = f64::from(x);
        ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
            + q * gamma.ln()
            + (p * x - 1.0) * m.ln()
            + p * x * x.ln()
            - (p * x + q) * (gamma + m * x).ln()
    }

    /// Fits to (orders, mean order value) pairs by maximum likelihood. The gamma-function
    /// terms depend only on the number of orders, so they are computed once per number.
    pub fn fit(data: &[(u32, f64)]) -> Self {
        let n = data.len().max(1) as f64;
        let mut counts: std::collections::BTreeMap<u32, f64> = std::collections::BTreeMap::new();
        for (x, _) in data {
            *counts.entry(*x).or_default() += 1.0;
        }
        // The rest of each customer's term is (p x - 1) ln m + p x ln x - (p x + q) ln(gamma
        // + m x): its sums over customers split into constants and one log per customer.
        let x_logs: f64 = data
            .iter()
            .map(|(x, m)| {
                let x = f64::from(*x);
                x * m.ln() + x * x.ln()
            })
            .sum();
        let ln_means: f64 = data.iter().map(|(_, m)| m.ln()).sum();
        let spend: Vec<(f64, f64)> = data
            .iter()
            .map(|(x, m)| (f64::from(*x), m * f64::from(*x)))
            .collect();
        let from = |v: &[f64]| Self {
            p: v[0].exp(),
            q: v[1].exp(),
            gamma: v[2].exp(),
        };
        let objective = |v: &[f64]| {
            let Self { p, q, gamma } = from(v);
            let shared: f64 = counts
                .iter()
                .map(|(x, count)| {
                    let x = f64::from(*x);
                    count * (ln_gamma(p * x + q) - ln_gamma(p * x))
                })
                .sum::<f64>()
                + n * (q * gamma.ln() - ln_gamma(q));
            let spend: f64 = spend
                .iter()
                .map(|(x, total)| (p * x + q) * (gamma + total).ln())
                .sum();
            -(shared + p * x_logs - ln_means - spend) / n
        };
        let mut best = nelder_mead(objective, &[0.0, 0.0, 0.0], 4000);
        best = nelder_mead(objective, &best, 4000);
        from(&best)
    }

    /// The expected mean order value of a customer with `x` orders of mean `m`.
    pub fn expected_value(&self, x: u32, m: f64) -> f64 {
        let x = f64::from(x);
        (self.gamma + m * x) * self.p / (self.p * x + self.q - 1.0)
    }
}

/// Discounted expected orders over `horizon` units: each unit's expected orders,
/// discounted at `yearly_rate` with `units_per_year` units a year. Times the expected order
/// value, the customer's discounted value.
pub fn discounted_purchases(
    model: &BgNbd,
    s: &Summary,
    horizon: u32,
    units_per_year: f64,
    yearly_rate: f64,
) -> f64 {
    let (mut series, tail) = (model.series(s), model.tail(s));
    let mut previous = 0.0;
    let mut total = 0.0;
    for k in 1..=horizon {
        let cumulative = model.expected_purchases_with(&mut series, tail, s, f64::from(k));
        let years = f64::from(k) / units_per_year;
        total += (cumulative - previous) / (1.0 + yearly_rate).powf(years);
        previous = cumulative;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Beta, Distribution, Gamma};

    fn within(got: f64, want: f64, share: f64) -> bool {
        (got - want).abs() <= share * want
    }

    #[test]
    fn bg_nbd_recovers_the_parameters_it_was_simulated_with() {
        let truth = BgNbd {
            r: 1.5,
            alpha: 8.0,
            a: 2.0,
            b: 8.0,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let rate = Gamma::new(truth.r, 1.0 / truth.alpha).unwrap();
        let dropout = Beta::new(truth.a, truth.b).unwrap();
        let data: Vec<Summary> = (0..10_000)
            .map(|_| {
                let (lambda, p) = (rate.sample(&mut rng), dropout.sample(&mut rng));
                let t: f64 = rng.random_range(60.0..100.0);
                let (mut now, mut x, mut t_x) = (0.0, 0, 0.0);
                loop {
                    now += -(1.0 - rng.random::<f64>()).ln() / lambda;
                    if now > t {
                        break;
                    }
                    x += 1;
                    t_x = now;
                    if rng.random::<f64>() < p {
                        break;
                    }
                }
                Summary { x, t_x, t }
            })
            .collect();
        let fitted = BgNbd::fit(&data);
        for (got, want) in [
            (fitted.r, truth.r),
            (fitted.alpha, truth.alpha),
            (fitted.a, truth.a),
            (fitted.b, truth.b),
        ] {
            assert!(
                within(got, want, 0.10),
                "fitted {fitted:?}, simulated from {truth:?}"
            );
        }
        // The model behaves as it should for a customer.
        let s = Summary {
            x: 4,
            t_x: 30.0,
            t: 80.0,
        };
        assert!(
            fitted.p_alive(&s) < 1.0
                && fitted.p_alive(&Summary {
                    x: 4,
                    t_x: 79.0,
                    t: 80.0
                }) > fitted.p_alive(&s)
        );
        assert!(fitted.expected_purchases(&s, 52.0) > fitted.expected_purchases(&s, 26.0));
    }

    #[test]
    fn the_arranged_likelihood_is_the_plain_sum() {
        let model = BgNbd {
            r: 0.8,
            alpha: 4.0,
            a: 0.7,
            b: 2.5,
        };
        let summary = |x, t_x, t| Summary { x, t_x, t };
        let data = [
            summary(0, 0.0, 30.0),
            summary(0, 0.0, 30.0),
            summary(5, 12.5, 40.0),
            summary(1, 30.0, 31.0),
            summary(2, 12.5, 30.0),
        ];
        let plain: f64 = data.iter().map(|s| model.log_likelihood(s)).sum();
        let arranged = Likelihood::new(&data).of(&model);
        assert!(
            (plain - arranged).abs() < 1e-9,
            "{plain} against {arranged}"
        );
        assert_eq!(
            Likelihood::new(&data).groups.len(),
            4,
            "the two alike are one"
        );
    }

    #[test]
    fn gamma_gamma_recovers_the_parameters_it_was_simulated_with() {
        let truth = GammaGamma {
            p: 6.0,
            q: 4.0,
            gamma: 15.0,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let scale = Gamma::new(truth.q, 1.0 / truth.gamma).unwrap();
        let data: Vec<(u32, f64)> = (0..10_000)
            .map(|_| {
                let nu = scale.sample(&mut rng);
                let value = Gamma::new(truth.p, 1.0 / nu).unwrap();
                let x: u32 = rng.random_range(1..=8);
                let mean = (0..x).map(|_| value.sample(&mut rng)).sum::<f64>() / f64::from(x);
                (x, mean)
            })
            .collect();
        let fitted = GammaGamma::fit(&data);
        for (got, want) in [
            (fitted.p, truth.p),
            (fitted.q, truth.q),
            (fitted.gamma, truth.gamma),
        ] {
            assert!(
                within(got, want, 0.10),
                "fitted {fitted:?}, simulated from {truth:?}"
            );
        }
    }
}
