//! The metric keys of a collection label, built once: an operation's duration histogram and
//! its two outcome counters, for every operation. `metrics::histogram!` with a runtime label
//! builds its key on every call (a vector of labels, the collection name's reference count
//! taken and dropped); a key built once is only borrowed, so an operation that returns costs
//! the recorder's lookup and nothing else (none at all without a recorder). The keys are the
//! ones the macros built: same names, labels and order.

use metrics::{Key, Label, SharedString};

use super::{Operation, names};

/// One operation's keys under one collection label.
pub(crate) struct OperationKeys {
    pub(crate) duration: Key,
    pub(crate) ok: Key,
    pub(crate) error: Key,
}

/// Every operation's keys under one collection label and backend.
pub(crate) struct LabelKeys {
    operations: Vec<OperationKeys>,
}

impl LabelKeys {
    pub(crate) fn new(backend: &'static str, collection: &SharedString) -> Self {
        let operations = Operation::ALL
            .iter()
            .map(|op| {
                let labels = |outcome: Option<&'static str>| {
                    let mut labels = vec![
                        Label::new("operation", op.name()),
                        Label::new("collection", collection.clone()),
                        Label::new("backend", backend),
                    ];
                    if let Some(outcome) = outcome {
                        labels.push(Label::new("outcome", outcome));
                    }
                    labels
                };
                OperationKeys {
                    duration: Key::from_parts(names::OPERATION_DURATION, labels(None)),
                    ok: Key::from_parts(names::OPERATIONS, labels(Some("ok"))),
                    error: Key::from_parts(names::OPERATIONS, labels(Some("error"))),
                }
            })
            .collect();
        LabelKeys { operations }
    }

    /// The keys of `operation`.
    pub(crate) fn of(&self, operation: Operation) -> Option<&OperationKeys> {
        self.operations.get(operation as usize)
    }
}

#[cfg(test)]
impl LabelKeys {
    /// The collection label these keys carry.
    pub(crate) fn collection(&self) -> String {
        self.operations
            .first()
            .and_then(|k| k.duration.labels().find(|l| l.key() == "collection"))
            .map(|l| l.value().to_owned())
            .unwrap_or_default()
    }
}
