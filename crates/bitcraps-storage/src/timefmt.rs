//! `SystemTime` fields serialized as RFC 3339 UTC with milliseconds
//! (`2025-01-02T03:04:05.678Z`), the form backup manifests and the CLI use.

use std::time::SystemTime;

use serde::Serializer;

fn rfc3339(t: SystemTime) -> String {
    crate::backup::utc_stamp(crate::backup::millis(t))
}

/// `#[serde(serialize_with = "...")]` for a `SystemTime`.
pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// `#[serde(serialize_with = "...")]` for an `Option<SystemTime>` (`null` when absent).
#[expect(clippy::ref_option, reason = "serde's serialize_with passes &Option")]
pub(crate) fn serialize_option<S: Serializer>(
    t: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(super::rfc3339(t), "2023-11-14T22:13:20.123Z");
    }
}
