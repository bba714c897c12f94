//! Scoring models: the default, create, versioned update, get and list.

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::Store;
use super::entities::{model_version, scoring_model};
use crate::domain::model::{DEFAULT_MODEL_ID, ModelSpec, ScoringModel, default_spec};
use crate::domain::{Micros, ScoringError};

fn from_row(row: scoring_model::Model) -> Result<ScoringModel, ScoringError> {
    let spec: ModelSpec = serde_json::from_value(row.spec)
        .map_err(|e| sea_orm::DbErr::Json(format!("stored model spec: {e}")))?;
    Ok(ScoringModel {
        id: row.id,
        spec,
        is_default: row.is_default,
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn spec_json(spec: &ModelSpec) -> serde_json::Value {
    serde_json::to_value(spec).expect("a spec always serialises")
}

async fn insert_version<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    model: &ScoringModel,
) -> Result<(), ScoringError> {
    model_version::ActiveModel {
        tenant_id: Set(tenant.to_owned()),
        model_id: Set(model.id.clone()),
        version: Set(model.version),
        spec: Set(spec_json(&model.spec)),
        created_at: Set(model.updated_at),
    }
    .insert(db)
    .await?;
    Ok(())
}

async fn clear_default<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    except: &str,
) -> Result<(), ScoringError> {
    scoring_model::Entity::update_many()
        .col_expr(scoring_model::Column::IsDefault, Expr::value(false))
        .filter(scoring_model::Column::TenantId.eq(tenant))
        .filter(scoring_model::Column::Id.ne(except))
        .exec(db)
        .await?;
    Ok(())
}

async fn name_taken<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    name: &str,
    except: &str,
) -> Result<(), ScoringError> {
    let existing = scoring_model::Entity::find()
        .filter(scoring_model::Column::TenantId.eq(tenant))
        .filter(scoring_model::Column::DisplayName.eq(name))
        .filter(scoring_model::Column::Id.ne(except))
        .one(db)
        .await?;
    match existing {
        Some(row) => Err(ScoringError::NameTaken {
            name: name.to_owned(),
            existing_id: row.id,
        }),
        None => Ok(()),
    }
}

impl Store {
    /// Creates the tenant's default model if the tenant has no model yet.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "ensure_default_model", db.system.name))]
    pub async fn ensure_default_model(
        &self,
        tenant: &str,
        now: Micros,
    ) -> Result<(), ScoringError> {
        let any = scoring_model::Entity::find()
            .filter(scoring_model::Column::TenantId.eq(tenant))
            .one(&self.db)
            .await?;
        if any.is_some() {
            return Ok(());
        }
        let spec = default_spec();
        let txn = clm_store::begin_write(&self.db).await?;
        let inserted = scoring_model::Entity::insert(scoring_model::ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            id: Set(DEFAULT_MODEL_ID.to_owned()),
            version: Set(1),
            display_name: Set(spec.display_name.clone()),
            is_default: Set(true),
            spec: Set(spec_json(&spec)),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([scoring_model::Column::TenantId, scoring_model::Column::Id])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        if inserted == 1 {
            let model = ScoringModel {
                id: DEFAULT_MODEL_ID.to_owned(),
                spec,
                is_default: true,
                version: 1,
                created_at: now,
                updated_at: now,
            };
            insert_version(&txn, tenant, &model).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Every model of the tenant.
    pub async fn models(&self, tenant: &str) -> Result<Vec<ScoringModel>, ScoringError> {
        scoring_model::Entity::find()
            .filter(scoring_model::Column::TenantId.eq(tenant))
            .order_by_asc(scoring_model::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(from_row)
            .collect()
    }

    /// One page of models after `after_id`.
    pub async fn list_models(
        &self,
        tenant: &str,
        after_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<ScoringModel>, ScoringError> {
        let mut query =
            scoring_model::Entity::find().filter(scoring_model::Column::TenantId.eq(tenant));
        if let Some(after) = after_id {
            query = query.filter(scoring_model::Column::Id.gt(after));
        }
        query
            .order_by_asc(scoring_model::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(from_row)
            .collect()
    }

    /// The model `id` (the tenant's default when empty), at `version` (0: current).
    pub async fn model(
        &self,
        tenant: &str,
        id: &str,
        version: i64,
    ) -> Result<ScoringModel, ScoringError> {
        let mut query =
            scoring_model::Entity::find().filter(scoring_model::Column::TenantId.eq(tenant));
        query = if id.is_empty() {
            query.filter(scoring_model::Column::IsDefault.eq(true))
        } else {
            query.filter(scoring_model::Column::Id.eq(id))
        };
        let row = query.one(&self.db).await?.ok_or_else(|| {
            ScoringError::ModelNotFound(if id.is_empty() {
                "(default)".into()
            } else {
                id.into()
            })
        })?;
        let mut model = from_row(row)?;
        if version != 0 && version != model.version {
            let old =
                model_version::Entity::find_by_id((tenant.to_owned(), model.id.clone(), version))
                    .one(&self.db)
                    .await?
                    .ok_or_else(|| {
                        ScoringError::ModelNotFound(format!("{}@{version}", model.id))
                    })?;
            model.spec = serde_json::from_value(old.spec)
                .map_err(|e| sea_orm::DbErr::Json(format!("stored model spec: {e}")))?;
            model.version = version;
            model.updated_at = old.created_at;
        }
        Ok(model)
    }

    /// Stores a new model.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "create_model", db.system.name))]
    pub async fn create_model(
        &self,
        tenant: &str,
        spec: ModelSpec,
        is_default: bool,
        now: Micros,
    ) -> Result<ScoringModel, ScoringError> {
        let txn = clm_store::begin_write(&self.db).await?;
        name_taken(&txn, tenant, &spec.display_name, "").await?;
        let model = ScoringModel {
            id: uuid::Uuid::now_v7().to_string(),
            spec,
            is_default,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        if is_default {
            clear_default(&txn, tenant, &model.id).await?;
        }
        scoring_model::ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            id: Set(model.id.clone()),
            version: Set(1),
            display_name: Set(model.spec.display_name.clone()),
            is_default: Set(is_default),
            spec: Set(spec_json(&model.spec)),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        insert_version(&txn, tenant, &model).await?;
        txn.commit().await?;
        Ok(model)
    }

    /// Replaces a model's definition with `next` as a new version, when `etag` matches.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "update_model", db.system.name))]
    pub async fn update_model(
        &self,
        tenant: &str,
        id: &str,
        etag: Option<&str>,
        apply: impl FnOnce(&ScoringModel) -> Result<(ModelSpec, bool), ScoringError>,
        now: Micros,
    ) -> Result<ScoringModel, ScoringError> {
        let txn = clm_store::begin_write(&self.db).await?;
        let row = scoring_model::Entity::find_by_id((tenant.to_owned(), id.to_owned()))
            .one(&txn)
            .await?
            .ok_or_else(|| ScoringError::ModelNotFound(id.to_owned()))?;
        let current = from_row(row)?;
        if etag.is_some_and(|e| e != current.etag()) {
            return Err(ScoringError::StaleEtag);
        }
        let (spec, is_default) = apply(&current)?;
        name_taken(&txn, tenant, &spec.display_name, id).await?;
        if current.is_default && !is_default {
            return Err(ScoringError::invalid(
                "update_mask",
                "the default model stays default until another model is made default",
            ));
        }
        let next = ScoringModel {
            spec,
            is_default,
            version: current.version + 1,
            updated_at: now.max(current.updated_at),
            ..current.clone()
        };
        if is_default {
            clear_default(&txn, tenant, id).await?;
        }
        let updated = scoring_model::Entity::update_many()
            .col_expr(scoring_model::Column::Version, Expr::value(next.version))
            .col_expr(
                scoring_model::Column::DisplayName,
                Expr::value(next.spec.display_name.clone()),
            )
            .col_expr(scoring_model::Column::IsDefault, Expr::value(is_default))
            .col_expr(
                scoring_model::Column::Spec,
                Expr::value(spec_json(&next.spec)),
            )
            .col_expr(
                scoring_model::Column::UpdatedAt,
                Expr::value(next.updated_at),
            )
            .filter(scoring_model::Column::TenantId.eq(tenant))
            .filter(scoring_model::Column::Id.eq(id))
            .filter(scoring_model::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(ScoringError::StaleEtag);
        }
        insert_version(&txn, tenant, &next).await?;
        txn.commit().await?;
        Ok(next)
    }
}
