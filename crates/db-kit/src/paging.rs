//! One way to answer a paged listing: the total and one page of rows, in the caller's order.

use kernel::{Page, PageRequest};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QuerySelect, Select};

/// Fetches the requested page of what `select` matches, and the total. `select` carries its
/// filters and a total order (end it with a unique column, so that pages never overlap);
/// the caller maps the rows to its own types with `Page::map` or `Page::try_map`.
///
/// The page is read first. When it is not full it ends the list, so the total is what it
/// shows, from the same statement as its items: a listing never says "total 0" beside a row
/// that was inserted between two statements, and a short list costs one query. A full page
/// (or one past the end) needs a count, which is never below what the page itself shows.
pub async fn fetch_page<E, C>(
    db: &C,
    select: Select<E>,
    page: PageRequest,
) -> Result<Page<E::Model>, DbErr>
where
    E: EntityTrait,
    E::Model: Sync,
    C: ConnectionTrait,
{
    let rows = select
        .clone()
        .offset(page.offset())
        .limit(u64::from(page.per_page()))
        .all(db)
        .await?;
    let total = match total_shown(page, rows.len()) {
        Some(total) => total,
        None => {
            // At least what the page shows (nothing, past the end).
            let shown = if rows.is_empty() {
                0
            } else {
                page.offset() + rows.len() as u64
            };
            select.count(db).await?.max(shown)
        }
    };
    Ok(Page::new(rows, total, page))
}

/// The total a page of `len` rows proves by itself: when it is not full and not past the end,
/// the list ends on it.
fn total_shown(page: PageRequest, len: usize) -> Option<u64> {
    let len = len as u64;
    (len < u64::from(page.per_page()) && (len > 0 || page.offset() == 0))
        .then(|| page.offset() + len)
}

#[cfg(test)]
mod tests {
    use kernel::PageRequest;

    use super::total_shown;

    fn page(number: u32, per_page: u32) -> PageRequest {
        PageRequest::new(Some(number), Some(per_page)).expect("a valid page")
    }

    #[test]
    fn a_page_that_is_not_full_ends_the_list() {
        assert_eq!(total_shown(page(1, 20), 0), Some(0), "an empty list");
        assert_eq!(total_shown(page(1, 20), 1), Some(1));
        assert_eq!(total_shown(page(3, 20), 5), Some(45));
    }

    #[test]
    fn a_full_page_or_one_past_the_end_needs_a_count() {
        assert_eq!(total_shown(page(1, 20), 20), None);
        assert_eq!(total_shown(page(2, 20), 20), None);
        assert_eq!(total_shown(page(4, 20), 0), None, "past the end");
    }
}
