//! `?page=&per_page=` of every paged listing, checked the same way everywhere.

use kernel::{FieldError, PageRequest};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::HttpError;

#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Page number, from 1 (default 1).
    #[param(minimum = 1, maximum = 2_147_483_647)]
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

impl Paging {
    pub fn request(&self) -> Result<PageRequest, HttpError> {
        page_request(self.page, self.per_page)
    }
}

/// A bounded page request, or a 400 `invalid_query` naming the bad parameter.
pub fn page_request(page: Option<u32>, per_page: Option<u32>) -> Result<PageRequest, HttpError> {
    PageRequest::new(page, per_page).map_err(|error| {
        let field = match error {
            kernel::PagingError::InvalidPage { .. } => "page",
            kernel::PagingError::InvalidPerPage { .. } => "per_page",
        };
        HttpError::invalid_query(vec![FieldError::new(
            field,
            "invalid_paging",
            error.to_string(),
        )])
    })
}
