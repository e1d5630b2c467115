//! Times as the CLI prints them. The library's reports are `Serialize` and `--json` prints
//! them through serde, so their JSON has the library's field names.

use std::time::SystemTime;

/// RFC 3339 in UTC with milliseconds, e.g. `2025-01-02T03:04:05.678Z`.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.123Z");
    }
}
