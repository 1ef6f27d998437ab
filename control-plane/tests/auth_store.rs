//! The auth tables on real SQLite and PostgreSQL: the same answers from both, and the
//! guarded changes (last admin, lockout, single-use tokens and secrets) hold.

use std::sync::Arc;

use killkrill::config::{DbType, StoreConfig};
use killkrill::store::{self, ApiKeyRecord, AuditRecord, AuthStore, Role, UserChange, UserRecord};

use crate::servers::PostgresServer;

fn user(username: &str, role: Role) -> UserRecord {
    UserRecord {
        username: username.to_owned(),
        password_hash: format!("$argon2id$fake${username}"),
        role,
        created_ns: 1_000,
        last_login_ns: None,
        failed_logins: 0,
        locked_until_ns: None,
    }
}

async fn users_and_last_admin(store: &dyn AuthStore) {
    assert_eq!(store.count_users().await.unwrap(), 0);
    assert!(store.insert_first_user(&user("first", Role::Admin)).await.unwrap());
    assert!(!store.insert_first_user(&user("second", Role::Admin)).await.unwrap(), "only while empty");
    assert!(!store.insert_user(&user("first", Role::Viewer)).await.unwrap(), "name taken");
    assert!(store.insert_user(&user("viewer", Role::Viewer)).await.unwrap());
    let names: Vec<String> = store.users().await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["first", "viewer"]);

    assert_eq!(store.update_user("first", Some(Role::Viewer), None).await.unwrap(), UserChange::LastAdmin);
    assert_eq!(store.delete_user("first").await.unwrap(), UserChange::LastAdmin);
    assert_eq!(store.update_user("ghost", Some(Role::Viewer), None).await.unwrap(), UserChange::NotFound);
    assert_eq!(store.update_user("first", None, Some("$new")).await.unwrap(), UserChange::Done);
    assert_eq!(store.update_user("first", Some(Role::Admin), None).await.unwrap(), UserChange::Done);
    assert_eq!(store.user("first").await.unwrap().unwrap().password_hash, "$new");
    assert_eq!(store.update_user("viewer", Some(Role::Admin), None).await.unwrap(), UserChange::Done);
    assert_eq!(store.update_user("first", Some(Role::Maintainer), None).await.unwrap(), UserChange::Done);
    assert_eq!(store.delete_user("viewer").await.unwrap(), UserChange::LastAdmin);
    assert_eq!(store.delete_user("first").await.unwrap(), UserChange::Done);
    assert_eq!(store.delete_user("first").await.unwrap(), UserChange::NotFound);
}

async fn lockout_counts_consecutive_failures(store: &dyn AuthStore) {
    store.insert_user(&user("ada", Role::Maintainer)).await.unwrap();
    assert_eq!(store.record_login_failure("ada", 3, 9_000).await.unwrap(), None);
    assert_eq!(store.record_login_failure("ada", 3, 9_000).await.unwrap(), None);
    store.record_login_success("ada", 5_000).await.unwrap();
    let ada = store.user("ada").await.unwrap().unwrap();
    assert_eq!((ada.failed_logins, ada.last_login_ns), (0, Some(5_000)), "a success resets the count");
    for _ in 0..2 {
        assert_eq!(store.record_login_failure("ada", 3, 9_000).await.unwrap(), None);
    }
    assert_eq!(store.record_login_failure("ada", 3, 9_000).await.unwrap(), Some(9_000));
    let ada = store.user("ada").await.unwrap().unwrap();
    assert_eq!((ada.failed_logins, ada.locked_until_ns), (0, Some(9_000)));
    assert_eq!(store.record_login_failure("nobody", 3, 9_000).await.unwrap(), None);
}

async fn tokens_keys_and_secrets_are_single_use_where_they_must_be(store: &dyn AuthStore) {
    store.insert_refresh_token("hash-0", "ada", 7_000).await.unwrap();
    assert_eq!(store.update_user("ada", None, Some("$changed")).await.unwrap(), UserChange::Done);
    assert_eq!(store.take_refresh_token("hash-0").await.unwrap(), None, "a new password revokes sessions");
    store.insert_refresh_token("hash-1", "ada", 7_000).await.unwrap();
    assert_eq!(store.take_refresh_token("hash-1").await.unwrap(), Some(("ada".to_owned(), 7_000)));
    assert_eq!(store.take_refresh_token("hash-1").await.unwrap(), None);

    let key = ApiKeyRecord {
        id: "k1".to_owned(),
        name: "agent".to_owned(),
        role: Role::Maintainer,
        prefix: "kk_abcdefg".to_owned(),
        created_ns: 10,
        last_used_ns: None,
    };
    store.insert_api_key(&key, "key-hash").await.unwrap();
    assert_eq!(store.api_key_by_hash("key-hash").await.unwrap(), Some((key.clone(), "key-hash".to_owned())));
    assert_eq!(store.api_key_by_hash("other").await.unwrap(), None);
    store.touch_api_key("k1", 99).await.unwrap();
    assert_eq!(store.api_keys().await.unwrap()[0].last_used_ns, Some(99));
    assert!(store.delete_api_key("k1").await.unwrap());
    assert!(!store.delete_api_key("k1").await.unwrap());
    assert!(store.api_keys().await.unwrap().is_empty());

    assert_eq!(store.put_secret_if_absent("jwt", "first").await.unwrap(), "first");
    assert_eq!(store.put_secret_if_absent("jwt", "second").await.unwrap(), "first", "the first one stays");
    assert_eq!(store.take_secret("jwt").await.unwrap().as_deref(), Some("first"));
    assert_eq!(store.take_secret("jwt").await.unwrap(), None);
    assert_eq!(store.secret("jwt").await.unwrap(), None);
}

async fn audit_pages_newest_first(store: &dyn AuthStore) {
    for n in 0..5u16 {
        let record = AuditRecord {
            id: 0,
            at_ns: i64::from(n),
            actor: format!("actor-{n}"),
            role: (n % 2 == 0).then_some(Role::Admin),
            action: "POST /api/v1/users".to_owned(),
            source: "192.0.2.1".to_owned(),
            status: 200 + n,
            detail: (n == 3).then(|| "username: x".to_owned()),
        };
        store.append_audit(&record).await.unwrap();
    }
    let page = store.audit(2, None).await.unwrap();
    assert_eq!(page.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>(), ["actor-4", "actor-3"]);
    assert_eq!((page[1].status, page[1].role, page[1].detail.as_deref()), (203, None, Some("username: x")));
    let rest = store.audit(10, Some(page[1].id)).await.unwrap();
    assert_eq!(rest.iter().map(|r| r.at_ns).collect::<Vec<_>>(), [2, 1, 0]);
    assert_eq!(rest[0].role, Some(Role::Admin));
}

async fn everything(store: Arc<dyn AuthStore>) {
    users_and_last_admin(store.as_ref()).await;
    lockout_counts_consecutive_failures(store.as_ref()).await;
    tokens_keys_and_secrets_are_single_use_where_they_must_be(store.as_ref()).await;
    audit_pages_newest_first(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_tables_behave_the_same_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (_, sqlite) = store::open_with_auth(&StoreConfig::default(), dir.path()).await.unwrap();
    everything(sqlite).await;
    let server = PostgresServer::start();
    let config = StoreConfig {
        db_type: DbType::Postgres,
        database_url: Some(server.create_database("auth")),
        ..StoreConfig::default()
    };
    let (_, postgres) = store::open_with_auth(&config, std::path::Path::new("/nonexistent")).await.unwrap();
    everything(postgres).await;
}
