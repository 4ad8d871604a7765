//! Paging: a bounded page request in, a page of items with the total out.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    #[error("page must be between 1 and {max}")]
    InvalidPage { max: u32 },
    #[error("per_page must be between 1 and {max}")]
    InvalidPerPage { max: u32 },
}

/// Which page to return; always within bounds once constructed (also when deserialized).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "PageRequestRepr")]
pub struct PageRequest {
    /// From 1.
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    page: u32,
    /// 1 to 100.
    #[schema(minimum = 1, maximum = 100)]
    per_page: u32,
}

#[derive(Deserialize)]
struct PageRequestRepr {
    page: u32,
    per_page: u32,
}

impl TryFrom<PageRequestRepr> for PageRequest {
    type Error = PagingError;

    fn try_from(repr: PageRequestRepr) -> Result<Self, Self::Error> {
        PageRequest::new(Some(repr.page), Some(repr.per_page))
    }
}

impl PageRequest {
    pub const DEFAULT_PER_PAGE: u32 = 20;
    pub const MAX_PER_PAGE: u32 = 100;
    /// The largest page number: what a signed 32-bit integer holds, as API documents say
    /// for an `int32` (a page past it would have no rows anyway).
    pub const MAX_PAGE: u32 = i32::MAX as u32;

    /// `None` means "the default"; anything outside `1..` or `1..=MAX_PER_PAGE` is refused
    /// rather than silently clamped, so a client learns about its mistake.
    pub fn new(page: Option<u32>, per_page: Option<u32>) -> Result<Self, PagingError> {
        let page = page.unwrap_or(1);
        let per_page = per_page.unwrap_or(Self::DEFAULT_PER_PAGE);
        if page == 0 || page > Self::MAX_PAGE {
            return Err(PagingError::InvalidPage {
                max: Self::MAX_PAGE,
            });
        }
        if per_page == 0 || per_page > Self::MAX_PER_PAGE {
            return Err(PagingError::InvalidPerPage {
                max: Self::MAX_PER_PAGE,
            });
        }
        Ok(Self { page, per_page })
    }

    pub const fn page(&self) -> u32 {
        self.page
    }

    pub const fn per_page(&self) -> u32 {
        self.per_page
    }

    /// Rows to skip; `u64` because `page * per_page` can exceed `u32`.
    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.per_page)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 1,
            per_page: Self::DEFAULT_PER_PAGE,
        }
    }
}

/// One page of results and the number of matching items across all pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, total: u64, request: PageRequest) -> Self {
        Self {
            items,
            total,
            page: request.page(),
            per_page: request.per_page(),
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            page: self.page,
            per_page: self.per_page,
        }
    }

    /// Like [`map`](Self::map), for conversions that can fail (a stored row that does not
    /// decode): the first failure is the answer.
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        Ok(Page {
            items: self.items.into_iter().map(f).collect::<Result<_, _>>()?,
            total: self.total,
            page: self.page,
            per_page: self.per_page,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(PageRequest::new(None, None), Ok(PageRequest::default()));
        assert_eq!(
            PageRequest::new(Some(0), None),
            Err(PagingError::InvalidPage {
                max: PageRequest::MAX_PAGE
            })
        );
        assert_eq!(
            PageRequest::new(Some(PageRequest::MAX_PAGE + 1), None),
            Err(PagingError::InvalidPage {
                max: PageRequest::MAX_PAGE
            })
        );
        assert_eq!(
            PageRequest::new(None, Some(0)),
            Err(PagingError::InvalidPerPage { max: 100 })
        );
        assert_eq!(
            PageRequest::new(None, Some(101)),
            Err(PagingError::InvalidPerPage { max: 100 })
        );
        let last = PageRequest::new(Some(PageRequest::MAX_PAGE), Some(100)).expect("in bounds");
        assert_eq!(last.offset(), u64::from(PageRequest::MAX_PAGE - 1) * 100);
    }
}
