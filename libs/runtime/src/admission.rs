//! Admission control: each RPC method has a concurrency limit of its own, adapted to the
//! method's latency, under the server's configured maximum.
//!
//! A fixed limit for a whole server cannot suit a method that answers from memory in
//! microseconds and one that reads a million rows in its database: set for the first, it
//! lets hundreds of the second share two cores, so every admitted call is slow; set for the
//! second, it refuses the first for no reason. Each method's limit follows TCP Vegas
//! (`tower_acc::Vegas`): from the method's fastest call it estimates how many calls are
//! queueing rather than running, and lowers the limit while that queue is long. A request
//! over its method's limit is refused with RESOURCE_EXHAUSTED, at once by default, or after
//! waiting up to the admission wait for a slot (a burst smoothed rather than refused).
//!
//! Client-streaming methods (a stream's call lasts as long as its client keeps sending) say
//! nothing about the server's capacity by their duration, and the health check must answer
//! while the server is busy (an orchestrator told NOT_SERVING or refused restarts it): both
//! only count against the configured maximum. Durations under [`LATENCY_FLOOR`] count as
//! the floor, so a method answered from memory is never limited for the scheduler's noise.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_acc::Algorithm;

/// Where a method's limit starts; Vegas raises it while calls run without queueing.
const INITIAL_LIMIT: usize = 20;

/// Vegas forgets a method's fastest call after about this many times its limit in calls,
/// and takes the next call's duration as the new baseline. The crate's default (30) resets
/// it every few hundred calls: under a steady overload the next call is a slow one, the
/// queue looks empty against it, and the limit climbs back to the maximum (measured: from
/// 20 to 1,024 within 8 s of three times a funnel's capacity).
const PROBE_MULTIPLIER: usize = 10_000;

/// Calls shorter than this are taken as this long. A call answered from memory takes a few
/// microseconds, and a scheduling hiccup makes it hundreds: read as a queue, that lowered
/// the health check's limit until 32 callers were refused (192 refusals in 5 s on a noisy
/// machine). Queues that matter are measured in milliseconds.
const LATENCY_FLOOR: Duration = Duration::from_millis(1);

/// Calls a method may have queueing (Vegas's estimate) before its limit stops rising, and
/// above which it falls, in units of [`queue_unit`]. The crate's defaults (3 and 6) let a
/// funnel settle at six calls in flight on two cores, each waiting for the others: under
/// three times its capacity an admitted funnel took 14 ms at the median and 26-28 ms at
/// p99, nearly five times its unloaded p99, and refusals 11-13 ms at p99. With 1 and 3 it
/// settles at three or four: 6-7 ms and 12-16 ms (two to three times the unloaded p99),
/// refusals 6-9 ms at p99, as many funnels served within the noise. Tighter still (1 and
/// 2) refused 4 % of 32 closed-loop callers' BatchGetScores, a load the server carries.
const QUEUE_TOLERATED: usize = 1;
const QUEUE_TOO_LONG: usize = 3;

/// Vegas's unit of queue length: one call up to a limit of 100, growing with the limit's
/// order of magnitude above (the crate's scaling).
fn queue_unit(limit: usize) -> usize {
    ((limit as f64).log10() as usize).max(1)
}

/// The methods a server knows, by gRPC path (`/package.Service/Method`), with whether each
/// takes a client stream: every clm service's and the standard health check's. Decoded once
/// per process (`clm up` starts four servers).
pub(crate) fn published_methods() -> &'static [(String, bool)] {
    static METHODS: LazyLock<Vec<(String, bool)>> = LazyLock::new(decode_methods);
    &METHODS
}

fn decode_methods() -> Vec<(String, bool)> {
    let mut methods = Vec::new();
    for encoded in [
        clm_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        // Both sets are compiled in: one that does not decode is a build defect.
        let set = prost_types::FileDescriptorSet::decode(encoded)
            .expect("a compiled-in descriptor set decodes");
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.push((
                        format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                        method.client_streaming(),
                    ));
                }
            }
        }
    }
    methods
}

/// Publishes each called method's current limit (`clm_rpc_concurrency_limit{method}`) on
/// `metrics`, read at every scrape.
pub fn register_metrics(metrics: &crate::Metrics, admission: Arc<Admission>) {
    let gauge = metrics.method_gauge(
        "rpc_concurrency_limit",
        "Calls of a method admitted at once, as adapted to its latency",
    );
    metrics.on_scrape(Arc::new(move || {
        for (method, limit) in admission.limits() {
            gauge
                .get_or_create(&crate::metrics::MethodLabels { method })
                .set(limit as i64);
        }
        Box::pin(std::future::ready(()))
    }));
}

/// The limits of one server's methods.
#[derive(Debug)]
pub struct Admission {
    by_method: HashMap<String, Limiter>,
    /// Paths no descriptor names (reflection, unknown methods) share one limiter, so a
    /// caller inventing paths cannot make the map grow.
    other: Limiter,
    wait: Duration,
}

impl Admission {
    /// Limits for every published method: adaptive up to `max` calls at once each, fixed at
    /// `max` for client streams and the health check; a call over its limit waits at most
    /// `wait` for a slot.
    pub fn new(max: usize, wait: Duration) -> Self {
        let max = max.max(1);
        let by_method = published_methods()
            .iter()
            .map(|(path, client_streaming)| {
                let limiter = if *client_streaming || path.starts_with("/grpc.health.v1.Health/") {
                    Limiter::fixed(max)
                } else {
                    Limiter::adaptive(max)
                };
                (path.clone(), limiter)
            })
            .collect();
        Self {
            by_method,
            other: Limiter::adaptive(max),
            wait,
        }
    }

    fn limiter(&self, path: &str) -> &Limiter {
        self.by_method.get(path).unwrap_or(&self.other)
    }

    /// The current limit of every adaptive method called so far, by `service/method`.
    pub fn limits(&self) -> Vec<(String, usize)> {
        self.by_method
            .iter()
            .filter_map(|(path, limiter)| {
                let Sizing::Adaptive(control) = &limiter.sizing else {
                    return None;
                };
                let control = control.lock().unwrap_or_else(|e| e.into_inner());
                (control.calls > 0)
                    .then(|| (path.trim_start_matches('/').to_owned(), control.permits))
            })
            .collect()
    }

    /// A slot for a call of the method at `path`, or `None` once the admission wait is
    /// over without one. The call's duration is reported through the returned [`Admitted`].
    pub async fn admit(&self, path: &str) -> Option<Admitted> {
        let limiter = self.limiter(path).clone();
        let permit = match limiter.semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if self.wait.is_zero() => return None,
            Err(_) => {
                tokio::time::timeout(self.wait, limiter.semaphore.clone().acquire_owned())
                    .await
                    .ok()?
                    // The semaphore is never closed.
                    .ok()?
            }
        };
        Some(Admitted {
            limiter,
            permit,
            started: Instant::now(),
        })
    }
}

/// A call holding a slot of its method; dropping it frees the slot.
#[derive(Debug)]
pub struct Admitted {
    limiter: Limiter,
    permit: OwnedSemaphorePermit,
    started: Instant,
}

impl Admitted {
    /// The call ended (`failed`: the server could not serve it); its duration updates its
    /// method's limit.
    pub fn finish(self, failed: bool) {
        if self.limiter.observe(self.started.elapsed(), failed) {
            // The limit shrank and no slot was free to take away: this one goes instead of
            // passing to the next waiting call.
            self.permit.forget();
        }
    }
}

/// One method's slots, and what sizes them.
#[derive(Debug, Clone)]
struct Limiter {
    semaphore: Arc<Semaphore>,
    sizing: Sizing,
}

#[derive(Debug, Clone)]
enum Sizing {
    Fixed,
    Adaptive(Arc<Mutex<Control>>),
}

#[derive(Debug)]
struct Control {
    vegas: tower_acc::Vegas,
    /// Slots the semaphore holds in all, taken or free.
    permits: usize,
    /// Calls observed.
    calls: u64,
}

impl Limiter {
    fn fixed(max: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(max)),
            sizing: Sizing::Fixed,
        }
    }

    fn adaptive(max: usize) -> Self {
        let vegas = tower_acc::Vegas::builder()
            .initial_limit(INITIAL_LIMIT.min(max))
            .max_limit(max)
            .probe_multiplier(PROBE_MULTIPLIER)
            .alpha(|limit| QUEUE_TOLERATED * queue_unit(limit))
            .beta(|limit| QUEUE_TOO_LONG * queue_unit(limit))
            .build();
        let permits = vegas.max_concurrency();
        Self {
            semaphore: Arc::new(Semaphore::new(permits)),
            sizing: Sizing::Adaptive(Arc::new(Mutex::new(Control {
                vegas,
                permits,
                calls: 0,
            }))),
        }
    }

    /// Feeds one call's duration to the algorithm (the call still holds its slot, so it
    /// counts as in flight) and resizes the slots to the new limit. True when the limit is
    /// lower than the slots and none is free: the caller's slot must go.
    fn observe(&self, rtt: Duration, failed: bool) -> bool {
        let Sizing::Adaptive(control) = &self.sizing else {
            return false;
        };
        let mut control = control.lock().unwrap_or_else(|e| e.into_inner());
        let in_flight = control
            .permits
            .saturating_sub(self.semaphore.available_permits());
        control
            .vegas
            .update(rtt.max(LATENCY_FLOOR), in_flight, failed, false);
        control.calls += 1;
        let wanted = control.vegas.max_concurrency();
        if wanted > control.permits {
            self.semaphore.add_permits(wanted - control.permits);
            control.permits = wanted;
        } else if wanted < control.permits {
            // Free slots go at once. A slot a call frees passes straight to the next waiting
            // call, so while calls wait none is ever free: then the ending call's own slot
            // goes, one per call, as the limit asks.
            control.permits -= self.semaphore.forget_permits(control.permits - wanted);
            if wanted < control.permits {
                control.permits -= 1;
                return true;
            }
        }
        false
    }
}

/// The layer that puts every request through [`Admission`].
#[derive(Debug, Clone)]
pub struct Admit(pub Arc<Admission>);

impl<S> tower::Layer<S> for Admit {
    type Service = Admitting<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admitting {
            inner,
            admission: self.0.clone(),
        }
    }
}

/// A service whose requests wait for a slot of their method, or are refused.
#[derive(Debug, Clone)]
pub struct Admitting<S> {
    inner: S,
    admission: Arc<Admission>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B, R> tower::Service<http::Request<B>> for Admitting<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The service polled ready is the one that must take the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let admission = self.admission.clone();
        Box::pin(async move {
            let Some(admitted) = admission.admit(request.uri().path()).await else {
                // tonic answers this error with RESOURCE_EXHAUSTED, and the metrics layer
                // counts it as shed.
                return Err(tower::load_shed::error::Overloaded::new().into());
            };
            let result = inner.call(request).await.map_err(Into::into);
            let failed = match &result {
                Ok(response) => server_fault(response),
                Err(_) => true,
            };
            admitted.finish(failed);
            result
        })
    }
}

/// A response that says the server could not serve (a timeout or an internal failure), as
/// opposed to a caller's mistake: such calls lower their method's limit at once.
fn server_fault<R>(response: &http::Response<R>) -> bool {
    // DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE.
    matches!(
        response.headers().get("grpc-status").map(|v| v.as_bytes()),
        Some(b"4" | b"13" | b"14")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Limiter {
        /// The current limit (for a fixed one: its free slots, so with no call in flight).
        fn limit(&self) -> usize {
            match &self.sizing {
                Sizing::Fixed => self.semaphore.available_permits(),
                Sizing::Adaptive(control) => {
                    control.lock().unwrap_or_else(|e| e.into_inner()).permits
                }
            }
        }

        /// Takes `n` slots, as `n` calls in flight would.
        fn hold(&self, n: usize) -> Vec<OwnedSemaphorePermit> {
            (0..n)
                .map(|_| self.semaphore.clone().try_acquire_owned().expect("a slot"))
                .collect()
        }
    }

    impl Admission {
        /// The current limit of the method at `path`.
        fn limit(&self, path: &str) -> usize {
            self.limiter(path).limit()
        }
    }

    const GET_SCORE: &str = "/clm.scoring.v1.ScoringService/GetScore";
    const RECORD_INTERACTIONS: &str = "/clm.contacts.v1.ContactsService/RecordInteractions";

    #[test]
    fn every_clm_method_and_the_health_check_has_a_limiter_of_its_own() {
        let methods = published_methods();
        assert!(methods.iter().any(|(p, _)| p == GET_SCORE));
        assert!(
            methods
                .iter()
                .any(|(p, _)| p == "/grpc.health.v1.Health/Check")
        );
        assert!(methods.contains(&(RECORD_INTERACTIONS.to_owned(), true)));
        let admission = Admission::new(64, Duration::ZERO);
        assert_eq!(admission.by_method.len(), methods.len());
        assert_eq!(admission.limit(GET_SCORE), INITIAL_LIMIT);
        assert_eq!(admission.limit(RECORD_INTERACTIONS), 64);
        assert_eq!(admission.limit("/grpc.health.v1.Health/Check"), 64);
    }

    #[tokio::test]
    async fn a_call_over_its_methods_limit_is_refused_once_the_wait_is_over() {
        let admission = Admission::new(2, Duration::from_millis(20));
        let first = admission.admit(GET_SCORE).await.expect("a free slot");
        let second = admission.admit(GET_SCORE).await.expect("a free slot");
        let started = Instant::now();
        assert!(admission.admit(GET_SCORE).await.is_none());
        assert!(started.elapsed() >= Duration::from_millis(20));
        // Another method's slots are its own.
        let other = admission
            .admit("/clm.analytics.v1.AnalyticsService/GetFunnel")
            .await;
        assert!(other.is_some());
        drop(first);
        assert!(admission.admit(GET_SCORE).await.is_some());
        drop(second);
    }

    #[tokio::test]
    async fn without_a_wait_a_call_over_its_methods_limit_is_refused_at_once() {
        let admission = Admission::new(1, Duration::ZERO);
        let held = admission.admit(GET_SCORE).await.expect("a free slot");
        let started = Instant::now();
        assert!(admission.admit(GET_SCORE).await.is_none());
        assert!(started.elapsed() < Duration::from_millis(5));
        drop(held);
        assert!(admission.admit(GET_SCORE).await.is_some());
    }

    #[tokio::test]
    async fn a_waiting_call_gets_the_slot_a_finished_call_frees() {
        let admission = Arc::new(Admission::new(1, Duration::from_secs(5)));
        let held = admission.admit(GET_SCORE).await.expect("a free slot");
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit(GET_SCORE).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(admission.limits().is_empty(), "no call has ended yet");
        held.finish(false);
        assert!(waiting.await.expect("the waiter ran"));
        // A method's limit is published once one of its calls has ended.
        assert_eq!(
            admission.limits(),
            [(GET_SCORE.trim_start_matches('/').to_owned(), 1)]
        );
    }

    #[test]
    fn calls_that_queue_lower_the_limit_and_calls_that_do_not_raise_it() {
        let limiter = Limiter::adaptive(100);
        // The first call sets the no-load duration: 1 ms.
        limiter.observe(Duration::from_millis(1), false);
        // Twenty at once, each taking ten times as long (a long queue), ending one by one.
        let mut held = limiter.hold(20);
        for _ in 0..10 {
            let ending = held.pop().expect("a call");
            if limiter.observe(Duration::from_millis(10), false) {
                ending.forget();
            }
        }
        drop(held);
        let lowered = limiter.limit();
        assert!(lowered < INITIAL_LIMIT, "limit {lowered}");
        assert_eq!(limiter.semaphore.available_permits(), lowered);
        // Then as many as allowed, at the no-load duration: no queue, so it grows.
        let held = limiter.hold(lowered);
        for _ in 0..5 {
            limiter.observe(Duration::from_millis(1), false);
        }
        drop(held);
        assert!(limiter.limit() > lowered, "limit {}", limiter.limit());
    }

    #[tokio::test]
    async fn the_limit_shrinks_while_calls_wait_for_every_freed_slot() {
        let limiter = Limiter::adaptive(100);
        limiter.observe(Duration::from_millis(1), false);
        let mut held = limiter.hold(INITIAL_LIMIT);
        let waiting: Vec<_> = (0..10)
            .map(|_| tokio::spawn(limiter.semaphore.clone().acquire_owned()))
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        for _ in 0..10 {
            let ending = held.pop().expect("a call");
            if limiter.observe(Duration::from_millis(10), false) {
                ending.forget();
            }
        }
        let lowered = limiter.limit();
        assert!(lowered < INITIAL_LIMIT, "limit {lowered}");
        // Every slot still in use, and no more of them than the limit.
        let mut admitted = held.len();
        for mut waiter in waiting {
            match tokio::time::timeout(Duration::from_millis(20), &mut waiter).await {
                Ok(Ok(Ok(permit))) => {
                    admitted += 1;
                    drop(permit);
                }
                _ => waiter.abort(),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            admitted <= lowered,
            "{admitted} admitted under a limit of {lowered}"
        );
        drop(held);
        assert_eq!(limiter.semaphore.available_permits(), lowered);
    }

    #[test]
    fn calls_faster_than_the_floor_never_lower_the_limit() {
        let limiter = Limiter::adaptive(100);
        let held = limiter.hold(INITIAL_LIMIT);
        limiter.observe(Duration::from_micros(5), false);
        for _ in 0..10 {
            // A hundred times the fastest call, but under a millisecond.
            limiter.observe(Duration::from_micros(500), false);
        }
        drop(held);
        assert!(
            limiter.limit() >= INITIAL_LIMIT,
            "limit {}",
            limiter.limit()
        );
    }

    #[test]
    fn a_saturated_method_settles_where_few_calls_wait() {
        // A method on two cores: up to two calls run at their 2 ms, more share the cores,
        // so each takes 2 ms x in flight / 2. Callers keep every slot taken.
        let limiter = Limiter::adaptive(100);
        limiter.observe(Duration::from_millis(2), false);
        for _ in 0..200 {
            let limit = limiter.limit();
            let duration = Duration::from_millis(2).mul_f64((limit as f64 / 2.0).max(1.0));
            for ending in limiter.hold(limit) {
                if limiter.observe(duration, false) {
                    ending.forget();
                }
            }
        }
        // Vegas's usual tolerance (three to six queued calls) settles at eight, each call
        // taking four times its own duration; this one at two or three waiting.
        let settled = limiter.limit();
        assert!((3..=5).contains(&settled), "limit {settled}");
    }

    #[test]
    fn a_fixed_limiter_never_moves() {
        let limiter = Limiter::fixed(8);
        limiter.observe(Duration::from_secs(3), true);
        assert_eq!(limiter.limit(), 8);
    }
}
