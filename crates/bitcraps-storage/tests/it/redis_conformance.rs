//! The storage contract with the Redis tier on (one node, SQLite): L2 and the invalidation
//! channel change nothing a caller can observe. Without `BITCRAPS_TEST_REDIS_URL` the suite
//! runs on plain SQLite (a notice says so).
#![cfg(feature = "redis")]

use crate::common;

use common::{Fixture, sqlite_fixture};

fn redis_fixture() -> Fixture {
    let f = sqlite_fixture();
    match std::env::var("BITCRAPS_TEST_REDIS_URL") {
        // The namespace is deleted with the fixture.
        Ok(url) if !url.is_empty() => common::nodes::with_redis(f, url, "conformance"),
        _ => {
            common::skip("BITCRAPS_TEST_REDIS_URL is not set (suite ran without Redis)");
            f
        }
    }
}

conformance_suite!(redis_fixture);
versions_suite!(redis_fixture);
lifecycle_suite!(redis_fixture);
quota_suite!(redis_fixture);
