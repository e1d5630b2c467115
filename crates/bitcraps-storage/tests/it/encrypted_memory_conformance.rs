//! The storage contract on the in-memory backend with encryption at rest: the sealing
//! wrapper over a second, independent backend.

use crate::common;

conformance_suite!(common::memory_encrypted_fixture);
versions_suite!(common::memory_encrypted_fixture);
feed_suite!(common::memory_encrypted_fixture);
