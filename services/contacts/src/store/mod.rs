//! Persistence of contacts, their timelines and tombstones.

mod convert;
pub mod entities;
pub mod events;
mod filter_sql;
mod interactions;
pub mod migration;

use sea_orm::sea_query::{Condition, Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
};

use crate::domain::contact::{ContactFields, ContactUpdate, merge_fields};
use crate::domain::filter::Filter;
use crate::domain::page_token::{Cursor, CursorKey};
use crate::domain::time::Micros;
use crate::domain::{Contact, ContactsError};
use convert::{contact_from_row, contact_row};
use entities::{contact, interaction, tombstone};

pub use interactions::RecordOutcome;

/// The order ListContacts can return contacts in; ties are broken by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderColumn {
    /// Creation instant (the default).
    CreatedAt,
    /// Last change.
    UpdatedAt,
    /// Email.
    Email,
    /// Family name.
    LastName,
    /// Company.
    Company,
    /// Country.
    Country,
}

/// A column and a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// The sort column.
    pub column: OrderColumn,
    /// Descending when true.
    pub descending: bool,
}

impl Order {
    /// Parses `column` or `column desc` (also `asc`); empty is `created_at`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let column = match words.next().unwrap_or("created_at") {
            "created_at" => OrderColumn::CreatedAt,
            "updated_at" => OrderColumn::UpdatedAt,
            "email" => OrderColumn::Email,
            "last_name" => OrderColumn::LastName,
            "company" => OrderColumn::Company,
            "country" => OrderColumn::Country,
            _ => return None,
        };
        let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return None,
        };
        words
            .next()
            .is_none()
            .then_some(Self { column, descending })
    }

    fn sql_column(self) -> contact::Column {
        match self.column {
            OrderColumn::CreatedAt => contact::Column::CreatedAt,
            OrderColumn::UpdatedAt => contact::Column::UpdatedAt,
            OrderColumn::Email => contact::Column::Email,
            OrderColumn::LastName => contact::Column::LastName,
            OrderColumn::Company => contact::Column::Company,
            OrderColumn::Country => contact::Column::Country,
        }
    }

    /// The cursor that resumes after `c`.
    pub fn cursor_after(self, c: &Contact) -> Cursor {
        let f = &c.fields;
        let key = match self.column {
            OrderColumn::CreatedAt => CursorKey::Int(c.created_at),
            OrderColumn::UpdatedAt => CursorKey::Int(c.updated_at),
            OrderColumn::Email => CursorKey::Text(f.email.clone()),
            OrderColumn::LastName => CursorKey::Text(f.last_name.clone()),
            OrderColumn::Company => CursorKey::Text(f.company.clone()),
            OrderColumn::Country => CursorKey::Text(f.country.clone()),
        };
        Cursor {
            key,
            id: c.id.clone(),
        }
    }
}

/// The outcome of one import batch.
#[derive(Debug, Default)]
pub struct ImportOutcome {
    /// Rows that created contacts.
    pub created: u64,
    /// Rows that updated contacts.
    pub updated: u64,
    /// Rows refused, by index, with the reason.
    pub rejected: Vec<(u64, String)>,
}

/// The contacts database. Every change also writes its contact events to the outbox in
/// the same transaction, and wakes the relay after commit.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    wake: clm_outbox::Wake,
}

fn tenant_is(tenant: &str) -> Condition {
    Condition::all().add(contact::Column::TenantId.eq(tenant))
}

impl Store {
    /// A store over an open, migrated connection; `wake` is told about committed events.
    pub fn new(db: DatabaseConnection, wake: clm_outbox::Wake) -> Self {
        Self { db, wake }
    }

    /// Commits `txn` and wakes the relay.
    async fn commit(&self, txn: clm_store::WriteTxn) -> Result<(), ContactsError> {
        txn.commit().await?;
        self.wake.notify();
        Ok(())
    }

    /// The connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Inserts a new contact; a taken email is `EmailTaken` naming the existing contact.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "create_contact", db.system.name))]
    pub async fn create_contact(
        &self,
        tenant: &str,
        contact: &Contact,
    ) -> Result<(), ContactsError> {
        let txn = clm_store::begin_write(&self.db).await?;
        match contact_row(tenant, contact).insert(&txn).await {
            Ok(_) => {}
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                drop(txn);
                return Err(self
                    .email_taken(&self.db, tenant, &contact.fields.email)
                    .await);
            }
            Err(e) => return Err(e.into()),
        }
        let now = contact.created_at;
        clm_outbox::enqueue(&txn, now, events::upserted(tenant, contact, true, now)).await?;
        self.commit(txn).await
    }

    async fn email_taken<C: ConnectionTrait>(
        &self,
        db: &C,
        tenant: &str,
        email: &str,
    ) -> ContactsError {
        match find_by_email(db, tenant, email).await {
            Ok(Some(existing)) => ContactsError::EmailTaken {
                existing_id: existing.id,
            },
            Ok(None) => ContactsError::EmailTaken {
                existing_id: String::new(),
            },
            Err(e) => e,
        }
    }

    /// The contact `id`, or why there is none.
    pub async fn get_contact(&self, tenant: &str, id: &str) -> Result<Contact, ContactsError> {
        load_contact(&self.db, tenant, id).await
    }

    /// Applies `update` to contact `id` when `etag` (if given) still matches.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "update_contact", db.system.name))]
    pub async fn update_contact(
        &self,
        tenant: &str,
        id: &str,
        etag: Option<&str>,
        update: &ContactUpdate,
        now: Micros,
    ) -> Result<Contact, ContactsError> {
        let txn = clm_store::begin_write(&self.db).await?;
        let current = load_contact(&txn, tenant, id).await?;
        if etag.is_some_and(|e| e != current.etag()) {
            return Err(ContactsError::StaleEtag);
        }
        let fields = update.apply(&current.fields, now)?;
        let next = write_version(&txn, tenant, &current, fields, now).await?;
        clm_outbox::enqueue(&txn, now, events::upserted(tenant, &next, false, now)).await?;
        self.commit(txn).await?;
        Ok(next)
    }

    /// Erases contact `id` and its timeline, leaving a tombstone. Returns how many
    /// interactions went with it.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "delete_contact", db.system.name))]
    pub async fn delete_contact(
        &self,
        tenant: &str,
        id: &str,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<u64, ContactsError> {
        let txn = clm_store::begin_write(&self.db).await?;
        let current = load_contact(&txn, tenant, id).await?;
        if etag.is_some_and(|e| e != current.etag()) {
            return Err(ContactsError::StaleEtag);
        }
        let erased = erase(&txn, tenant, id, None, now).await?;
        clm_outbox::enqueue(&txn, now, events::erased(tenant, id, now)).await?;
        self.commit(txn).await?;
        Ok(erased)
    }

    /// One page of contacts matching `filter` in `order`, after `after`.
    pub async fn list_contacts(
        &self,
        tenant: &str,
        filter: Option<&Filter>,
        order: Order,
        after: Option<&Cursor>,
        limit: u64,
    ) -> Result<Vec<Contact>, ContactsError> {
        let mut condition = tenant_is(tenant);
        if let Some(filter) = filter {
            condition = condition.add(filter_sql::condition(
                filter,
                self.db.get_database_backend(),
            ));
        }
        let column = order.sql_column();
        if let Some(after) = after {
            let key: sea_orm::Value = match &after.key {
                CursorKey::Int(v) => (*v).into(),
                CursorKey::Text(v) => v.clone().into(),
            };
            let (past_key, past_id) = if order.descending {
                (
                    Expr::col(column).lt(key.clone()),
                    contact::Column::Id.lt(after.id.clone()),
                )
            } else {
                (
                    Expr::col(column).gt(key.clone()),
                    contact::Column::Id.gt(after.id.clone()),
                )
            };
            condition = condition.add(past_key.or(Expr::col(column).eq(key).and(past_id)));
        }
        let direction = if order.descending {
            sea_orm::Order::Desc
        } else {
            sea_orm::Order::Asc
        };
        let rows = contact::Entity::find()
            .filter(condition)
            .order_by(column, direction.clone())
            .order_by(contact::Column::Id, direction)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(contact_from_row).collect())
    }

    /// Merges `duplicate_id` into `survivor_id`: the timeline moves, empty fields are
    /// filled, and the duplicate is erased with a tombstone pointing at the survivor.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "merge_contacts", db.system.name))]
    pub async fn merge_contacts(
        &self,
        tenant: &str,
        survivor_id: &str,
        duplicate_id: &str,
        now: Micros,
    ) -> Result<(Contact, u64), ContactsError> {
        if survivor_id == duplicate_id {
            return Err(ContactsError::SelfMerge);
        }
        let txn = clm_store::begin_write(&self.db).await?;
        let survivor = load_contact(&txn, tenant, survivor_id).await?;
        let duplicate = load_contact(&txn, tenant, duplicate_id).await?;
        let moved = interaction::Entity::update_many()
            .col_expr(interaction::Column::ContactId, Expr::value(survivor_id))
            .filter(interaction::Column::TenantId.eq(tenant))
            .filter(interaction::Column::ContactId.eq(duplicate_id))
            .exec(&txn)
            .await?
            .rows_affected;
        erase(&txn, tenant, duplicate_id, Some(survivor_id), now).await?;
        let fields = merge_fields(&survivor.fields, &duplicate.fields);
        let merged = write_version(&txn, tenant, &survivor, fields, now).await?;
        let mut messages = events::merged(tenant, survivor_id, duplicate_id, now);
        messages.extend(events::upserted(tenant, &merged, false, now));
        clm_outbox::enqueue(&txn, now, messages).await?;
        self.commit(txn).await?;
        Ok((merged, moved))
    }

    /// Imports one batch of normalised rows in one transaction. Rows whose email exists
    /// update that contact when `update_existing`, and are rejected otherwise.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "import_batch", db.system.name))]
    pub async fn import_batch(
        &self,
        tenant: &str,
        rows: Vec<(u64, ContactFields)>,
        update_existing: bool,
        now: Micros,
    ) -> Result<ImportOutcome, ContactsError> {
        let mut outcome = ImportOutcome::default();
        let mut messages = Vec::new();
        let txn = clm_store::begin_write(&self.db).await?;
        let emails: Vec<String> = rows.iter().map(|(_, f)| f.email.clone()).collect();
        let mut existing: std::collections::HashMap<String, Contact> = contact::Entity::find()
            .filter(tenant_is(tenant).add(contact::Column::Email.is_in(emails)))
            .all(&txn)
            .await?
            .into_iter()
            .map(|row| (row.email.clone(), contact_from_row(row)))
            .collect();
        // New contacts are written together, in multi-row inserts, before any update (which
        // may be of a contact this batch created) and at the end.
        let mut created = Vec::new();
        for (index, fields) in rows {
            match existing.get(&fields.email) {
                Some(_) if !update_existing => {
                    outcome
                        .rejected
                        .push((index, "a contact with this email exists already".into()));
                }
                Some(current) => {
                    insert_created(&txn, &mut created).await?;
                    let merged = overlay(&current.fields, &fields);
                    let next = write_version(&txn, tenant, current, merged, now).await?;
                    messages.extend(events::upserted(tenant, &next, false, now));
                    existing.insert(next.fields.email.clone(), next);
                    outcome.updated += 1;
                }
                None => {
                    let contact = new_contact(fields, now);
                    created.push(contact_row(tenant, &contact));
                    messages.extend(events::upserted(tenant, &contact, true, now));
                    existing.insert(contact.fields.email.clone(), contact);
                    outcome.created += 1;
                }
            }
        }
        insert_created(&txn, &mut created).await?;
        clm_outbox::enqueue(&txn, now, messages).await?;
        self.commit(txn).await?;
        Ok(outcome)
    }
}

/// Inserts and empties `rows`: one statement per 1,000 contacts (20 columns each stay under
/// SQLite's bound-parameter limit) instead of one per contact.
async fn insert_created(
    txn: &clm_store::WriteTxn,
    rows: &mut Vec<contact::ActiveModel>,
) -> Result<(), ContactsError> {
    for chunk in std::mem::take(rows).chunks(1000) {
        clm_store::insert_many(txn, chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// A new contact with a fresh UUIDv7 and consent stamped at `now`.
pub fn new_contact(mut fields: ContactFields, now: Micros) -> Contact {
    let given = fields.consent.clone();
    crate::domain::contact::stamp_consent(&mut fields.consent, None, &given, now);
    Contact {
        id: uuid::Uuid::now_v7().to_string(),
        fields,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

/// An imported row over an existing contact: non-empty fields win, attributes merge.
fn overlay(current: &ContactFields, row: &ContactFields) -> ContactFields {
    let mut next = merge_fields(row, current);
    next.consent = current.consent.clone();
    next
}

async fn find_by_email<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    email: &str,
) -> Result<Option<Contact>, ContactsError> {
    Ok(contact::Entity::find()
        .filter(tenant_is(tenant).add(contact::Column::Email.eq(email)))
        .one(db)
        .await?
        .map(contact_from_row))
}

async fn load_contact<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    id: &str,
) -> Result<Contact, ContactsError> {
    if let Some(row) = contact::Entity::find_by_id((tenant.to_owned(), id.to_owned()))
        .one(db)
        .await?
    {
        return Ok(contact_from_row(row));
    }
    match tombstone::Entity::find_by_id((tenant.to_owned(), clm_store::pseudonym(tenant, id)))
        .one(db)
        .await?
    {
        Some(stone) => Err(ContactsError::ContactErased {
            id: id.to_owned(),
            merged_into: stone.merged_into,
        }),
        None => Err(ContactsError::ContactNotFound(id.to_owned())),
    }
}

/// Writes `fields` as the next version of `current`, guarded by its version so a
/// concurrent writer cannot be overwritten.
async fn write_version(
    txn: &DatabaseTransaction,
    tenant: &str,
    current: &Contact,
    fields: ContactFields,
    now: Micros,
) -> Result<Contact, ContactsError> {
    if fields.email != current.fields.email
        && let Some(other) = find_by_email(txn, tenant, &fields.email).await?
    {
        return Err(ContactsError::EmailTaken {
            existing_id: other.id,
        });
    }
    let next = Contact {
        fields,
        updated_at: std::cmp::max(now, current.updated_at),
        version: current.version + 1,
        ..current.clone()
    };
    let mut row = contact_row(tenant, &next);
    row.tenant_id = sea_orm::ActiveValue::Unchanged(tenant.to_owned());
    row.id = sea_orm::ActiveValue::Unchanged(next.id.clone());
    let updated = contact::Entity::update_many()
        .set(row)
        .filter(tenant_is(tenant).add(contact::Column::Id.eq(&next.id)))
        .filter(contact::Column::Version.eq(current.version))
        .exec(txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(ContactsError::StaleEtag);
    }
    Ok(next)
}

/// Removes a contact and its timeline and leaves a tombstone.
async fn erase(
    txn: &DatabaseTransaction,
    tenant: &str,
    id: &str,
    merged_into: Option<&str>,
    now: Micros,
) -> Result<u64, ContactsError> {
    let erased = interaction::Entity::delete_many()
        .filter(interaction::Column::TenantId.eq(tenant))
        .filter(interaction::Column::ContactId.eq(id))
        .exec(txn)
        .await?
        .rows_affected;
    contact::Entity::delete_many()
        .filter(tenant_is(tenant).add(contact::Column::Id.eq(id)))
        .exec(txn)
        .await?;
    tombstone::ActiveModel {
        tenant_id: sea_orm::ActiveValue::Set(tenant.to_owned()),
        contact_id: sea_orm::ActiveValue::Set(clm_store::pseudonym(tenant, id)),
        erased_at: sea_orm::ActiveValue::Set(now),
        merged_into: sea_orm::ActiveValue::Set(merged_into.map(str::to_owned)),
    }
    .insert(txn)
    .await?;
    Ok(erased)
}
