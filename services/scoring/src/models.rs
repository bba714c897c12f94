//! Compiled models kept in memory for a few seconds: the score read path needs the model's
//! thresholds, and a query per read would dominate a cache hit.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::domain::model::{CompiledModel, ScoringModel};
use crate::domain::{Clock, ScoringError};
use crate::store::Store;

/// A model and its compiled form.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) model: ScoringModel,
    pub(crate) compiled: CompiledModel,
}

/// Models by (tenant, id); the empty id names the tenant's default model. Changes made
/// through this process are seen at once; another replica's within the TTL.
#[derive(Clone)]
pub(crate) struct Models {
    store: Store,
    clock: Clock,
    one: Cache<(String, String), Arc<Loaded>>,
    all: Cache<String, Arc<Vec<CompiledModel>>>,
}

const TTL: Duration = Duration::from_secs(5);

impl Models {
    pub(crate) fn new(store: Store, clock: Clock) -> Self {
        Self {
            store,
            clock,
            one: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(TTL)
                .build(),
            all: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(TTL)
                .build(),
        }
    }

    /// The model `id` of `tenant` (its default when empty), creating the default model
    /// the first time a tenant is seen.
    pub(crate) async fn get(&self, tenant: &str, id: &str) -> Result<Arc<Loaded>, ScoringError> {
        let key = (tenant.to_owned(), id.to_owned());
        if let Some(found) = self.one.get(&key).await {
            return Ok(found);
        }
        self.store
            .ensure_default_model(tenant, (self.clock)())
            .await?;
        let model = self.store.model(tenant, id, 0).await?;
        let compiled = CompiledModel {
            is_default: model.is_default,
            ..CompiledModel::new(&model.id, model.version, &model.spec)
        };
        let loaded = Arc::new(Loaded { model, compiled });
        self.one.insert(key, loaded.clone()).await;
        Ok(loaded)
    }

    /// Every model of `tenant`, compiled.
    pub(crate) async fn all(&self, tenant: &str) -> Result<Arc<Vec<CompiledModel>>, ScoringError> {
        if let Some(found) = self.all.get(tenant).await {
            return Ok(found);
        }
        self.store
            .ensure_default_model(tenant, (self.clock)())
            .await?;
        let compiled: Vec<CompiledModel> = self
            .store
            .models(tenant)
            .await?
            .iter()
            .map(|m| CompiledModel {
                is_default: m.is_default,
                ..CompiledModel::new(&m.id, m.version, &m.spec)
            })
            .collect();
        let compiled = Arc::new(compiled);
        self.all.insert(tenant.to_owned(), compiled.clone()).await;
        Ok(compiled)
    }

    /// Forgets every cached model, after a model changed.
    pub(crate) fn invalidate(&self) {
        self.one.invalidate_all();
        self.all.invalidate_all();
    }
}
