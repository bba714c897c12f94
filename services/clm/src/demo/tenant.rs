//! The synthetic tenant: who the contacts are and what they do, drawn from distributions
//! that look like a B2B SaaS business. Everything is a pure function of the seed, the
//! contact's index and the anchor instant, so a contact can be generated again (for its
//! interactions, once its id is known) without keeping the whole tenant in memory.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use clm_proto::common::v1::{Money, TimeRange};
use clm_proto::contacts::v1 as pb;

const DAY: i64 = 86_400_000_000;
/// The currency the reports default to.
const CURRENCY: &str = "EUR";

/// Acquisition sources: (source, share of contacts, chance a contact engages, campaigns).
const SOURCES: [(&str, f64, f64, &[&str]); 6] = [
    ("organic_search", 0.30, 0.40, &[""]),
    (
        "paid_search",
        0.22,
        0.45,
        &["brand_search", "generic_search"],
    ),
    ("social", 0.18, 0.30, &["linkedin_launch", "retargeting"]),
    ("email", 0.12, 0.55, &["newsletter", "nurture"]),
    ("referral", 0.10, 0.60, &[""]),
    ("events", 0.08, 0.70, &["webinar_series", "trade_show"]),
];

/// Paid campaigns: (channel, campaign, spend per 30 days and 1,000 contacts, in euros).
const CAMPAIGNS: [(&str, &str, f64); 8] = [
    ("paid_search", "brand_search", 100.0),
    ("paid_search", "generic_search", 240.0),
    ("social", "linkedin_launch", 150.0),
    ("social", "retargeting", 70.0),
    ("email", "newsletter", 25.0),
    ("email", "nurture", 45.0),
    ("events", "webinar_series", 90.0),
    ("events", "trade_show", 220.0),
];

const COUNTRIES: [(&str, f64); 8] = [
    ("US", 0.35),
    ("DE", 0.15),
    ("GB", 0.12),
    ("FR", 0.10),
    ("IN", 0.08),
    ("BR", 0.08),
    ("NL", 0.06),
    ("ES", 0.06),
];

const TITLES: [(&str, f64); 8] = [
    ("Marketing Manager", 0.22),
    ("Software Engineer", 0.20),
    ("Head of Growth", 0.10),
    ("CTO", 0.08),
    ("Sales Director", 0.12),
    ("Product Manager", 0.14),
    ("CEO", 0.05),
    ("Analyst", 0.09),
];

const FIRST_NAMES: [&str; 12] = [
    "Ada", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi",
    "Lena",
];
const LAST_NAMES: [&str; 12] = [
    "Alvarez", "Brown", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
    "Jansen", "Kowalski", "Lopez",
];
const CITIES: [&str; 6] = [
    "Capital",
    "Harbor",
    "Riverside",
    "Hilltown",
    "Lakeside",
    "Old Town",
];

/// One generated contact and its timeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DemoContact {
    /// The contact as imported (no id: the server assigns it).
    pub(crate) contact: pb::Contact,
    /// Its interactions in time order, each with an event id unique to (seed, index, n);
    /// `contact_id` is left empty.
    pub(crate) interactions: Vec<pb::Interaction>,
}

/// The shape of the tenant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// The seed every draw derives from.
    pub(crate) seed: u64,
    /// Days of history before the anchor.
    pub(crate) days: u32,
    /// The newest instant anything happens at (micros since the epoch).
    pub(crate) anchor: i64,
}

impl Plan {
    /// Contact `index`: who it is and everything it did.
    pub(crate) fn contact(&self, index: u64) -> DemoContact {
        let mut rng = StdRng::seed_from_u64(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index);
        let (source, _, engagement, campaigns) = *pick(&mut rng, &SOURCES, |s| s.1);
        let campaign = campaigns[rng.random_range(0..campaigns.len())];
        let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
        let company = rng.random_range(0..2_000u32);
        let email_opt_in = rng.random_bool(0.7);
        let contact = pb::Contact {
            email: format!(
                "{}.{}.{index}@demo-{}-company{company}.example",
                first.to_lowercase(),
                last.to_lowercase(),
                self.seed
            ),
            first_name: first.to_owned(),
            last_name: last.to_owned(),
            company: format!("Company {company}"),
            job_title: pick(&mut rng, &TITLES, |t| t.1).0.to_owned(),
            country: pick(&mut rng, &COUNTRIES, |c| c.1).0.to_owned(),
            city: CITIES[rng.random_range(0..CITIES.len())].to_owned(),
            source: source.to_owned(),
            campaign: campaign.to_owned(),
            attributes: [("demo_seed".to_owned(), self.seed.to_string())].into(),
            consent: Some(pb::Consent {
                email_opt_in,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut timeline = Timeline {
            rng,
            anchor: self.anchor,
            source,
            campaign,
            events: Vec::new(),
        };
        let first_touch =
            self.anchor - (timeline.rng.random::<f64>() * self.days as f64 * DAY as f64) as i64;
        timeline.journey(first_touch, engagement, email_opt_in);
        let mut interactions = timeline.events;
        interactions.sort_by_key(|i| i.occurred_at.map(|t| (t.seconds, t.nanos)));
        for (n, interaction) in interactions.iter_mut().enumerate() {
            interaction.event_id = format!("demo-{}-{index}-{n}", self.seed);
        }
        DemoContact {
            contact,
            interactions,
        }
    }

    /// Marketing spend: every paid campaign, per 30-day period of the history;
    /// `contacts` scales the budgets, so cost per customer stays plausible at any size.
    pub(crate) fn spend(&self, contacts: u64) -> Vec<clm_proto::analytics::v1::RecordSpendRequest> {
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x5EED_5BE7D);
        let start = self.anchor - i64::from(self.days) * DAY;
        let mut requests = Vec::new();
        for (channel, campaign, budget) in CAMPAIGNS {
            let mut from = start;
            let mut period = 0;
            while from < self.anchor {
                let to = (from + 30 * DAY).min(self.anchor);
                let share = (to - from) as f64 / (30 * DAY) as f64;
                let euros = budget * contacts as f64 / 1_000.0 * share * rng.random_range(0.8..1.2);
                requests.push(clm_proto::analytics::v1::RecordSpendRequest {
                    spend_id: format!("demo-{}-{campaign}-{period}", self.seed),
                    channel: channel.to_owned(),
                    campaign: campaign.to_owned(),
                    period: Some(TimeRange {
                        start_time: Some(timestamp(from)),
                        end_time: Some(timestamp(to)),
                    }),
                    amount: Some(money(euros)),
                });
                from = to;
                period += 1;
            }
        }
        requests
    }
}

/// Builds one contact's events; events after the anchor are dropped (they have not
/// happened yet).
struct Timeline {
    rng: StdRng,
    anchor: i64,
    source: &'static str,
    campaign: &'static str,
    events: Vec<pb::Interaction>,
}

impl Timeline {
    /// The funnel: visits, engagement, demo, trial, purchase; then, for customers, repeat
    /// purchases until they lapse, refunds, support, NPS answers, reviews and referrals.
    fn journey(&mut self, first_touch: i64, engagement: f64, opted_in: bool) {
        let mut at = first_touch;
        self.push("page_view", at, None, &[]);
        // Return visits (about seven, days to weeks apart) and, for those who opted in,
        // newsletter opens: the background traffic most interactions are.
        let mut visit = at;
        while self.rng.random_bool(0.87) {
            visit += self.after(12.0);
            self.push("page_view", visit, None, &[]);
        }
        if opted_in {
            let mut month = at + 30 * DAY;
            while month < self.anchor {
                if self.rng.random_bool(0.45) {
                    let opened = month + self.after(2.0);
                    self.push("email_open", opened, None, &[]);
                }
                month += 30 * DAY;
            }
        }
        let direct_buy = self.source == "referral" && self.rng.random_bool(0.05);
        if !direct_buy {
            if !self.rng.random_bool(engagement) {
                return;
            }
            at += self.after(3.0);
            let engaged = if self.source == "events" || self.rng.random_bool(0.3) {
                "webinar_attended"
            } else {
                "email_open"
            };
            self.push(engaged, at, None, &[]);
            if !self.rng.random_bool(0.35) {
                return;
            }
            at += self.after(5.0);
            self.push("demo_request", at, None, &[]);
            if !self.rng.random_bool(0.6) {
                return;
            }
            at += self.after(4.0);
            self.push("trial_started", at, None, &[]);
            if !self.rng.random_bool(0.55) {
                return;
            }
        }
        at += self.after(10.0);
        self.customer(at);
    }

    fn customer(&mut self, first_purchase: i64) {
        // Purchase rate and lifetime vary by customer (the shape a BG/NBD model expects):
        // a gamma(2) rate around one order per 75 days, an exponential lifetime of ~300 days.
        let mean_gap = 75.0 * 2.0 / (self.exponential(1.0) + self.exponential(1.0));
        let lapses_at = first_purchase + self.after(300.0);
        let basket = 90.0 * self.log_normal(0.6);
        let mut at = first_purchase;
        let mut purchases = 0;
        while at < lapses_at.min(self.anchor) {
            let euros = basket * self.log_normal(0.35);
            self.push("purchase", at, Some(money(euros)), &[]);
            purchases += 1;
            if self.rng.random_bool(0.03) {
                let refunded = at + self.after(7.0);
                self.push("refund", refunded, Some(money(euros)), &[]);
            }
            if purchases == 1 && self.rng.random_bool(0.35) {
                let score = self.nps_score();
                self.push("nps_response", at + 14 * DAY, None, &[("score", score)]);
            }
            if purchases == 2 {
                for (kind, chance) in [("review", 0.15), ("referral", 0.10)] {
                    if self.rng.random_bool(chance) {
                        let later = at + self.after(20.0);
                        self.push(kind, later, None, &[]);
                    }
                }
            }
            if self.rng.random_bool(0.2) {
                let later = at + self.after(15.0);
                self.push("support_ticket", later, None, &[]);
            }
            at += self.after(mean_gap);
        }
    }

    /// An NPS answer: about 45 % promoters, 30 % passives, 25 % detractors.
    fn nps_score(&mut self) -> String {
        let score = match self.rng.random::<f64>() {
            u if u < 0.45 => self.rng.random_range(9..=10),
            u if u < 0.75 => self.rng.random_range(7..=8),
            _ => self.rng.random_range(0..=6),
        };
        score.to_string()
    }

    fn push(&mut self, kind: &str, at: i64, value: Option<Money>, properties: &[(&str, String)]) {
        if at > self.anchor {
            return;
        }
        self.events.push(pb::Interaction {
            r#type: kind.to_owned(),
            occurred_at: Some(timestamp(at)),
            value,
            campaign: self.campaign.to_owned(),
            channel: self.source.to_owned(),
            properties: properties
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            ..Default::default()
        });
    }

    /// An exponential delay with a mean of `mean_days`.
    fn after(&mut self, mean_days: f64) -> i64 {
        (self.exponential(mean_days) * DAY as f64) as i64
    }

    fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.rng.random::<f64>()).ln()
    }

    /// exp(sigma * z) for a standard normal z (Box-Muller): a log-normal factor with median 1.
    fn log_normal(&mut self, sigma: f64) -> f64 {
        let (u1, u2) = (1.0 - self.rng.random::<f64>(), self.rng.random::<f64>());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (sigma * z).exp()
    }
}

/// A weighted choice (weights need not sum to one).
fn pick<'a, T>(rng: &mut StdRng, items: &'a [T], weight: impl Fn(&T) -> f64) -> &'a T {
    let total: f64 = items.iter().map(&weight).sum();
    let mut u = rng.random::<f64>() * total;
    for item in items {
        u -= weight(item);
        if u < 0.0 {
            return item;
        }
    }
    &items[items.len() - 1]
}

/// Euros as Money, rounded to cents.
fn money(euros: f64) -> Money {
    Money {
        amount_micros: (euros * 100.0).round() as i64 * 10_000,
        currency: CURRENCY.to_owned(),
    }
}

fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64) -> Plan {
        Plan {
            seed,
            days: 365,
            anchor: 1_790_000_000_000_000,
        }
    }

    fn count(contacts: &[DemoContact], kind: &str) -> usize {
        contacts
            .iter()
            .filter(|c| c.interactions.iter().any(|i| i.r#type == kind))
            .count()
    }

    #[test]
    fn a_seed_gives_the_same_tenant_and_another_seed_another() {
        let a: Vec<_> = (0..50).map(|i| plan(7).contact(i)).collect();
        let b: Vec<_> = (0..50).map(|i| plan(7).contact(i)).collect();
        let c: Vec<_> = (0..50).map(|i| plan(8).contact(i)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(plan(7).spend(100), plan(7).spend(100));
    }

    #[test]
    fn the_funnel_narrows_and_customers_come_back() {
        let contacts: Vec<_> = (0..5_000).map(|i| plan(1).contact(i)).collect();
        let funnel: Vec<usize> = ["page_view", "demo_request", "trial_started", "purchase"]
            .iter()
            .map(|kind| count(&contacts, kind))
            .collect();
        assert_eq!(funnel[0], contacts.len(), "everyone visits");
        assert!(funnel.windows(2).all(|w| w[0] > w[1]), "{funnel:?}");
        let customers = funnel[3] as f64 / contacts.len() as f64;
        assert!((0.03..0.15).contains(&customers), "{customers}");
        let repeat = contacts
            .iter()
            .filter(|c| {
                c.interactions
                    .iter()
                    .filter(|i| i.r#type == "purchase")
                    .count()
                    >= 2
            })
            .count();
        assert!(repeat > funnel[3] / 4, "{repeat} of {}", funnel[3]);
        assert!(count(&contacts, "nps_response") > 0);
        // About ten interactions per contact: 100,000 contacts make about a million.
        let per_contact = contacts.iter().map(|c| c.interactions.len()).sum::<usize>() as f64
            / contacts.len() as f64;
        assert!((7.0..13.0).contains(&per_contact), "{per_contact}");
    }

    #[test]
    fn every_event_is_in_the_history_in_order_with_a_unique_id() {
        let p = plan(3);
        let earliest = p.anchor - i64::from(p.days) * DAY;
        let mut ids = std::collections::HashSet::new();
        for i in 0..1_000 {
            let c = p.contact(i);
            let times: Vec<i64> = c
                .interactions
                .iter()
                .map(|e| {
                    let t = e.occurred_at.unwrap();
                    t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000
                })
                .collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]));
            assert!(times.iter().all(|t| (earliest..=p.anchor).contains(t)));
            assert!(
                c.interactions
                    .iter()
                    .all(|e| ids.insert(e.event_id.clone()))
            );
            for purchase in c.interactions.iter().filter(|e| e.r#type == "purchase") {
                let value = purchase.value.as_ref().unwrap();
                assert!(value.amount_micros > 0 && value.amount_micros % 10_000 == 0);
            }
        }
    }

    #[test]
    fn spend_covers_every_campaign_over_the_whole_history() {
        let p = plan(5);
        let spend = p.spend(1_000);
        for (_, campaign, _) in CAMPAIGNS {
            let periods: Vec<_> = spend.iter().filter(|s| s.campaign == campaign).collect();
            assert_eq!(
                periods.len(),
                13,
                "365 days are 13 periods of up to 30 days"
            );
        }
        assert!(
            spend
                .iter()
                .all(|s| s.amount.as_ref().unwrap().amount_micros > 0)
        );
    }
}
