//! The storage contract on PostgreSQL (needs `BITCRAPS_TEST_POSTGRES_URL`; skipped without).

#![cfg(feature = "postgres")]

use crate::common;

conformance_suite!(common::pg_fixture);
versions_suite!(common::pg_fixture);
lifecycle_suite!(common::pg_fixture);
quota_suite!(common::pg_fixture);
feed_suite!(common::pg_fixture);
