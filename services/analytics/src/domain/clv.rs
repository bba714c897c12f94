//! Predictive customer value: the BG/NBD purchase model and the Gamma-Gamma spend model of
//! Fader, Hardie and Lee (2005), fitted by maximum likelihood. Per customer, over a
//! calibration window: x = repeat orders, t_x = time from the first to the last order, and
//! T = time from the first order to the end of the window, in the caller's time unit.

use std::collections::HashMap;

use super::fit::{Hypergeometric, bfgs, digamma, ln_gamma};

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
    #[cfg(test)]
    fn of(&self, model: &BgNbd) -> f64 {
        self.with_gradient(model, &mut [0.0; 4])
    }

    /// [`Likelihood::of`], writing its gradient with respect to (ln r, ln alpha, ln a, ln b).
    ///
    /// Per customer the likelihood is A1 + A2 + A3 when x = 0 and A1 + A2 + ln(e^A3 +
    /// e^A4) otherwise, where, summing over i < x:
    ///
    /// ```text
    /// A1 = r ln(alpha) + sum ln(r + i)
    /// A2 = sum ln(b + i) - ln(a + b + i)
    /// A3 = -(r + x) ln(alpha + T)
    /// A4 = ln(a) - ln(b + x - 1) - (r + x) ln(alpha + t_x)
    /// ```
    ///
    /// The log-sum's derivative weighs A3's and A4's by their shares of it.
    fn with_gradient(&self, model: &BgNbd, gradient: &mut [f64; 4]) -> f64 {
        let BgNbd { r, alpha, a, b } = *model;
        // Per distinct time: ln(alpha + t) and 1 / (alpha + t).
        let times: Vec<(f64, f64)> = self
            .times
            .iter()
            .map(|t| ((alpha + t).ln(), 1.0 / (alpha + t)))
            .collect();
        // Per x: the terms and derivatives that depend on x alone.
        let mut per_x = Vec::with_capacity(self.max_x as usize + 1);
        let (ln_alpha, ln_a) = (alpha.ln(), a.ln());
        let mut x_terms = PerX {
            a1: r * ln_alpha,
            a2: 0.0,
            a1_r: ln_alpha,
            a2_a: 0.0,
            a2_b: 0.0,
            ln_b: 0.0,
            inv_b: 0.0,
        };
        for x in 0..=self.max_x {
            let i = f64::from(x);
            // ln(b + x - 1) belongs to A4, which a customer without repeat orders lacks.
            if x > 0 {
                x_terms.ln_b = (b + i - 1.0).ln();
                x_terms.inv_b = 1.0 / (b + i - 1.0);
            }
            per_x.push(x_terms);
            let (inv_r, inv_ab, inv_b) = (1.0 / (r + i), 1.0 / (a + b + i), 1.0 / (b + i));
            x_terms.a1 += (r + i).ln();
            x_terms.a2 += (b + i).ln() - (a + b + i).ln();
            x_terms.a1_r += inv_r;
            x_terms.a2_a -= inv_ab;
            x_terms.a2_b += inv_b - inv_ab;
        }
        let (mut value, mut d_r, mut d_alpha, mut d_a, mut d_b) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(x, t, t_x, w) in &self.groups {
            let p = &per_x[x as usize];
            let rx = r + f64::from(x);
            let (ln_t, inv_t) = times[t];
            let (ln_tx, inv_tx) = if x == 0 { (0.0, 0.0) } else { times[t_x] };
            let a3 = -rx * ln_t;
            // Shares of A3 and A4 in the log-sum (all A3 when x = 0).
            let (term, share3, share4) = if x == 0 {
                (p.a1 + p.a2 + a3, 1.0, 0.0)
            } else {
                let a4 = ln_a - p.ln_b - rx * ln_tx;
                let e = (-(a3 - a4).abs()).exp();
                let lower = e / (1.0 + e);
                let (share3, share4) = if a3 >= a4 {
                    (1.0 - lower, lower)
                } else {
                    (lower, 1.0 - lower)
                };
                (p.a1 + p.a2 + a3.max(a4) + e.ln_1p(), share3, share4)
            };
            value += w * term;
            d_r += w * (p.a1_r - share3 * ln_t - share4 * ln_tx);
            d_alpha += w * (r / alpha - rx * (share3 * inv_t + share4 * inv_tx));
            d_a += w * (p.a2_a + share4 / a);
            d_b += w * (p.a2_b - share4 * p.inv_b);
        }
        *gradient = [d_r * r, d_alpha * alpha, d_a * a, d_b * b];
        value
    }
}

/// What [`Likelihood::with_gradient`] needs of one number of repeat orders x.
#[derive(Clone, Copy)]
struct PerX {
    /// r ln alpha + sum ln(r + i) over i < x.
    a1: f64,
    /// sum ln(b + i) - ln(a + b + i) over i < x.
    a2: f64,
    /// d a1 / d r.
    a1_r: f64,
    /// d a2 / d a.
    a2_a: f64,
    /// d a2 / d b.
    a2_b: f64,
    /// ln(b + x - 1).
    ln_b: f64,
    /// 1 / (b + x - 1).
    inv_b: f64,
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
    /// stay positive), by BFGS on the likelihood's exact gradient. Deterministic: a fixed
    /// start and a deterministic search. Customers with the same summary are one weighted
    /// term of the likelihood: most have no repeat order and differ only in when they first
    /// ordered.
    pub fn fit(data: &[Summary]) -> Self {
        let n = data.len().max(1) as f64;
        let likelihood = Likelihood::new(data);
        let from = |p: &[f64]| Self {
            r: p[0].exp(),
            alpha: p[1].exp(),
            a: p[2].exp(),
            b: p[3].exp(),
        };
        let objective = |p: &[f64], gradient: &mut [f64]| {
            let mut g = [0.0; 4];
            let value = likelihood.with_gradient(&from(p), &mut g);
            for (out, g) in gradient.iter_mut().zip(g) {
                *out = -g / n;
            }
            -value / n
        };
        // The search starts at r = alpha = b = 1 and a = 2, not a = 1: eq. 10 divides by
        // a - 1, and where no customer has repeated the likelihood does not depend on a,
        // which then stays where it started.
        from(&bfgs(objective, &[0.0, 0.0, 2f64.ln(), 0.0], 500))
    }

    /// P(alive | x, t_x, T).
    pub fn p_alive(&self, s: &Summary) -> f64 {
        1.0 / self.tail(s)
    }

    /// Expected orders in the next `horizon` time units (FHL 2005, eq. 10).
    pub fn expected_purchases(&self, s: &Summary, horizon: f64) -> f64 {
        let mut body = [0.0];
        self.bodies(&mut self.series(s.x), s.x, s.t, &[horizon], &mut body);
        self.head(s.x) * body[0] / self.tail(s)
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

    /// The factor of eq. 10 that depends on x alone.
    fn head(&self, x: u32) -> f64 {
        (self.a + self.b + f64::from(x) - 1.0) / (self.a - 1.0)
    }

    /// The hypergeometric function eq. 10 needs for x repeat orders.
    fn series(&self, x: u32) -> Hypergeometric {
        let x = f64::from(x);
        Hypergeometric::new(self.r + x, self.b + x, self.a + self.b + x - 1.0)
    }

    /// The factor of eq. 10 that depends on x and T (and the horizon), with x's series,
    /// for each of `horizons` into `bodies`.
    fn bodies(
        &self,
        series: &mut Hypergeometric,
        x: u32,
        t: f64,
        horizons: &[f64],
        bodies: &mut [f64],
    ) {
        let Self { r, alpha, .. } = *self;
        let points: Vec<f64> = horizons.iter().map(|h| h / (alpha + t + h)).collect();
        series.at_many(&points, bodies);
        for (body, h) in bodies.iter_mut().zip(horizons) {
            *body = 1.0 - ((alpha + t) / (alpha + t + h)).powf(r + f64::from(x)) * *body;
        }
    }
}

/// What the purchase model says of one customer over a horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Expected orders over the horizon.
    pub orders: f64,
    /// P(alive) now.
    pub alive: f64,
    /// Expected orders per unit, each discounted to now; times the expected order value,
    /// the customer's discounted value.
    pub discounted: f64,
}

/// Predictions of one model over one horizon for many customers. Eq. 10 is head(x) *
/// body(x, T, t) / tail(x, t_x, T): the series behind the body, the cost, depend on x and T
/// alone, so they are computed once per x and T seen (customers who first ordered on the
/// same day share them), the rest once per customer.
pub struct Predictor<'m> {
    model: &'m BgNbd,
    /// The units 1..=horizon.
    units: Vec<f64>,
    /// 1 / (1 + yearly rate)^(years to unit k), for each of `units`.
    discounts: Vec<f64>,
    series: HashMap<u32, Hypergeometric>,
    /// Per (x, T): the body at the horizon, and the body's increments per unit, discounted.
    bodies: HashMap<(u32, u64), (f64, f64)>,
}

impl<'m> Predictor<'m> {
    /// Predictions of `model` over `horizon` units, with `units_per_year` units a year,
    /// discounted at `yearly_rate`.
    pub fn new(model: &'m BgNbd, horizon: u32, units_per_year: f64, yearly_rate: f64) -> Self {
        let units: Vec<f64> = (1..=horizon).map(f64::from).collect();
        Self {
            model,
            discounts: units
                .iter()
                .map(|k| (1.0 + yearly_rate).powf(-k / units_per_year))
                .collect(),
            units,
            series: HashMap::new(),
            bodies: HashMap::new(),
        }
    }

    /// The prediction for `s`.
    pub fn predict(&mut self, s: &Summary) -> Prediction {
        let Self {
            model,
            units,
            discounts,
            series,
            bodies,
        } = self;
        let (body, discounted) = *bodies.entry((s.x, s.t.to_bits())).or_insert_with(|| {
            let series = series.entry(s.x).or_insert_with(|| model.series(s.x));
            let mut values = vec![0.0; units.len()];
            model.bodies(series, s.x, s.t, units, &mut values);
            let (mut previous, mut discounted) = (0.0, 0.0);
            for (body, discount) in values.into_iter().zip(discounts.iter()) {
                discounted += (body - previous) * discount;
                previous = body;
            }
            (previous, discounted)
        });
        let (head, tail) = (model.head(s.x), model.tail(s));
        Prediction {
            orders: head * body / tail,
            alive: 1.0 / tail,
            discounted: head * discounted / tail,
        }
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

    /// Fits to (orders, mean order value) pairs by maximum likelihood, by BFGS on the
    /// likelihood's exact gradient over the parameters' logarithms. The gamma-function
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
        let objective = |v: &[f64], gradient: &mut [f64]| {
            let (p, q, gamma) = (v[0].exp(), v[1].exp(), v[2].exp());
            let ln_gamma_scale = gamma.ln();
            // The likelihood and its derivatives by p, q and gamma.
            let mut value = n * (q * ln_gamma_scale - ln_gamma(q)) + p * x_logs - ln_means;
            let (mut d_p, mut d_q, mut d_gamma) =
                (x_logs, n * (ln_gamma_scale - digamma(q)), n * q / gamma);
            for (x, count) in &counts {
                let x = f64::from(*x);
                value += count * (ln_gamma(p * x + q) - ln_gamma(p * x));
                let shared = digamma(p * x + q);
                d_p += count * x * (shared - digamma(p * x));
                d_q += count * shared;
            }
            for (x, total) in &spend {
                let ln_total = (gamma + total).ln();
                value -= (p * x + q) * ln_total;
                d_p -= x * ln_total;
                d_q -= ln_total;
                d_gamma -= (p * x + q) / (gamma + total);
            }
            gradient[0] = -d_p * p / n;
            gradient[1] = -d_q * q / n;
            gradient[2] = -d_gamma * gamma / n;
            -value / n
        };
        let best = bfgs(objective, &[0.0, 0.0, 0.0], 500);
        Self {
            p: best[0].exp(),
            q: best[1].exp(),
            gamma: best[2].exp(),
        }
    }

    /// The expected mean order value of a customer with `x` orders of mean `m`.
    pub fn expected_value(&self, x: u32, m: f64) -> f64 {
        let x = f64::from(x);
        (self.gamma + m * x) * self.p / (self.p * x + self.q - 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fit::nelder_mead;
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
    fn the_likelihood_gradient_is_its_slope() {
        let summary = |x, t_x, t| Summary { x, t_x, t };
        let data = [
            summary(0, 0.0, 30.0),
            summary(5, 12.5, 40.0),
            summary(1, 30.0, 31.0),
            summary(2, 12.5, 30.0),
            summary(7, 39.0, 40.0),
        ];
        let likelihood = Likelihood::new(&data);
        let at = |p: &[f64; 4]| model_at(p);
        let point = [-0.2, 1.4, -0.4, 0.9];
        let mut gradient = [0.0; 4];
        likelihood.with_gradient(&at(&point), &mut gradient);
        for i in 0..4 {
            let h = 1e-6;
            let (mut up, mut down) = (point, point);
            up[i] += h;
            down[i] -= h;
            let slope = (likelihood.of(&at(&up)) - likelihood.of(&at(&down))) / (2.0 * h);
            assert!(
                (slope - gradient[i]).abs() < 1e-6 * (1.0 + slope.abs()),
                "parameter {i}: gradient {} against slope {slope}",
                gradient[i]
            );
        }
    }

    #[test]
    fn a_predictor_answers_as_the_model_does_customer_by_customer() {
        let model = BgNbd {
            r: 0.8,
            alpha: 9.0,
            a: 2.7,
            b: 15.5,
        };
        let summary = |x, t_x, t| Summary { x, t_x, t };
        // The first two and the next two share x and T, and so their series.
        let customers = [
            summary(2, 10.0, 40.0),
            summary(2, 35.0, 40.0),
            summary(0, 0.0, 40.0),
            summary(0, 0.0, 40.0),
            summary(5, 20.0, 52.0),
        ];
        let (horizon, units_per_year, rate) = (52, 52.18, 0.1);
        let mut predictor = Predictor::new(&model, horizon, units_per_year, rate);
        for s in &customers {
            let got = predictor.predict(s);
            let mut discounted = 0.0;
            for k in 1..=horizon {
                let units = f64::from(k);
                let orders =
                    model.expected_purchases(s, units) - model.expected_purchases(s, units - 1.0);
                discounted += orders / (1.0 + rate).powf(units / units_per_year);
            }
            let want = Prediction {
                orders: model.expected_purchases(s, f64::from(horizon)),
                alive: model.p_alive(s),
                discounted,
            };
            for (g, w) in [
                (got.orders, want.orders),
                (got.alive, want.alive),
                (got.discounted, want.discounted),
            ] {
                assert!(
                    (g - w).abs() < 1e-12 * w.abs().max(1.0),
                    "{s:?}: {got:?} against {want:?}"
                );
            }
        }
    }

    #[test]
    fn customers_who_never_repeated_are_predicted_to_order_next_to_nothing() {
        let data: Vec<Summary> = (0..30)
            .map(|i| Summary {
                x: 0,
                t_x: 0.0,
                t: 5.0 + f64::from(i),
            })
            .collect();
        let model = BgNbd::fit(&data);
        let prediction = Predictor::new(&model, 52, 52.18, 0.1).predict(&data[3]);
        assert!(
            prediction.orders.is_finite()
                && prediction.discounted.is_finite()
                && prediction.orders.abs() < 1e-3
                && prediction.discounted.abs() < 1e-3,
            "{model:?}: {prediction:?}"
        );
    }

    /// The model at a point of the search space (the parameters' logarithms).
    fn model_at(p: &[f64]) -> BgNbd {
        BgNbd {
            r: p[0].exp(),
            alpha: p[1].exp(),
            a: p[2].exp(),
            b: p[3].exp(),
        }
    }

    #[test]
    fn bg_nbd_fits_no_worse_than_a_simplex_search() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let data: Vec<Summary> = (0..2_000)
            .map(|_| {
                let t = f64::from(rng.random_range(1..104u32));
                let x = if rng.random::<f64>() < 0.7 {
                    0
                } else {
                    rng.random_range(1..6)
                };
                let t_x = if x == 0 {
                    0.0
                } else {
                    rng.random_range(0.0..t)
                };
                Summary { x, t_x, t }
            })
            .collect();
        let likelihood = Likelihood::new(&data);
        let objective = |p: &[f64]| -likelihood.of(&model_at(p));
        // The simplex search, restarted from where it stopped, to a tight tolerance.
        let simplex = nelder_mead(objective, &nelder_mead(objective, &[0.0; 4], 8000), 8000);
        let (fitted, searched) = (
            likelihood.of(&BgNbd::fit(&data)),
            likelihood.of(&model_at(&simplex)),
        );
        assert!(
            fitted >= searched - 1e-9 * searched.abs(),
            "{fitted} against {searched}"
        );
    }

    #[test]
    fn gamma_gamma_fits_where_its_likelihood_peaks() {
        let data = [
            (1, 35.0),
            (2, 80.0),
            (2, 60.0),
            (4, 120.0),
            (7, 45.0),
            (3, 95.0),
        ];
        let fitted = GammaGamma::fit(&data);
        let total = |model: &GammaGamma| -> f64 {
            data.iter().map(|(x, m)| model.log_likelihood(*x, *m)).sum()
        };
        // Every parameter moved a little either way lowers the likelihood.
        let best = total(&fitted);
        for step in [0.999, 1.001] {
            for moved in [
                GammaGamma {
                    p: fitted.p * step,
                    ..fitted
                },
                GammaGamma {
                    q: fitted.q * step,
                    ..fitted
                },
                GammaGamma {
                    gamma: fitted.gamma * step,
                    ..fitted
                },
            ] {
                assert!(total(&moved) < best, "{moved:?} beats {fitted:?}");
            }
        }
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
