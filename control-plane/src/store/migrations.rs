//! Schema migrations embedded in the binary, so a deployment is one file.

use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// The SQLite migrations, in order.
const SQLITE: &[(i64, &str, &str)] = &[
    (1, "logs", include_str!("../../migrations/sqlite/0001_logs.sql")),
    (2, "log blocks", include_str!("../../migrations/sqlite/0002_log_blocks.sql")),
    (3, "metrics", include_str!("../../migrations/sqlite/0003_metrics.sql")),
    (4, "auth", include_str!("../../migrations/sqlite/0004_auth.sql")),
    (5, "runtime config", include_str!("../../migrations/sqlite/0005_runtime_config.sql")),
    (6, "log block totals", include_str!("../../migrations/sqlite/0006_log_block_totals.sql")),
    (7, "log block compaction", include_str!("../../migrations/sqlite/0007_log_block_compaction.sql")),
];

/// The PostgreSQL migrations, in order.
const POSTGRES: &[(i64, &str, &str)] = &[
    (1, "log blocks", include_str!("../../migrations/postgres/0001_log_blocks.sql")),
    (2, "metrics", include_str!("../../migrations/postgres/0002_metrics.sql")),
    (3, "auth", include_str!("../../migrations/postgres/0003_auth.sql")),
    (4, "runtime config", include_str!("../../migrations/postgres/0004_runtime_config.sql")),
    (5, "log block totals", include_str!("../../migrations/postgres/0005_log_block_totals.sql")),
    (6, "log block compaction", include_str!("../../migrations/postgres/0006_log_block_compaction.sql")),
    (
        7,
        "log block filters inline",
        include_str!("../../migrations/postgres/0007_log_block_filters_inline.sql"),
    ),
];

#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        (*description).into(),
                        MigrationType::Simple,
                        (*sql).into(),
                        false,
                    )
                })
                .collect())
        })
    }
}

pub(crate) async fn sqlite() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(SQLITE)).await
}

pub(crate) async fn postgres() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(POSTGRES)).await
}
