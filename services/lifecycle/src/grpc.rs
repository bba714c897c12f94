//! The tonic adapter of LifecycleService.

use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use clm_proto::lifecycle::v1 as pb;
use clm_proto::lifecycle::v1::lifecycle_service_server::LifecycleService;
use clm_runtime::page_token::{self, Cursor, CursorKey, PageTokens};
use clm_runtime::{Error, FieldViolation, require_id, tenant};

use crate::convert::{duration, model_to_proto, signal_from_proto, spec_from_proto, timestamp};
use crate::domain::model::{CompiledModel, StageSpec, validate};
use crate::domain::{Clock, LifecycleError, facts};
use crate::store::Store;

/// Most signals in one ApplySignals.
pub const MAX_SIGNALS: usize = 5000;
/// Events sent to a watcher before waiting for it to read (backpressure).
const WATCH_BUFFER: usize = 64;
/// How often a watcher looks for events written by other replicas.
const WATCH_POLL: Duration = Duration::from_millis(500);

/// The LifecycleService implementation.
#[derive(Clone)]
pub struct LifecycleApi {
    store: Store,
    tokens: PageTokens,
    clock: Clock,
}

impl LifecycleApi {
    /// The API over `store`.
    pub fn new(store: Store, tokens: PageTokens, clock: Clock) -> Self {
        Self {
            store,
            tokens,
            clock,
        }
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The tenant's models compiled, the default first (created on first use).
    async fn models(&self, tenant: &str) -> Result<Vec<CompiledModel>, Status> {
        self.store
            .ensure_default_model(tenant, self.now())
            .await
            .map_err(status)?;
        Ok(self
            .store
            .models(tenant)
            .await
            .map_err(status)?
            .iter()
            .map(|m| CompiledModel::new(&m.id, &m.spec))
            .collect())
    }

    async fn model(&self, tenant: &str, id: &str) -> Result<CompiledModel, Status> {
        self.store
            .ensure_default_model(tenant, self.now())
            .await
            .map_err(status)?;
        let model = self.store.model(tenant, id).await.map_err(status)?;
        Ok(CompiledModel::new(&model.id, &model.spec))
    }
}

fn status(error: LifecycleError) -> Status {
    Error::from(error).into()
}

fn checked_spec(model: &pb::StageModel) -> Result<StageSpec, Status> {
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
    "stages",
    "entry_rules",
    "triggers",
    "default",
];

#[tonic::async_trait]
impl LifecycleService for LifecycleApi {
    type WatchLifecycleEventsStream =
        ReceiverStream<Result<pb::WatchLifecycleEventsResponse, Status>>;

    async fn create_stage_model(
        &self,
        request: Request<pb::CreateStageModelRequest>,
    ) -> Result<Response<pb::CreateStageModelResponse>, Status> {
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
        Ok(Response::new(pb::CreateStageModelResponse {
            model: Some(model_to_proto(&created)),
        }))
    }

    async fn update_stage_model(
        &self,
        request: Request<pb::UpdateStageModelRequest>,
    ) -> Result<Response<pb::UpdateStageModelResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let values = request
            .model
            .ok_or_else(|| Status::from(Error::invalid_field("model", "is required")))?;
        if values.id.is_empty() {
            return Err(Error::invalid_field("model.id", "is required").into());
        }
        let paths = clm_runtime::mask_paths(request.update_mask, MASKABLE)?;
        self.store
            .ensure_default_model(&tenant, self.now())
            .await
            .map_err(status)?;
        let given = spec_from_proto(&values);
        let etag = (!values.etag.is_empty()).then(|| values.etag.clone());
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
                            "stages" => spec.stages.clone_from(&given.stages),
                            "entry_rules" => spec.entry_rules.clone_from(&given.entry_rules),
                            "triggers" => spec.triggers.clone_from(&given.triggers),
                            _ => is_default = values.default,
                        }
                    }
                    let violations = validate(&spec, "model");
                    if violations.is_empty() {
                        Ok((spec, is_default))
                    } else {
                        Err(LifecycleError::Invalid(violations))
                    }
                },
                self.now(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateStageModelResponse {
            model: Some(model_to_proto(&updated)),
        }))
    }

    async fn get_stage_model(
        &self,
        request: Request<pb::GetStageModelRequest>,
    ) -> Result<Response<pb::GetStageModelResponse>, Status> {
        let tenant = tenant(&request)?;
        let id = request.into_inner().id;
        self.store
            .ensure_default_model(&tenant, self.now())
            .await
            .map_err(status)?;
        let model = self.store.model(&tenant, &id).await.map_err(status)?;
        Ok(Response::new(pb::GetStageModelResponse {
            model: Some(model_to_proto(&model)),
        }))
    }

    async fn get_contact_stage(
        &self,
        request: Request<pb::GetContactStageRequest>,
    ) -> Result<Response<pb::GetContactStageResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        require_id(&request.contact_id, "contact_id")?;
        let model = self.model(&tenant, &request.model_id).await?;
        let (stage, entered_at) = self
            .store
            .contact_stage(&tenant, &model.id, &request.contact_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetContactStageResponse {
            stage: Some(pb::ContactStage {
                contact_id: request.contact_id,
                model_id: model.id,
                stage,
                entered_at: Some(timestamp(entered_at)),
            }),
        }))
    }

    async fn list_stage_history(
        &self,
        request: Request<pb::ListStageHistoryRequest>,
    ) -> Result<Response<pb::ListStageHistoryResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        require_id(&request.contact_id, "contact_id")?;
        let limit = page_token::page_size(request.page_size)?;
        let model = self.model(&tenant, &request.model_id).await?;
        let scope = PageTokens::scope(&tenant, &["stage_history", &model.id, &request.contact_id]);
        let before = self
            .tokens
            .resume(&scope, &request.page_token)?
            .and_then(|c| match c.key {
                CursorKey::Int(id) => Some(id),
                CursorKey::Text(_) => None,
            });
        let mut entries = self
            .store
            .history(&tenant, &model.id, &request.contact_id, before, limit + 1)
            .await
            .map_err(status)?;
        let next_page_token = self
            .tokens
            .next_page(&mut entries, limit, &scope, |last| Cursor {
                key: CursorKey::Int(last.id),
                id: String::new(),
            });
        let now = self.now();
        Ok(Response::new(pb::ListStageHistoryResponse {
            entries: entries
                .into_iter()
                .map(|e| pb::StageHistoryEntry {
                    time_in_stage: Some(duration(e.exited_at.unwrap_or(now) - e.entered_at)),
                    stage: e.stage,
                    from_stage: e.from_stage,
                    entered_at: Some(timestamp(e.entered_at)),
                    exited_at: e.exited_at.map(timestamp),
                    cause: e.cause,
                    event_id: e.event_id,
                    actor: e.actor,
                    reason: e.reason,
                    r#override: e.forced,
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn transition_contact(
        &self,
        request: Request<pb::TransitionContactRequest>,
    ) -> Result<Response<pb::TransitionContactResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        require_id(&request.contact_id, "contact_id")?;
        if request.reason.chars().count() > 1024 || request.actor.chars().count() > 256 {
            return Err(Error::invalid_field(
                "reason",
                "reason is at most 1024 and actor 256 characters",
            )
            .into());
        }
        let model = self.model(&tenant, &request.model_id).await?;
        let (stage, entered_at) = self
            .store
            .move_contact(
                &tenant,
                &model,
                &request.contact_id,
                &request.to_stage,
                request.r#override,
                &request.actor,
                &request.reason,
                self.now(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::TransitionContactResponse {
            stage: Some(pb::ContactStage {
                contact_id: request.contact_id,
                model_id: model.id,
                stage,
                entered_at: Some(timestamp(entered_at)),
            }),
        }))
    }

    async fn create_segment(
        &self,
        request: Request<pb::CreateSegmentRequest>,
    ) -> Result<Response<pb::CreateSegmentResponse>, Status> {
        let tenant = tenant(&request)?;
        let segment = request
            .into_inner()
            .segment
            .ok_or_else(|| Status::from(Error::invalid_field("segment", "is required")))?;
        let name = segment.display_name.trim();
        let mut violations = Vec::new();
        if name.is_empty() || name.chars().count() > 128 {
            violations.push(FieldViolation::new(
                "segment.display_name",
                "must be 1 to 128 characters",
            ));
        }
        if segment.filter.trim().is_empty() {
            violations.push(FieldViolation::new("segment.filter", "is required"));
        } else if let Err(e) = facts::compile(&segment.filter, false) {
            violations.push(FieldViolation::new("segment.filter", e.to_string()));
        }
        if !violations.is_empty() {
            return Err(Error::invalid(violations).into());
        }
        let models = self.models(&tenant).await?;
        let now = self.now();
        let row = self
            .store
            .create_segment(&tenant, name, &segment.filter, &models[0].id, now)
            .await
            .map_err(status)?;
        let count = self
            .store
            .member_count(&tenant, &row.id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateSegmentResponse {
            segment: Some(pb::Segment {
                id: row.id,
                display_name: row.display_name,
                filter: row.filter,
                member_count: count as i64,
                created_at: Some(timestamp(row.created_at)),
            }),
        }))
    }

    async fn list_segments(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let limit = page_token::page_size(request.page_size)?;
        let scope = PageTokens::scope(&tenant, &["segments"]);
        let after = self
            .tokens
            .resume(&scope, &request.page_token)?
            .map(|c| c.id)
            .unwrap_or_default();
        let mut rows = self
            .store
            .segments(&tenant, &after, limit + 1)
            .await
            .map_err(status)?;
        let next_page_token = self
            .tokens
            .next_page(&mut rows, limit, &scope, |(s, _)| Cursor {
                key: CursorKey::Int(0),
                id: s.id.clone(),
            });
        Ok(Response::new(pb::ListSegmentsResponse {
            segments: rows
                .into_iter()
                .map(|(s, n)| pb::Segment {
                    id: s.id,
                    display_name: s.display_name,
                    filter: s.filter,
                    member_count: n as i64,
                    created_at: Some(timestamp(s.created_at)),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn list_segment_members(
        &self,
        request: Request<pb::ListSegmentMembersRequest>,
    ) -> Result<Response<pb::ListSegmentMembersResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        if request.segment_id.is_empty() {
            return Err(Error::invalid_field("segment_id", "is required").into());
        }
        let limit = page_token::page_size(request.page_size)?;
        let scope = PageTokens::scope(&tenant, &["segment_members", &request.segment_id]);
        let after = self
            .tokens
            .resume(&scope, &request.page_token)?
            .map(|c| c.id)
            .unwrap_or_default();
        let mut members = self
            .store
            .members(&tenant, &request.segment_id, &after, limit + 1)
            .await
            .map_err(status)?;
        let next_page_token = self
            .tokens
            .next_page(&mut members, limit, &scope, |(c, _)| Cursor {
                key: CursorKey::Int(0),
                id: c.clone(),
            });
        Ok(Response::new(pb::ListSegmentMembersResponse {
            members: members
                .into_iter()
                .map(|(contact_id, entered_at)| pb::SegmentMember {
                    contact_id,
                    entered_at: Some(timestamp(entered_at)),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn apply_signals(
        &self,
        request: Request<pb::ApplySignalsRequest>,
    ) -> Result<Response<pb::ApplySignalsResponse>, Status> {
        let tenant = tenant(&request)?;
        let signals = request.into_inner().signals;
        if signals.len() > MAX_SIGNALS {
            return Err(Error::invalid_field("signals", "holds more than 5000 signals").into());
        }
        let mut decoded = Vec::with_capacity(signals.len());
        let mut malformed = 0u64;
        for signal in signals {
            match signal_from_proto(signal) {
                Some(s) if !s.event_id.is_empty() && !s.contact_id.is_empty() => decoded.push(s),
                _ => malformed += 1,
            }
        }
        if malformed > 0 {
            tracing::warn!(
                malformed,
                "acknowledged signals with no kind, event id or contact"
            );
        }
        let models = self.models(&tenant).await?;
        let (applied, duplicates) = self
            .store
            .apply(&tenant, decoded, &models, self.now())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ApplySignalsResponse {
            applied,
            duplicates: duplicates + malformed,
        }))
    }

    async fn watch_lifecycle_events(
        &self,
        request: Request<pb::WatchLifecycleEventsRequest>,
    ) -> Result<Response<Self::WatchLifecycleEventsStream>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let mut cursor = if request.cursor.is_empty() {
            self.store.last_event_id(&tenant).await.map_err(status)?
        } else {
            request
                .cursor
                .parse::<i64>()
                .ok()
                .filter(|c| *c >= 0)
                .ok_or_else(|| {
                    Status::from(Error::invalid_field(
                        "cursor",
                        "is not a cursor this stream gave out",
                    ))
                })?
        };
        let kinds: Vec<i32> = request.kinds.into_iter().filter(|k| *k != 0).collect();
        let (sender, receiver) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        let store = self.store.clone();
        tokio::spawn(async move {
            loop {
                let events = match store.events_after(&tenant, cursor, &kinds, 200).await {
                    Ok(events) => events,
                    Err(error) => {
                        let _ = sender.send(Err(status(error))).await;
                        return;
                    }
                };
                if events.is_empty() {
                    tokio::select! {
                        () = store.appended() => {}
                        () = tokio::time::sleep(WATCH_POLL) => {}
                        () = sender.closed() => return,
                    }
                    continue;
                }
                for e in events {
                    cursor = e.id;
                    let message = pb::WatchLifecycleEventsResponse {
                        cursor: e.id.to_string(),
                        kind: e.kind,
                        contact_id: e.contact_id,
                        occurred_at: Some(timestamp(e.occurred_at)),
                        from_stage: e.from_stage,
                        to_stage: e.to_stage,
                        segment_id: e.segment_id,
                        action: e.action,
                        cause: e.cause,
                    };
                    // A slow reader holds the writer here: backpressure, no unbounded buffer.
                    if sender.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}
