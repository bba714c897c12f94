//! The tonic adapter: requests to domain calls, domain errors to gRPC statuses.

use tonic::{Request, Response, Status, Streaming};

use clm_proto::contacts::v1 as pb;
use clm_proto::contacts::v1::contacts_service_server::ContactsService;
use clm_runtime::{Error, FieldViolation, require_id, tenant};

use crate::convert::{
    contact_to_proto, fields_from_proto, interaction_from_proto, interaction_to_proto, rejected,
};
use crate::domain::contact::{ContactUpdate, normalise};
use crate::domain::page_token::{self, Cursor, CursorKey, PageTokens};
use crate::domain::{ContactsError, filter, interaction, time};
use crate::store::{Order, Store, new_contact};

/// Most elements in one message of a client stream.
pub const MAX_BATCH: usize = 1000;
/// Most elements in one call of a client stream; a longer import is split into calls.
pub const MAX_STREAM_ITEMS: u64 = 1_000_000;
/// Most rejected items listed in a stream's reply (all are counted).
const MAX_LISTED_REJECTIONS: usize = 10_000;

/// The ContactsService implementation.
#[derive(Debug, Clone)]
pub struct ContactsApi {
    store: Store,
    tokens: PageTokens,
    max_stream_items: u64,
}

impl ContactsApi {
    /// An API over `store`, signing page tokens with `tokens`.
    pub fn new(store: Store, tokens: PageTokens) -> Self {
        Self {
            store,
            tokens,
            max_stream_items: MAX_STREAM_ITEMS,
        }
    }

    /// Takes at most `max` elements per call of a client stream.
    pub fn with_max_stream_items(mut self, max: u64) -> Self {
        self.max_stream_items = max;
        self
    }
}

fn status(error: ContactsError) -> Status {
    Error::from(error).into()
}

/// Collects a stream's rejections, listing the first ones and counting all.
#[derive(Default)]
struct Rejections {
    listed: Vec<clm_proto::common::v1::RejectedItem>,
    count: u64,
}

impl Rejections {
    fn push(&mut self, index: u64, field: String, reason: String) {
        self.count += 1;
        if self.listed.len() < MAX_LISTED_REJECTIONS {
            self.listed.push(rejected(index, field, reason));
        }
    }

    fn push_invalid(&mut self, index: u64, violations: &[FieldViolation]) {
        let field = violations
            .first()
            .map(|v| v.field.clone())
            .unwrap_or_default();
        self.push(index, field, describe(violations));
    }
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Refuses a message of `len` elements when `index` were already sent in a call that
/// takes at most `max`.
fn check_stream_length(field: &str, index: u64, len: usize, max: u64) -> Result<(), Status> {
    if len > MAX_BATCH {
        return Err(batch_too_large(field, len));
    }
    if index + len as u64 > max {
        // The elements before this message are stored (each message commits on its own);
        // the caller resumes in a new call, resending with the same ids is harmless.
        return Err(Error::new(
            clm_runtime::ErrorCode::ResourceExhausted,
            format!(
                "one call takes at most {max} {field}; the first {index} were stored, send the rest in a new call"
            ),
        )
        .into());
    }
    Ok(())
}

fn batch_too_large(field: &str, len: usize) -> Status {
    Error::invalid_field(
        field,
        format!("has {len} elements; send at most {MAX_BATCH} per message"),
    )
    .into()
}

#[tonic::async_trait]
impl ContactsService for ContactsApi {
    async fn create_contact(
        &self,
        request: Request<pb::CreateContactRequest>,
    ) -> Result<Response<pb::CreateContactResponse>, Status> {
        let tenant = tenant(&request)?;
        let contact = request
            .into_inner()
            .contact
            .ok_or_else(|| Status::from(Error::invalid_field("contact", "is required")))?;
        let fields = normalise(fields_from_proto(contact), "contact").map_err(status)?;
        let contact = new_contact(fields, time::now());
        self.store
            .create_contact(&tenant, &contact)
            .await
            .map_err(status)?;
        tracing::info!(contact_id = %contact.id, "contact created");
        Ok(Response::new(pb::CreateContactResponse {
            contact: Some(contact_to_proto(contact)),
        }))
    }

    async fn get_contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Result<Response<pb::GetContactResponse>, Status> {
        let tenant = tenant(&request)?;
        let id = request.into_inner().id;
        require_id(&id, "id")?;
        let contact = self.store.get_contact(&tenant, &id).await.map_err(status)?;
        Ok(Response::new(pb::GetContactResponse {
            contact: Some(contact_to_proto(contact)),
        }))
    }

    async fn update_contact(
        &self,
        request: Request<pb::UpdateContactRequest>,
    ) -> Result<Response<pb::UpdateContactResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let contact = request
            .contact
            .ok_or_else(|| Status::from(Error::invalid_field("contact", "is required")))?;
        require_id(&contact.id, "contact.id")?;
        let id = contact.id.clone();
        let etag = (!contact.etag.is_empty()).then(|| contact.etag.clone());
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let update = ContactUpdate::new(paths, fields_from_proto(contact)).map_err(status)?;
        let contact = self
            .store
            .update_contact(&tenant, &id, etag.as_deref(), &update, time::now())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateContactResponse {
            contact: Some(contact_to_proto(contact)),
        }))
    }

    async fn delete_contact(
        &self,
        request: Request<pb::DeleteContactRequest>,
    ) -> Result<Response<pb::DeleteContactResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        require_id(&request.id, "id")?;
        let etag = (!request.etag.is_empty()).then_some(request.etag.as_str());
        let erased = self
            .store
            .delete_contact(&tenant, &request.id, etag, time::now())
            .await
            .map_err(status)?;
        tracing::info!(contact_id = %request.id, interactions = erased, "contact erased");
        Ok(Response::new(pb::DeleteContactResponse {
            id: request.id,
            interactions_erased: erased,
        }))
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let limit = page_token::page_size(request.page_size)?;
        let filter = filter::parse(&request.filter)
            .map_err(|e| Status::from(Error::invalid_field("filter", e.to_string())))?;
        let order = Order::parse(&request.order_by).ok_or_else(|| {
            Status::from(Error::invalid_field(
                "order_by",
                "must be one of created_at, updated_at, email, last_name, company, country, optionally followed by desc",
            ))
        })?;
        let scope = PageTokens::scope(
            &tenant,
            &["contacts", &request.filter, &format!("{order:?}")],
        );
        let after = self.tokens.resume(&scope, &request.page_token)?;
        let mut contacts = self
            .store
            .list_contacts(&tenant, filter.as_ref(), order, after.as_ref(), limit + 1)
            .await
            .map_err(status)?;
        let next_page_token = self.tokens.next_page(&mut contacts, limit, &scope, |last| {
            order.cursor_after(last)
        });
        Ok(Response::new(pb::ListContactsResponse {
            contacts: contacts.into_iter().map(contact_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn merge_contacts(
        &self,
        request: Request<pb::MergeContactsRequest>,
    ) -> Result<Response<pb::MergeContactsResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        require_id(&request.survivor_id, "survivor_id")?;
        require_id(&request.duplicate_id, "duplicate_id")?;
        let (contact, moved) = self
            .store
            .merge_contacts(
                &tenant,
                &request.survivor_id,
                &request.duplicate_id,
                time::now(),
            )
            .await
            .map_err(status)?;
        tracing::info!(survivor_id = %request.survivor_id, duplicate_id = %request.duplicate_id, moved, "contacts merged");
        Ok(Response::new(pb::MergeContactsResponse {
            contact: Some(contact_to_proto(contact)),
            interactions_moved: moved,
        }))
    }

    async fn import_contacts(
        &self,
        request: Request<Streaming<pb::ImportContactsRequest>>,
    ) -> Result<Response<pb::ImportContactsResponse>, Status> {
        let tenant = tenant(&request)?;
        let mut stream = request.into_inner();
        let mut reply = pb::ImportContactsResponse::default();
        let mut rejections = Rejections::default();
        let mut update_existing = None;
        let mut index = 0u64;
        // One message at a time: an import of any size holds one batch in memory.
        while let Some(message) = stream.message().await? {
            check_stream_length(
                "contacts",
                index,
                message.contacts.len(),
                self.max_stream_items,
            )?;
            let update_existing = *update_existing.get_or_insert(message.update_existing);
            let mut rows = Vec::with_capacity(message.contacts.len());
            for contact in message.contacts {
                match normalise(fields_from_proto(contact), &format!("contacts[{index}]")) {
                    Ok(fields) => rows.push((index, fields)),
                    Err(ContactsError::Invalid(v)) => rejections.push_invalid(index, &v),
                    Err(other) => return Err(status(other)),
                }
                index += 1;
            }
            let outcome = self
                .store
                .import_batch(&tenant, rows, update_existing, time::now())
                .await
                .map_err(status)?;
            reply.created += outcome.created;
            reply.updated += outcome.updated;
            for (i, reason) in outcome.rejected {
                rejections.push(i, format!("contacts[{i}].email"), reason);
            }
        }
        reply.rejected = rejections.count;
        reply.rejected_rows = rejections.listed;
        tracing::info!(
            created = reply.created,
            updated = reply.updated,
            rejected = reply.rejected,
            "import finished"
        );
        Ok(Response::new(reply))
    }

    async fn record_interaction(
        &self,
        request: Request<pb::RecordInteractionRequest>,
    ) -> Result<Response<pb::RecordInteractionResponse>, Status> {
        let tenant = tenant(&request)?;
        let proto = request
            .into_inner()
            .interaction
            .ok_or_else(|| Status::from(Error::invalid_field("interaction", "is required")))?;
        let now = time::now();
        let (item, given) = interaction_from_proto(proto, now);
        let violations = interaction::validate(&item, given, "interaction", now);
        if !violations.is_empty() {
            return Err(Error::invalid(violations).into());
        }
        let event_id = item.event_id.clone();
        let contact_id = item.contact_id.clone();
        let outcome = self
            .store
            .record_interactions(&tenant, vec![(0, item)])
            .await
            .map_err(status)?;
        if !outcome.rejected.is_empty() {
            // The only reason a valid interaction is refused: its contact is gone.
            return Err(status(
                self.store
                    .get_contact(&tenant, &contact_id)
                    .await
                    .err()
                    .unwrap_or(ContactsError::ContactNotFound(contact_id)),
            ));
        }
        let duplicate = outcome.accepted.is_empty();
        let stored = self
            .store
            .get_interaction(&tenant, &event_id)
            .await
            .map_err(status)?
            .ok_or_else(|| Status::internal("interaction vanished after it was stored"))?;
        Ok(Response::new(pb::RecordInteractionResponse {
            interaction: Some(interaction_to_proto(stored)),
            duplicate,
        }))
    }

    async fn record_interactions(
        &self,
        request: Request<Streaming<pb::RecordInteractionsRequest>>,
    ) -> Result<Response<pb::RecordInteractionsResponse>, Status> {
        let tenant = tenant(&request)?;
        let mut stream = request.into_inner();
        let mut reply = pb::RecordInteractionsResponse::default();
        let mut rejections = Rejections::default();
        let mut index = 0u64;
        while let Some(message) = stream.message().await? {
            check_stream_length(
                "interactions",
                index,
                message.interactions.len(),
                self.max_stream_items,
            )?;
            let now = time::now();
            let mut batch = Vec::with_capacity(message.interactions.len());
            for proto in message.interactions {
                let (item, given) = interaction_from_proto(proto, now);
                let violations =
                    interaction::validate(&item, given, &format!("interactions[{index}]"), now);
                if violations.is_empty() {
                    batch.push((index, item));
                } else {
                    rejections.push_invalid(index, &violations);
                }
                index += 1;
            }
            let outcome = self
                .store
                .record_interactions(&tenant, batch)
                .await
                .map_err(status)?;
            reply.accepted += outcome.accepted.len() as u64;
            reply.duplicates += outcome.duplicates;
            for (i, reason) in outcome.rejected {
                rejections.push(i, format!("interactions[{i}].contact_id"), reason);
            }
        }
        reply.rejected_count = rejections.count;
        reply.rejected = rejections.listed;
        Ok(Response::new(reply))
    }

    async fn list_interactions(
        &self,
        request: Request<pb::ListInteractionsRequest>,
    ) -> Result<Response<pb::ListInteractionsResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        require_id(&request.contact_id, "contact_id")?;
        let limit = page_token::page_size(request.page_size)?;
        if request.types.len() > 64 {
            return Err(Error::invalid_field("types", "lists more than 64 types").into());
        }
        // NOT_FOUND for an unknown, erased or foreign contact rather than an empty page.
        self.store
            .get_contact(&tenant, &request.contact_id)
            .await
            .map_err(status)?;
        let mut types = request.types.clone();
        types.sort();
        let scope = PageTokens::scope(
            &tenant,
            &["interactions", &request.contact_id, &types.join(",")],
        );
        let after = self.tokens.resume(&scope, &request.page_token)?;
        let mut items = self
            .store
            .list_interactions(
                &tenant,
                &request.contact_id,
                &types,
                after.as_ref(),
                limit + 1,
            )
            .await
            .map_err(status)?;
        let next_page_token = self
            .tokens
            .next_page(&mut items, limit, &scope, |last| Cursor {
                key: CursorKey::Int(last.occurred_at),
                id: last.event_id.clone(),
            });
        Ok(Response::new(pb::ListInteractionsResponse {
            interactions: items.into_iter().map(interaction_to_proto).collect(),
            next_page_token,
        }))
    }
}
