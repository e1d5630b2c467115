//! What the store records for monitoring: [`MetricsConfig`].

/// Metrics and tracing (TOML `[metrics]`, environment `BITCRAPS_STORAGE_METRICS_*`). The
/// library records through the `metrics` facade and `tracing`; the application installs the
/// exporter and the subscriber.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// The `collection` label carries a collection's name for the first this many distinct
    /// collections an operation touches in this process; later ones are labelled `other`, so
    /// the number of time series stays bounded. Default: 64.
    pub max_collection_labels: usize,
    /// Record keys as a field of the operations' tracing spans. Keys can be personal data
    /// (player ids), so they are left out unless this is set. Default: `false`.
    pub trace_keys: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_collection_labels: 64,
            trace_keys: false,
        }
    }
}

impl MetricsConfig {
    /// Sets [`max_collection_labels`](Self::max_collection_labels).
    #[must_use]
    pub fn max_collection_labels(mut self, count: usize) -> Self {
        self.max_collection_labels = count;
        self
    }

    /// Sets [`trace_keys`](Self::trace_keys).
    #[must_use]
    pub fn trace_keys(mut self, enabled: bool) -> Self {
        self.trace_keys = enabled;
        self
    }
}
