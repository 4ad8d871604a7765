//! `NotificationsService`, the in-process implementation of `NotificationsApi`.

use async_trait::async_trait;
use kernel::{Page, PageRequest, UserId};
use notifications_api::{Notification, NotificationsApi, NotificationsError};
use sea_orm::DatabaseConnection;

use crate::store;

#[derive(Debug)]
pub struct NotificationsService {
    db: DatabaseConnection,
}

impl NotificationsService {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl NotificationsApi for NotificationsService {
    #[tracing::instrument(skip(self))]
    async fn list_notifications(
        &self,
        recipient: UserId,
        page: PageRequest,
    ) -> Result<Page<Notification>, NotificationsError> {
        store::list_notifications(&self.db, recipient, page)
            .await
            .map_err(db_kit::internal)
    }
}
