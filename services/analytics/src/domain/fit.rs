//! Numerical pieces of the predictive models: the log-gamma function, Gauss's
//! hypergeometric series, and a Nelder-Mead minimiser.

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

/// Gauss's hypergeometric function ₂F₁(a, b; c; z) for 0 <= z < 1, by its series.
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
    pub fn at(&mut self, z: f64) -> f64 {
        let (mut power, mut sum) = (1.0, 1.0);
        for n in 0..10_000 {
            if n == self.coefficients.len() {
                let i = n as f64;
                let previous = self.coefficients.last().copied().unwrap_or(1.0);
                self.coefficients
                    .push(previous * (self.a + i) * (self.b + i) / ((self.c + i) * (i + 1.0)));
            }
            power *= z;
            let term = self.coefficients[n] * power;
            sum += term;
            if term.abs() < 1e-15 * sum.abs() {
                break;
            }
        }
        sum
    }
}

/// Minimises `f` from `start` with the Nelder-Mead simplex; returns the best point.
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
    fn a_kept_series_answers_as_a_fresh_one() {
        // The coefficients grow for z = 0.9, then serve the smaller z's.
        let mut series = Hypergeometric::new(1.0, 1.0, 2.0);
        for z in [0.9, 0.1, 0.5] {
            assert!((series.at(z) - (-(1.0 - z).ln() / z)).abs() < 1e-12);
        }
    }

    #[test]
    fn hyp2f1_matches_closed_forms() {
        // ₂F₁(1, 1; 2; z) = -ln(1 - z) / z
        let z = 0.6;
        assert!((hyp2f1(1.0, 1.0, 2.0, z) - (-(1.0 - z).ln() / z)).abs() < 1e-12);
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
