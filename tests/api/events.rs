//! Parked events and their replay, as an operator sees them.

use reqwest::StatusCode;
use testkit::TestStore;

use crate::helpers::spawn_app_with;

/// The mail directory cannot be created (a file sits where it should be), so the welcome
/// message cannot be sent: the handler fails, the event is parked, the operator sees it,
/// fixes the cause and replays it.
async fn failed_handlers_are_listed_and_replayed(store: TestStore) {
    let app = spawn_app_with(store, |settings| settings.messaging.max_attempts = 1).await;
    let admin = app.admin_token().await;
    let data_dir = app.store().dir.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let blocker = data_dir.join("mail");
    std::fs::write(&blocker, "not a directory").expect("block the mail dir");

    app.register("parked@example.com", "parked password", "Parked")
        .await
        .ok(StatusCode::CREATED);
    let customer = app.token("parked@example.com", "parked password").await;
    app.deliver_events().await;
    assert!(app.notification_kinds(&customer).await.is_empty());

    app.get("/api/admin/events/failed", Some(&customer))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    app.get("/api/admin/events/failed", None)
        .await
        .error(StatusCode::UNAUTHORIZED, "missing_token");
    let failed = app.get("/api/admin/events/failed", Some(&admin)).await;
    let failed = failed.ok(StatusCode::OK).as_array().expect("list").clone();
    // The administrator was created through auth too, so their welcome failed the same way.
    let parked: Vec<_> = failed
        .iter()
        .filter(|event| event["event_name"] == "auth.user_registered.v1")
        .collect();
    assert_eq!(parked.len(), 2, "{failed:#?}");
    for event in &parked {
        assert_eq!(event["stage"], "handling");
        assert_eq!(event["owner"], "notifications");
        assert_eq!(event["attempts"], 1);
        assert!(event["last_error"].as_str().is_some_and(|e| !e.is_empty()));
    }

    app.post(
        &format!("/api/admin/events/{}/retry", uuid::Uuid::now_v7()),
        Some(&admin),
        serde_json::json!({}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "event_not_found");

    std::fs::remove_file(&blocker).expect("unblock");
    for event in &parked {
        let id = event["id"].as_str().expect("id");
        let retried = app
            .post(
                &format!("/api/admin/events/{id}/retry"),
                Some(&admin),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(retried.ok(StatusCode::ACCEPTED)["status"], "pending");
    }
    app.deliver_events().await;
    assert_eq!(app.notification_kinds(&customer).await, ["welcome"]);
    let failed = app.get("/api/admin/events/failed", Some(&admin)).await;
    assert_eq!(failed.ok(StatusCode::OK), &serde_json::json!([]));
}

async fn notifications_are_private(store: TestStore) {
    let app = spawn_app_with(store, |_| {}).await;
    let alice = app.customer_token().await;
    let bob = app.customer_token().await;
    app.deliver_events().await;
    let mine = app.get("/api/notifications", Some(&alice)).await;
    let mine = mine.ok(StatusCode::OK);
    assert_eq!(mine["total"], 1);
    let theirs = app.get("/api/notifications", Some(&bob)).await;
    assert_ne!(
        theirs.ok(StatusCode::OK)["items"][0]["id"],
        mine["items"][0]["id"]
    );
    app.get("/api/notifications", None)
        .await
        .error(StatusCode::UNAUTHORIZED, "missing_token");
    app.get("/api/notifications?per_page=0", Some(&alice))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_query");
}

testkit::backend_tests!(
    failed_handlers_are_listed_and_replayed,
    notifications_are_private
);
