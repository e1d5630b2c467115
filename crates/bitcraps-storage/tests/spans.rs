//! Tracing spans (issue #17): every public operation, group commit, maintenance step and
//! backup runs in a span with its collection (and its key only with `metrics.trace_keys`), and
//! no document content is ever a field. A layer of this test records every span the library
//! opens, with its fields and its parent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use bitcraps_storage::PersistentStorageManager;
use common::sqlite_fixture;
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One span: its name, its fields as text, and its parent's name.
#[derive(Debug, Clone, Default)]
struct Seen {
    name: String,
    fields: BTreeMap<String, String>,
    parent: Option<String>,
}

/// Every span opened in this process, by id (spans are recorded as they are created and
/// updated; ids are not reused while a span is open, and the test reads them after).
static SPANS: Mutex<Vec<(u64, Seen)>> = Mutex::new(Vec::new());

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

struct Recorder;

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut seen = Seen {
            name: attrs.metadata().name().to_owned(),
            ..Seen::default()
        };
        attrs.record(&mut Fields(&mut seen.fields));
        seen.parent = ctx
            .span(id)
            .and_then(|span| span.parent().map(|p| p.name().to_owned()));
        SPANS.lock().unwrap().push((id.into_u64(), seen));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut spans = SPANS.lock().unwrap();
        if let Some((_, seen)) = spans.iter_mut().rev().find(|(i, _)| *i == id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
}

fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing_subscriber::registry()
            .with(Recorder)
            .try_init()
            .expect("the only subscriber of this test binary");
    });
}

fn spans() -> Vec<Seen> {
    SPANS
        .lock()
        .unwrap()
        .iter()
        .map(|(_, s)| s.clone())
        .collect()
}

fn field<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.fields.get(name).map(String::as_str)
}

fn operation<'a>(all: &'a [Seen], op: &str) -> Vec<&'a Seen> {
    all.iter()
        .filter(|s| s.name == "bitcraps_storage" && field(s, "operation") == Some(op))
        .collect()
}

const SECRET_CONTENT: &str = "pass-line-secret-4711";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_steps_and_backups_run_in_spans_without_content() -> Result {
    install();
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    // Only the calls below: no scheduled run adds spans of its own.
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config).await?;
    s.store("games", "g-1", &SECRET_CONTENT).await?;
    let _: Option<String> = s.retrieve("games", "g-1").await?;
    s.delete("games", "g-1").await?;
    s.store("games", "g-2", &SECRET_CONTENT).await?;
    let report = s.maintenance().await?;
    s.backups().create_backup().await?;
    s.close().await?;

    let all = spans();
    for op in ["store", "retrieve", "delete"] {
        // (The other test of this binary writes "players", with keys traced.)
        let found: Vec<&Seen> = operation(&all, op)
            .into_iter()
            .filter(|s| field(s, "collection") == Some("games"))
            .collect();
        assert!(!found.is_empty(), "no {op} span on games in {all:#?}");
        for span in found {
            assert_eq!(field(span, "backend"), Some("sqlite"), "{span:?}");
            assert!(
                field(span, "key").is_none(),
                "keys are off by default: {span:?}"
            );
        }
    }
    assert!(
        all.iter().any(|s| s.name == "group_commit"),
        "no group_commit span"
    );
    assert!(!operation(&all, "backup").is_empty(), "no backup span");

    // One span per maintenance step, inside the run's span, with its outcome and duration.
    let steps: Vec<&Seen> = all
        .iter()
        .filter(|s| s.name == "maintenance_step")
        .collect();
    let names: Vec<&str> = steps.iter().filter_map(|s| field(s, "step")).collect();
    let reported: Vec<&str> = report.steps.iter().map(|s| s.name).collect();
    assert_eq!(names, reported, "a span for every reported step, in order");
    assert!(
        names.contains(&"vacuum") && names.contains(&"backup"),
        "{names:?}"
    );
    for step in steps {
        assert_eq!(step.parent.as_deref(), Some("bitcraps_storage"), "{step:?}");
        assert_eq!(field(step, "ok"), Some("true"), "{step:?}");
        assert!(field(step, "duration_ms").is_some(), "{step:?}");
    }

    // No document content anywhere in any span field.
    for span in &all {
        for value in span.fields.values() {
            assert!(
                !value.contains(SECRET_CONTENT),
                "content in a span: {span:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_span_fields_only_when_asked() -> Result {
    install();
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    config.metrics.trace_keys = true;
    let s = PersistentStorageManager::open(config).await?;
    s.store("players", "traced-key-31", &1u32).await?;
    s.close().await?;
    let all = spans();
    let traced = operation(&all, "store")
        .into_iter()
        .any(|s| field(s, "key") == Some("traced-key-31"));
    assert!(
        traced,
        "with metrics.trace_keys the key is a field: {all:#?}"
    );
    Ok(())
}
