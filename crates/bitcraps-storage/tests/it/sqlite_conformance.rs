//! The storage contract on embedded SQLite.

use crate::common;

conformance_suite!(common::sqlite_fixture);
versions_suite!(common::sqlite_fixture);
lifecycle_suite!(common::sqlite_fixture);
quota_suite!(common::sqlite_fixture);
feed_suite!(common::sqlite_fixture);
