//! The storage contract on the in-memory backend (feature `testing`): a second, independent
//! implementation of the backend seam held to the same assertions as SQLite and PostgreSQL.

use crate::common;

conformance_suite!(common::memory_fixture);
versions_suite!(common::memory_fixture);
lifecycle_suite!(common::memory_fixture);
quota_suite!(common::memory_fixture);
feed_suite!(common::memory_fixture);
