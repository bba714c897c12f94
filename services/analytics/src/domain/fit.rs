//! Numerical pieces of the predictive models: the log-gamma and digamma functions, Gauss's
//! hypergeometric series, and a quasi-Newton (BFGS) minimiser.

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, about 15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1-x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The digamma function ψ(x) = d ln Γ(x) / dx for x > 0: the recurrence ψ(x) = ψ(x + 1) -
/// 1 / x up to x >= 10, then the asymptotic series (about 14 significant digits).
pub fn digamma(mut x: f64) -> f64 {
    let mut shift = 0.0;
    while x < 10.0 {
        shift -= 1.0 / x;
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series = inv2
        * (1.0 / 12.0
            - inv2 * (1.0 / 120.0 - inv2 * (1.0 / 252.0 - inv2 * (1.0 / 240.0 - inv2 / 132.0))));
    shift + x.ln() - 0.5 * inv - series
}

/// Gauss's hypergeometric function ₂F₁(a, b; c; z) for 0 <= z < 1, by its series (the
/// reference the kept series is checked against).
#[cfg(test)]
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    Hypergeometric::new(a, b, c).at(z)
}

/// ₂F₁(a, b; c; ·) at many points: the series' coefficients, which do not depend on z,
/// are computed once and kept (a customer's value sums the function at each future
/// period).
pub struct Hypergeometric {
    a: f64,
    b: f64,
    c: f64,
    /// coefficients[n] = prod over i <= n of (a + i)(b + i) / ((c + i)(i + 1)).
    coefficients: Vec<f64>,
}

impl Hypergeometric {
    /// The function of these parameters.
    pub fn new(a: f64, b: f64, c: f64) -> Self {
        Self {
            a,
            b,
            c,
            coefficients: Vec::new(),
        }
    }

    /// ₂F₁(a, b; c; z) for 0 <= z < 1.
    #[cfg(test)]
    pub fn at(&mut self, z: f64) -> f64 {
        let mut sum = [0.0];
        self.at_many(&[z], &mut sum);
        sum[0]
    }

    /// ₂F₁(a, b; c; z) for every z of `points` (each 0 <= z < 1) into `sums`, summing the
    /// series for all of them in one pass over its coefficients (a loop the compiler can
    /// vectorise), until the terms at the largest z are negligible.
    pub fn at_many(&mut self, points: &[f64], sums: &mut [f64]) {
        let largest = (0..points.len()).max_by(|i, j| points[*i].total_cmp(&points[*j]));
        let Some(largest) = largest else {
            return;
        };
        let mut powers = vec![1.0; points.len()];
        sums.fill(1.0);
        for n in 0..10_000 {
            if n == self.coefficients.len() {
                let i = n as f64;
                let previous = self.coefficients.last().copied().unwrap_or(1.0);
                self.coefficients
                    .push(previous * (self.a + i) * (self.b + i) / ((self.c + i) * (i + 1.0)));
            }
            let coefficient = self.coefficients[n];
            for ((power, sum), z) in powers.iter_mut().zip(sums.iter_mut()).zip(points) {
                *power *= z;
                *sum += coefficient * *power;
            }
            if (coefficient * powers[largest]).abs() < 1e-15 * sums[largest].abs() {
                break;
            }
        }
    }
}

/// Minimises `f` from `start` with the Nelder-Mead simplex; returns the best point. It
/// needs no gradient and fitted the models before [`bfgs`]; it stays as the reference
/// search the fits are checked against.
#[cfg(test)]
pub fn nelder_mead(f: impl Fn(&[f64]) -> f64, start: &[f64], max_evaluations: usize) -> Vec<f64> {
    let n = start.len();
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    simplex.push((start.to_vec(), f(start)));
    for i in 0..n {
        let mut p = start.to_vec();
        p[i] += if p[i].abs() > 1e-3 {
            0.5 * p[i].abs().max(0.5)
        } else {
            0.5
        };
        let v = f(&p);
        simplex.push((p, v));
    }
    let mut evaluations = n + 1;
    let objective = |v: f64| if v.is_finite() { v } else { f64::INFINITY };
    while evaluations < max_evaluations {
        simplex.sort_by(|a, b| objective(a.1).total_cmp(&objective(b.1)));
        let (best, worst) = (objective(simplex[0].1), objective(simplex[n].1));
        if (worst - best).abs() <= 1e-12 * (1.0 + best.abs()) {
            break;
        }
        let centroid: Vec<f64> = (0..n)
            .map(|j| simplex[..n].iter().map(|(p, _)| p[j]).sum::<f64>() / n as f64)
            .collect();
        let towards = |t: f64| -> Vec<f64> {
            (0..n)
                .map(|j| centroid[j] + t * (simplex[n].0[j] - centroid[j]))
                .collect()
        };
        let reflected = towards(-1.0);
        let fr = objective(f(&reflected));
        evaluations += 1;
        if fr < best {
            let expanded = towards(-2.0);
            let fe = objective(f(&expanded));
            evaluations += 1;
            simplex[n] = if fe < fr {
                (expanded, fe)
            } else {
                (reflected, fr)
            };
        } else if fr < objective(simplex[n - 1].1) {
            simplex[n] = (reflected, fr);
        } else {
            let contracted = if fr < worst {
                towards(-0.5)
            } else {
                towards(0.5)
            };
            let fc = objective(f(&contracted));
            evaluations += 1;
            if fc < worst.min(fr) {
                simplex[n] = (contracted, fc);
            } else {
                let best_point = simplex[0].0.clone();
                for (p, v) in simplex.iter_mut().skip(1) {
                    for j in 0..n {
                        p[j] = best_point[j] + 0.5 * (p[j] - best_point[j]);
                    }
                    *v = f(p);
                    evaluations += 1;
                }
            }
        }
    }
    simplex.sort_by(|a, b| objective(a.1).total_cmp(&objective(b.1)));
    simplex.swap_remove(0).0
}

/// Minimises a smooth `f` from `start` by BFGS with a backtracking line search; `f` returns
/// the value at a point and writes its gradient. Far fewer evaluations than
/// [`nelder_mead`] where the gradient is cheap. Stops when the gradient vanishes, when a
/// step no longer lowers the value, or after `max_iterations`; returns the best point.
pub fn bfgs(
    f: impl Fn(&[f64], &mut [f64]) -> f64,
    start: &[f64],
    max_iterations: usize,
) -> Vec<f64> {
    let n = start.len();
    let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(a, b)| a * b).sum::<f64>();
    let identity = || -> Vec<Vec<f64>> {
        (0..n)
            .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
            .collect()
    };
    let mut x = start.to_vec();
    let mut gradient = vec![0.0; n];
    let mut value = f(&x, &mut gradient);
    // The inverse Hessian's estimate.
    let mut inverse = identity();
    let (mut next, mut next_gradient) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..max_iterations {
        if !value.is_finite()
            || gradient.iter().any(|g| !g.is_finite())
            || gradient.iter().all(|g| g.abs() <= 1e-10)
        {
            break;
        }
        let mut direction: Vec<f64> = inverse.iter().map(|row| -dot(row, &gradient)).collect();
        let mut slope = dot(&gradient, &direction);
        if slope >= 0.0 {
            // The estimate lost its way: start again from steepest descent.
            inverse = identity();
            direction = gradient.iter().map(|g| -g).collect();
            slope = -dot(&gradient, &gradient);
        }
        // Backtrack until the value drops enough (Armijo); non-finite values count as
        // too high, which keeps the search inside the function's domain.
        let mut step = 1.0;
        let next_value = loop {
            for i in 0..n {
                next[i] = x[i] + step * direction[i];
            }
            let v = f(&next, &mut next_gradient);
            if v.is_finite() && v <= value + 1e-4 * step * slope {
                break Some(v);
            }
            step *= 0.5;
            if step < 1e-14 {
                break None;
            }
        };
        let Some(next_value) = next_value else {
            break;
        };
        let s: Vec<f64> = (0..n).map(|i| next[i] - x[i]).collect();
        let y: Vec<f64> = (0..n).map(|i| next_gradient[i] - gradient[i]).collect();
        let sy = dot(&s, &y);
        if sy > 1e-16 * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() {
            // H <- (I - rho s y') H (I - rho y s') + rho s s'
            let rho = 1.0 / sy;
            let hy: Vec<f64> = inverse.iter().map(|row| dot(row, &y)).collect();
            let yhy = dot(&y, &hy);
            for i in 0..n {
                for j in 0..n {
                    inverse[i][j] +=
                        rho * ((1.0 + rho * yhy) * s[i] * s[j] - hy[i] * s[j] - s[i] * hy[j]);
                }
            }
        }
        let settled = value - next_value <= 1e-15 * (1.0 + value.abs());
        std::mem::swap(&mut x, &mut next);
        std::mem::swap(&mut gradient, &mut next_gradient);
        value = next_value;
        if settled {
            break;
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_factorials_and_half_integers() {
        assert!((ln_gamma(1.0)).abs() < 1e-13);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        assert!((ln_gamma(100.0) - 359.134_205_369_575_4).abs() < 1e-9);
    }

    #[test]
    fn digamma_matches_known_values_and_the_slope_of_ln_gamma() {
        // ψ(1) = -γ (Euler-Mascheroni), ψ(1/2) = -γ - 2 ln 2.
        let euler = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + euler).abs() < 1e-13);
        assert!((digamma(0.5) + euler + 2.0 * 2f64.ln()).abs() < 1e-13);
        for x in [0.3, 2.5, 7.0, 40.0] {
            let h = 1e-5;
            let slope = (ln_gamma(x + h) - ln_gamma(x - h)) / (2.0 * h);
            assert!((digamma(x) - slope).abs() < 1e-7, "{x}");
        }
    }

    #[test]
    fn a_kept_series_answers_as_a_fresh_one() {
        // The coefficients grow for z = 0.9, then serve the smaller z's.
        let mut series = Hypergeometric::new(1.0, 1.0, 2.0);
        for z in [0.9, 0.1, 0.5] {
            assert!((series.at(z) - (-(1.0 - z).ln() / z)).abs() < 1e-12);
        }
    }

    #[test]
    fn many_points_at_once_answer_as_one_at_a_time() {
        let points = [0.05, 0.3, 0.0, 0.72, 0.5];
        let mut sums = [0.0; 5];
        Hypergeometric::new(1.3, 4.0, 6.5).at_many(&points, &mut sums);
        for (z, sum) in points.iter().zip(sums) {
            let alone = hyp2f1(1.3, 4.0, 6.5, *z);
            assert!(
                (sum - alone).abs() < 1e-14 * alone,
                "{z}: {sum} against {alone}"
            );
        }
        let mut one = [0.0];
        Hypergeometric::new(1.0, 1.0, 2.0).at_many(&[0.6], &mut one);
        assert!((one[0] - (-(0.4f64).ln() / 0.6)).abs() < 1e-12);
    }

    #[test]
    fn hyp2f1_matches_closed_forms() {
        // ₂F₁(1, 1; 2; z) = -ln(1 - z) / z
        let z = 0.6;
        assert!((hyp2f1(1.0, 1.0, 2.0, z) - (-(1.0 - z).ln() / z)).abs() < 1e-12);
    }

    #[test]
    fn bfgs_finds_a_valley() {
        let rosenbrock = |p: &[f64], g: &mut [f64]| {
            g[0] = -2.0 * (1.0 - p[0]) - 400.0 * p[0] * (p[1] - p[0] * p[0]);
            g[1] = 200.0 * (p[1] - p[0] * p[0]);
            (1.0 - p[0]).powi(2) + 100.0 * (p[1] - p[0] * p[0]).powi(2)
        };
        let best = bfgs(rosenbrock, &[-1.2, 1.0], 500);
        assert!(
            (best[0] - 1.0).abs() < 1e-6 && (best[1] - 1.0).abs() < 1e-6,
            "{best:?}"
        );
        // Outside its domain the function is infinite: the search stays inside.
        let log_barrier = |p: &[f64], g: &mut [f64]| {
            g[0] = 1.0 - 1.0 / p[0];
            if p[0] > 0.0 {
                p[0] - p[0].ln()
            } else {
                f64::NAN
            }
        };
        let best = bfgs(log_barrier, &[5.0], 100);
        assert!((best[0] - 1.0).abs() < 1e-6, "{best:?}");
    }

    #[test]
    fn nelder_mead_finds_a_valley() {
        let rosenbrock = |p: &[f64]| (1.0 - p[0]).powi(2) + 100.0 * (p[1] - p[0] * p[0]).powi(2);
        let best = nelder_mead(rosenbrock, &[-1.2, 1.0], 5000);
        assert!(
            (best[0] - 1.0).abs() < 1e-3 && (best[1] - 1.0).abs() < 1e-3,
            "{best:?}"
        );
    }
}
