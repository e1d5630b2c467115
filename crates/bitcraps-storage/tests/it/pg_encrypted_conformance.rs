//! The storage contract on PostgreSQL with encryption at rest (skipped without
//! `BITCRAPS_TEST_POSTGRES_URL`).
#![cfg(feature = "postgres")]

use crate::common;

conformance_suite!(common::pg_encrypted_fixture);
versions_suite!(common::pg_encrypted_fixture);
