//! Paged, ordered key listing: [`ListOptions`] in, [`ListPage`] out.

/// Default page size of [`ListOptions`].
pub const DEFAULT_LIST_LIMIT: usize = 1000;

/// Which keys of a collection to list. Keys come back in byte order (UTF-8 code-point order).
///
/// ```
/// use bitcraps_storage::ListOptions;
/// let first = ListOptions::default().prefix("g-").limit(100);
/// let next = first.clone().after("g-0099");
/// assert_eq!(next.after_key(), Some("g-0099"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ListOptions {
    prefix: Option<String>,
    after: Option<String>,
    limit: usize,
    /// The store's clock when the store reads: records expired by then are left out. Set by
    /// the store on every listing and scan, never by callers.
    live_at: Option<i64>,
}

impl Default for ListOptions {
    /// No prefix, from the first key, at most [`DEFAULT_LIST_LIMIT`] keys.
    fn default() -> Self {
        ListOptions {
            prefix: None,
            after: None,
            limit: DEFAULT_LIST_LIMIT,
            live_at: None,
        }
    }
}

impl ListOptions {
    /// Only keys that start with `prefix`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.to_owned()).filter(|p| !p.is_empty());
        self
    }

    /// Only keys strictly after `key` (pass the previous page's `next_after` to continue).
    pub fn after(mut self, key: &str) -> Self {
        self.after = Some(key.to_owned());
        self
    }

    /// At most `limit` keys (at least 1).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// Leaves out records expired at `now_ms` (the store's clock).
    pub(crate) fn live_at(mut self, now_ms: i64) -> Self {
        self.live_at = Some(now_ms);
        self
    }

    /// The time records must not have expired by, when the store set one.
    pub(crate) fn live_at_ms(&self) -> Option<i64> {
        self.live_at
    }

    /// The prefix, if any.
    pub fn prefix_str(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The exclusive lower bound, if any.
    pub fn after_key(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// The page size.
    pub fn limit_value(&self) -> usize {
        self.limit
    }

    /// The smallest string greater than every string starting with the prefix, or `None` if
    /// there is none (no prefix, or a prefix of only `char::MAX`). Keys with the prefix are
    /// exactly those in `[prefix, upper)` because UTF-8 byte order is code-point order.
    pub fn prefix_upper_bound(&self) -> Option<String> {
        let mut chars: Vec<char> = self.prefix.as_deref()?.chars().collect();
        while let Some(last) = chars.pop() {
            let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
            if let Some(next) = next {
                chars.push(next);
                return Some(chars.into_iter().collect());
            }
        }
        None
    }
}

/// One page of keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ListPage {
    /// Keys in order.
    pub keys: Vec<String>,
    /// `Some(last key)` when more keys follow: pass it to [`ListOptions::after`].
    pub next_after: Option<String>,
}

/// One page of a [`scan`](crate::PersistentStorageManager::scan): records with their values,
/// paged like [`ListPage`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanPage<T> {
    /// `(key, value)` in key order.
    pub items: Vec<(String, T)>,
    /// `Some(last key)` when more records follow: pass it to [`ListOptions::after`].
    pub next_after: Option<String>,
}

impl ListPage {
    /// Builds a page from up to `limit + 1` keys fetched in order.
    pub(crate) fn from_fetched(mut keys: Vec<String>, limit: usize) -> Self {
        let more = keys.len() > limit;
        keys.truncate(limit);
        let next_after = if more { keys.last().cloned() } else { None };
        ListPage { keys, next_after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_bound() {
        let up = |p: &str| ListOptions::default().prefix(p).prefix_upper_bound();
        assert_eq!(up("g-"), Some("g.".to_owned()));
        assert_eq!(up("a\u{10FFFF}"), Some("b".to_owned()));
        assert_eq!(up("\u{10FFFF}"), None);
        assert_eq!(up("\u{D7FF}"), Some("\u{E000}".to_owned()));
        assert_eq!(ListOptions::default().prefix_upper_bound(), None);
    }

    #[test]
    fn page_from_fetched() {
        let page = ListPage::from_fetched(vec!["a".into(), "b".into(), "c".into()], 2);
        assert_eq!(page.keys, ["a", "b"]);
        assert_eq!(page.next_after.as_deref(), Some("b"));
        let page = ListPage::from_fetched(vec!["a".into()], 2);
        assert_eq!(page.next_after, None);
        assert_eq!(ListOptions::default().limit(0).limit_value(), 1);
    }
}
