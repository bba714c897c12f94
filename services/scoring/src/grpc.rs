//! The tonic adapter of ScoringService.

use std::collections::{BTreeMap, HashMap};

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use clm_cache::{ScoreCache, ScoreKey};
use clm_proto::scoring::v1 as pb;
use clm_proto::scoring::v1::scoring_service_server::ScoringService;
use clm_runtime::page_token::{self, Cursor, CursorKey, PageTokens};
use clm_runtime::{Error, id_problem, require_id, tenant};

use crate::convert::{
    event_from_proto, model_to_proto, score_to_proto, spec_from_proto, timestamp,
};
use crate::domain::fold::{LedgerEntry, ScoreState, Standing, fold};
use crate::domain::model::{CompiledModel, ModelSpec, validate};
use crate::domain::{Clock, ScoringError};
use crate::models::Models;
use crate::state_bytes;
use crate::store::Store;

/// Most ids in one BatchGetScores.
pub const MAX_BATCH_IDS: usize = 1000;
/// Most events in one ApplyInteractions.
pub const MAX_APPLY_EVENTS: usize = 5000;
/// Contacts per step of RescoreAll and SimulateScoringModel.
const CONTACTS_PER_STEP: u64 = 200;

/// The ScoringService implementation.
#[derive(Clone)]
pub struct ScoringApi {
    store: Store,
    cache: ScoreCache,
    tokens: PageTokens,
    clock: Clock,
    models: Models,
}

impl ScoringApi {
    /// The API over `store` and `cache`.
    pub fn new(store: Store, cache: ScoreCache, tokens: PageTokens, clock: Clock) -> Self {
        let models = Models::new(store.clone(), clock.clone());
        Self {
            store,
            cache,
            tokens,
            clock,
            models,
        }
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Writes changed scores through to the cache and drops removed ones.
    async fn write_through(
        &self,
        tenant: &str,
        changed: &[crate::store::Change],
        removed: &[(String, String)],
    ) {
        let entries = changed
            .iter()
            .map(|c| {
                (
                    key(tenant, &c.model_id, &c.contact_id),
                    state_bytes::encode(&c.state),
                )
            })
            .collect();
        self.cache.put_many(entries).await;
        let keys: Vec<ScoreKey> = removed.iter().map(|(m, c)| key(tenant, m, c)).collect();
        self.cache.delete_many(&keys).await;
    }

    /// Scores of `contacts` under `model` as of now: the cache first, the database for
    /// misses (which are then cached); contacts with no score get an empty one.
    async fn standings(
        &self,
        tenant: &str,
        model: &CompiledModel,
        contacts: &[String],
    ) -> Result<Vec<Standing>, Status> {
        let keys: Vec<ScoreKey> = contacts.iter().map(|c| key(tenant, &model.id, c)).collect();
        let cached = self.cache.get_many(&keys).await;
        let now = self.now();
        let mut states: Vec<Option<Standing>> = cached
            .into_iter()
            .map(|v| v.and_then(|bytes| state_bytes::decode_standing(&bytes, now)))
            .collect();
        let missing: Vec<String> = contacts
            .iter()
            .zip(&states)
            .filter(|(_, s)| s.is_none())
            .map(|(c, _)| c.clone())
            .collect();
        if !missing.is_empty() {
            let found = self
                .store
                .states(tenant, &model.id, &missing)
                .await
                .map_err(status)?;
            let fill = found
                .iter()
                .map(|(c, s)| (key(tenant, &model.id, c), state_bytes::encode(s)))
                .collect();
            self.cache.fill_many(fill).await;
            for (contact, state) in contacts.iter().zip(states.iter_mut()) {
                if state.is_none() {
                    *state = found.get(contact).map(|s| s.standing(now));
                }
            }
        }
        Ok(states
            .into_iter()
            .map(|s| s.unwrap_or_else(|| ScoreState::empty(model.version, now).standing(now)))
            .collect())
    }
}

fn key<'a>(tenant: &'a str, model: &'a str, contact: &'a str) -> ScoreKey<'a> {
    ScoreKey {
        tenant,
        model,
        contact,
    }
}

fn status(error: ScoringError) -> Status {
    Error::from(error).into()
}

fn checked_spec(model: &pb::ScoringModel) -> Result<ModelSpec, Status> {
    let spec = spec_from_proto(model);
    let violations = validate(&spec, "model");
    if violations.is_empty() {
        Ok(spec)
    } else {
        Err(Error::invalid(violations).into())
    }
}

const MASKABLE: &[&str] = &[
    "display_name",
    "event_rules",
    "fit_rules",
    "thresholds",
    "default",
];

#[tonic::async_trait]
impl ScoringService for ScoringApi {
    type RescoreAllStream = ReceiverStream<Result<pb::RescoreAllResponse, Status>>;

    async fn create_scoring_model(
        &self,
        request: Request<pb::CreateScoringModelRequest>,
    ) -> Result<Response<pb::CreateScoringModelResponse>, Status> {
        let tenant = tenant(&request)?;
        let model = request
            .into_inner()
            .model
            .ok_or_else(|| Status::from(Error::invalid_field("model", "is required")))?;
        let spec = checked_spec(&model)?;
        self.store
            .ensure_default_model(&tenant, self.now())
            .await
            .map_err(status)?;
        let created = self
            .store
            .create_model(&tenant, spec, model.default, self.now())
            .await
            .map_err(status)?;
        self.models.invalidate();
        Ok(Response::new(pb::CreateScoringModelResponse {
            model: Some(model_to_proto(&created)),
        }))
    }

    async fn update_scoring_model(
        &self,
        request: Request<pb::UpdateScoringModelRequest>,
    ) -> Result<Response<pb::UpdateScoringModelResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let values = request
            .model
            .ok_or_else(|| Status::from(Error::invalid_field("model", "is required")))?;
        if values.id.is_empty() {
            return Err(Error::invalid_field("model.id", "is required").into());
        }
        let paths = clm_runtime::mask_paths(request.update_mask, MASKABLE)?;
        self.models.get(&tenant, "").await.map_err(status)?;
        let etag = (!values.etag.is_empty()).then(|| values.etag.clone());
        let given = spec_from_proto(&values);
        let updated = self
            .store
            .update_model(
                &tenant,
                &values.id,
                etag.as_deref(),
                |current| {
                    let mut spec = current.spec.clone();
                    let mut is_default = current.is_default;
                    for path in &paths {
                        match path.as_str() {
                            "display_name" => spec.display_name.clone_from(&given.display_name),
                            "event_rules" => spec.event_rules.clone_from(&given.event_rules),
                            "fit_rules" => spec.fit_rules.clone_from(&given.fit_rules),
                            "thresholds" => spec.thresholds.clone_from(&given.thresholds),
                            _ => is_default = values.default,
                        }
                    }
                    let violations = validate(&spec, "model");
                    if violations.is_empty() {
                        Ok((spec, is_default))
                    } else {
                        Err(ScoringError::Invalid(violations))
                    }
                },
                self.now(),
            )
            .await
            .map_err(status)?;
        self.models.invalidate();
        Ok(Response::new(pb::UpdateScoringModelResponse {
            model: Some(model_to_proto(&updated)),
        }))
    }

    async fn get_scoring_model(
        &self,
        request: Request<pb::GetScoringModelRequest>,
    ) -> Result<Response<pb::GetScoringModelResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        if request.version < 0 {
            return Err(Error::invalid_field("version", "must not be negative").into());
        }
        self.store
            .ensure_default_model(&tenant, self.now())
            .await
            .map_err(status)?;
        let model = self
            .store
            .model(&tenant, &request.id, request.version)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetScoringModelResponse {
            model: Some(model_to_proto(&model)),
        }))
    }

    async fn list_scoring_models(
        &self,
        request: Request<pb::ListScoringModelsRequest>,
    ) -> Result<Response<pb::ListScoringModelsResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let limit = page_token::page_size(request.page_size)?;
        let scope = PageTokens::scope(&tenant, &["scoring_models"]);
        let after = self.tokens.resume(&scope, &request.page_token)?;
        self.store
            .ensure_default_model(&tenant, self.now())
            .await
            .map_err(status)?;
        let mut models = self
            .store
            .list_models(&tenant, after.as_ref().map(|c| c.id.as_str()), limit + 1)
            .await
            .map_err(status)?;
        let next_page_token = self
            .tokens
            .next_page(&mut models, limit, &scope, |last| Cursor {
                key: CursorKey::Int(0),
                id: last.id.clone(),
            });
        Ok(Response::new(pb::ListScoringModelsResponse {
            models: models.iter().map(model_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_score(
        &self,
        request: Request<pb::GetScoreRequest>,
    ) -> Result<Response<pb::GetScoreResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        require_id(&request.contact_id, "contact_id")?;
        let loaded = self
            .models
            .get(&tenant, &request.model_id)
            .await
            .map_err(status)?;
        let contacts = [request.contact_id];
        let standings = self.standings(&tenant, &loaded.compiled, &contacts).await?;
        let [contact_id] = contacts;
        Ok(Response::new(pb::GetScoreResponse {
            score: Some(score_to_proto(contact_id, &loaded.compiled, &standings[0])),
        }))
    }

    async fn batch_get_scores(
        &self,
        request: Request<pb::BatchGetScoresRequest>,
    ) -> Result<Response<pb::BatchGetScoresResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        if request.contact_ids.is_empty() || request.contact_ids.len() > MAX_BATCH_IDS {
            return Err(Error::invalid_field("contact_ids", "must hold 1 to 1000 ids").into());
        }
        // The field is named (an allocation) only for the first id that fails, not for each.
        let ids = &request.contact_ids;
        if let Some((i, problem)) = ids
            .iter()
            .enumerate()
            .find_map(|(i, id)| id_problem(id).map(|problem| (i, problem)))
        {
            return Err(Error::invalid_field(format!("contact_ids[{i}]"), problem).into());
        }
        let loaded = self
            .models
            .get(&tenant, &request.model_id)
            .await
            .map_err(status)?;
        let standings = self
            .standings(&tenant, &loaded.compiled, &request.contact_ids)
            .await?;
        Ok(Response::new(pb::BatchGetScoresResponse {
            scores: request
                .contact_ids
                .into_iter()
                .zip(&standings)
                .map(|(c, s)| score_to_proto(c, &loaded.compiled, s))
                .collect(),
        }))
    }

    async fn explain_score(
        &self,
        request: Request<pb::ExplainScoreRequest>,
    ) -> Result<Response<pb::ExplainScoreResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        require_id(&request.contact_id, "contact_id")?;
        let loaded = self
            .models
            .get(&tenant, &request.model_id)
            .await
            .map_err(status)?;
        let now = self.now();
        let state = self
            .store
            .fresh_state(&tenant, &loaded.compiled, &request.contact_id, now)
            .await
            .map_err(status)?;
        let contributions = state
            .contributions_at(now)
            .into_iter()
            .map(|c| pb::RuleContribution {
                rule_id: c.rule_id,
                rule_kind: c.kind.to_owned(),
                raw_points: c.raw_points,
                points: c.points,
                awards: i64::from(c.awards),
            })
            .collect();
        Ok(Response::new(pb::ExplainScoreResponse {
            score: Some(score_to_proto(
                request.contact_id,
                &loaded.compiled,
                &state.standing(now),
            )),
            contributions,
        }))
    }

    async fn list_score_history(
        &self,
        request: Request<pb::ListScoreHistoryRequest>,
    ) -> Result<Response<pb::ListScoreHistoryResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        require_id(&request.contact_id, "contact_id")?;
        let limit = page_token::page_size(request.page_size)?;
        let loaded = self
            .models
            .get(&tenant, &request.model_id)
            .await
            .map_err(status)?;
        let scope = PageTokens::scope(
            &tenant,
            &["score_history", &loaded.model.id, &request.contact_id],
        );
        let after = self
            .tokens
            .resume(&scope, &request.page_token)?
            .and_then(|c| match c.key {
                CursorKey::Int(at) => {
                    c.id.split_once('\n')
                        .map(|(e, r)| (at, e.to_owned(), r.to_owned()))
                }
                CursorKey::Text(_) => None,
            });
        let mut entries = self
            .store
            .ledger_page(
                &tenant,
                &loaded.model.id,
                &request.contact_id,
                after,
                limit + 1,
            )
            .await
            .map_err(status)?;
        // Event ids hold no control characters, so a newline separates event and rule.
        let next_page_token = self
            .tokens
            .next_page(&mut entries, limit, &scope, |last| Cursor {
                key: CursorKey::Int(last.occurred_at),
                id: format!("{}\n{}", last.event_id, last.rule_id),
            });
        Ok(Response::new(pb::ListScoreHistoryResponse {
            entries: entries
                .into_iter()
                .map(|e| pb::ScoreLedgerEntry {
                    event_id: e.event_id,
                    rule_id: e.rule_id,
                    points: e.points,
                    occurred_at: Some(timestamp(e.occurred_at)),
                    band_after: e.band_after,
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn simulate_scoring_model(
        &self,
        request: Request<pb::SimulateScoringModelRequest>,
    ) -> Result<Response<pb::SimulateScoringModelResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let draft = request
            .model
            .ok_or_else(|| Status::from(Error::invalid_field("model", "is required")))?;
        let spec = checked_spec(&draft)?;
        let baseline = self
            .models
            .get(&tenant, &request.baseline_model_id)
            .await
            .map_err(status)?;
        let draft = CompiledModel::new("draft", 0, &spec);
        let now = self.now();
        let mut shifts: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut scored = 0i64;
        let mut after = String::new();
        loop {
            let contacts = self
                .store
                .contacts_page(&tenant, &after, CONTACTS_PER_STEP)
                .await
                .map_err(status)?;
            let Some(last) = contacts.last().cloned() else {
                break;
            };
            let before = self
                .standings(&tenant, &baseline.compiled, &contacts)
                .await?;
            let (histories, profiles) = self
                .store
                .recorded(&tenant, &contacts)
                .await
                .map_err(status)?;
            let empty = BTreeMap::new();
            for (contact, standing) in contacts.iter().zip(before) {
                let entries: Vec<LedgerEntry> = histories
                    .get(contact)
                    .into_iter()
                    .flatten()
                    .flat_map(|e| {
                        draft
                            .event_rules
                            .iter()
                            .filter(|r| r.matches(&e.kind, &e.properties))
                            .map(|r| LedgerEntry {
                                event_id: e.event_id.clone(),
                                rule_id: r.rule.id.clone(),
                                points: r.rule.points,
                                occurred_at: e.occurred_at,
                            })
                    })
                    .collect();
                let simulated = fold(
                    &draft,
                    &entries,
                    profiles.get(contact).unwrap_or(&empty),
                    now,
                    now,
                );
                let from = baseline.compiled.band(standing.total);
                let to = draft.band(simulated.at(now).0);
                *shifts.entry((from, to)).or_default() += 1;
                scored += 1;
            }
            after = last;
        }
        let changed = shifts
            .iter()
            .filter(|((f, t), _)| f != t)
            .map(|(_, n)| n)
            .sum();
        Ok(Response::new(pb::SimulateScoringModelResponse {
            contacts_scored: scored,
            contacts_changed: changed,
            shifts: shifts
                .into_iter()
                .map(|((from_band, to_band), contacts)| pb::BandShift {
                    from_band,
                    to_band,
                    contacts,
                })
                .collect(),
        }))
    }

    async fn rescore_all(
        &self,
        request: Request<pb::RescoreAllRequest>,
    ) -> Result<Response<Self::RescoreAllStream>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let loaded = self
            .models
            .get(&tenant, &request.model_id)
            .await
            .map_err(status)?;
        let total = self.store.count_contacts(&tenant).await.map_err(status)? as i64;
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let api = self.clone();
        tokio::spawn(async move {
            let mut progress = pb::RescoreAllResponse {
                done: 0,
                total,
                band_changes: 0,
            };
            let mut after = String::new();
            loop {
                let step = async {
                    let contacts = api
                        .store
                        .contacts_page(&tenant, &after, CONTACTS_PER_STEP)
                        .await?;
                    if contacts.is_empty() {
                        return Ok(None);
                    }
                    let changes = api
                        .store
                        .rebuild(&tenant, &loaded.compiled, &contacts, api.now())
                        .await?;
                    Ok::<_, ScoringError>(Some((contacts, changes)))
                };
                match step.await {
                    Ok(Some((contacts, changes))) => {
                        api.write_through(&tenant, &changes, &[]).await;
                        progress.done += contacts.len() as i64;
                        progress.band_changes +=
                            changes.iter().filter(|c| c.crossed.is_some()).count() as i64;
                        after = contacts.last().cloned().unwrap_or_default();
                        if sender.send(Ok(progress)).await.is_err() {
                            return; // the caller went away; what is done stays done
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        let _ = sender.send(Err(status(error))).await;
                        return;
                    }
                }
            }
            if progress.done == 0 {
                let _ = sender.send(Ok(progress)).await;
            }
            tracing::info!(model_id = %loaded.model.id, done = progress.done, "rescore finished");
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn apply_interactions(
        &self,
        request: Request<pb::ApplyInteractionsRequest>,
    ) -> Result<Response<pb::ApplyInteractionsResponse>, Status> {
        let tenant = tenant(&request)?;
        let events = request.into_inner().events;
        if events.len() > MAX_APPLY_EVENTS {
            return Err(Error::invalid_field("events", "holds more than 5000 events").into());
        }
        let mut decoded = Vec::with_capacity(events.len());
        let mut malformed = 0u64;
        for event in events {
            match event_from_proto(event) {
                Some(e) if !e.event_id.is_empty() && !e.contact_id.is_empty() => decoded.push(e),
                _ => malformed += 1,
            }
        }
        if malformed > 0 {
            tracing::warn!(
                malformed,
                "acknowledged contact events with no kind, event id or contact"
            );
        }
        let models = self.models.all(&tenant).await.map_err(status)?;
        let applied = self
            .store
            .apply(&tenant, decoded, &models, self.now())
            .await
            .map_err(status)?;
        self.write_through(&tenant, &applied.changed, &applied.removed)
            .await;
        let crossings: HashMap<&str, usize> = applied
            .changed
            .iter()
            .filter(|c| c.crossed.is_some())
            .fold(HashMap::new(), |mut m, c| {
                *m.entry(c.model_id.as_str()).or_default() += 1;
                m
            });
        if !crossings.is_empty() {
            tracing::info!(?crossings, "band thresholds crossed");
        }
        Ok(Response::new(pb::ApplyInteractionsResponse {
            applied: applied.applied,
            duplicates: applied.duplicates + malformed,
        }))
    }
}
