//! One way to answer a paged listing: the total and one page of rows, in the caller's order.

use kernel::{Page, PageRequest};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QuerySelect, Select};

/// Counts what `select` matches and fetches the requested page of it. `select` carries its
/// filters and a total order (end it with a unique column, so that pages never overlap);
/// the caller maps the rows to its own types with `Page::map` or `Page::try_map`.
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
    let total = select.clone().count(db).await?;
    let rows = select
        .offset(page.offset())
        .limit(u64::from(page.per_page()))
        .all(db)
        .await?;
    Ok(Page::new(rows, total, page))
}
