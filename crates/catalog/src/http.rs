//! The `/api/catalog` routes: the catalog's own public API. Handlers call the catalog's
//! service; when the catalog is extracted, these routes move with it, so they never travel
//! through the port.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, HttpResponse, web};
use catalog_api::{Category, NewProduct, Product, ProductPatch, ProductQuery, StockLevel};
use kernel::{Page, ProductId};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi, ToSchema};
use web_kit::{AdminUser, ErrorBody, HttpError, StoreRuntime, resource};

use crate::{CatalogService, Freshness};

/// The path prefixes of this context's public routes: each is one `web::scope` below. A
/// process that sends the context's routes to another process (strangler fig) matches them.
pub const PUBLIC_SCOPES: &[&str] = &["/api/catalog"];

/// Mounts catalog's routes and the service they call.
pub fn configure(service: Arc<CatalogService>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::scope(PUBLIC_SCOPES[0])
                .app_data(web::Data::from(service))
                .service(resource("/products").get(search).post(create))
                .service(resource("/products/{id}").get(get).patch(update))
                .service(resource("/products/{id}/stock").post(adjust_stock))
                .service(resource("/categories").get(categories)),
        );
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    paths(search, get, categories, create, update, adjust_stock),
    components(schemas(Product, Page<Product>, Category, NewProduct, ProductPatch, StockLevel, StockAdjustment)),
    tags((name = "catalog", description = "Products, categories and stock"))
)]
pub struct CatalogDoc;

/// Query string of the product search.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchParams {
    /// Text matched case-insensitively against name, description and sku (at most 100
    /// characters).
    #[param(max_length = 100)]
    q: Option<String>,
    /// A category name (letters, digits and `-`).
    #[param(pattern = "^[A-Za-z0-9-]{1,64}$")]
    category: Option<String>,
    /// Inclusive lower bound on the price, in minor units (above `max_price`, nothing
    /// matches).
    #[param(minimum = 0)]
    min_price: Option<i64>,
    /// Inclusive upper bound on the price, in minor units.
    #[param(minimum = 0)]
    max_price: Option<i64>,
    /// Page number, from 1 (default 1).
    #[param(minimum = 1, maximum = 2_147_483_647)]
    page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<u32>,
}

/// Body of a stock adjustment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StockAdjustment {
    /// Units to add; negative to remove (0 changes nothing). Refused (`insufficient_stock`,
    /// `stock_limit_exceeded`) if available stock would leave 0 to 1,000,000,000.
    #[schema(minimum = -1_000_000_000_i64, maximum = 1_000_000_000_i64)]
    delta: i64,
}

/// Search active products.
#[utoipa::path(
    get, path = "/api/catalog/products", tag = "catalog",
    params(SearchParams),
    responses(
        (status = 200, description = "One page of matching products and the total", body = Page<Product>),
        (status = 400, description = "`invalid_query` (bad paging values, bad price range)", body = ErrorBody),
    )
)]
async fn search(
    catalog: web::Data<CatalogService>,
    runtime: StoreRuntime,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, HttpError> {
    let params = params.into_inner();
    let page = web_kit::page_request(params.page, params.per_page)?;
    let query = ProductQuery {
        text: params.q,
        category: params.category,
        min_price: params.min_price,
        max_price: params.max_price,
        page,
    };
    let found = runtime
        .run(async move { catalog.search_products(query).await })
        .await?;
    Ok(HttpResponse::Ok().json(found))
}

/// One product.
///
/// Served from the catalog's in-process cache when it holds the product: name, price and
/// the rest are never older than a change made through this shop process, and at most
/// `catalog.cache.ttl_ms` (5 s by default) older than a change made through another one.
/// The stock shown is informative and may be as old (orders reserve against the database,
/// never against this figure). `Cache-Control: no-cache` reads the database instead.
#[utoipa::path(
    get, path = "/api/catalog/products/{id}", tag = "catalog",
    params(
        ("id" = ProductId, Path, description = "Product id"),
        ("Cache-Control" = Option<String>, Header, description = "`no-cache`: read the product from the database rather than from the cache (and refresh the cache); other directives are ignored"),
    ),
    responses(
        (status = 200, description = "The product (its stock possibly up to `catalog.cache.ttl_ms` old)", body = Product),
        (status = 400, description = "`invalid_path`", body = ErrorBody),
        (status = 404, description = "`product_not_found`", body = ErrorBody),
    )
)]
async fn get(
    catalog: web::Data<CatalogService>,
    runtime: StoreRuntime,
    id: web::Path<ProductId>,
    request: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let id = id.into_inner();
    // A cached page is answered here, on the HTTP worker; only a miss goes to the store.
    let product = match catalog.cached_product(id, freshness(request.headers())) {
        Some(product) => product,
        None => {
            runtime
                .run(async move { catalog.refresh_product(id).await })
                .await?
        }
    };
    Ok(HttpResponse::Ok().json(&*product))
}

/// `Cache-Control: no-cache` (a directive of any of the header's values, in any case) asks
/// for a fresh read.
fn freshness(headers: &HeaderMap) -> Freshness {
    let no_cache = headers
        .get_all(header::CACHE_CONTROL)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|directive| directive.trim().eq_ignore_ascii_case("no-cache"));
    if no_cache {
        Freshness::Fresh
    } else {
        Freshness::Cached
    }
}

/// Categories with at least one active product.
#[utoipa::path(
    get, path = "/api/catalog/categories", tag = "catalog",
    responses((status = 200, description = "Categories and their product counts", body = Vec<Category>))
)]
async fn categories(
    catalog: web::Data<CatalogService>,
    runtime: StoreRuntime,
) -> Result<HttpResponse, HttpError> {
    let categories = runtime
        .run(async move { catalog.list_categories().await })
        .await?;
    Ok(HttpResponse::Ok().json(categories))
}

/// Create a product (administrators).
#[utoipa::path(
    post, path = "/api/catalog/products", tag = "catalog",
    security(("bearer" = [])),
    request_body = NewProduct,
    responses(
        (status = 201, description = "Created", body = Product),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an administrator", body = ErrorBody),
        (status = 409, description = "`sku_taken`", body = ErrorBody),
        (status = 422, description = "`validation_failed` or `invalid_body`", body = ErrorBody),
    )
)]
async fn create(
    _admin: AdminUser,
    catalog: web::Data<CatalogService>,
    runtime: StoreRuntime,
    body: web_kit::Json<NewProduct>,
) -> Result<HttpResponse, HttpError> {
    let product = body.into_inner();
    let product = runtime
        .run(async move { catalog.create_product(product).await })
        .await?;
    Ok(web_kit::created(
        format!("/api/catalog/products/{}", product.id),
        &product,
    ))
}

/// Change some fields of a product (administrators).
#[utoipa::path(
    patch, path = "/api/catalog/products/{id}", tag = "catalog",
    security(("bearer" = [])),
    params(("id" = ProductId, Path, description = "Product id")),
    request_body = ProductPatch,
    responses(
        (status = 200, description = "Updated", body = Product),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`product_not_found`", body = ErrorBody),
        (status = 422, description = "`validation_failed` or `invalid_body`", body = ErrorBody),
    )
)]
async fn update(
    _admin: AdminUser,
    catalog: web::Data<CatalogService>,
    runtime: StoreRuntime,
    id: web::Path<ProductId>,
    body: web_kit::Json<ProductPatch>,
) -> Result<HttpResponse, HttpError> {
    let (id, patch) = (id.into_inner(), body.into_inner());
    let product = runtime
        .run(async move { catalog.update_product(id, patch).await })
        .await?;
    Ok(HttpResponse::Ok().json(product))
}

/// Add or remove units of stock (administrators).
#[utoipa::path(
    post, path = "/api/catalog/products/{id}/stock", tag = "catalog",
    security(("bearer" = [])),
    params(("id" = ProductId, Path, description = "Product id")),
    request_body = StockAdjustment,
    responses(
        (status = 200, description = "The new stock level", body = StockLevel),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`product_not_found`", body = ErrorBody),
        (status = 409, description = "`insufficient_stock`, `stock_limit_exceeded`", body = ErrorBody),
        (status = 422, description = "`validation_failed` or `invalid_body`", body = ErrorBody),
    )
)]
async fn adjust_stock(
    _admin: AdminUser,
    catalog: web::Data<CatalogService>,
    runtime: StoreRuntime,
    id: web::Path<ProductId>,
    body: web_kit::Json<StockAdjustment>,
) -> Result<HttpResponse, HttpError> {
    let (id, delta) = (id.into_inner(), body.delta);
    let level = runtime
        .run(async move { catalog.adjust_stock(id, delta).await })
        .await?;
    Ok(HttpResponse::Ok().json(level))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{CACHE_CONTROL, HeaderMap, HeaderValue};

    use super::freshness;
    use crate::Freshness;

    fn check(values: &[&str], expected: Freshness) {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(CACHE_CONTROL, HeaderValue::from_str(value).expect("valid"));
        }
        assert_eq!(freshness(&headers), expected, "{values:?}");
    }

    #[test]
    fn no_cache_asks_for_a_fresh_read() {
        check(&[], Freshness::Cached);
        check(&["no-cache"], Freshness::Fresh);
        check(&["max-age=0, No-Cache"], Freshness::Fresh);
        check(&["max-age=60", "no-cache"], Freshness::Fresh);
        check(&["no-store"], Freshness::Cached);
        check(&["no-cache-please"], Freshness::Cached);
    }
}
