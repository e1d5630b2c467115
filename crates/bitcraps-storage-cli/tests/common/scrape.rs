//! Scraping `/metrics` and reading the Prometheus text format with a real parser
//! (`prometheus-parse`).

use std::io::{Read, Write};
use std::net::TcpStream;

use prometheus_parse::{Scrape, Value};

/// Parses a text exposition; panics if a line is not one the format allows.
pub fn parse(text: &str) -> Scrape {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = Scrape::parse(lines).expect("the exposition parses");
    for line in text.lines() {
        assert!(
            line.is_empty()
                || line.starts_with("# HELP ")
                || line.starts_with("# TYPE ")
                || line.starts_with("bitcraps_storage_"),
            "unexpected line in the exposition: {line:?}"
        );
    }
    scrape
}

/// `GET /metrics` from `addr` (`HOST:PORT`); the status line and the body.
pub fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// Observations in every series of histogram `name` (the `+Inf` buckets), or `None` when the
/// scrape has no such histogram.
pub fn histogram_count(scrape: &Scrape, name: &str) -> Option<f64> {
    let mut total = None;
    for s in scrape.samples.iter().filter(|s| s.metric == name) {
        if let Value::Histogram(buckets) = &s.value {
            let inf = buckets.iter().find(|b| b.less_than.is_infinite());
            *total.get_or_insert(0.0) += inf.map_or(0.0, |b| b.count);
        }
    }
    total
}

/// The value of the gauge `name` (the first series).
pub fn gauge(scrape: &Scrape, name: &str) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .and_then(|s| match s.value {
            Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
}
