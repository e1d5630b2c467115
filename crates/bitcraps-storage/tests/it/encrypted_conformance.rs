//! The storage contract on embedded SQLite with encryption at rest (a key file): everything
//! a plaintext store promises, an encrypted one keeps.

use crate::common;

conformance_suite!(common::sqlite_encrypted_fixture);
versions_suite!(common::sqlite_encrypted_fixture);
