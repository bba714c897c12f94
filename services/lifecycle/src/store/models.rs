//! Stage models: the default, create, versioned update, get, list.

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::Store;
use super::entities::stage_model;
use crate::domain::model::{DEFAULT_MODEL_ID, StageModel, StageSpec, default_spec};
use crate::domain::{LifecycleError, Micros};

fn from_row(row: stage_model::Model) -> Result<StageModel, LifecycleError> {
    Ok(StageModel {
        spec: serde_json::from_value(row.spec)
            .map_err(|e| sea_orm::DbErr::Json(format!("stored stage model: {e}")))?,
        id: row.id,
        is_default: row.is_default,
        version: row.version,
    })
}

fn spec_json(spec: &StageSpec) -> serde_json::Value {
    serde_json::to_value(spec).expect("a spec always serialises")
}

impl Store {
    /// Creates the tenant's default model when the tenant has none.
    pub async fn ensure_default_model(
        &self,
        tenant: &str,
        now: Micros,
    ) -> Result<(), LifecycleError> {
        let spec = default_spec();
        stage_model::Entity::insert(stage_model::ActiveModel {
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
            OnConflict::columns([stage_model::Column::TenantId, stage_model::Column::Id])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// Every model of the tenant, the default first.
    pub async fn models(&self, tenant: &str) -> Result<Vec<StageModel>, LifecycleError> {
        let mut models: Vec<StageModel> = stage_model::Entity::find()
            .filter(stage_model::Column::TenantId.eq(tenant))
            .order_by_asc(stage_model::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(from_row)
            .collect::<Result<_, _>>()?;
        models.sort_by_key(|m| !m.is_default);
        Ok(models)
    }

    /// The model `id`, or the tenant's default when empty.
    pub async fn model(&self, tenant: &str, id: &str) -> Result<StageModel, LifecycleError> {
        let mut query =
            stage_model::Entity::find().filter(stage_model::Column::TenantId.eq(tenant));
        query = if id.is_empty() {
            query.filter(stage_model::Column::IsDefault.eq(true))
        } else {
            query.filter(stage_model::Column::Id.eq(id))
        };
        from_row(
            query
                .one(&self.db)
                .await?
                .ok_or_else(|| LifecycleError::NotFound {
                    kind: "clm.lifecycle.v1.StageModel",
                    id: id.to_owned(),
                })?,
        )
    }

    /// Stores a new model (the tenant's default when `is_default`).
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "create_model", db.system.name))]
    pub async fn create_model(
        &self,
        tenant: &str,
        spec: StageSpec,
        is_default: bool,
        now: Micros,
    ) -> Result<StageModel, LifecycleError> {
        let txn = clm_store::begin_write(&self.db).await?;
        let taken = stage_model::Entity::find()
            .filter(stage_model::Column::TenantId.eq(tenant))
            .filter(stage_model::Column::DisplayName.eq(&spec.display_name))
            .one(&txn)
            .await?;
        if taken.is_some() {
            return Err(LifecycleError::NameTaken {
                kind: "clm.lifecycle.v1.StageModel",
                name: spec.display_name,
            });
        }
        let model = StageModel {
            id: uuid::Uuid::now_v7().to_string(),
            spec,
            is_default,
            version: 1,
        };
        if is_default {
            stage_model::Entity::update_many()
                .col_expr(stage_model::Column::IsDefault, Expr::value(false))
                .filter(stage_model::Column::TenantId.eq(tenant))
                .exec(&txn)
                .await?;
        }
        stage_model::ActiveModel {
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
        txn.commit().await?;
        Ok(model)
    }

    /// Replaces a model's definition as a new version when `etag` matches.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "update_model", db.system.name))]
    pub async fn update_model(
        &self,
        tenant: &str,
        id: &str,
        etag: Option<&str>,
        apply: impl FnOnce(&StageModel) -> Result<(StageSpec, bool), LifecycleError>,
        now: Micros,
    ) -> Result<StageModel, LifecycleError> {
        let txn = clm_store::begin_write(&self.db).await?;
        let row = stage_model::Entity::find_by_id((tenant.to_owned(), id.to_owned()))
            .one(&txn)
            .await?
            .ok_or_else(|| LifecycleError::NotFound {
                kind: "clm.lifecycle.v1.StageModel",
                id: id.to_owned(),
            })?;
        let current = from_row(row)?;
        if etag.is_some_and(|e| e != current.etag()) {
            return Err(LifecycleError::StaleEtag);
        }
        let (spec, is_default) = apply(&current)?;
        if is_default && !current.is_default {
            stage_model::Entity::update_many()
                .col_expr(stage_model::Column::IsDefault, Expr::value(false))
                .filter(stage_model::Column::TenantId.eq(tenant))
                .exec(&txn)
                .await?;
        }
        let next = StageModel {
            spec,
            is_default: is_default || current.is_default,
            version: current.version + 1,
            ..current.clone()
        };
        let updated = stage_model::Entity::update_many()
            .col_expr(stage_model::Column::Version, Expr::value(next.version))
            .col_expr(
                stage_model::Column::DisplayName,
                Expr::value(next.spec.display_name.clone()),
            )
            .col_expr(stage_model::Column::IsDefault, Expr::value(next.is_default))
            .col_expr(
                stage_model::Column::Spec,
                Expr::value(spec_json(&next.spec)),
            )
            .col_expr(stage_model::Column::UpdatedAt, Expr::value(now))
            .filter(stage_model::Column::TenantId.eq(tenant))
            .filter(stage_model::Column::Id.eq(id))
            .filter(stage_model::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(LifecycleError::StaleEtag);
        }
        txn.commit().await?;
        Ok(next)
    }
}
