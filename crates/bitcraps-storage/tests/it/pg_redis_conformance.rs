//! The storage contract on PostgreSQL with the Redis tier on — the scale-out deployment, where
//! the in-process cache is enabled because Redis keeps it coherent. Needs both
//! `BITCRAPS_TEST_POSTGRES_URL` and `BITCRAPS_TEST_REDIS_URL`; skipped (with a notice) without.
#![cfg(all(feature = "postgres", feature = "redis"))]

use crate::common;

use common::Fixture;

fn pg_redis_fixture() -> Option<Fixture> {
    let redis = common::nodes::redis_url()?;
    // The namespace is deleted with the fixture.
    Some(common::nodes::with_redis(
        common::pg_fixture()?,
        redis,
        "pg_conformance",
    ))
}

conformance_suite!(pg_redis_fixture);
versions_suite!(pg_redis_fixture);
lifecycle_suite!(pg_redis_fixture);
quota_suite!(pg_redis_fixture);
